//! host-shim's resident memory, live: the real sidecar over 256 endpoints (in-process pods
//! reporting an H200-sized KV cache) scraped every 50 ms, first idle, then with every
//! endpoint's prefix index filled to capacity through the served-report API, then after picks.
//! Writes a markdown table to `e2e/results/host-shim-memory.md` (or `--out`).

use anyhow::{bail, Context, Result};
use clap::Parser;
use infergate_core::pick_wire::{encode_pick, encode_served, PickQuery, MAX_HASHES};
use infergate_e2e::child::HostShim;
use infergate_e2e::upstream::Upstream;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Live host-shim memory benchmark.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Endpoints (simulated pods).
    #[arg(long, default_value_t = 256)]
    endpoints: usize,
    /// KV blocks of 16 tokens each pod reports (50,000: Llama-3.1-8B on an H200).
    #[arg(long, default_value_t = 50_000)]
    kv_blocks: u64,
    /// Where to write the markdown table.
    #[arg(long, default_value_os_t = infergate_e2e::paths::workspace_root().join("e2e/results/host-shim-memory.md"))]
    out: PathBuf,
}

const MODEL: &str = "Qwen/Qwen3-0.6B";

/// `VmRSS` of `pid`, in MiB.
fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")?;
    Ok(kb / 1024.0)
}

/// (blocks held, capacity) summed over every endpoint's index.
async fn index_totals(client: &reqwest::Client, shim: &HostShim) -> Result<(u64, u64)> {
    let state: Value = client
        .get(format!("http://{}/debug/state", shim.http))
        .send()
        .await?
        .json()
        .await?;
    let mut totals = (0, 0);
    for e in state["endpoints"].as_array().context("endpoints")? {
        totals.0 += e["index"]["blocks"].as_u64().unwrap_or(0);
        totals.1 += e["index"]["capacity"].as_u64().unwrap_or(0);
    }
    Ok(totals)
}

/// Mean time host-shim spent deciding a pick (its `host_shim_pick_duration_seconds`), in µs.
async fn mean_pick_us(client: &reqwest::Client, shim: &HostShim) -> Result<f64> {
    let text = client
        .get(format!("http://{}/metrics", shim.http))
        .send()
        .await?
        .text()
        .await?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    match (
        value("host_shim_pick_duration_seconds_sum "),
        value("host_shim_pick_duration_seconds_count "),
    ) {
        (Some(sum), Some(count)) if count > 0.0 => Ok(sum / count * 1e6),
        _ => bail!("host-shim's /metrics has no pick duration"),
    }
}

/// A cheap deterministic stream of distinct-looking hashes.
fn next_hash(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut pods = Vec::with_capacity(args.endpoints);
    for i in 0..args.endpoints {
        let pod = Upstream::start(&format!("pod-{i}"), MODEL).await?;
        pod.stop_recording();
        pod.set_kv_blocks(args.kv_blocks);
        pods.push(pod);
    }
    let endpoints: Vec<String> = pods.iter().map(|p| p.addr.to_string()).collect();
    let shim = HostShim::start(&endpoints).await?;
    shim.wait_ready(args.endpoints, Duration::from_secs(60))
        .await?;
    let pid = shim.process.pid().context("host-shim exited")?;
    let client = reqwest::Client::new();
    // A few seconds of scraping 256 pods every 50 ms.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_mib(pid)?;

    // Fill every index past capacity (LRU: it then holds exactly its capacity).
    let (_, capacity) = index_totals(&client, &shim).await?;
    let per_endpoint = capacity / args.endpoints as u64;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for e in &endpoints {
        let mut sent = 0;
        while sent < per_endpoint + per_endpoint / 10 {
            let hashes: Vec<u64> = (0..MAX_HASHES).map(|_| next_hash(&mut seed)).collect();
            let r = client
                .post(format!("http://{}/v1/served", shim.http))
                .header("content-type", "application/octet-stream")
                .body(encode_served(e, &hashes))
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("served report refused: {}", r.status());
            }
            sent += hashes.len() as u64;
        }
    }
    let (held, capacity) = index_totals(&client, &shim).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let full = rss_mib(pid)?;

    // Picks against full indexes (256 hashes each): memory after a few and after many shows
    // whether picking holds on to anything.
    let mut after_picks = Vec::new();
    let mut done = 0;
    for target in [2_000, 20_000] {
        while done < target {
            let hashes: Vec<u64> = (0..256).map(|_| next_hash(&mut seed)).collect();
            let q = encode_pick(&PickQuery {
                model: MODEL,
                session: None,
                subset: &[],
                prompt_tokens: 16_384,
                block_size: infergate_core::prefix::DEFAULT_BLOCK_SIZE,
                hashes: &hashes,
                sheddable: false,
            });
            client
                .post(format!("http://{}/v1/pick", shim.http))
                .header("content-type", "application/octet-stream")
                .body(q)
                .send()
                .await?;
            done += 1;
        }
        after_picks.push(rss_mib(pid)?);
    }
    let pick_us = mean_pick_us(&client, &shim).await?;
    shim.process.stop(Duration::from_secs(5)).await;

    let out = format!(
        "| endpoints | KV blocks per pod (16 tokens) | index blocks held / capacity | RSS idle (MiB) | RSS with full indexes (MiB) | after 2,000 picks (MiB) | after 20,000 picks (MiB) | mean pick decision (µs) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n\
         | {} | {} | {held} / {capacity} | {idle:.1} | {full:.1} | {:.1} | {:.1} | {pick_us:.1} |\n\n\
         The real `host-shim` process (`VmRSS`), scraping every endpoint's `/metrics` every 50 ms; \
         indexes filled through `POST /v1/served`; the pick decision time is host-shim's own \
         `host_shim_pick_duration_seconds` (endpoint snapshot and scheduling; no HTTP, no telemetry). Reproduce: `make bench` (`bench-shim-memory`).\n",
        args.endpoints,
        args.kv_blocks,
        after_picks.first().copied().unwrap_or(f64::NAN),
        after_picks.get(1).copied().unwrap_or(f64::NAN),
    );
    println!("{out}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &out)?;
    Ok(())
}
