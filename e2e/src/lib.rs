//! The infergate end-to-end kit: a harness that runs the real Envoy with our Wasm plugins, a
//! TLS certificate authority for its HTTPS listener, a minimal OpenAI-compatible upstream, and
//! the local stack launcher behind `make demo`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use infergate_e2e::envoy::{Envoy, GatewaySpec, WasmFilter};
//! let spec = GatewaySpec::default()
//!     .with_filter(WasmFilter::plugin("affinity", r#"{"endpoints":["127.0.0.1:9001"]}"#)?);
//! let envoy = Envoy::start(&spec).await?;
//! println!("{}", envoy.http_url());
//! # Ok(()) }
//! ```

pub mod bench_compare;
pub mod child;
pub mod cpus;
pub mod demo;
pub mod envoy;
pub mod global_rls;
pub mod hold;
pub mod kube_api;
pub mod limitador;
pub mod loadgen;
pub mod paths;
pub mod redis;
pub mod rls;
pub mod tier_service;
pub mod tls;
pub mod token_review;
pub mod upstream;
