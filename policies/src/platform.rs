//! Which gateway platform the manifests are for, and what that decides: whether the Wasm
//! filters may hold request headers (Envoy's `allow_on_headers_stop_iteration`, Envoy ≥ 1.35,
//! settable only through an Istio `EnvoyFilter`), which resource carries them, and whether
//! routing is the affinity plugin or host-shim as the InferencePool's ext_proc Endpoint Picker.
//!
//! Rules: a resource that cannot set the field runs the plugins in no-hold mode (auth and
//! ratelimit decide from the body callback) and routes with host-shim's ext_proc; where the
//! field can be set the plugins hold headers and the affinity plugin routes, with no ext_proc
//! in the chain, so a Wasm filter holding headers never sits beside a full-duplex ext_proc
//! (the combination that lost body chunks on Envoy 1.38.3, Kuadrant/wasm-shim#388).

use infergate_core::header_hold::FIELD;
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// A gateway platform `render --platform` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Platform {
    /// Istio 1.26 (Envoy 1.34): OpenShift 4.19 / 4.20, OSSM 3.1. The guide's platform.
    #[default]
    Istio126,
    /// Istio 1.27 (Envoy 1.35): the field only inside a `TypedStruct` (istiod drops unknown
    /// typed fields).
    Istio127,
    /// Istio 1.28 and later (Envoy ≥ 1.36).
    Istio128Plus,
    /// Envoy Gateway 1.4 (Envoy 1.34).
    EnvoyGateway14,
    /// Envoy Gateway 1.5 and later (Envoy ≥ 1.35).
    EnvoyGateway15Plus,
}

/// Names accepted by `--platform`, with what each means.
pub const NAMES: [(&str, Platform); 7] = [
    ("istio-1.26", Platform::Istio126),
    ("openshift-4.19", Platform::Istio126),
    ("openshift-4.20", Platform::Istio126),
    ("istio-1.27", Platform::Istio127),
    ("istio-1.28+", Platform::Istio128Plus),
    ("envoy-gateway-1.4", Platform::EnvoyGateway14),
    ("envoy-gateway-1.5+", Platform::EnvoyGateway15Plus),
];

/// The resource that loads the Wasm filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmResource {
    /// Istio `WasmPlugin` (cannot set the field): `istio/wasmplugins.yaml`.
    WasmPlugin,
    /// Istio `EnvoyFilter` with the field in the typed `Wasm` config:
    /// `istio/envoyfilter-wasm.yaml`.
    EnvoyFilter,
    /// Istio `EnvoyFilter` with the `Wasm` config inside a `udpa.type.v1.TypedStruct`:
    /// `istio/envoyfilter-wasm.yaml`.
    EnvoyFilterTypedStruct,
    /// Envoy Gateway `EnvoyExtensionPolicy` (cannot set the field):
    /// `envoy-gateway/envoyextensionpolicy.yaml`.
    EnvoyExtensionPolicy,
}

/// How requests find their pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// The affinity plugin picks (through host-shim's pick API) before the router.
    AffinityPlugin,
    /// host-shim as the InferencePool's Endpoint Picker over ext_proc.
    ExtProcPicker,
}

/// What a platform decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The Envoy its gateway runs.
    pub envoy: &'static str,
    /// Whether the plugins hold headers (the field set) or run in no-hold mode.
    pub hold: bool,
    /// The resource carrying the Wasm filters.
    pub wasm: WasmResource,
    /// The router of model requests.
    pub routing: Routing,
}

impl Platform {
    /// What this platform gets.
    pub fn plan(self) -> Plan {
        let no_hold = |envoy, wasm| Plan {
            envoy,
            hold: false,
            wasm,
            routing: Routing::ExtProcPicker,
        };
        match self {
            Platform::Istio126 => no_hold("1.34", WasmResource::WasmPlugin),
            Platform::Istio127 => Plan {
                envoy: "1.35",
                hold: true,
                wasm: WasmResource::EnvoyFilterTypedStruct,
                routing: Routing::AffinityPlugin,
            },
            Platform::Istio128Plus => Plan {
                envoy: "1.36+",
                hold: true,
                wasm: WasmResource::EnvoyFilter,
                routing: Routing::AffinityPlugin,
            },
            Platform::EnvoyGateway14 => no_hold("1.34", WasmResource::EnvoyExtensionPolicy),
            // Holding needs an EnvoyPatchPolicy (Envoy Gateway ≥ 1.5.5) on the generated
            // filters, which this renderer does not write: no-hold is what it can vouch for.
            Platform::EnvoyGateway15Plus => no_hold("1.35+", WasmResource::EnvoyExtensionPolicy),
        }
    }

    /// The canonical `--platform` name.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, p)| *p == self)
            .map(|(n, _)| *n)
            .unwrap_or("istio-1.26")
    }

    /// The output file that loads the plugins on this platform.
    pub fn wasm_file(self) -> &'static str {
        match self.plan().wasm {
            WasmResource::WasmPlugin => "istio/wasmplugins.yaml",
            WasmResource::EnvoyFilter | WasmResource::EnvoyFilterTypedStruct => {
                "istio/envoyfilter-wasm.yaml"
            }
            WasmResource::EnvoyExtensionPolicy => "envoy-gateway/envoyextensionpolicy.yaml",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, p)| *p)
            .ok_or_else(|| {
                let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                format!("unknown platform `{s}`; known: {}", known.join(", "))
            })
    }
}

