//! The `flowControl` section of an `EndpointPickerConfig` (and the `flowControl` feature gate),
//! read with upstream GIE's field names where they fit.
//!
//! ```yaml
//! featureGates: [flowControl]          # or `flowControl=false` to turn a present section off
//! flowControl:
//!   maxRequests: 1024                  # infergate: queued requests at most (0: never queue, answer at once)
//!   maxBytes: 64Mi                     # GIE: queued request bytes at most (Kubernetes quantity)
//!   defaultRequestTTL: 5s              # GIE: longest wait in the queue
//!   defaultPriorityBand: {maxBytes: 32Mi}
//!   priorityBands:                     # GIE: per priority; sheddable requests have priority -1, others 0
//!   - {priority: -1, maxBytes: 8Mi, maxRequests: 64}
//!   queueFullStatus: 429               # infergate: the answer when the queue is full (429 or 503)
//!   timeoutStatus: 503                 # infergate: the answer when the TTL ran out (429 or 503)
//!   retryAfterSeconds: 1               # infergate: the answers' `Retry-After`
//! ```
//!
//! Flow control is on when the gate is listed or the section is present (unless the gate says
//! `flowControl=false` or the section `enabled: false`). Off — the default, as in upstream's
//! releases — a pick never waits: a sheddable request is answered 429 when every endpoint is
//! saturated, any other goes to the best saturated one and waits in the engine's own queue.
//! Fields this module does not know (`fairnessPolicyRef`, `orderingPolicyRef`, and any other)
//! are accepted and ignored, as the whole section was before.

use infergate_core::affinity::MAX_SHIM_TIMEOUT_MS;
use infergate_core::config::ConfigError;
use serde::Deserialize;
use std::time::Duration;

/// The feature gate name upstream uses.
pub const FEATURE_GATE: &str = "flowControl";
/// Queued requests at most, by default.
pub const DEFAULT_MAX_REQUESTS: usize = 1024;
/// Longest wait in the queue, by default.
pub const DEFAULT_REQUEST_TTL: Duration = Duration::from_secs(5);
/// Time the affinity plugin's pick callout allows beyond the queue TTL (the pick itself and the
/// way back through Envoy), so the queue's own answer always arrives before the callout gives up.
pub const CALLOUT_MARGIN_MS: u64 = 500;
/// The priority of a sheddable request (upstream: negative priorities are sheddable).
pub const SHEDDABLE_PRIORITY: i32 = -1;
/// The priority of any other request.
pub const DEFAULT_PRIORITY: i32 = 0;

/// Limits of one priority band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BandLimits {
    /// The band's priority (higher dispatches first).
    pub priority: i32,
    /// Queued bytes at most in this band.
    pub max_bytes: Option<u64>,
    /// Queued requests at most in this band.
    pub max_requests: Option<usize>,
}

/// Flow control, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowControlConfig {
    /// Whether picks may wait in the queue.
    pub enabled: bool,
    /// Queued requests at most (all bands); 0 answers at once when every endpoint is saturated.
    pub max_requests: usize,
    /// Queued bytes at most (all bands).
    pub max_bytes: Option<u64>,
    /// Longest wait in the queue.
    pub request_ttl: Duration,
    /// Bands configured explicitly.
    pub bands: Vec<BandLimits>,
    /// Limits of bands not listed (`defaultPriorityBand`).
    pub default_band: BandLimits,
    /// Status when the queue is full (429 or 503).
    pub queue_full_status: u16,
    /// Status when the TTL ran out (429 or 503).
    pub timeout_status: u16,
    /// `Retry-After` seconds of every refusal.
    pub retry_after_secs: u64,
}

