//! The offline routing-quality benchmark: the engine model in virtual time, N engines, a
//! seeded workload, and routers compared side by side on identical inputs.

pub mod cli;
pub mod cluster;
pub mod live;
pub mod plot;
pub mod png;
pub mod records;
pub mod report;
pub mod router;
pub mod routers;
pub mod workload;

use cluster::{simulate, ClusterConfig, PreparedWorkload};
use report::{summarize, WorkloadReport};
use router::Router;
use workload::{generate, typical_request, Workload, WorkloadKind, WorkloadSpec};

/// Everything one benchmark run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// The cluster.
    pub cluster: ClusterConfig,
    /// Workload seed.
    pub seed: u64,
    /// Workloads to run.
    pub workloads: Vec<WorkloadKind>,
    /// Routers to compare (names from [`routers::NAMES`]).
    pub routers: Vec<String>,
    /// Number of load stages.
    pub stages: usize,
    /// Seconds per stage.
    pub stage_seconds: f64,
    /// Offered load of the first and last stage, as a fraction of the cluster's ideal
    /// capacity for the workload (see [`ideal_capacity_per_engine`]).
    pub load_range: (f64, f64),
    /// Explicit request rates per stage (requests/s), overriding `stages` and `load_range`.
    pub rates: Option<Vec<f64>>,
}

/// The workload `kind` as `cfg` sizes it (stage rates, KV-relative group count, seed).
pub fn workload_for(cfg: &BenchConfig, kind: WorkloadKind) -> Workload {
    let spec = WorkloadSpec {
        kind,
        seed: cfg.seed,
        stage_rates: cfg
            .rates
            .clone()
            .unwrap_or_else(|| stage_rates(&cfg.cluster, kind, cfg.stages, cfg.load_range)),
        stage_seconds: cfg.stage_seconds,
        cluster_kv_tokens: (cfg.cluster.engines
            * cfg.cluster.engine.num_gpu_blocks
            * cfg.cluster.engine.block_size) as u64,
    };
    generate(&spec)
}

/// Describes a workload in one line (requests, stages, groups).
pub fn describe(w: &Workload) -> String {
    format!(
        "{} requests over {} stages of {:.0} s{}",
        w.requests.len(),
        w.stage_rates.len(),
        w.stage_seconds,
        if w.groups > 0 {
            format!(", {} shared prefixes", w.groups)
        } else {
            String::new()
        }
    )
}

/// Requests per second one engine could serve of `kind` with perfect prefix caching: the
/// prefill of a typical request plus the marginal cost of its output tokens in a large decode
/// batch (per-token linear cost, per-sequence decode cost and attention over the context).
pub fn ideal_capacity_per_engine(cluster: &ClusterConfig, kind: WorkloadKind) -> f64 {
    let c = &cluster.engine.cost;
    let (new, cached, output) = typical_request(kind);
    let context = (new + cached + output / 2) as f64;
    let per_token =
        1.0 / c.prefill_tokens_per_s + c.decode_s_per_seq + context * c.attention_s_per_pair;
    1.0 / (c.prefill_seconds(new, cached) + output as f64 * per_token)
}

/// Request rates of each stage for `kind` on `cluster`: evenly spaced between the two
/// fractions of the ideal capacity ([`ideal_capacity_per_engine`] × engines).
pub fn stage_rates(
    cluster: &ClusterConfig,
    kind: WorkloadKind,
    stages: usize,
    range: (f64, f64),
) -> Vec<f64> {
    let per_engine = ideal_capacity_per_engine(cluster, kind);
    let capacity = per_engine * cluster.engines as f64;
    (0..stages)
        .map(|k| {
            let f = if stages <= 1 {
                range.1
            } else {
                range.0 + (range.1 - range.0) * k as f64 / (stages - 1) as f64
            };
            (capacity * f * 10.0).round() / 10.0
        })
        .collect()
}

/// Makes a fresh router from its name and the run's seed; `None` for unknown names.
pub type RouterFactory<'a> = &'a dyn Fn(&str, u64) -> Option<Box<dyn Router>>;

/// Runs every router on every workload, with the built-in routers.
///
/// # Errors
/// Unknown router names, invalid engine configuration, or requests the engines cannot admit.
pub fn run(cfg: &BenchConfig) -> Result<Vec<WorkloadReport>, String> {
    run_with(cfg, &routers::by_name)
}

/// Runs every router on every workload, making routers with `make` (so routers from other
/// crates, e.g. a host-shim adapter, can take part).
///
/// # Errors
/// Unknown router names, invalid engine configuration, or requests the engines cannot admit.
pub fn run_with(cfg: &BenchConfig, make: RouterFactory<'_>) -> Result<Vec<WorkloadReport>, String> {
    run_observed(cfg, make, &mut |_, _| {})
}

/// Called with each workload and one router's result on it, as [`run_observed`] runs them.
pub type ResultObserver<'a> = &'a mut dyn FnMut(&Workload, &cluster::RunResult);

/// [`run_with`], also handing every router's full result to `observe` (per-request records).
///
/// # Errors
/// As [`run_with`].
pub fn run_observed(
    cfg: &BenchConfig,
    make: RouterFactory<'_>,
    observe: ResultObserver<'_>,
) -> Result<Vec<WorkloadReport>, String> {
    let mut out = Vec::new();
    for &kind in &cfg.workloads {
        let prepared = PreparedWorkload::new(
            workload_for(cfg, kind),
            &cfg.cluster.model,
            cfg.cluster.engine.block_size,
        );
        let stages = prepared.workload.stage_rates.len();
        let mut summaries = Vec::new();
        for name in &cfg.routers {
            let mut router: Box<dyn Router> = make(name, cfg.seed).ok_or_else(|| {
                format!("unknown router {name:?}; built in: {:?}", routers::NAMES)
            })?;
            let result = simulate(&cfg.cluster, &prepared, router.as_mut())?;
            observe(&prepared.workload, &result);
            summaries.push(summarize(&result, stages));
        }
        let w = &prepared.workload;
        out.push(WorkloadReport {
            workload: kind.name().to_string(),
            description: describe(w),
            stage_rates: w.stage_rates.clone(),
            summaries,
        });
    }
    Ok(out)
}
