//! host-shim: the infergate sidecar binary.
//!
//! Scrapes every model-server endpoint's `/metrics`, keeps the prefix index, and answers
//! endpoint picks on an HTTP pick API (for the affinity Wasm plugin) and as an Endpoint
//! Picker over Envoy ext_proc (gRPC). On start it prints `http listening on ADDR` and
//! `grpc listening on ADDR` to stdout (useful with port 0).

use anyhow::Context;
use clap::{Parser, ValueEnum};
use host_shim::runtime::Runtime;
use host_shim::scheduler::config::SchedulerConfig;
use host_shim::scheduler::Scheduler;
use host_shim::scrape::ScrapeConfig;
use host_shim::server::ext_proc::{BodyMode, EppConfig};
use host_shim::source::{file::FileSource, static_list::StaticSource, EndpointSource};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// infergate sidecar: endpoint picks from live vLLM / SGLang metrics and a prefix-cache index.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Model-server endpoints, comma separated `ip:port` (e.g. `10.0.0.7:8000,10.0.0.8:8000`).
    #[arg(
        long,
        env = "HOST_SHIM_ENDPOINTS",
        conflicts_with = "endpoints_file",
        required_unless_present = "endpoints_file"
    )]
    endpoints: Option<String>,

    /// File listing endpoints (`ip:port` per line or comma separated, `#` comments); re-read
    /// when it changes, a bad edit keeps the last good list.
    #[arg(long, env = "HOST_SHIM_ENDPOINTS_FILE")]
    endpoints_file: Option<PathBuf>,

    /// EndpointPickerConfig (YAML or JSON, llm-d format) given inline. Default: the deployment
    /// guide's (queue-scorer 2, kv-cache-utilization-scorer 2, prefix-cache-scorer 3).
    #[arg(long, env = "HOST_SHIM_CONFIG_TEXT", conflicts_with = "config_file")]
    config_text: Option<String>,

    /// EndpointPickerConfig file; re-read when it changes, a bad edit keeps the running config.
    #[arg(long, env = "HOST_SHIM_CONFIG_FILE")]
    config_file: Option<PathBuf>,

    /// HTTP listener: pick API (`/v1/pick`, `/v1/served`), `/metrics`, `/healthz`, `/debug/state`.
    #[arg(long, env = "HOST_SHIM_HTTP_ADDR", default_value = "127.0.0.1:9003")]
    http_addr: SocketAddr,

    /// gRPC listener: Envoy ext_proc Endpoint Picker and grpc.health.v1.
    #[arg(long, env = "HOST_SHIM_GRPC_ADDR", default_value = "127.0.0.1:9002")]
    grpc_addr: SocketAddr,

    /// HTTP addresses (`ip:port`, comma separated) of peer host-shim replicas: served reports
    /// are shared with them so every replica's prefix index sees every request.
    #[arg(long, env = "HOST_SHIM_PEERS", value_delimiter = ',')]
    peers: Vec<SocketAddr>,

    /// Milliseconds between scrapes of one endpoint's /metrics.
    #[arg(long, default_value_t = 50)]
    scrape_interval_ms: u64,

    /// Milliseconds a scrape may take before the endpoint counts as unreachable.
    #[arg(long, default_value_t = 500)]
    scrape_timeout_ms: u64,

    /// Path of the engines' metrics page.
    #[arg(long, default_value = "/metrics")]
    metrics_path: String,

    /// Milliseconds between checks of --endpoints-file and --config-file for changes.
    #[arg(long, default_value_t = 1000)]
    reload_interval_ms: u64,

    /// Fallback endpoints returned with each pick.
    #[arg(long, default_value_t = 2)]
    fallbacks: usize,

    /// ext_proc request body mode assumed when Envoy does not announce it in protocol_config.
    #[arg(long, value_enum, default_value_t = BodyModeArg::FullDuplexStreamed)]
    ext_proc_body_mode: BodyModeArg,

    /// Largest request body (bytes) the ext_proc server buffers for a pick; larger gets 413.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_body_bytes: usize,

    /// Seed of the scheduler's random choices (tie-breaks without a prefix, weighted-random).
    #[arg(long, default_value_t = 0x1f2e_3d4c)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BodyModeArg {
    None,
    Streamed,
    Buffered,
    FullDuplexStreamed,
}

/// The scheduler config and, for `--config-file`, the text it was parsed from.
fn load_config(args: &Args) -> anyhow::Result<(SchedulerConfig, Option<String>)> {
    let (mut cfg, file_text) = if let Some(text) = &args.config_text {
        let cfg =
            SchedulerConfig::parse(text).context("--config-text: invalid EndpointPickerConfig")?;
        (cfg, None)
    } else if let Some(path) = &args.config_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--config-file {}: cannot read", path.display()))?;
        let cfg = SchedulerConfig::parse(&text).with_context(|| {
            format!(
                "--config-file {}: invalid EndpointPickerConfig",
                path.display()
            )
        })?;
        (cfg, Some(text))
    } else {
        (SchedulerConfig::guide_default(), None)
    };
    cfg.max_fallbacks = args.fallbacks;
    Ok((cfg, file_text))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let (config, config_file_text) = load_config(&args)?;
    let scrape = ScrapeConfig {
        interval: Duration::from_millis(args.scrape_interval_ms.max(1)),
        timeout: Duration::from_millis(args.scrape_timeout_ms.max(1)),
        path: args.metrics_path.clone(),
    };
    let reload = Duration::from_millis(args.reload_interval_ms.max(10));
    let runtime = Runtime::new(Scheduler::new(config, args.seed), scrape);

    let source: Box<dyn EndpointSource> = match (&args.endpoints, &args.endpoints_file) {
        (Some(list), _) => Box::new(StaticSource::new(list.clone())),
        (None, Some(path)) => Box::new(FileSource::new(path.clone(), reload)),
        (None, None) => anyhow::bail!("give --endpoints or --endpoints-file"),
    };
    runtime.start_source(source).context("endpoints")?;
    runtime.set_peers(&args.peers);
    if let (Some(path), Some(text)) = (&args.config_file, config_file_text) {
        runtime.watch_config_file(path.clone(), reload, text);
    }

    let http = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("--http-addr {}", args.http_addr))?;
    let grpc = tokio::net::TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("--grpc-addr {}", args.grpc_addr))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "http listening on {}", http.local_addr()?)?;
        writeln!(out, "grpc listening on {}", grpc.local_addr()?)?;
        out.flush()?;
    }
    let epp = EppConfig {
        default_body_mode: match args.ext_proc_body_mode {
            BodyModeArg::None => BodyMode::None,
            BodyModeArg::Streamed => BodyMode::Streamed,
            BodyModeArg::Buffered => BodyMode::Buffered,
            BodyModeArg::FullDuplexStreamed => BodyMode::FullDuplex,
        },
        max_body_bytes: args.max_body_bytes,
    };
    tokio::select! {
        r = host_shim::server::http::serve(http, runtime.clone()) => r.context("http server")?,
        r = host_shim::server::grpc::serve(grpc, runtime.clone(), epp) => r.context("grpc server")?,
        _ = shutdown() => tracing::info!("host-shim stopping"),
    }
    Ok(())
}

async fn shutdown() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
