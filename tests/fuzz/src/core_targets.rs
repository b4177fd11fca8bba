//! Targets in `infergate-core`: what the Wasm plugins parse.

use crate::{parts, text, Target};
use infergate_core::affinity::AffinityConfig;
use infergate_core::auth::credential::{query_values, CredentialSource};
use infergate_core::auth::jwt::{verify, Alg, KeySet, Validation};
use infergate_core::auth::{cidr, identity, kube, AuthConfig};
use infergate_core::openai::{
    parse_request_capped, parse_response_usage, request_stream_usage, ApiKind, SseConfig, SseEvent,
    SseParser, UsageInjection,
};
use infergate_core::ratelimit::{rls, window, RateLimitConfig};
use infergate_core::{attributes, config, endpoint, headers};

/// The core targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "openai_request",
        about: "chat, completions and responses request bodies; the include_usage rewrite",
        run: openai_request,
    },
    Target {
        name: "sse_usage",
        about: "SSE streams (chunk splits, strip mode) and whole JSON usage bodies",
        run: sse_usage,
    },
    Target {
        name: "jwt",
        about: "JWKS documents and JWTs verified against them",
        run: jwt,
    },
    Target {
        name: "credentials_headers",
        about: "credential extraction, query strings, header names, authorities, CIDRs, attributes",
        run: credentials_headers,
    },
    Target {
        name: "rls_wire",
        about: "RateLimitResponse protobuf from the RLS service",
        run: rls_wire,
    },
    Target {
        name: "plugin_config",
        about: "the auth, ratelimit and affinity plugin configurations",
        run: plugin_config,
    },
    Target {
        name: "auth_callouts",
        about: "TokenReview / SubjectAccessReview answers, cached reviews, identity filter state, endpoint lists",
        run: auth_callouts,
    },
];

const APIS: [ApiKind; 3] = [
    ApiKind::ChatCompletions,
    ApiKind::Completions,
    ApiKind::Responses,
];

/// First byte: API and prompt cap; the rest: the body. A body the gateway rewrites for usage
/// must parse back to the same request, now with `include_usage: true`.
fn openai_request(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let api = APIS[usize::from(sel % 3)];
    let cap = [usize::MAX, 0, 1, 64, 4096][usize::from(sel / 3 % 5)];
    let Ok(req) = parse_request_capped(api, body, cap) else {
        return;
    };
    let _ = req.estimated_prompt_tokens();
    if cap != usize::MAX {
        return;
    }
    if let Ok(UsageInjection::Injected(new_body)) = request_stream_usage(&req, body) {
        let again = parse_request_capped(api, &new_body, cap)
            .unwrap_or_else(|e| panic!("the rewritten body does not parse: {e:?}"));
        assert_eq!(again.include_usage, Some(true));
        assert_eq!(again.model, req.model);
        assert_eq!(again.prompt, req.prompt);
        assert_eq!(again.stream, req.stream);
        assert_eq!(again.max_tokens, req.max_tokens);
        assert!(!again.needs_usage_injection());
    }
}

fn feed_all(config: SseConfig, chunks: &[&[u8]]) -> (Vec<SseEvent>, Vec<u8>, bool) {
    let mut p = SseParser::new(config);
    let (mut out, mut events) = (Vec::new(), Vec::new());
    let mut failed = false;
    for c in chunks {
        failed |= p.feed(c, &mut out, &mut events).is_err();
    }
    let _ = p.stats().estimated_completion_tokens();
    (events, out, failed)
}

