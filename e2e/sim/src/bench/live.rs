//! Live mode: the same seeded workload sent as real streaming HTTP requests to a URL (a
//! simulated pod, the gateway, or a real vLLM), measured client-side.
//!
//! Each request is a `POST /v1/chat/completions` with `stream: true` and
//! `stream_options.include_usage`, one user message holding the prompt as text (one 6-byte
//! word per token, so equal token prefixes are equal text prefixes and the simulator's tokenizer
//! counts one token per word), and `max_tokens` = the request's output length. Arrivals are
//! open-loop at the workload's times divided by `time_scale`; latencies are multiplied back so
//! results are in model time. TTFT is the time to the first non-empty content chunk. Which pod
//! served comes from the `x-served-by` header; cache hits from the usage chunk.

use crate::bench::cluster::{RequestRecord, RunResult};
use crate::bench::workload::{RequestSpec, Workload};
use crate::engine::EngineStats;
use crate::tokenizer::synthetic_token;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where and how to send the live workload.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveConfig {
    /// Base URL, e.g. `http://127.0.0.1:8000`, or several separated by commas: requests then
    /// take them in turn (a client-side round-robin over gateway replicas).
    pub url: String,
    /// Model name to put in requests.
    pub model: String,
    /// Arrivals are compressed, and latencies expanded, by this factor (match the pods').
    pub time_scale: f64,
    /// Give up on one request after this long (real time).
    pub request_timeout: Duration,
}

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The prompt of `spec` as text: one ` xxxxx` word per token.
pub fn prompt_text(spec: &RequestSpec) -> String {
    let mut s = String::with_capacity(spec.prompt_len() as usize * 6);
    for seg in &spec.prompt {
        for i in 0..seg.len {
            let t = synthetic_token(seg.seed, i);
            s.push(' ');
            for k in 0..5 {
                s.push(ALPHABET[((t >> (5 * k)) & 31) as usize] as char);
            }
        }
    }
    s
}

#[derive(Debug, Default)]
struct Outcome {
    arrival: f64,
    stage: usize,
    first_token: Option<f64>,
    finish: Option<f64>,
    output_tokens: u32,
    prompt_tokens: u32,
    cached_tokens: u32,
    backend: String,
    error: Option<String>,
}

/// The base URLs of `cfg.url` (one or more, comma-separated).
pub fn base_urls(cfg: &LiveConfig) -> Vec<String> {
    cfg.url
        .split(',')
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .collect()
}

async fn one(
    client: &reqwest::Client,
    cfg: &LiveConfig,
    base: &str,
    spec: &RequestSpec,
    start: Instant,
) -> Outcome {
    let since = |t: Instant| t.duration_since(start).as_secs_f64() * cfg.time_scale;
    let mut out = Outcome {
        arrival: since(Instant::now()),
        stage: spec.stage,
        ..Outcome::default()
    };
    let body = json!({
        "model": cfg.model,
        "messages": [{"role": "user", "content": prompt_text(spec)}],
        "max_tokens": spec.output_len,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let url = format!("{base}/v1/chat/completions");
    let resp = match client.post(url).json(&body).send().await {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    out.backend = resp
        .headers()
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    if !resp.status().is_success() {
        out.error = Some(format!("HTTP {}", resp.status()));
        return out;
    }
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                out.error = Some(e.to_string());
                return out;
            }
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find('\n') {
            let line: String = buf.drain(..=end).collect();
            let Some(data) = line.trim_end().strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                out.finish = Some(since(Instant::now()));
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                out.error = Some(format!("bad SSE data {data:?}"));
                return out;
            };
            let content = v["choices"][0]["delta"]["content"].as_str().unwrap_or("");
            if !content.is_empty() {
                out.output_tokens += 1;
                out.first_token.get_or_insert_with(|| since(Instant::now()));
            }
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                out.prompt_tokens = u["prompt_tokens"].as_u64().unwrap_or(0) as u32;
                out.cached_tokens = u["prompt_tokens_details"]["cached_tokens"]
                    .as_u64()
                    .unwrap_or(0) as u32;
            }
        }
    }
    if out.finish.is_none() {
        out.error = Some("stream ended without [DONE]".into());
    }
    out
}

/// The outcome of a live run: per-request records (in model time) and errors.
#[derive(Debug, Clone)]
pub struct LiveResult {
    /// Records and per-backend counters, for the common summary.
    pub run: RunResult,
    /// Backend names, in engine-index order.
    pub backends: Vec<String>,
    /// Failed requests with their first error.
    pub errors: Vec<String>,
    /// Most requests in flight at once.
    pub peak_in_flight: usize,
}

fn client(cfg: &LiveConfig) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(cfg.request_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()?)
}

