//! infergate policy translator: Kuadrant `AuthPolicy` / `RateLimitPolicy` /
//! `TokenRateLimitPolicy`, llm-d `EndpointPickerConfig` and GIE `InferencePool` (plus the
//! Gateway and HTTPRoutes they target) in; the plugins' JSON configuration and the manifests
//! that run them (Istio WasmPlugin / EnvoyFilter, Envoy Gateway EnvoyExtensionPolicy, the
//! ORIGINAL_DST cluster patch, host-shim) and a local demo configuration out.

pub mod auth;
pub mod cel;
pub mod error;
pub mod identity_props;
pub mod images;
pub mod manifests;
pub mod metadata;
pub mod oci;
pub mod options;
pub mod platform;
pub mod ratelimit;
pub mod render;
pub mod resources;
pub mod shim_deploy;
pub mod topology;
pub mod versions;
pub mod wasm_files;

pub use error::{Error, Result};
pub use options::Options;
pub use render::{render, Rendered};
