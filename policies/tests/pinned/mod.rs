//! Every example rendered as `render --images` would: against plugin images built here from
//! the built `.wasm`, so every reference carries a digest and every `code.remote` a sha256.

#![allow(dead_code)]

use infergate_policies::images::{self, ImageRefs, Inputs, Pins};
use infergate_policies::resources::Bundle;
use infergate_policies::{render, Rendered};
use std::path::PathBuf;

/// Every example of `policies/examples/` (the guide in both auth modes, the API-key tiers,
/// Kuadrant's docs examples).
pub const EXAMPLES: [&[&str]; 5] = [
    &["guide/base", "guide/token"],
    &["guide/base", "guide/anonymous"],
    &["api-key-tiers"],
    &["kuadrant-docs/api-key"],
    &["kuadrant-docs/jwt"],
];

/// The plugin images built into a fresh temp folder.
pub fn pins(tag: &str) -> Pins {
    let out = std::env::temp_dir().join(format!("infergate-pinned-{tag}-{}", std::process::id()));
    let wasm_dir: PathBuf = infergate_e2e::paths::plugin_wasm("auth")
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    images::build(
        &Inputs {
            wasm_dir,
            host_shim: None,
            wasm_server: None,
            version: env!("CARGO_PKG_VERSION").into(),
            source: images::DEFAULT_SOURCE.into(),
        },
        &out,
    )
    .unwrap();
    Pins::read(&out).unwrap()
}

/// An example rendered with images pinned to `pins` in `registry`.
pub fn render_pinned(parts: &[&str], pins: &Pins) -> Rendered {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let paths: Vec<PathBuf> = parts.iter().map(|p| root.join(p)).collect();
    let bundle = Bundle::load(&paths).unwrap();
    let mut opts = super::common::options();
    opts.images = ImageRefs {
        registry: "registry.example.com/infergate".into(),
        version: pins.version.clone(),
        pins: Some(pins.clone()),
        host_shim: None,
    };
    render(&bundle, &opts).unwrap_or_else(|e| panic!("{parts:?}: {e}"))
}
