//! The Gateway being rendered, the HTTPRoute rules attached to it, and which policies apply
//! to which rule: Kuadrant's `targetRef`, `defaults` and `overrides`.
//!
//! The plugins run once per listener filter chain, so a policy attached to one HTTPRoute rule
//! is scoped by turning that rule's matches (path, method, headers, the route's hostnames)
//! into predicates. Each attached rule is a [`Unit`]; a gateway without routes is one unit
//! covering everything.
//!
//! Resolution (Kuadrant's documented hierarchy), per unit, between the Gateway-level policy
//! `G` and the HTTPRoute-level policy `R` of the same kind:
//! - only one of them: it applies;
//! - `G` has `defaults` (explicit or implicit): `R` overrides them — `atomic`: `R` as a
//!   whole; `merge`: `R`'s rules plus `G`'s rules whose names `R` does not use;
//! - `G` has `overrides`: `G` wins — `atomic`: `G` as a whole; `merge`: `G`'s rules plus `R`'s
//!   rules whose names `G` does not use;
//! - `R` with `overrides` over `G` with `defaults`: `R`.
//!
//! Two policies of one kind on the same target are an error (Kuadrant enforces only the
//! oldest and marks the other conflicted; the translator refuses to guess).

use crate::cel::Predicate;
use crate::error::{Error, Result};
use crate::resources::{str_at, Bundle, Object, Strategy, TargetRef, WhenPredicate};
use serde_json::Value;
use std::collections::BTreeMap;

/// One HTTPRoute rule attached to the Gateway (or the whole Gateway when it has no routes).
#[derive(Debug, Clone)]
pub struct Unit {
    /// `namespace/name` of the HTTPRoute (empty for the whole-gateway unit).
    pub route: String,
    /// Rule index.
    pub rule: usize,
    /// Rule `name` (what `sectionName` refers to).
    pub rule_name: Option<String>,
    /// Predicates selecting this rule's requests, or why they cannot be expressed.
    pub scope: std::result::Result<Vec<Predicate>, String>,
    /// `(prefix, replacement)` of a `URLRewrite` `ReplacePrefixMatch` filter.
    pub rewrite: Option<(String, String)>,
}

impl Unit {
    /// How errors name it.
    pub fn describe(&self) -> String {
        if self.route.is_empty() {
            "the gateway".into()
        } else {
            match &self.rule_name {
                Some(n) => format!("HTTPRoute {} rule `{n}`", self.route),
                None => format!("HTTPRoute {} rule {}", self.route, self.rule),
            }
        }
    }
}

/// The Gateway and its attached rules.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The Gateway object.
    pub gateway: Object,
    /// Attached rules.
    pub units: Vec<Unit>,
}

