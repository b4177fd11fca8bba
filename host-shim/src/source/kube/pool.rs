//! What host-shim reads from an `InferencePool`: which pods (a label selector) and which
//! ports. Both API versions the guide's stacks use are accepted verbatim:
//!
//! | group / version | selector | ports |
//! |---|---|---|
//! | `inference.networking.k8s.io/v1` | `spec.selector.matchLabels` | `spec.targetPorts[].number` (1–8) |
//! | `inference.networking.x-k8s.io/v1alpha2` | `spec.selector` (a plain map) | `spec.targetPortNumber` |

use serde_json::Value;
use std::collections::BTreeMap;
use thiserror::Error;

/// The most target ports a pool may list (GIE's `MaxItems` on `spec.targetPorts`).
pub const MAX_TARGET_PORTS: usize = 8;

/// A pool spec (or an `--endpoint-selector` / `--endpoint-target-ports` pair) that cannot be
/// used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// The offending field (`spec.targetPorts[1].number`, `--endpoint-selector`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

/// Which pods are endpoints, and on which ports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolSpec {
    /// Labels a pod must carry (all of them, with these values).
    pub selector: BTreeMap<String, String>,
    /// Every `podIP:port` for these ports is its own endpoint; never empty, no duplicates.
    pub ports: Vec<u16>,
}

impl PoolSpec {
    /// Whether a pod with `labels` is selected.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    }

    /// The spec of EPP's selector mode: `--endpoint-selector` (`key=value` pairs, comma
    /// separated) and `--endpoint-target-ports` (numbers, comma separated).
    pub fn from_flags(selector: &str, ports: &str) -> Result<Self, SpecError> {
        let mut labels = BTreeMap::new();
        for pair in selector.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(err(
                    "--endpoint-selector",
                    format!("`{pair}` is not key=value (only key=value pairs are supported)"),
                ));
            };
            let (k, v) = (k.trim(), v.trim());
            check_label("--endpoint-selector", k, v)?;
            labels.insert(k.to_string(), v.to_string());
        }
        if labels.is_empty() {
            return Err(err(
                "--endpoint-selector",
                "empty: it would select every pod in the namespace",
            ));
        }
        let mut out = Vec::new();
        for item in ports.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let n: i64 = item.parse().map_err(|_| {
                err(
                    "--endpoint-target-ports",
                    format!("`{item}` is not a port number"),
                )
            })?;
            push_port(&mut out, n, "--endpoint-target-ports")?;
        }
        check_port_count(&out, "--endpoint-target-ports")?;
        Ok(Self {
            selector: labels,
            ports: out,
        })
    }
}

/// The InferencePool API a `--pool-group` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolApi {
    /// `inference.networking.k8s.io/v1`.
    V1,
    /// `inference.networking.x-k8s.io/v1alpha2`.
    V1Alpha2,
}

impl PoolApi {
    /// The API of `--pool-group`.
    pub fn for_group(group: &str) -> Result<Self, SpecError> {
        match group {
            "inference.networking.k8s.io" => Ok(Self::V1),
            "inference.networking.x-k8s.io" => Ok(Self::V1Alpha2),
            other => Err(err(
                "--pool-group",
                format!(
                    "unknown group `{other}` (inference.networking.k8s.io or inference.networking.x-k8s.io)"
                ),
            )),
        }
    }

    /// The API group.
    pub fn group(self) -> &'static str {
        match self {
            Self::V1 => "inference.networking.k8s.io",
            Self::V1Alpha2 => "inference.networking.x-k8s.io",
        }
    }

    /// The served version read.
    pub fn version(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V1Alpha2 => "v1alpha2",
        }
    }

    /// Reads the selector and ports of an InferencePool object (the API server's JSON).
    pub fn parse(self, pool: &Value) -> Result<PoolSpec, SpecError> {
        let spec = pool
            .get("spec")
            .filter(|s| s.is_object())
            .ok_or_else(|| err("spec", "missing"))?;
        let (selector, selector_field) = match self {
            Self::V1 => (
                spec.get("selector").and_then(|s| s.get("matchLabels")),
                "spec.selector.matchLabels",
            ),
            Self::V1Alpha2 => (spec.get("selector"), "spec.selector"),
        };
        let selector = parse_labels(selector, selector_field)?;
        let mut ports = Vec::new();
        match self {
            Self::V1 => {
                let list = spec
                    .get("targetPorts")
                    .and_then(Value::as_array)
                    .ok_or_else(|| err("spec.targetPorts", "missing or not a list"))?;
                for (i, p) in list.iter().enumerate() {
                    let field = format!("spec.targetPorts[{i}].number");
                    let n = p
                        .get("number")
                        .and_then(Value::as_i64)
                        .ok_or_else(|| err(&field, "missing or not an integer"))?;
                    push_port(&mut ports, n, &field)?;
                }
                check_port_count(&ports, "spec.targetPorts")?;
            }
            Self::V1Alpha2 => {
                let n = spec
                    .get("targetPortNumber")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| err("spec.targetPortNumber", "missing or not an integer"))?;
                push_port(&mut ports, n, "spec.targetPortNumber")?;
            }
        }
        Ok(PoolSpec { selector, ports })
    }
}

fn parse_labels(v: Option<&Value>, field: &str) -> Result<BTreeMap<String, String>, SpecError> {
    let map = v
        .and_then(Value::as_object)
        .ok_or_else(|| err(field, "missing or not a map of labels"))?;
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let v = v
            .as_str()
            .ok_or_else(|| err(format!("{field}.{k}"), "label value is not a string"))?;
        check_label(field, k, v)?;
        out.insert(k.clone(), v.to_string());
    }
    if out.is_empty() {
        return Err(err(
            field,
            "empty: it would select every pod in the namespace",
        ));
    }
    Ok(out)
}

