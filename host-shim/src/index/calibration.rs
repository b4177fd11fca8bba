//! How many prefix-index blocks one engine KV token stands for, learned from traffic.
//!
//! The index holds prompt-byte blocks ([`infergate_core::prefix::BlockHasher`]) while the
//! engine caches tokens, so sizing the index from the engine's KV capacity needs the prompt's
//! bytes per token. A fixed guess is wrong for most traffic (English ~4 bytes per token,
//! code and other scripts differ, the benchmark's synthetic words are 6): measured live, an
//! index sized for 4 bytes per token on 6-byte traffic forgot prefix groups the pods still
//! held and spread them (prefix hit 55% against 62% with the exact size), and one sized 1.5×
//! too large kept sending requests to pods that had evicted the prefix (60%).
//!
//! So the slot counts the index blocks of the requests routed to the endpoint (its own picks
//! and, with `--peers`, the peers' served reports) and compares them with the engine's own
//! prompt-token counter (`vllm:prompt_tokens_total`): blocks routed / tokens processed is the
//! index blocks per engine token of this traffic, and KV capacity × that ratio is the index
//! size that forgets when the engine does. Without peers a replica sees only its share of the
//! engine's traffic, and the ratio shrinks its index by the same share, which is again what
//! its view of the engine's LRU can hold.
//!
//! The ratio is measured over windows of [`WINDOW_TOKENS`] engine tokens (the last finished
//! window is used until the next one has [`MIN_TOKENS`]); a counter that goes down (engine
//! restart) starts over.

/// Engine prompt tokens needed before a ratio is trusted.
pub const MIN_TOKENS: u64 = 65_536;
/// Engine prompt tokens after which the window starts over (so the ratio follows the mix).
pub const WINDOW_TOKENS: u64 = 2_000_000;

/// The running measurement of one endpoint.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Engine counter and blocks routed at the start of the window.
    base: Option<(u64, u64)>,
    /// The engine counter last seen.
    last_tokens: u64,
    /// Index blocks per engine token, once measured.
    ratio: Option<f64>,
}

impl Calibration {
    /// Feeds the engine's prompt-token counter and the index blocks routed to it so far;
    /// returns the current blocks-per-token ratio, if one has been measured.
    pub fn update(&mut self, tokens_total: u64, blocks_routed: u64) -> Option<f64> {
        match self.base {
            Some((t0, b0)) if tokens_total >= self.last_tokens => {
                self.last_tokens = tokens_total;
                let dt = tokens_total - t0;
                if dt >= MIN_TOKENS {
                    let db = blocks_routed.saturating_sub(b0);
                    self.ratio = Some(db as f64 / dt as f64);
                    if dt >= WINDOW_TOKENS {
                        self.base = Some((tokens_total, blocks_routed));
                    }
                }
            }
            // First sight, or the counter went back (engine restarted): measure afresh,
            // keeping the last ratio meanwhile (a restart does not change the traffic).
            _ => {
                self.base = Some((tokens_total, blocks_routed));
                self.last_tokens = tokens_total;
            }
        }
        self.ratio
    }

    /// The last measured ratio.
    pub fn ratio(&self) -> Option<f64> {
        self.ratio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_appears_after_enough_tokens_and_follows_windows() {
        let mut c = Calibration::default();
        assert_eq!(c.update(1_000, 0), None);
        // 30 blocks for 1000 tokens: not enough tokens yet.
        assert_eq!(c.update(2_000, 30), None);
        // 6-byte tokens in 256-byte blocks: 100_000 tokens ≈ 2344 blocks.
        let r = c.update(101_000, 2_344).unwrap();
        assert!((r - 0.02344).abs() < 1e-6, "{r}");
        // A full window rebases; the ratio is kept until the next window has enough tokens.
        let r2 = c.update(2_101_000, 2_344 + 30_000).unwrap();
        assert!((r2 - 32_344.0 / 2_100_000.0).abs() < 1e-9);
        assert_eq!(c.update(2_110_000, 40_000), Some(r2));
        let r3 = c.update(2_201_000, 32_344 + 1_000).unwrap();
        assert!((r3 - 0.01).abs() < 1e-9, "{r3}");
    }

    #[test]
    fn a_restarted_engine_starts_over() {
        let mut c = Calibration::default();
        c.update(0, 0);
        assert!(c.update(100_000, 1_000).is_some());
        // Counter went back: the measurement restarts, the old ratio is kept meanwhile.
        assert_eq!(c.update(10, 1_000), Some(0.01));
        assert_eq!(c.update(100_010, 1_000 + 500), Some(0.005));
    }
}
