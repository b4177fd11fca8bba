//! Whole requests through the rate-limit [`Flow`] and the [`MockHost`].

use super::config::RateLimitConfig;
use super::counter::read;
use super::flow::{Event, Flow, Phase, Policy, Step};
use super::mock_host::{respond, send, MockHost};
use super::rls;
use crate::config::parse;
use crate::stream::StreamHost;

const CHAT: &str = "/v1/chat/completions";
const HOUR_MS: u64 = 3_600_000;

fn policy(json: &str) -> Policy {
    Policy::new(parse::<RateLimitConfig>(json.as_bytes()).unwrap())
}

/// A token budget of `limit` per hour per user, holding headers.
fn tokens(limit: u64, extra: &str) -> Policy {
    policy(&format!(
        r#"{{"limits":[{{"name":"tok","rates":[{{"limit":{limit},"window":"1h"}}],"counters":["identity.userid"],"counts":"tokens"}}],
            "allowOnHeadersStopIteration":true{extra}}}"#
    ))
}

/// Tokens counted for `user` in the current hour.
fn charged(host: &MockHost, user: &str) -> u64 {
    read(
        &host.store,
        &format!("ig-rl|tok|0|{HOUR_MS}|{user}"),
        host.now_ms / HOUR_MS,
    )
}

fn chat(body_extra: &str) -> String {
    format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"hello there"}}],"max_tokens":100{body_extra}}}"#
    )
}

fn usage_json(prompt: u64, completion: u64) -> String {
    format!(
        r#"{{"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{}}}}}"#,
        prompt + completion
    )
}

/// Answers 200 with a JSON body holding `usage` and ends the stream.
fn respond_json(flow: &mut Flow, host: &mut MockHost, p: &Policy, usage: &str) {
    respond(flow, host, p, 200, "application/json", &[usage]);
}

/// Encodes a `RateLimitResponse`: overall code and one status per descriptor
/// `(code, requests_per_unit, unit, remaining)` (unit 2 = minute).
fn rls_answer(overall: u8, statuses: &[(u8, u8, u8, u8)]) -> Vec<u8> {
    let mut out = vec![0x08, overall];
    for &(code, limit, unit, remaining) in statuses {
        let status = vec![
            0x08, code, 0x12, 4, 0x08, limit, 0x10, unit, 0x18, remaining,
        ];
        out.extend([0x12, status.len() as u8]);
        out.extend(status);
    }
    out
}

#[test]
fn request_limit_allows_then_answers_429() {
    let p = policy(
        r#"{"limits":[{"name":"per-user","rates":[{"limit":2,"window":"1m"}],"counters":["identity.userid"]}],"responseHeaders":"draft"}"#,
    );
    let get = [
        (":method", "GET"),
        (":path", "/v1/models"),
        ("x-infergate-user", "alice"),
    ];
    let mut host = MockHost::new(&get);
    for remaining in [1, 0] {
        let mut flow = Flow::new();
        assert_eq!(send(&mut flow, &mut host, &p), Step::Continue);
        assert!(matches!(flow.phase(), Phase::Forwarded));
        respond(&mut flow, &mut host, &p, 200, "application/json", &["{}"]);
        let current = host.response_header_value("ratelimit").unwrap();
        assert!(current.contains(&format!("r={remaining}")), "{current}");
        host = host.next(&get, "");
    }
    let mut flow = Flow::new();
    assert_eq!(send(&mut flow, &mut host, &p), Step::Pause);
    assert!(matches!(flow.phase(), Phase::Answered));
    let reply = host.reply.clone().unwrap();
    assert_eq!(
        (reply.status, reply.code.as_str()),
        (429, "rate_limit_exceeded")
    );
    assert!(reply.headers.iter().any(|(k, _)| k == "retry-after"));
    assert_eq!(host.counted(Event::Limited), 1);
    // A later body callback does not let the answered request through.
    assert_eq!(flow.on_request_body(&mut host, &p, 10, true), Step::Pause);
    // Another user has their own counter.
    let mut bob = host.next(
        &[
            (":method", "GET"),
            (":path", "/"),
            ("x-infergate-user", "bob"),
        ],
        "",
    );
    assert_eq!(send(&mut Flow::new(), &mut bob, &p), Step::Continue);
}

