//! host-shim's Kubernetes manifests: it runs where llm-d's Endpoint Picker runs and finds its
//! pods through the API server, so nothing here names a pod IP. The Deployment gets the
//! EPP's pool flags, a ServiceAccount with a Role (pods and inferencepools: get, list,
//! watch), and gRPC liveness/readiness probes (ready once the first lists completed).

use crate::manifests::{
    ConfigMap, Container, Deployment, DeploymentSpec, ObjectMeta, PodSpec, PodTemplate, Service,
    ServicePort, ServiceSpec,
};
use crate::options::Options;
use crate::render::{HOST_SHIM_GRPC_PORT, HOST_SHIM_HTTP_PORT};
use crate::resources::Bundle;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// host-shim's gRPC health port (`liveness`, `readiness`), probed by the kubelet.
pub const HOST_SHIM_HEALTH_PORT: u16 = 9004;
/// The InferencePool group when the bundle does not say (the EPP's default).
pub const DEFAULT_POOL_GROUP: &str = "inference.networking.k8s.io";

/// The pool host-shim serves.
#[derive(Debug, Clone)]
pub struct ShimPool<'a> {
    /// Namespace of the pool and its pods.
    pub namespace: &'a str,
    /// InferencePool name.
    pub name: &'a str,
    /// InferencePool API group (`--pool-group`).
    pub group: String,
    /// The EndpointPickerConfig text, if any.
    pub epp_config: Option<&'a str>,
    /// The pool's pod selector (for the header comment).
    pub selector: &'a BTreeMap<String, String>,
    /// The pool's target port (for the header comment).
    pub port: u16,
}

/// `v1` ServiceAccount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccount {
    /// `v1`.
    pub api_version: String,
    /// `ServiceAccount`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
}

/// `rbac.authorization.k8s.io/v1` Role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Role {
    /// `rbac.authorization.k8s.io/v1`.
    pub api_version: String,
    /// `Role`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Rules.
    pub rules: Vec<PolicyRule>,
}

/// One RBAC rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    /// API groups (`""` is core).
    pub api_groups: Vec<String>,
    /// Resources.
    pub resources: Vec<String>,
    /// Verbs.
    pub verbs: Vec<String>,
}

/// `rbac.authorization.k8s.io/v1` RoleBinding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleBinding {
    /// `rbac.authorization.k8s.io/v1`.
    pub api_version: String,
    /// `RoleBinding`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// The ServiceAccount.
    pub subjects: Vec<Value>,
    /// The Role.
    pub role_ref: Value,
}

