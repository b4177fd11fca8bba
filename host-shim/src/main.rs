//! host-shim binary.

use clap::Parser;
use std::net::SocketAddr;

/// infergate sidecar.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address of the HTTP health endpoint.
    #[arg(long, env = "HOST_SHIM_HEALTH_ADDR", default_value = "127.0.0.1:9003")]
    health_addr: SocketAddr,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.health_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "host-shim health endpoint listening");
    tokio::select! {
        r = host_shim::health::serve(listener) => r?,
        _ = tokio::signal::ctrl_c() => tracing::info!("host-shim stopping"),
    }
    Ok(())
}
