//! Every document `render` writes validates against the upstream schema of its kind and
//! version (`tests/schemas/`, sources and versions in its README): the Istio and Envoy Gateway
//! CRDs' OpenAPI schemas and the Kubernetes API's, checked with a JSON-schema validator, for
//! every example, rendered with and without pinned images.
//!
//! Like `kubectl apply` (server-side strict field validation, the default since Kubernetes
//! 1.27) an unknown field is an error: objects with `properties` and no
//! `x-kubernetes-preserve-unknown-fields` get `additionalProperties: false`. CEL rules
//! (`x-kubernetes-validations`) are not evaluated here.

mod common;
mod pinned;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `(apiVersion, kind)` → schema file in `tests/schemas/`.
const SCHEMAS: [(&str, &str, &str); 9] = [
    (
        "extensions.istio.io/v1alpha1",
        "WasmPlugin",
        "wasmplugin.extensions.istio.io.v1alpha1.json",
    ),
    (
        "networking.istio.io/v1alpha3",
        "EnvoyFilter",
        "envoyfilter.networking.istio.io.v1alpha3.json",
    ),
    (
        "gateway.envoyproxy.io/v1alpha1",
        "EnvoyExtensionPolicy",
        "envoyextensionpolicy.gateway.envoyproxy.io.v1alpha1.json",
    ),
    ("apps/v1", "Deployment", "deployment.apps.v1.json"),
    ("v1", "Service", "service.v1.json"),
    ("v1", "ConfigMap", "configmap.v1.json"),
    ("v1", "ServiceAccount", "serviceaccount.v1.json"),
    (
        "rbac.authorization.k8s.io/v1",
        "Role",
        "role.rbac.authorization.k8s.io.v1.json",
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebinding.rbac.authorization.k8s.io.v1.json",
    ),
];

/// Unknown fields refused, as the API server's strict field validation does.
fn strict(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let preserve = m.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
            if m.contains_key("properties") && !m.contains_key("additionalProperties") && !preserve
            {
                m.insert("additionalProperties".into(), json!(false));
            }
            for (_, x) in m.iter_mut() {
                strict(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strict),
        _ => {}
    }
}

struct Validators(BTreeMap<(String, String), jsonschema::Validator>);

impl Validators {
    fn load() -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schemas");
        let mut out = BTreeMap::new();
        for (api, kind, file) in SCHEMAS {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            let mut schema: Value = serde_json::from_str(&text).unwrap();
            // A CRD's schema leaves out what every object has (the API server adds it).
            let props = schema["properties"].as_object_mut().unwrap();
            if !props.contains_key("apiVersion") {
                props.insert(
                    "apiVersion".into(),
                    json!({"type": "string", "enum": [api]}),
                );
                props.insert("kind".into(), json!({"type": "string", "enum": [kind]}));
                props.insert("metadata".into(), json!({"type": "object"}));
            }
            strict(&mut schema);
            let v = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{file}: {e}"));
            out.insert((api.to_string(), kind.to_string()), v);
        }
        Validators(out)
    }

    /// The errors of one document (`apiVersion`/`kind` must have a schema).
    fn errors(&self, doc: &Value) -> Vec<String> {
        let key = (
            doc["apiVersion"].as_str().unwrap_or_default().to_string(),
            doc["kind"].as_str().unwrap_or_default().to_string(),
        );
        let Some(v) = self.0.get(&key) else {
            return vec![format!(
                "no upstream schema kept for {key:?}: add it to tests/schemas"
            )];
        };
        v.iter_errors(doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }
}

/// Every Kubernetes document of a render (`*.yaml` except the local demo config).
fn documents(r: &infergate_policies::Rendered) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (file, text) in &r.files {
        if !file.ends_with(".yaml") || file == "demo.yaml" {
            continue;
        }
        for d in serde_yaml::Deserializer::from_str(text) {
            let v: Value = serde::Deserialize::deserialize(d).unwrap();
            if !v.is_null() {
                out.push((file.clone(), v));
            }
        }
    }
    out
}

