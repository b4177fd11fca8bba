//! Per-endpoint scheduler memory: the approximate prefix index and the dispatch ledger.
//!
//! Each endpoint has its own [`EndpointSlot`] behind its own lock, and the slots are spread
//! over independently locked shards, so picks for different endpoints and served reports
//! never wait on one global lock.

pub mod calibration;
pub mod in_flight;
pub mod lru;

use crate::clock::Timestamp;
use crate::endpoint::{Endpoint, EngineMetrics};
use calibration::Calibration;
use in_flight::{InFlightEntry, InFlightLedger};
use lru::BlockLru;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// How the index sizes itself from an engine's real KV capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexSizing {
    /// Prompt bytes per index block (the [`infergate_core::prefix::BlockHasher`] block size).
    pub block_bytes: usize,
    /// Average prompt bytes per token, to convert engine tokens to index blocks.
    pub bytes_per_token: f64,
    /// Capacity in index blocks while the engine has not reported its KV capacity.
    pub default_blocks: usize,
    /// Upper bound on any endpoint's capacity in index blocks (memory bound).
    pub max_blocks: usize,
    /// Learn the index blocks per engine token from traffic ([`calibration`]) instead of
    /// trusting `bytes_per_token`; off when `bytesPerToken` is configured.
    pub calibrate: bool,
}

impl Default for IndexSizing {
    fn default() -> Self {
        Self {
            block_bytes: infergate_core::prefix::DEFAULT_BLOCK_SIZE,
            bytes_per_token: 4.0,
            default_blocks: 8192,
            max_blocks: 1 << 20,
            calibrate: true,
        }
    }
}

impl IndexSizing {
    /// Index blocks that fit in an engine KV cache of `tokens` tokens.
    ///
    /// An engine block of `block_size` tokens is not an index block: ours covers
    /// `block_bytes / bytes_per_token` tokens. Counting engine blocks as index blocks is what
    /// makes other routers believe pods cache several times what they do.
    pub fn blocks_for_tokens(&self, tokens: Option<u64>) -> usize {
        let Some(tokens) = tokens else {
            return self.default_blocks.clamp(1, self.max_blocks);
        };
        let tokens_per_block = (self.block_bytes as f64 / self.bytes_per_token).max(1.0);
        let blocks = (tokens as f64 / tokens_per_block).floor();
        (blocks as usize).clamp(1, self.max_blocks)
    }
}

/// The scheduler's memory of one endpoint.
#[derive(Debug)]
pub struct EndpointSlot {
    index: Mutex<BlockLru>,
    /// KV capacity (tokens + 1, 0 = unknown) the index was last sized for.
    sized_for: AtomicU64,
    /// Scrape timestamp (ns) the dispatch counters are relative to.
    ledger_epoch: AtomicU64,
    dispatched_requests: AtomicU64,
    dispatched_tokens: AtomicU64,
    /// Sequence number of the scheduler's last pick of this endpoint (0 = never picked).
    last_pick: AtomicU64,
    /// This scheduler's picks of the endpoint not reported complete yet.
    in_flight: Mutex<InFlightLedger>,
    /// Index blocks of the prompts routed here (own picks and peers' served reports).
    blocks_routed: AtomicU64,
    /// Index blocks per engine token, measured.
    calibration: Mutex<Calibration>,
}

/// Requests and prompt tokens sent to an endpoint since its last scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Dispatched {
    /// Requests picked for the endpoint since `scraped_at`.
    pub requests: u64,
    /// Their prompt token estimates, summed.
    pub tokens: u64,
}

impl EndpointSlot {
    fn new(capacity: usize) -> Self {
        Self {
            index: Mutex::new(BlockLru::new(capacity)),
            sized_for: AtomicU64::new(0),
            ledger_epoch: AtomicU64::new(0),
            dispatched_requests: AtomicU64::new(0),
            dispatched_tokens: AtomicU64::new(0),
            last_pick: AtomicU64::new(0),
            in_flight: Mutex::new(InFlightLedger::default()),
            blocks_routed: AtomicU64::new(0),
            calibration: Mutex::new(Calibration::default()),
        }
    }

    /// Counts `blocks` index blocks of a prompt sent to this endpoint (for [`calibration`]).
    pub fn record_routed_blocks(&self, blocks: usize) {
        self.blocks_routed
            .fetch_add(blocks as u64, Ordering::Relaxed);
    }

