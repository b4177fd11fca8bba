//! Whole requests through the affinity [`Flow`] and the [`MockHost`].

use super::flow::{Event, Flow, Phase, Policy, ServedReport, Step};
use super::mock_host::{answer, send, MockHost};
use super::AffinityConfig;
use crate::config::parse;
use crate::headers::{DESTINATION_ENDPOINT, DESTINATION_ENDPOINT_FALLBACKS};
use crate::openai::{parse_request_capped, ApiKind, RequestSummary};

const CHAT: &str = "/v1/chat/completions";
const ENDPOINTS: &str = r#""allowOnHeadersStopIteration":true,"endpoints":["10.0.0.1:8000","10.0.0.2:8000","10.0.0.3:8000"]"#;

fn policy(extra: &str) -> Policy {
    let json = format!("{{{ENDPOINTS}{extra}}}");
    Policy::new(parse::<AffinityConfig>(json.as_bytes()).unwrap())
}

/// host-shim configured, reports on.
fn shim(extra: &str) -> Policy {
    policy(&format!(
        r#","hostShim":{{"cluster":"shim","timeoutMs":40{extra}}}"#
    ))
}

/// A chat request whose prompt spans several prefix blocks, ending in `prompt`.
fn chat(prompt: &str) -> String {
    let lead = "You are a helpful assistant. ".repeat(20);
    format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{lead}{prompt}"}}]}}"#)
}

fn ok_pick(endpoint: &str, fallbacks: &str) -> Vec<(&'static str, String)> {
    vec![
        (":status", "200".into()),
        ("content-type", "application/octet-stream".into()),
        (DESTINATION_ENDPOINT, endpoint.into()),
        (DESTINATION_ENDPOINT_FALLBACKS, fallbacks.into()),
    ]
}

fn answer_owned(flow: &mut Flow, host: &mut MockHost, p: &Policy, h: &[(&str, String)]) {
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    answer(flow, host, p, &h);
}

/// A request routed through host-shim up to the pick call.
fn awaiting_pick(p: &Policy, prompt: &str) -> (Flow, MockHost) {
    let mut host = MockHost::post(CHAT, &chat(prompt));
    let mut flow = Flow::new();
    assert_eq!(flow.on_request_headers(&mut host, p, false), Step::Pause);
    assert!(matches!(flow.phase(), Phase::AwaitingBody { .. }));
    let size = host.request_body.len();
    assert_eq!(flow.on_request_body(&mut host, p, size, true), Step::Pause);
    assert!(matches!(flow.phase(), Phase::AwaitingPick { .. }));
    (flow, host)
}

#[test]
fn host_shim_pick_sets_the_destination_and_reports_served_then_completed() {
    let p = shim("");
    let (mut flow, mut host) = awaiting_pick(&p, "hello there");
    let call = host.dispatched[0].clone();
    assert_eq!(
        (
            call.cluster.as_str(),
            call.authority.as_str(),
            call.timeout_ms
        ),
        ("shim", "host-shim", 40)
    );
    assert!(!call.query.is_empty());
    host.now_us += 1_500;
    answer_owned(
        &mut flow,
        &mut host,
        &p,
        &ok_pick("10.0.0.9:8000", "10.0.0.8:8000"),
    );
    assert_eq!(host.resumed, 1);
    assert_eq!(host.reply, None);
    assert_eq!(host.latencies, vec![1_500]);
    assert_eq!(
        host.header(DESTINATION_ENDPOINT).as_deref(),
        Some("10.0.0.9:8000")
    );
    assert_eq!(
        host.header(DESTINATION_ENDPOINT_FALLBACKS).as_deref(),
        Some("10.0.0.8:8000")
    );
    for e in [Event::Pick, Event::PrefixPick, Event::ShimPick] {
        assert_eq!(host.counted(e), 1, "{e:?}");
    }
    assert_eq!(host.counted(Event::Fallback), 0);
    assert!(matches!(flow.phase(), Phase::Forwarded));
    // A second answer (stray callback) changes nothing.
    answer_owned(&mut flow, &mut host, &p, &ok_pick("10.0.0.7:8000", ""));
    assert_eq!(host.resumed, 1);
    // The endpoint that actually served is reported, then the stream's end there.
    host.upstream = Some("10.0.0.8:8000".into());
    flow.on_response_headers(&mut host, &p);
    flow.on_log(&mut host, &p);
    assert!(matches!(flow.phase(), Phase::Completed));
    let [served, completed] = host.reports.as_slice() else {
        panic!("{:?}", host.reports);
    };
    assert_eq!(served.endpoint, "10.0.0.8:8000");
    assert!(!served.completed && completed.completed);
    assert_eq!(completed.endpoint, "10.0.0.8:8000");
    assert!(!served.hashes.is_empty());
    assert_eq!(served.hashes, completed.hashes);
}

