//! Envoy circuit-breaker thresholds for every cluster infergate renders or starts, and the
//! answer Envoy gives if one still overflows. Defined once here so the test harness, the demo
//! and the rendered Istio / Envoy Gateway patches cannot drift apart.
//!
//! Envoy's defaults (1,024 connections, pending requests and requests per cluster and
//! priority) suit short RPCs. LLM streams stay open for minutes, so a busy gateway passes
//! 1,024 concurrent streams long before its pods are full, and Envoy then answers
//! `503 upstream connect error … overflow` itself (`upstream_rq_pending_overflow`). Load is
//! bounded by host-shim's saturation answer (429 with `Retry-After`) and by the pods, not by
//! these counters; they stay as a memory guard far above any real concurrency. If one trips
//! anyway, [`overflow_local_reply`] turns Envoy's plain-text page into an OpenAI error with
//! `Retry-After`.

use crate::openai_error::{self, ErrorKind};
use serde_json::{json, Value};

/// One cluster's circuit-breaker thresholds (Envoy `CircuitBreakers.Thresholds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Upstream connections (with HTTP/1.1 upstreams, one per stream in flight).
    pub max_connections: u32,
    /// Requests waiting for a connection.
    pub max_pending_requests: u32,
    /// Requests in flight (HTTP/2 streams or HTTP/1.1 requests).
    pub max_requests: u32,
    /// Retries in flight.
    pub max_retries: u32,
}

/// The model cluster (ORIGINAL_DST to the pods): 16× Envoy's default, so 4,096 streams in
/// flight per gateway (the load-test target) leave a 4× margin. Each HTTP/1.1 stream holds
/// one upstream and one downstream socket: raise the gateway's open-file limit with it.
pub const MODEL_STREAMS: Thresholds = Thresholds {
    max_connections: 16_384,
    max_pending_requests: 16_384,
    max_requests: 16_384,
    max_retries: 1_024,
};

/// Side calls made once per request at most (host-shim picks, rate-limit service, JWKS,
/// TokenReview, ext_proc): as many as the model streams they serve.
pub const SIDE_CALLS: Thresholds = MODEL_STREAMS;

impl Thresholds {
    /// The `circuit_breakers` object of an Envoy v3 cluster: the same thresholds for the
    /// `DEFAULT` and `HIGH` routing priorities.
    pub fn to_envoy(&self) -> Value {
        let one = |priority: &str| {
            json!({
                "priority": priority,
                "max_connections": self.max_connections,
                "max_pending_requests": self.max_pending_requests,
                "max_requests": self.max_requests,
                "max_retries": self.max_retries,
            })
        };
        json!({"thresholds": [one("DEFAULT"), one("HIGH")]})
    }
}

/// Seconds a client is told to wait after an overflow answer.
pub const OVERFLOW_RETRY_AFTER_SECS: u32 = 1;

/// The OpenAI error body of an overflow answer.
pub fn overflow_body() -> String {
    String::from_utf8_lossy(&openai_error::body(
        ErrorKind::Unavailable,
        "overloaded",
        "The gateway has too many requests in flight; retry shortly.",
    ))
    .into_owned()
}

/// The HTTP connection manager's `local_reply_config`: a request Envoy itself rejects because
/// a circuit breaker is open (response flag `UO`) gets a 503 with `Retry-After` and an OpenAI
/// error body, instead of Envoy's plain-text overflow page. Other local replies (the plugins'
/// own answers included) are left alone.
pub fn overflow_local_reply() -> Value {
    json!({
        "mappers": [{
            "filter": {"response_flag_filter": {"flags": ["UO"]}},
            "status_code": 503,
            "headers_to_add": [{
                "header": {"key": "retry-after", "value": OVERFLOW_RETRY_AFTER_SECS.to_string()},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"
            }],
            "body_format_override": {
                "text_format_source": {"inline_string": overflow_body()},
                "content_type": "application/json"
            }
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_cover_both_priorities_above_the_load_target() {
        let v = MODEL_STREAMS.to_envoy();
        let t = v["thresholds"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["priority"], "DEFAULT");
        assert_eq!(t[1]["priority"], "HIGH");
        for t in t {
            for k in ["max_connections", "max_pending_requests", "max_requests"] {
                assert!(t[k].as_u64().unwrap() >= 4096, "{k}");
            }
        }
    }

    #[test]
    fn overflow_answer_is_an_openai_error_without_format_operators() {
        let body = overflow_body();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["code"], "overloaded");
        // Envoy's text format treats `%` as a command operator.
        assert!(!body.contains('%'));
        let m = &overflow_local_reply()["mappers"][0];
        assert_eq!(m["filter"]["response_flag_filter"]["flags"][0], "UO");
        assert_eq!(m["headers_to_add"][0]["header"]["key"], "retry-after");
    }
}
