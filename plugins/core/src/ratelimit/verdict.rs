//! What a rate limit service's `ShouldRateLimit` answer means for a request (global mode).
//!
//! Global mode counts in an Envoy RLS v3 service (e.g. Limitador) shared by several gateway
//! replicas. The request's calls carry `hits_addend` (as Kuadrant's shim calls Limitador); token
//! usage above the up-front estimate is added afterwards (the service cannot refund, so an
//! estimate above the real usage stays charged: global token budgets err on the safe side).

use super::config::Counts;
use super::decision::RateStatus;
use super::headers;
use super::rls::{self, Code, Descriptor};

/// What a `ShouldRateLimit` answer means for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Within every limit.
    Ok {
        /// Status per descriptor.
        status: Vec<RateStatus>,
        /// The service's `response_headers_to_add`, checked ([`headers::from_service`]).
        headers: Vec<(String, String)>,
    },
    /// Over a limit.
    OverLimit {
        /// Name of a limit that was hit.
        name: String,
        /// Seconds until it resets (at least 1).
        retry_after_secs: u64,
        /// Status per descriptor.
        status: Vec<RateStatus>,
        /// The service's `response_headers_to_add`, checked ([`headers::from_service`]).
        headers: Vec<(String, String)>,
    },
    /// The service failed or answered garbage.
    Failed,
}

/// Interprets a response for the `descriptors` that were sent. Without descriptor statuses
/// (Limitador sends none), `Retry-After` comes from the service's `X-RateLimit-Reset` header
/// (seconds, as Limitador's `DRAFT_VERSION_03` headers give it), else 1 s.
pub fn verdict(
    grpc_status: u32,
    body: Option<Vec<u8>>,
    descriptors: &[Descriptor],
    counts: Counts,
) -> Verdict {
    if grpc_status != 0 {
        return Verdict::Failed;
    }
    let Ok(resp) = rls::decode_response(&body.unwrap_or_default()) else {
        return Verdict::Failed;
    };
    let status: Vec<RateStatus> = resp
        .statuses
        .iter()
        .zip(descriptors)
        .filter_map(|(s, d)| {
            let name = d.first().map(|(_, v)| v.clone())?;
            let window_ms = s.unit_secs? * 1000;
            Some(RateStatus {
                name,
                counts,
                limit: u64::from(s.limit?),
                remaining: u64::from(s.remaining),
                window_ms,
                reset_ms: s.reset_secs.map_or(window_ms, |r| r * 1000),
            })
        })
        .collect();
    let headers = headers::from_service(&resp.headers);
    match resp.overall {
        Code::Ok => Verdict::Ok { status, headers },
        Code::OverLimit => {
            let hit = resp
                .statuses
                .iter()
                .zip(descriptors)
                .find(|(s, _)| s.code == Some(Code::OverLimit));
            // Without statuses, a single descriptor is the one that was hit.
            let only = match descriptors {
                [only] => Some(only),
                _ => None,
            };
            let hit_descriptor = hit.map(|(_, d)| d).or(only);
            let name = hit_descriptor
                .and_then(|d| d.first().map(|(_, v)| v.clone()))
                .unwrap_or_default();
            let service_reset = headers
                .iter()
                .find(|(n, _)| n == "x-ratelimit-reset")
                .and_then(|(_, v)| v.parse::<u64>().ok());
            let retry_after_secs = hit
                .and_then(|(s, _)| s.reset_secs.or(s.unit_secs))
                .or(service_reset)
                .unwrap_or(1)
                .max(1);
            Verdict::OverLimit {
                name,
                retry_after_secs,
                status,
                headers,
            }
        }
        Code::Unknown => Verdict::Failed,
    }
}
