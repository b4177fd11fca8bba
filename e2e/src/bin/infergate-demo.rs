//! `make demo`: the guide's deployment on loopback, until Ctrl-C.

use clap::Parser;
use infergate_e2e::demo::{DemoConfig, Stack, StackOptions};
use std::io::Write;
use std::path::PathBuf;

/// Run the infergate local gateway: Envoy with the auth, ratelimit and affinity plugins over
/// HTTPS and HTTP, host-shim, and simulated vLLM pods.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Demo configuration (YAML); the built-in one is e2e/demo/gateway.yaml.
    #[arg(long, env = "INFERGATE_DEMO_CONFIG")]
    config: Option<PathBuf>,
    /// Bind any free ports instead of the configured ones.
    #[arg(long)]
    ephemeral_ports: bool,
    /// Do not start host-shim.
    #[arg(long)]
    without_host_shim: bool,
    /// Where the CA certificate is written.
    #[arg(long, default_value_os_t = infergate_e2e::paths::target_dir().join("demo"))]
    state_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = match &args.config {
        Some(p) => DemoConfig::load(p)?,
        None => DemoConfig::builtin()?,
    };
    let options = StackOptions {
        ephemeral_ports: args.ephemeral_ports,
        host_shim: !args.without_host_shim,
        state_dir: args.state_dir,
    };
    let stack = Stack::start(config, &options).await?;
    print!("{}", stack.banner());
    println!("\nRunning; press Ctrl-C to stop.");
    std::io::stdout().flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("stopping…");
    stack.stop().await?;
    eprintln!("stopped");
    Ok(())
}