impl Topology {
    /// Picks the Gateway (`name` or `namespace/name`; the only one when `None`) and collects
    /// the HTTPRoute rules attached to it.
    pub fn build(bundle: &Bundle, name: Option<&str>) -> Result<Self> {
        let gateways: Vec<&Object> = bundle
            .of_kind("Gateway")
            .filter(|g| match name {
                None => true,
                Some(n) => match n.split_once('/') {
                    Some((ns, nm)) => g.meta.ns() == ns && g.meta.name == nm,
                    None => g.meta.name == n,
                },
            })
            .collect();
        let gateway = match gateways.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(Error::new(
                    "input",
                    "Gateway",
                    match name {
                        Some(n) => format!("no Gateway `{n}` in the input"),
                        None => {
                            "the input holds no Gateway; add the Gateway the policies target".into()
                        }
                    },
                ))
            }
            _ => {
                return Err(Error::new(
                    "input",
                    "Gateway",
                    "several Gateways in the input: choose one with --gateway NAME",
                ))
            }
        };
        let mut units = Vec::new();
        for route in bundle.of_kind("HTTPRoute") {
            if !attached(route, &gateway) {
                continue;
            }
            let id = format!("{}/{}", route.meta.ns(), route.meta.name);
            let hostnames: Vec<String> = route.doc["spec"]["hostnames"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|h| h.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let rules = route.doc["spec"]["rules"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for (i, rule) in rules.iter().enumerate() {
                units.push(Unit {
                    route: id.clone(),
                    rule: i,
                    rule_name: str_at(rule, "/name").map(str::to_string),
                    scope: scope_of(rule, &hostnames),
                    rewrite: rewrite_of(rule),
                });
            }
        }
        if units.is_empty() {
            units.push(Unit {
                route: String::new(),
                rule: 0,
                rule_name: None,
                scope: Ok(Vec::new()),
                rewrite: None,
            });
        }
        Ok(Self { gateway, units })
    }

    /// The units a policy's `targetRef` covers; `None` when it targets another Gateway (or a
    /// route not attached to this one).
    pub fn covered(&self, policy: &Object, target: &TargetRef) -> Result<Option<Vec<usize>>> {
        let field = |f: &str| format!("spec.targetRef.{f}");
        if target.group != "gateway.networking.k8s.io" {
            return Err(Error::new(
                policy.id(),
                field("group"),
                format!(
                    "`{}`: only gateway.networking.k8s.io targets are supported",
                    target.group
                ),
            ));
        }
        let ns = policy.meta.ns();
        match target.kind.as_str() {
            "Gateway" => {
                if target.name != self.gateway.meta.name || ns != self.gateway.meta.ns() {
                    return Ok(None);
                }
                if let Some(s) = &target.section_name {
                    let listeners = self.gateway.doc["spec"]["listeners"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let names: Vec<&str> = listeners
                        .iter()
                        .filter_map(|l| str_at(l, "/name"))
                        .collect();
                    if !names.contains(&s.as_str()) {
                        return Err(Error::new(
                            policy.id(),
                            field("sectionName"),
                            format!("the Gateway has no listener `{s}`"),
                        ));
                    }
                    if names.len() != 1 {
                        return Err(Error::new(
                            policy.id(),
                            field("sectionName"),
                            "policies for one listener of a multi-listener Gateway are not supported: the plugins run in every listener's filter chain; target the Gateway or an HTTPRoute",
                        ));
                    }
                }
                Ok(Some((0..self.units.len()).collect()))
            }
            "HTTPRoute" => {
                let id = format!("{ns}/{}", target.name);
                let covered: Vec<usize> = self
                    .units
                    .iter()
                    .enumerate()
                    .filter(|(_, u)| u.route == id)
                    .filter(|(_, u)| match &target.section_name {
                        None => true,
                        Some(s) => u.rule_name.as_deref() == Some(s.as_str()),
                    })
                    .map(|(i, _)| i)
                    .collect();
                if covered.is_empty() {
                    if let Some(s) = &target.section_name {
                        if self.units.iter().any(|u| u.route == id) {
                            return Err(Error::new(
                                policy.id(),
                                field("sectionName"),
                                format!("HTTPRoute {id} has no rule named `{s}`"),
                            ));
                        }
                    }
                    return Ok(None);
                }
                Ok(Some(covered))
            }
            other => Err(Error::new(
                policy.id(),
                field("kind"),
                format!("`{other}`: only Gateway and HTTPRoute targets are supported"),
            )),
        }
    }
}

fn attached(route: &Object, gw: &Object) -> bool {
    route.doc["spec"]["parentRefs"]
        .as_array()
        .is_some_and(|refs| {
            refs.iter().any(|r| {
                let kind = str_at(r, "/kind").unwrap_or("Gateway");
                let ns = str_at(r, "/namespace").unwrap_or(route.meta.ns());
                kind == "Gateway"
                    && str_at(r, "/name") == Some(gw.meta.name.as_str())
                    && ns == gw.meta.ns()
            })
        })
}

fn scope_of(rule: &Value, hostnames: &[String]) -> std::result::Result<Vec<Predicate>, String> {
    let mut preds = Vec::new();
    match hostnames {
        [] => {}
        [h] if !h.starts_with('*') => preds.push(Predicate {
            attribute: "request.host".into(),
            eq: Some(h.clone()),
            ..Default::default()
        }),
        hs if hs.iter().all(|h| !h.starts_with('*')) => preds.push(Predicate {
            attribute: "request.host".into(),
            one_of: Some(hs.to_vec()),
            ..Default::default()
        }),
        _ => return Err("wildcard hostnames cannot be expressed".into()),
    }
    let matches = rule["matches"].as_array().cloned().unwrap_or_default();
    match matches.as_slice() {
        [] => {}
        [m] => {
            if let Some(p) = m.get("path") {
                let value = str_at(p, "/value").unwrap_or("/").to_string();
                match str_at(p, "/type").unwrap_or("PathPrefix") {
                    "PathPrefix" if value == "/" => {}
                    "PathPrefix" => preds.push(Predicate {
                        attribute: "request.path".into(),
                        starts_with: Some(value),
                        ..Default::default()
                    }),
                    "Exact" => preds.push(Predicate {
                        attribute: "request.path".into(),
                        eq: Some(value),
                        ..Default::default()
                    }),
                    other => return Err(format!("path match type `{other}` cannot be expressed")),
                }
            }
            if let Some(method) = str_at(m, "/method") {
                preds.push(Predicate {
                    attribute: "request.method".into(),
                    eq: Some(method.into()),
                    ..Default::default()
                });
            }
            for h in m["headers"].as_array().cloned().unwrap_or_default() {
                if str_at(&h, "/type").unwrap_or("Exact") != "Exact" {
                    return Err("only Exact header matches can be expressed".into());
                }
                let name = str_at(&h, "/name").unwrap_or("").to_ascii_lowercase();
                preds.push(Predicate {
                    attribute: format!("request.headers['{name}']"),
                    eq: str_at(&h, "/value").map(str::to_string),
                    ..Default::default()
                });
            }
            if m.get("queryParams").is_some() {
                return Err("query parameter matches cannot be expressed".into());
            }
        }
        _ => return Err(
            "a rule with several matches is an OR, which the plugins' conditions cannot express"
                .into(),
        ),
    }
    Ok(preds)
}

fn rewrite_of(rule: &Value) -> Option<(String, String)> {
    let prefix = rule["matches"][0]["path"]["value"].as_str()?;
    rule["filters"].as_array()?.iter().find_map(|f| {
        let r = f.get("urlRewrite")?.get("path")?;
        (str_at(r, "/type") == Some("ReplacePrefixMatch")).then(|| {
            (
                prefix.to_string(),
                str_at(r, "/replacePrefixMatch").unwrap_or("/").to_string(),
            )
        })
    })
}

/// Where a rule came from, for error messages and limit names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `Kind namespace/name` of the policy.
    pub policy: String,
    /// The policy's name.
    pub policy_name: String,
    /// Field path of the rule (`spec.defaults.limits.free`).
    pub field: String,
}

