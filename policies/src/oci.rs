//! OCI image layouts (image-spec v1.1 `oci-layout` + `index.json` + `blobs/sha256/…`), written
//! reproducibly and read back.
//!
//! Reproducible means the same files in give the same digests out: tar entries carry mtime 0,
//! uid/gid 0, fixed modes and no user names; gzip carries mtime 0 and a fixed level; the
//! config has no `created` time and JSON keys are written in a fixed order. That is what
//! `make images` relies on and what `policies/tests/images.rs` checks.

use flate2::{read::GzDecoder, Compression, GzBuilder};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

/// Media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip-compressed tar layer: the one Istio's and Envoy Gateway's Wasm
/// fetchers take `plugin.wasm` from (last layer).
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The index annotation naming a manifest's tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Errors reading or writing a layout, each naming the file or blob.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A filesystem or archive error.
    #[error("{what}: {source}")]
    Io {
        /// The file or blob.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A layout whose content does not have the expected shape.
    #[error("{what}: {message}")]
    Invalid {
        /// The file or blob.
        what: String,
        /// What is wrong.
        message: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> OciError {
    let what = what.into();
    move |source| OciError::Io { what, source }
}

fn invalid(what: impl Into<String>, message: impl Into<String>) -> OciError {
    OciError::Invalid {
        what: what.into(),
        message: message.into(),
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// One file of a layer.
#[derive(Debug, Clone)]
pub struct File {
    /// Path inside the image, relative (`plugin.wasm`, `wasm/infergate-auth.wasm`).
    pub path: String,
    /// Unix permission bits (`0o644`, `0o755`).
    pub mode: u32,
    /// Content.
    pub data: Vec<u8>,
}

/// A compressed layer and the digest of its uncompressed tar (the config's `diff_id`).
#[derive(Debug, Clone)]
pub struct Layer {
    /// The `tar+gzip` bytes.
    pub gz: Vec<u8>,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
}

/// Builds a layer from `files`, adding each parent folder once (mode 0755) before its files.
pub fn layer(files: &[File]) -> Result<Layer, OciError> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dirs: Vec<String> = Vec::new();
    for f in files {
        let mut parent = String::new();
        for part in f
            .path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, p)| p)
        {
            parent.push_str(part);
            parent.push('/');
            if !dirs.contains(&parent) {
                dirs.push(parent.clone());
                append(&mut tar, &parent, tar::EntryType::Directory, 0o755, &[])?;
            }
        }
        append(&mut tar, &f.path, tar::EntryType::Regular, f.mode, &f.data)?;
    }
    let tar = tar.into_inner().map_err(io("layer tar"))?;
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::new(9));
    gz.write_all(&tar).map_err(io("layer gzip"))?;
    let gz = gz.finish().map_err(io("layer gzip"))?;
    Ok(Layer {
        diff_id: digest(&tar),
        gz,
    })
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    data: &[u8],
) -> Result<(), OciError> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    tar.append_data(&mut h, path, data).map_err(io(path))
}

/// The parts of an image config we set.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `amd64`, `wasm`.
    pub architecture: String,
    /// `linux`, `wasip1`.
    pub os: String,
    /// `uid:gid` the container runs as (empty: unset).
    pub user: String,
    /// Entrypoint.
    pub entrypoint: Vec<String>,
    /// `9002/tcp`, …
    pub exposed_ports: Vec<String>,
    /// Image labels (also written as manifest annotations).
    pub labels: BTreeMap<String, String>,
}

/// A written image: its manifest's digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// `sha256:` of the manifest.
    pub digest: String,
    /// Manifest size in bytes.
    pub size: usize,
}

/// Writes an OCI image layout for one image at `dir` (replacing what was there), tagged `tag`.
pub fn write_layout(
    dir: &Path,
    tag: &str,
    config: &Config,
    layers: &[Layer],
) -> Result<Written, OciError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir.display().to_string()))?;
    }
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io(blobs.display().to_string()))?;
    let put = |bytes: &[u8]| -> Result<Value, OciError> {
        let d = digest(bytes);
        let path = blobs.join(d.trim_start_matches("sha256:"));
        std::fs::write(&path, bytes).map_err(io(path.display().to_string()))?;
        Ok(json!({"digest": d, "size": bytes.len()}))
    };
    let mut inner = serde_json::Map::new();
    if !config.user.is_empty() {
        inner.insert("User".into(), json!(config.user));
    }
    if !config.entrypoint.is_empty() {
        inner.insert("Entrypoint".into(), json!(config.entrypoint));
    }
    if !config.exposed_ports.is_empty() {
        let ports: BTreeMap<&str, Value> = config
            .exposed_ports
            .iter()
            .map(|p| (p.as_str(), json!({})))
            .collect();
        inner.insert("ExposedPorts".into(), json!(ports));
    }
    inner.insert("Labels".into(), json!(config.labels));
    let cfg = json!({
        "architecture": config.architecture,
        "os": config.os,
        "config": inner,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()},
    });
    let mut cfg_desc = put(&canonical(&cfg))?;
    cfg_desc["mediaType"] = json!(CONFIG_MEDIA_TYPE);
    let mut layer_descs = Vec::new();
    for l in layers {
        let mut d = put(&l.gz)?;
        d["mediaType"] = json!(LAYER_MEDIA_TYPE);
        layer_descs.push(d);
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": cfg_desc,
        "layers": layer_descs,
        "annotations": config.labels,
    });
    let manifest = canonical(&manifest);
    let mut m_desc = put(&manifest)?;
    m_desc["mediaType"] = json!(MANIFEST_MEDIA_TYPE);
    m_desc["annotations"] = json!({ REF_NAME: tag });
    let index = json!({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [m_desc]});
    let files = [
        (
            "oci-layout",
            canonical(&json!({"imageLayoutVersion": "1.0.0"})),
        ),
        ("index.json", canonical(&index)),
    ];
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(io(path.display().to_string()))?;
    }
    Ok(Written {
        digest: digest(&manifest),
        size: manifest.len(),
    })
}

