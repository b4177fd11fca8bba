//! `make bench`: the gateway's throughput, latency and CPU per request with the plugins,
//! against bare Envoy measured alongside in the same run (variants alternate, round by round).
//!
//! Writes a markdown table to `e2e/results/gateway.md` (or `--out`).
//!
//! With `--compare-wasm-dir DIR` every variant also runs with a second set of built plugins
//! (e.g. from the commit before a refactor), the two sets alternating round by round, and the
//! output is a before/after table (`tools/bench-compare.sh`, `e2e/results/refactor-cost.md`).

use anyhow::{Context, Result};
use clap::Parser;
use infergate_core::auth::jwt::testing::{self, TestKey};
use infergate_core::auth::jwt::Alg;
use infergate_e2e::bench_compare::{self, Outcome, PluginSet, Probe, Row, Runs};
use infergate_e2e::cpus::{self, CpuList};
use infergate_e2e::envoy::{ClusterSpec, Envoy, GatewaySpec, WasmFilter};
use infergate_e2e::loadgen::{self, LoadResult, LoadSpec};
use infergate_e2e::upstream::Upstream;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Gateway overhead benchmark.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Rounds (each runs every variant once, in turn).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds per throughput run (32 connections).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Seconds per single-connection latency run.
    #[arg(long, default_value_t = 3)]
    latency_seconds: u64,
    /// Envoy worker counts to measure (`--concurrency`), comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<u32>,
    /// Where to write the markdown table [default: e2e/results/gateway.md, or
    /// e2e/results/refactor-cost.md with --compare-wasm-dir].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The plugins to measure: a directory of `infergate_<name>.wasm` [default: the build's
    /// target/wasm32-wasip1/release].
    #[arg(long)]
    wasm_dir: Option<PathBuf>,
    /// How a comparison names the plugins of --wasm-dir.
    #[arg(long, default_value = "after")]
    label: String,
    /// A second set of plugins (a directory of `infergate_<name>.wasm`, e.g. built from the
    /// commit before a refactor): every variant runs with both sets, alternating, and the
    /// output compares them.
    #[arg(long)]
    compare_wasm_dir: Option<PathBuf>,
    /// How a comparison names the plugins of --compare-wasm-dir.
    #[arg(long, default_value = "before")]
    compare_label: String,
    /// Pin every Envoy to these CPUs (`taskset -c` list, e.g. `1`) and this benchmark, wrk,
    /// the upstream and host-shim to the others [default: no pinning].
    #[arg(long)]
    pin_envoy_cpus: Option<String>,
}

const MODEL: &str = "Qwen/Qwen3-0.6B";
const KEY: &str = "bench-key";

/// A gateway variant with one plugin set: its running Envoy, or why it could not run.
type Variant = std::result::Result<Envoy, String>;

fn filters(names: &[&str], pod: &str, set: &PluginSet) -> Result<Vec<WasmFilter>> {
    let digest = infergate_core::auth::apikey::KeyDigest::of(KEY.as_bytes()).to_hex();
    let mut out = Vec::new();
    for n in names {
        let config = match *n {
            "auth" => json!({"methods": [{"name": "keys", "apiKey": {"keys": [
                {"sha256": digest, "identity": {"userid": "bench", "groups": ["premium"]}}]}}]}),
            "auth-jwt" => json!({"methods": [{"name": "oidc", "jwt": {
                "issuer": JWT_ISSUER, "audiences": [JWT_AUDIENCE], "algorithms": ["RS256", "ES256"],
                "jwks": testing::jwks(&[(TestKey::Rsa, "rsa"), (TestKey::P256, "ec256")])}}]}),
            "auth-tokenreview" => json!({"methods": [{"name": "k8s", "kubernetesTokenReview": {
                "cluster": "kube", "bearerToken": "bench-gateway-sa-token",
                "audiences": ["https://kubernetes.default.svc"], "timeoutMs": 1000,
                "cacheTtlSeconds": 3600}}]}),
            "ratelimit" => {
                json!({"limits": [{"name": "per-user", "rates": [{"limit": 1_000_000_000u64, "window": "1h"}],
                "counters": ["auth.identity.userid"]}]})
            }
            "ratelimit-tokens" => {
                json!({"limits": [{"name": "tokens", "rates": [{"limit": 1_000_000_000_000u64, "window": "1h"}],
                "counters": ["auth.identity.userid"], "counts": "tokens"}]})
            }
            "affinity" => json!({"endpoints": [pod]}),
            "affinity-pick" => {
                json!({"endpoints": [pod], "hostShim": {"cluster": "host-shim", "timeoutMs": 1000}})
            }
            other => anyhow::bail!("unknown plugin {other}"),
        };
        let plugin = match *n {
            "ratelimit-tokens" => "ratelimit",
            "auth-jwt" | "auth-tokenreview" => "auth",
            "affinity-pick" => "affinity",
            other => other,
        };
        out.push(WasmFilter {
            name: plugin.to_string(),
            wasm: set.wasm(plugin)?,
            config: config.to_string(),
        });
    }
    Ok(out)
}