/// A rule with the policy-level `when` it inherits.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    /// The rule.
    pub value: T,
    /// Where it came from.
    pub origin: Origin,
    /// `(field, predicate)` of the policy-level conditions.
    pub when: Vec<(String, String)>,
}

/// One policy's rules as defaults or overrides.
#[derive(Debug, Clone)]
pub struct Layer<T> {
    /// `spec.overrides` was used.
    pub overrides: bool,
    /// Merge strategy.
    pub strategy: Strategy,
    /// Rules by name.
    pub rules: BTreeMap<String, Entry<T>>,
}

/// Reads a policy's `rules`/`defaults`/`overrides` (exactly one may be used).
#[allow(clippy::too_many_arguments)]
pub fn layer<T: Clone>(
    policy: &Object,
    implicit: Option<BTreeMap<String, T>>,
    implicit_field: &str,
    when: &[WhenPredicate],
    defaults: Option<(Strategy, BTreeMap<String, T>, Vec<WhenPredicate>)>,
    overrides: Option<(Strategy, BTreeMap<String, T>, Vec<WhenPredicate>)>,
    section: &str,
) -> Result<Layer<T>> {
    let used = usize::from(implicit.is_some())
        + usize::from(defaults.is_some())
        + usize::from(overrides.is_some());
    if used > 1 {
        return Err(Error::new(
            policy.id(),
            "spec",
            format!("set only one of `{implicit_field}`, `defaults` and `overrides`"),
        ));
    }
    let (is_over, strategy, rules, when, prefix) = if let Some((s, r, w)) = overrides {
        (true, s, r, w, format!("spec.overrides.{section}"))
    } else if let Some((s, r, w)) = defaults {
        (false, s, r, w, format!("spec.defaults.{section}"))
    } else {
        (
            false,
            Strategy::Atomic,
            implicit.unwrap_or_default(),
            when.to_vec(),
            format!("spec.{implicit_field}"),
        )
    };
    let when_field = if is_over {
        "spec.overrides.when"
    } else if prefix.starts_with("spec.defaults") {
        "spec.defaults.when"
    } else {
        "spec.when"
    };
    let when: Vec<(String, String)> = when
        .iter()
        .enumerate()
        .map(|(i, w)| (format!("{when_field}[{i}].predicate"), w.predicate.clone()))
        .collect();
    let rules = rules
        .into_iter()
        .map(|(name, value)| {
            let origin = Origin {
                policy: policy.id(),
                policy_name: policy.meta.name.clone(),
                field: format!("{prefix}.{name}"),
            };
            (
                name,
                Entry {
                    value,
                    origin,
                    when: when.clone(),
                },
            )
        })
        .collect();
    Ok(Layer {
        overrides: is_over,
        strategy,
        rules,
    })
}

