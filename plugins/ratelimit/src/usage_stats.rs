//! Per-identity and per-model token usage as Envoy stats, with bounded cardinality: the
//! configured names, up to `maxTracked` more per worker, and `_other` for the rest.
//! Stats: `wasmcustom.infergate.usage.{user,model}.<name>.{prompt,completion}_tokens`.

use infergate_core::ratelimit::config::{stat_name_part, UsageStatsConfig};
use infergate_core::ratelimit::decision::Usage;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::cell::RefCell;
use std::collections::HashMap;

/// Prompt and completion counters of one name.
#[derive(Clone, Copy)]
struct Pair {
    prompt: u32,
    completion: u32,
}

/// The usage counters of one VM (one Envoy worker).
pub struct UsageStats {
    config: UsageStatsConfig,
    defined: RefCell<HashMap<(&'static str, String), Pair>>,
    extra: RefCell<usize>,
}

impl UsageStats {
    /// Counters for `config`.
    pub fn new(config: UsageStatsConfig) -> Self {
        Self {
            config,
            defined: RefCell::new(HashMap::new()),
            extra: RefCell::new(0),
        }
    }

    fn pair(&self, kind: &'static str, name: &str, listed: bool) -> Option<Pair> {
        let key = (kind, name.to_string());
        if let Some(p) = self.defined.borrow().get(&key) {
            return Some(*p);
        }
        let name = if listed || *self.extra.borrow() < self.config.max_tracked {
            if !listed {
                *self.extra.borrow_mut() += 1;
            }
            stat_name_part(name)
        } else {
            "_other".to_string()
        };
        let define = |what: &str| {
            hostcalls::define_metric(
                MetricType::Counter,
                &format!("infergate.usage.{kind}.{name}.{what}_tokens"),
            )
            .ok()
        };
        let pair = Pair {
            prompt: define("prompt")?,
            completion: define("completion")?,
        };
        if name != "_other" {
            self.defined.borrow_mut().insert(key, pair);
        }
        Some(pair)
    }

    /// Adds one request's usage to its user's and model's counters.
    pub fn record(&self, user: Option<&str>, model: Option<&str>, usage: Usage) {
        let entries = [
            ("user", user, &self.config.users),
            ("model", model, &self.config.models),
        ];
        for (kind, name, listed) in entries {
            let Some(name) = name else { continue };
            let is_listed = listed.iter().any(|l| l == name);
            if let Some(p) = self.pair(kind, name, is_listed) {
                let _ = hostcalls::increment_metric(
                    p.prompt,
                    i64::try_from(usage.prompt).unwrap_or(i64::MAX),
                );
                let _ = hostcalls::increment_metric(
                    p.completion,
                    i64::try_from(usage.completion).unwrap_or(i64::MAX),
                );
            }
        }
    }
}