fn check_label(field: &str, key: &str, value: &str) -> Result<(), SpecError> {
    if key.is_empty() || key.len() > 317 || value.len() > 63 {
        return Err(err(
            field,
            format!(
                "`{key}={value}` is not a valid label (key 1–317 bytes incl. prefix, value ≤ 63)"
            ),
        ));
    }
    Ok(())
}

fn push_port(ports: &mut Vec<u16>, n: i64, field: &str) -> Result<(), SpecError> {
    let port = u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| err(field, format!("{n} is not a port (1–65535)")))?;
    if ports.contains(&port) {
        return Err(err(field, format!("port {port} listed twice")));
    }
    ports.push(port);
    Ok(())
}

fn check_port_count(ports: &[u16], field: &str) -> Result<(), SpecError> {
    if ports.is_empty() || ports.len() > MAX_TARGET_PORTS {
        return Err(err(
            field,
            format!("{} ports; 1 to {MAX_TARGET_PORTS} are allowed", ports.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v1_pool_reads_match_labels_and_every_target_port() {
        let pool = json!({"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"selector": {"matchLabels": {"app": "vllm", "tier": "gpu"}},
                     "targetPorts": [{"number": 8000}, {"number": 8001}],
                     "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}});
        let spec = PoolApi::V1.parse(&pool).unwrap();
        assert_eq!(spec.ports, vec![8000, 8001]);
        assert_eq!(spec.selector.len(), 2);
        let mut labels = spec.selector.clone();
        labels.insert("pod-template-hash".into(), "x".into());
        assert!(spec.selects(&labels));
        labels.insert("tier".into(), "cpu".into());
        assert!(!spec.selects(&labels));
    }

    #[test]
    fn v1alpha2_pool_reads_plain_selector_and_target_port_number() {
        let pool = json!({"spec": {"selector": {"app": "vllm"}, "targetPortNumber": 8000,
            "extensionRef": {"name": "epp"}}});
        let spec = PoolApi::V1Alpha2.parse(&pool).unwrap();
        assert_eq!(spec.ports, vec![8000]);
        assert_eq!(spec.selector["app"], "vllm");
        // The v1 reader does not accept the v1alpha2 shape, and names the field.
        let e = PoolApi::V1.parse(&pool).unwrap_err();
        assert_eq!(e.field, "spec.selector.matchLabels");
    }

    #[test]
    fn bad_pools_name_the_field() {
        let cases = [
            (json!({}), "spec"),
            (
                json!({"spec": {"selector": {"matchLabels": {}}, "targetPorts": [{"number": 1}]}}),
                "spec.selector.matchLabels",
            ),
            (
                json!({"spec": {"selector": {"matchLabels": {"a": 1}}, "targetPorts": [{"number": 1}]}}),
                "spec.selector.matchLabels.a",
            ),
            (
                json!({"spec": {"selector": {"matchLabels": {"a": "b"}}}}),
                "spec.targetPorts",
            ),
            (
                json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "targetPorts": []}}),
                "spec.targetPorts",
            ),
            (
                json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "targetPorts": [{"number": 80}, {"number": 0}]}}),
                "spec.targetPorts[1].number",
            ),
            (
                json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "targetPorts": [{"number": 70000}]}}),
                "spec.targetPorts[0].number",
            ),
            (
                json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "targetPorts": [{"number": "80"}]}}),
                "spec.targetPorts[0].number",
            ),
            (
                json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "targetPorts": [{"number": 80}, {"number": 80}]}}),
                "spec.targetPorts[1].number",
            ),
        ];
        for (pool, field) in cases {
            let e = PoolApi::V1.parse(&pool).unwrap_err();
            assert_eq!(e.field, field, "{pool}: {e}");
        }
        let nine: Vec<_> = (1..=9).map(|n| json!({"number": 8000 + n})).collect();
        let e = PoolApi::V1
            .parse(&json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "targetPorts": nine}}))
            .unwrap_err();
        assert_eq!(e.field, "spec.targetPorts");
        let e = PoolApi::V1Alpha2
            .parse(&json!({"spec": {"selector": {"a": "b"}, "targetPortNumber": -1}}))
            .unwrap_err();
        assert_eq!(e.field, "spec.targetPortNumber");
    }

    #[test]
    fn groups_map_to_versions() {
        assert_eq!(
            PoolApi::for_group("inference.networking.k8s.io").unwrap(),
            PoolApi::V1
        );
        assert_eq!(
            PoolApi::for_group("inference.networking.x-k8s.io")
                .unwrap()
                .version(),
            "v1alpha2"
        );
        assert_eq!(
            PoolApi::for_group("apps").unwrap_err().field,
            "--pool-group"
        );
    }

    #[test]
    fn selector_flags_parse_like_the_epp() {
        let s = PoolSpec::from_flags("app=vllm,env=prod", "3000,3001,3002").unwrap();
        assert_eq!(s.ports, vec![3000, 3001, 3002]);
        assert_eq!(s.selector["env"], "prod");
        assert_eq!(
            PoolSpec::from_flags("app", "80").unwrap_err().field,
            "--endpoint-selector"
        );
        assert_eq!(
            PoolSpec::from_flags("", "80").unwrap_err().field,
            "--endpoint-selector"
        );
        assert_eq!(
            PoolSpec::from_flags("a=b", "").unwrap_err().field,
            "--endpoint-target-ports"
        );
        assert_eq!(
            PoolSpec::from_flags("a=b", "http").unwrap_err().field,
            "--endpoint-target-ports"
        );
        assert_eq!(
            PoolSpec::from_flags("a=b", "1,2,3,4,5,6,7,8,9")
                .unwrap_err()
                .field,
            "--endpoint-target-ports"
        );
    }
}
