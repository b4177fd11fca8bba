//! host-shim: the infergate sidecar.
//!
//! This build serves its health endpoint (`GET /healthz`) so the demo and deployments can
//! supervise it; endpoint discovery, metrics scraping and picks land with the host-shim issue.

pub mod health;
