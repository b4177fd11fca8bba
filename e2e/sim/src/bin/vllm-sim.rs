//! `vllm-sim`: a simulated vLLM pod. Prints `listening on HOST:PORT` once bound.

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use infergate_sim::engine::EngineConfig;
use infergate_sim::server::{serve, ServerConfig};
use std::io::Write as _;
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(about = "A simulated vLLM pod: OpenAI-compatible API over a calibrated engine model")]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 = any free port; the bound address is printed).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Served model name.
    #[arg(long, default_value = "Qwen/Qwen3-0.6B")]
    model: String,
    /// Engine profile (cost model and cache size).
    #[arg(long, default_value = "qwen3-0.6b-h200")]
    profile: String,
    /// Engine time runs this many times faster than real time.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Name returned in the `x-served-by` header of every response.
    #[arg(long)]
    name: Option<String>,
    /// Override the profile's number of KV blocks.
    #[arg(long)]
    num_gpu_blocks: Option<usize>,
    /// Override `max_num_seqs`.
    #[arg(long)]
    max_num_seqs: Option<usize>,
    /// Override `max_num_batched_tokens`.
    #[arg(long)]
    max_num_batched_tokens: Option<usize>,
    /// Override `max_model_len`.
    #[arg(long)]
    max_model_len: Option<usize>,
    /// Turn automatic prefix caching off.
    #[arg(long)]
    no_enable_prefix_caching: bool,
    /// Mean output tokens when a request sets no max_tokens.
    #[arg(long, default_value_t = 128)]
    default_output_tokens: u32,
    /// Relative spread (uniform ±) of that length.
    #[arg(long, default_value_t = 0.5)]
    output_spread: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let (_, mut engine) = EngineConfig::for_profile_name(&args.profile, args.num_gpu_blocks)
        .map_err(anyhow::Error::msg)?;
    engine.max_num_seqs = args.max_num_seqs.unwrap_or(engine.max_num_seqs);
    engine.max_num_batched_tokens = args
        .max_num_batched_tokens
        .unwrap_or(engine.max_num_batched_tokens);
    engine.max_model_len = args.max_model_len.unwrap_or(engine.max_model_len);
    engine.enable_prefix_caching = !args.no_enable_prefix_caching;
    engine.validate().map_err(|e| anyhow!(e))?;
    let cfg = ServerConfig {
        model: args.model,
        served_by: args.name,
        time_scale: args.time_scale,
        engine,
        default_output_tokens: args.default_output_tokens,
        output_spread: args.output_spread,
        max_body_bytes: 32 << 20,
    };
    // Fail before binding, so a launcher never sees "listening on" from a pod that then exits.
    cfg.validate()?;
    // One core is enough for thousands of streams; a current-thread runtime keeps the pod's
    // footprint predictable when several run on one machine.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    rt.block_on(async move {
        let listener = TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("binding {}:{}", args.host, args.port))?;
        let addr = listener.local_addr()?;
        println!("listening on {addr}");
        std::io::stdout().flush()?;
        tokio::select! {
            r = serve(listener, cfg) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}
