//! `infergate-images`: writes infergate's images as reproducible OCI image layouts (the plugins,
//! and host-shim and the `.wasm` file server when their static binaries are given). `make
//! images` runs it; `make push` copies the layouts to a registry with skopeo.

use anyhow::Result;
use clap::Parser;
use infergate_policies::images::{self, Inputs};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Folder with the built plugins (`infergate_<plugin>.wasm`).
    #[arg(long, default_value = "target/wasm32-wasip1/release")]
    wasm_dir: PathBuf,
    /// Static host-shim binary (the host-shim image is skipped without it).
    #[arg(long)]
    host_shim: Option<PathBuf>,
    /// Static infergate-wasm-server binary (the file-server image is skipped without it).
    #[arg(long)]
    wasm_server: Option<PathBuf>,
    /// Output folder: one OCI image layout per image.
    #[arg(long, default_value = "target/images")]
    out: PathBuf,
    /// Image tag and `org.opencontainers.image.version`.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    version: String,
    /// `org.opencontainers.image.source`.
    #[arg(long, default_value = images::DEFAULT_SOURCE)]
    source: String,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let inputs = Inputs {
        wasm_dir: cli.wasm_dir,
        host_shim: cli.host_shim,
        wasm_server: cli.wasm_server,
        version: cli.version,
        source: cli.source,
    };
    for (name, digest) in images::build(&inputs, &cli.out)? {
        println!(
            "{}  {}:{}  {digest}",
            cli.out.join(&name).display(),
            name,
            inputs.version
        );
    }
    Ok(())
}
