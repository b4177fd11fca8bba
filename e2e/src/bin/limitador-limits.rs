//! Writes Kuadrant Limitador's limits file (YAML) for a ratelimit plugin configuration in
//! global mode, matching the descriptors the plugin sends (see `infergate_e2e::limitador`):
//!
//! ```sh
//! limitador-limits ratelimit.json > limits.yaml
//! ```

use anyhow::{Context, Result};
use clap::Parser;
use infergate_core::config::parse;
use infergate_core::ratelimit::RateLimitConfig;
use std::path::PathBuf;

/// Limitador limits for a ratelimit plugin configuration.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// The ratelimit plugin's configuration (JSON); `-` reads standard input.
    config: PathBuf,
    /// The Limitador namespace; default: the configuration's `global.domain`.
    #[arg(long)]
    domain: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bytes = if args.config.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
        b
    } else {
        std::fs::read(&args.config).with_context(|| format!("reading {}", args.config.display()))?
    };
    let config: RateLimitConfig =
        parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let domain = args
        .domain
        .or_else(|| config.global.as_ref().map(|g| g.domain.clone()))
        .context("no --domain and the configuration has no `global` section")?;
    print!(
        "{}",
        infergate_e2e::limitador::limits_yaml(&domain, &config)?
    );
    Ok(())
}