/// Combines the Gateway-level and the route-level layer for one unit.
pub fn combine<T: Clone>(
    gw: Option<&Layer<T>>,
    route: Option<&Layer<T>>,
) -> BTreeMap<String, Entry<T>> {
    let union = |winner: &Layer<T>, other: &Layer<T>| {
        let mut out = other.rules.clone();
        out.retain(|k, _| !winner.rules.contains_key(k));
        out.extend(winner.rules.clone());
        out
    };
    match (gw, route) {
        (None, None) => BTreeMap::new(),
        (Some(g), None) => g.rules.clone(),
        (None, Some(r)) => r.rules.clone(),
        (Some(g), Some(r)) if g.overrides => match g.strategy {
            Strategy::Atomic => g.rules.clone(),
            Strategy::Merge => union(g, r),
        },
        (Some(g), Some(r)) if r.overrides => {
            let _ = g;
            r.rules.clone()
        }
        (Some(g), Some(r)) => match g.strategy {
            Strategy::Atomic => r.rules.clone(),
            Strategy::Merge => union(r, g),
        },
    }
}

/// Finds, for every unit, the Gateway-level and the route-level layer of one policy kind.
pub struct Attachment<T> {
    /// Per unit: (gateway layer index, route layer index) into `layers`.
    pub per_unit: Vec<(Option<usize>, Option<usize>)>,
    /// The layers.
    pub layers: Vec<Layer<T>>,
}

impl<T: Clone> Attachment<T> {
    /// Attaches `(policy, target, layer)` triples to the topology's units.
    pub fn new(topo: &Topology, policies: Vec<(&Object, TargetRef, Layer<T>)>) -> Result<Self> {
        let mut per_unit: Vec<(Option<usize>, Option<usize>)> =
            vec![(None, None); topo.units.len()];
        let mut owners: Vec<(Option<String>, Option<String>)> =
            vec![(None, None); topo.units.len()];
        let mut layers = Vec::new();
        for (policy, target, layer) in policies {
            let Some(units) = topo.covered(policy, &target)? else {
                continue;
            };
            let idx = layers.len();
            layers.push(layer);
            let gateway_level = target.kind == "Gateway";
            for u in units {
                let (slot, owner) = if gateway_level {
                    (&mut per_unit[u].0, &mut owners[u].0)
                } else {
                    (&mut per_unit[u].1, &mut owners[u].1)
                };
                if let Some(other) = owner {
                    return Err(Error::new(
                        policy.id(),
                        "spec.targetRef",
                        format!(
                            "{} is already targeted by {other}; Kuadrant enforces only one policy of a kind per target — remove or merge one",
                            topo.units[u].describe()
                        ),
                    ));
                }
                *slot = Some(idx);
                *owner = Some(policy.id());
            }
        }
        Ok(Self { per_unit, layers })
    }

    /// The effective rules of unit `u`.
    pub fn effective(&self, u: usize) -> BTreeMap<String, Entry<T>> {
        let (g, r) = self.per_unit[u];
        combine(g.map(|i| &self.layers[i]), r.map(|i| &self.layers[i]))
    }
}
