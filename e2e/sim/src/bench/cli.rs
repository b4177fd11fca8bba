//! The `bench-routing` command line, as a library function so another crate can run it with
//! extra routers (e.g. a host-shim adapter) without copying the CLI.

use crate::bench::live::{run_closed_loop, run_live, LiveConfig};
use crate::bench::router::Router;
use crate::bench::workload::WorkloadKind;
use crate::bench::{
    cluster::ClusterConfig, describe, plot, records, report, routers, run_observed, workload_for,
    BenchConfig,
};
use crate::engine::EngineConfig;
use anyhow::{anyhow, Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Command-line flags of `bench-routing`.
#[derive(Parser, Debug)]
#[command(
    name = "bench-routing",
    about = "Offline routing-quality benchmark on simulated vLLM engines"
)]
pub struct Args {
    /// Folder for the report (created if missing).
    #[arg(long, default_value = "e2e/results/")]
    out: PathBuf,
    /// Workload seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of simulated engines.
    #[arg(long, default_value_t = 4)]
    engines: usize,
    /// Engine profile.
    #[arg(long, default_value = "llama-8b-h200")]
    profile: String,
    /// Override the profile's KV blocks per engine (smaller = faster runs, fewer groups).
    #[arg(long)]
    kv_blocks: Option<usize>,
    /// Load stages per workload.
    #[arg(long, default_value_t = 8)]
    stages: usize,
    /// Seconds of virtual time per stage.
    #[arg(long, default_value_t = 30.0)]
    stage_seconds: f64,
    /// Offered load of the first stage, fraction of the ideal capacity (perfect prefix caching, prefill + decode).
    #[arg(long, default_value_t = 0.1)]
    min_load: f64,
    /// Offered load of the last stage, fraction of the ideal capacity (perfect prefix caching, prefill + decode).
    #[arg(long, default_value_t = 1.0)]
    max_load: f64,
    /// Workloads to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = WorkloadKind::ALL)]
    workloads: Vec<WorkloadKind>,
    /// Routers to compare (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = routers::NAMES.map(String::from))]
    routers: Vec<String>,
    /// Milliseconds between metric scrapes (staleness of the load view).
    #[arg(long, default_value_t = 50.0)]
    scrape_interval_ms: f64,
    /// Model name (offline: seeds the block hashes; live: sent in requests).
    #[arg(long, default_value = "meta-llama/Llama-3.1-8B-Instruct")]
    model: String,
    /// Explicit request rates per stage, requests/s (comma-separated); overrides
    /// --stages/--min-load/--max-load.
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<f64>>,
    /// Folder for per-request records (`records-<workload>-<router>.tsv`, live:
    /// `records-live-<workload>.tsv`), for analysing where prefix hits are lost.
    #[arg(long)]
    records: Option<PathBuf>,
    /// Live mode: send the workloads as real streaming requests to this base URL instead of
    /// simulating (e.g. http://127.0.0.1:8000); several comma-separated URLs take requests in
    /// turn (client-side round-robin). --engines/--profile/--kv-blocks then only size the
    /// workload.
    #[arg(long)]
    live_url: Option<String>,
    /// Live mode: the pods' --time-scale (arrivals are compressed and latencies expanded by it).
    #[arg(long, default_value_t = 1.0)]
    live_time_scale: f64,
    /// Live mode: instead of the open-loop arrivals, keep this many requests in flight
    /// (closed loop) for --live-seconds.
    #[arg(long)]
    live_concurrency: Option<usize>,
    /// Live closed-loop mode: how long to run, seconds of real time.
    #[arg(long, default_value_t = 60.0)]
    live_seconds: f64,
    /// Live mode: per-request timeout, seconds of real time.
    #[arg(long, default_value_t = 600.0)]
    live_timeout_s: f64,
    /// Only plot: read the "TTFT p90 (ms) by offered load" tables of this markdown report
    /// (e.g. a combined bench-routing-live.md) and write `ttft-p90-live-<workload>.png`
    /// into --out; nothing is simulated.
    #[arg(long)]
    plot_report: Option<PathBuf>,
}

/// A router another crate contributes: its name and how to make one from the seed.
pub type ExtraRouter = (String, Box<dyn Fn(u64) -> Box<dyn Router>>);

