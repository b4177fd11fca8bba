//! The per-request decision: which limits apply, charging them all-or-nothing, and settling
//! token charges to real usage when the response ends.
//!
//! Token budgets are charged *before* the request with an estimate (prompt tokens estimated
//! from the body, plus the completion cap from `max_tokens`), then settled to the real usage.
//! So a budget is never overshot by more than the prompt-estimate error of the requests in
//! flight — however many there are — unlike check-then-report schemes where every concurrent
//! request passes while any budget is left.

use super::config::{Counts, Limit};
use super::counter::{adjust, try_add, AddResult, CounterStore};
use crate::attributes::AttributeSource;

/// Most bytes of counter-key values kept verbatim; longer keys are hashed.
const MAX_KEY_VALUE_BYTES: usize = 256;

/// Token estimate of a request, charged up front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenEstimate {
    /// Estimated prompt tokens.
    pub prompt: u64,
    /// Most completion tokens the request can produce.
    pub completion_cap: u64,
}

/// Real usage reported by the model server (or counted from the stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt: u64,
    /// Completion tokens.
    pub completion: u64,
}

/// One counter charged for a request, remembered for settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// Counter key in the store.
    pub key: String,
    /// Window index charged.
    pub window: u64,
    /// Units charged.
    pub amount: u64,
    /// What the limit counts.
    pub counts: Counts,
    /// Prompt weight (token limits).
    pub prompt_weight: u64,
    /// Completion weight (token limits).
    pub completion_weight: u64,
}

/// Where a request stands against one rate, for response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateStatus {
    /// Limit name.
    pub name: String,
    /// What it counts.
    pub counts: Counts,
    /// Units per window.
    pub limit: u64,
    /// Units left in the current window.
    pub remaining: u64,
    /// Window length.
    pub window_ms: u64,
    /// Milliseconds until the window resets.
    pub reset_ms: u64,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Within every applicable limit; these charges were made.
    Allowed {
        /// Charges to settle when the response ends.
        charges: Vec<Charge>,
        /// Status per applied rate.
        status: Vec<RateStatus>,
    },
    /// Over a limit; nothing was charged.
    Limited {
        /// The limit that was hit.
        name: String,
        /// Seconds until it can fit (at least 1).
        retry_after_secs: u64,
        /// Status per rate checked.
        status: Vec<RateStatus>,
    },
    /// The counter store failed; apply the failure mode.
    StoreFailed,
}

/// One call to a rate limit service: descriptors that share a hit count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalCall {
    /// Units to add (`hits_addend`).
    pub hits: u64,
    /// One descriptor per applicable limit: `("limit", name)` then `("k0", value)`, … for
    /// the counter attributes in order.
    pub descriptors: Vec<super::rls::Descriptor>,
    /// Whether these are token charges (settled later).
    pub tokens: bool,
    /// `(prompt, completion)` token weights of these limits.
    pub weights: (u64, u64),
}

impl GlobalCall {
    /// Units the request really used, under this call's weights.
    pub fn actual(&self, usage: Usage) -> u64 {
        weighted(usage.prompt, usage.completion, self.weights)
    }
}

/// `prompt × prompt weight + completion × completion weight`, saturating.
fn weighted(prompt: u64, completion: u64, (prompt_weight, completion_weight): (u64, u64)) -> u64 {
    prompt
        .saturating_mul(prompt_weight)
        .saturating_add(completion.saturating_mul(completion_weight))
}

/// A limit that applies to a request: its counter values (one per counter attribute, multiple
/// values joined by `,`) and the units the request costs it.
struct Applicable<'a> {
    limit: &'a Limit,
    values: Vec<String>,
    amount: u64,
}

/// Applies compiled limits.
pub struct Limiter {
    limits: Vec<Limit>,
}

impl Limiter {
    /// A limiter over compiled limits.
    pub fn new(limits: Vec<Limit>) -> Self {
        Self { limits }
    }

