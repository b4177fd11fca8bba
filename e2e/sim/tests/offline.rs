//! The offline benchmark: deterministic for a seed, and the oracle beats round-robin when
//! prefixes are shared (a property of the model, not a timing).

use infergate_sim::bench::cluster::{simulate, ClusterConfig, PreparedWorkload};
use infergate_sim::bench::report::{summarize, Summary};
use infergate_sim::bench::routers;
use infergate_sim::bench::workload::{generate, WorkloadKind, WorkloadSpec};
use infergate_sim::bench::{run, stage_rates, BenchConfig};
use infergate_sim::cost::LLAMA_8B_H200;
use infergate_sim::engine::EngineConfig;

fn cluster() -> ClusterConfig {
    let mut engine = EngineConfig::from_profile(&LLAMA_8B_H200);
    // Small caches keep the run tiny: 2 × 2,000 blocks of 16 = 64k tokens → 7 prefix groups.
    engine.num_gpu_blocks = 2_000;
    engine.max_model_len = 32_000;
    ClusterConfig {
        engines: 2,
        engine,
        model: "m".into(),
        scrape_interval: 0.05,
    }
}

fn prepared(kind: WorkloadKind, seed: u64, stage_seconds: f64) -> PreparedWorkload {
    let c = cluster();
    let spec = WorkloadSpec {
        kind,
        seed,
        stage_rates: stage_rates(&c, kind, 2, (0.2, 0.5)),
        stage_seconds,
        cluster_kv_tokens: 64_000,
    };
    PreparedWorkload::new(generate(&spec), &c.model, c.engine.block_size)
}

/// Router `name` (seed 7) run on `w`, summarised over its 2 load stages.
fn summary_of(c: &ClusterConfig, w: &PreparedWorkload, name: &str) -> Summary {
    let mut router = routers::by_name(name, 7).unwrap();
    summarize(&simulate(c, w, router.as_mut()).unwrap(), 2)
}

#[test]
fn same_seed_gives_identical_runs_and_another_seed_does_not() {
    let c = cluster();
    let w = prepared(WorkloadKind::SharedPrefix, 3, 8.0);
    let w2 = prepared(WorkloadKind::SharedPrefix, 3, 8.0);
    for name in routers::NAMES {
        let a = simulate(&c, &w, routers::by_name(name, 3).unwrap().as_mut()).unwrap();
        let b = simulate(&c, &w2, routers::by_name(name, 3).unwrap().as_mut()).unwrap();
        assert_eq!(a.records, b.records, "{name}");
        assert_eq!(a.end_time, b.end_time, "{name}");
        assert!(
            a.records.iter().all(|r| r.finish.is_some()),
            "{name}: all finish"
        );
    }
    let other = prepared(WorkloadKind::SharedPrefix, 4, 8.0);
    assert_ne!(other.workload.requests, w.workload.requests);
}

#[test]
fn oracle_beats_round_robin_on_shared_prefixes() {
    let c = cluster();
    let w = prepared(WorkloadKind::SharedPrefix, 7, 20.0);
    assert!(w.workload.groups >= 5, "groups {}", w.workload.groups);
    let rr = summary_of(&c, &w, "round-robin");
    let oracle = summary_of(&c, &w, "oracle");
    assert_eq!(rr.unfinished + oracle.unfinished, 0);
    assert!(
        oracle.prefix_hit_rate > rr.prefix_hit_rate,
        "hit {} vs {}",
        oracle.prefix_hit_rate,
        rr.prefix_hit_rate
    );
    assert!(
        oracle.ttft.p90 < rr.ttft.p90,
        "TTFT p90 {} vs {}",
        oracle.ttft.p90,
        rr.ttft.p90
    );
    assert!(
        oracle.ttft.p50 < rr.ttft.p50,
        "TTFT p50 {} vs {}",
        oracle.ttft.p50,
        rr.ttft.p50
    );
}

