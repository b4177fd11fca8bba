//! Endpoints from the Kubernetes API, as llm-d's Endpoint Picker finds them: the pods of an
//! `InferencePool` (`--pool-name`), or of a label selector (`--endpoint-selector`).
//!
//! | module | job |
//! |---|---|
//! | [`pool`] | the InferencePool's selector and ports (v1 and v1alpha2), the selector flags |
//! | [`discovery`] | the endpoint set as a pure function of watch events (readiness rules, churn) |
//! | [`pod`] | a `Pod` as discovery sees it |
//! | [`watch`] | list + watch with `kube::runtime::watcher`, applying changes to the runtime |
//! | [`metrics`] | discovery's Prometheus metrics |

pub mod discovery;
pub mod metrics;
pub mod pod;
pub mod pool;
pub mod watch;

pub use watch::{KubeDiscovery, Target};

/// A client from `KUBECONFIG` (or `~/.kube/config`) outside a cluster, and from the pod's
/// service account (`KUBERNETES_SERVICE_HOST`, token, CA) inside one.
pub async fn client() -> Result<::kube::Client, ::kube::Error> {
    ::kube::Client::try_default().await
}

/// The namespace to watch: `--pool-namespace` if given, else the `NAMESPACE` environment
/// variable (the EPP's downward-API convention), else the client's default namespace (the
/// service account's namespace in a cluster, the kubeconfig context's outside).
pub fn namespace(flag: Option<&str>, client: &::kube::Client) -> String {
    if let Some(ns) = flag.filter(|s| !s.is_empty()) {
        return ns.to_string();
    }
    match std::env::var("NAMESPACE") {
        Ok(ns) if !ns.is_empty() => ns,
        _ => client.default_namespace().to_string(),
    }
}