    /// The limits.
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// The limits whose `when` conditions hold and whose counter attributes are all present
    /// (Limitador's rule), with what the request costs each. Token limits need an estimate.
    fn applicable<'a>(
        &'a self,
        src: &'a dyn AttributeSource,
        tokens: Option<TokenEstimate>,
    ) -> impl Iterator<Item = Applicable<'a>> + 'a {
        self.limits.iter().filter_map(move |limit| {
            if !limit.when.iter().all(|p| p.holds(src)) {
                return None;
            }
            let values = limit
                .counters
                .iter()
                .map(|attr| {
                    let v = src.values(attr);
                    (!v.is_empty()).then(|| v.join(","))
                })
                .collect::<Option<Vec<String>>>()?;
            let amount = match (limit.counts, tokens) {
                (Counts::Requests, _) => 1,
                (Counts::Tokens, Some(t)) => weighted(
                    t.prompt,
                    t.completion_cap,
                    (limit.prompt_weight, limit.completion_weight),
                ),
                (Counts::Tokens, None) => return None,
            };
            Some(Applicable {
                limit,
                values,
                amount,
            })
        })
    }

    /// Checks and charges every applicable limit, all or nothing.
    pub fn check(
        &self,
        store: &dyn CounterStore,
        src: &dyn AttributeSource,
        now_ms: u64,
        tokens: Option<TokenEstimate>,
    ) -> Outcome {
        let mut charges: Vec<Charge> = Vec::new();
        let mut status = Vec::new();
        for Applicable {
            limit,
            values,
            amount,
        } in self.applicable(src, tokens)
        {
            let key_values = counter_key(&values);
            for (j, &(max, window_ms)) in limit.rates.iter().enumerate() {
                let window_ms = window_ms.max(1);
                let window = now_ms / window_ms;
                let reset_ms = (window + 1) * window_ms - now_ms;
                let key = format!("ig-rl|{}|{j}|{window_ms}|{key_values}", limit.name);
                let (count, fits) = match try_add(store, &key, window, amount, max) {
                    AddResult::Added(count) => (count, true),
                    AddResult::WouldExceed(count) => (count, false),
                    AddResult::StoreFailed => {
                        rollback(store, &charges);
                        return Outcome::StoreFailed;
                    }
                };
                status.push(RateStatus {
                    name: limit.name.clone(),
                    counts: limit.counts,
                    limit: max,
                    remaining: max.saturating_sub(count),
                    window_ms,
                    reset_ms,
                });
                if !fits {
                    rollback(store, &charges);
                    return Outcome::Limited {
                        name: limit.name.clone(),
                        retry_after_secs: reset_ms.div_ceil(1000).max(1),
                        status,
                    };
                }
                charges.push(Charge {
                    key,
                    window,
                    amount,
                    counts: limit.counts,
                    prompt_weight: limit.prompt_weight,
                    completion_weight: limit.completion_weight,
                });
            }
        }
        Outcome::Allowed { charges, status }
    }

    /// Global mode: the rate limit service calls for a request, grouped by hit count.
    pub fn global_calls(
        &self,
        src: &dyn AttributeSource,
        tokens: Option<TokenEstimate>,
    ) -> Vec<GlobalCall> {
        let mut calls: Vec<GlobalCall> = Vec::new();
        for Applicable {
            limit,
            values,
            amount,
        } in self.applicable(src, tokens)
        {
            let descriptor: super::rls::Descriptor =
                std::iter::once(("limit".to_string(), limit.name.clone()))
                    .chain(
                        values
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (format!("k{i}"), v)),
                    )
                    .collect();
            let is_tokens = limit.counts == Counts::Tokens;
            let weights = (limit.prompt_weight, limit.completion_weight);
            match calls
                .iter_mut()
                .find(|c| c.hits == amount && c.tokens == is_tokens && c.weights == weights)
            {
                Some(c) => c.descriptors.push(descriptor),
                None => calls.push(GlobalCall {
                    hits: amount,
                    descriptors: vec![descriptor],
                    tokens: is_tokens,
                    weights,
                }),
            }
        }
        calls
    }

    /// Settles token charges to the real usage. Request charges are final.
    pub fn settle(store: &dyn CounterStore, charges: &[Charge], usage: Usage) {
        for c in charges.iter().filter(|c| c.counts == Counts::Tokens) {
            let actual = weighted(
                usage.prompt,
                usage.completion,
                (c.prompt_weight, c.completion_weight),
            );
            let delta = i128::from(actual) - i128::from(c.amount);
            let delta = i64::try_from(delta).unwrap_or(if delta > 0 { i64::MAX } else { i64::MIN });
            if delta != 0 {
                adjust(store, &c.key, c.window, delta);
            }
        }
    }
}

fn rollback(store: &dyn CounterStore, charges: &[Charge]) {
    for c in charges {
        adjust(
            store,
            &c.key,
            c.window,
            -(i64::try_from(c.amount).unwrap_or(i64::MAX)),
        );
    }
}

