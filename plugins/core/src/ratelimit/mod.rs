//! Rate limiting: configuration, the fixed-window counters shared by every Envoy worker, the
//! per-request decision, and the request flow ([`flow`]) the proxy-wasm adapter drives.
//!
//! Window algorithm: fixed windows aligned to multiples of the window length since the Unix
//! epoch (as Limitador counts), so every worker and every gateway replica agrees on where a
//! window starts and ends: a `1m` window always runs from `:00.000` to `:59.999`.

pub mod attrs;
pub mod config;
pub mod counter;
pub mod decision;
pub mod flow;
#[cfg(test)]
mod flow_tests;
pub mod headers;
pub mod host;
#[cfg(test)]
mod mock_host;
pub mod response;
pub mod rls;
pub mod verdict;
pub mod window;

pub use config::RateLimitConfig;