/// The InferencePool group host-shim reads: an InferencePool object's own group, else the
/// `--pool-group` of the LLMInferenceService's scheduler container, else the EPP's default.
pub fn pool_group(bundle: &Bundle) -> String {
    if let Some(p) = bundle.of_kind("InferencePool").last() {
        if let Some((group, _)) = p.api_version.split_once('/') {
            return group.to_string();
        }
    }
    for isvc in bundle.of_kind("LLMInferenceService") {
        let containers = isvc
            .doc
            .pointer("/spec/router/scheduler/template/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in containers {
            let args: Vec<&str> = c["args"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (i, a) in args.iter().enumerate() {
                if let Some(v) = a.strip_prefix("--pool-group=") {
                    return v.to_string();
                }
                if *a == "--pool-group" {
                    if let Some(v) = args.get(i + 1) {
                        return v.to_string();
                    }
                }
            }
        }
    }
    DEFAULT_POOL_GROUP.to_string()
}

/// host-shim's manifests for `pool` (multi-document YAML): ServiceAccount, Role,
/// RoleBinding, ConfigMap (the EndpointPickerConfig, when there is one), Deployment,
/// Service.
pub fn manifests(pool: &ShimPool<'_>, opts: &Options) -> String {
    let name = format!("{}-host-shim", pool.name);
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), name.clone()),
        (
            "app.kubernetes.io/part-of".to_string(),
            "infergate".to_string(),
        ),
    ]);
    let meta = ObjectMeta {
        name: name.clone(),
        namespace: pool.namespace.to_string(),
        labels: labels.clone(),
    };
    let sa = ServiceAccount {
        api_version: "v1".into(),
        kind: "ServiceAccount".into(),
        metadata: meta.clone(),
    };
    let read = || vec!["get".to_string(), "list".to_string(), "watch".to_string()];
    let role = Role {
        api_version: "rbac.authorization.k8s.io/v1".into(),
        kind: "Role".into(),
        metadata: meta.clone(),
        rules: vec![
            PolicyRule {
                api_groups: vec![String::new()],
                resources: vec!["pods".into()],
                verbs: read(),
            },
            PolicyRule {
                api_groups: vec![pool.group.clone()],
                resources: vec!["inferencepools".into()],
                verbs: read(),
            },
        ],
    };
    let binding = RoleBinding {
        api_version: "rbac.authorization.k8s.io/v1".into(),
        kind: "RoleBinding".into(),
        metadata: meta.clone(),
        subjects: vec![
            json!({"kind": "ServiceAccount", "name": name, "namespace": pool.namespace}),
        ],
        role_ref: json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}),
    };
    let mut args = vec![
        format!("--pool-name={}", pool.name),
        format!("--pool-namespace={}", pool.namespace),
        format!("--pool-group={}", pool.group),
        format!("--http-addr=0.0.0.0:{HOST_SHIM_HTTP_PORT}"),
        format!("--grpc-addr=0.0.0.0:{HOST_SHIM_GRPC_PORT}"),
        // As the EPP: ext_proc (9002) over TLS with a self-signed certificate, which is what
        // a Gateway wired to an InferencePool's Endpoint Picker expects. The affinity
        // plugin's pick API (9003) stays cleartext HTTP/2.
        format!("--grpc-health-port={HOST_SHIM_HEALTH_PORT}"),
    ];
    let mut docs = vec![
        serde_yaml::to_string(&sa).unwrap_or_default(),
        serde_yaml::to_string(&role).unwrap_or_default(),
        serde_yaml::to_string(&binding).unwrap_or_default(),
    ];
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    if let Some(e) = pool.epp_config {
        let cm = ConfigMap {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            metadata: meta.clone(),
            data: BTreeMap::from([("epp.yaml".to_string(), e.to_string())]),
        };
        docs.push(serde_yaml::to_string(&cm).unwrap_or_default());
        args.push("--config-file=/etc/infergate/epp.yaml".into());
        mounts.push(json!({"name": "config", "mountPath": "/etc/infergate", "readOnly": true}));
        volumes.push(json!({"name": "config", "configMap": {"name": name}}));
    }
    let probe =
        |service: &str| json!({"grpc": {"port": HOST_SHIM_HEALTH_PORT, "service": service}});
    let mut liveness = probe("liveness");
    liveness["initialDelaySeconds"] = json!(5);
    liveness["periodSeconds"] = json!(10);
    let mut readiness = probe("readiness");
    readiness["periodSeconds"] = json!(2);
    let dep = Deployment {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        metadata: meta.clone(),
        spec: DeploymentSpec {
            replicas: 1,
            selector: json!({"matchLabels": {"app.kubernetes.io/name": name}}),
            template: PodTemplate {
                metadata: json!({"labels": labels}),
                spec: PodSpec {
                    service_account_name: Some(name.clone()),
                    containers: vec![Container {
                        name: "host-shim".into(),
                        image: opts.images.host_shim_image(),
                        args,
                        ports: vec![
                            json!({"name": "http", "containerPort": HOST_SHIM_HTTP_PORT}),
                            json!({"name": "grpc", "containerPort": HOST_SHIM_GRPC_PORT}),
                            json!({"name": "grpc-health", "containerPort": HOST_SHIM_HEALTH_PORT}),
                        ],
                        volume_mounts: mounts,
                        readiness_probe: readiness,
                        liveness_probe: Some(liveness),
                    }],
                    volumes,
                },
            },
        },
    };
    docs.push(serde_yaml::to_string(&dep).unwrap_or_default());
    let svc = Service {
        api_version: "v1".into(),
        kind: "Service".into(),
        metadata: meta,
        spec: ServiceSpec {
            selector: BTreeMap::from([("app.kubernetes.io/name".to_string(), name.clone())]),
            ports: vec![
                ServicePort {
                    name: "http".into(),
                    port: HOST_SHIM_HTTP_PORT,
                    target_port: HOST_SHIM_HTTP_PORT,
                    app_protocol: "http".into(),
                },
                ServicePort {
                    name: "grpc".into(),
                    port: HOST_SHIM_GRPC_PORT,
                    target_port: HOST_SHIM_GRPC_PORT,
                    app_protocol: "grpc".into(),
                },
            ],
        },
    };
    docs.push(serde_yaml::to_string(&svc).unwrap_or_default());
    format!(
        "# host-shim for InferencePool {}/{} ({}; pods {:?}, port {}): it watches the pool and its\n# pods through the Kubernetes API (ServiceAccount + Role below); no pod address is configured.\n{}",
        pool.namespace,
        pool.name,
        pool.group,
        pool.selector,
        pool.port,
        docs.join("---\n")
    )
}

