//! RateLimitPolicy (request limits) and TokenRateLimitPolicy (LLM-token limits) → the
//! `ratelimit` plugin's configuration.

use crate::cel::{compile_counter, compile_predicate, Predicate};
use crate::error::{Error, Result};
use crate::resources::{Bundle, LimitSpec, RateLimitSpec};
use crate::topology::{layer, Attachment, Entry, Topology};
use infergate_core::ratelimit::config::LimitConfig;
use infergate_core::ratelimit::window::parse_window_ms;
use serde::{Deserialize, Serialize};

pub use infergate_core::ratelimit::config::{Counts, RateConfig as Rate};

/// One emitted limit: the plugin's own [`LimitConfig`] with the translator's compiled
/// conditions. Its name is the Kuadrant limit name (`<limit>-<policy>` when two policies use
/// one name).
pub type Limit = LimitConfig<Predicate>;

/// The plugin configuration we emit: its `limits` (the plugin's other fields keep their
/// defaults, or are set by the platform plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitPluginConfig {
    /// The limits.
    pub limits: Vec<Limit>,
}

type Item = (LimitSpec, Counts);

/// Translates every RateLimitPolicy and TokenRateLimitPolicy attached to the Gateway;
/// `None` when there is none.
pub fn translate(bundle: &Bundle, topo: &Topology) -> Result<Option<RateLimitPluginConfig>> {
    let mut attachments = Vec::new();
    for (kind, counts) in [
        ("RateLimitPolicy", Counts::Requests),
        ("TokenRateLimitPolicy", Counts::Tokens),
    ] {
        let mut policies = Vec::new();
        for p in bundle.of_kind(kind) {
            let spec: RateLimitSpec = p.spec()?;
            let tag = |m: std::collections::BTreeMap<String, LimitSpec>| {
                m.into_iter().map(|(k, v)| (k, (v, counts))).collect()
            };
            let l = layer::<Item>(
                p,
                spec.limits.map(tag),
                "limits",
                &spec.when,
                spec.defaults.map(|d| (d.strategy, tag(d.limits), d.when)),
                spec.overrides.map(|o| (o.strategy, tag(o.limits), o.when)),
                "limits",
            )?;
            policies.push((p, spec.target_ref, l));
        }
        // Each kind resolves on its own (a RateLimitPolicy and a TokenRateLimitPolicy on one
        // target both apply).
        if !policies.is_empty() {
            attachments.push(Attachment::new(topo, policies)?);
        }
    }
    if attachments.is_empty() {
        return Ok(None);
    }
    // Distinct limits (by origin) and the units each one is effective on.
    let mut distinct: Vec<(Entry<Item>, Vec<usize>)> = Vec::new();
    for att in &attachments {
        for u in 0..topo.units.len() {
            for (_, e) in att.effective(u) {
                match distinct.iter_mut().find(|(d, _)| d.origin == e.origin) {
                    Some((_, units)) => units.push(u),
                    None => distinct.push((e, vec![u])),
                }
            }
        }
    }
    let mut limits: Vec<Limit> = Vec::new();
    for (e, units) in &distinct {
        let f = &e.origin.field;
        let err = |field: String, m: String| Error::new(e.origin.policy.clone(), field, m);
        let (spec, counts) = &e.value;
        if spec.rates.is_empty() {
            return Err(err(
                format!("{f}.rates"),
                "at least one rate is required".into(),
            ));
        }
        let mut rates = Vec::new();
        for (i, r) in spec.rates.iter().enumerate() {
            parse_window_ms(&r.window).map_err(|m| err(format!("{f}.rates[{i}].window"), m))?;
            rates.push(Rate {
                limit: r.limit,
                window: r.window.clone(),
            });
        }
        let counters = spec
            .counters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                compile_counter(&c.expression)
                    .map_err(|m| err(format!("{f}.counters[{i}].expression"), m))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut when = Vec::new();
        for (field, pred) in &e.when {
            when.extend(compile_predicate(pred).map_err(|m| err(field.clone(), m))?);
        }
        for (i, w) in spec.when.iter().enumerate() {
            when.extend(
                compile_predicate(&w.predicate)
                    .map_err(|m| err(format!("{f}.when[{i}].predicate"), m))?,
            );
        }
        if units.len() < topo.units.len() {
            match units.as_slice() {
                [u] => match &topo.units[*u].scope {
                    Ok(preds) => when.splice(0..0, preds.iter().cloned()).for_each(drop),
                    Err(why) => {
                        return Err(err(
                            "spec.targetRef".into(),
                            format!("limit applies only to {}, whose matches cannot be turned into conditions: {why}", topo.units[*u].describe()),
                        ))
                    }
                },
                _ => {
                    return Err(err(
                        "spec.targetRef".into(),
                        format!(
                            "limit applies to {} of the gateway's {} route rules; that set cannot be expressed as one AND of conditions (split the HTTPRoute or target the Gateway)",
                            units.len(),
                            topo.units.len()
                        ),
                    ))
                }
            }
        }
        let base = e
            .origin
            .field
            .rsplit('.')
            .next()
            .unwrap_or("limit")
            .to_string();
        let mut name = base.clone();
        if limits.iter().any(|l| l.name == name) {
            name = format!("{base}-{}", e.origin.policy_name);
        }
        let mut n = 2;
        while limits.iter().any(|l| l.name == name) {
            name = format!("{base}-{}-{n}", e.origin.policy_name);
            n += 1;
        }
        limits.push(Limit {
            name,
            rates,
            counters,
            when,
            counts: *counts,
            prompt_weight: 1,
            completion_weight: 1,
        });
    }
    Ok(Some(RateLimitPluginConfig { limits }))
}
