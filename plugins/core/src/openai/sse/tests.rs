use super::*;

/// A realistic vLLM chat stream with `include_usage` set.
const VLLM: &str = concat!(
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"qwen3\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"qwen3\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Caf\u{e9} \"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"qwen3\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\u65e5\u{672c}\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"qwen3\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"qwen3\",\"choices\":[],\"usage\":{\"prompt_tokens\":17,\"total_tokens\":21,\"completion_tokens\":4}}\n\n",
    "data: [DONE]\n\n",
);

/// The usage-only event of [`VLLM`], which strip mode removes.
fn usage_event(stream: &str) -> (usize, usize) {
    let start = stream.find("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"qwen3\",\"choices\":[]").unwrap();
    let end = stream[start..].find("data: [DONE]").unwrap() + start;
    (start, end)
}

fn expected_stripped(stream: &str) -> Vec<u8> {
    let (start, end) = usage_event(stream);
    let mut v = stream.as_bytes()[..start].to_vec();
    v.extend_from_slice(&stream.as_bytes()[end..]);
    v
}

struct Run {
    out: Vec<u8>,
    events: Vec<SseEvent>,
    stats: StreamStats,
    error: Option<SseError>,
}

fn run(config: SseConfig, pieces: &[&[u8]]) -> Run {
    let mut p = SseParser::new(config);
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut error = None;
    for piece in pieces {
        if let Err(e) = p.feed(piece, &mut out, &mut events) {
            error.get_or_insert(e);
        }
    }
    p.finish(&mut out);
    Run {
        out,
        events,
        stats: *p.stats(),
        error,
    }
}

fn strip() -> SseConfig {
    SseConfig {
        strip_usage_chunk: true,
        ..SseConfig::default()
    }
}

fn check_vllm(r: &Run, stream: &str) {
    assert_eq!(r.error, None);
    assert_eq!(r.out, expected_stripped(stream));
    assert_eq!(r.events.len(), 6);
    assert_eq!(r.events[5], SseEvent::Done);
    assert!(matches!(
        r.events[4],
        SseEvent::Chunk {
            stripped: true,
            summary: ChunkSummary {
                usage_only: true,
                ..
            }
        }
    ));
    let s = r.stats;
    assert_eq!(
        s.usage,
        Some(Usage {
            prompt_tokens: 17,
            completion_tokens: 4,
            total_tokens: 21,
            cached_tokens: None
        })
    );
    // "Café " (6 bytes), "日本" (6), "!" (1); the role chunk's empty content is no delta.
    assert_eq!((s.content_deltas, s.content_bytes), (3, 13));
    assert!(s.done && s.finished);
    assert_eq!((s.events, s.chunks, s.unparsed, s.stripped), (6, 5, 0, 1));
}

fn with_endings(ending: &str) -> String {
    VLLM.replace('\n', ending)
}

#[test]
fn vllm_stream_split_at_every_position_with_every_line_ending() {
    for ending in ["\n", "\r\n", "\r"] {
        let stream = with_endings(ending);
        let bytes = stream.as_bytes();
        let whole = run(strip(), &[bytes]);
        check_vllm(&whole, &stream);
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            let r = run(strip(), &[a, b]);
            assert_eq!(r.out, whole.out, "ending {ending:?} split at {i}");
            assert_eq!(r.events, whole.events, "ending {ending:?} split at {i}");
            assert_eq!(r.stats, whole.stats, "ending {ending:?} split at {i}");
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        let r = run(strip(), &bytewise);
        check_vllm(&r, &stream);
    }
}

#[test]
fn random_three_way_splits_agree() {
    let stream = with_endings("\r\n");
    let bytes = stream.as_bytes();
    let whole = run(strip(), &[bytes]);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..2000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut cuts = [
            (seed % (bytes.len() as u64 + 1)) as usize,
            ((seed >> 32) % (bytes.len() as u64 + 1)) as usize,
        ];
        cuts.sort();
        let pieces = [
            &bytes[..cuts[0]],
            &bytes[cuts[0]..cuts[1]],
            &bytes[cuts[1]..],
        ];
        let r = run(strip(), &pieces);
        assert_eq!(
            (r.out, r.events, r.stats),
            (whole.out.clone(), whole.events.clone(), whole.stats)
        );
    }
}

#[test]
fn pass_through_mode_reports_without_output() {
    let r = run(SseConfig::default(), &[VLLM.as_bytes()]);
    assert!(r.out.is_empty());
    assert_eq!(r.stats.usage.unwrap().total_tokens, 21);
    assert_eq!(r.stats.stripped, 0);
    assert!(matches!(
        r.events[4],
        SseEvent::Chunk {
            stripped: false,
            ..
        }
    ));
}

#[test]
fn strip_mode_without_usage_chunk_is_identity_and_releases_early() {
    let stream =
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n: keepalive\n\ndata: [DONE]\n\n";
    let mut p = SseParser::new(strip());
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    // The first event is released as soon as its blank line is seen.
    let first_end = stream.find("\n\n").unwrap() + 2;
    p.feed(&stream.as_bytes()[..first_end], &mut out, &mut ev)
        .unwrap();
    assert_eq!(out, &stream.as_bytes()[..first_end]);
    // A comment line is released at once; an incomplete data line is held.
    p.feed(b": keepalive\n\ndata: [DO", &mut out, &mut ev)
        .unwrap();
    assert!(out.ends_with(b": keepalive\n\n"));
    p.feed(b"NE]\n\n", &mut out, &mut ev).unwrap();
    p.finish(&mut out);
    assert_eq!(out, stream.as_bytes());
    assert_eq!(ev.len(), 2);
    assert_eq!(p.stats().estimated_completion_tokens(), 1);
}

