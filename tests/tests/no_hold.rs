//! The plugins' no-hold mode in a real Envoy whose Wasm filters run without
//! `allow_on_headers_stop_iteration` (as under Istio's `WasmPlugin`, Envoy Gateway's
//! `EnvoyExtensionPolicy`, or Envoy 1.34): auth's `models` rule and ratelimit's token
//! pre-charge decide from the body callback, the headers are never held for the body, routing
//! comes from host-shim's ext_proc Endpoint Picker, and no request hangs (every client is
//! bounded by a timeout; hangs are counted). Runs on whichever Envoy `ENVOY_BIN` names.

mod common;
mod compat_chain;

use compat_chain::*;
use futures_util::future::join_all;
use infergate_e2e::envoy::{Envoy, GatewaySpec, WasmFilter};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hold_auth_allows_and_denies_from_the_body_phase() -> anyhow::Result<()> {
    let chain = Chain::start(Mode::NoHold, 2, 1_000_000).await?;
    let c = client();
    // Allowed: the body's model passes the rule; the pod gets the body whole, with the
    // identity headers and the picker's destination.
    let body = chat(MODEL, 4, "Hello from a gateway without the field");
    let a = answer(c.post(chain.url()).bearer_auth(ALICE).json(&body)).await;
    assert_eq!(a.status(), 200, "{a:?}\n{}", chain.envoy.log());
    let seen: Vec<_> = chain.pods.iter().flat_map(|p| p.requests()).collect();
    assert_eq!(seen.len(), 1);
    assert_eq!(serde_json::from_slice::<Value>(&seen[0].body)?, body);
    assert_eq!(seen[0].header("x-infergate-user"), vec!["alice"]);
    assert_eq!(seen[0].header("x-gateway-destination-endpoint").len(), 1);
    // 401 from the headers, before any body is read.
    let a = answer(c.post(chain.url()).bearer_auth("sk-nobody").json(&body)).await;
    assert_eq!(a.status(), 401, "{a:?}");
    let a = answer(c.post(chain.url()).json(&body)).await;
    assert_eq!(a.status(), 401, "{a:?}");
    // 403 from the body phase: another model (alice) and a group without models (bob). The
    // headers had gone on; the upstream request was abandoned before any body byte.
    let a = answer(
        c.post(chain.url())
            .bearer_auth(ALICE)
            .json(&chat("other/model", 4, "hi")),
    )
    .await;
    assert_eq!(a.status(), 403, "{a:?}");
    assert!(
        matches!(&a, Answer::Status(_, b) if b.contains("permission_error")),
        "{a:?}"
    );
    let a = answer(c.post(chain.url()).bearer_auth(BOB).json(&body)).await;
    assert_eq!(a.status(), 403, "{a:?}");
    assert_eq!(chain.forwarded(), 1, "a denied body reached a pod");
    // A body sent in slow chunks is still read to its end before the decision.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = {
        let text = serde_json::to_vec(&chat(MODEL, 4, &"chunked ".repeat(4000)))?;
        text.chunks(8 * 1024).map(|c| Ok(c.to_vec())).collect()
    };
    let stream = futures_util::stream::iter(chunks).then(|c| async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        c
    });
    let a = answer(
        c.post(chain.url())
            .bearer_auth(ALICE)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream)),
    )
    .await;
    assert_eq!(a.status(), 200, "{a:?}");
    assert_eq!(chain.forwarded(), 2);
    // GET without a body: no models rule, nothing to wait for.
    let a = answer(
        c.get(format!("{}/v1/models", chain.envoy.http_url()))
            .bearer_auth(BOB),
    )
    .await;
    assert_eq!(a.status(), 200, "{a:?}");
    Ok(())
}

use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hold_ratelimit_answers_429_from_the_body_phase() -> anyhow::Result<()> {
    // 1000 tokens per user: a request asking up to 600 completion tokens fits once.
    let chain = Chain::start(Mode::NoHold, 1, 1000).await?;
    let c = client();
    let body = chat(MODEL, 600, "Tell me about prefix caching.");
    let first = c
        .post(chain.url())
        .bearer_auth(ALICE)
        .json(&body)
        .send()
        .await?;
    assert_eq!(first.status(), 200);
    let remaining: u64 = first.headers()["x-ratelimit-remaining-tokens"]
        .to_str()?
        .parse()?;
    assert!(
        remaining < 600,
        "the estimate was charged: {remaining} left"
    );
    let _ = first.bytes().await?;
    // Settled to the pod's real (small) usage; a request whose cap alone exceeds what is
    // left is refused from the body phase.
    let second = c
        .post(chain.url())
        .bearer_auth(ALICE)
        .json(&chat(MODEL, 5_000, "Tell me about prefix caching."))
        .send()
        .await?;
    assert_eq!(second.status(), 429);
    assert!(second.headers().contains_key("retry-after"));
    let err: Value = second.json().await?;
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    assert_eq!(chain.forwarded(), 1, "the limited body reached a pod");
    // A stream whose usage chunk the plugin asks for: the body grows after the headers left,
    // so the plugin dropped content-length; the pod gets a well-formed body.
    let chain = Chain::start(Mode::NoHold, 1, 1_000_000).await?;
    let mut stream_body = chat(MODEL, 8, "stream please");
    stream_body["stream"] = json!(true);
    let r = c
        .post(chain.url())
        .bearer_auth(ALICE)
        .json(&stream_body)
        .send()
        .await?;
    let status = r.status();
    let text = r.text().await?;
    assert_eq!(status, 200, "{text}\n{}", chain.envoy.log());
    assert!(text.contains("[DONE]"), "{text}");
    assert!(!text.contains("\"usage\""), "injected usage leaked: {text}");
    let seen = &chain.pods[0].requests()[0];
    let forwarded: Value = serde_json::from_slice(&seen.body)?;
    assert_eq!(forwarded["stream_options"]["include_usage"], true);
    assert!(seen
        .header("content-length")
        .iter()
        .all(|l| l.parse::<usize>().ok() == Some(seen.body.len())));
    Ok(())
}

