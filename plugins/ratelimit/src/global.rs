//! Global mode: sending `ShouldRateLimit` calls to the rate limit service (Envoy RLS v3, e.g.
//! Limitador). What the answers mean is decided in [`infergate_core::ratelimit::verdict`].

use infergate_core::ratelimit::rls::{METHOD, SERVICE};
use infergate_glue::host::{self, HostError};
use std::time::Duration;

/// Sends one encoded `RateLimitRequest` to `cluster` (the SDK routes the answer back to the
/// context whose callback is running); the call's token, or why it could not be sent.
pub fn dispatch(cluster: &str, message: &[u8], timeout_ms: u64) -> Result<u32, HostError> {
    host::grpc_call(
        cluster,
        SERVICE,
        METHOD,
        message,
        Duration::from_millis(timeout_ms),
    )
}