#[test]
fn stream_cut_before_the_response_reports_completion_at_the_picked_endpoint() {
    let p = shim("");
    let (mut flow, mut host) = awaiting_pick(&p, "hello there");
    answer_owned(&mut flow, &mut host, &p, &ok_pick("10.0.0.9:8000", ""));
    assert_eq!(host.header(DESTINATION_ENDPOINT_FALLBACKS), None);
    // Reset before any response: no served report, but host-shim stops counting it.
    flow.on_log(&mut host, &p);
    assert_eq!(
        host.reports,
        vec![ServedReport {
            endpoint: "10.0.0.9:8000".into(),
            hashes: host.reports[0].hashes.clone(),
            completed: true,
        }]
    );
    // Reports off: nothing is queued.
    let p = shim(r#","reportServed":false"#);
    let (mut flow, mut host) = awaiting_pick(&p, "hello there");
    answer_owned(&mut flow, &mut host, &p, &ok_pick("10.0.0.9:8000", ""));
    host.upstream = Some("10.0.0.9:8000".into());
    flow.on_response_headers(&mut host, &p);
    flow.on_log(&mut host, &p);
    assert!(host.reports.is_empty());
}

#[test]
fn a_stream_that_ends_while_awaiting_its_pick_queues_a_cancel_of_that_pick() {
    use crate::pick_wire::decode_pick;
    for extra in ["", r#","reportServed":false"#] {
        let p = shim(extra);
        let (mut flow, mut host) = awaiting_pick(&p, "first");
        // The pick call carries the id the host handed out.
        let id = decode_pick(&host.dispatched[0].query).unwrap().pick_id;
        assert_eq!(id, Some(host.pick_ids));
        // The client went away while host-shim held the pick: the stream ends (on_log).
        flow.on_log(&mut host, &p);
        assert_eq!(host.cancels, vec![host.pick_ids], "{extra}");
        assert!(host.reports.is_empty(), "no completion: nothing was picked");
        assert!(matches!(flow.phase(), Phase::Completed));
        // A late answer (if Envoy ever delivered one) and a second on_log change nothing.
        answer_owned(&mut flow, &mut host, &p, &ok_pick("10.0.0.9:8000", ""));
        flow.on_log(&mut host, &p);
        assert_eq!(host.resumed, 0);
        assert_eq!(host.cancels.len(), 1);
        assert!(host.reports.is_empty());
    }
}

#[test]
fn a_stream_that_got_its_pick_or_never_asked_queues_no_cancel() {
    let p = shim("");
    // Picked, then cut before the response: a completion, no cancel.
    let (mut flow, mut host) = awaiting_pick(&p, "hello there");
    answer_owned(&mut flow, &mut host, &p, &ok_pick("10.0.0.9:8000", ""));
    flow.on_log(&mut host, &p);
    assert!(host.cancels.is_empty());
    assert_eq!(host.reports.len(), 1);
    // Refused by host-shim (429): answered locally, nothing pending to cancel.
    let (mut flow, mut host) = awaiting_pick(&p, "hello there");
    answer(
        &mut flow,
        &mut host,
        &p,
        &[(":status", "429"), ("content-type", "application/json")],
    );
    flow.on_log(&mut host, &p);
    assert!(host.cancels.is_empty());
    // The call could not be sent (hashing fallback): no id was promised to anyone.
    let mut host = MockHost::post(CHAT, &chat("x"));
    host.dispatch_fails = true;
    let mut flow = Flow::new();
    send(&mut flow, &mut host, &p);
    flow.on_log(&mut host, &p);
    assert!(host.cancels.is_empty());
    // Still waiting for the body when the client leaves: no pick was asked for.
    let mut host = MockHost::post(CHAT, &chat("x"));
    let mut flow = Flow::new();
    flow.on_request_headers(&mut host, &p, false);
    flow.on_log(&mut host, &p);
    assert!(host.cancels.is_empty() && host.dispatched.is_empty());
}

/// The destination the hashing fallback gives `prompt` (no host-shim).
fn hashed(prompt: &str) -> String {
    let p = policy("");
    let mut host = MockHost::post(CHAT, &chat(prompt));
    assert_eq!(send(&mut Flow::new(), &mut host, &p), Step::Continue);
    host.header(DESTINATION_ENDPOINT).unwrap()
}

#[test]
fn host_shim_down_or_slow_falls_back_to_hashing() {
    let expected = hashed("hello there");
    // Envoy's own 503 (plain text, connect failure) and its timeout answer.
    let envoy_503 = [(":status", "503"), ("content-type", "text/plain")];
    let timeout = [(":status", "504")];
    for headers in [&envoy_503[..], &timeout[..], &[][..]] {
        let p = shim("");
        let (mut flow, mut host) = awaiting_pick(&p, "hello there");
        answer(&mut flow, &mut host, &p, headers);
        assert_eq!(host.resumed, 1, "{headers:?}");
        assert_eq!(host.reply, None);
        assert_eq!(host.header(DESTINATION_ENDPOINT), Some(expected.clone()));
        assert_eq!(host.counted(Event::Fallback), 1);
        assert_eq!(host.counted(Event::ShimPick), 0);
        assert_eq!(host.counted(Event::PrefixPick), 1);
        // No endpoint was picked nor has served: no completion report.
        flow.on_log(&mut host, &p);
        assert!(host.reports.is_empty());
    }
    // The call cannot even be sent: same fallback, no pause.
    let p = shim("");
    let mut host = MockHost::post(CHAT, &chat("hello there"));
    host.dispatch_fails = true;
    assert_eq!(send(&mut Flow::new(), &mut host, &p), Step::Continue);
    assert_eq!(host.header(DESTINATION_ENDPOINT), Some(expected));
    assert_eq!(host.counted(Event::Fallback), 1);
}

#[test]
fn fallback_hashes_over_the_fetched_endpoint_list() {
    let p = shim("");
    let (mut flow, mut host) = awaiting_pick(&p, "hello there");
    host.fetched = Some(("shim".into(), b"10.9.9.9:80".to_vec()));
    answer(&mut flow, &mut host, &p, &[(":status", "504")]);
    assert_eq!(
        host.header(DESTINATION_ENDPOINT).as_deref(),
        Some("10.9.9.9:80")
    );
}

#[test]
fn fail_closed_answers_503_instead_of_hashing() {
    let p = shim(r#","failClosed":true"#);
    let (mut flow, mut host) = awaiting_pick(&p, "hello there");
    answer(&mut flow, &mut host, &p, &[(":status", "504")]);
    assert_eq!(host.resumed, 0);
    let reply = host.reply.clone().unwrap();
    assert_eq!((reply.status, reply.code.as_str()), (503, "no_endpoint"));
    assert!(reply.headers.contains(&("retry-after".into(), "1".into())));
    assert_eq!(host.header(DESTINATION_ENDPOINT), None);
    assert!(matches!(flow.phase(), Phase::Answered));
}

#[test]
fn bad_pick_answers_fall_back_and_shim_refusals_are_relayed() {
    let expected = hashed("hello there");
    // A 200 whose endpoint is not `ip:port`, or missing.
    for bad in [&ok_pick("not-an-endpoint", "")[..], &ok_pick("", "")[..3]] {
        let p = shim("");
        let (mut flow, mut host) = awaiting_pick(&p, "hello there");
        answer_owned(&mut flow, &mut host, &p, bad);
        assert_eq!(host.header(DESTINATION_ENDPOINT), Some(expected.clone()));
        assert_eq!(host.counted(Event::Fallback), 1);
        assert_eq!(host.resumed, 1);
    }
    // host-shim's own JSON refusals are answered as they are.
    for (status, want, code) in [("503", 503, "no_endpoint"), ("429", 429, "overloaded")] {
        let p = shim("");
        let (mut flow, mut host) = awaiting_pick(&p, "hello there");
        answer(
            &mut flow,
            &mut host,
            &p,
            &[(":status", status), ("content-type", "application/json")],
        );
        let reply = host.reply.clone().unwrap();
        assert_eq!((reply.status, reply.code.as_str()), (want, code));
        assert_eq!(host.resumed, 0);
        assert_eq!(host.counted(Event::Fallback), 0);
        assert!(matches!(flow.phase(), Phase::Answered));
    }
}

#[test]
fn body_too_large_is_answered_413_from_the_headers_or_the_body() {
    let p = policy(r#","maxBodyBytes":64"#);
    let body = chat(&"x".repeat(100));
    let mut host = MockHost::post(CHAT, &body);
    let mut flow = Flow::new();
    assert_eq!(flow.on_request_headers(&mut host, &p, false), Step::Pause);
    assert_eq!(host.reply.clone().unwrap().status, 413);
    assert_eq!(host.counted(Event::TooLarge), 1);
    assert!(matches!(flow.phase(), Phase::Answered));
    // Without a content-length (chunked): caught as the body grows.
    let mut host = MockHost::post(CHAT, &body);
    host.request_headers.retain(|(k, _)| k != "content-length");
    let mut flow = Flow::new();
    assert_eq!(flow.on_request_headers(&mut host, &p, false), Step::Pause);
    assert_eq!(flow.on_request_body(&mut host, &p, 40, false), Step::Pause);
    assert_eq!(host.reply, None);
    assert_eq!(flow.on_request_body(&mut host, &p, 100, false), Step::Pause);
    assert_eq!(host.reply.clone().unwrap().status, 413);
    assert_eq!(host.header(DESTINATION_ENDPOINT), None);
}

#[test]
fn bad_bodies_are_answered_400_and_no_body_is_explained() {
    for body in ["{not json", r#"{"messages":[]}"#] {
        let p = shim("");
        let mut host = MockHost::post(CHAT, body);
        let mut flow = Flow::new();
        assert_eq!(send(&mut flow, &mut host, &p), Step::Pause, "{body}");
        assert_eq!(host.reply.clone().unwrap().status, 400);
        assert_eq!(host.counted(Event::ParseError), 1);
        assert!(host.dispatched.is_empty());
        assert_eq!(host.header(DESTINATION_ENDPOINT), None);
    }
    // An inference POST whose headers end the stream: the parser says what is missing.
    let p = policy("");
    let mut host = MockHost::new(&[(":method", "POST"), (":path", CHAT)]);
    assert_eq!(
        Flow::new().on_request_headers(&mut host, &p, true),
        Step::Pause
    );
    assert_eq!(host.reply.clone().unwrap().status, 400);
}

#[test]
fn trailers_end_the_body_and_a_pick_in_flight_holds_them() {
    let p = shim("");
    let body = chat("hello there");
    let mut host = MockHost::post(CHAT, &body);
    let mut flow = Flow::new();
    assert_eq!(flow.on_request_headers(&mut host, &p, false), Step::Pause);
    assert_eq!(
        flow.on_request_body(&mut host, &p, body.len(), false),
        Step::Pause
    );
    assert!(host.dispatched.is_empty());
    assert_eq!(flow.on_request_trailers(&mut host, &p), Step::Pause);
    assert_eq!(host.dispatched.len(), 1);
    assert!(matches!(flow.phase(), Phase::AwaitingPick { .. }));
    assert_eq!(flow.on_request_trailers(&mut host, &p), Step::Pause);
    answer_owned(&mut flow, &mut host, &p, &ok_pick("10.0.0.9:8000", ""));
    assert_eq!(flow.on_request_trailers(&mut host, &p), Step::Continue);
}

#[test]
fn client_sent_routing_headers_are_removed_and_prompts_stick_together() {
    let p = policy(r#","hintHeader":"x-prefix-key""#);
    let mut host = MockHost::post(CHAT, &chat("same leading words"));
    host.request_headers.extend([
        (DESTINATION_ENDPOINT.into(), "169.254.169.254:80".into()),
        (DESTINATION_ENDPOINT_FALLBACKS.into(), "1.2.3.4:80".into()),
        ("x-prefix-key".into(), "ffff".into()),
    ]);
    assert_eq!(send(&mut Flow::new(), &mut host, &p), Step::Continue);
    assert_eq!(host.counted(Event::Spoofed), 1);
    let picked = host.header(DESTINATION_ENDPOINT).unwrap();
    assert_ne!(picked, "169.254.169.254:80");
    assert!(picked.starts_with("10.0.0."));
    assert_eq!(host.header(DESTINATION_ENDPOINT_FALLBACKS), None);
    let key = host.header("x-prefix-key").unwrap();
    assert_eq!(key.len(), 16);
    assert_ne!(key, "ffff");
    // The same prompt goes to the same endpoint with the same key.
    let mut again = MockHost::post(CHAT, &chat("same leading words"));
    send(&mut Flow::new(), &mut again, &p);
    assert_eq!(again.header(DESTINATION_ENDPOINT), Some(picked));
    assert_eq!(again.header("x-prefix-key"), Some(key));
    assert_eq!(again.counted(Event::Spoofed), 0);
}

#[test]
fn requests_without_a_prompt_go_round_robin() {
    let p = policy("");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let mut host = MockHost::new(&[(":method", "GET"), (":path", "/v1/models")]);
        assert_eq!(send(&mut Flow::new(), &mut host, &p), Step::Continue);
        seen.push(host.header(DESTINATION_ENDPOINT).unwrap());
    }
    assert_eq!(
        seen,
        [
            "10.0.0.1:8000",
            "10.0.0.2:8000",
            "10.0.0.3:8000",
            "10.0.0.1:8000"
        ]
    );
}

#[test]
fn a_summary_handed_on_by_the_rate_limiter_is_reused() {
    let p = policy("");
    let body = chat("hello there");
    let expected = hashed("hello there");
    let parsed = parse_request_capped(ApiKind::ChatCompletions, body.as_bytes(), 1 << 20).unwrap();
    let mut host = MockHost::post(CHAT, &body);
    host.summary = Some(RequestSummary::from(parsed).encode());
    // The body the flow would parse is garbage: the summary is what counts.
    host.request_body = b"{garbage".to_vec();
    assert_eq!(send(&mut Flow::new(), &mut host, &p), Step::Continue);
    assert_eq!(host.counted(Event::ParseReused), 1);
    assert_eq!(host.header(DESTINATION_ENDPOINT), Some(expected));
}

#[test]
fn shim_refusals_keep_its_retry_after_when_it_is_a_number_of_seconds() {
    for (given, want) in [
        (Some("7"), "7"),
        (Some("120"), "120"),
        (None, "1"),
        (Some(""), "1"),
        (Some("1; drop"), "1"),
        (Some("9999999"), "1"),
        (Some("Wed, 21 Oct 2026 07:28:00 GMT"), "1"),
    ] {
        for status in ["429", "503"] {
            let p = shim("");
            let (mut flow, mut host) = awaiting_pick(&p, "hello there");
            let mut headers = vec![(":status", status), ("content-type", "application/json")];
            if let Some(v) = given {
                headers.push(("retry-after", v));
            }
            answer(&mut flow, &mut host, &p, &headers);
            let reply = host.reply.clone().unwrap();
            assert_eq!(reply.status.to_string(), status);
            assert!(
                reply.headers.contains(&("retry-after".into(), want.into())),
                "{given:?} → {:?}",
                reply.headers
            );
        }
    }
}