#[test]
fn token_usage_below_the_estimate_is_refunded() {
    let p = tokens(10_000, "");
    let mut host = MockHost::post(CHAT, "alice", &chat(""));
    let mut flow = Flow::new();
    // Headers are held until the body is read; then the estimate is charged.
    assert_eq!(flow.on_request_headers(&mut host, &p, false), Step::Pause);
    assert!(matches!(flow.phase(), Phase::AwaitingBody { .. }));
    let size = host.request_body.len();
    assert_eq!(
        flow.on_request_body(&mut host, &p, size / 2, false),
        Step::Pause
    );
    assert_eq!(
        flow.on_request_body(&mut host, &p, size, true),
        Step::Continue
    );
    let estimate = charged(&host, "alice");
    assert!(
        estimate > 100,
        "estimate {estimate} includes the 100-token cap"
    );
    assert!(host.summary.is_some(), "the parse is handed on");
    respond_json(&mut flow, &mut host, &p, &usage_json(5, 10));
    assert_eq!(charged(&host, "alice"), 15);
    assert!(matches!(flow.phase(), Phase::Settled));
    assert_eq!(host.counted(Event::Settled), 1);
}

#[test]
fn token_usage_above_the_estimate_is_charged() {
    let p = tokens(10_000, "");
    let mut host = MockHost::post(CHAT, "alice", &chat(""));
    let mut flow = Flow::new();
    assert_eq!(send(&mut flow, &mut host, &p), Step::Continue);
    let estimate = charged(&host, "alice");
    respond_json(&mut flow, &mut host, &p, &usage_json(900, 100));
    assert!(estimate < 1000);
    assert_eq!(charged(&host, "alice"), 1000);
    // The budget is now spent down to 9000: a request whose estimate does not fit is refused.
    let mut next = host.next(
        &[
            (":method", "POST"),
            (":path", CHAT),
            ("x-infergate-user", "alice"),
        ],
        &chat("").replace("100", "9500"),
    );
    let mut flow = Flow::new();
    assert_eq!(send(&mut flow, &mut next, &p), Step::Pause);
    assert_eq!(next.stream.reply.unwrap().status, 429);
}

#[test]
fn response_without_usage_keeps_the_estimate_and_errors_charge_nothing() {
    let p = tokens(10_000, "");
    let mut host = MockHost::post(CHAT, "alice", &chat(""));
    let mut flow = Flow::new();
    send(&mut flow, &mut host, &p);
    let estimate = charged(&host, "alice");
    respond(&mut flow, &mut host, &p, 200, "application/json", &["{}"]);
    assert_eq!(charged(&host, "alice"), estimate);
    assert_eq!(host.counted(Event::UsageMissing), 1);
    assert!(host.warnings[0].contains("no usage"), "{:?}", host.warnings);

    let mut host = host.next(
        &[
            (":method", "POST"),
            (":path", CHAT),
            ("x-infergate-user", "alice"),
        ],
        &chat(""),
    );
    let mut flow = Flow::new();
    send(&mut flow, &mut host, &p);
    assert_eq!(charged(&host, "alice"), 2 * estimate);
    respond(
        &mut flow,
        &mut host,
        &p,
        503,
        "text/plain",
        &["upstream down"],
    );
    assert_eq!(
        charged(&host, "alice"),
        estimate,
        "the failed request is refunded"
    );
}

