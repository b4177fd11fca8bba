//! host-shim's command line: its own flags, and llm-d / GIE Endpoint Picker's flags so
//! host-shim starts with the exact arguments an EPP container is given.
//!
//! EPP flags that host-shim uses: `--grpc-port`, `--grpc-health-port`, `--metrics-port`,
//! `--pool-name`, `--pool-namespace`, `--pool-group`, `--endpoint-selector`,
//! `--endpoint-target-ports`, `--config-file`, `--config-text`, `--secure-serving`,
//! `--cert-path`, `--refresh-metrics-interval`, `--metrics-staleness-threshold`,
//! `--model-server-metrics-path`, `-v`. The others are accepted and ignored with a warning
//! ([`Args::ignored`]). Go's single-dash long flags (`-pool-name`, `-poolName`) are
//! accepted too.

use clap::{Parser, ValueEnum};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// infergate sidecar: endpoint picks from live vLLM / SGLang metrics and a prefix-cache index.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    /// Model-server endpoints, comma separated `ip:port` (e.g. `10.0.0.7:8000,10.0.0.8:8000`).
    #[arg(
        long,
        env = "HOST_SHIM_ENDPOINTS",
        conflicts_with_all = ["endpoints_file", "pool_name", "endpoint_selector"],
        required_unless_present_any = ["endpoints_file", "pool_name", "endpoint_selector"]
    )]
    pub endpoints: Option<String>,

    /// File listing endpoints (`ip:port` per line or comma separated, `#` comments); re-read
    /// when it changes, a bad edit keeps the last good list.
    #[arg(long, env = "HOST_SHIM_ENDPOINTS_FILE", conflicts_with_all = ["pool_name", "endpoint_selector"])]
    pub endpoints_file: Option<PathBuf>,

    /// EndpointPickerConfig (YAML or JSON, llm-d format) given inline. Default: the deployment
    /// guide's (queue-scorer 2, kv-cache-utilization-scorer 2, prefix-cache-scorer 3).
    #[arg(long, env = "HOST_SHIM_CONFIG_TEXT", conflicts_with = "config_file")]
    pub config_text: Option<String>,

    /// EndpointPickerConfig file; re-read when it changes, a bad edit keeps the running config.
    #[arg(long, env = "HOST_SHIM_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,

    /// HTTP listener: pick API (`/v1/pick`, `/v1/served`), `/metrics`, `/healthz`,
    /// `/debug/state`. Default `127.0.0.1:9003`, or `0.0.0.0:<--metrics-port>` in EPP mode.
    #[arg(long, env = "HOST_SHIM_HTTP_ADDR", conflicts_with = "metrics_port")]
    pub http_addr: Option<SocketAddr>,

    /// gRPC listener: Envoy ext_proc Endpoint Picker and grpc.health.v1. Default
    /// `127.0.0.1:9002`, or `0.0.0.0:<--grpc-port>` in EPP mode.
    #[arg(long, env = "HOST_SHIM_GRPC_ADDR", conflicts_with = "grpc_port")]
    pub grpc_addr: Option<SocketAddr>,

    /// HTTP addresses (`ip:port`, comma separated) of peer host-shim replicas: served reports
    /// are shared with them so every replica's prefix index sees every request.
    #[arg(long, env = "HOST_SHIM_PEERS", value_delimiter = ',')]
    pub peers: Vec<SocketAddr>,

    /// Milliseconds between scrapes of one endpoint's /metrics.
    #[arg(
        long,
        default_value_t = 50,
        conflicts_with = "refresh_metrics_interval"
    )]
    pub scrape_interval_ms: u64,

    /// Milliseconds a scrape may take before the endpoint counts as unreachable.
    #[arg(long, default_value_t = 500)]
    pub scrape_timeout_ms: u64,

    /// Path of the engines' metrics page.
    #[arg(long, default_value = "/metrics", alias = "model-server-metrics-path")]
    pub metrics_path: String,

    /// Milliseconds between checks of --endpoints-file and --config-file for changes.
    #[arg(long, default_value_t = 1000)]
    pub reload_interval_ms: u64,

    /// Fallback endpoints returned with each pick.
    #[arg(long, default_value_t = 2)]
    pub fallbacks: usize,

    /// ext_proc request body mode assumed when Envoy does not announce it in protocol_config.
    #[arg(long, value_enum, default_value_t = BodyModeArg::FullDuplexStreamed)]
    pub ext_proc_body_mode: BodyModeArg,

    /// Largest request body (bytes) the ext_proc server buffers for a pick; larger gets 413.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Seed of the scheduler's random choices (tie-breaks without a prefix, weighted-random).
    #[arg(long, default_value_t = 0x1f2e_3d4c)]
    pub seed: u64,

    // ---- llm-d / GIE Endpoint Picker flags ----
    /// EPP: name of the InferencePool whose pods are the endpoints (watched through the
    /// Kubernetes API; in-cluster service account, or KUBECONFIG outside).
    #[arg(long, alias = "poolName")]
    pub pool_name: Option<String>,

    /// EPP: namespace of the InferencePool (and its pods). Default: `$NAMESPACE`, else the
    /// pod's own namespace (service account), else the kubeconfig context's.
    #[arg(long, alias = "poolNamespace")]
    pub pool_namespace: Option<String>,

    /// EPP: API group of the InferencePool: `inference.networking.k8s.io` (v1) or
    /// `inference.networking.x-k8s.io` (v1alpha2).
    #[arg(long, default_value = "inference.networking.k8s.io")]
    pub pool_group: String,

    /// EPP selector mode (no pool): `key=value` pairs, comma separated.
    #[arg(long, conflicts_with = "pool_name", requires = "endpoint_target_ports")]
    pub endpoint_selector: Option<String>,

    /// EPP selector mode: target ports of the selected pods, comma separated.
    #[arg(long, requires = "endpoint_selector")]
    pub endpoint_target_ports: Option<String>,

    /// EPP: port of the ext_proc gRPC server (all interfaces). EPP mode default 9002.
    #[arg(long, alias = "grpcPort")]
    pub grpc_port: Option<u16>,

    /// EPP: port of a gRPC health server (`liveness`, `readiness`, ext_proc) on all
    /// interfaces. EPP mode default 9003; otherwise health is served on the gRPC listener only.
    #[arg(long, alias = "grpcHealthPort")]
    pub grpc_health_port: Option<u16>,

    /// EPP: port of the metrics server; host-shim serves its whole HTTP API (`/metrics`,
    /// pick API) there. EPP mode default 9090.
    #[arg(long, alias = "metricsPort")]
    pub metrics_port: Option<u16>,

    /// EPP: TLS on the ext_proc port (self-signed unless --cert-path). Default true in EPP
    /// mode (as the EPP), false otherwise. `--secure-serving=false` turns it off.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", alias = "secureServing")]
    pub secure_serving: Option<bool>,

    /// EPP: directory holding `tls.crt` and `tls.key` for --secure-serving.
    #[arg(long, alias = "certPath")]
    pub cert_path: Option<PathBuf>,

    /// EPP: interval between metrics scrapes, Go duration (`50ms`, `1s`).
    #[arg(long, value_parser = go_duration, alias = "refreshMetricsInterval")]
    pub refresh_metrics_interval: Option<Duration>,

    /// EPP: age after which an endpoint's metrics are stale, Go duration (`2s`).
    #[arg(long, value_parser = go_duration)]
    pub metrics_staleness_threshold: Option<Duration>,

    /// EPP: log verbosity (0–2 info, 3–4 debug, 5+ trace) unless RUST_LOG is set.
    #[arg(short = 'v', long = "v")]
    pub verbosity: Option<u8>,

    /// EPP flags host-shim does not need: accepted, ignored with a warning.
    #[command(flatten)]
    pub ignored: Ignored,
}

