//! Starts the whole local stack: simulated pods, host-shim, and Envoy with the plugins in order
//! auth → ratelimit → affinity, an HTTPS and an HTTP listener.

use super::config::{DemoConfig, DemoUser, PLUGIN_ORDER};
use crate::child::ChildProcess;
use crate::child::HostShim;
use crate::envoy::{
    ClusterSpec, Envoy, GatewaySpec, ListenerSpec, RouteSpec, WasmFilter, MODEL_CLUSTER,
};
use crate::paths;
use crate::tls::{self, TlsFiles};
use crate::upstream::Upstream;
use anyhow::{Context, Result};
use rand::distributions::Alphanumeric;
use rand::Rng;
use std::path::PathBuf;
use std::time::Duration;

/// The Envoy cluster through which the affinity plugin reaches host-shim.
pub const HOST_SHIM_CLUSTER: &str = "host-shim";

/// How the stack is started.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Override both listener ports with 0 (any free port): for tests.
    pub ephemeral_ports: bool,
    /// Start host-shim (the sidecar).
    pub host_shim: bool,
    /// Directory for the CA certificate and logs.
    pub state_dir: PathBuf,
}

/// A simulated pod: the `vllm-sim` process when it is built, else the in-process minimal
/// upstream.
enum Pod {
    Process(ChildProcess),
    InProcess(Upstream),
}

/// The running stack.
pub struct Stack {
    /// The gateway.
    pub envoy: Envoy,
    /// The generated TLS files (clients trust `tls.ca_cert`).
    pub tls: TlsFiles,
    /// Users and their API keys.
    pub keys: Vec<(DemoUser, String)>,
    /// Pod endpoints (`ip:port`).
    pub endpoints: Vec<String>,
    /// The configuration it runs.
    pub config: DemoConfig,
    pods: Vec<Pod>,
    host_shim: Option<HostShim>,
}

impl Stack {
    /// Starts pods, host-shim and Envoy, and waits until the gateway is ready.
    pub async fn start(config: DemoConfig, options: &StackOptions) -> Result<Self> {
        std::fs::create_dir_all(&options.state_dir)?;
        let tls = tls::generate(&options.state_dir)?;
        let keys: Vec<(DemoUser, String)> = config
            .users
            .iter()
            .map(|u| {
                let key = u.key.clone().unwrap_or_else(random_key);
                (u.clone(), key)
            })
            .collect();

        let mut pods = Vec::new();
        let mut endpoints = Vec::new();
        let sim = paths::workspace_binary("vllm-sim").ok();
        for i in 0..config.pods {
            let name = format!("pod-{}", i + 1);
            match &sim {
                Some(bin) => {
                    let args = vec![
                        "--host".into(),
                        "127.0.0.1".into(),
                        "--port".into(),
                        "0".into(),
                        "--name".into(),
                        name.clone(),
                        "--model".into(),
                        config.model.clone(),
                    ];
                    let (child, addr) =
                        ChildProcess::spawn(&name, bin, &args, "listening on ").await?;
                    endpoints.push(addr);
                    pods.push(Pod::Process(child));
                }
                None => {
                    let up = Upstream::start(&name, &config.model).await?;
                    endpoints.push(up.addr.to_string());
                    pods.push(Pod::InProcess(up));
                }
            }
        }

        let host_shim = if options.host_shim {
            let shim = HostShim::start(&endpoints).await?;
            shim.wait_ready(endpoints.len(), Duration::from_secs(10))
                .await
                .context("waiting for host-shim to scrape the pods")?;
            Some(shim)
        } else {
            None
        };

        let mut filters = Vec::new();
        let mut clusters = Vec::new();
        for plugin in PLUGIN_ORDER {
            if let Some(mut cfg) = config.plugin_config(plugin, &keys, &endpoints) {
                if let (Some(shim), "affinity") = (&host_shim, plugin) {
                    // Picks go to the host-shim we started, through its own cluster.
                    if cfg.get("hostShim").is_none() {
                        cfg["hostShim"] = serde_json::json!({"cluster": HOST_SHIM_CLUSTER});
                    }
                    clusters.push(ClusterSpec {
                        name: HOST_SHIM_CLUSTER.into(),
                        addresses: vec![shim.http],
                        http2: true,
                    });
                }
                filters.push(WasmFilter::plugin(plugin, cfg.to_string())?);
            }
        }
        let (https_port, http_port) = if options.ephemeral_ports {
            (0, 0)
        } else {
            (config.https_port, config.http_port)
        };
        let mut routes = Vec::new();
        if let Some(prefix) = &config.route_prefix {
            routes.push(RouteSpec {
                prefix: prefix.clone(),
                prefix_rewrite: Some("/".into()),
                cluster: MODEL_CLUSTER.into(),
            });
        }
        routes.push(RouteSpec {
            prefix: "/".into(),
            prefix_rewrite: None,
            cluster: MODEL_CLUSTER.into(),
        });
        let spec = GatewaySpec {
            listeners: vec![
                ListenerSpec {
                    name: "https".into(),
                    port: https_port,
                    tls: Some(tls.clone()),
                },
                ListenerSpec {
                    name: "http".into(),
                    port: http_port,
                    tls: None,
                },
            ],
            filters,
            ext_proc: None,
            routes,
            clusters,
            ring_hash: None,
            concurrency: config.concurrency,
            route_timeout_secs: 0,
            allow_on_headers_stop_iteration: true,
        };
        let envoy = Envoy::start(&spec).await.context("starting the gateway")?;
        Ok(Self {
            envoy,
            tls,
            keys,
            endpoints,
            config,
            pods,
            host_shim,
        })
    }

