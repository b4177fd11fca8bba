//! A Kubernetes `Pod` as discovery sees it.

use super::discovery::PodInfo;
use k8s_openapi::api::core::v1::Pod;

impl PodInfo {
    /// The fields discovery needs, read from the API server's `Pod`.
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        Self {
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            ip: status
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse().ok()),
            ready,
            deleting: meta.deletion_timestamp.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_api_servers_pod_json() {
        // Trimmed from a real `kubectl get pod -o json` of a vLLM pod.
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "qwen3-0-6b-predictor-7d9f", "namespace": "my-first-model",
                "uid": "5f0c8b1e-6a0e-4a51-9b7e-2c4e3b0d9a11", "resourceVersion": "123",
                "labels": {"app.kubernetes.io/name": "qwen3-0-6b", "pod-template-hash": "7d9f"}},
            "spec": {"containers": [{"name": "main", "image": "vllm/vllm-openai:v0.8.4"}]},
            "status": {"phase": "Running", "podIP": "10.128.2.17",
                "podIPs": [{"ip": "10.128.2.17"}],
                "conditions": [
                    {"type": "Initialized", "status": "True"},
                    {"type": "Ready", "status": "True"},
                    {"type": "ContainersReady", "status": "True"}]}
        }))
        .unwrap();
        let info = PodInfo::from_pod(&pod);
        assert_eq!(info.ip, Some("10.128.2.17".parse().unwrap()));
        assert!(info.ready && !info.deleting);
        assert_eq!(info.namespace, "my-first-model");
        assert_eq!(info.labels["pod-template-hash"], "7d9f");

        let mut terminating = pod.clone();
        terminating.metadata.deletion_timestamp =
            serde_json::from_value(serde_json::json!("2026-12-01T15:00:00Z")).unwrap();
        assert!(PodInfo::from_pod(&terminating).deleting);
        let mut unready = pod.clone();
        if let Some(cs) = unready.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            cs[1].status = "False".into();
        }
        assert!(!PodInfo::from_pod(&unready).ready);
        let mut pending = pod;
        pending.status = None;
        let info = PodInfo::from_pod(&pending);
        assert!(info.ip.is_none() && !info.ready);
    }
}