/// Flags of the EPP that host-shim accepts and ignores (with a warning naming each).
#[derive(clap::Args, Debug, Default)]
pub struct Ignored {
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    ha_enable_leader_election: Option<String>,
    #[arg(long, hide = true)]
    model_server_metrics_scheme: Option<String>,
    #[arg(long, hide = true)]
    model_server_metrics_port: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    model_server_metrics_https_insecure_skip_verify: Option<String>,
    #[arg(long, hide = true)]
    refresh_prometheus_metrics_interval: Option<String>,
    #[arg(long, hide = true)]
    total_queued_requests_metric: Option<String>,
    #[arg(long, hide = true)]
    total_running_requests_metric: Option<String>,
    #[arg(long, hide = true)]
    kv_cache_usage_percentage_metric: Option<String>,
    #[arg(long, hide = true)]
    lora_info_metric: Option<String>,
    #[arg(long, hide = true)]
    cache_info_metric: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tracing: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    health_checking: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    enable_pprof: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    enable_cert_reload: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    metrics_endpoint_auth: Option<String>,
    #[arg(long, hide = true)]
    zap_encoder: Option<String>,
    #[arg(long, hide = true)]
    zap_log_level: Option<String>,
}

/// The EPP flags host-shim accepts and ignores.
pub const IGNORED_FLAGS: &[&str] = &[
    "--ha-enable-leader-election",
    "--model-server-metrics-scheme",
    "--model-server-metrics-port",
    "--model-server-metrics-https-insecure-skip-verify",
    "--refresh-prometheus-metrics-interval",
    "--total-queued-requests-metric",
    "--total-running-requests-metric",
    "--kv-cache-usage-percentage-metric",
    "--lora-info-metric",
    "--cache-info-metric",
    "--tracing",
    "--health-checking",
    "--enable-pprof",
    "--enable-cert-reload",
    "--metrics-endpoint-auth",
    "--zap-encoder",
    "--zap-log-level",
];