/// Sends `workload` to `cfg.url` open-loop (each request at its arrival time) and measures it.
///
/// # Errors
/// If the HTTP client cannot be built.
pub async fn run_live(cfg: &LiveConfig, workload: &Workload) -> anyhow::Result<LiveResult> {
    let client = client(cfg)?;
    let bases = base_urls(cfg);
    if bases.is_empty() {
        anyhow::bail!("no target URL given");
    }
    let start = Instant::now();
    let in_flight = Arc::new(InFlight::default());
    let mut tasks = Vec::with_capacity(workload.requests.len());
    for (i, spec) in workload.requests.iter().enumerate() {
        let at = start + Duration::from_secs_f64(spec.arrival / cfg.time_scale);
        let (client, cfg, spec) = (client.clone(), cfg.clone(), spec.clone());
        let base = bases[i % bases.len()].clone();
        let in_flight = in_flight.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            in_flight.enter();
            let o = one(&client, &cfg, &base, &spec, start).await;
            in_flight.leave();
            o
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for t in tasks {
        outcomes.push(t.await.unwrap_or_else(|e| Outcome {
            error: Some(e.to_string()),
            ..Outcome::default()
        }));
    }
    Ok(collect(cfg, outcomes, start, in_flight.peak()))
}

/// Sends `workload`'s requests closed-loop: `concurrency` clients, each sending its next
/// request as soon as the previous one finished, for `seconds` of real time. Measures how
/// many streams a target carries and what latency it reports under that load.
///
/// # Errors
/// If the HTTP client cannot be built or the workload is empty.
pub async fn run_closed_loop(
    cfg: &LiveConfig,
    workload: &Workload,
    concurrency: usize,
    seconds: f64,
) -> anyhow::Result<LiveResult> {
    if workload.requests.is_empty() || concurrency == 0 {
        anyhow::bail!("closed loop needs requests and a positive concurrency");
    }
    let client = client(cfg)?;
    let bases = Arc::new(base_urls(cfg));
    if bases.is_empty() {
        anyhow::bail!("no target URL given");
    }
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(seconds);
    let requests: Arc<Vec<RequestSpec>> = Arc::new(workload.requests.clone());
    let in_flight = Arc::new(InFlight::default());
    let tasks: Vec<_> = (0..concurrency)
        .map(|k| {
            let (client, cfg, requests) = (client.clone(), cfg.clone(), requests.clone());
            let (in_flight, bases) = (in_flight.clone(), bases.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut i = k;
                while Instant::now() < stop {
                    let mut spec = requests[i % requests.len()].clone();
                    spec.stage = 0;
                    in_flight.enter();
                    let base = &bases[i % bases.len()];
                    out.push(one(&client, &cfg, base, &spec, start).await);
                    in_flight.leave();
                    i += concurrency;
                }
                out
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        match t.await {
            Ok(v) => outcomes.extend(v),
            Err(e) => outcomes.push(Outcome {
                error: Some(e.to_string()),
                ..Outcome::default()
            }),
        }
    }
    Ok(collect(cfg, outcomes, start, in_flight.peak()))
}

/// Counts requests in flight and remembers the peak.
#[derive(Debug, Default)]
struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl InFlight {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(n, Ordering::Relaxed);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::Relaxed);
    }
    fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

fn collect(cfg: &LiveConfig, outcomes: Vec<Outcome>, start: Instant, peak: usize) -> LiveResult {
    // Index backends in name order for a stable report.
    let names: BTreeSet<&str> = outcomes.iter().map(|o| o.backend.as_str()).collect();
    let backends: Vec<String> = names.into_iter().map(String::from).collect();
    let index = |b: &str| backends.iter().position(|x| x == b).unwrap_or(0);
    let mut stats = vec![EngineStats::default(); backends.len().max(1)];
    let mut errors = Vec::new();
    let records = outcomes
        .iter()
        .map(|o| {
            let engine = index(&o.backend);
            if let Some(e) = &o.error {
                errors.push(e.clone());
            }
            stats[engine].prefix_cache_queries += u64::from(o.prompt_tokens);
            stats[engine].prefix_cache_hits += u64::from(o.cached_tokens);
            let ok = o.error.is_none();
            RequestRecord {
                engine,
                stage: o.stage,
                arrival: o.arrival,
                first_token: o.first_token.filter(|_| ok),
                finish: o.finish.filter(|_| ok),
                prompt_len: o.prompt_tokens,
                output_len: o.output_tokens,
                cached_tokens: o.cached_tokens,
            }
        })
        .collect();
    LiveResult {
        run: RunResult {
            router: format!("live {}", cfg.url),
            records,
            engine_stats: stats,
            end_time: start.elapsed().as_secs_f64() * cfg.time_scale,
        },
        backends,
        errors,
        peak_in_flight: peak,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workload::Segment;
    use crate::tokenizer::tokenize;

    #[test]
    fn several_urls_are_split_and_trimmed() {
        let cfg = LiveConfig {
            url: "http://a:1/, http://b:2,,".into(),
            model: "m".into(),
            time_scale: 1.0,
            request_timeout: Duration::from_secs(1),
        };
        assert_eq!(base_urls(&cfg), ["http://a:1", "http://b:2"]);
    }

    #[test]
    fn prompt_text_is_one_simulator_token_per_workload_token() {
        let spec = RequestSpec {
            arrival: 0.0,
            prompt: vec![Segment { seed: 1, len: 50 }, Segment { seed: 2, len: 30 }],
            output_len: 1,
            output_seed: 3,
            stage: 0,
        };
        let text = prompt_text(&spec);
        assert_eq!(tokenize(&text).len(), 80);
        let mut shorter = spec.clone();
        shorter.prompt[1].len = 10;
        assert!(text.starts_with(&prompt_text(&shorter)));
    }
}
