//! The auth plugin's stats, all under `wasmcustom.infergate.auth.`, and which one each of
//! the flow's [`Stat`]s bumps.

use infergate_core::auth::flow::Stat;
use infergate_core::auth::{CalloutKind, DENIAL_REASONS};
use infergate_glue as glue;

/// Stats, all under `wasmcustom.infergate.auth.`.
#[derive(Clone, Default)]
pub(crate) struct Metrics {
    pub allowed: Option<u32>,
    /// Parallel to [`DENIAL_REASONS`].
    denied: Vec<Option<u32>>,
    token_review_callouts: Option<u32>,
    access_review_callouts: Option<u32>,
    metadata_callouts: Option<u32>,
    callout_failures: Option<u32>,
    cache_hits: Option<u32>,
    cache_misses: Option<u32>,
    pub jwks_fetched: Option<u32>,
    pub jwks_fetch_failed: Option<u32>,
}

impl Metrics {
    pub(crate) fn define() -> Self {
        let c = |n: &str| glue::counter(&format!("infergate.auth.{n}"));
        Self {
            allowed: c("allowed"),
            denied: DENIAL_REASONS
                .iter()
                .map(|r| c(&format!("denied.{r}")))
                .collect(),
            token_review_callouts: c("callouts.token_review"),
            access_review_callouts: c("callouts.access_review"),
            metadata_callouts: c("callouts.metadata"),
            callout_failures: c("callouts.failed"),
            cache_hits: c("cache.hits"),
            cache_misses: c("cache.misses"),
            jwks_fetched: c("jwks.fetched"),
            jwks_fetch_failed: c("jwks.fetch_failed"),
        }
    }

    pub(crate) fn counter(&self, stat: Stat) -> Option<u32> {
        match stat {
            Stat::Allowed => self.allowed,
            Stat::Denied(reason) => DENIAL_REASONS
                .iter()
                .position(|r| *r == reason)
                .and_then(|i| self.denied.get(i).copied().flatten()),
            Stat::Callout(CalloutKind::Token(_)) => self.token_review_callouts,
            Stat::Callout(CalloutKind::Access) => self.access_review_callouts,
            Stat::Callout(CalloutKind::Metadata(_)) => self.metadata_callouts,
            Stat::CalloutFailed => self.callout_failures,
            Stat::CacheHit => self.cache_hits,
            Stat::CacheMiss => self.cache_misses,
        }
    }
}
