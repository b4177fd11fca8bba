//! The Envoy process: started from a [`GatewaySpec`], ready when its admin endpoint says
//! `LIVE`, stopped on drop.

use super::bootstrap;
use super::spec::GatewaySpec;
use crate::paths;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long Envoy may take to compile the Wasm modules and become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Envoy. Killed (with its children) when dropped.
pub struct Envoy {
    child: Option<Child>,
    /// Working directory (bootstrap, log); kept after exit when `INFERGATE_KEEP_ENVOY` is set.
    dir: Option<tempfile::TempDir>,
    admin: String,
    ports: HashMap<String, u16>,
    tls: HashMap<String, bool>,
    client: reqwest::Client,
}

impl Envoy {
    /// Writes the bootstrap for `spec`, starts Envoy and waits until it is ready.
    ///
    /// If Envoy exits during start (for example because a plugin rejected its configuration),
    /// the error carries the end of Envoy's log, where the plugin's message is.
    pub async fn start(spec: &GatewaySpec) -> Result<Self> {
        Self::start_rendered(spec, &bootstrap::render(spec)).await
    }

    /// Starts Envoy from `bootstrap` (rendered from `spec`, then adjusted by the caller, for
    /// example to lower a circuit breaker in a test); `spec` names the listeners.
    pub async fn start_rendered(spec: &GatewaySpec, bootstrap: &serde_json::Value) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("infergate-envoy-")
            .tempdir()?;
        let config_path = dir.path().join("envoy.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(bootstrap)?)?;
        let admin_path = dir.path().join("admin.addr");
        let log_path = dir.path().join("envoy.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(paths::envoy_binary()?)
            .arg("-c")
            .arg(&config_path)
            .arg("--concurrency")
            .arg(spec.concurrency.max(1).to_string())
            .arg("--use-dynamic-base-id")
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["--log-level", "info", "--component-log-level", "wasm:debug"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting envoy")?;
        let mut envoy = Self {
            child: Some(child),
            dir: Some(dir),
            admin: String::new(),
            ports: HashMap::new(),
            tls: spec
                .listeners
                .iter()
                .map(|l| (l.name.clone(), l.tls.is_some()))
                .collect(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        };
        envoy.wait_ready(&admin_path).await?;
        Ok(envoy)
    }

    async fn wait_ready(&mut self, admin_path: &Path) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "envoy exited during start ({status}); errors from its log ({}):\n{}",
                    self.log_path().display(),
                    self.log_problems(40)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "envoy not ready after {READY_TIMEOUT:?}; errors from its log ({}):\n{}",
                    self.log_path().display(),
                    self.log_problems(40)
                );
            }
            if self.admin.is_empty() {
                if let Ok(addr) = std::fs::read_to_string(admin_path) {
                    let addr = addr.trim();
                    if !addr.is_empty() {
                        self.admin = format!("http://{addr}");
                    }
                }
            }
            if !self.admin.is_empty() {
                let ready = self
                    .client
                    .get(format!("{}/ready", self.admin))
                    .send()
                    .await;
                if let Ok(r) = ready {
                    if r.status().is_success()
                        && r.text().await.unwrap_or_default().trim() == "LIVE"
                    {
                        self.ports = self.listener_ports().await?;
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn listener_ports(&self) -> Result<HashMap<String, u16>> {
        let v: serde_json::Value = self
            .client
            .get(format!("{}/listeners?format=json", self.admin))
            .send()
            .await?
            .json()
            .await?;
        let mut ports = HashMap::new();
        for l in v["listener_statuses"].as_array().into_iter().flatten() {
            let name = l["name"].as_str().unwrap_or_default().to_string();
            let port = l["local_address"]["socket_address"]["port_value"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| anyhow!("listener {name} has no port in {l}"))?;
            ports.insert(name, port);
        }
        Ok(ports)
    }

    /// Envoy's process id (for CPU accounting in benchmarks).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The bound port of listener `name`.
    pub fn port(&self, name: &str) -> Option<u16> {
        self.ports.get(name).copied()
    }

    fn url_for(&self, https: bool) -> String {
        let found = self
            .tls
            .iter()
            .filter(|(_, t)| **t == https)
            .filter_map(|(n, _)| self.port(n))
            .min();
        let scheme = if https { "https" } else { "http" };
        match found {
            Some(p) => format!("{scheme}://127.0.0.1:{p}"),
            None => format!("{scheme}://127.0.0.1:0"),
        }
    }

    /// Base URL of the plain-HTTP listener.
    pub fn http_url(&self) -> String {
        self.url_for(false)
    }

    /// Base URL of the HTTPS listener.
    pub fn https_url(&self) -> String {
        self.url_for(true)
    }

    /// Base URL of the admin endpoint.
    pub fn admin_url(&self) -> &str {
        &self.admin
    }

    /// All counters and gauges from `/stats`, by name.
    pub async fn stats(&self) -> Result<HashMap<String, u64>> {
        let text = self
            .client
            .get(format!("{}/stats", self.admin))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(": ")?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect())
    }

    /// One counter or gauge; plugin metrics appear as `wasmcustom.<name>`.
    pub async fn stat(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.stats().await?.get(name).copied())
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Path of Envoy's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .map(|d| d.path().join("envoy.log"))
            .unwrap_or_default()
    }

    /// The last `lines` error and critical lines of the log (or its last lines if none).
    fn log_problems(&self, lines: usize) -> String {
        let log = self.log();
        let problems: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("][error][") || l.contains("][critical]["))
            .collect();
        let picked = if problems.is_empty() {
            log.lines().collect()
        } else {
            problems
        };
        picked[picked.len().saturating_sub(lines)..].join("\n")
    }

    /// Asks Envoy to exit (`/quitquitquit`) and waits for it, killing it if it lingers.
    pub async fn stop(&mut self) -> Result<()> {
        if self.child.is_none() {
            return Ok(());
        }
        let _ = self
            .client
            .post(format!("{}/quitquitquit", self.admin))
            .send()
            .await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if c.try_wait()?.is_some() {
                    self.child = None;
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.kill();
        if std::env::var_os("INFERGATE_KEEP_ENVOY").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("envoy files kept in {}", dir.keep().display());
            }
        }
    }
}