impl Default for FlowControlConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_requests: DEFAULT_MAX_REQUESTS,
            max_bytes: None,
            request_ttl: DEFAULT_REQUEST_TTL,
            bands: Vec::new(),
            default_band: BandLimits::default(),
            queue_full_status: 429,
            timeout_status: 503,
            retry_after_secs: 1,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFlowControl {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    max_requests: Option<u64>,
    #[serde(default)]
    max_bytes: Option<serde_yaml::Value>,
    #[serde(default, rename = "defaultRequestTTL")]
    default_request_ttl: Option<String>,
    #[serde(default)]
    default_priority_band: Option<RawBand>,
    #[serde(default)]
    priority_bands: Vec<RawBand>,
    #[serde(default)]
    queue_full_status: Option<u16>,
    #[serde(default)]
    timeout_status: Option<u16>,
    #[serde(default)]
    retry_after_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBand {
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    max_bytes: Option<serde_yaml::Value>,
    #[serde(default)]
    max_requests: Option<u64>,
}

impl FlowControlConfig {
    /// Reads the `featureGates` and `flowControl` members of an `EndpointPickerConfig`.
    pub fn from_epp(
        feature_gates: Option<&serde_yaml::Value>,
        section: Option<&serde_yaml::Value>,
    ) -> Result<Self, ConfigError> {
        let gate = gate(feature_gates)?;
        let mut cfg = Self::default();
        let Some(section) = section.filter(|v| !v.is_null()) else {
            cfg.enabled = gate.unwrap_or(false);
            return Ok(cfg);
        };
        let raw: RawFlowControl =
            serde_path_to_error::deserialize(section.clone()).map_err(|e| {
                let path = e.path().to_string();
                let path = if path.is_empty() || path == "?" || path == "." {
                    "flowControl".to_string()
                } else {
                    format!("flowControl.{path}")
                };
                ConfigError::new(path, e.into_inner().to_string())
            })?;
        cfg.enabled = gate.unwrap_or(raw.enabled.unwrap_or(true));
        if let Some(n) = raw.max_requests {
            cfg.max_requests = usize::try_from(n).map_err(|_| {
                ConfigError::new("flowControl.maxRequests", "is larger than this host allows")
            })?;
        }
        cfg.max_bytes = quantity_field(raw.max_bytes.as_ref(), "flowControl.maxBytes")?;
        if let Some(d) = &raw.default_request_ttl {
            cfg.request_ttl = crate::scheduler::config::parse_duration(d)
                .map_err(|m| ConfigError::new("flowControl.defaultRequestTTL", m))?;
        }
        if let Some(b) = &raw.default_priority_band {
            cfg.default_band = band(b, "flowControl.defaultPriorityBand")?;
        }
        for (i, b) in raw.priority_bands.iter().enumerate() {
            let path = format!("flowControl.priorityBands[{i}]");
            let limits = band(b, &path)?;
            if cfg.bands.iter().any(|x| x.priority == limits.priority) {
                return Err(ConfigError::new(
                    format!("{path}.priority"),
                    format!("priority {} is configured twice", limits.priority),
                ));
            }
            cfg.bands.push(limits);
        }
        if let Some(s) = raw.queue_full_status {
            cfg.queue_full_status = status(s, "flowControl.queueFullStatus")?;
        }
        if let Some(s) = raw.timeout_status {
            cfg.timeout_status = status(s, "flowControl.timeoutStatus")?;
        }
        if let Some(s) = raw.retry_after_seconds {
            if !(1..=3600).contains(&s) {
                return Err(ConfigError::new(
                    "flowControl.retryAfterSeconds",
                    "must be between 1 and 3600",
                ));
            }
            cfg.retry_after_secs = s;
        }
        Ok(cfg)
    }

    /// The limits of the band of `priority`.
    pub fn band(&self, priority: i32) -> BandLimits {
        self.bands
            .iter()
            .find(|b| b.priority == priority)
            .copied()
            .unwrap_or(BandLimits {
                priority,
                ..self.default_band
            })
    }

    /// Checks that a pick callout of `callout_ms` (the affinity plugin's `hostShim.timeoutMs`)
    /// outlasts the queue: a request must get the queue's answer before its caller gives up,
    /// else the caller falls back to routing without host-shim and the queue bound means
    /// nothing. The error names `flowControl.defaultRequestTTL`.
    pub fn check_callout(&self, callout_ms: u64) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        let ttl = self.request_ttl.as_millis();
        if ttl + u128::from(CALLOUT_MARGIN_MS) > u128::from(callout_ms) {
            return Err(ConfigError::new(
                "flowControl.defaultRequestTTL",
                format!(
                    "{ttl} ms of queueing needs a pick callout timeout (hostShim.timeoutMs) of at \
                     least {} ms; it is {callout_ms} ms",
                    ttl + u128::from(CALLOUT_MARGIN_MS)
                ),
            ));
        }
        Ok(())
    }

    /// The pick callout timeout (`hostShim.timeoutMs`) the affinity plugin needs with this
    /// configuration: `None` when flow control is off (the plugin's default then fits).
    pub fn callout_ms(&self) -> Option<u64> {
        self.enabled.then(|| {
            u64::try_from(self.request_ttl.as_millis())
                .unwrap_or(u64::MAX)
                .saturating_add(CALLOUT_MARGIN_MS)
        })
    }

    /// [`Self::callout_ms`], refused (naming `flowControl.defaultRequestTTL`) when it is longer
    /// than the affinity plugin accepts.
    pub fn plugin_callout_ms(&self) -> Result<Option<u64>, ConfigError> {
        match self.callout_ms() {
            Some(ms) if ms > MAX_SHIM_TIMEOUT_MS => Err(ConfigError::new(
                "flowControl.defaultRequestTTL",
                format!(
                    "the affinity plugin waits at most {MAX_SHIM_TIMEOUT_MS} ms for a pick, so a \
                     queued request may wait at most {} ms",
                    MAX_SHIM_TIMEOUT_MS - CALLOUT_MARGIN_MS
                ),
            )),
            other => Ok(other),
        }
    }
}