/// First byte: limits, strip mode and a split step; the rest: a stream. Fed in pieces it must
/// give the events it gives fed whole; in strip mode, what it forwards is never more than it got.
fn sse_usage(data: &[u8]) {
    let _ = parse_response_usage(data);
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let config = SseConfig {
        max_line_bytes: [256 * 1024, 16, 100][usize::from(sel % 3)],
        max_event_bytes: [1024 * 1024, 32, 300][usize::from(sel / 3 % 3)],
        strip_usage_chunk: sel & 0x80 != 0,
    };
    let step = usize::from(sel / 9 % 7) + 1;
    let (whole, whole_out, whole_failed) = feed_all(config, &[stream]);
    let pieces: Vec<&[u8]> = stream.chunks(step).collect();
    let (split, split_out, split_failed) = feed_all(config, &pieces);
    if !whole_failed && !split_failed {
        assert_eq!(whole, split, "events depend on chunking");
        assert_eq!(whole_out, split_out, "forwarded bytes depend on chunking");
    }
    if config.strip_usage_chunk {
        assert!(whole_out.len() <= stream.len());
    }
}

/// Part 1: a JWKS document; part 2: a token; verified at a fixed time with every algorithm.
fn jwt(data: &[u8]) {
    let p = parts(data, 2);
    let Ok(keys) = KeySet::from_json(p[0]) else {
        // Still read the token against no keys: the header and payload are parsed first.
        return;
    };
    let v = Validation {
        issuer: "https://issuer.example".into(),
        audiences: vec!["gateway".into()],
        algorithms: vec![
            Alg::RS256,
            Alg::RS384,
            Alg::RS512,
            Alg::PS256,
            Alg::ES256,
            Alg::ES384,
            Alg::EdDSA,
            Alg::HS256,
        ],
        clock_skew_secs: 30,
    };
    let token = text(p[1]);
    let _ = verify(&token, &keys, &v, 1_700_000_000);
    let _ = verify(&token, &keys, &v, u64::MAX);
}

/// Parts: header values (one per line), a request path, a name.
fn credentials_headers(data: &[u8]) {
    let p = parts(data, 3);
    let values_text = text(p[0]);
    let values: Vec<&str> = values_text.lines().collect();
    let path = text(p[1]);
    let name = text(p[2]);
    for source in [
        CredentialSource::default(),
        CredentialSource::AuthorizationHeader {
            prefix: "APIKEY".into(),
        },
        CredentialSource::CustomHeader {
            name: name.to_string(),
        },
        CredentialSource::QueryString {
            name: name.to_string(),
        },
    ] {
        let _ = source.header_name();
        let _ = source.extract(&values);
    }
    let _ = query_values(&path, &name);
    let _ = query_values(&path, "api_key");
    for v in &values {
        let _ = headers::normalize_header_name(v);
        let _ = headers::strip_port(v);
        let _ = cidr::Cidr::parse(v);
        let _ = cidr::ip_of(v);
        let _ = attributes::Attribute::parse(v);
        let _ = window::parse_window_ms(v);
        let _ = identity::valid_property_name(v);
        let _ = kube::namespace_and_name(v);
    }
}

fn rls_wire(data: &[u8]) {
    let _ = rls::decode_response(data);
}

/// First byte: which plugin; the rest: its JSON configuration.
fn plugin_config(data: &[u8]) {
    let Some((&sel, cfg)) = data.split_first() else {
        return;
    };
    match sel % 3 {
        0 => {
            let _ = config::parse::<AuthConfig>(cfg);
        }
        1 => {
            let _ = config::parse::<RateLimitConfig>(cfg);
        }
        _ => {
            if let Ok(c) = config::parse::<AffinityConfig>(cfg) {
                let _ = c.parsed_endpoints();
            }
        }
    }
}

/// First byte: HTTP status; the rest: a callout answer or stored state.
fn auth_callouts(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let status = [None, Some(200), Some(201), Some(401), Some(500)][usize::from(sel % 5)];
    let audiences = vec!["gateway".to_string()];
    let _ = kube::read_token_review(status, body, &audiences);
    let _ = kube::read_token_review(status, body, &[]);
    let _ = kube::read_access_review(status, body);
    let _ = kube::decode_entry(body, 1_700_000_000);
    let _ = identity::decode(body);
    let _ = endpoint::parse_list(body);
}
