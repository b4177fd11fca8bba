//! Seeded workload generators: who asks what, when.
//!
//! A prompt is a list of [`Segment`]s (a content stream and a length); equal segments mean equal
//! tokens, which is how groups share a prefix and chat turns share their history. Arrivals are
//! Poisson with a rate that rises in stages, so one run measures several offered loads.

use crate::block_hash::{block_hashes, chain_seed, BlockHash};
use crate::tokenizer::synthetic_token;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// A run of tokens from content stream `seed`, positions `0..len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Content stream.
    pub seed: u64,
    /// Tokens taken from the start of the stream.
    pub len: u32,
}

/// One request of a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSpec {
    /// Arrival time, seconds from the start.
    pub arrival: f64,
    /// The prompt.
    pub prompt: Vec<Segment>,
    /// Tokens the reply will have.
    pub output_len: u32,
    /// Content stream of the reply (a later chat turn repeats it as history).
    pub output_seed: u64,
    /// Index of the load stage the request arrived in.
    pub stage: usize,
}

impl RequestSpec {
    /// Prompt length in tokens.
    pub fn prompt_len(&self) -> u32 {
        self.prompt.iter().map(|s| s.len).sum()
    }

    /// The prompt's token ids.
    pub fn prompt_tokens(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.prompt_len() as usize);
        for s in &self.prompt {
            out.extend((0..s.len).map(|i| synthetic_token(s.seed, i)));
        }
        out
    }

    /// Chained hashes of the full blocks of prompt followed by reply, what the engine caches.
    pub fn block_hashes(&self, model: &str, block_size: usize) -> Vec<BlockHash> {
        let mut tokens = self.prompt_tokens();
        tokens.extend((0..self.output_len).map(|i| synthetic_token(self.output_seed, i)));
        block_hashes(chain_seed(model), &tokens, block_size)
    }
}

/// The four workload shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum WorkloadKind {
    /// G groups, each a ~6,000-token shared prefix asked by several users with ~1,200-token
    /// questions; G sized so the prefixes take ~70% of the cluster's KV cache.
    SharedPrefix,
    /// Multi-turn chat sessions whose context grows turn by turn (ShareGPT-like lengths).
    MultiTurn,
    /// Unique prompts of the shared-prefix lengths: nothing to share (control).
    NoSharing,
    /// A few prefixes with Zipf popularity: one hot prefix draws most traffic.
    ZipfHot,
}

impl WorkloadKind {
    /// All kinds, in report order.
    pub const ALL: [WorkloadKind; 4] = [
        Self::SharedPrefix,
        Self::MultiTurn,
        Self::NoSharing,
        Self::ZipfHot,
    ];

    /// Kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::SharedPrefix => "shared-prefix",
            Self::MultiTurn => "multi-turn",
            Self::NoSharing => "no-sharing",
            Self::ZipfHot => "zipf-hot",
        }
    }
}

/// A generated workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Which workload.
    pub kind: WorkloadKind,
    /// Requests sorted by arrival.
    pub requests: Vec<RequestSpec>,
    /// Offered request rate per stage, requests/s.
    pub stage_rates: Vec<f64>,
    /// Length of each stage, seconds.
    pub stage_seconds: f64,
    /// Shared-prefix groups (or hot prefixes) used, 0 if none.
    pub groups: usize,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    /// Which workload.
    pub kind: WorkloadKind,
    /// RNG seed; equal seeds give equal workloads.
    pub seed: u64,
    /// Offered request rate of each stage, requests/s (rising).
    pub stage_rates: Vec<f64>,
    /// Length of each stage, seconds.
    pub stage_seconds: f64,
    /// KV capacity of the whole cluster, tokens (sizes the shared-prefix groups).
    pub cluster_kv_tokens: u64,
}

