//! infergate's images and the references the manifests name them by.
//!
//! - `infergate-<plugin>` (auth, ratelimit, affinity): an OCI image manifest whose last (only)
//!   layer is `tar+gzip` holding `plugin.wasm`, the shape both Istio's WasmPlugin and Envoy
//!   Gateway's EnvoyExtensionPolicy pull.
//! - `host-shim`: the static host-shim binary, run as a non-root user, nothing else in it.
//! - `infergate-wasm-files`: the static `infergate-wasm-server` plus the three `.wasm` files,
//!   for the EnvoyFilter form whose `code.remote` loads them over HTTP with a sha256.
//!
//! [`build`] writes them as OCI layouts under one folder (`target/images/<name>/`);
//! [`Pins::read`] reads their digests back so `render` can name each image by digest.

use crate::oci::{self, Config, File, Layout, OciError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The plugins, in chain order.
pub const PLUGINS: [&str; 3] = ["auth", "ratelimit", "affinity"];
/// Image (and repository) name of host-shim.
pub const HOST_SHIM: &str = "host-shim";
/// Image name of the `.wasm` file server.
pub const WASM_FILES: &str = "infergate-wasm-files";
/// Port the `.wasm` file server listens on.
pub const WASM_FILES_PORT: u16 = 8080;
/// The uid:gid host-shim and the file server run as (no user database needed).
pub const NON_ROOT: &str = "65532:65532";
/// Default `org.opencontainers.image.source`.
pub const DEFAULT_SOURCE: &str = "https://github.com/infergate/infergate";

/// Image name of a plugin (`infergate-auth`).
pub fn plugin_image(plugin: &str) -> String {
    format!("infergate-{plugin}")
}

/// File the cargo build writes for a plugin (`infergate_auth.wasm`).
pub fn plugin_wasm_file(plugin: &str) -> String {
    format!("infergate_{plugin}.wasm")
}

/// What [`build`] takes.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Folder with the built plugins (`target/wasm32-wasip1/release`).
    pub wasm_dir: PathBuf,
    /// The static host-shim binary (skipped when `None`).
    pub host_shim: Option<PathBuf>,
    /// The static `infergate-wasm-server` binary (skipped when `None`).
    pub wasm_server: Option<PathBuf>,
    /// Tag and `org.opencontainers.image.version`.
    pub version: String,
    /// `org.opencontainers.image.source`.
    pub source: String,
}

/// Errors building or reading the images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A layout could not be written or read.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// An input file could not be read.
    #[error("{path}: {source}")]
    Input {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A layout is not what it should be.
    #[error("{0}")]
    Invalid(String),
}

fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(path).map_err(|source| ImageError::Input {
        path: path.display().to_string(),
        source,
    })
}

fn labels(title: &str, inputs: &Inputs) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "org.opencontainers.image.title".to_string(),
            title.to_string(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            inputs.version.clone(),
        ),
        (
            "org.opencontainers.image.source".to_string(),
            inputs.source.clone(),
        ),
        (
            "org.opencontainers.image.licenses".to_string(),
            "Apache-2.0".to_string(),
        ),
    ])
}

/// Builds every image into `out/<name>/`; returns `(name, manifest digest)` in build order.
pub fn build(inputs: &Inputs, out: &Path) -> Result<Vec<(String, String)>, ImageError> {
    let mut built = Vec::new();
    let mut wasm_files = Vec::new();
    for p in PLUGINS {
        let wasm = read(&inputs.wasm_dir.join(plugin_wasm_file(p)))?;
        let name = plugin_image(p);
        let layer = oci::layer(&[File {
            path: "plugin.wasm".into(),
            mode: 0o644,
            data: wasm.clone(),
        }])?;
        let config = Config {
            architecture: "wasm".into(),
            os: "wasip1".into(),
            labels: labels(&name, inputs),
            ..Config::default()
        };
        let w = oci::write_layout(&out.join(&name), &inputs.version, &config, &[layer])?;
        built.push((name.clone(), w.digest));
        wasm_files.push(File {
            path: format!("wasm/{name}.wasm"),
            mode: 0o644,
            data: wasm,
        });
    }
    let linux = |title: &str, entrypoint: &str, ports: &[u16]| Config {
        architecture: "amd64".into(),
        os: "linux".into(),
        user: NON_ROOT.into(),
        entrypoint: vec![entrypoint.into()],
        exposed_ports: ports.iter().map(|p| format!("{p}/tcp")).collect(),
        labels: labels(title, inputs),
    };
    if let Some(bin) = &inputs.host_shim {
        let layer = oci::layer(&[File {
            path: "host-shim".into(),
            mode: 0o755,
            data: read(bin)?,
        }])?;
        let config = linux(
            HOST_SHIM,
            "/host-shim",
            &[
                crate::render::HOST_SHIM_GRPC_PORT,
                crate::render::HOST_SHIM_HTTP_PORT,
            ],
        );
        let w = oci::write_layout(&out.join(HOST_SHIM), &inputs.version, &config, &[layer])?;
        built.push((HOST_SHIM.into(), w.digest));
    }
    if let Some(bin) = &inputs.wasm_server {
        let mut files = vec![File {
            path: "infergate-wasm-server".into(),
            mode: 0o755,
            data: read(bin)?,
        }];
        files.extend(wasm_files);
        let layer = oci::layer(&files)?;
        let config = linux(WASM_FILES, "/infergate-wasm-server", &[WASM_FILES_PORT]);
        let w = oci::write_layout(&out.join(WASM_FILES), &inputs.version, &config, &[layer])?;
        built.push((WASM_FILES.into(), w.digest));
    }
    Ok(built)
}

