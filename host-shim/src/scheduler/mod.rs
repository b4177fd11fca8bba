//! The scheduler: which endpoint serves a request.
//!
//! It is a plain library. Time and endpoint state are inputs ([`Scheduler::pick`] takes
//! `now` and the endpoints' [`EndpointState`]), nothing in here spawns tasks or reads a
//! clock, so the live binary and the offline routing benchmark run the same code. What it
//! remembers between picks lives in per-endpoint slots ([`crate::index`]): the approximate
//! prefix index, the count of requests dispatched since each endpoint's last scrape, and the
//! requests in flight.
//!
//! A pick updates that memory at once (pick-time accounting): the chosen endpoint counts the
//! request in flight and, with `provisionalInsert` (default on), its prefix index takes the
//! prompt's blocks, so the next request of a burst sharing the prefix follows it instead of
//! spreading while the data plane's served report is on its way. The served report
//! ([`Scheduler::observe_served`]) confirms the pick, or moves it (and takes the provisional
//! blocks back) when another endpoint served; the completion report
//! ([`Scheduler::observe_completed`]) ends it; entries older than [`IN_FLIGHT_TTL`] expire,
//! and the count used is capped by what the endpoint's scrape can account for, so a lost
//! report cannot pin an endpoint busy.

pub mod config;
pub mod filters;
pub mod pickers;
pub mod plugin;
pub mod registry;
pub mod rng;
pub mod scorers;

use crate::clock::Timestamp;
use crate::endpoint::{Endpoint, EndpointState};
use crate::index::in_flight::request_key;
use crate::index::{IndexStats, SlotMap};
use config::SchedulerConfig;
use infergate_core::prefix::BlockHasher;
use plugin::Candidate;
use rng::Rng;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use thiserror::Error;

/// What the scheduler needs to know about one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PickRequest {
    /// The model named in the request body.
    pub model: String,
    /// Chained prefix block hashes of the prompt ([`BlockHasher`]), in prompt order.
    pub block_hashes: Vec<u64>,
    /// Estimated prompt tokens.
    pub prompt_tokens: u64,
    /// A client session identifier, for session affinity.
    pub session_key: Option<String>,
    /// Endpoints the data plane allows (the EPP subset hint); `None` allows all.
    pub subset: Option<Vec<SubsetEntry>>,
    /// Whether the request may be rejected (429) when every endpoint is saturated.
    pub sheddable: bool,
}

impl PickRequest {
    /// A key that is the same for requests that should land together and for every
    /// scheduler replica: the first prefix block, else the session key.
    pub fn affinity_key(&self) -> Option<u64> {
        self.block_hashes.first().copied().or_else(|| {
            self.session_key
                .as_deref()
                .map(|s| xxhash_rust::xxh64::xxh64(s.as_bytes(), 0x5e55))
        })
    }
}

/// One entry of an EPP subset hint: an `ip:port`, or a bare IP that admits any port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubsetEntry {
    /// Exactly this endpoint.
    Endpoint(SocketAddr),
    /// Any endpoint on this address.
    Ip(IpAddr),
}

impl SubsetEntry {
    /// Whether `e` is admitted by this entry.
    pub fn admits(&self, e: &Endpoint) -> bool {
        match self {
            Self::Endpoint(a) => *a == e.0,
            Self::Ip(ip) => *ip == e.0.ip(),
        }
    }
}

impl FromStr for SubsetEntry {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Self::Endpoint(a));
        }
        s.parse::<IpAddr>()
            .map(Self::Ip)
            .map_err(|_| format!("`{s}` is neither ip:port nor an IP address"))
    }
}

/// The scheduler's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pick {
    /// Where to send the request.
    #[serde(serialize_with = "ser_ep")]
    pub endpoint: Endpoint,
    /// Where to retry if `endpoint` fails, best first.
    #[serde(serialize_with = "ser_eps")]
    pub fallbacks: Vec<Endpoint>,
    /// Prompt blocks the chosen endpoint likely has cached.
    pub matched_blocks: usize,
    /// Prompt blocks in the request.
    pub total_blocks: usize,
    /// Weighted total score of every scored candidate.
    pub scores: Vec<EndpointScore>,
}