/// Shared prefix length of the shared-prefix and zipf-hot workloads, tokens.
pub const PREFIX_LEN: u32 = 6_000;
/// Mean question length, tokens.
pub const QUESTION_LEN: u32 = 1_200;
/// Fraction of the cluster's KV cache the shared-prefix groups need.
pub const PREFIX_KV_FRACTION: f64 = 0.7;
/// Users asking each shared-prefix group (each user's questions are their own stream).
pub const USERS_PER_GROUP: u64 = 5;
/// Prefixes in the zipf-hot workload and the Zipf exponent.
pub const ZIPF_PREFIXES: usize = 32;
/// Zipf exponent of the hot-prefix popularity.
pub const ZIPF_S: f64 = 1.2;

/// A typical request of `kind` under perfect prefix caching: (new prompt tokens, cached
/// prompt tokens, output tokens). Used to set stage rates relative to a cluster's capacity.
pub fn typical_request(kind: WorkloadKind) -> (u64, u64, u64) {
    match kind {
        WorkloadKind::SharedPrefix | WorkloadKind::ZipfHot => {
            (u64::from(QUESTION_LEN), u64::from(PREFIX_LEN), 200)
        }
        WorkloadKind::NoSharing => (u64::from(PREFIX_LEN + QUESTION_LEN), 0, 200),
        WorkloadKind::MultiTurn => (200, 1_600, 250),
    }
}

struct Gen {
    rng: ChaCha8Rng,
    next_seed: u64,
}

impl Gen {
    fn fresh_seed(&mut self) -> u64 {
        self.next_seed += 1;
        self.next_seed
    }
    fn exp(&mut self, rate: f64) -> f64 {
        -(1.0 - self.rng.gen::<f64>()).ln() / rate
    }
    fn uniform(&mut self, mean: u32, spread: f64) -> u32 {
        let lo = f64::from(mean) * (1.0 - spread);
        let hi = f64::from(mean) * (1.0 + spread);
        self.rng.gen_range(lo..=hi).round().max(1.0) as u32
    }
    /// Log-normal with the given mean and sigma, clamped.
    fn lognormal(&mut self, mean: f64, sigma: f64, lo: u32, hi: u32) -> u32 {
        let u1: f64 = 1.0 - self.rng.gen::<f64>();
        let u2: f64 = self.rng.gen();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let mu = mean.ln() - sigma * sigma / 2.0;
        ((mu + sigma * z).exp().round() as u32).clamp(lo, hi)
    }
}

/// Poisson arrival times with the rate of each stage, and the stage of each.
fn arrivals(g: &mut Gen, rates: &[f64], stage_seconds: f64) -> Vec<(f64, usize)> {
    let mut out = Vec::new();
    for (k, &rate) in rates.iter().enumerate() {
        if rate <= 0.0 {
            continue;
        }
        let start = k as f64 * stage_seconds;
        let mut t = start + g.exp(rate);
        while t < start + stage_seconds {
            out.push((t, k));
            t += g.exp(rate);
        }
    }
    out
}

/// Generates the workload described by `spec`.
pub fn generate(spec: &WorkloadSpec) -> Workload {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(spec.seed ^ (spec.kind as u64).wrapping_mul(0x1000_0001)),
        next_seed: 1 << 32,
    };
    let times = arrivals(&mut g, &spec.stage_rates, spec.stage_seconds);
    let (requests, groups) = match spec.kind {
        WorkloadKind::SharedPrefix => shared_prefix(&mut g, &times, spec.cluster_kv_tokens),
        WorkloadKind::NoSharing => (no_sharing(&mut g, &times), 0),
        WorkloadKind::ZipfHot => (zipf_hot(&mut g, &times), ZIPF_PREFIXES),
        WorkloadKind::MultiTurn => (
            multi_turn(&mut g, &times, spec.stage_seconds, spec.stage_rates.len()),
            0,
        ),
    };
    Workload {
        kind: spec.kind,
        requests,
        stage_rates: spec.stage_rates.clone(),
        stage_seconds: spec.stage_seconds,
        groups,
    }
}

