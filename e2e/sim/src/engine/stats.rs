//! Counters and histograms an engine keeps, in the units vLLM reports them.

/// vLLM's bucket bounds for `vllm:time_to_first_token_seconds`.
pub const TTFT_BUCKETS: [f64; 22] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];

/// A cumulative-bucket histogram (Prometheus semantics).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with upper bounds `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one observation.
    pub fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    /// `(upper bound, cumulative count)` per bucket, without `+Inf`.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let mut acc = 0;
        self.bounds.iter().zip(&self.counts).map(move |(&b, &c)| {
            acc += c;
            (b, acc)
        })
    }

    /// Sum of observations.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Number of observations (the `+Inf` bucket).
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Monotonic engine counters.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineStats {
    /// Prompt tokens of admitted requests (`vllm:prompt_tokens_total`).
    pub prompt_tokens: u64,
    /// Tokens generated (`vllm:generation_tokens_total`).
    pub generation_tokens: u64,
    /// Prompt tokens looked up in the prefix cache (`vllm:prefix_cache_queries_total`).
    pub prefix_cache_queries: u64,
    /// Of those, tokens found cached (`vllm:prefix_cache_hits_total`).
    pub prefix_cache_hits: u64,
    /// Requests preempted (recompute) for lack of KV blocks.
    pub preemptions: u64,
    /// Requests that produced all their tokens.
    pub finished: u64,
    /// Time from arrival to first token, seconds.
    pub ttft: Histogram,
}

impl Default for EngineStats {
    fn default() -> Self {
        Self {
            prompt_tokens: 0,
            generation_tokens: 0,
            prefix_cache_queries: 0,
            prefix_cache_hits: 0,
            preemptions: 0,
            finished: 0,
            ttft: Histogram::new(&TTFT_BUCKETS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&TTFT_BUCKETS);
        h.observe(0.003);
        h.observe(0.3);
        h.observe(5000.0);
        let c: Vec<_> = h.cumulative().collect();
        assert_eq!(c[0], (0.001, 0));
        assert_eq!(c[1], (0.005, 1));
        assert_eq!(c[9], (0.5, 2));
        assert_eq!(c.last().unwrap().1, 2);
        assert_eq!(h.count(), 3);
        assert!((h.sum() - 5000.303).abs() < 1e-9);
    }
}
