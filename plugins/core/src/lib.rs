//! Host-independent logic shared by the infergate Wasm plugins and the host-shim sidecar.
//!
//! Nothing in this crate knows about proxy-wasm: the plugin crates are thin adapters that feed
//! request data in and turn the answers into host calls. Everything here is unit-tested natively
//! and also compiled to `wasm32-wasip1` and tested there (`make test-core-wasm`).

pub mod affinity;
pub mod attributes;
pub mod auth;
pub mod config;
pub mod endpoint;
pub mod envoy_limits;
pub mod header_hold;
pub mod headers;
pub mod openai;
pub mod openai_error;
pub mod pick_wire;
pub mod prefix;
pub mod ratelimit;
pub mod stream;
#[cfg(test)]
mod testkit;