fn question(
    g: &mut Gen,
    user_stream: u64,
    prefix: Option<u64>,
    t: f64,
    stage: usize,
) -> RequestSpec {
    let mut prompt = Vec::with_capacity(2);
    if let Some(p) = prefix {
        prompt.push(Segment {
            seed: p,
            len: PREFIX_LEN,
        });
    }
    // Each question is its own content; mixing in the user stream keeps users distinct.
    let q = g.fresh_seed() ^ (user_stream << 40);
    prompt.push(Segment {
        seed: q,
        len: g.uniform(QUESTION_LEN, 0.2),
    });
    RequestSpec {
        arrival: t,
        prompt,
        output_len: g.uniform(200, 0.5),
        output_seed: g.fresh_seed(),
        stage,
    }
}

/// Number of groups whose prefixes fill `PREFIX_KV_FRACTION` of `cluster_kv_tokens`.
pub fn shared_prefix_groups(cluster_kv_tokens: u64) -> usize {
    ((cluster_kv_tokens as f64 * PREFIX_KV_FRACTION) / f64::from(PREFIX_LEN))
        .round()
        .max(1.0) as usize
}

fn shared_prefix(g: &mut Gen, times: &[(f64, usize)], kv_tokens: u64) -> (Vec<RequestSpec>, usize) {
    let groups = shared_prefix_groups(kv_tokens);
    let reqs = times
        .iter()
        .map(|&(t, stage)| {
            let group = g.rng.gen_range(0..groups as u64);
            let user = group * USERS_PER_GROUP + g.rng.gen_range(0..USERS_PER_GROUP);
            question(g, user, Some(group + 1), t, stage)
        })
        .collect();
    (reqs, groups)
}

fn no_sharing(g: &mut Gen, times: &[(f64, usize)]) -> Vec<RequestSpec> {
    times
        .iter()
        .map(|&(t, stage)| {
            let mut r = question(g, 0, None, t, stage);
            // Same total length as a shared-prefix request, all of it unique.
            r.prompt[0].len += PREFIX_LEN;
            r
        })
        .collect()
}

fn zipf_hot(g: &mut Gen, times: &[(f64, usize)]) -> Vec<RequestSpec> {
    let weights: Vec<f64> = (1..=ZIPF_PREFIXES)
        .map(|k| (k as f64).powf(-ZIPF_S))
        .collect();
    let total: f64 = weights.iter().sum();
    let cdf: Vec<f64> = weights
        .iter()
        .scan(0.0, |acc, w| {
            *acc += w / total;
            Some(*acc)
        })
        .collect();
    times
        .iter()
        .map(|&(t, stage)| {
            let u: f64 = g.rng.gen();
            let k = cdf.partition_point(|&c| c < u).min(ZIPF_PREFIXES - 1);
            question(g, 0, Some(1_000_000 + k as u64), t, stage)
        })
        .collect()
}