/// Parses the process arguments and runs the benchmark with the built-in routers plus `extra`.
///
/// # Errors
/// Bad flags or configuration, unknown routers, or failure to write the report.
pub fn main_with(extra: Vec<ExtraRouter>) -> Result<()> {
    let args = Args::parse();
    if let Some(md) = &args.plot_report {
        let text =
            std::fs::read_to_string(md).with_context(|| format!("reading {}", md.display()))?;
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        let files = plot::plot_report(&text, &args.out, "live-")
            .with_context(|| format!("writing plots into {}", args.out.display()))?;
        if files.is_empty() {
            anyhow::bail!("{}: no \"by offered load\" table to plot", md.display());
        }
        for f in files {
            println!("wrote {}", f.display());
        }
        return Ok(());
    }
    let (profile, engine) = EngineConfig::for_profile_name(&args.profile, args.kv_blocks)
        .map_err(anyhow::Error::msg)?;
    let cfg = BenchConfig {
        cluster: ClusterConfig {
            engines: args.engines,
            engine,
            model: args.model.clone(),
            scrape_interval: args.scrape_interval_ms / 1000.0,
        },
        seed: args.seed,
        workloads: args.workloads.clone(),
        routers: args.routers.clone(),
        stages: args.stages,
        stage_seconds: args.stage_seconds,
        load_range: (args.min_load, args.max_load),
        rates: args.rates.clone(),
    };
    if let Some(url) = &args.live_url {
        return live(&args, &cfg, url);
    }
    let started = Instant::now();
    let make = |name: &str, seed: u64| -> Option<Box<dyn Router>> {
        routers::by_name(name, seed)
            .or_else(|| extra.iter().find(|(n, _)| n == name).map(|(_, f)| f(seed)))
    };
    let mut record_err = Ok(());
    let mut observe = |w: &crate::bench::workload::Workload,
                       r: &crate::bench::cluster::RunResult| {
        if let (Some(dir), Ok(())) = (&args.records, &record_err) {
            let path = dir.join(format!("records-{}-{}.tsv", w.kind.name(), r.router));
            record_err = std::fs::create_dir_all(dir)
                .and_then(|()| records::write(&path, w, r, &[]))
                .with_context(|| format!("writing {}", path.display()));
        }
    };
    let sections = run_observed(&cfg, &make, &mut observe).map_err(|e| anyhow!(e))?;
    record_err?;
    let wall = started.elapsed().as_secs_f64();
    let simulated: usize = sections
        .iter()
        .map(|w| w.summaries.iter().map(|s| s.requests).sum::<usize>())
        .sum();
    let header = format!(
        "# Routing benchmark (offline, virtual time)\n\n\
         {} × `{}` ({}), {} KV blocks of {} tokens per engine, max_num_seqs {}, \
         max_num_batched_tokens {}, metrics scraped every {} ms, seed {}.\n\n\
         Simulated {} requests in {:.1} s of wall time ({:.0} requests/minute).\n\n\
         Command: `bench-routing {}`",
        cfg.cluster.engines,
        profile.name,
        profile.model_shape,
        engine.num_gpu_blocks,
        engine.block_size,
        engine.max_num_seqs,
        engine.max_num_batched_tokens,
        args.scrape_interval_ms,
        args.seed,
        simulated,
        wall,
        simulated as f64 / wall * 60.0,
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
    );
    write_report(&args, "bench-routing", "", &header, &sections)
}

fn write_report(
    args: &Args,
    stem: &str,
    plot_prefix: &str,
    header: &str,
    sections: &[report::WorkloadReport],
) -> Result<()> {
    let md = report::markdown(header, sections);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let md_path = args.out.join(format!("{stem}.md"));
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    print!("{md}");
    println!("\nwrote {}", md_path.display());
    for w in sections {
        let path = args
            .out
            .join(format!("ttft-p90-{plot_prefix}{}.png", w.workload));
        if plot::write_ttft_plot(&path, w).with_context(|| format!("writing {}", path.display()))? {
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn live(args: &Args, cfg: &BenchConfig, url: &str) -> Result<()> {
    if args.live_time_scale.is_nan() || args.live_time_scale <= 0.0 {
        anyhow::bail!("--live-time-scale must be positive");
    }
    let live_cfg = LiveConfig {
        url: url.to_string(),
        model: args.model.clone(),
        time_scale: args.live_time_scale,
        request_timeout: Duration::from_secs_f64(args.live_timeout_s),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    let mut sections = Vec::new();
    let mut notes = Vec::new();
    for &kind in &cfg.workloads {
        let w = workload_for(cfg, kind);
        eprintln!("live: sending {} ({})", kind.name(), describe(&w));
        let (result, stages) = match args.live_concurrency {
            Some(n) => (
                rt.block_on(run_closed_loop(&live_cfg, &w, n, args.live_seconds))?,
                1,
            ),
            None => (rt.block_on(run_live(&live_cfg, &w))?, w.stage_rates.len()),
        };
        if let Some(dir) = &args.records {
            let path = dir.join(format!("records-live-{}.tsv", kind.name()));
            std::fs::create_dir_all(dir)
                .and_then(|()| records::write(&path, &w, &result.run, &result.backends))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let mut summary = report::summarize(&result.run, stages);
        summary.preemptions = 0;
        let mut per_backend = vec![0usize; result.backends.len()];
        for r in &result.run.records {
            if let Some(n) = per_backend.get_mut(r.engine) {
                *n += 1;
            }
        }
        let backends: Vec<String> = result
            .backends
            .iter()
            .zip(&per_backend)
            .map(|(b, n)| format!("`{b}` {n}"))
            .collect();
        notes.push(format!(
            "- {}: {} requests, peak {} in flight; requests per backend {}; {} failed{}",
            kind.name(),
            result.run.records.len(),
            result.peak_in_flight,
            backends.join(", "),
            result.errors.len(),
            result
                .errors
                .first()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        ));
        let (description, stage_rates) = match args.live_concurrency {
            Some(n) => (
                format!(
                    "closed loop: {n} concurrent clients for {} s",
                    args.live_seconds
                ),
                vec![result.run.records.len() as f64 / args.live_seconds],
            ),
            None => (describe(&w), w.stage_rates.clone()),
        };
        sections.push(report::WorkloadReport {
            workload: kind.name().to_string(),
            description,
            stage_rates,
            summaries: vec![summary],
        });
    }
    let header = format!(
        "# Routing benchmark (live, client-side)\n\nTarget {url}, time scale {}, seed {}. \
         Latencies in model time (real × time scale); `preempt` is not observable client-side.\n\n{}\n\n\
         Command: `bench-routing {}`",
        args.live_time_scale,
        args.seed,
        notes.join("\n"),
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
    );
    write_report(args, "bench-routing-live", "live-", &header, &sections)
}
