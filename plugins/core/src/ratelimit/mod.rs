//! Rate limiting: configuration, the fixed-window counters shared by every Envoy worker, and
//! the per-request decision.
//!
//! Window algorithm: fixed windows aligned to multiples of the window length since the Unix
//! epoch (as Limitador counts), so every worker and every gateway replica agrees on where a
//! window starts and ends: a `1m` window always runs from `:00.000` to `:59.999`.

pub mod config;
pub mod counter;
pub mod decision;
pub mod headers;
pub mod rls;
pub mod window;

pub use config::RateLimitConfig;
