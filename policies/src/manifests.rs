//! The Kubernetes manifests we emit, as typed structs of exactly the fields we set (tests read
//! the rendered YAML back through them with unknown fields refused).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectMeta {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A Gateway API target reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetRef {
    /// `gateway.networking.k8s.io`.
    pub group: String,
    /// `Gateway`.
    pub kind: String,
    /// Name.
    pub name: String,
}

/// Istio `WasmPlugin` (extensions.istio.io/v1alpha1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WasmPlugin {
    /// `extensions.istio.io/v1alpha1`.
    pub api_version: String,
    /// `WasmPlugin`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: WasmPluginSpec,
}

/// `WasmPlugin.spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WasmPluginSpec {
    /// The Gateway.
    pub target_refs: Vec<TargetRef>,
    /// Module URL (`oci://…`).
    pub url: String,
    /// Hex sha256 of the image manifest (when rendered from built images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `AUTHN`, `AUTHZ`, `STATS`.
    pub phase: String,
    /// Order inside a phase (higher first).
    pub priority: i32,
    /// `FAIL_CLOSE`.
    pub fail_strategy: String,
    /// `HTTP`.
    #[serde(rename = "type")]
    pub ty: String,
    /// VM settings (unset: one VM per plugin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_config: Option<Value>,
    /// The plugin configuration.
    pub plugin_config: Value,
}

/// Istio `EnvoyFilter` (networking.istio.io/v1alpha3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyFilter {
    /// `networking.istio.io/v1alpha3`.
    pub api_version: String,
    /// `EnvoyFilter`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: EnvoyFilterSpec,
}

/// `EnvoyFilter.spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyFilterSpec {
    /// The Gateway.
    pub target_refs: Vec<TargetRef>,
    /// Patches.
    pub config_patches: Vec<ConfigPatch>,
}

/// One `configPatches` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigPatch {
    /// `HTTP_FILTER`, `CLUSTER`, `HTTP_ROUTE`.
    pub apply_to: String,
    /// Match (`context: GATEWAY`, …).
    #[serde(rename = "match")]
    pub matcher: Value,
    /// `{operation, value}`.
    pub patch: Patch,
}

/// `patch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    /// `INSERT_BEFORE`, `ADD`, `MERGE`.
    pub operation: String,
    /// The Envoy config fragment.
    pub value: Value,
}

/// Envoy Gateway `EnvoyExtensionPolicy` (gateway.envoyproxy.io/v1alpha1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyExtensionPolicy {
    /// `gateway.envoyproxy.io/v1alpha1`.
    pub api_version: String,
    /// `EnvoyExtensionPolicy`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: ExtensionPolicySpec,
}

/// `EnvoyExtensionPolicy.spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionPolicySpec {
    /// The Gateway.
    pub target_refs: Vec<TargetRef>,
    /// The Wasm extensions, in chain order.
    pub wasm: Vec<EgWasm>,
}

/// One Envoy Gateway Wasm extension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgWasm {
    /// Name.
    pub name: String,
    /// Root id.
    #[serde(rename = "rootID")]
    pub root_id: String,
    /// `{type: Image, image: {url}}`.
    pub code: Value,
    /// The plugin configuration.
    pub config: Value,
    /// `false`.
    pub fail_open: bool,
}

/// `apps/v1` Deployment (the fields we set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deployment {
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: DeploymentSpec,
}

/// `Deployment.spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Replicas.
    pub replicas: u32,
    /// `{matchLabels}`.
    pub selector: Value,
    /// Pod template.
    pub template: PodTemplate,
}

/// Pod template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodTemplate {
    /// `{labels}`.
    pub metadata: Value,
    /// Pod spec.
    pub spec: PodSpec,
}

/// Pod spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSpec {
    /// The pod's ServiceAccount (host-shim watches the API server with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Containers.
    pub containers: Vec<Container>,
    /// Volumes.
    pub volumes: Vec<Value>,
}

/// A container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    /// Name.
    pub name: String,
    /// Image.
    pub image: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Ports.
    pub ports: Vec<Value>,
    /// Mounts.
    pub volume_mounts: Vec<Value>,
    /// Readiness probe.
    pub readiness_probe: Value,
    /// Liveness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Value>,
}

/// `v1` Service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// `v1`.
    pub api_version: String,
    /// `Service`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: ServiceSpec,
}

/// `Service.spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Pod labels.
    pub selector: BTreeMap<String, String>,
    /// Ports.
    pub ports: Vec<ServicePort>,
}

/// A Service port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// Name.
    pub name: String,
    /// Port.
    pub port: u16,
    /// Container port.
    pub target_port: u16,
    /// `http` / `grpc`.
    pub app_protocol: String,
}

/// `v1` ConfigMap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMap {
    /// `v1`.
    pub api_version: String,
    /// `ConfigMap`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Files.
    pub data: BTreeMap<String, String>,
}

/// Joins documents into one multi-document YAML text.
pub fn yaml_docs<T: Serialize>(docs: &[T]) -> String {
    docs.iter()
        .map(|d| serde_yaml::to_string(d).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n")
}