/// The `flowControl` gate: `Some(true)` for `flowControl` / `flowControl=true`, `Some(false)`
/// for `flowControl=false`, `None` when absent.
fn gate(gates: Option<&serde_yaml::Value>) -> Result<Option<bool>, ConfigError> {
    let Some(list) = gates.and_then(|g| g.as_sequence()) else {
        return Ok(None);
    };
    let mut out = None;
    for (i, g) in list.iter().enumerate() {
        let Some(s) = g.as_str() else { continue };
        let (name, value) = match s.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (s.trim(), None),
        };
        if name != FEATURE_GATE {
            continue;
        }
        out = Some(match value {
            None | Some("true") => true,
            Some("false") => false,
            Some(v) => {
                return Err(ConfigError::new(
                    format!("featureGates[{i}]"),
                    format!("`{v}` is neither true nor false"),
                ))
            }
        });
    }
    Ok(out)
}

fn band(b: &RawBand, path: &str) -> Result<BandLimits, ConfigError> {
    Ok(BandLimits {
        priority: b.priority,
        max_bytes: quantity_field(b.max_bytes.as_ref(), &format!("{path}.maxBytes"))?,
        max_requests: b
            .max_requests
            .map(|n| {
                usize::try_from(n)
                    .map_err(|_| ConfigError::new(format!("{path}.maxRequests"), "is too large"))
            })
            .transpose()?,
    })
}

fn status(s: u16, path: &str) -> Result<u16, ConfigError> {
    match s {
        429 | 503 => Ok(s),
        _ => Err(ConfigError::new(path, format!("{s} is not 429 or 503"))),
    }
}

fn quantity_field(v: Option<&serde_yaml::Value>, path: &str) -> Result<Option<u64>, ConfigError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let text = match v {
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::String(s) => s.clone(),
        _ => {
            return Err(ConfigError::new(
                path,
                "must be a byte quantity such as 1Gi, 500M or 1048576",
            ))
        }
    };
    parse_quantity(&text)
        .map(Some)
        .map_err(|m| ConfigError::new(path, m))
}

