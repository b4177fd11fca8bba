//! The engine model: vLLM V1's scheduler loop over a paged, prefix-cached KV cache.
//!
//! Each step the scheduler first gives every running request its next tokens (one for a
//! decoding request, a prefill chunk otherwise) within the `max_num_batched_tokens` budget,
//! preempting the most recently admitted running request (recompute) whenever blocks run out;
//! then, if nothing was preempted, it admits waiting requests in FIFO order while the budget,
//! `max_num_seqs` and free blocks allow, reusing their longest cached prefix. The step's
//! duration comes from the [`CostModel`]; its tokens are emitted when it completes.
//!
//! The engine has no clock: the caller passes `now` (seconds) to [`Engine::complete_step`], so
//! the same code runs in real time (the HTTP pod) and in virtual time (the benchmark).

mod stats;

pub use stats::{EngineStats, Histogram, TTFT_BUCKETS};

use crate::block_hash::BlockHash;
use crate::cost::{CostModel, Profile, StepWork};
use crate::kv_cache::{BlockId, KvCache};
use std::collections::{HashMap, VecDeque};

/// Engine limits and cost model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    /// Tokens per KV block.
    pub block_size: usize,
    /// KV blocks in the pool.
    pub num_gpu_blocks: usize,
    /// Most requests running at once.
    pub max_num_seqs: usize,
    /// Token budget of one step (chunked prefill splits longer prompts).
    pub max_num_batched_tokens: usize,
    /// Longest prompt + output accepted.
    pub max_model_len: usize,
    /// Automatic prefix caching on/off.
    pub enable_prefix_caching: bool,
    /// Step-time model.
    pub cost: CostModel,
}

impl EngineConfig {
    /// The defaults of `profile`, with `max_model_len` capped by the KV capacity.
    pub fn from_profile(profile: &Profile) -> Self {
        Self {
            block_size: profile.block_size,
            num_gpu_blocks: profile.num_gpu_blocks,
            max_num_seqs: profile.max_num_seqs,
            max_num_batched_tokens: profile.max_num_batched_tokens,
            max_model_len: 40_960.min(profile.num_gpu_blocks * profile.block_size),
            enable_prefix_caching: true,
            cost: profile.cost,
        }
    }

    /// The profile named `name` with its engine defaults, `num_gpu_blocks` overriding the KV
    /// capacity (and capping `max_model_len`) when given. The error lists the known profiles.
    pub fn for_profile_name(
        name: &str,
        num_gpu_blocks: Option<usize>,
    ) -> Result<(Profile, Self), String> {
        let profile = crate::cost::profile(name).ok_or_else(|| {
            format!(
                "unknown profile {name:?}; known: {:?}",
                crate::cost::PROFILES.map(|p| p.name)
            )
        })?;
        let mut engine = Self::from_profile(&profile);
        if let Some(b) = num_gpu_blocks {
            engine.num_gpu_blocks = b;
            engine.max_model_len = engine.max_model_len.min(b * engine.block_size);
        }
        Ok((profile, engine))
    }

    /// Checks the limits are usable together.
    pub fn validate(&self) -> Result<(), String> {
        if self.block_size == 0 || self.num_gpu_blocks == 0 {
            return Err("block_size and num_gpu_blocks must be positive".into());
        }
        if self.max_num_seqs == 0 || self.max_num_batched_tokens == 0 {
            return Err("max_num_seqs and max_num_batched_tokens must be positive".into());
        }
        if self.max_model_len == 0 || self.max_model_len > self.num_gpu_blocks * self.block_size {
            return Err(format!(
                "max_model_len {} must be in 1..={} (the KV cache capacity)",
                self.max_model_len,
                self.num_gpu_blocks * self.block_size
            ));
        }
        Ok(())
    }
}

