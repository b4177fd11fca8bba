use super::*;
use crate::openai::prompt::{MARKER, MESSAGE_END, ROLE_END};
use crate::openai::BodyErrorKind;

fn chat(body: &str) -> Result<ParsedRequest, BodyError> {
    parse_request(ApiKind::ChatCompletions, body.as_bytes())
}

fn err(api: ApiKind, body: &str) -> String {
    parse_request(api, body.as_bytes()).unwrap_err().to_string()
}

fn msg(role: &str, text: &str) -> Vec<u8> {
    let mut v = role.as_bytes().to_vec();
    v.push(ROLE_END);
    v.extend_from_slice(text.as_bytes());
    v.push(MESSAGE_END);
    v
}

#[test]
fn chat_fields_and_canonical_prompt() {
    let r = chat(
        r#"{"model":"qwen3-0.6b","messages":[{"role":"system","content":"Be brief."},
            {"role":"user","content":[{"type":"text","text":"Hi "},{"type":"text","text":"there"}]}],
            "max_tokens":5,"max_completion_tokens":7,"n":2,"stream":true,
            "stream_options":{"include_usage":false},"user":"alice","temperature":0.2,"unknown":{"deep":[1,2]}}"#,
    )
    .unwrap();
    assert_eq!(r.model, "qwen3-0.6b");
    let mut want = msg("system", "Be brief.");
    want.extend(msg("user", "Hi there"));
    assert_eq!(r.prompt.bytes, want);
    assert_eq!(r.prompt.messages, 2);
    assert_eq!(
        (
            r.max_tokens,
            r.max_completion_tokens,
            r.n,
            r.stream,
            r.include_usage
        ),
        (Some(5), Some(7), Some(2), true, Some(false))
    );
    assert_eq!(r.output_token_limit(), Some(7));
    assert_eq!(r.user.as_deref(), Some("alice"));
    assert_eq!(r.session_key.as_deref(), Some("alice"));
    // "Be brief." + "Hi there" = 17 ASCII bytes -> 5, + 2 messages * 4 + 3.
    assert_eq!(r.estimated_prompt_tokens(), 5 + 8 + 3);
    assert!(r.needs_usage_injection());
}

#[test]
fn shared_system_prompt_is_a_shared_prefix() {
    let a = chat(r#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"one"}]}"#).unwrap();
    let b = chat(r#"{"model":"m","messages":[{"role":"system","content":[{"type":"text","text":"S"}]},{"role":"user","content":"two"}]}"#).unwrap();
    let prefix = msg("system", "S");
    assert!(a.prompt.bytes.starts_with(&prefix) && b.prompt.bytes.starts_with(&prefix));
    assert_ne!(a.prompt.bytes, b.prompt.bytes);
    // Responses `instructions` render like a chat system message.
    let c = parse_request(
        ApiKind::Responses,
        br#"{"model":"m","instructions":"S","input":"one"}"#,
    )
    .unwrap();
    assert_eq!(c.prompt.bytes, a.prompt.bytes);
}

#[test]
fn escapes_and_unicode_canonicalize_to_decoded_text() {
    let a = chat(
        r#"{"model":"m","messages":[{"role":"user","content":"caf\u00e9 \ud83d\ude00 \"q\"\n"}]}"#,
    )
    .unwrap();
    let b = chat(
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"café 😀 \\\"q\\\"\\n\"}]}",
    )
    .unwrap();
    assert_eq!(a.prompt, b.prompt);
    assert_eq!(a.prompt.bytes, msg("user", "café 😀 \"q\"\n"));
    let m = chat(r#"{"model":"\u006d","messages":[]}"#).unwrap();
    assert_eq!(m.model, "m");
}

#[test]
fn media_parts_get_stable_distinct_markers() {
    let body = |url: &str| {
        format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"text","text":"look"}},{{"type":"image_url","image_url":{{"url":"{url}"}}}},{{"type":"input_audio","input_audio":{{"data":"AAA","format":"wav"}}}}]}}]}}"#
        )
    };
    let a = chat(&body("https://x/a.png")).unwrap();
    let a2 = chat(&body("https://x/a.png")).unwrap();
    let b = chat(&body("https://x/b.png")).unwrap();
    assert_eq!(a.prompt, a2.prompt);
    assert_ne!(a.prompt.bytes, b.prompt.bytes);
    assert_eq!(a.prompt.media_parts, 2);
    let bytes = &a.prompt.bytes;
    assert!(bytes.starts_with(b"user\x1flook\x1dimage_url\x1f"));
    assert_eq!(bytes.iter().filter(|&&c| c == MARKER).count(), 4);
    assert_eq!(
        bytes.len(),
        "user".len() + 1 + 4 + 2 * (2 + 1 + 16) + "image_url".len() + "input_audio".len() + 1
    );
    assert!(a.estimated_prompt_tokens() >= 2 * 256);
    // A part without `type` is typed by its field.
    let c = chat(r#"{"model":"m","messages":[{"role":"user","content":[{"text":"look"},{"image_url":{"url":"https://x/a.png"}}]}]}"#).unwrap();
    assert!(c.prompt.bytes.starts_with(b"user\x1flook\x1dimage_url\x1f"));
}

