//! Global mode: sending `ShouldRateLimit` calls to the rate limit service (Envoy RLS v3, e.g.
//! Limitador). What the answers mean is decided in [`infergate_core::ratelimit::verdict`].

use infergate_core::ratelimit::rls::{METHOD, SERVICE};
use proxy_wasm::traits::Context;
use proxy_wasm::types::Status;
use std::time::Duration;

/// Sends one encoded `RateLimitRequest` to `cluster` through the context's own
/// `dispatch_grpc_call` (the SDK routes the answer back only to the context that called);
/// the call's token, or why it could not be sent.
pub fn dispatch<C: Context + ?Sized>(
    ctx: &C,
    cluster: &str,
    message: &[u8],
    timeout_ms: u64,
) -> Result<u32, Status> {
    ctx.dispatch_grpc_call(
        cluster,
        SERVICE,
        METHOD,
        Vec::new(),
        Some(message),
        Duration::from_millis(timeout_ms),
    )
}