/// One candidate's weighted total score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EndpointScore {
    /// The candidate.
    #[serde(serialize_with = "ser_ep")]
    pub endpoint: Endpoint,
    /// Sum of weight × score over the profile's scorers.
    pub score: f64,
}

fn ser_ep<S: serde::Serializer>(e: &Endpoint, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(e)
}

fn ser_eps<S: serde::Serializer>(e: &[Endpoint], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(e.iter().map(|e| e.to_string()))
}

/// Why no endpoint was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PickError {
    /// No endpoint is reachable with fresh metrics.
    #[error("no endpoint is ready (all unreachable, unscraped or with stale metrics)")]
    NoReadyEndpoint,
    /// Endpoints are ready, but none is in the request's subset hint.
    #[error("no ready endpoint is in the request's subset hint")]
    SubsetUnavailable,
    /// Every candidate is saturated and the request is sheddable.
    #[error("every endpoint is saturated; sheddable request rejected")]
    Saturated,
}

impl PickError {
    /// The HTTP status a client should get: 503 when nothing can serve, 429 when shed.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NoReadyEndpoint | Self::SubsetUnavailable => 503,
            Self::Saturated => 429,
        }
    }
}

/// A stable 64-bit identity of an endpoint, without formatting it.
pub(crate) fn endpoint_key(e: &Endpoint, seed: u64) -> u64 {
    let mut buf = [0u8; 18];
    let n = match e.0.ip() {
        IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            buf[..16].copy_from_slice(&v6.octets());
            16
        }
    };
    buf[n..n + 2].copy_from_slice(&e.0.port().to_be_bytes());
    xxhash_rust::xxh64::xxh64(&buf[..n + 2], seed)
}

/// How long a pick counts in flight without a completion report.
pub const IN_FLIGHT_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// The endpoint picker. Cheap to share (`Arc`) and safe to call from many threads.
#[derive(Debug)]
pub struct Scheduler {
    pipeline: RwLock<Arc<SchedulerConfig>>,
    slots: SlotMap,
    rng: Rng,
    /// Picks made so far: each endpoint remembers the number of the last pick that chose it,
    /// for the max-score picker's least-recently-picked tie-break.
    picks: AtomicU64,
}

impl Scheduler {
    /// A scheduler running `config`, with its random choices seeded by `seed`.
    pub fn new(config: SchedulerConfig, seed: u64) -> Self {
        let slots = SlotMap::new(config.sizing);
        Self {
            pipeline: RwLock::new(Arc::new(config)),
            slots,
            rng: Rng::new(seed),
            picks: AtomicU64::new(0),
        }
    }