#[test]
fn assistant_tool_calls_and_null_content() {
    let r = chat(r#"{"model":"m","messages":[{"role":"user","content":"w?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get","arguments":"{\"c\":1}"}}]},{"role":"tool","tool_call_id":"c1","content":"sunny"}]}"#).unwrap();
    let mut want = msg("user", "w?");
    want.extend_from_slice(b"assistant\x1f\x1dtool_call\x1fget\x1f{\"c\":1}\x1d\x1e");
    want.extend(msg("tool", "sunny"));
    assert_eq!(r.prompt.bytes, want);
}

#[test]
fn chat_errors_name_the_field() {
    let api = ApiKind::ChatCompletions;
    let cases = [
        (r#"{"messages":[]}"#, "model: is required"),
        (r#"{"model":"","messages":[]}"#, "model: must not be empty"),
        (r#"{"model":null,"messages":[]}"#, "model: is required"),
        (r#"{"model":5,"messages":[]}"#, "model: invalid type: integer `5`, expected a string"),
        (r#"{"model":"m"}"#, "messages: is required"),
        (r#"{"model":"m","messages":{}}"#, "messages: invalid type: map, expected a sequence"),
        (r#"{"model":"m","messages":["hi"]}"#, "messages[0]: invalid type: string \"hi\", expected a message object"),
        (r#"{"model":"m","messages":[{"content":"x"}]}"#, "messages[0].role: is required"),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"user","content":5}]}"#,
            "messages[2].content: invalid type: integer `5`, expected a string or an array of content parts",
        ),
        (r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]}"#, "messages[0].content[0].text: is required"),
        (r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":1}]}]}"#, "messages[0].content[0].text: invalid type: integer `1`, expected a string"),
        (r#"{"model":"m","messages":[{"role":"user","content":[{}]}]}"#, "messages[0].content[0].type: is required"),
        (r#"{"model":"m","messages":[{"role":"user","content":[7]}]}"#, "messages[0].content[0]: invalid type: integer `7`, expected a content part object"),
        (r#"{"model":"m","messages":[],"max_tokens":-1}"#, "max_tokens: invalid value: integer `-1`, expected a non-negative integer"),
        (r#"{"model":"m","messages":[],"max_completion_tokens":"9"}"#, "max_completion_tokens: invalid type: string \"9\", expected a non-negative integer"),
        (r#"{"model":"m","messages":[],"stream":"true"}"#, "stream: invalid type: string \"true\", expected a boolean"),
        (r#"{"model":"m","messages":[],"stream_options":true}"#, "stream_options: invalid type: boolean `true`, expected a stream_options object"),
        (r#"{"model":"m","messages":[],"stream_options":{"include_usage":1}}"#, "stream_options.include_usage: invalid type: integer `1`, expected a boolean"),
        (r#"{"model":"m","messages":[],"user":{}}"#, "user: invalid type: map, expected a string"),
        (r#"{"model":"a","model":"b","messages":[]}"#, "model: appears more than once"),
        ("[]", "invalid type: sequence, expected a JSON object"),
    ];
    for (body, want) in cases {
        assert_eq!(err(api, body), want, "{body}");
    }
}

#[test]
fn malformed_truncated_and_hostile_bodies() {
    let api = ApiKind::ChatCompletions;
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hello"}],"stream":true}"#;
    for cut in 0..body.len() {
        let e = parse_request(api, &body.as_bytes()[..cut]).unwrap_err();
        assert_ne!(e.kind, BodyErrorKind::Invalid, "cut {cut}: {e}");
    }
    let e = parse_request(api, b"").unwrap_err();
    assert_eq!(e.kind, BodyErrorKind::Truncated);
    let e = parse_request(api, b"{\"model\":\"m\",\"messages\":[]} {}").unwrap_err();
    assert_eq!(e.kind, BodyErrorKind::Syntax);
    // Invalid UTF-8 and lone surrogates are rejected, not passed on as garbage.
    assert!(parse_request(api, b"{\"model\":\"m\xff\",\"messages\":[]}").is_err());
    assert!(parse_request(
        api,
        br#"{"model":"m","messages":[{"role":"user","content":"\ud800"}]}"#
    )
    .is_err());
    // Deep nesting is an error or skipped iteratively (serde_json ignores unknown values
    // without recursing), never a stack overflow.
    let deep = |field: &str, depth: usize| {
        format!(
            r#"{{"model":"m","{field}":{}{},"messages":[]}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    assert!(chat(&deep("x", 1_000_000)).is_ok());
    let e = chat(&deep("messages", 1_000_000)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "messages[0]: invalid type: sequence, expected a message object"
    );
    let e = chat(&deep("stream_options", 1_000_000)).unwrap_err();
    assert_eq!(e.path, "stream_options");
    let nested_parts = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{}1{}}}]}}]}}"#,
        "{\"a\":".repeat(100_000),
        "}".repeat(100_000)
    );
    // Media payloads are digested, and their nested values skipped without recursion.
    let r = chat(&nested_parts).unwrap();
    assert_eq!(r.prompt.media_parts, 1);
}

#[test]
fn large_body_parses_and_borrows() {
    let big = "lorem ipsum dolor sit amet ".repeat(5000);
    let body = format!(
        r#"{{"model":"m","messages":[{{"role":"system","content":"{big}"}},{{"role":"user","content":"q"}}]}}"#
    );
    let r = chat(&body).unwrap();
    assert_eq!(
        r.prompt.bytes.len(),
        "system".len() + big.len() + "user".len() + 1 + 4
    );
    assert_eq!(
        r.estimated_prompt_tokens(),
        (big.len() as u64 + 1).div_ceil(4) + 11
    );
}

#[test]
fn integral_floats_and_nulls() {
    let r = chat(r#"{"model":"m","messages":[],"max_tokens":16.0,"stream":null,"stream_options":null,"n":null}"#).unwrap();
    assert_eq!(
        (r.max_tokens, r.stream, r.include_usage, r.n),
        (Some(16), false, None, None)
    );
    assert!(!r.needs_usage_injection());
}

#[test]
fn completions_prompt_shapes() {
    let p = |body: &str| parse_request(ApiKind::Completions, body.as_bytes()).unwrap();
    let r = p(r#"{"model":"m","prompt":"Once upon","max_tokens":3,"stream":true}"#);
    assert_eq!(r.prompt.bytes, b"Once upon\x1e");
    assert_eq!(r.prompt.messages, 0);
    assert_eq!(r.estimated_prompt_tokens(), 3);
    assert_eq!(r.output_token_limit(), Some(3));
    let r = p(r#"{"model":"m","prompt":["a","b\u00e9"]}"#);
    assert_eq!(r.prompt.bytes, "a\x1ebé\x1e".as_bytes());
    let r = p(r#"{"model":"m","prompt":[1,2,30]}"#);
    assert_eq!(r.prompt.bytes, b"\x1dtoken_ids\x1f1,2,30\x1d\x1e");
    assert_eq!(r.estimated_prompt_tokens(), 3);
    let r = p(r#"{"model":"m","prompt":[[1,2],[3]]}"#);
    assert_eq!(
        r.prompt.bytes,
        b"\x1dtoken_ids\x1f1,2\x1d\x1e\x1dtoken_ids\x1f3\x1d\x1e"
    );
    let api = ApiKind::Completions;
    assert_eq!(err(api, r#"{"model":"m"}"#), "prompt: is required");
    assert_eq!(
        err(api, r#"{"model":"m","prompt":5}"#),
        "prompt: invalid type: integer `5`, expected a string, an array of strings, or an array of token ids"
    );
    assert_eq!(
        err(api, r#"{"model":"m","prompt":["a",{}]}"#),
        "prompt[1]: invalid type: map, expected a string, a token id, or an array of token ids"
    );
    assert_eq!(
        err(api, r#"{"model":"m","prompt":[[1,-2]]}"#),
        "prompt[0][1]: invalid value: integer `-2`, expected u64"
    );
}

#[test]
fn responses_input_shapes() {
    let p = |body: &str| parse_request(ApiKind::Responses, body.as_bytes()).unwrap();
    let r = p(
        r#"{"model":"m","input":"hi","max_output_tokens":50,"stream":true,"prompt_cache_key":"s1","user":"u"}"#,
    );
    assert_eq!(r.prompt.bytes, msg("user", "hi"));
    assert_eq!(r.output_token_limit(), Some(50));
    assert_eq!(r.session_key.as_deref(), Some("s1"));
    assert!(!r.needs_usage_injection());
    let r = p(r#"{"model":"m","instructions":"S","input":[
        {"role":"user","content":[{"type":"input_text","text":"see"},{"type":"input_image","image_url":"data:image/png;base64,AAAA"}]},
        {"type":"message","role":"assistant","content":[{"type":"output_text","text":"ok","annotations":[]}]},
        {"type":"function_call","call_id":"c","name":"f","arguments":"{}"},
        {"type":"function_call_output","call_id":"c","output":"42"},
        {"type":"reasoning","id":"r","summary":[]}]}"#);
    let mut want = msg("system", "S");
    let digest =
        super::super::de::MediaDigest(xxhash_rust::xxh64::xxh64(b"data:image/png;base64,AAAA", 0));
    let combined = xxhash_rust::xxh64::xxh64(
        &digest.0.to_le_bytes(),
        xxhash_rust::xxh64::xxh64(b"image_url", 0),
    );
    want.extend_from_slice(
        format!("user\x1fsee\x1dinput_image\x1f{combined:016x}\x1d\x1e").as_bytes(),
    );
    want.extend(msg("assistant", "ok"));
    want.extend_from_slice(b"assistant\x1f\x1dtool_call\x1ff\x1f{}\x1d\x1e");
    want.extend(msg("tool", "42"));
    want.extend(msg("reasoning", ""));
    assert_eq!(r.prompt.bytes, want);
    assert_eq!(r.prompt.messages, 6);
    // No input at all (previous_response_id) is an empty prompt.
    let r = p(r#"{"model":"m","previous_response_id":"resp_1"}"#);
    assert!(r.prompt.bytes.is_empty());
    let api = ApiKind::Responses;
    assert_eq!(
        err(api, r#"{"model":"m","input":[{"content":"x"}]}"#),
        "input[0].role: is required"
    );
    assert_eq!(
        err(api, r#"{"model":"m","input":7}"#),
        "input: invalid type: integer `7`, expected a string or an array of input items"
    );
    assert_eq!(
        err(
            api,
            r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text"}]}]}"#
        ),
        "input[0].content[0].text: is required"
    );
    assert_eq!(
        err(api, r#"{"model":"m","instructions":["x"]}"#),
        "instructions: invalid type: sequence, expected a string"
    );
}

#[test]
fn tools_lead_the_prompt_and_are_charged() {
    let tools = r#"[{"type":"function","function":{"name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]"#;
    let with = |tools: &str| {
        chat(&format!(
            r#"{{"model":"m","tools":{tools},"messages":[{{"role":"user","content":"hi"}}]}}"#
        ))
        .unwrap()
    };
    let plain = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
    let a = with(tools);
    assert!(a.prompt.bytes.starts_with(b"\x1dtools\x1f"));
    assert!(a.prompt.bytes.ends_with(&plain.prompt.bytes));
    assert_eq!(
        a.prompt.bytes.len(),
        plain.prompt.bytes.len() + 1 + 5 + 1 + 16 + 1
    );
    assert!(a.estimated_prompt_tokens() >= plain.estimated_prompt_tokens() + 20);
    assert_eq!(a.prompt, with(tools).prompt);
    assert_ne!(
        a.prompt.bytes,
        with(&tools.replace("city", "town")).prompt.bytes
    );
    assert_eq!(with("[]").prompt, plain.prompt);
    assert_eq!(with("null").prompt, plain.prompt);
    let r = parse_request(
        ApiKind::Responses,
        format!(r#"{{"model":"m","tools":{tools},"input":"hi"}}"#).as_bytes(),
    )
    .unwrap();
    assert_eq!(r.prompt.bytes, a.prompt.bytes);
}

#[test]
fn session_key_precedence() {
    let r = chat(r#"{"model":"m","messages":[],"safety_identifier":"s"}"#).unwrap();
    assert_eq!(
        (r.user.as_deref(), r.session_key.as_deref()),
        (None, Some("s"))
    );
    let r = chat(
        r#"{"model":"m","messages":[],"safety_identifier":"s","user":"u","prompt_cache_key":"k"}"#,
    )
    .unwrap();
    assert_eq!(r.session_key.as_deref(), Some("k"));
    let r = chat(r#"{"model":"m","messages":[]}"#).unwrap();
    assert_eq!(r.session_key, None);
}