/// A request handed to an engine.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRequest {
    /// Caller-chosen id, unique among in-flight requests.
    pub id: u64,
    /// Prompt length in tokens (≥ 1).
    pub prompt_len: u32,
    /// Tokens to generate (≥ 1).
    pub max_output: u32,
    /// Chained hashes of the full blocks of prompt followed by the output to be generated.
    pub block_hashes: Vec<BlockHash>,
    /// Arrival time, seconds on the caller's clock (for TTFT).
    pub arrival: f64,
}

/// Why a request cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmissionError {
    /// Empty prompt or zero output tokens.
    Empty,
    /// Prompt plus output longer than `max_model_len`.
    TooLong {
        /// Tokens requested (prompt + output).
        requested: usize,
        /// The limit.
        max_model_len: usize,
    },
}

impl std::fmt::Display for AdmissionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => write!(f, "the prompt must not be empty and max_tokens must be at least 1"),
            Self::TooLong { requested, max_model_len } => write!(
                f,
                "This model's maximum context length is {max_model_len} tokens. However, you requested {requested} tokens (prompt plus max_tokens). Please reduce the length of the messages or completion."
            ),
        }
    }
}

impl std::error::Error for AdmissionError {}

/// One generated token, reported when its step completes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenEvent {
    /// The request.
    pub id: u64,
    /// 0 for the first generated token.
    pub index: u32,
    /// Whether this was the request's last token.
    pub finished: bool,
    /// Prompt tokens served from the prefix cache when the request was first scheduled.
    pub cached_tokens: u32,
}

/// What a scheduled step will do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// How long the step takes, seconds.
    pub duration_s: f64,
    /// Tokens computed (prefill + decode).
    pub num_tokens: u64,
    /// Requests in the batch.
    pub num_seqs: usize,
}

#[derive(Debug)]
struct Seq {
    id: u64,
    prompt_len: u32,
    max_output: u32,
    hashes: Vec<BlockHash>,
    arrival: f64,
    num_computed: u32,
    num_output: u32,
    blocks: Vec<BlockId>,
    registered: usize,
    cached_tokens: Option<u32>,
    expected_uncached: u32,
    /// Hashes before this index are no longer counted in `Engine::pending`.
    pending_done: usize,
    aborted: bool,
}

impl Seq {
    fn num_tokens(&self) -> u32 {
        self.prompt_len + self.num_output
    }
}

/// A simulated vLLM engine.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    kv: KvCache,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    scheduled: Vec<(usize, u32)>,
    in_step: bool,
    stats: EngineStats,
    /// Block hashes of queued and running requests not computed yet, with multiplicity.
    pending: HashMap<BlockHash, u32>,
}

