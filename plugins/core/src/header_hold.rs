//! Whether a plugin may hold request headers while it reads the body, and what a plugin does
//! at each step when it may not (the no-hold mode).
//!
//! Envoy's Wasm filter turns a plugin's `StopIteration` on request headers into
//! `StopAllIteration` unless the Wasm `PluginConfig` sets `allow_on_headers_stop_iteration`
//! (Envoy ≥ 1.35). Under `StopAllIteration` the body callback never comes, so a plugin that
//! waits at the headers for the body hangs the request. Istio's `WasmPlugin` and Envoy
//! Gateway's `EnvoyExtensionPolicy` cannot set the field at all, and Envoy 1.34 rejects it.
//!
//! A plugin cannot ask Envoy whether the field is set, so its configuration says so, in the
//! field [`FIELD`] (default `false`). Whoever renders the Envoy resource sets both together.
//! Without it a plugin never waits at the headers for the body: headers go on, the body is
//! buffered in the body callback (no byte is forwarded before the decision), and a denial
//! (401/403/413/429) is answered from there, which abandons the upstream request. Pausing the
//! headers for a callout (TokenReview, the rate limit service) stays allowed in both modes:
//! the callout's answer or its timeout resumes the request, whatever Envoy made of the pause.

use serde::{Deserialize, Serialize};

/// The configuration field, the same in every plugin, named after Envoy's own.
pub const FIELD: &str = "allowOnHeadersStopIteration";

/// Envoy's Wasm `PluginConfig` field this mirrors.
pub const ENVOY_FIELD: &str = "allow_on_headers_stop_iteration";

/// The configured header-hold mode of a plugin (the value of [`FIELD`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct HeaderHold {
    /// The host runs this plugin with `allow_on_headers_stop_iteration: true`.
    allowed: bool,
}

/// What a plugin returns from the request-headers callback when its decision needs the
/// complete body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtHeaders {
    /// Hold the headers (`Action::Pause`) until the body decides.
    Hold,
    /// Let the headers go on (`Action::Continue`) and decide from the body callback.
    Continue,
}

/// What a plugin does when a callout answered while the headers were paused and the decision
/// now needs the complete body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCallout {
    /// Keep the headers paused: the body callbacks still come (the host allows it).
    KeepHeld,
    /// Resume the request now: under `StopAllIteration` no body callback would ever come.
    Resume,
}

impl HeaderHold {
    /// Hold mode (`true`) or no-hold mode (`false`).
    pub const fn new(allowed: bool) -> Self {
        Self { allowed }
    }

    /// Whether the host lets this plugin hold headers while it reads the body.
    pub const fn allowed(self) -> bool {
        self.allowed
    }

    /// The headers-callback answer of a request whose decision waits for the body.
    pub const fn awaiting_body(self) -> AtHeaders {
        if self.allowed {
            AtHeaders::Hold
        } else {
            AtHeaders::Continue
        }
    }

    /// After a callout answered with the headers paused, when the decision needs the body.
    pub const fn after_callout(self) -> AfterCallout {
        if self.allowed {
            AfterCallout::KeepHeld
        } else {
            AfterCallout::Resume
        }
    }

    /// Whether request headers can still be changed once the body is read: only while they
    /// are held. A plugin that would rewrite the body (and its `content-length`) in no-hold
    /// mode must drop `content-length` at the headers instead.
    pub const fn headers_editable_from_body(self) -> bool {
        self.allowed
    }

    /// A plugin that cannot work without holding the headers (it chooses the route from the
    /// body) refuses a configuration that does not allow it, naming the field.
    pub fn require(self, plugin: &str, why: &str) -> Result<(), crate::config::ConfigError> {
        if self.allowed {
            return Ok(());
        }
        Err(crate::config::ConfigError::new(
            FIELD,
            format!(
                "the {plugin} plugin must hold request headers while it reads the body ({why}); \
                 set `{FIELD}: true` only where Envoy's Wasm filter has `{ENVOY_FIELD}: true` \
                 (Envoy >= 1.35, through an EnvoyFilter or EnvoyPatchPolicy), otherwise route \
                 with host-shim's ext_proc Endpoint Picker instead of this plugin"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Cfg {
        #[serde(default)]
        allow_on_headers_stop_iteration: HeaderHold,
    }

    #[test]
    fn absent_field_is_no_hold() {
        let c: Cfg = serde_json::from_str("{}").unwrap();
        assert!(!c.allow_on_headers_stop_iteration.allowed());
        assert_eq!(
            c.allow_on_headers_stop_iteration.awaiting_body(),
            AtHeaders::Continue
        );
        assert_eq!(
            c.allow_on_headers_stop_iteration.after_callout(),
            AfterCallout::Resume
        );
    }

    #[test]
    fn field_name_matches_the_constant() {
        let c: Cfg = serde_json::from_str(&format!(r#"{{"{FIELD}": true}}"#)).unwrap();
        assert!(c.allow_on_headers_stop_iteration.allowed());
        assert_eq!(
            c.allow_on_headers_stop_iteration.awaiting_body(),
            AtHeaders::Hold
        );
        assert_eq!(
            c.allow_on_headers_stop_iteration.after_callout(),
            AfterCallout::KeepHeld
        );
        assert!(c
            .allow_on_headers_stop_iteration
            .headers_editable_from_body());
    }

    #[test]
    fn non_boolean_is_refused() {
        assert!(serde_json::from_str::<Cfg>(&format!(r#"{{"{FIELD}": "yes"}}"#)).is_err());
    }

    #[test]
    fn require_names_the_field() {
        let e = HeaderHold::new(false)
            .require("affinity", "it chooses the route")
            .unwrap_err();
        assert_eq!(e.path, FIELD);
        assert!(e.message.contains(ENVOY_FIELD), "{}", e.message);
        assert!(HeaderHold::new(true).require("affinity", "x").is_ok());
    }
}