/// host-shim's manifests read back (unknown fields refused).
#[derive(Debug, Clone)]
pub struct ShimManifests {
    /// The ServiceAccount.
    pub service_account: ServiceAccount,
    /// The Role.
    pub role: Role,
    /// The RoleBinding.
    pub role_binding: RoleBinding,
    /// The EndpointPickerConfig ConfigMap, when there is one.
    pub config_map: Option<ConfigMap>,
    /// The Deployment.
    pub deployment: Deployment,
    /// The Service.
    pub service: Service,
}

/// Reads [`manifests`]' output back, document by document by `kind`.
pub fn read(text: &str) -> Result<ShimManifests, String> {
    let mut sa = None;
    let mut role = None;
    let mut binding = None;
    let mut cm = None;
    let mut dep = None;
    let mut svc = None;
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| e.to_string())?;
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        let err = |e: serde_json::Error| format!("{kind}: {e}");
        match kind.as_str() {
            "ServiceAccount" => sa = Some(serde_json::from_value(v).map_err(err)?),
            "Role" => role = Some(serde_json::from_value(v).map_err(err)?),
            "RoleBinding" => binding = Some(serde_json::from_value(v).map_err(err)?),
            "ConfigMap" => cm = Some(serde_json::from_value(v).map_err(err)?),
            "Deployment" => dep = Some(serde_json::from_value(v).map_err(err)?),
            "Service" => svc = Some(serde_json::from_value(v).map_err(err)?),
            other => return Err(format!("unexpected kind `{other}`")),
        }
    }
    Ok(ShimManifests {
        service_account: sa.ok_or("no ServiceAccount")?,
        role: role.ok_or("no Role")?,
        role_binding: binding.ok_or("no RoleBinding")?,
        config_map: cm,
        deployment: dep.ok_or("no Deployment")?,
        service: svc.ok_or("no Service")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options::default()
    }

    #[test]
    fn deployment_has_pool_flags_rbac_and_probes_and_no_pod_address() {
        let selector = BTreeMap::from([("app".to_string(), "vllm".to_string())]);
        let pool = ShimPool {
            namespace: "llm",
            name: "pool",
            group: "inference.networking.x-k8s.io".into(),
            epp_config: Some(
                "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n",
            ),
            selector: &selector,
            port: 8000,
        };
        let text = manifests(&pool, &opts());
        let m = read(&text).unwrap();
        let c = &m.deployment.spec.template.spec.containers[0];
        for want in [
            "--pool-name=pool",
            "--pool-namespace=llm",
            "--pool-group=inference.networking.x-k8s.io",
            "--config-file=/etc/infergate/epp.yaml",
            "--grpc-health-port=9004",
        ] {
            assert!(c.args.contains(&want.to_string()), "{want}: {:?}", c.args);
        }
        assert!(!c.args.iter().any(|a| a.starts_with("--endpoints")));
        assert_eq!(
            m.deployment
                .spec
                .template
                .spec
                .service_account_name
                .as_deref(),
            Some("pool-host-shim")
        );
        assert_eq!(c.readiness_probe["grpc"]["service"], "readiness");
        assert_eq!(
            c.liveness_probe.as_ref().unwrap()["grpc"]["service"],
            "liveness"
        );
        assert_eq!(m.role.rules[0].resources, vec!["pods"]);
        assert_eq!(
            m.role.rules[1].api_groups,
            vec!["inference.networking.x-k8s.io"]
        );
        for r in &m.role.rules {
            assert_eq!(r.verbs, vec!["get", "list", "watch"]);
        }
        assert_eq!(m.role_binding.subjects[0]["name"], "pool-host-shim");
        assert_eq!(m.role_binding.role_ref["name"], "pool-host-shim");
        assert!(m.config_map.unwrap().data.contains_key("epp.yaml"));
        assert!(!text.contains("podIP"));
    }

    #[test]
    fn without_config_there_is_no_config_map() {
        let selector = BTreeMap::new();
        let pool = ShimPool {
            namespace: "llm",
            name: "pool",
            group: DEFAULT_POOL_GROUP.into(),
            epp_config: None,
            selector: &selector,
            port: 8000,
        };
        let m = read(&manifests(&pool, &opts())).unwrap();
        assert!(m.config_map.is_none());
        assert!(m.deployment.spec.template.spec.volumes.is_empty());
        assert!(read("kind: Secret\n").is_err());
    }
}