#[test]
fn stream_usage_is_asked_for_stripped_and_settled() {
    let p = tokens(10_000, r#","usageStats":{"users":["alice"]}"#);
    let mut host = MockHost::post(CHAT, "alice", &chat(r#","stream":true"#));
    let mut flow = Flow::new();
    assert_eq!(send(&mut flow, &mut host, &p), Step::Continue);
    let body = String::from_utf8(host.request_body.clone()).unwrap();
    assert!(body.contains("include_usage"), "{body}");
    assert_eq!(
        host.request_header_value("content-length"),
        Some(body.len().to_string())
    );
    assert_eq!(host.counted(Event::UsageInjected), 1);
    let received = respond(
        &mut flow,
        &mut host,
        &p,
        200,
        "text/event-stream",
        &[
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\ndata: [DONE]\n\n",
        ],
    );
    assert!(!received.contains("usage"), "{received}");
    assert!(received.contains("[DONE]"), "{received}");
    assert_eq!(host.response_header_value("content-length"), None);
    assert_eq!(charged(&host, "alice"), 10);
    let (user, model, usage) = host.usage[0].clone();
    assert_eq!(
        (user.as_deref(), model.as_deref()),
        (Some("alice"), Some("m"))
    );
    assert_eq!((usage.prompt, usage.completion), (7, 3));
}

#[test]
fn stream_cut_before_its_usage_charges_what_was_streamed() {
    let p = tokens(10_000, "");
    let mut host = MockHost::post(CHAT, "alice", &chat(r#","stream":true"#));
    let mut flow = Flow::new();
    send(&mut flow, &mut host, &p);
    let estimate = charged(&host, "alice");
    let words = "word ".repeat(40);
    let chunk = format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{words}\"}}}}]}}\n\n"
    );
    respond(
        &mut flow,
        &mut host,
        &p,
        200,
        "text/event-stream",
        &[&chunk],
    );
    let settled = charged(&host, "alice");
    assert!(settled > 0 && settled < estimate, "{settled} of {estimate}");
    assert_eq!(host.counted(Event::Settled), 1);
}

#[test]
fn body_too_large_is_answered_413() {
    let p = tokens(10_000, r#","maxBodyBytes":64"#);
    // Declared too large: refused at the headers.
    let mut host = MockHost::post(CHAT, "alice", &chat(""));
    let mut flow = Flow::new();
    assert_eq!(flow.on_request_headers(&mut host, &p, false), Step::Pause);
    assert_eq!(host.reply.as_ref().unwrap().status, 413);
    // Streamed without a length: refused once the buffer passes the limit.
    let mut host = MockHost::post(CHAT, "alice", &chat(""));
    host.set_request_header("content-length", None);
    let mut flow = Flow::new();
    assert_eq!(flow.on_request_headers(&mut host, &p, false), Step::Pause);
    assert_eq!(flow.on_request_body(&mut host, &p, 40, false), Step::Pause);
    assert!(host.reply.is_none());
    assert_eq!(flow.on_request_body(&mut host, &p, 80, false), Step::Pause);
    assert_eq!(host.reply.as_ref().unwrap().status, 413);
    assert_eq!(charged(&host, "alice"), 0);
}

#[test]
fn malformed_body_is_answered_400_uncharged() {
    let p = tokens(10_000, "");
    let mut host = MockHost::post(CHAT, "alice", r#"{"model": 3}"#);
    let mut flow = Flow::new();
    assert_eq!(send(&mut flow, &mut host, &p), Step::Pause);
    assert_eq!(host.reply.as_ref().unwrap().status, 400);
    flow.on_log(&mut host, &p);
    assert_eq!(charged(&host, "alice"), 0);
}

#[test]
fn no_hold_mode_lets_headers_go_and_drops_content_length() {
    let p = policy(
        r#"{"limits":[{"name":"tok","rates":[{"limit":10000,"window":"1h"}],"counters":["identity.userid"],"counts":"tokens"}]}"#,
    );
    let mut host = MockHost::post(CHAT, "alice", &chat(r#","stream":true"#));
    let mut flow = Flow::new();
    assert_eq!(
        flow.on_request_headers(&mut host, &p, false),
        Step::Continue
    );
    assert_eq!(host.request_header_value("content-length"), None);
    let size = host.request_body.len();
    assert_eq!(
        flow.on_request_body(&mut host, &p, size, true),
        Step::Continue
    );
    // The body grew; no content-length is set from the body callback.
    assert!(host.request_body.len() > size);
    assert_eq!(host.request_header_value("content-length"), None);
}

const GLOBAL_REQUESTS: &str = r#"{"limits":[{"name":"per-user","rates":[{"limit":5,"window":"1m"}],"counters":["identity.userid"]}],
    "global":{"cluster":"limitador","domain":"ig","timeoutMs":250,"failureMode":"MODE"},"responseHeaders":"draft"}"#;

fn global(mode: &str) -> Policy {
    policy(&GLOBAL_REQUESTS.replace("MODE", mode))
}

fn get_alice() -> MockHost {
    MockHost::new(&[
        (":method", "GET"),
        (":path", "/v1/models"),
        ("x-infergate-user", "alice"),
    ])
}

#[test]
fn rls_answer_within_limits_resumes() {
    let p = global("deny");
    let mut host = get_alice();
    let mut flow = Flow::new();
    assert_eq!(send(&mut flow, &mut host, &p), Step::Pause);
    assert!(matches!(flow.phase(), Phase::AwaitingRls { .. }));
    let call = host.dispatched[0].clone();
    assert_eq!((call.cluster.as_str(), call.timeout_ms), ("limitador", 250));
    let descriptors = vec![vec![
        ("limit".to_string(), "per-user".to_string()),
        ("k0".to_string(), "alice".to_string()),
    ]];
    assert_eq!(call.message, rls::encode_request("ig", &descriptors, 1));
    // The body waits with the headers.
    assert_eq!(flow.on_request_body(&mut host, &p, 0, true), Step::Pause);
    // An unknown token changes nothing.
    flow.on_rls_answer(&mut host, &p, 99, 0, Some(rls_answer(1, &[(1, 5, 2, 4)])));
    assert_eq!(host.resumed, 0);
    flow.on_rls_answer(&mut host, &p, 1, 0, Some(rls_answer(1, &[(1, 5, 2, 4)])));
    assert_eq!(host.resumed, 1);
    assert!(matches!(flow.phase(), Phase::Forwarded));
    respond(&mut flow, &mut host, &p, 200, "application/json", &["{}"]);
    assert_eq!(
        host.response_header_value("ratelimit").as_deref(),
        Some("\"per-user\";r=4;t=60")
    );
}

#[test]
fn rls_over_limit_answers_429() {
    let p = global("deny");
    let mut host = get_alice();
    let mut flow = Flow::new();
    send(&mut flow, &mut host, &p);
    flow.on_rls_answer(&mut host, &p, 1, 0, Some(rls_answer(2, &[(2, 5, 2, 0)])));
    assert_eq!(host.resumed, 0);
    let reply = host.reply.clone().unwrap();
    assert_eq!(reply.status, 429);
    assert!(reply.headers.contains(&("retry-after".into(), "60".into())));
}

#[test]
fn rls_timeout_follows_the_failure_mode() {
    // gRPC DEADLINE_EXCEEDED (4) with no body: the call timed out.
    let p = global("deny");
    let mut host = get_alice();
    let mut flow = Flow::new();
    send(&mut flow, &mut host, &p);
    flow.on_rls_answer(&mut host, &p, 1, 4, None);
    assert_eq!(host.reply.as_ref().unwrap().status, 500);
    assert_eq!(host.reply.as_ref().unwrap().code, "ratelimit_unavailable");
    assert_eq!(host.resumed, 0);

    let p = global("allow");
    let mut host = get_alice();
    let mut flow = Flow::new();
    send(&mut flow, &mut host, &p);
    flow.on_rls_answer(&mut host, &p, 1, 4, None);
    assert!(host.reply.is_none());
    assert_eq!(host.resumed, 1);
    assert_eq!(host.counted(Event::StoreFailed), 1);

    // Garbage from the service counts as a failure too.
    let p = global("deny");
    let mut host = get_alice();
    let mut flow = Flow::new();
    send(&mut flow, &mut host, &p);
    flow.on_rls_answer(&mut host, &p, 1, 0, Some(vec![0x12, 50, 1]));
    assert_eq!(host.reply.as_ref().unwrap().status, 500);
}

#[test]
fn rls_unreachable_follows_the_failure_mode() {
    for (mode, step, status) in [
        ("deny", Step::Pause, Some(500)),
        ("allow", Step::Continue, None),
    ] {
        let p = global(mode);
        let mut host = get_alice();
        host.dispatch_fails = true;
        let mut flow = Flow::new();
        assert_eq!(send(&mut flow, &mut host, &p), step, "{mode}");
        assert_eq!(host.stream.reply.map(|r| r.status), status, "{mode}");
    }
}

#[test]
fn global_token_usage_above_the_estimate_is_queued() {
    let p = policy(
        r#"{"limits":[{"name":"tok","rates":[{"limit":100000,"window":"1h"}],"counters":["identity.userid"],"counts":"tokens"}],
            "global":{"cluster":"limitador"},"allowOnHeadersStopIteration":true}"#,
    );
    let mut host = MockHost::post(CHAT, "alice", &chat(""));
    let mut flow = Flow::new();
    assert_eq!(send(&mut flow, &mut host, &p), Step::Pause);
    flow.on_rls_answer(&mut host, &p, 1, 0, Some(rls_answer(1, &[(1, 100, 3, 50)])));
    assert_eq!(host.resumed, 1);
    respond_json(&mut flow, &mut host, &p, &usage_json(2000, 500));
    assert_eq!(host.queued.len(), 1);
    let (descriptors, extra) = host.queued[0].clone();
    assert_eq!(descriptors[0][0], ("limit".to_string(), "tok".to_string()));
    assert!(extra > 2000 && extra < 2500, "{extra}");

    // Usage below the estimate: the service cannot refund, nothing is queued.
    let mut host = MockHost::post(CHAT, "alice", &chat(""));
    let mut flow = Flow::new();
    send(&mut flow, &mut host, &p);
    flow.on_rls_answer(&mut host, &p, 1, 0, Some(rls_answer(1, &[(1, 100, 3, 50)])));
    respond_json(&mut flow, &mut host, &p, &usage_json(1, 1));
    assert!(host.queued.is_empty());
}

#[test]
fn nothing_configured_passes_untouched() {
    let p = policy("{}");
    let mut host = MockHost::post(CHAT, "alice", &chat(""));
    let mut flow = Flow::new();
    assert_eq!(send(&mut flow, &mut host, &p), Step::Continue);
    respond_json(&mut flow, &mut host, &p, &usage_json(1, 1));
    assert!(host.events.is_empty());
    assert!(host.summary.is_none());
}

/// Limitador's answer with `--rate-limit-headers DRAFT_VERSION_03`: no statuses, headers only.
fn limitador_answer(code: rls::Code, remaining: &str) -> Vec<u8> {
    rls::encode_response_with_headers(
        code,
        &[
            ("X-RateLimit-Limit", "5, 5;w=60"),
            ("X-RateLimit-Remaining", remaining),
            ("X-RateLimit-Reset", "42"),
            ("Connection", "close"),
        ],
    )
}

#[test]
fn service_headers_reach_an_allowed_response() {
    let p = global("deny");
    let mut host = get_alice();
    let mut flow = Flow::new();
    send(&mut flow, &mut host, &p);
    flow.on_rls_answer(
        &mut host,
        &p,
        1,
        0,
        Some(limitador_answer(rls::Code::Ok, "4")),
    );
    assert_eq!(host.resumed, 1);
    host.response_headers
        .push(("x-ratelimit-remaining".into(), "upstream".into()));
    respond(&mut flow, &mut host, &p, 200, "application/json", &["{}"]);
    assert_eq!(
        host.response_header_value("x-ratelimit-limit").as_deref(),
        Some("5, 5;w=60")
    );
    assert_eq!(
        host.response_header_value("x-ratelimit-remaining")
            .as_deref(),
        Some("4")
    );
    assert_eq!(
        host.response_header_value("x-ratelimit-reset").as_deref(),
        Some("42")
    );
    // Hop-by-hop names never pass; without statuses the plugin has no draft headers.
    assert_eq!(host.response_header_value("connection"), None);
    assert_eq!(host.response_header_value("ratelimit"), None);
}

#[test]
fn service_headers_reach_the_429_and_give_its_retry_after() {
    let p = global("deny");
    let mut host = get_alice();
    let mut flow = Flow::new();
    send(&mut flow, &mut host, &p);
    flow.on_rls_answer(
        &mut host,
        &p,
        1,
        0,
        Some(limitador_answer(rls::Code::OverLimit, "0")),
    );
    let reply = host.reply.clone().unwrap();
    assert_eq!(reply.status, 429);
    let h = |name: &str| {
        reply
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(h("retry-after"), ["42"]);
    assert_eq!(h("x-ratelimit-limit"), ["5, 5;w=60"]);
    assert_eq!(h("x-ratelimit-remaining"), ["0"]);
    assert_eq!(h("x-ratelimit-reset"), ["42"]);
    assert!(h("connection").is_empty());
}

#[test]
fn the_plugins_own_headers_win_over_the_service() {
    let p = global("deny");
    let mut host = get_alice();
    let mut flow = Flow::new();
    send(&mut flow, &mut host, &p);
    // Statuses and headers, the service repeating the plugin's own names.
    let mut answer = rls_answer(2, &[(2, 5, 2, 0)]);
    let extra = rls::encode_response_with_headers(
        rls::Code::OverLimit,
        &[
            ("Retry-After", "1"),
            ("RateLimit", "bogus"),
            ("X-Extra", "y"),
        ],
    );
    answer.extend(&extra[2..]);
    flow.on_rls_answer(&mut host, &p, 1, 0, Some(answer));
    let reply = host.reply.clone().unwrap();
    let values = |name: &str| {
        reply
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(values("retry-after"), ["60"]);
    assert_eq!(values("ratelimit"), ["\"per-user\";r=0;t=60"]);
    assert_eq!(values("x-extra"), ["y"]);
}