impl Ignored {
    /// The ignored flags that were given, with their values.
    pub fn given(&self) -> Vec<(&'static str, &str)> {
        let values = [
            &self.ha_enable_leader_election,
            &self.model_server_metrics_scheme,
            &self.model_server_metrics_port,
            &self.model_server_metrics_https_insecure_skip_verify,
            &self.refresh_prometheus_metrics_interval,
            &self.total_queued_requests_metric,
            &self.total_running_requests_metric,
            &self.kv_cache_usage_percentage_metric,
            &self.lora_info_metric,
            &self.cache_info_metric,
            &self.tracing,
            &self.health_checking,
            &self.enable_pprof,
            &self.enable_cert_reload,
            &self.metrics_endpoint_auth,
            &self.zap_encoder,
            &self.zap_log_level,
        ];
        IGNORED_FLAGS
            .iter()
            .zip(values)
            .filter_map(|(name, v)| v.as_deref().map(|v| (*name, v)))
            .collect()
    }
}

/// ext_proc body mode flag values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BodyModeArg {
    /// No body.
    None,
    /// Streamed.
    Streamed,
    /// Buffered.
    Buffered,
    /// Full-duplex streamed.
    FullDuplexStreamed,
}

impl Args {
    /// Parses the process's arguments, accepting Go-style single-dash long flags.
    pub fn parse_go_compatible() -> Self {
        Self::parse_from(normalize(std::env::args()))
    }

    /// Whether host-shim runs as an EPP in a cluster (discovering pods through the API).
    pub fn epp_mode(&self) -> bool {
        self.pool_name.is_some() || self.endpoint_selector.is_some()
    }

    /// The ext_proc listener address.
    pub fn grpc_addr(&self) -> SocketAddr {
        match (self.grpc_addr, self.grpc_port) {
            (Some(a), _) => a,
            (None, Some(p)) => all_interfaces(p),
            (None, None) if self.epp_mode() => all_interfaces(9002),
            (None, None) => SocketAddr::from((Ipv4Addr::LOCALHOST, 9002)),
        }
    }

    /// The HTTP listener address.
    pub fn http_addr(&self) -> SocketAddr {
        match (self.http_addr, self.metrics_port) {
            (Some(a), _) => a,
            (None, Some(p)) => all_interfaces(p),
            (None, None) if self.epp_mode() => all_interfaces(9090),
            (None, None) => SocketAddr::from((Ipv4Addr::LOCALHOST, 9003)),
        }
    }

    /// The dedicated gRPC health listener, if any.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        match self.grpc_health_port {
            Some(p) => Some(all_interfaces(p)),
            // The EPP's default, unless host-shim's own HTTP or gRPC listener was put there
            // (host-shim's HTTP default is 9003): then health is on the gRPC listener only.
            None if self.epp_mode()
                && self.http_addr().port() != 9003
                && self.grpc_addr().port() != 9003 =>
            {
                Some(all_interfaces(9003))
            }
            None => None,
        }
    }

    /// Whether ext_proc is served over TLS.
    pub fn secure_serving(&self) -> bool {
        self.secure_serving.unwrap_or(self.epp_mode())
    }

    /// Milliseconds between scrapes (`--refresh-metrics-interval` wins when given).
    pub fn scrape_interval(&self) -> Duration {
        self.refresh_metrics_interval
            .unwrap_or(Duration::from_millis(self.scrape_interval_ms))
            .max(Duration::from_millis(1))
    }

    /// The tracing filter `-v` asks for.
    pub fn log_filter(&self) -> &'static str {
        match self.verbosity {
            None | Some(0..=2) => "info",
            Some(3..=4) => "debug",
            Some(_) => "trace",
        }
    }
}

fn all_interfaces(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
}

