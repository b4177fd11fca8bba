//! Readiness: only endpoints that answered their last scrape, with metrics no older than the
//! staleness bound, are candidates. An endpoint that stops answering leaves the picks at its
//! first failed scrape and comes back at its first good one.

use crate::clock::Timestamp;
use crate::endpoint::{EndpointState, EngineMetrics};
use std::time::Duration;

/// The endpoint's metrics if it is ready at `now`.
pub fn fresh_metrics(
    state: &EndpointState,
    now: Timestamp,
    staleness: Duration,
) -> Option<EngineMetrics> {
    state.fresh_metrics(now, staleness).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::EngineMetrics;

    #[test]
    fn stale_unreachable_and_unscraped_are_not_ready() {
        let e = "10.0.0.1:80".parse().unwrap();
        let s = Duration::from_secs(2);
        let ok = EndpointState::scraped(e, EngineMetrics::default(), Duration::from_secs(10));
        assert!(fresh_metrics(&ok, Duration::from_secs(12), s).is_some());
        assert!(fresh_metrics(&ok, Duration::from_millis(12_001), s).is_none());
        let down = EndpointState {
            reachable: false,
            ..ok
        };
        assert!(fresh_metrics(&down, Duration::from_secs(10), s).is_none());
        assert!(fresh_metrics(&EndpointState::unscraped(e), Duration::ZERO, s).is_none());
    }
}