#[test]
fn spec_details_multiline_data_comments_fields_and_bom() {
    let stream = "\u{feff}: hello\nevent: message\nid: 7\nretry: 10\ndata:{\"choices\":\ndata: [{\"text\":\"hi\"}]}\n\ndata\n\n:only comment\n\nevent: x\n\ndata: [DONE]\n\n";
    let r = run(SseConfig::default(), &[stream.as_bytes()]);
    assert_eq!(r.events.len(), 3);
    assert!(matches!(
        r.events[0],
        SseEvent::Chunk {
            summary: ChunkSummary {
                content_deltas: 1,
                content_bytes: 2,
                ..
            },
            ..
        }
    ));
    // `data` with no colon is an empty data line: dispatched with empty data.
    assert_eq!(r.events[1], SseEvent::Unparsed { bytes: 0 });
    assert_eq!(r.events[2], SseEvent::Done);
}

#[test]
fn unterminated_event_is_not_dispatched_but_is_forwarded() {
    let stream = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n";
    let r = run(strip(), &[stream.as_bytes()]);
    assert!(r.events.is_empty());
    assert_eq!(r.out, stream.as_bytes());
    assert_eq!(r.stats.usage, None);
}

#[test]
fn usage_chunk_in_strip_mode_keeps_neighbouring_comments_and_events() {
    let stream = ": a\n\nevent: chunk\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n: b\ndata: [DONE]\n\n";
    let r = run(strip(), &[stream.as_bytes()]);
    assert_eq!(r.out, b": a\n\n: b\ndata: [DONE]\n\n");
    assert_eq!(r.stats.usage.unwrap().total_tokens, 3);
}

#[test]
fn garbage_data_is_unparsed_and_passed_through() {
    let stream = b"data: {not json\n\ndata: \xff\xfe\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":\"x\"}}\n\n";
    let bytes = &stream[..];
    let r = run(strip(), &[bytes]);
    assert_eq!(r.out, bytes);
    assert_eq!(r.stats.unparsed, 3);
    assert_eq!(r.stats.usage, None);
}

#[test]
fn overlong_line_fails_without_losing_bytes() {
    let config = SseConfig {
        max_line_bytes: 64,
        max_event_bytes: 1024,
        strip_usage_chunk: true,
    };
    let long = format!("data: {}\n\n", "x".repeat(100));
    let stream = format!("data: [DONE]\n\n{long}data: tail\n\n");
    let bytes = stream.as_bytes();
    for i in 0..=bytes.len() {
        let (a, b) = bytes.split_at(i);
        let r = run(config, &[a, b]);
        assert_eq!(
            r.error,
            Some(SseError::LineTooLong { limit: 64 }),
            "split {i}"
        );
        assert_eq!(r.out, bytes, "split {i}");
        assert_eq!(r.events, vec![SseEvent::Done], "split {i}");
    }
    // A line of exactly the limit is fine, whatever its terminator.
    let exact = format!("data: {}\r\n\r\n", "y".repeat(58));
    let r = run(config, &[exact.as_bytes()]);
    assert_eq!(r.error, None);
    assert_eq!(r.events.len(), 1);
}

#[test]
fn oversized_event_fails_in_both_modes() {
    let stream =
        "data: aaaaaaaaaaaaaaa\ndata: aaaaaaaaaaaaaaa\ndata: aaaaaaaaaaaaaaa\n\n".repeat(2);
    for strip_usage_chunk in [false, true] {
        let config = SseConfig {
            max_line_bytes: 64,
            max_event_bytes: 40,
            strip_usage_chunk,
        };
        let r = run(config, &[stream.as_bytes()]);
        assert_eq!(r.error, Some(SseError::EventTooLarge { limit: 40 }));
        assert!(r.events.is_empty());
        if strip_usage_chunk {
            assert_eq!(r.out, stream.as_bytes());
        }
    }
}

#[test]
fn failed_parser_passes_later_chunks_through() {
    let config = SseConfig {
        max_line_bytes: 4,
        max_event_bytes: 64,
        strip_usage_chunk: true,
    };
    let mut p = SseParser::new(config);
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    assert!(p.feed(b"data: long", &mut out, &mut ev).is_err());
    assert!(p.is_failed());
    p.feed(b"\n\ndata: [DONE]\n\n", &mut out, &mut ev).unwrap();
    p.finish(&mut out);
    assert_eq!(out, b"data: long\n\ndata: [DONE]\n\n");
    assert!(ev.is_empty());
}

#[test]
fn hostile_input_stays_bounded() {
    // A megabyte without a newline and a flood of blank lines and CRs.
    let config = SseConfig {
        max_line_bytes: 1024,
        max_event_bytes: 4096,
        strip_usage_chunk: true,
    };
    let mut p = SseParser::new(config);
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    let blob = vec![b'a'; 1 << 20];
    assert!(p.feed(&blob, &mut out, &mut ev).is_err());
    assert_eq!(out.len(), blob.len());
    let mut p = SseParser::new(config);
    let mut out = Vec::new();
    let flood = b"\r\n\r\r\n\n:\n".repeat(100_000);
    for c in flood.chunks(4093) {
        p.feed(c, &mut out, &mut ev).unwrap();
    }
    p.finish(&mut out);
    assert_eq!(out, flood);
    assert!(ev.is_empty());
    assert!(p.held.capacity() <= 8192);
}