/// JSON with keys sorted at every level (independent of serde_json's `preserve_order`).
fn canonical(v: &Value) -> Vec<u8> {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<&String, Value> =
                    m.iter().map(|(k, v)| (k, sort(v))).collect();
                let mut out = serde_json::Map::new();
                for (k, v) in sorted {
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_vec(&sort(v)).unwrap_or_default()
}

/// An image layout read back: its one manifest.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The layout folder.
    pub dir: std::path::PathBuf,
    /// The tag (`org.opencontainers.image.ref.name`).
    pub tag: String,
    /// `sha256:` of the manifest.
    pub digest: String,
    /// The manifest.
    pub manifest: Value,
    /// The image config.
    pub config: Value,
}

impl Layout {
    /// Reads the layout at `dir` (one manifest, blobs checked against their digests).
    pub fn read(dir: &Path) -> Result<Self, OciError> {
        let index_path = dir.join("index.json");
        let index: Value = serde_json::from_slice(
            &std::fs::read(&index_path).map_err(io(index_path.display().to_string()))?,
        )
        .map_err(|e| invalid(index_path.display().to_string(), e.to_string()))?;
        let [m] = index["manifests"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        else {
            return Err(invalid(
                index_path.display().to_string(),
                "manifests: expected exactly one image",
            ));
        };
        let digest = m["digest"].as_str().unwrap_or_default().to_string();
        let tag = m["annotations"][REF_NAME]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut layout = Layout {
            dir: dir.to_path_buf(),
            tag,
            digest: digest.clone(),
            manifest: Value::Null,
            config: Value::Null,
        };
        layout.manifest = layout.json_blob(&digest)?;
        let cfg = layout.manifest["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        layout.config = layout.json_blob(&cfg)?;
        Ok(layout)
    }

    /// A blob's bytes, checked against its digest.
    pub fn blob(&self, digest: &str) -> Result<Vec<u8>, OciError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                invalid(
                    self.dir.display().to_string(),
                    format!("digest `{digest}`: expected sha256:<64 hex>"),
                )
            })?;
        let path = self.dir.join("blobs/sha256").join(hex);
        let bytes = std::fs::read(&path).map_err(io(path.display().to_string()))?;
        if self::digest(&bytes) != digest {
            return Err(invalid(
                path.display().to_string(),
                "content does not match its digest",
            ));
        }
        Ok(bytes)
    }

    fn json_blob(&self, digest: &str) -> Result<Value, OciError> {
        serde_json::from_slice(&self.blob(digest)?).map_err(|e| {
            invalid(
                format!("{} blob {digest}", self.dir.display()),
                e.to_string(),
            )
        })
    }

    /// The file at `path` in the last layer (where the Wasm fetchers look for `plugin.wasm`).
    pub fn last_layer_file(&self, path: &str) -> Result<Vec<u8>, OciError> {
        let what = format!("{} last layer", self.dir.display());
        let last = self.manifest["layers"]
            .as_array()
            .and_then(|l| l.last())
            .ok_or_else(|| invalid(&what, "no layers"))?;
        if last["mediaType"] != LAYER_MEDIA_TYPE {
            return Err(invalid(
                &what,
                format!(
                    "mediaType {}, expected {LAYER_MEDIA_TYPE}",
                    last["mediaType"]
                ),
            ));
        }
        let gz = self.blob(last["digest"].as_str().unwrap_or_default())?;
        layer_file(&gz, path).map_err(|e| match e {
            OciError::Invalid { message, .. } => invalid(&what, message),
            OciError::Io { source, .. } => OciError::Io { what, source },
        })
    }
}

/// The file at `path` in a `tar+gzip` layer.
pub fn layer_file(gz: &[u8], path: &str) -> Result<Vec<u8>, OciError> {
    let mut archive = tar::Archive::new(GzDecoder::new(gz));
    for entry in archive.entries().map_err(io("layer"))? {
        let mut entry = entry.map_err(io("layer"))?;
        let name = entry
            .path()
            .map_err(io("layer"))?
            .to_string_lossy()
            .into_owned();
        if name == path {
            let mut out = Vec::new();
            entry.read_to_end(&mut out).map_err(io(path))?;
            return Ok(out);
        }
    }
    Err(invalid("layer", format!("{path} not found")))
}