/// One request of the hang census: what it is and the status it must get.
struct Probe {
    name: &'static str,
    key: Option<&'static str>,
    body: Option<Vec<u8>>,
    want: u16,
}

fn probes() -> Vec<Probe> {
    let ok = |n: u64| serde_json::to_vec(&chat(MODEL, 4, &"p".repeat(n as usize))).unwrap();
    vec![
        Probe {
            name: "allowed",
            key: Some(ALICE),
            body: Some(ok(100)),
            want: 200,
        },
        Probe {
            name: "allowed 2 MiB",
            key: Some(ALICE),
            body: Some(ok(2 * 1024 * 1024)),
            want: 200,
        },
        Probe {
            name: "no key",
            key: None,
            body: Some(ok(100)),
            want: 401,
        },
        Probe {
            name: "other model",
            key: Some(ALICE),
            body: Some(serde_json::to_vec(&chat("other/model", 4, "x")).unwrap()),
            want: 403,
        },
        Probe {
            name: "group without models",
            key: Some(BOB),
            body: Some(ok(100)),
            want: 403,
        },
        Probe {
            name: "over the token budget",
            key: Some(ALICE),
            body: Some(serde_json::to_vec(&chat(MODEL, 1_000_000_000, "x")).unwrap()),
            want: 429,
        },
        Probe {
            name: "malformed body",
            key: Some(ALICE),
            body: Some(b"{not json".to_vec()),
            want: 0, // refused (400/403): any answer, as long as one comes
        },
        Probe {
            name: "empty body",
            key: Some(ALICE),
            body: Some(Vec::new()),
            want: 0,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_hangs_without_the_field() -> anyhow::Result<()> {
    // 100 M tokens: the 2 MiB prompts fit every round; a 1 G completion cap does not.
    let chain = Chain::start(Mode::NoHold, 2, 100_000_000).await?;
    let url = chain.url();
    let rounds = 4;
    let mut hung = Vec::new();
    let mut wrong = Vec::new();
    for _ in 0..rounds {
        let answers = join_all(probes().into_iter().map(|p| {
            let url = url.clone();
            async move {
                let mut req = client()
                    .post(url)
                    .header("content-type", "application/json");
                if let Some(k) = p.key {
                    req = req.bearer_auth(k);
                }
                if let Some(b) = p.body.clone() {
                    req = req.body(b);
                }
                (p, answer(req).await)
            }
        }))
        .await;
        for (p, a) in answers {
            match &a {
                Answer::Hung => hung.push(p.name),
                Answer::Status(s, _) if p.want == 0 && *s >= 400 => {}
                Answer::Status(s, _) if *s == p.want => {}
                other => wrong.push(format!("{}: {other:?}", p.name)),
            }
        }
    }
    assert!(
        hung.is_empty(),
        "{} of {} requests hung: {hung:?}",
        hung.len(),
        rounds * probes().len()
    );
    assert!(wrong.is_empty(), "{wrong:?}\n{}", chain.envoy.log());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_without_the_field_is_refused_at_load_naming_it() -> anyhow::Result<()> {
    let spec = GatewaySpec {
        allow_on_headers_stop_iteration: false,
        ..GatewaySpec::default()
    }
    .with_filter(WasmFilter::plugin(
        "affinity",
        r#"{"endpoints":["127.0.0.1:8000"]}"#,
    )?);
    let err = match Envoy::start(&spec).await {
        Ok(_) => panic!("envoy loaded the affinity plugin in no-hold mode"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(
            "infergate-affinity: invalid configuration: field `allowOnHeadersStopIteration`"
        ),
        "{err}"
    );
    Ok(())
}

/// The hazard the no-hold mode avoids, on this Envoy: a plugin told it may hold headers while
/// Envoy's field is absent waits for a body callback that never comes. Bounded by a short
/// client timeout; this is the one combination the rendered resources never produce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holding_without_the_envoy_field_hangs_which_is_why_the_default_is_no_hold(
) -> anyhow::Result<()> {
    let pod = infergate_e2e::upstream::Upstream::start("pod-1", MODEL).await?;
    let mut auth = auth_config();
    auth["allowOnHeadersStopIteration"] = json!(true);
    let envoy = common::Gateway::builder()
        .hold_headers(false)
        .auth(auth)
        .start()
        .await?;
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    // Alice's chat completion, sent straight to the pod.
    let alice_to_pod = |envoy: &Envoy| {
        c.post(format!("{}/v1/chat/completions", envoy.http_url()))
            .header(
                infergate_core::headers::DESTINATION_ENDPOINT,
                pod.addr.to_string(),
            )
            .bearer_auth(ALICE)
            .json(&chat(MODEL, 4, "hi"))
    };
    let a = answer(alice_to_pod(&envoy)).await;
    assert_eq!(a, Answer::Hung, "{}", envoy.log());
    // The same plugin in its default mode answers.
    drop(envoy);
    let envoy = common::Gateway::builder()
        .hold_headers(false)
        .auth(auth_config())
        .start()
        .await?;
    let a = answer(alice_to_pod(&envoy)).await;
    assert_eq!(a.status(), 200, "{a:?}");
    Ok(())
}