const JWT_ISSUER: &str = "https://idp.bench";
const JWT_AUDIENCE: &str = "infergate";

/// The bearer credential a variant's clients send.
fn credential(name: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = json!({"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "sub": "bench",
                        "iat": now, "exp": now + 24 * 3600});
    if name.contains("RS256") {
        testing::sign(TestKey::Rsa, Alg::RS256, Some("rsa"), &claims)
    } else if name.contains("ES256") {
        testing::sign(TestKey::P256, Alg::ES256, Some("ec256"), &claims)
    } else if name.contains("TokenReview") {
        "bench-kube-token".to_string()
    } else {
        KEY.to_string()
    }
}

/// A stand-in kube-apiserver that authenticates every TokenReview (the plugin caches the
/// answer, so after the first request the benchmark measures the cached path).
async fn kube_stub() -> Result<std::net::SocketAddr> {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let review: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        let answer = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                        "spec": review["spec"],
                        "status": {"authenticated": true, "audiences": review["spec"]["audiences"],
                                   "user": {"username": "bench", "groups": ["premium"]}}});
                        let mut resp =
                            hyper::Response::new(Full::new(bytes::Bytes::from(answer.to_string())));
                        *resp.status_mut() = hyper::StatusCode::CREATED;
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<()> {
    let args = Args::parse();
    // Pinned: this process first (its threads, and every child started later, inherit the
    // other CPUs), each Envoy once it runs.
    let envoy_cpus = match &args.pin_envoy_cpus {
        Some(list) => {
            let online = cpus::online();
            let envoy = CpuList::parse(list, online)?;
            envoy.complement(online)?.pin(std::process::id())?;
            Some(envoy)
        }
        None => None,
    };
    let pod = Upstream::start("bench-pod", MODEL).await?;
    pod.stop_recording();
    let pod_addr = pod.addr.to_string();
    let kube = kube_stub().await?;
    let shim = infergate_e2e::child::HostShim::start(std::slice::from_ref(&pod_addr)).await?;
    shim.wait_ready(1, Duration::from_secs(10)).await?;
    let layouts: Vec<(&str, Vec<&str>)> = vec![
        ("bare Envoy", vec![]),
        ("auth (JWT RS256)", vec!["auth-jwt"]),
        ("auth (JWT ES256)", vec!["auth-jwt"]),
        ("auth (TokenReview, cached)", vec!["auth-tokenreview"]),
        (
            "auth (API key) + ratelimit (requests)",
            vec!["auth", "ratelimit"],
        ),
        (
            "auth + ratelimit + affinity",
            vec!["auth", "ratelimit", "affinity"],
        ),
        (
            "auth + ratelimit + affinity (host-shim pick)",
            vec!["auth", "ratelimit", "affinity-pick"],
        ),
        (
            "auth + ratelimit (tokens) + affinity",
            vec!["auth", "ratelimit-tokens", "affinity"],
        ),
    ];
    let prompt = "You are a helpful assistant. ".repeat(30);
    let body = json!({"model": MODEL, "max_tokens": 8, "messages": [
        {"role": "system", "content": prompt}, {"role": "user", "content": "Hello!"}]})
    .to_string();
    let scratch = tempfile::tempdir()?;
    let current = PluginSet {
        label: args.label.clone(),
        dir: args
            .wasm_dir
            .clone()
            .unwrap_or_else(|| infergate_e2e::paths::target_dir().join("wasm32-wasip1/release")),
    };
    // Comparing: set 0 is the baseline ("before"), set 1 the plugins measured ("after").
    let sets: Vec<PluginSet> = match &args.compare_wasm_dir {
        Some(dir) => vec![
            PluginSet {
                label: args.compare_label.clone(),
                dir: dir.clone(),
            },
            current,
        ],
        None => vec![current],
    };
    let comparing = sets.len() > 1;
    let headers = |name: &str| {
        vec![
            ("content-type".to_string(), "application/json".to_string()),
            (
                "authorization".to_string(),
                format!("Bearer {}", credential(name)),
            ),
            // Bare Envoy has no affinity filter: the client names the pod (with
            // the filter, this header is removed and replaced).
            (
                "x-gateway-destination-endpoint".to_string(),
                pod_addr.clone(),
            ),
        ]
    };
    let mut tables = String::new();
    // Every single measurement, for the results file: the medians hide how much rounds vary.
    let mut per_round: Vec<String> = Vec::new();
    for &workers in &args.workers {
        // variants[layout][set]
        let mut variants: Vec<Vec<Variant>> = Vec::new();
        for (name, plugins) in &layouts {
            let mut per_set = Vec::new();
            for (si, set) in sets.iter().enumerate() {
                let started = start_variant(
                    name,
                    plugins,
                    set,
                    workers,
                    &pod_addr,
                    kube,
                    shim.http,
                    &headers(name),
                    &body,
                )
                .await
                .and_then(|envoy| {
                    if let (Some(cpus), Some(pid)) = (&envoy_cpus, envoy.pid()) {
                        cpus.pin(pid)?;
                    }
                    Ok(envoy)
                });
                // Only the baseline of a comparison may be skipped: the plugins measured must run.
                let baseline = comparing && si == 0;
                per_set.push(match started {
                    Ok(envoy) => Ok(envoy),
                    Err(e) if baseline => {
                        eprintln!("workers {workers} {name} [{}]: skipped: {e:#}", set.label);
                        Err(bench_compare::skip_reason(&format!("{e:#}")))
                    }
                    Err(e) => return Err(e.context(format!("{name} [{}]", set.label))),
                });
            }
            variants.push(per_set);
        }
        let mut results: Vec<Vec<Runs>> = vec![vec![Runs::default(); sets.len()]; layouts.len()];
        for round in 1..=args.rounds {
            for (li, (name, _)) in layouts.iter().enumerate() {
                for si in bench_compare::round_order(round, sets.len()) {
                    let Some(Ok(envoy)) = variants.get(li).and_then(|v| v.get(si)) else {
                        continue;
                    };
                    let shown = if comparing {
                        format!("{name} [{}]", sets[si].label)
                    } else {
                        name.to_string()
                    };
                    for (connections, seconds) in [(32, args.seconds), (1, args.latency_seconds)] {
                        let spec = LoadSpec {
                            url: format!("{}/v1/chat/completions", envoy.http_url()),
                            connections,
                            duration: Duration::from_secs(seconds),
                            method: "POST".into(),
                            headers: headers(name),
                            body: Some(body.clone()),
                        };
                        let pid = envoy.pid();
                        let dir = scratch.path().to_path_buf();
                        let r = tokio::task::spawn_blocking(move || loadgen::run(&spec, pid, &dir))
                            .await??;
                        let line = format!(
                            "workers {workers} round {round} {:<40} c={connections:<2} {:>9.0} req/s p50 {:>7.0} µs p99 {:>7.0} µs cpu {:>6.1} µs/req errors {}",
                            shown, r.rps, r.p50_us, r.p99_us, r.cpu_us_per_request, r.errors
                        );
                        eprintln!("{line}");
                        per_round.push(line);
                        results[li][si].push(connections, r);
                    }
                }
            }
        }
        tables += &format!("**{workers} Envoy worker(s)**\n\n");
        if comparing {
            let rows: Vec<Row> = layouts
                .iter()
                .enumerate()
                .map(|(li, (name, _))| {
                    let outcome = |si: usize| match &variants[li][si] {
                        Ok(_) => Outcome::Measured(results[li][si].clone()),
                        Err(why) => Outcome::Skipped(why.clone()),
                    };
                    Row {
                        name: name.to_string(),
                        before: outcome(0),
                        after: outcome(1),
                    }
                })
                .collect();
            tables += &bench_compare::compare_table(&sets[0].label, &sets[1].label, &rows);
        } else {
            let by_name: BTreeMap<&str, (Vec<LoadResult>, Vec<LoadResult>)> = layouts
                .iter()
                .zip(&results)
                .map(|((name, _), r)| (*name, (r[0].many.clone(), r[0].one.clone())))
                .collect();
            tables += &render(&layouts, &by_name);
        }
        tables += "\n";
    }
    let table = if comparing {
        format!(
            "**Plugin sizes**\n\n{}\n{tables}Medians of {} rounds; each round runs every variant with both plugin sets back to back, {} first in odd rounds and {} first in even ones; {} s runs at 32 connections and {} s at 1 connection; errors are non-2xx answers and socket errors ({} / {}). The two bare Envoy rows are two identical Envoys without plugins, one per column: their ratios are the noise of the method. Both sets get the same rendered configuration; before measuring, each gateway answered a valid request 200, refused one without credentials with 401 where an auth filter runs, and served it through a host-shim pick where affinity calls host-shim. Envoy 1.40; wrk (1 thread) and a minimal in-process OpenAI upstream on the same machine ({}); POST /v1/chat/completions with a {}-byte body; the rate limits are set high enough never to reject.\n",
            bench_compare::sizes_table(&sets[0], &sets[1])?,
            args.rounds,
            sets[0].label,
            sets[1].label,
            args.seconds,
            args.latency_seconds,
            sets[0].label,
            sets[1].label,
            bench_compare::machine_note(),
            body.len()
        )
    } else {
        format!(
            "{tables}Medians of {} alternating rounds; {} s runs at 32 connections and {} s at 1 connection; Envoy 1.40; wrk (1 thread) and a minimal in-process OpenAI upstream on the same 2-core machine; POST /v1/chat/completions with a {}-byte body; the rate limits are set high enough never to reject. Reproduce: `make bench`.\n",
            args.rounds, args.seconds, args.latency_seconds, body.len()
        )
    };
    let table = match &envoy_cpus {
        Some(cpus) => format!(
            "{table}Envoy pinned to CPU(s) {} (`--pin-envoy-cpus`); wrk, the upstream and host-shim on the others.\n",
            cpus.to_taskset()
        ),
        None => table,
    };
    let table = format!(
        "{table}\n<details><summary>Every measurement of this run, in the order taken</summary>\n\n```\n{}\n```\n</details>\n",
        per_round.join("\n")
    );
    println!("{table}");
    let out = args.out.clone().unwrap_or_else(|| {
        infergate_e2e::paths::workspace_root().join(if comparing {
            "e2e/results/refactor-cost.md"
        } else {
            "e2e/results/gateway.md"
        })
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &table)?;
    eprintln!("written to {}", out.display());
    Ok(())
}

/// Starts one variant's Envoy with one plugin set and probes it: the plugins must accept the
/// rendered configuration and act on it (see [`Probe`]).
#[allow(clippy::too_many_arguments)]
async fn start_variant(
    name: &str,
    plugins: &[&str],
    set: &PluginSet,
    workers: u32,
    pod: &str,
    kube: std::net::SocketAddr,
    shim: std::net::SocketAddr,
    headers: &[(String, String)],
    body: &str,
) -> Result<Envoy> {
    let spec = GatewaySpec {
        filters: filters(plugins, pod, set)?,
        concurrency: workers,
        clusters: vec![
            ClusterSpec {
                name: "kube".into(),
                addresses: vec![kube],
                http2: false,
            },
            ClusterSpec {
                name: "host-shim".into(),
                addresses: vec![shim],
                http2: true,
            },
        ],
        ..GatewaySpec::default()
    };
    let envoy = Envoy::start(&spec).await?;
    let probe = Probe {
        url: format!("{}/v1/chat/completions", envoy.http_url()),
        headers: headers.to_vec(),
        body: body.to_string(),
        auth: plugins.iter().any(|p| p.starts_with("auth")),
        shim: plugins.contains(&"affinity-pick").then_some(shim),
    };
    probe
        .check()
        .await
        .with_context(|| format!("probing {name} with the plugins of {}", set.dir.display()))?;
    Ok(envoy)
}

fn render(
    layouts: &[(&str, Vec<&str>)],
    results: &BTreeMap<&str, (Vec<LoadResult>, Vec<LoadResult>)>,
) -> String {
    let stat = |name: &str, f: &dyn Fn(&LoadResult) -> f64, single: bool| -> f64 {
        results
            .get(name)
            .map(|(many, one)| loadgen::median(if single { one } else { many }, f))
            .unwrap_or(f64::NAN)
    };
    let bare = layouts.first().map(|l| l.0).unwrap_or_default();
    let bare_rps = stat(bare, &|r| r.rps, false);
    let bare_cpu = stat(bare, &|r| r.cpu_us_per_request, false);
    let bare_p50 = stat(bare, &|r| r.p50_us, true);
    let mut out = String::from(
        "| variant | req/s (32 conns) | × bare | Envoy CPU µs/req | × bare | p99 µs (32 conns) | p50 µs (1 conn) | × bare | errors |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (name, _) in layouts {
        let rps = stat(name, &|r| r.rps, false);
        let cpu = stat(name, &|r| r.cpu_us_per_request, false);
        let p99 = stat(name, &|r| r.p99_us, false);
        let p50 = stat(name, &|r| r.p50_us, true);
        let errors: u64 = results
            .get(name)
            .map(|(a, b)| a.iter().chain(b).map(|r| r.errors).sum())
            .unwrap_or(0);
        out += &format!(
            "| {name} | {rps:.0} | {:.2} | {cpu:.1} | {:.2} | {p99:.0} | {p50:.0} | {:.2} | {errors} |\n",
            rps / bare_rps,
            cpu / bare_cpu,
            p50 / bare_p50
        );
    }
    out
}