#[test]
fn every_rendered_document_matches_its_upstream_schema() {
    let validators = Validators::load();
    let pins = pinned::pins("schema");
    let mut kinds = std::collections::BTreeSet::new();
    for ex in pinned::EXAMPLES {
        let renders = [pinned::render_pinned(ex, &pins), common::render_example(ex)];
        for r in &renders {
            for (file, doc) in documents(r) {
                let errors = validators.errors(&doc);
                assert!(
                    errors.is_empty(),
                    "{ex:?} {file} {} {}:\n{}",
                    doc["kind"],
                    doc["metadata"]["name"],
                    errors.join("\n")
                );
                kinds.insert(doc["kind"].as_str().unwrap().to_string());
            }
        }
    }
    for k in [
        "WasmPlugin",
        "EnvoyFilter",
        "EnvoyExtensionPolicy",
        "Deployment",
        "Service",
        "ConfigMap",
    ] {
        assert!(kinds.contains(k), "{k} never rendered: {kinds:?}");
    }
}

#[test]
fn the_schemas_catch_what_a_cluster_would_refuse() {
    let validators = Validators::load();
    let pins = pinned::pins("schema-neg");
    let r = pinned::render_pinned(pinned::EXAMPLES[0], &pins);
    let docs = documents(&r);
    let find = |kind: &str| {
        docs.iter()
            .find(|(_, d)| d["kind"] == kind)
            .map(|(_, d)| d.clone())
            .unwrap()
    };
    let refused = |doc: &Value, what: &str| {
        let e = validators.errors(doc);
        assert!(!e.is_empty(), "{what} accepted");
        e.join("\n")
    };
    // A misspelt WasmPlugin field.
    let mut wp = find("WasmPlugin");
    let v = wp["spec"]
        .as_object_mut()
        .unwrap()
        .remove("failStrategy")
        .unwrap();
    wp["spec"]["failStrategyy"] = v;
    assert!(refused(&wp, "failStrategyy").contains("failStrategyy"));
    // A sha256 that is not 64 hex digits.
    let mut wp = find("WasmPlugin");
    wp["spec"]["sha256"] = json!("sha256:abc");
    assert!(refused(&wp, "bad sha256").contains("/spec/sha256"));
    // An unknown phase.
    let mut wp = find("WasmPlugin");
    wp["spec"]["phase"] = json!("AUTHENTICATION");
    assert!(refused(&wp, "bad phase").contains("/spec/phase"));
    // EnvoyFilter: an unknown applyTo.
    let mut ef = find("EnvoyFilter");
    ef["spec"]["configPatches"][0]["applyTo"] = json!("HTTP_FILTERS");
    assert!(refused(&ef, "HTTP_FILTERS").contains("applyTo"));
    // EnvoyExtensionPolicy: a Wasm code type that does not exist.
    let mut eep = find("EnvoyExtensionPolicy");
    eep["spec"]["wasm"][0]["code"]["type"] = json!("OCI");
    assert!(refused(&eep, "code.type OCI").contains("/spec/wasm/0/code/type"));
    // Deployment: a string replica count and a misspelt container field.
    let mut dep = find("Deployment");
    dep["spec"]["replicas"] = json!("two");
    assert!(refused(&dep, "replicas: two").contains("/spec/replicas"));
    let mut dep = find("Deployment");
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    assert!(refused(&dep, "imagePullPolicyy").contains("imagePullPolicyy"));
    // Service: a port out of range.
    let mut svc = find("Service");
    svc["spec"]["ports"][0]["port"] = json!("http");
    assert!(refused(&svc, "port: http").contains("/spec/ports/0/port"));
    // A kind with no kept schema is reported, not passed.
    let e = validators.errors(&json!({"apiVersion": "v1", "kind": "Secret"}));
    assert!(e[0].contains("no upstream schema"), "{e:?}");
}
