//! Summaries of runs and the markdown report.

use crate::bench::cluster::RunResult;
use serde::Serialize;
use std::fmt::Write as _;

/// The `q`-quantile (0..=1) of `v` by nearest rank; NaN for an empty slice. Sorts `v`.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// p50 / p90 / p99 of a sample, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    /// Percentiles of `v` (sorted in place).
    pub fn of(v: &mut [f64]) -> Self {
        Self {
            p50: quantile(v, 0.5),
            p90: quantile(v, 0.9),
            p99: quantile(v, 0.99),
        }
    }
}

/// One router's numbers on one workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Router name.
    pub router: String,
    /// Requests in the workload.
    pub requests: usize,
    /// Requests that never finished (should be 0).
    pub unfinished: usize,
    /// Time to first token, seconds.
    pub ttft: Percentiles,
    /// Mean inter-token latency of each request, seconds.
    pub itl: Percentiles,
    /// End-to-end latency, seconds.
    pub e2e: Percentiles,
    /// Output tokens per second over the run.
    pub output_tokens_per_s: f64,
    /// Prefix-cache hit rate: hit tokens / queried tokens, over all engines (vLLM's counters).
    pub prefix_hit_rate: f64,
    /// Requests on the busiest engine over the mean (1.0 = perfect balance).
    pub max_over_mean_requests: f64,
    /// Preemptions over all engines.
    pub preemptions: u64,
    /// TTFT p90 per load stage, seconds (NaN when a stage has no finished request).
    pub ttft_p90_by_stage: Vec<f64>,
}

/// Summarises `run` over `stages` load stages.
pub fn summarize(run: &RunResult, stages: usize) -> Summary {
    let done: Vec<_> = run.records.iter().filter(|r| r.finish.is_some()).collect();
    let mut ttft: Vec<f64> = done
        .iter()
        .filter_map(|r| Some(r.first_token? - r.arrival))
        .collect();
    let mut e2e: Vec<f64> = done
        .iter()
        .filter_map(|r| Some(r.finish? - r.arrival))
        .collect();
    let mut itl: Vec<f64> = done
        .iter()
        .filter(|r| r.output_len > 1)
        .filter_map(|r| Some((r.finish? - r.first_token?) / f64::from(r.output_len - 1)))
        .collect();
    let start = run
        .records
        .iter()
        .map(|r| r.arrival)
        .fold(f64::INFINITY, f64::min);
    let end = done.iter().filter_map(|r| r.finish).fold(0.0, f64::max);
    let out_tokens: u64 = done.iter().map(|r| u64::from(r.output_len)).sum();
    let engines = run.engine_stats.len().max(1);
    let mut per_engine = vec![0usize; engines];
    for r in &run.records {
        per_engine[r.engine.min(engines - 1)] += 1;
    }
    let mean = run.records.len() as f64 / engines as f64;
    let (q, h) = run.engine_stats.iter().fold((0u64, 0u64), |(q, h), s| {
        (q + s.prefix_cache_queries, h + s.prefix_cache_hits)
    });
    let ttft_p90_by_stage = (0..stages)
        .map(|k| {
            let mut v: Vec<f64> = done
                .iter()
                .filter(|r| r.stage == k)
                .filter_map(|r| Some(r.first_token? - r.arrival))
                .collect();
            quantile(&mut v, 0.9)
        })
        .collect();
    Summary {
        router: run.router.clone(),
        requests: run.records.len(),
        unfinished: run.records.len() - done.len(),
        ttft: Percentiles::of(&mut ttft),
        itl: Percentiles::of(&mut itl),
        e2e: Percentiles::of(&mut e2e),
        output_tokens_per_s: if end > start {
            out_tokens as f64 / (end - start)
        } else {
            0.0
        },
        prefix_hit_rate: if q > 0 { h as f64 / q as f64 } else { 0.0 },
        max_over_mean_requests: if mean > 0.0 {
            *per_engine.iter().max().unwrap_or(&0) as f64 / mean
        } else {
            0.0
        },
        preemptions: run.engine_stats.iter().map(|s| s.preemptions).sum(),
        ttft_p90_by_stage,
    }
}

/// One workload's section of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadReport {
    /// Workload name.
    pub workload: String,
    /// One-line description (groups, requests).
    pub description: String,
    /// Offered request rate per stage, requests/s.
    pub stage_rates: Vec<f64>,
    /// One summary per router.
    pub summaries: Vec<Summary>,
}

fn ms(s: f64) -> String {
    if s.is_nan() {
        "–".into()
    } else {
        format!("{:.0}", s * 1000.0)
    }
}

/// Renders the report as markdown: a table per workload, then TTFT p90 per stage.
pub fn markdown(header: &str, sections: &[WorkloadReport]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "{header}");
    for w in sections {
        let _ = writeln!(md, "\n## {}\n\n{}\n", w.workload, w.description);
        md.push_str("| router | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | ITL p50 ms | ITL p90 ms | E2E p50 ms | E2E p90 ms | out tok/s | prefix hit | max/mean reqs | preempt | unfinished |\n");
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for s in &w.summaries {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.1} | {:.1} | {} | {} | {:.0} | {:.1}% | {:.2} | {} | {} |",
                s.router,
                ms(s.ttft.p50),
                ms(s.ttft.p90),
                ms(s.ttft.p99),
                s.itl.p50 * 1000.0,
                s.itl.p90 * 1000.0,
                ms(s.e2e.p50),
                ms(s.e2e.p90),
                s.output_tokens_per_s,
                s.prefix_hit_rate * 100.0,
                s.max_over_mean_requests,
                s.preemptions,
                s.unfinished,
            );
        }
        md.push_str("\nTTFT p90 (ms) by offered load:\n\n| router |");
        for r in &w.stage_rates {
            let _ = write!(md, " {r:.1} req/s |");
        }
        md.push_str("\n|---|");
        md.push_str(&"---:|".repeat(w.stage_rates.len()));
        md.push('\n');
        for s in &w.summaries {
            let _ = write!(md, "| {} |", s.router);
            for v in &s.ttft_p90_by_stage {
                let _ = write!(md, " {} |", ms(*v));
            }
            md.push('\n');
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.5), 50.0);
        assert_eq!(quantile(&mut v, 0.9), 90.0);
        assert_eq!(quantile(&mut v, 0.99), 99.0);
        assert_eq!(quantile(&mut [3.0], 0.99), 3.0);
        assert!(quantile(&mut [], 0.5).is_nan());
    }
}
