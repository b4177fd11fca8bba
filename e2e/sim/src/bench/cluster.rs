//! The discrete-event cluster: N engine models, a router, a workload, and a virtual clock.
//!
//! Events are arrivals (routed at once), engine step completions (tokens come out, the next
//! step is scheduled) and metric scrapes (the routers' stale view is refreshed). Ties in time
//! are broken by insertion order, so a run is a pure function of its inputs.

use crate::bench::router::{ClusterView, RouteRequest, Router, ScrapedMetrics};
use crate::bench::workload::Workload;
use crate::block_hash::BlockHash;
use crate::engine::{Engine, EngineConfig, EngineStats, NewRequest, TokenEvent};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// The simulated cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// Number of engines (pods).
    pub engines: usize,
    /// Every engine's configuration.
    pub engine: EngineConfig,
    /// Model name (seeds the block hashes).
    pub model: String,
    /// Seconds between metric scrapes (the routers' staleness).
    pub scrape_interval: f64,
}

/// A workload with every request's block hashes computed once, shared by all routers' runs.
#[derive(Debug, Clone)]
pub struct PreparedWorkload {
    /// The workload.
    pub workload: Workload,
    /// Per request: chained hashes of prompt + reply full blocks.
    pub hashes: Vec<Vec<BlockHash>>,
}

impl PreparedWorkload {
    /// Hashes every request of `workload` for `model` at `block_size`.
    pub fn new(workload: Workload, model: &str, block_size: usize) -> Self {
        let hashes = workload
            .requests
            .iter()
            .map(|r| r.block_hashes(model, block_size))
            .collect();
        Self { workload, hashes }
    }
}

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestRecord {
    /// Engine it was routed to.
    pub engine: usize,
    /// Load stage of its arrival.
    pub stage: usize,
    /// Arrival, seconds.
    pub arrival: f64,
    /// First token, seconds.
    pub first_token: Option<f64>,
    /// Last token, seconds.
    pub finish: Option<f64>,
    /// Prompt tokens.
    pub prompt_len: u32,
    /// Output tokens.
    pub output_len: u32,
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: u32,
}

/// The outcome of one router on one workload.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Router name.
    pub router: String,
    /// Per request, in workload order.
    pub records: Vec<RequestRecord>,
    /// Per engine counters at the end.
    pub engine_stats: Vec<EngineStats>,
    /// Virtual time of the last event, seconds.
    pub end_time: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    StepDone(usize),
    Scrape,
    Arrival(usize),
}

#[derive(Debug, Clone, Copy)]
struct Event {
    t: f64,
    seq: u64,
    kind: Kind,
}

impl PartialEq for Event {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Event {
    // Reversed: BinaryHeap is a max-heap and we want the earliest event first.
    fn cmp(&self, o: &Self) -> Ordering {
        o.t.total_cmp(&self.t).then(o.seq.cmp(&self.seq))
    }
}

struct Sim<'a> {
    cfg: &'a ClusterConfig,
    engines: Vec<Engine>,
    scraped: Vec<ScrapedMetrics>,
    heap: BinaryHeap<Event>,
    seq: u64,
    records: Vec<RequestRecord>,
    unfinished: usize,
}

impl Sim<'_> {
    fn push(&mut self, t: f64, kind: Kind) {
        self.seq += 1;
        self.heap.push(Event {
            t,
            seq: self.seq,
            kind,
        });
    }

    fn kick(&mut self, i: usize, now: f64) {
        if let Some(step) = self.engines[i].schedule() {
            self.push(now + step.duration_s, Kind::StepDone(i));
        }
    }

    fn scrape(&mut self, now: f64) {
        let bs = self.cfg.engine.block_size as u64;
        for (m, e) in self.scraped.iter_mut().zip(&self.engines) {
            *m = ScrapedMetrics {
                waiting: e.num_waiting() as u64,
                running: e.num_running() as u64,
                kv_cache_usage: e.kv().usage(),
                kv_capacity_tokens: e.kv().num_blocks() as u64 * bs,
                scraped_at: now,
            };
        }
    }
}