#[test]
fn full_bench_reports_every_router_on_every_workload() {
    let cfg = BenchConfig {
        cluster: cluster(),
        seed: 1,
        workloads: vec![
            WorkloadKind::MultiTurn,
            WorkloadKind::NoSharing,
            WorkloadKind::ZipfHot,
        ],
        routers: routers::NAMES.map(String::from).to_vec(),
        stages: 2,
        stage_seconds: 5.0,
        load_range: (0.2, 0.4),
        rates: None,
    };
    let reports = run(&cfg).unwrap();
    assert_eq!(reports.len(), 3);
    for r in &reports {
        assert_eq!(r.summaries.len(), routers::NAMES.len());
        for s in &r.summaries {
            assert!(
                s.requests > 0 && s.unfinished == 0,
                "{} {}",
                r.workload,
                s.router
            );
            assert_eq!(s.ttft_p90_by_stage.len(), 2);
            assert!(s.ttft.p50 <= s.ttft.p90 && s.ttft.p90 <= s.ttft.p99);
            assert!(s.max_over_mean_requests >= 1.0);
        }
    }
    // No sharing: the only possible hits are a preempted request finding its own blocks again.
    let none = reports.iter().find(|r| r.workload == "no-sharing").unwrap();
    for s in &none.summaries {
        assert!(s.prefix_hit_rate < 0.2, "{}", s.router);
        if s.preemptions == 0 {
            assert_eq!(s.prefix_hit_rate, 0.0, "{}", s.router);
        }
    }
    let mut bad = cfg.clone();
    bad.routers = vec!["nope".into()];
    assert!(run(&bad).unwrap_err().contains("unknown router"));
}

/// A router from outside the crate: everything to engine 0.
struct AllOnZero;

impl infergate_sim::bench::router::Router for AllOnZero {
    fn name(&self) -> String {
        "all-on-zero".into()
    }
    fn route(
        &mut self,
        _req: &infergate_sim::bench::router::RouteRequest<'_>,
        _cluster: &infergate_sim::bench::router::ClusterView<'_>,
    ) -> usize {
        0
    }
}

#[test]
fn external_routers_plug_in_and_imbalance_is_reported() {
    let cfg = BenchConfig {
        cluster: cluster(),
        seed: 2,
        workloads: vec![WorkloadKind::NoSharing],
        routers: vec!["all-on-zero".into(), "round-robin".into()],
        stages: 1,
        stage_seconds: 10.0,
        load_range: (0.3, 0.3),
        rates: None,
    };
    let make = |name: &str, seed: u64| {
        if name == "all-on-zero" {
            Some(Box::new(AllOnZero) as Box<dyn infergate_sim::bench::router::Router>)
        } else {
            routers::by_name(name, seed)
        }
    };
    let reports = infergate_sim::bench::run_with(&cfg, &make).unwrap();
    let s = &reports[0].summaries;
    assert_eq!(s[0].router, "all-on-zero");
    assert_eq!(s[0].max_over_mean_requests, 2.0);
    assert!(s[1].max_over_mean_requests < 1.5);
    assert!(run(&cfg).unwrap_err().contains("unknown router"));
}

/// host-shim's scheduler (the library the sidecar runs, driven offline) finds the shared
/// prefixes that round-robin scatters.
#[test]
fn host_shim_scheduler_beats_round_robin_on_shared_prefixes() {
    let c = cluster();
    let w = prepared(WorkloadKind::SharedPrefix, 7, 20.0);
    let rr = summary_of(&c, &w, "round-robin");
    let hs = summary_of(&c, &w, "host-shim");
    assert_eq!(rr.unfinished + hs.unfinished, 0);
    assert!(
        hs.prefix_hit_rate > rr.prefix_hit_rate,
        "host-shim hit {} vs round-robin {}",
        hs.prefix_hit_rate,
        rr.prefix_hit_rate
    );
    assert!(
        hs.ttft.p90 < rr.ttft.p90,
        "TTFT p90 {} vs {}",
        hs.ttft.p90,
        rr.ttft.p90
    );
}