/// Applies the plan to the plugin configurations: in hold mode every plugin is told the field
/// is set; in no-hold mode the affinity plugin is left out (routing is the ext_proc picker)
/// and the others keep their default no-hold mode.
pub fn apply(plan: &Plan, plugins: &mut Vec<(String, Value)>) {
    if plan.routing == Routing::ExtProcPicker {
        plugins.retain(|(name, _)| name != "affinity");
    }
    for (_, cfg) in plugins.iter_mut() {
        if let Some(o) = cfg.as_object_mut() {
            if plan.hold {
                o.insert(FIELD.to_string(), Value::Bool(true));
            } else {
                o.remove(FIELD);
            }
        }
    }
}

/// Wraps an EnvoyFilter patch's typed `Wasm` config in a `udpa.type.v1.TypedStruct` (Istio
/// 1.27's istiod drops typed fields it does not know, such as the field on Envoy 1.35).
pub fn typed_struct(filter: &mut Value) {
    let Some(tc) = filter.get_mut("typed_config") else {
        return;
    };
    let mut value = tc.clone();
    if let Some(o) = value.as_object_mut() {
        o.remove("@type");
    }
    *tc = serde_json::json!({
        "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
        "type_url": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "value": value,
    });
}

/// A short file saying what to apply on this platform and what works there.
pub fn readme(platform: Platform) -> String {
    let plan = platform.plan();
    let mode = if plan.hold {
        format!("hold mode: Envoy's `allow_on_headers_stop_iteration: true` and the plugins' `{FIELD}: true`")
    } else {
        "no-hold mode: the field is absent; auth and ratelimit decide from the body callback".into()
    };
    let routing = match plan.routing {
        Routing::AffinityPlugin => "the affinity plugin (picks through host-shim's pick API); no ext_proc in the chain",
        Routing::ExtProcPicker => "host-shim as the InferencePool's Endpoint Picker (ext_proc, FULL_DUPLEX_STREAMED); the affinity plugin is not loaded",
    };
    format!(
        "# Platform {platform} (Envoy {envoy})\n\n\
         Mode: {mode}.\n\nRouting: {routing}.\n\n\
         Apply:\n\n\
         - `{wasm}` (the Wasm filters)\n\
         - `istio/wasm-files.yaml` only with an EnvoyFilter (it serves the .wasm files)\n\
         - `istio/envoyfilter-clusters.yaml` on Istio (clusters the plugins call)\n\
         - `host-shim/host-shim.yaml` (host-shim; with ext_proc routing, point the InferencePool's \
         endpointPickerRef at its Service, port 9002)\n\n\
         The other files are the other platforms' forms: do not apply them as well.\n",
        envoy = plan.envoy,
        wasm = platform.wasm_file(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_default_is_the_guides_platform_in_no_hold_mode() {
        let p = Platform::default();
        assert_eq!(p, "openshift-4.20".parse().unwrap());
        assert_eq!(p.name(), "istio-1.26");
        let plan = p.plan();
        assert!(!plan.hold);
        assert_eq!(plan.wasm, WasmResource::WasmPlugin);
        assert_eq!(plan.routing, Routing::ExtProcPicker);
    }

    #[test]
    fn hold_never_meets_ext_proc_and_field_only_where_settable() {
        for (_, p) in NAMES {
            let plan = p.plan();
            if plan.hold {
                assert_eq!(plan.routing, Routing::AffinityPlugin, "{p}");
                assert!(matches!(
                    plan.wasm,
                    WasmResource::EnvoyFilter | WasmResource::EnvoyFilterTypedStruct
                ));
            } else {
                assert_eq!(plan.routing, Routing::ExtProcPicker, "{p}");
            }
        }
        assert_eq!(
            Platform::Istio127.plan().wasm,
            WasmResource::EnvoyFilterTypedStruct
        );
    }

    #[test]
    fn unknown_platform_lists_the_known_ones() {
        let e = "istio-1.25".parse::<Platform>().unwrap_err();
        assert!(
            e.contains("istio-1.26") && e.contains("envoy-gateway-1.5+"),
            "{e}"
        );
    }

    #[test]
    fn apply_sets_or_drops_the_field_and_the_affinity_plugin() {
        let plugins = vec![
            ("auth".to_string(), json!({"methods": []})),
            (
                "affinity".to_string(),
                json!({"endpoints": [], FIELD: true}),
            ),
        ];
        let mut no_hold = plugins.clone();
        apply(&Platform::Istio126.plan(), &mut no_hold);
        assert_eq!(no_hold.len(), 1);
        assert!(no_hold[0].1.get(FIELD).is_none());
        let mut hold = plugins;
        apply(&Platform::Istio128Plus.plan(), &mut hold);
        assert_eq!(hold.len(), 2);
        assert_eq!(hold[0].1[FIELD], true);
    }

    #[test]
    fn typed_struct_wraps_the_wasm_config() {
        let mut f = json!({"name": "x", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": {"allow_on_headers_stop_iteration": true}}});
        typed_struct(&mut f);
        assert_eq!(
            f["typed_config"]["@type"],
            "type.googleapis.com/udpa.type.v1.TypedStruct"
        );
        assert_eq!(
            f["typed_config"]["value"]["config"]["allow_on_headers_stop_iteration"],
            true
        );
        assert!(f["typed_config"]["value"].get("@type").is_none());
    }
}