/// Go's flag packages accept `-name value` for long flags; clap wants `--name`. A single-dash
/// argument longer than one letter (and not a negative number) gets a second dash.
pub fn normalize(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut after_double_dash = false;
    for (i, a) in args.into_iter().enumerate() {
        let b = a.as_bytes();
        let go_long = i > 0
            && !after_double_dash
            && b.len() > 2
            && b[0] == b'-'
            && b[1] != b'-'
            && !b[1].is_ascii_digit();
        if a == "--" {
            after_double_dash = true;
        }
        out.push(if go_long { format!("-{a}") } else { a });
    }
    out
}

/// Parses a Go `time.Duration` string: `300ms`, `1.5s`, `2m30s`, `1h`, `250us`, `0`.
pub fn go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a Go duration (e.g. 50ms, 1s, 2m30s)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let mut v = vec!["host-shim".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        Args::try_parse_from(normalize(v))
    }

    #[test]
    fn the_guides_scheduler_arguments_parse() {
        let a = parse(&[
            "--pool-group",
            "inference.networking.x-k8s.io",
            "--pool-name",
            "qwen3-0-6b-inference-pool",
            "--pool-namespace",
            "my-first-model",
            "--config-text",
            "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n",
        ])
        .unwrap();
        assert!(a.epp_mode() && a.secure_serving());
        assert_eq!(a.grpc_addr(), "0.0.0.0:9002".parse().unwrap());
        assert_eq!(a.health_addr(), Some("0.0.0.0:9003".parse().unwrap()));
        assert_eq!(a.http_addr(), "0.0.0.0:9090".parse().unwrap());
        assert_eq!(a.pool_group, "inference.networking.x-k8s.io");
    }

    #[test]
    fn go_style_and_ignored_flags() {
        let a = parse(&[
            "-poolName",
            "p",
            "-v",
            "4",
            "--grpcPort",
            "9102",
            "-grpc-health-port",
            "9103",
            "--zap-encoder",
            "json",
            "--secure-serving=false",
            "--tracing=false",
            "--enable-pprof",
            "--refresh-metrics-interval",
            "100ms",
            "--model-server-metrics-path",
            "/m",
        ])
        .unwrap();
        assert_eq!(a.pool_name.as_deref(), Some("p"));
        assert_eq!(a.log_filter(), "debug");
        assert_eq!(a.grpc_addr().port(), 9102);
        assert_eq!(a.health_addr().unwrap().port(), 9103);
        assert!(!a.secure_serving());
        assert_eq!(a.scrape_interval(), Duration::from_millis(100));
        assert_eq!(a.metrics_path, "/m");
        let ignored: Vec<_> = a.ignored.given().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            ignored,
            vec!["--tracing", "--enable-pprof", "--zap-encoder"]
        );
    }

    #[test]
    fn the_default_health_port_steps_aside_for_an_explicit_listener() {
        let a = parse(&["--pool-name", "p", "--http-addr", "0.0.0.0:9003"]).unwrap();
        assert_eq!(a.health_addr(), None);
        let a = parse(&[
            "--pool-name",
            "p",
            "--http-addr",
            "0.0.0.0:9003",
            "--grpc-health-port",
            "9004",
        ])
        .unwrap();
        assert_eq!(a.health_addr().unwrap().port(), 9004);
    }

    #[test]
    fn host_shim_mode_keeps_its_defaults() {
        let a = parse(&["--endpoints", "127.0.0.1:8000"]).unwrap();
        assert!(!a.epp_mode() && !a.secure_serving());
        assert_eq!(a.grpc_addr(), "127.0.0.1:9002".parse().unwrap());
        assert_eq!(a.http_addr(), "127.0.0.1:9003".parse().unwrap());
        assert_eq!(a.health_addr(), None);
    }

    #[test]
    fn conflicting_or_missing_sources_are_refused() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["--endpoints", "127.0.0.1:1", "--pool-name", "p"]).is_err());
        assert!(parse(&[
            "--pool-name",
            "p",
            "--endpoint-selector",
            "a=b",
            "--endpoint-target-ports",
            "1"
        ])
        .is_err());
        assert!(
            parse(&["--endpoint-selector", "a=b"]).is_err(),
            "ports required"
        );
        assert!(parse(&["--pool-name", "p", "--unknown-flag", "1"]).is_err());
        assert!(parse(&["--pool-name", "p", "--refresh-metrics-interval", "fast"]).is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("50ms").unwrap(), Duration::from_millis(50));
        assert_eq!(go_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(go_duration("2m30s").unwrap(), Duration::from_secs(150));
        assert_eq!(go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "5", "ms", "1d", "-1s", "1.2.3s"] {
            assert!(go_duration(bad).is_err(), "{bad}");
        }
    }
}