/// Parses a Kubernetes resource quantity as a byte count: `1Gi`, `500M`, `1.5Ki`, `2e6`,
/// `1048576`. Fractions of a byte (`m`, `u`, `n` suffixes) and negative values are refused.
pub fn parse_quantity(s: &str) -> Result<u64, String> {
    let t = s.trim();
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (num, mult) = SUFFIXES
        .iter()
        .find_map(|(suf, m)| t.strip_suffix(suf).map(|n| (n, *m)))
        .unwrap_or((t, 1.0));
    if num.is_empty() || !num.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "`{s}` is not a byte quantity (e.g. 1Gi, 500M, 1048576)"
        ));
    }
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a byte quantity (e.g. 1Gi, 500M, 1048576)"))?;
    let bytes = n * mult;
    if !(1.0..1.8e19).contains(&bytes) {
        return Err(format!("`{s}` must be between 1 byte and 16 EiB"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> serde_yaml::Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("1Gi"), Ok(1 << 30));
        assert_eq!(parse_quantity("500M"), Ok(500_000_000));
        assert_eq!(parse_quantity("1.5Ki"), Ok(1536));
        assert_eq!(parse_quantity("2e6"), Ok(2_000_000));
        assert_eq!(parse_quantity("1048576"), Ok(1_048_576));
        for bad in ["", "Gi", "-1Gi", "1Xi", "500m", "1e400", "0"] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn absent_is_off_and_the_gate_or_section_turns_it_on() {
        assert!(!FlowControlConfig::from_epp(None, None).unwrap().enabled);
        let gates = yaml("[flowControl]");
        let on = FlowControlConfig::from_epp(Some(&gates), None).unwrap();
        assert!(on.enabled);
        assert_eq!(on.request_ttl, DEFAULT_REQUEST_TTL);
        assert_eq!(on.max_requests, DEFAULT_MAX_REQUESTS);
        assert!(
            FlowControlConfig::from_epp(None, Some(&yaml("{}")))
                .unwrap()
                .enabled
        );
        let off = yaml("[otherGate, flowControl=false]");
        assert!(
            !FlowControlConfig::from_epp(Some(&off), Some(&yaml("{}")))
                .unwrap()
                .enabled
        );
        assert!(
            !FlowControlConfig::from_epp(None, Some(&yaml("{enabled: false}")))
                .unwrap()
                .enabled
        );
        let err =
            FlowControlConfig::from_epp(Some(&yaml("[a, flowControl=maybe]")), None).unwrap_err();
        assert_eq!(err.path, "featureGates[1]");
    }

    #[test]
    fn upstream_fields_and_ours() {
        let c = FlowControlConfig::from_epp(
            None,
            Some(&yaml(
                "maxBytes: 1Gi\ndefaultRequestTTL: 2500ms\nmaxRequests: 7\n\
                 defaultPriorityBand: {maxBytes: 500M, orderingPolicyRef: fcfs-ordering-policy}\n\
                 priorityBands:\n- {priority: -1, maxBytes: 1Mi, maxRequests: 2, fairnessPolicyRef: x}\n\
                 queueFullStatus: 503\ntimeoutStatus: 429\nretryAfterSeconds: 7\nsomethingNew: 1\n",
            )),
        )
        .unwrap();
        assert!(c.enabled);
        assert_eq!(c.max_bytes, Some(1 << 30));
        assert_eq!(c.request_ttl, Duration::from_millis(2500));
        assert_eq!(c.max_requests, 7);
        assert_eq!(
            c.band(-1),
            BandLimits {
                priority: -1,
                max_bytes: Some(1 << 20),
                max_requests: Some(2)
            }
        );
        assert_eq!(c.band(0).max_bytes, Some(500_000_000));
        assert_eq!((c.queue_full_status, c.timeout_status), (503, 429));
        assert_eq!(c.retry_after_secs, 7);
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            ("maxBytes: lots", "flowControl.maxBytes"),
            ("defaultRequestTTL: 5", "flowControl.defaultRequestTTL"),
            ("maxRequests: -1", "flowControl.maxRequests"),
            ("queueFullStatus: 500", "flowControl.queueFullStatus"),
            ("timeoutStatus: 200", "flowControl.timeoutStatus"),
            ("retryAfterSeconds: 0", "flowControl.retryAfterSeconds"),
            (
                "priorityBands: [{priority: 1}, {priority: 1}]",
                "flowControl.priorityBands[1].priority",
            ),
            (
                "priorityBands: [{priority: 1, maxBytes: -5}]",
                "flowControl.priorityBands[0].maxBytes",
            ),
            ("[1, 2]", "flowControl"),
        ];
        for (text, path) in cases {
            let err = FlowControlConfig::from_epp(None, Some(&yaml(text))).unwrap_err();
            assert_eq!(err.path, path, "{text}: {err}");
        }
    }

    #[test]
    fn the_callout_must_outlast_the_queue() {
        let c = FlowControlConfig::from_epp(None, Some(&yaml("defaultRequestTTL: 2s"))).unwrap();
        assert_eq!(c.callout_ms(), Some(2500));
        assert!(c.check_callout(2500).is_ok());
        let err = c.check_callout(2000).unwrap_err();
        assert_eq!(err.path, "flowControl.defaultRequestTTL");
        assert!(err.message.contains("2500"), "{err}");
        // Off, any callout fits.
        assert!(FlowControlConfig::default().check_callout(50).is_ok());
        assert_eq!(FlowControlConfig::default().callout_ms(), None);
        assert_eq!(c.plugin_callout_ms().unwrap(), Some(2500));
        let long =
            FlowControlConfig::from_epp(None, Some(&yaml("defaultRequestTTL: 9600ms"))).unwrap();
        assert_eq!(
            long.plugin_callout_ms().unwrap_err().path,
            "flowControl.defaultRequestTTL"
        );
    }
}
