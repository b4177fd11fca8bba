//! Endpoint-choice cost against prompt size: the affinity plugin + host-shim pick call (a
//! ~2 KB call whatever the prompt) against host-shim as a standard ext_proc Endpoint Picker
//! (the whole body streamed through gRPC), with bare Envoy (the client names the pod) as the
//! baseline and the plugin deciding locally (no call) to separate the in-Envoy body work from
//! the call, alternating in one run. Writes `e2e/results/pick.md` (or `--out`).

use anyhow::Result;
use clap::Parser;
use infergate_e2e::child::HostShim;
use infergate_e2e::envoy::{ClusterSpec, Envoy, ExtProcSpec, GatewaySpec, WasmFilter};
use infergate_e2e::loadgen::{self, LoadResult, LoadSpec};
use infergate_e2e::upstream::Upstream;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Pick-cost benchmark.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Rounds (each runs every variant once per size and concurrency).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds per run.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Where to write the markdown table.
    #[arg(long, default_value_os_t = infergate_e2e::paths::workspace_root().join("e2e/results/pick.md"))]
    out: PathBuf,
}

const MODEL: &str = "Qwen/Qwen3-0.6B";

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let pods = [
        Upstream::start("pod-1", MODEL).await?,
        Upstream::start("pod-2", MODEL).await?,
    ];
    for p in &pods {
        p.stop_recording();
    }
    let endpoints: Vec<String> = pods.iter().map(|p| p.addr.to_string()).collect();
    let shim = HostShim::start(&endpoints).await?;
    shim.wait_ready(2, Duration::from_secs(10)).await?;
    let affinity = GatewaySpec {
        clusters: vec![ClusterSpec {
            name: "host-shim".into(),
            addresses: vec![shim.http],
            http2: true,
        }],
        ..GatewaySpec::default()
    }
    .with_filter(WasmFilter::plugin(
        "affinity",
        json!({"endpoints": endpoints, "hostShim": {"cluster": "host-shim", "timeoutMs": 1000},
               "maxBodyBytes": 4 * 1024 * 1024})
        .to_string(),
    )?);
    // The same plugin deciding locally (rendezvous hashing, no pick call): what parsing and
    // hashing the body inside Envoy costs on its own.
    let local = GatewaySpec::default().with_filter(WasmFilter::plugin(
        "affinity",
        json!({"endpoints": endpoints, "maxBodyBytes": 4 * 1024 * 1024}).to_string(),
    )?);
    let ext_proc = GatewaySpec {
        ext_proc: Some(ExtProcSpec {
            cluster: "epp".into(),
            body_mode: "FULL_DUPLEX_STREAMED".into(),
        }),
        clusters: vec![ClusterSpec {
            name: "epp".into(),
            addresses: vec![shim.grpc],
            http2: true,
        }],
        ..GatewaySpec::default()
    };
    let variants = [
        (
            "bare Envoy (client names the pod)",
            Envoy::start(&GatewaySpec::default()).await?,
        ),
        (
            "affinity plugin + pick call",
            Envoy::start(&affinity).await?,
        ),
        (
            "affinity plugin, local hashing (no call)",
            Envoy::start(&local).await?,
        ),
        (
            "ext_proc Endpoint Picker (full duplex)",
            Envoy::start(&ext_proc).await?,
        ),
    ];
    let sizes = [4 * 1024, 128 * 1024, 1024 * 1024];
    let scratch = tempfile::tempdir()?;
    let mut results: BTreeMap<(usize, u32, usize), Vec<LoadResult>> = BTreeMap::new();
    for round in 1..=args.rounds {
        for &size in &sizes {
            let body = json!({"model": MODEL, "max_tokens": 1, "messages": [
                {"role": "user", "content": "x".repeat(size)}]})
            .to_string();
            for connections in [1u32, 32] {
                for (vi, (name, envoy)) in variants.iter().enumerate() {
                    let spec = LoadSpec {
                        url: format!("{}/v1/chat/completions", envoy.http_url()),
                        connections,
                        duration: Duration::from_secs(args.seconds),
                        method: "POST".into(),
                        headers: vec![
                            ("content-type".into(), "application/json".into()),
                            (
                                "x-gateway-destination-endpoint".into(),
                                endpoints[0].clone(),
                            ),
                        ],
                        body: Some(body.clone()),
                    };
                    let dir = scratch.path().to_path_buf();
                    let r = tokio::task::spawn_blocking(move || loadgen::run(&spec, None, &dir))
                        .await??;
                    eprintln!(
                        "round {round} {:>5} KB c={connections:<2} {name:<40} p50 {:>8.0} µs p99 {:>8.0} µs {:>7.0} req/s errors {}",
                        size / 1024, r.p50_us, r.p99_us, r.rps, r.errors
                    );
                    results.entry((size, connections, vi)).or_default().push(r);
                }
            }
        }
    }

    let mut out = String::from("| prompt | conns | variant | p50 µs | p99 µs | req/s | p50 over bare µs | errors |\n|---|---|---|---|---|---|---|---|\n");
    for &size in &sizes {
        for connections in [1u32, 32] {
            let bare = results
                .get(&(size, connections, 0))
                .map(|r| loadgen::median(r, |x: &LoadResult| x.p50_us))
                .unwrap_or(f64::NAN);
            for (vi, (name, _)) in variants.iter().enumerate() {
                let Some(r) = results.get(&(size, connections, vi)) else {
                    continue;
                };
                let p50 = loadgen::median(r, |x: &LoadResult| x.p50_us);
                let errors: u64 = r.iter().map(|x| x.errors).sum();
                out += &format!(
                    "| {} KB | {connections} | {name} | {p50:.0} | {:.0} | {:.0} | {:.0} | {errors} |\n",
                    size / 1024,
                    loadgen::median(r, |x: &LoadResult| x.p99_us),
                    loadgen::median(r, |x: &LoadResult| x.rps),
                    p50 - bare
                );
            }
        }
    }
    out += &format!(
        "\nMedians of {} alternating rounds of {} s; Envoy 1.40, one worker; host-shim and two minimal in-process upstreams (the pod parses the body in every variant); wrk, 1 thread; same 2-core machine. Reproduce: `make bench`.\n",
        args.rounds, args.seconds
    );
    println!("{out}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &out)?;
    Ok(())
}
