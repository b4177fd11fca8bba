//! Live mode against a real in-process pod: every request streams to completion, token counts
//! match the workload, and shared prefixes show up as cache hits in the usage chunks.

use infergate_sim::bench::live::{run_closed_loop, run_live, LiveConfig};
use infergate_sim::bench::workload::{generate, WorkloadKind, WorkloadSpec};
mod common;

use common::SimPod;
use std::time::Duration;

async fn pod(scale: f64) -> String {
    SimPod::named("pod-live")
        .model("m")
        .time_scale(scale)
        .output_tokens(10, 0.0)
        .max_body_bytes(1 << 22)
        .start()
        .await
}

/// A live run against a fresh pod whose timings run `scale` times faster.
async fn live_config(scale: f64) -> LiveConfig {
    LiveConfig {
        url: pod(scale).await,
        model: "m".into(),
        time_scale: scale,
        request_timeout: Duration::from_secs(30),
    }
}

fn workload() -> infergate_sim::bench::workload::Workload {
    generate(&WorkloadSpec {
        kind: WorkloadKind::ZipfHot,
        seed: 5,
        stage_rates: vec![2.0],
        stage_seconds: 4.0,
        cluster_kv_tokens: 100_000,
    })
}

#[tokio::test]
async fn open_loop_run_streams_every_request_with_exact_counts() {
    let cfg = live_config(40.0).await;
    let w = workload();
    assert!(w.requests.len() >= 3);
    let r = run_live(&cfg, &w).await.unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.backends, vec!["pod-live".to_string()]);
    for (spec, rec) in w.requests.iter().zip(&r.run.records) {
        assert_eq!(rec.output_len, spec.output_len);
        // The chat template adds a few tokens around the prompt text.
        assert!(rec.prompt_len > spec.prompt_len() && rec.prompt_len < spec.prompt_len() + 40);
        assert!(rec.first_token.unwrap() <= rec.finish.unwrap());
    }
    // Requests after the first that share the hot prefix hit the cache.
    let hot = w.requests[0].prompt[0];
    let hits = w
        .requests
        .iter()
        .zip(&r.run.records)
        .skip(1)
        .filter(|(s, rec)| s.prompt[0] == hot && rec.cached_tokens >= 5_000)
        .count();
    let later_same = w
        .requests
        .iter()
        .skip(1)
        .filter(|s| s.prompt[0] == hot)
        .count();
    assert_eq!(hits, later_same);
}

#[tokio::test]
async fn closed_loop_keeps_the_requested_concurrency() {
    let cfg = live_config(40.0).await;
    let r = run_closed_loop(&cfg, &workload(), 8, 0.5).await.unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.peak_in_flight, 8);
    assert!(r.run.records.len() >= 8);
    assert!(run_closed_loop(&cfg, &workload(), 0, 0.1).await.is_err());
}