    /// Sizes the index for the engine's KV capacity: with `sizing.calibrate` and a measured
    /// blocks-per-token ratio ([`calibration`]), capacity × ratio; else by
    /// `sizing.bytes_per_token`. A change under 2% is ignored, so the LRU is not rebuilt on
    /// every scrape.
    pub fn size_for(&self, metrics: &EngineMetrics, sizing: &IndexSizing) {
        let ratio = match (sizing.calibrate, metrics.prompt_tokens_total) {
            (true, Some(tokens)) => self
                .calibration
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .update(tokens, self.blocks_routed.load(Ordering::Relaxed)),
            _ => None,
        };
        let (Some(ratio), Some(capacity)) = (ratio, metrics.kv_capacity_tokens) else {
            self.resize_for(metrics.kv_capacity_tokens, sizing);
            return;
        };
        let want = ((capacity as f64 * ratio).round() as usize).clamp(1, sizing.max_blocks);
        let mut index = self.index();
        let have = index.capacity();
        if want.abs_diff(have) * 50 > have {
            index.set_capacity(want);
        }
    }

    /// The in-flight ledger, locked (a poisoned lock still holds a consistent ledger).
    pub fn in_flight(&self) -> MutexGuard<'_, InFlightLedger> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests in flight at `now`, after dropping entries older than `ttl`.
    pub fn in_flight_at(&self, now: Timestamp, ttl: std::time::Duration) -> u64 {
        let mut l = self.in_flight();
        l.expire(now, ttl);
        l.len() as u64
    }

    /// Counts a pick of a request with `block_hashes` at `now`: in flight until completed,
    /// and, when `provisional` is set, its blocks inserted into the prefix index at once.
    pub fn record_in_flight(
        &self,
        block_hashes: &[u64],
        matched: usize,
        tokens: u64,
        now: Timestamp,
        provisional: bool,
    ) {
        if provisional && !block_hashes.is_empty() {
            self.index().touch_prefix(block_hashes);
        }
        self.in_flight().push(InFlightEntry {
            key: in_flight::request_key(block_hashes),
            at: now,
            tokens,
            fresh_from: if provisional {
                matched.min(block_hashes.len())
            } else {
                block_hashes.len()
            },
            confirmed: false,
        });
    }

    /// The index, locked. A poisoned lock still holds a consistent LRU (no method panics
    /// half-way), so it is used as is.
    pub fn index(&self) -> MutexGuard<'_, BlockLru> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resizes the index if the engine's reported capacity changed.
    pub fn resize_for(&self, capacity_tokens: Option<u64>, sizing: &IndexSizing) {
        let key = capacity_tokens.map_or(0, |t| t.saturating_add(1));
        if self.sized_for.load(Ordering::Relaxed) == key {
            return;
        }
        self.sized_for.store(key, Ordering::Relaxed);
        self.index()
            .set_capacity(sizing.blocks_for_tokens(capacity_tokens));
    }

    /// Dispatches since the scrape at `scraped_at`; counters from before it are dropped,
    /// since that scrape's queue figures already include them.
    pub fn dispatched_since(&self, scraped_at: Option<Timestamp>) -> Dispatched {
        let epoch = scraped_at.map_or(0, |t| t.as_nanos() as u64);
        let seen = self.ledger_epoch.load(Ordering::Acquire);
        if epoch > seen
            && self
                .ledger_epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.dispatched_requests.store(0, Ordering::Release);
            self.dispatched_tokens.store(0, Ordering::Release);
        }
        Dispatched {
            requests: self.dispatched_requests.load(Ordering::Acquire),
            tokens: self.dispatched_tokens.load(Ordering::Acquire),
        }
    }

    /// Counts one request of `tokens` prompt tokens sent to this endpoint.
    pub fn record_dispatch(&self, tokens: u64) {
        self.dispatched_requests.fetch_add(1, Ordering::AcqRel);
        self.dispatched_tokens.fetch_add(tokens, Ordering::AcqRel);
    }

    /// Records that pick number `seq` (increasing per scheduler) chose this endpoint.
    pub fn record_pick(&self, seq: u64) {
        self.last_pick.fetch_max(seq, Ordering::AcqRel);
    }

    /// The sequence number of the last pick that chose this endpoint (0 = never).
    pub fn last_pick(&self) -> u64 {
        self.last_pick.load(Ordering::Acquire)
    }
}

const SHARDS: usize = 16;

/// The Fx hash (rustc's): a multiply-rotate over machine words. Endpoint keys are a few
/// trusted words, so SipHash's DoS resistance buys nothing on the pick path.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FxBuild = BuildHasherDefault<FxHasher>;
type Shard = RwLock<HashMap<Endpoint, Arc<EndpointSlot>, FxBuild>>;

/// All endpoints' slots, sharded by endpoint.
#[derive(Debug)]
pub struct SlotMap {
    shards: Vec<Shard>,
    sizing: IndexSizing,
}

/// Size of an endpoint's index, for metrics and the debug view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IndexStats {
    /// Blocks held.
    pub blocks: usize,
    /// Most blocks held.
    pub capacity: usize,
    /// Heap bytes used.
    pub bytes: usize,
}

