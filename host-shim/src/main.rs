//! host-shim: the infergate sidecar binary.
//!
//! Scrapes every model-server endpoint's `/metrics`, keeps the prefix index, and answers
//! endpoint picks on an HTTP pick API (for the affinity Wasm plugin) and as an Endpoint
//! Picker over Envoy ext_proc (gRPC). On start it prints `http listening on ADDR` and
//! `grpc listening on ADDR` to stdout (useful with port 0).

mod cli;
mod discovery;

use anyhow::Context;
use cli::{Args, BodyModeArg};
use host_shim::runtime::Runtime;
use host_shim::scheduler::config::SchedulerConfig;
use host_shim::scheduler::Scheduler;
use host_shim::scrape::ScrapeConfig;
use host_shim::server::ext_proc::{BodyMode, EppConfig};
use host_shim::source::{file::FileSource, static_list::StaticSource, EndpointSource};
use std::io::Write;
use std::time::Duration;

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
    if let Some(t) = args.metrics_staleness_threshold {
        cfg.staleness = t;
    }
    Ok((cfg, file_text))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse_go_compatible();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| args.log_filter().into()),
        )
        .init();
    for (flag, value) in args.ignored.given() {
        tracing::warn!(flag, value, "EPP flag not needed by host-shim; ignored");
    }
    let (config, config_file_text) = load_config(&args)?;
    let scrape = ScrapeConfig {
        interval: args.scrape_interval(),
        timeout: Duration::from_millis(args.scrape_timeout_ms.max(1)),
        path: args.metrics_path.clone(),
    };
    let reload = Duration::from_millis(args.reload_interval_ms.max(10));
    let runtime = Runtime::new(Scheduler::new(config, args.seed), scrape);

    if args.epp_mode() {
        discovery::start(&args, &runtime).await?;
    } else {
        let source: Box<dyn EndpointSource> = match (&args.endpoints, &args.endpoints_file) {
            (Some(list), _) => Box::new(StaticSource::new(list.clone())),
            (None, Some(path)) => Box::new(FileSource::new(path.clone(), reload)),
            (None, None) => anyhow::bail!("give --endpoints, --endpoints-file or --pool-name"),
        };
        runtime.start_source(source).context("endpoints")?;
    }
    runtime.set_peers(&args.peers);
    if let (Some(path), Some(text)) = (&args.config_file, config_file_text) {
        runtime.watch_config_file(path.clone(), reload, text);
    }

    let http = tokio::net::TcpListener::bind(args.http_addr())
        .await
        .with_context(|| format!("http listener {}", args.http_addr()))?;
    let grpc = tokio::net::TcpListener::bind(args.grpc_addr())
        .await
        .with_context(|| format!("grpc listener {}", args.grpc_addr()))?;
    let health = match args.health_addr() {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--grpc-health-port {addr}"))?,
        ),
        None => None,
    };
    let tls = if args.secure_serving() {
        Some(discovery::tls_identity(args.cert_path.as_deref())?)
    } else {
        None
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "http listening on {}", http.local_addr()?)?;
        writeln!(out, "grpc listening on {}", grpc.local_addr()?)?;
        if let Some(h) = &health {
            writeln!(out, "health listening on {}", h.local_addr()?)?;
        }
        out.flush()?;
    }
    if let Some(h) = health {
        let rt = runtime.clone();
        tokio::spawn(async move {
            if let Err(e) = host_shim::server::health::serve(h, rt).await {
                tracing::error!(error = %e, "gRPC health server failed");
            }
        });
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
        r = host_shim::server::grpc::serve_with(grpc, runtime.clone(), epp, tls) => r.context("grpc server")?,
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