/// One built image, as the manifests pin it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// `sha256:` of the image manifest (what registries and Istio/Envoy Gateway check).
    pub digest: String,
    /// For plugins: hex sha256 of `plugin.wasm` (what Envoy's `code.remote` checks).
    pub wasm_sha256: Option<String>,
}

/// The built images' digests, read from their layouts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    /// The tag every layout carries.
    pub version: String,
    /// Image name → pin.
    pub images: BTreeMap<String, Pin>,
}

impl Pins {
    /// Reads `dir/<name>/` for every image name; the plugin images are required, host-shim
    /// and the file server are read when present. All must carry the same tag.
    pub fn read(dir: &Path) -> Result<Self, ImageError> {
        let mut pins = Pins::default();
        let names = PLUGINS.iter().map(|p| (plugin_image(p), true)).chain([
            (HOST_SHIM.to_string(), false),
            (WASM_FILES.to_string(), false),
        ]);
        for (name, required) in names {
            let path = dir.join(&name);
            if !required && !path.join("index.json").is_file() {
                continue;
            }
            let layout = Layout::read(&path)?;
            if pins.version.is_empty() {
                pins.version = layout.tag.clone();
            } else if pins.version != layout.tag {
                return Err(ImageError::Invalid(format!(
                    "{}: tag `{}` differs from the other images' `{}`: rebuild with `make images`",
                    path.display(),
                    layout.tag,
                    pins.version
                )));
            }
            let wasm_sha256 = if name == HOST_SHIM || name == WASM_FILES {
                None
            } else {
                let wasm = layout.last_layer_file("plugin.wasm")?;
                Some(oci::digest(&wasm).trim_start_matches("sha256:").to_string())
            };
            pins.images.insert(
                name,
                Pin {
                    digest: layout.digest,
                    wasm_sha256,
                },
            );
        }
        Ok(pins)
    }
}

/// Where the images are pulled from and which ones: what `render` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRefs {
    /// Registry and prefix (`ghcr.io/infergate`, `127.0.0.1:5000/infergate`).
    pub registry: String,
    /// Tag used when an image is not pinned.
    pub version: String,
    /// Digests of the built images (references by digest when present).
    pub pins: Option<Pins>,
    /// host-shim image given explicitly (`--host-shim-image`), used as is.
    pub host_shim: Option<String>,
}

impl Default for ImageRefs {
    fn default() -> Self {
        Self {
            registry: "ghcr.io/infergate".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            pins: None,
            host_shim: None,
        }
    }
}

impl ImageRefs {
    fn pin(&self, image: &str) -> Option<&Pin> {
        self.pins.as_ref().and_then(|p| p.images.get(image))
    }

    /// `registry/image@sha256:…` when pinned, else `registry/image:version`.
    pub fn reference(&self, image: &str) -> String {
        match self.pin(image) {
            Some(p) => format!("{}/{image}@{}", self.registry, p.digest),
            None => format!("{}/{image}:{}", self.registry, self.version),
        }
    }

    /// host-shim's container image.
    pub fn host_shim_image(&self) -> String {
        self.host_shim
            .clone()
            .unwrap_or_else(|| self.reference(HOST_SHIM))
    }

    /// A plugin's image reference (without `oci://`).
    pub fn plugin(&self, plugin: &str) -> String {
        self.reference(&plugin_image(plugin))
    }

    /// Hex sha256 of a plugin's image manifest, when pinned (WasmPlugin / EnvoyExtensionPolicy
    /// `sha256`).
    pub fn plugin_manifest_sha256(&self, plugin: &str) -> Option<String> {
        self.pin(&plugin_image(plugin))
            .map(|p| p.digest.trim_start_matches("sha256:").to_string())
    }

    /// Hex sha256 of a plugin's `.wasm`, when pinned (EnvoyFilter `code.remote.sha256`).
    pub fn plugin_wasm_sha256(&self, plugin: &str) -> Option<String> {
        self.pin(&plugin_image(plugin))
            .and_then(|p| p.wasm_sha256.clone())
    }
}