/// The counter key's part for the counter values: joined, or hashed when long.
fn counter_key(values: &[String]) -> String {
    let joined = values.join("\u{1f}");
    if joined.len() > MAX_KEY_VALUE_BYTES {
        format!("h{:016x}", xxhash_rust::xxh64::xxh64(joined.as_bytes(), 0))
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::Attribute;
    use crate::config::parse;
    use crate::ratelimit::counter::{read, MemoryStore};
    use crate::ratelimit::RateLimitConfig;

    struct User(&'static str, &'static str);
    impl AttributeSource for User {
        fn values(&self, attr: &Attribute) -> Vec<String> {
            match attr {
                Attribute::UserId if !self.0.is_empty() => vec![self.0.into()],
                Attribute::Groups => vec![self.1.into()],
                _ => vec![],
            }
        }
    }

    fn limiter(json: &str) -> Limiter {
        Limiter::new(parse::<RateLimitConfig>(json.as_bytes()).unwrap().compile())
    }

    const PER_USER: &str = r#"{"limits":[{"name":"per-user","rates":[{"limit":3,"window":"10s"}],"counters":["identity.userid"]}]}"#;

    #[test]
    fn exactly_n_per_window_per_counter() {
        let l = limiter(PER_USER);
        let s = MemoryStore::default();
        let now = 1_000_000_000;
        for i in 0..3 {
            match l.check(&s, &User("alice", ""), now + i, None) {
                Outcome::Allowed { status, .. } => assert_eq!(status[0].remaining, 2 - i),
                o => panic!("{o:?}"),
            }
        }
        match l.check(&s, &User("alice", ""), now + 5, None) {
            Outcome::Limited {
                name,
                retry_after_secs,
                ..
            } => {
                assert_eq!(name, "per-user");
                assert_eq!(retry_after_secs, 10);
            }
            o => panic!("{o:?}"),
        }
        // Another user has their own counter; a request without a user id is not counted.
        assert!(matches!(
            l.check(&s, &User("bob", ""), now, None),
            Outcome::Allowed { .. }
        ));
        match l.check(&s, &User("", ""), now, None) {
            Outcome::Allowed { charges, .. } => assert!(charges.is_empty()),
            o => panic!("{o:?}"),
        }
        // The window boundary is exact: the last millisecond is still the old window.
        let window_end = (now / 10_000 + 1) * 10_000;
        assert!(matches!(
            l.check(&s, &User("alice", ""), window_end - 1, None),
            Outcome::Limited { .. }
        ));
        assert!(matches!(
            l.check(&s, &User("alice", ""), window_end, None),
            Outcome::Allowed { .. }
        ));
    }

    #[test]
    fn all_or_nothing_across_rates() {
        let l = limiter(
            r#"{"limits":[{"name":"a","rates":[{"limit":100,"window":"1m"}],"counters":["identity.userid"]},
                                     {"name":"b","rates":[{"limit":1,"window":"1m"}],"counters":["identity.userid"]}]}"#,
        );
        let s = MemoryStore::default();
        assert!(matches!(
            l.check(&s, &User("u", ""), 0, None),
            Outcome::Allowed { .. }
        ));
        assert!(matches!(
            l.check(&s, &User("u", ""), 1, None),
            Outcome::Limited { .. }
        ));
        // The rejected request's charge to `a` was rolled back.
        assert_eq!(read(&s, "ig-rl|a|0|60000|u", 0), 1);
    }

    #[test]
    fn when_conditions_select_limits() {
        let l = limiter(
            r#"{"limits":[{"name":"free","rates":[{"limit":1,"window":"1m"}],"counters":["identity.userid"],"when":[{"attribute":"identity.groups","eq":"free"}]}]}"#,
        );
        let s = MemoryStore::default();
        for _ in 0..5 {
            assert!(matches!(
                l.check(&s, &User("p", "premium"), 0, None),
                Outcome::Allowed { .. }
            ));
        }
        assert!(matches!(
            l.check(&s, &User("f", "free"), 0, None),
            Outcome::Allowed { .. }
        ));
        assert!(matches!(
            l.check(&s, &User("f", "free"), 0, None),
            Outcome::Limited { .. }
        ));
    }

    #[test]
    fn token_budget_charges_estimate_then_settles() {
        let l = limiter(
            r#"{"limits":[{"name":"tok","rates":[{"limit":1000,"window":"1h"}],"counters":["identity.userid"],"counts":"tokens"}]}"#,
        );
        let s = MemoryStore::default();
        let est = TokenEstimate {
            prompt: 100,
            completion_cap: 300,
        };
        let Outcome::Allowed { charges, status } = l.check(&s, &User("u", ""), 0, Some(est)) else {
            panic!()
        };
        assert_eq!(status[0].remaining, 600);
        let Outcome::Allowed { charges: c2, .. } = l.check(&s, &User("u", ""), 0, Some(est)) else {
            panic!()
        };
        // A third concurrent request does not fit the reserved budget: no unbounded overshoot.
        assert!(matches!(
            l.check(&s, &User("u", ""), 0, Some(est)),
            Outcome::Limited { .. }
        ));
        // Real usage was lower: the budget comes back.
        Limiter::settle(
            &s,
            &charges,
            Usage {
                prompt: 90,
                completion: 10,
            },
        );
        Limiter::settle(
            &s,
            &c2,
            Usage {
                prompt: 90,
                completion: 10,
            },
        );
        assert_eq!(read(&s, "ig-rl|tok|0|3600000|u", 0), 200);
        assert!(matches!(
            l.check(&s, &User("u", ""), 0, Some(est)),
            Outcome::Allowed { .. }
        ));
    }

    #[test]
    fn overshoot_is_bounded_by_estimate_error() {
        // 50 requests in flight, each underestimating its prompt by 10 tokens.
        let l = limiter(
            r#"{"limits":[{"name":"tok","rates":[{"limit":10000,"window":"1h"}],"counters":["identity.userid"],"counts":"tokens"}]}"#,
        );
        let s = MemoryStore::default();
        let est = TokenEstimate {
            prompt: 90,
            completion_cap: 110,
        };
        let mut in_flight = Vec::new();
        while let Outcome::Allowed { charges, .. } = l.check(&s, &User("u", ""), 0, Some(est)) {
            in_flight.push(charges);
        }
        assert_eq!(in_flight.len(), 50);
        for c in &in_flight {
            Limiter::settle(
                &s,
                c,
                Usage {
                    prompt: 100,
                    completion: 110,
                },
            );
        }
        let total = read(&s, "ig-rl|tok|0|3600000|u", 0);
        assert_eq!(total, 10_500);
        assert!(total - 10_000 <= 50 * 10);
    }

    #[test]
    fn global_calls_group_descriptors_by_hits() {
        let l = limiter(
            r#"{"limits":[
            {"name":"req","rates":[{"limit":10,"window":"1m"}],"counters":["identity.userid","identity.groups"]},
            {"name":"req2","rates":[{"limit":10,"window":"1m"}],"counters":["identity.userid"]},
            {"name":"tok","rates":[{"limit":1000,"window":"1h"}],"counters":["identity.userid"],"counts":"tokens"},
            {"name":"anon","rates":[{"limit":1,"window":"1m"}],"counters":["request.path"]}]}"#,
        );
        let est = TokenEstimate {
            prompt: 10,
            completion_cap: 20,
        };
        let calls = l.global_calls(&User("u", "free"), Some(est));
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].hits, 1);
        assert_eq!(
            calls[0].descriptors,
            vec![
                vec![
                    ("limit".into(), "req".into()),
                    ("k0".into(), "u".into()),
                    ("k1".into(), "free".into())
                ],
                vec![("limit".into(), "req2".into()), ("k0".into(), "u".into())],
            ]
        );
        assert!(calls[1].tokens && calls[1].hits == 30);
        assert_eq!(
            calls[1].actual(Usage {
                prompt: 5,
                completion: 7
            }),
            12
        );
        // Without an estimate, token limits are not called.
        assert_eq!(l.global_calls(&User("u", "free"), None).len(), 1);
    }

    #[test]
    fn long_counter_values_are_hashed() {
        let l = limiter(
            r#"{"limits":[{"name":"h","rates":[{"limit":1,"window":"1m"}],"counters":["identity.userid"]}]}"#,
        );
        let s = MemoryStore::default();
        let long: &'static str = Box::leak("x".repeat(10_000).into_boxed_str());
        let Outcome::Allowed { charges, .. } = l.check(&s, &User(long, ""), 0, None) else {
            panic!()
        };
        assert!(charges[0].key.len() < 80, "{}", charges[0].key);
    }
}