/// Runs `router` over `prepared` on a fresh cluster.
///
/// # Errors
/// If the engine configuration is invalid, or a request cannot be admitted (too long).
pub fn simulate(
    cfg: &ClusterConfig,
    prepared: &PreparedWorkload,
    router: &mut dyn Router,
) -> Result<RunResult, String> {
    cfg.engine.validate()?;
    if cfg.engines == 0 || cfg.scrape_interval <= 0.0 {
        return Err("need at least one engine and a positive scrape interval".into());
    }
    let reqs = &prepared.workload.requests;
    let mut sim = Sim {
        cfg,
        engines: (0..cfg.engines).map(|_| Engine::new(cfg.engine)).collect(),
        scraped: vec![ScrapedMetrics::default(); cfg.engines],
        heap: BinaryHeap::with_capacity(reqs.len() + cfg.engines + 1),
        seq: 0,
        records: Vec::with_capacity(reqs.len()),
        unfinished: reqs.len(),
    };
    sim.scrape(0.0);
    for (i, r) in reqs.iter().enumerate() {
        sim.push(r.arrival, Kind::Arrival(i));
        sim.records.push(RequestRecord {
            engine: 0,
            stage: r.stage,
            arrival: r.arrival,
            first_token: None,
            finish: None,
            prompt_len: r.prompt_len(),
            output_len: r.output_len,
            cached_tokens: 0,
        });
    }
    sim.push(cfg.scrape_interval, Kind::Scrape);
    let bs = cfg.engine.block_size;
    let mut events: Vec<TokenEvent> = Vec::new();
    let mut now = 0.0;
    while let Some(ev) = sim.heap.pop() {
        now = ev.t;
        match ev.kind {
            Kind::Arrival(i) => {
                let spec = &reqs[i];
                let hashes = &prepared.hashes[i];
                let prompt_len = spec.prompt_len();
                let prompt_blocks = (prompt_len as usize / bs).min(hashes.len());
                let view = ClusterView::new(now, &sim.scraped, &sim.engines);
                let rr = RouteRequest {
                    id: i as u64,
                    now,
                    model: &cfg.model,
                    prompt_len,
                    block_hashes: &hashes[..prompt_blocks],
                    spec,
                };
                let pick = router.route(&rr, &view);
                if pick >= cfg.engines {
                    return Err(format!(
                        "router {} picked engine {pick} of {}",
                        router.name(),
                        cfg.engines
                    ));
                }
                sim.records[i].engine = pick;
                sim.engines[pick]
                    .add_request(NewRequest {
                        id: i as u64,
                        prompt_len,
                        max_output: spec.output_len,
                        block_hashes: hashes.clone(),
                        arrival: now,
                    })
                    .map_err(|e| format!("request {i}: {e}"))?;
                if !sim.engines[pick].in_step() {
                    sim.kick(pick, now);
                }
            }
            Kind::StepDone(e) => {
                sim.engines[e].complete_step(now, &mut events);
                for t in events.drain(..) {
                    let rec = &mut sim.records[t.id as usize];
                    if t.index == 0 {
                        rec.first_token = Some(now);
                        rec.cached_tokens = t.cached_tokens;
                    }
                    if t.finished {
                        rec.finish = Some(now);
                        sim.unfinished -= 1;
                        router.on_finished(t.id, e, now);
                    }
                }
                sim.kick(e, now);
            }
            Kind::Scrape => {
                sim.scrape(now);
                let busy = !sim.heap.is_empty() || sim.engines.iter().any(Engine::in_step);
                if sim.unfinished > 0 && busy {
                    sim.push(now + cfg.scrape_interval, Kind::Scrape);
                }
            }
        }
    }
    Ok(RunResult {
        router: router.name(),
        records: sim.records,
        engine_stats: sim.engines.iter().map(|e| e.stats().clone()).collect(),
        end_time: now,
    })
}