impl Engine {
    /// An idle engine with an empty cache. `cfg` must pass [`EngineConfig::validate`].
    pub fn new(cfg: EngineConfig) -> Self {
        Self {
            kv: KvCache::new(cfg.num_gpu_blocks, cfg.enable_prefix_caching),
            cfg,
            waiting: VecDeque::new(),
            running: Vec::new(),
            scheduled: Vec::new(),
            in_step: false,
            stats: EngineStats::default(),
            pending: HashMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The KV cache (read-only; the oracle router looks at it).
    pub fn kv(&self) -> &KvCache {
        &self.kv
    }

    /// Counters since start.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Requests in the running batch.
    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    /// Requests queued (including preempted ones).
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Whether a step is scheduled and not yet completed.
    pub fn in_step(&self) -> bool {
        self.in_step
    }

    /// Whether there is anything to run.
    pub fn has_work(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }

    /// Number of leading `hashes` this engine holds in its cache right now.
    pub fn cached_prefix_blocks(&self, hashes: &[BlockHash]) -> usize {
        hashes.iter().take_while(|h| self.kv.contains(**h)).count()
    }

    /// Prompt tokens still to prefill: the rest of running prefills plus the uncached part
    /// (as of arrival) of every waiting prompt. The oracle router's measure of queued work.
    pub fn pending_prefill_tokens(&self) -> u64 {
        let running: u64 = self
            .running
            .iter()
            .map(|s| u64::from(s.prompt_len.saturating_sub(s.num_computed)))
            .sum();
        let waiting: u64 = self
            .waiting
            .iter()
            .map(|s| u64::from(s.expected_uncached))
            .sum();
        running + waiting
    }

    /// Number of leading `hashes` this engine holds or will hold once its queued and running
    /// requests have computed them.
    pub fn cached_or_pending_prefix_blocks(&self, hashes: &[BlockHash]) -> usize {
        hashes
            .iter()
            .take_while(|h| self.kv.contains(**h) || self.pending.contains_key(h))
            .count()
    }

    /// Queues a request.
    pub fn add_request(&mut self, r: NewRequest) -> Result<(), AdmissionError> {
        if r.prompt_len == 0 || r.max_output == 0 {
            return Err(AdmissionError::Empty);
        }
        let requested = r.prompt_len as usize + r.max_output as usize;
        if requested > self.cfg.max_model_len {
            return Err(AdmissionError::TooLong {
                requested,
                max_model_len: self.cfg.max_model_len,
            });
        }
        let bs = self.cfg.block_size;
        let hit = (self.cached_prefix_blocks(&r.block_hashes) * bs).min(r.prompt_len as usize - 1);
        for h in &r.block_hashes {
            *self.pending.entry(*h).or_insert(0) += 1;
        }
        self.waiting.push_back(Seq {
            id: r.id,
            prompt_len: r.prompt_len,
            max_output: r.max_output,
            hashes: r.block_hashes,
            arrival: r.arrival,
            num_computed: 0,
            num_output: 0,
            blocks: Vec::new(),
            registered: 0,
            cached_tokens: None,
            expected_uncached: r.prompt_len - hit as u32,
            pending_done: 0,
            aborted: false,
        });
        Ok(())
    }

    /// Drops a request (client went away). A running request's blocks are released now, or
    /// when the current step completes if it is in that step.
    pub fn abort(&mut self, id: u64) {
        if let Some(pos) = self.waiting.iter().position(|s| s.id == id) {
            if let Some(s) = self.waiting.remove(pos) {
                unpend(&mut self.pending, &s.hashes[s.pending_done..]);
                self.kv.release(s.blocks.into_iter().rev());
            }
            return;
        }
        if let Some(pos) = self.running.iter().position(|s| s.id == id) {
            if self.in_step {
                self.running[pos].aborted = true;
            } else {
                let s = self.running.remove(pos);
                unpend(&mut self.pending, &s.hashes[s.pending_done..]);
                self.kv.release(s.blocks.into_iter().rev());
            }
        }
    }

    /// Plans the next step. `None` if there is nothing to do (or a step is already planned).
    pub fn schedule(&mut self) -> Option<Step> {
        if self.in_step || !self.has_work() {
            return None;
        }
        let bs = self.cfg.block_size;
        let mut budget = self.cfg.max_num_batched_tokens as u32;
        let mut preempted = false;
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let s = &self.running[i];
            let new = (s.num_tokens() - s.num_computed).min(budget);
            let need = (s.num_computed + new).div_ceil(bs as u32) as usize;
            let mut scheduled = true;
            while need > self.running[i].blocks.len() + self.kv.num_free() {
                preempted = true;
                let victim = self.running.len() - 1;
                self.preempt(victim);
                if victim == i {
                    scheduled = false;
                    break;
                }
            }
            if !scheduled {
                break;
            }
            let extra = need - self.running[i].blocks.len();
            if extra > 0 {
                let got = self.kv.allocate(extra).unwrap_or_default();
                self.running[i].blocks.extend(got);
            }
            self.scheduled.push((i, new));
            budget -= new;
            i += 1;
        }
        while !preempted && budget > 0 && self.running.len() < self.cfg.max_num_seqs {
            let Some(s) = self.waiting.front() else { break };
            let num_tokens = s.num_tokens();
            // At least the last token is always computed, so a full hit still yields logits.
            let max_hit = ((num_tokens - 1) as usize / bs).min(s.hashes.len());
            let hits = self.kv.cached_prefix(&s.hashes[..max_hit]);
            let computed = (hits.len() * bs) as u32;
            let new = (num_tokens - computed).min(budget);
            let need = (computed + new).div_ceil(bs as u32) as usize - hits.len();
            if need > self.kv.num_free() - self.kv.count_free(&hits) {
                break;
            }
            let Some(mut s) = self.waiting.pop_front() else {
                break;
            };
            self.kv.touch(&hits);
            s.blocks = hits;
            s.blocks.extend(self.kv.allocate(need).unwrap_or_default());
            s.registered = s.blocks.len() - need;
            s.num_computed = computed;
            self.stats.prefix_cache_queries += u64::from(num_tokens);
            self.stats.prefix_cache_hits += u64::from(computed);
            if s.cached_tokens.is_none() {
                s.cached_tokens = Some(computed.min(s.prompt_len));
                self.stats.prompt_tokens += u64::from(s.prompt_len);
            }
            self.running.push(s);
            self.scheduled.push((self.running.len() - 1, new));
            budget -= new;
        }
        if self.scheduled.is_empty() {
            return None;
        }
        self.in_step = true;
        let rows = self.scheduled.iter().map(|&(idx, new)| {
            let s = &self.running[idx];
            StepWork {
                new: u64::from(new),
                context: u64::from(s.num_computed),
                decoding: s.num_computed >= s.prompt_len,
            }
        });
        let duration_s = self.cfg.cost.step_seconds(rows);
        Some(Step {
            duration_s,
            num_tokens: self.scheduled.iter().map(|&(_, n)| u64::from(n)).sum(),
            num_seqs: self.scheduled.len(),
        })
    }

    /// Finishes the planned step at time `now`, appending the generated tokens to `out`.
    pub fn complete_step(&mut self, now: f64, out: &mut Vec<TokenEvent>) {
        if !self.in_step {
            return;
        }
        self.in_step = false;
        let bs = self.cfg.block_size as u32;
        for (idx, new) in std::mem::take(&mut self.scheduled) {
            let s = &mut self.running[idx];
            s.num_computed += new;
            let full = ((s.num_computed / bs) as usize).min(s.hashes.len());
            for b in s.registered..full {
                self.kv.register(s.blocks[b], s.hashes[b]);
            }
            s.registered = s.registered.max(full);
            if full > s.pending_done {
                unpend(&mut self.pending, &s.hashes[s.pending_done..full]);
                s.pending_done = full;
            }
            if s.num_computed < s.num_tokens() || s.aborted {
                continue;
            }
            let index = s.num_output;
            s.num_output += 1;
            let finished = s.num_output >= s.max_output;
            if index == 0 {
                self.stats.ttft.observe(now - s.arrival);
            }
            self.stats.generation_tokens += 1;
            out.push(TokenEvent {
                id: s.id,
                index,
                finished,
                cached_tokens: s.cached_tokens.unwrap_or(0),
            });
        }
        let kv = &mut self.kv;
        let stats = &mut self.stats;
        let pending = &mut self.pending;
        self.running.retain_mut(|s| {
            let done = s.aborted || s.num_output >= s.max_output;
            if done {
                stats.finished += u64::from(!s.aborted);
                unpend(pending, &s.hashes[s.pending_done..]);
                kv.release(std::mem::take(&mut s.blocks).into_iter().rev());
            }
            !done
        });
    }

    fn preempt(&mut self, idx: usize) {
        let mut s = self.running.remove(idx);
        self.kv
            .release(std::mem::take(&mut s.blocks).into_iter().rev());
        s.num_computed = 0;
        s.registered = 0;
        self.stats.preemptions += 1;
        self.waiting.push_front(s);
    }
}

fn unpend(pending: &mut HashMap<BlockHash, u32>, hashes: &[BlockHash]) {
    for h in hashes {
        if let Some(n) = pending.get_mut(h) {
            *n -= 1;
            if *n == 0 {
                pending.remove(h);
            }
        }
    }
}

#[cfg(test)]
mod tests;