/// Chat sessions: each arrival slot starts a turn of some session. Sessions start at
/// `rate / mean_turns` so the request rate matches the stage rate; turn `k+1` of a session is
/// sent `think` seconds after turn `k` (open loop) and carries the whole history.
fn multi_turn(
    g: &mut Gen,
    times: &[(f64, usize)],
    stage_seconds: f64,
    stages: usize,
) -> Vec<RequestSpec> {
    const MEAN_TURNS: f64 = 5.0;
    let mut reqs = Vec::new();
    for (i, &(t, _)) in times.iter().enumerate() {
        // One session per `MEAN_TURNS` arrival slots keeps the request rate of the stage.
        if i % MEAN_TURNS as usize != 0 {
            continue;
        }
        let turns = g.rng.gen_range(2..=8u32);
        let system = Segment {
            seed: g.fresh_seed(),
            len: g.lognormal(300.0, 0.6, 20, 2000),
        };
        let mut history = vec![system];
        let mut at = t;
        for _ in 0..turns {
            history.push(Segment {
                seed: g.fresh_seed(),
                len: g.lognormal(200.0, 0.9, 4, 2000),
            });
            let output_len = g.lognormal(250.0, 0.8, 4, 1024);
            let output_seed = g.fresh_seed();
            reqs.push(RequestSpec {
                arrival: at,
                prompt: history.clone(),
                output_len,
                output_seed,
                stage: ((at / stage_seconds) as usize).min(stages.saturating_sub(1)),
            });
            history.push(Segment {
                seed: output_seed,
                len: output_len,
            });
            at += 10.0 + g.exp(1.0 / 20.0);
        }
    }
    reqs.sort_by(|a, b| a.arrival.total_cmp(&b.arrival));
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: WorkloadKind) -> WorkloadSpec {
        WorkloadSpec {
            kind,
            seed: 42,
            stage_rates: vec![5.0, 10.0],
            stage_seconds: 20.0,
            cluster_kv_tokens: 120_000,
        }
    }

    #[test]
    fn same_seed_same_workload_and_rates_rise() {
        let a = generate(&spec(WorkloadKind::SharedPrefix));
        let b = generate(&spec(WorkloadKind::SharedPrefix));
        assert_eq!(a.requests, b.requests);
        let s0 = a.requests.iter().filter(|r| r.stage == 0).count();
        let s1 = a.requests.iter().filter(|r| r.stage == 1).count();
        assert!(s1 > s0, "{s0} vs {s1}");
        assert!(a.requests.windows(2).all(|w| w[0].arrival <= w[1].arrival));
    }

    #[test]
    fn shared_prefix_groups_fill_seventy_percent_of_kv() {
        let w = generate(&spec(WorkloadKind::SharedPrefix));
        assert_eq!(w.groups, 14);
        let r = &w.requests[0];
        assert_eq!(r.prompt[0].len, PREFIX_LEN);
        assert!((960..=1440).contains(&r.prompt[1].len));
        // Two requests of one group share the prefix blocks and nothing after.
        let first = &w.requests[0];
        let same = w.requests[1..]
            .iter()
            .find(|r| r.prompt[0].seed == first.prompt[0].seed)
            .unwrap();
        let (ha, hb) = (first.block_hashes("m", 16), same.block_hashes("m", 16));
        let shared = ha.iter().zip(&hb).take_while(|(a, b)| a == b).count();
        assert_eq!(shared, PREFIX_LEN as usize / 16);
    }

    #[test]
    fn chat_turns_extend_their_history() {
        let w = generate(&spec(WorkloadKind::MultiTurn));
        let first = &w.requests[0];
        let next = w
            .requests
            .iter()
            .find(|r| r.prompt.len() > first.prompt.len() && r.prompt[0] == first.prompt[0])
            .unwrap();
        assert_eq!(next.prompt[..first.prompt.len()], first.prompt[..]);
        assert_eq!(next.prompt[first.prompt.len()].seed, first.output_seed);
        // The next turn's prompt starts with the full blocks of the previous prompt + reply.
        let prev = first.block_hashes("m", 16);
        let now = next.block_hashes("m", 16);
        assert_eq!(now[..prev.len()], prev[..]);
    }

    #[test]
    fn zipf_hot_prefix_dominates_and_no_sharing_is_unique() {
        let w = generate(&spec(WorkloadKind::ZipfHot));
        let hot = w
            .requests
            .iter()
            .filter(|r| r.prompt[0].seed == 1_000_000)
            .count();
        assert!(
            hot * 4 > w.requests.len(),
            "hot {hot} of {}",
            w.requests.len()
        );
        let n = generate(&spec(WorkloadKind::NoSharing));
        let firsts: std::collections::HashSet<_> = n
            .requests
            .iter()
            .map(|r| r.block_hashes("m", 16)[0])
            .collect();
        assert_eq!(firsts.len(), n.requests.len());
    }
}