impl SlotMap {
    /// An empty map whose new slots are sized by `sizing`.
    pub fn new(sizing: IndexSizing) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::default()))
                .collect(),
            sizing,
        }
    }

    /// The sizing rules.
    pub fn sizing(&self) -> &IndexSizing {
        &self.sizing
    }

    fn shard(&self, e: &Endpoint) -> &Shard {
        // High bits: the Fx multiply mixes upward.
        let h = FxBuild::default().hash_one(e);
        &self.shards[(h >> 60) as usize % SHARDS]
    }

    /// The slot of `e`, if it exists.
    pub fn get(&self, e: &Endpoint) -> Option<Arc<EndpointSlot>> {
        self.shard(e)
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(e)
            .cloned()
    }

    /// The slot of `e`, created empty if needed.
    pub fn get_or_insert(&self, e: &Endpoint) -> Arc<EndpointSlot> {
        if let Some(s) = self.get(e) {
            return s;
        }
        self.shard(e)
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(*e)
            .or_insert_with(|| Arc::new(EndpointSlot::new(self.sizing.blocks_for_tokens(None))))
            .clone()
    }

    /// Every endpoint's slot, in no particular order.
    pub fn all(&self) -> Vec<(Endpoint, Arc<EndpointSlot>)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            out.extend(
                shard
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .map(|(e, s)| (*e, s.clone())),
            );
        }
        out
    }

    /// Drops the slots of endpoints not in `keep` and creates the missing ones.
    pub fn retain(&self, keep: &[Endpoint]) {
        for shard in &self.shards {
            shard
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|e, _| keep.contains(e));
        }
        for e in keep {
            self.get_or_insert(e);
        }
    }

    /// Index size of every endpoint, sorted by endpoint.
    pub fn stats(&self) -> Vec<(Endpoint, IndexStats)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let slots: Vec<_> = shard
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(e, s)| (*e, s.clone()))
                .collect();
            for (e, s) in slots {
                let idx = s.index();
                out.push((
                    e,
                    IndexStats {
                        blocks: idx.len(),
                        capacity: idx.capacity(),
                        bytes: idx.memory_bytes(),
                    },
                ));
            }
        }
        out.sort_by_key(|(e, _)| *e);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    #[test]
    fn capacity_converts_engine_tokens_to_index_blocks() {
        let s = IndexSizing::default();
        // 2048 engine blocks × 16 tokens = 32768 tokens; 256 B / 4 B per token = 64 tokens
        // per index block → 512 index blocks, not 2048.
        assert_eq!(s.blocks_for_tokens(Some(2048 * 16)), 512);
        assert_eq!(s.blocks_for_tokens(None), s.default_blocks);
        assert_eq!(s.blocks_for_tokens(Some(0)), 1);
        let small = IndexSizing {
            max_blocks: 100,
            ..s
        };
        assert_eq!(small.blocks_for_tokens(Some(u64::MAX)), 100);
    }

    #[test]
    fn ledger_resets_on_a_newer_scrape() {
        let map = SlotMap::new(IndexSizing::default());
        let slot = map.get_or_insert(&ep("10.0.0.1:80"));
        let t1 = Some(Duration::from_millis(10));
        assert_eq!(slot.dispatched_since(t1), Dispatched::default());
        slot.record_dispatch(100);
        slot.record_dispatch(50);
        assert_eq!(
            slot.dispatched_since(t1),
            Dispatched {
                requests: 2,
                tokens: 150
            }
        );
        let t2 = Some(Duration::from_millis(60));
        assert_eq!(slot.dispatched_since(t2), Dispatched::default());
        // An older view (another caller's stale snapshot) does not resurrect counts.
        slot.record_dispatch(1);
        assert_eq!(slot.dispatched_since(t1).requests, 1);
    }

    #[test]
    fn last_pick_only_moves_forward() {
        let map = SlotMap::new(IndexSizing::default());
        let slot = map.get_or_insert(&ep("10.0.0.1:80"));
        assert_eq!(slot.last_pick(), 0);
        slot.record_pick(7);
        // A slower thread recording an older pick does not make the endpoint look idle.
        slot.record_pick(5);
        assert_eq!(slot.last_pick(), 7);
    }

    #[test]
    fn retain_drops_removed_endpoints_and_resize_follows_capacity() {
        let map = SlotMap::new(IndexSizing::default());
        let (a, b) = (ep("10.0.0.1:80"), ep("10.0.0.2:80"));
        map.retain(&[a, b]);
        assert!(map.get(&a).is_some() && map.get(&b).is_some());
        map.retain(&[b]);
        assert!(map.get(&a).is_none());
        let slot = map.get(&b).unwrap();
        slot.resize_for(Some(64 * 10), map.sizing());
        assert_eq!(slot.index().capacity(), 10);
        assert_eq!(map.stats()[0].1.capacity, 10);
    }
}