    /// The lines `make demo` prints: the gateway URL and API key first (stable forms scripts
    /// can parse), then ready-to-paste curl commands.
    pub fn banner(&self) -> String {
        let https = self.envoy.https_url();
        let key = self.keys.first().map(|(_, k)| k.as_str()).unwrap_or("");
        let prefix = self
            .config
            .route_prefix
            .as_deref()
            .unwrap_or("/")
            .trim_end_matches('/');
        let ca = self.tls.ca_cert.display();
        let model = &self.config.model;
        let pods_kind = if self.pods.iter().any(|p| matches!(p, Pod::Process(_))) {
            "vllm-sim"
        } else {
            "minimal in-process upstream"
        };
        let mut out = format!("Gateway URL: {https}\nAPI key: {key}\n");
        // One key per tier (free first), in the same stable form.
        let mut tiered: Vec<(&str, &str)> = self
            .keys
            .iter()
            .filter_map(|(u, k)| u.tier.as_deref().map(|t| (t, k.as_str())))
            .collect();
        tiered.sort_by_key(|(t, _)| (*t != "free", *t != "premium"));
        let mut seen = Vec::new();
        for (tier, k) in &tiered {
            if !seen.contains(tier) {
                seen.push(*tier);
                out += &format!("API key ({tier}): {k}\n");
            }
        }
        let free_key = tiered.iter().find(|(t, _)| *t == "free").map(|(_, k)| *k);
        out += &format!("HTTP URL: {}\n", self.envoy.http_url());
        out += &format!("CA certificate: {ca}\n");
        out += &format!("Envoy admin: {}\n", self.envoy.admin_url());
        out += &format!("Pods ({pods_kind}): {}\n\n", self.endpoints.join(", "));
        out += "Try:\n";
        out += &format!("  curl --cacert {ca} {https}{prefix}/v1/models\n");
        out += &format!(
            "  curl --cacert {ca} {https}{prefix}/v1/chat/completions -H \"Authorization: Bearer {key}\" -H 'Content-Type: application/json' -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello!\"}}],\"max_tokens\":16}}'\n"
        );
        out += &format!(
            "  curl -N --cacert {ca} {https}{prefix}/v1/chat/completions -H \"Authorization: Bearer {key}\" -H 'Content-Type: application/json' -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello!\"}}],\"max_tokens\":16,\"stream\":true}}'\n"
        );
        if let Some(free) = free_key {
            out += "\nThe free tier allows 5 completions a minute; the 6th is a 429 with Retry-After and RateLimit headers:\n";
            out += &format!(
                "  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{{http_code}}\\n' --cacert {ca} {https}{prefix}/v1/chat/completions -H \"Authorization: Bearer {free}\" -H 'Content-Type: application/json' -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hi\"}}],\"max_tokens\":16}}'; done\n"
            );
            out += &format!(
                "  curl -i --cacert {ca} {https}{prefix}/v1/chat/completions -H \"Authorization: Bearer {free}\" -H 'Content-Type: application/json' -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hi\"}}],\"max_tokens\":16}}'\n"
            );
        }
        out
    }

    /// Stops Envoy, host-shim and the pods, in that order (traffic first).
    pub async fn stop(mut self) -> Result<()> {
        self.envoy.stop().await?;
        if let Some(h) = self.host_shim.take() {
            h.process.stop(Duration::from_secs(5)).await;
        }
        for pod in self.pods.drain(..) {
            match pod {
                Pod::Process(c) => c.stop(Duration::from_secs(5)).await,
                Pod::InProcess(u) => drop(u),
            }
        }
        Ok(())
    }
}

fn random_key() -> String {
    let suffix: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    format!("ig-{suffix}")
}