    /// The running configuration.
    pub fn config(&self) -> Arc<SchedulerConfig> {
        self.pipeline
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Switches to a new configuration; the prefix index and dispatch counts are kept, and so
    /// are the settings that do not come from an `EndpointPickerConfig` (`max_fallbacks`).
    /// Index sizing is fixed at construction, so a changed sizing takes effect on restart.
    pub fn reconfigure(&self, mut config: SchedulerConfig) {
        let mut guard = self.pipeline.write().unwrap_or_else(|p| p.into_inner());
        config.max_fallbacks = guard.max_fallbacks;
        *guard = Arc::new(config);
    }

    /// The block hasher requests must be hashed with.
    pub fn hasher(&self) -> BlockHasher {
        self.config().hasher
    }

    /// Tells the scheduler the current endpoint set: forgets removed endpoints' index and
    /// prepares new ones. Optional (picks create missing slots), but it bounds memory.
    pub fn sync_endpoints(&self, endpoints: &[Endpoint]) {
        self.slots.retain(endpoints);
    }

    /// Records that `endpoint` served a request whose prompt had `block_hashes`: it now
    /// holds those blocks. Returns `false` (and records nothing) for an endpoint the
    /// scheduler does not know.
    ///
    /// The pick this report is about is confirmed; if it was made for another endpoint (a
    /// retry or fallback served it), its in-flight entry moves here and the blocks it
    /// inserted provisionally there are taken back.
    pub fn observe_served(&self, endpoint: &Endpoint, block_hashes: &[u64]) -> bool {
        let Some(slot) = self.slots.get(endpoint) else {
            return false;
        };
        slot.index().touch_prefix(block_hashes);
        let key = request_key(block_hashes);
        if slot.in_flight().confirm(key) {
            return true;
        }
        for (e, other) in self.slots.all() {
            if e == *endpoint {
                continue;
            }
            let Some(mut entry) = other.in_flight().take(key, true) else {
                continue;
            };
            if let Some(fresh) = block_hashes.get(entry.fresh_from..) {
                let mut index = other.index();
                for &h in fresh {
                    index.remove(h);
                }
            }
            entry.confirmed = true;
            entry.fresh_from = block_hashes.len();
            slot.in_flight().push(entry);
            break;
        }
        true
    }

    /// Records what a peer replica learned: `endpoint` served `block_hashes`. Only the index
    /// changes; the peer's picks are not in this replica's in-flight ledger.
    pub fn observe_peer_served(&self, endpoint: &Endpoint, block_hashes: &[u64]) -> bool {
        match self.slots.get(endpoint) {
            Some(slot) => {
                slot.index().touch_prefix(block_hashes);
                slot.record_routed_blocks(block_hashes.len());
                true
            }
            None => false,
        }
    }

    /// Records that the request with `block_hashes` served by `endpoint` completed: it no
    /// longer counts in flight. Returns `false` for an endpoint the scheduler does not know.
    pub fn observe_completed(&self, endpoint: &Endpoint, block_hashes: &[u64]) -> bool {
        let Some(slot) = self.slots.get(endpoint) else {
            return false;
        };
        let key = request_key(block_hashes);
        if slot.in_flight().take(key, false).is_some() {
            return true;
        }
        // Served elsewhere than picked, with the served report lost: end the pick there.
        for (e, other) in self.slots.all() {
            if e != *endpoint && other.in_flight().take(key, true).is_some() {
                break;
            }
        }
        true
    }

    /// Requests in flight per endpoint at `now` (picked, not completed, not expired).
    pub fn in_flight(&self, now: Timestamp) -> Vec<(Endpoint, u64)> {
        let mut v: Vec<_> = self
            .slots
            .all()
            .into_iter()
            .map(|(e, s)| (e, s.in_flight_at(now, IN_FLIGHT_TTL)))
            .collect();
        v.sort();
        v
    }

    /// Index size per endpoint.
    pub fn index_stats(&self) -> Vec<(Endpoint, IndexStats)> {
        self.slots.stats()
    }

    /// Picks the endpoint for `req` among `endpoints` at time `now`, and counts the request
    /// as dispatched to it until its next scrape.
    pub fn pick(
        &self,
        req: &PickRequest,
        endpoints: &[EndpointState],
        now: Timestamp,
    ) -> Result<Pick, PickError> {
        self.pick_admitting(req, endpoints, now, req.sheddable)
    }

    /// [`Self::pick`], answering [`PickError::Saturated`] (and recording nothing) when every
    /// candidate is saturated and `hold_when_saturated` is set, whatever `req.sheddable` says:
    /// the flow controller ([`crate::flow_control`]) asks so for every request it may queue.
    pub fn pick_admitting(
        &self,
        req: &PickRequest,
        endpoints: &[EndpointState],
        now: Timestamp,
        hold_when_saturated: bool,
    ) -> Result<Pick, PickError> {
        let cfg = self.config();
        let mut any_ready = false;
        let mut candidates: Vec<Candidate<'_>> = Vec::with_capacity(endpoints.len());
        for state in endpoints {
            let Some(metrics) = filters::ready::fresh_metrics(state, now, cfg.staleness) else {
                continue;
            };
            any_ready = true;
            if !filters::subset::admits(req.subset.as_deref(), &state.endpoint) {
                continue;
            }
            let slot = self.slots.get_or_insert(&state.endpoint);
            slot.size_for(&metrics, &cfg.sizing);
            let dispatched = slot.dispatched_since(state.scraped_at);
            // Our own picks in flight there cannot exceed what the engine holds plus what is
            // on its way, which caps the damage of lost completion reports.
            let in_flight = slot
                .in_flight_at(now, IN_FLIGHT_TTL)
                .min(metrics.running + metrics.waiting + dispatched.requests);
            let prefix_blocks = if req.block_hashes.is_empty() {
                0
            } else {
                slot.index().matched_prefix(&req.block_hashes)
            };
            let mut c = Candidate {
                state,
                metrics,
                dispatched,
                prefix_blocks,
                saturated: false,
                last_pick: slot.last_pick(),
                in_flight,
                slot,
            };
            c.saturated = cfg.saturation.is_saturated(&c);
            candidates.push(c);
        }
        if candidates.is_empty() {
            return Err(if any_ready {
                PickError::SubsetUnavailable
            } else {
                PickError::NoReadyEndpoint
            });
        }
        if hold_when_saturated && candidates.iter().all(|c| c.saturated) {
            return Err(PickError::Saturated);
        }
        for f in &cfg.filters {
            let before = candidates.clone();
            f.filter(req, &mut candidates);
            if candidates.is_empty() {
                candidates = before;
            }
        }
        let mut totals = vec![0.0; candidates.len()];
        let mut scratch = vec![0.0; candidates.len()];
        for ws in &cfg.scorers {
            scratch.iter_mut().for_each(|s| *s = 0.0);
            ws.scorer.score(req, &candidates, &mut scratch);
            for (t, s) in totals.iter_mut().zip(&scratch) {
                let s = if s.is_finite() {
                    s.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                *t += ws.weight * s;
            }
        }
        let chosen = cfg
            .picker
            .pick(req, &candidates, &totals, &self.rng)
            .min(candidates.len() - 1);

        let mut order: Vec<usize> = (0..candidates.len()).filter(|&i| i != chosen).collect();
        order.sort_by(|&a, &b| totals[b].total_cmp(&totals[a]));
        let fallbacks = order
            .iter()
            .take(cfg.max_fallbacks)
            .map(|&i| candidates[i].state.endpoint)
            .collect();

        let c = &candidates[chosen];
        if tracing::enabled!(target: "host_shim::pick", tracing::Level::DEBUG) {
            trace_pick(req, &candidates, &totals, chosen);
        }
        c.slot.record_dispatch(req.prompt_tokens);
        c.slot.record_routed_blocks(req.block_hashes.len());
        c.slot.record_in_flight(
            &req.block_hashes,
            c.prefix_blocks,
            req.prompt_tokens,
            now,
            cfg.provisional_insert,
        );
        c.slot
            .record_pick(self.picks.fetch_add(1, Ordering::AcqRel) + 1);
        Ok(Pick {
            endpoint: c.state.endpoint,
            fallbacks,
            matched_blocks: c.prefix_blocks,
            total_blocks: req.block_hashes.len(),
            scores: candidates
                .iter()
                .zip(&totals)
                .map(|(c, &score)| EndpointScore {
                    endpoint: c.state.endpoint,
                    score,
                })
                .collect(),
        })
    }
}

/// Logs one pick at debug level: the request's first block and length, and per candidate its
/// queue as the scorers saw it, KV usage, in-flight count, matched blocks, saturation and total
/// score, the chosen one marked `*` (for measuring why a prefix group spread).
fn trace_pick(req: &PickRequest, candidates: &[Candidate<'_>], totals: &[f64], chosen: usize) {
    use std::fmt::Write as _;
    let mut line = String::new();
    for (i, (c, t)) in candidates.iter().zip(totals).enumerate() {
        let _ = write!(
            line,
            "{}{} w={}+{} r={} kv={:.2} f={} m={} s={} t={:.2}; ",
            if i == chosen { "*" } else { "" },
            c.state.endpoint,
            c.metrics.waiting,
            c.dispatched.requests,
            c.metrics.running,
            c.effective_kv_usage(),
            c.in_flight,
            c.prefix_blocks,
            u8::from(c.saturated),
            t
        );
    }
    tracing::debug!(
        target: "host_shim::pick",
        first = format_args!("{:016x}", req.block_hashes.first().copied().unwrap_or(0)),
        blocks = req.block_hashes.len(),
        "{line}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::EngineMetrics;
    use std::time::Duration;

    fn states(n: usize, at: Duration) -> Vec<EndpointState> {
        (0..n)
            .map(|i| {
                EndpointState::scraped(
                    format!("10.0.0.{}:8000", i + 1).parse().unwrap(),
                    EngineMetrics {
                        waiting: 0,
                        running: 3,
                        kv_cache_usage: 0.3,
                        kv_capacity_tokens: Some(1 << 20),
                        prompt_tokens_total: None,
                    },
                    at,
                )
            })
            .collect()
    }

    fn prefixed(first: u64, blocks: u64) -> PickRequest {
        PickRequest {
            block_hashes: (0..blocks).map(|b| first * 1000 + b).collect(),
            prompt_tokens: 500,
            ..Default::default()
        }
    }

    fn no_provisional() -> config::SchedulerConfig {
        config::SchedulerConfig::parse(&config::DEFAULT_CONFIG.replace(
            "- type: prefix-cache-scorer\n",
            "- type: prefix-cache-scorer\n  parameters: {provisionalInsert: false}\n",
        ))
        .unwrap()
    }

    #[test]
    fn a_burst_of_one_new_prefix_follows_the_first_pick_before_any_report() {
        // Four requests sharing a new prefix arrive within one scrape interval, before any
        // served report: with pick-time insertion they land together; without it the
        // dispatch counts spread them.
        let at = Duration::from_millis(50);
        let together = Scheduler::new(config::SchedulerConfig::guide_default(), 7);
        let spread = Scheduler::new(no_provisional(), 7);
        let st = states(4, at);
        let picks = |s: &Scheduler| {
            (0..4)
                .map(|i| {
                    s.pick(&prefixed(1, 8), &st, at + Duration::from_millis(i))
                        .unwrap()
                })
                .collect::<Vec<_>>()
        };
        let p = picks(&together);
        assert!(p.iter().all(|x| x.endpoint == p[0].endpoint), "{p:?}");
        assert_eq!(p[1].matched_blocks, 8);
        let q = picks(&spread);
        assert!(q.iter().any(|x| x.endpoint != q[0].endpoint), "{q:?}");
        // The pick counted itself in flight at once.
        let inflight = together.in_flight(at);
        assert_eq!(inflight.iter().map(|(_, n)| n).sum::<u64>(), 4);
    }

    #[test]
    fn reports_confirm_move_and_complete_picks() {
        let at = Duration::from_millis(50);
        let s = Scheduler::new(config::SchedulerConfig::guide_default(), 7);
        let st = states(3, at);
        let req = prefixed(2, 6);
        let picked = s.pick(&req, &st, at).unwrap().endpoint;
        let other = st
            .iter()
            .map(|x| x.endpoint)
            .find(|e| *e != picked)
            .unwrap();
        let count = |e: Endpoint| {
            s.in_flight(at)
                .into_iter()
                .find(|(x, _)| *x == e)
                .map_or(0, |(_, n)| n)
        };
        assert_eq!(count(picked), 1);
        // A fallback served it: the pick moves, and the provisional blocks leave `picked`.
        assert!(s.observe_served(&other, &req.block_hashes));
        assert_eq!((count(picked), count(other)), (0, 1));
        let idx = |e: &Endpoint| {
            s.slots
                .get(e)
                .unwrap()
                .index()
                .matched_prefix(&req.block_hashes)
        };
        assert_eq!((idx(&picked), idx(&other)), (0, 6));
        // Completion ends it; an unknown endpoint is refused.
        assert!(s.observe_completed(&other, &req.block_hashes));
        assert_eq!(count(other), 0);
        assert!(!s.observe_completed(&"10.9.9.9:1".parse().unwrap(), &req.block_hashes));
        // A pick whose completion is lost expires.
        let lost = s.pick(&prefixed(3, 2), &st, at).unwrap().endpoint;
        assert_eq!(count(lost), 1);
        let later = at + IN_FLIGHT_TTL + Duration::from_secs(1);
        assert_eq!(s.in_flight(later).iter().map(|(_, n)| n).sum::<u64>(), 0);
        // A peer's report only teaches the index.
        assert!(s.observe_peer_served(&picked, &prefixed(4, 3).block_hashes));
        assert_eq!(count(picked), 0);
    }

    #[test]
    fn index_size_follows_the_engines_prompt_token_counter() {
        // One endpoint of 1<<20 KV tokens; the guide's sizing assumes 4 bytes per token,
        // 64 tokens per 256-byte block: 16384 blocks. Traffic at 6 bytes per token puts 3
        // blocks of prompt into every 128 engine tokens: the index grows to 24576 blocks.
        let s = Scheduler::new(config::SchedulerConfig::guide_default(), 7);
        let ep: Endpoint = "10.0.0.1:8000".parse().unwrap();
        let state = |tokens: u64, ms: u64| {
            let mut st = states(1, Duration::from_millis(ms));
            if let Some(m) = st[0].metrics.as_mut() {
                m.prompt_tokens_total = Some(tokens);
            }
            st
        };
        let cap = |s: &Scheduler| s.slots.get(&ep).unwrap().index().capacity();
        let req = |i: u64| PickRequest {
            block_hashes: (0..150).map(|b| i * 1000 + b).collect(),
            prompt_tokens: 6400,
            ..Default::default()
        };
        s.pick(&req(0), &state(0, 10), Duration::from_millis(10))
            .unwrap();
        assert_eq!(cap(&s), 16384);
        // 20 requests of 150 blocks = 3000 blocks; the engine counted 128_000 tokens.
        for i in 1..20 {
            s.pick(
                &req(i),
                &state(6400 * i, 10 + i),
                Duration::from_millis(10 + i),
            )
            .unwrap();
        }
        s.pick(&req(20), &state(128_000, 40), Duration::from_millis(40))
            .unwrap();
        let want = ((1u64 << 20) as f64 * 3000.0 / 128_000.0).round() as usize;
        assert_eq!(cap(&s), want);
        // Configured bytesPerToken turns learning off.
        let fixed = Scheduler::new(
            config::SchedulerConfig::parse(&config::DEFAULT_CONFIG.replace(
                "- type: prefix-cache-scorer\n",
                "- type: prefix-cache-scorer\n  parameters: {bytesPerToken: 4}\n",
            ))
            .unwrap(),
            7,
        );
        for i in 0..=20 {
            fixed
                .pick(
                    &req(i),
                    &state(6400 * i, 10 + i),
                    Duration::from_millis(10 + i),
                )
                .unwrap();
        }
        assert_eq!(cap(&fixed), 16384);
    }

    #[test]
    fn equal_looking_endpoints_take_turns_across_scrapes() {
        // A fresh scrape before every pick resets the dispatch ledger, so only the pick
        // history tells the endpoints apart (a prefill started 1 ms ago is invisible in
        // the metrics): every window of 4 picks covers all 4 endpoints.
        let s = Scheduler::new(config::SchedulerConfig::guide_default(), 7);
        let mut picks = Vec::new();
        for i in 0..40u64 {
            let now = Duration::from_millis(50 * (i + 1));
            let req = PickRequest {
                block_hashes: vec![xxhash_rust::xxh64::xxh64(&i.to_le_bytes(), 1)],
                prompt_tokens: 1000,
                ..Default::default()
            };
            picks.push(s.pick(&req, &states(4, now), now).unwrap().endpoint);
        }
        for w in picks.windows(4) {
            let mut w = w.to_vec();
            w.sort();
            w.dedup();
            assert_eq!(w.len(), 4, "{picks:?}");
        }
    }
}
