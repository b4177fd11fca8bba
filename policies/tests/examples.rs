//! Every example renders, and every manifest parses back as its Kubernetes kind through typed
//! structs of the fields we emit (unknown fields refused).

mod common;

use common::*;
use infergate_policies::manifests::*;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn docs<T: DeserializeOwned>(text: &str) -> Vec<T> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| T::deserialize(d).unwrap_or_else(|e| panic!("{e}\n{text}")))
        .collect()
}

/// The manifests every render holds, checked field by field.
fn check_common(r: &infergate_policies::Rendered, gateway: &str, ns: &str) {
    let names: Vec<&str> = r.plugins.iter().map(|(n, _)| n.as_str()).collect();
    // WasmPlugins: one per plugin, phases and priorities give auth → ratelimit → affinity.
    let wps: Vec<WasmPlugin> = docs(&r.files["istio/wasmplugins.yaml"]);
    assert_eq!(wps.len(), names.len());
    let order = ["AUTHN", "AUTHZ", "STATS"];
    let mut last = 0;
    for (wp, (name, cfg)) in wps.iter().zip(&r.plugins) {
        assert_eq!(wp.api_version, "extensions.istio.io/v1alpha1");
        assert_eq!(wp.kind, "WasmPlugin");
        assert_eq!(wp.metadata.name, format!("infergate-{name}"));
        assert_eq!(wp.metadata.namespace, ns);
        assert_eq!(wp.spec.target_refs[0].kind, "Gateway");
        assert_eq!(wp.spec.target_refs[0].name, gateway);
        assert_eq!(&wp.spec.plugin_config, cfg);
        assert_eq!(wp.spec.fail_strategy, "FAIL_CLOSE");
        let pos = order.iter().position(|p| *p == wp.spec.phase).unwrap();
        assert!(pos >= last, "phases out of order");
        last = pos;
        assert!(wp
            .spec
            .url
            .ends_with(&format!("infergate-{name}:{}", env!("CARGO_PKG_VERSION"))));
    }
    // EnvoyFilter form: the same filters before the router, with allow_on_headers_stop_iteration.
    let efs: Vec<EnvoyFilter> = docs(&r.files["istio/envoyfilter-wasm.yaml"]);
    assert_eq!(efs[0].api_version, "networking.istio.io/v1alpha3");
    assert_eq!(efs[0].spec.config_patches.len(), names.len());
    for (p, (name, cfg)) in efs[0].spec.config_patches.iter().zip(&r.plugins) {
        assert_eq!(p.apply_to, "HTTP_FILTER");
        assert_eq!(p.patch.operation, "INSERT_BEFORE");
        assert_eq!(
            p.matcher["listener"]["filterChain"]["filter"]["subFilter"]["name"],
            "envoy.filters.http.router"
        );
        let c = &p.patch.value["typed_config"]["config"];
        assert_eq!(c["allow_on_headers_stop_iteration"], true);
        assert_eq!(c["name"], format!("infergate-{name}"));
        let conf: Value =
            serde_json::from_str(c["configuration"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(&conf, cfg);
    }
    // Envoy Gateway.
    let eeps: Vec<EnvoyExtensionPolicy> = docs(&r.files["envoy-gateway/envoyextensionpolicy.yaml"]);
    assert_eq!(eeps[0].api_version, "gateway.envoyproxy.io/v1alpha1");
    assert_eq!(eeps[0].spec.wasm.len(), names.len());
    for (w, (name, cfg)) in eeps[0].spec.wasm.iter().zip(&r.plugins) {
        assert_eq!(w.name, format!("infergate-{name}"));
        assert_eq!(&w.config, cfg);
        assert_eq!(w.code["type"], "Image");
    }
    let _: Vec<EnvoyFilter> = docs(&r.files["istio/envoyfilter-clusters.yaml"]);
    // Plugin JSON files equal the configs.
    for (name, cfg) in &r.plugins {
        let v: Value = serde_json::from_str(&r.files[&format!("plugins/{name}.json")]).unwrap();
        assert_eq!(&v, cfg);
    }
    // The demo config is what the demo launcher reads.
    let demo = infergate_e2e::demo::DemoConfig::parse(&r.files["demo.yaml"]).unwrap();
    // (The launcher orders plugins itself: auth → ratelimit → affinity.)
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        demo.plugins.keys().map(String::as_str).collect::<Vec<_>>(),
        sorted
    );
    // No plaintext key anywhere.
    for (f, text) in &r.files {
        for secret in [
            "sk-free-alice-1234",
            "sk-premium-bob-5678",
            "IAMBOB",
            "IAMALICE",
        ] {
            assert!(!text.contains(secret), "{f} holds a plaintext key");
        }
    }
}

fn check_original_dst_and_host_shim(r: &infergate_policies::Rendered, pool: &str, ns: &str) {
    let efs: Vec<EnvoyFilter> = docs(&r.files["istio/envoyfilter-clusters.yaml"]);
    let od = efs[0]
        .spec
        .config_patches
        .iter()
        .find(|p| p.apply_to == "CLUSTER" && p.patch.value["type"] == "ORIGINAL_DST")
        .expect("ORIGINAL_DST cluster patch");
    assert_eq!(
        od.patch.value["original_dst_lb_config"]["use_http_header"],
        true
    );
    assert_eq!(
        od.patch.value["original_dst_lb_config"]["http_header_name"],
        "x-gateway-destination-endpoint"
    );
    assert!(efs[0]
        .spec
        .config_patches
        .iter()
        .any(|p| p.apply_to == "HTTP_ROUTE"));
    // Every cluster carries the shared circuit breakers, sized for long-lived streams, and an
    // overflow is answered as an OpenAI error with Retry-After.
    let limits = infergate_core::envoy_limits::MODEL_STREAMS.to_envoy();
    for p in efs[0]
        .spec
        .config_patches
        .iter()
        .filter(|p| p.apply_to == "CLUSTER")
    {
        assert_eq!(
            p.patch.value["circuit_breakers"], limits,
            "{}",
            p.patch.value["name"]
        );
    }
    let reply = efs[0]
        .spec
        .config_patches
        .iter()
        .find(|p| p.apply_to == "NETWORK_FILTER")
        .expect("local reply patch");
    assert_eq!(
        reply.patch.value["typed_config"]["local_reply_config"],
        infergate_core::envoy_limits::overflow_local_reply()
    );
    // host-shim finds the pods itself: pool flags and RBAC, no pod address.
    let text = &r.files["host-shim/host-shim.yaml"];
    let shim = infergate_policies::shim_deploy::read(text).unwrap();
    let (dep, svc) = (&shim.deployment, &shim.service);
    assert_eq!(dep.metadata.name, format!("{pool}-host-shim"));
    assert_eq!(dep.metadata.namespace, ns);
    assert!(dep.spec.template.spec.containers[0]
        .args
        .contains(&format!("--pool-name={pool}")));
    assert!(!text.contains("10.0.0.7"), "{text}");
    assert_eq!(
        svc.spec.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
        vec![9003, 9002]
    );
    if let Some(epp) = &r.epp_config {
        assert_eq!(&shim.config_map.as_ref().unwrap().data["epp.yaml"], epp);
        assert!(dep.spec.template.spec.containers[0]
            .args
            .contains(&"--config-file=/etc/infergate/epp.yaml".to_string()));
        // host-shim itself accepts it.
        host_shim::scheduler::config::SchedulerConfig::parse(epp).unwrap();
    }
}

#[test]
fn guide_token_mode() {
    let r = render_example(&["guide/base", "guide/token"]);
    assert_eq!(
        r.gateway,
        ("openshift-ingress".into(), "openshift-ai-inference".into())
    );
    assert_eq!(r.model, "Qwen/Qwen3-0.6B");
    assert_eq!(r.replicas, 2);
    assert_eq!(
        r.route_prefix.as_deref(),
        Some("/my-first-model/qwen3-0-6b/")
    );
    let auth = r.plugin("auth").unwrap();
    let m = &auth["methods"][0];
    assert_eq!(
        m["kubernetesTokenReview"]["audiences"][0],
        "https://kubernetes.default.svc"
    );
    assert_eq!(
        m["kubernetesTokenReview"]["bearerToken"],
        "gateway-sa-token"
    );
    let sar = &auth["authorization"]["kubernetesSubjectAccessReview"];
    assert_eq!(sar["resource"], "llminferenceservices");
    assert_eq!(sar["group"], "serving.kserve.io");
    assert_eq!(sar["verb"], "get");
    assert!(r.plugin("ratelimit").is_none());
    assert_eq!(
        r.plugin("affinity").unwrap()["endpoints"][1],
        "10.0.0.8:8000"
    );
    // The guide's EPP config: queue 2, kv-cache 2, prefix 3.
    let epp = r.epp_config.as_deref().unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(epp).unwrap();
    let weights: Vec<(String, u64)> = v["schedulingProfiles"][0]["plugins"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pluginRef"].as_str().unwrap().to_string(),
                p["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        weights,
        vec![
            ("queue-scorer".into(), 2),
            ("kv-cache-utilization-scorer".into(), 2),
            ("prefix-cache-scorer".into(), 3)
        ]
    );
    check_common(&r, "openshift-ai-inference", "openshift-ingress");
    check_original_dst_and_host_shim(&r, "qwen3-0-6b-inference-pool", "my-first-model");
    let efs: Vec<EnvoyFilter> = docs(&r.files["istio/envoyfilter-clusters.yaml"]);
    assert!(efs[0]
        .spec
        .config_patches
        .iter()
        .any(|p| p.patch.value["name"] == "kube-apiserver"));
}

#[test]
fn guide_anonymous_mode() {
    let r = render_example(&["guide/base", "guide/anonymous"]);
    let auth = r.plugin("auth").unwrap();
    assert!(auth["methods"][0]["anonymous"].is_object());
    assert!(auth.get("authorization").is_none());
    check_common(&r, "openshift-ai-inference", "openshift-ingress");
    check_original_dst_and_host_shim(&r, "qwen3-0-6b-inference-pool", "my-first-model");
    let demo = infergate_e2e::demo::DemoConfig::parse(&r.files["demo.yaml"]).unwrap();
    assert_eq!(demo.model, "Qwen/Qwen3-0.6B");
    assert_eq!(demo.pods, 2);
    assert_eq!(
        demo.route_prefix.as_deref(),
        Some("/my-first-model/qwen3-0-6b/")
    );
}

#[test]
fn guide_token_mode_needs_the_gateway_token() {
    let bundle =
        infergate_policies::resources::Bundle::load(&example(&["guide/base", "guide/token"]))
            .unwrap();
    let mut o = options();
    o.kube_token = None;
    let err = infergate_policies::render(&bundle, &o).unwrap_err();
    assert_eq!(
        err.resource,
        "AuthPolicy my-first-model/qwen3-0-6b-kserve-route-authn"
    );
    assert_eq!(
        err.field,
        "spec.rules.authentication.kubernetes-user.kubernetesTokenReview"
    );
}

#[test]
fn api_key_tiers() {
    let r = render_example(&["api-key-tiers"]);
    let auth = r.plugin("auth").unwrap();
    let keys = auth["methods"][0]["apiKey"]["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    let alice = infergate_core::auth::apikey::KeyDigest::of(b"sk-free-alice-1234").to_hex();
    let bob = infergate_core::auth::apikey::KeyDigest::of(b"sk-premium-bob-5678").to_hex();
    assert_eq!(keys[0]["sha256"], alice);
    assert_eq!(keys[0]["identity"]["userid"], "alice");
    assert_eq!(keys[0]["identity"]["groups"][0], "free");
    assert_eq!(
        keys[1]["sha256"], bob,
        "data.api_key is base64-decoded before hashing"
    );
    assert_eq!(
        auth["methods"][0]["credentials"]["authorizationHeader"]["prefix"],
        "APIKEY"
    );
    assert_eq!(
        auth["authorization"]["rules"][0]["groups"],
        serde_json::json!(["free", "premium"])
    );
    let rl = r.plugin("ratelimit").unwrap();
    let names: Vec<&str> = rl["limits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "free-requests",
            "premium-requests",
            "free-tokens",
            "premium-tokens"
        ]
    );
    assert_eq!(rl["limits"][2]["counts"], "tokens");
    assert_eq!(rl["limits"][2]["rates"][0]["window"], "24h");
    check_common(&r, "llm-gateway", "llm");
    check_original_dst_and_host_shim(&r, "qwen-pool", "llm");
    assert!(
        r.epp_config.is_none(),
        "no EndpointPickerConfig given: host-shim runs its default"
    );
}

#[test]
fn kuadrant_docs_api_keys() {
    let r = render_example(&["kuadrant-docs/api-key"]);
    let auth = r.plugin("auth").unwrap();
    let keys = auth["methods"][0]["apiKey"]["keys"].as_array().unwrap();
    let users: Vec<&str> = keys
        .iter()
        .map(|k| k["identity"]["userid"].as_str().unwrap())
        .collect();
    // Secrets in another namespace are found with allNamespaces; userid from the annotation.
    assert_eq!(users, ["bob", "alice"]);
    assert_eq!(
        auth["methods"][0]["credentials"]["authorizationHeader"]["prefix"],
        "APIKEY"
    );
    let rl = r.plugin("ratelimit").unwrap();
    // The route-level policy replaces the gateway's defaults (atomic).
    let names: Vec<&str> = rl["limits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice-limit", "bob-limit"]);
    assert_eq!(rl["limits"][0]["when"][0]["eq"], "alice");
    assert!(r.plugin("affinity").is_none());
    assert!(!r.files.contains_key("host-shim/host-shim.yaml"));
    check_common(&r, "kuadrant-ingressgateway", "gateway-system");
}

#[test]
fn kuadrant_docs_jwt() {
    let r = render_example(&["kuadrant-docs/jwt"]);
    let jwt = &r.plugin("auth").unwrap()["methods"][0]["jwt"];
    assert_eq!(
        jwt["issuer"],
        "http://keycloak.keycloak.svc.cluster.local:8080/realms/kuadrant"
    );
    assert_eq!(
        jwt["jwksUri"]["path"],
        "/realms/kuadrant/protocol/openid-connect/certs"
    );
    assert_eq!(jwt["claims"]["userid"], "sub");
    let rl = r.plugin("ratelimit").unwrap();
    assert_eq!(rl["limits"][0]["counters"][0], "auth.identity.userid");
    assert_eq!(
        rl["limits"][1]["when"][0]["in"],
        serde_json::json!(["POST", "DELETE"])
    );
    check_common(&r, "kuadrant-ingressgateway", "gateway-system");
    // The IdP cluster the JWKS is fetched through.
    let efs: Vec<EnvoyFilter> = docs(&r.files["istio/envoyfilter-clusters.yaml"]);
    let idp = efs[0]
        .spec
        .config_patches
        .iter()
        .find(|p| p.patch.value["name"] == jwt["jwksUri"]["cluster"])
        .unwrap();
    assert_eq!(
        idp.patch.value["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            ["address"]["socket_address"]["port_value"],
        8080
    );
}

#[test]
fn cli_renders_into_a_folder() {
    let out = std::env::temp_dir().join(format!("infergate-policies-cli-{}", std::process::id()));
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_infergate-policies"))
        .args(["render", "--in"])
        .args(example(&["api-key-tiers"]))
        .args([
            "--out",
            out.to_str().unwrap(),
            "--endpoints",
            "10.0.0.7:8000",
            // A platform that holds headers: the affinity plugin is rendered.
            "--platform",
            "istio-1.28+",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    for f in [
        "plugins/auth.json",
        "plugins/ratelimit.json",
        "plugins/affinity.json",
        "istio/wasmplugins.yaml",
        "istio/envoyfilter-wasm.yaml",
        "istio/envoyfilter-clusters.yaml",
        "envoy-gateway/envoyextensionpolicy.yaml",
        "host-shim/host-shim.yaml",
        "demo.yaml",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // A failing render exits non-zero and names the resource and field.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_infergate-policies"))
        .args(["check", "--in"])
        .args(example(&["guide/base", "guide/token"]))
        .args(["--endpoints", "10.0.0.7:8000"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("AuthPolicy my-first-model/qwen3-0-6b-kserve-route-authn"),
        "{err}"
    );
    assert!(err.contains("kubernetesTokenReview"), "{err}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn guide_on_its_own_platform_needs_no_pod_address() {
    // The guide's platform routes with host-shim's ext_proc, which finds the pods through the
    // InferencePool: nothing rendered may name a pod, and no address is asked for.
    let bundle =
        infergate_policies::resources::Bundle::load(&example(&["guide/base", "guide/anonymous"]))
            .unwrap();
    let mut o = options();
    o.endpoints.clear();
    o.platform = Some(infergate_policies::platform::Platform::Istio126);
    let r = infergate_policies::render(&bundle, &o).unwrap();
    assert!(r.plugin("affinity").is_none());
    assert!(r.files.keys().any(|k| k.starts_with("host-shim/")));
    for (path, text) in &r.files {
        assert!(!text.contains("10.0.0."), "{path} names a pod address");
    }
    // Where the affinity plugin routes, its fallback list is still required, naming the field.
    o.platform = Some(infergate_policies::platform::Platform::Istio128Plus);
    let err = infergate_policies::render(&bundle, &o).unwrap_err();
    assert_eq!(err.field, "affinity.endpoints");
}
