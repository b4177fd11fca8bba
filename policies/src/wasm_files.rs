//! The HTTP way to load the plugins (what Kuadrant's operator does on Istio since v1.5): the
//! EnvoyFilter's Wasm `vm_config.code.remote` is an HTTP URI plus the module's sha256, served
//! by `infergate-wasm-server` from the `infergate-wasm-files` image, so a cluster without an
//! OCI-capable Wasm fetcher can still load them.

use crate::auth::Upstream;
use crate::images::{plugin_image, ImageRefs, NON_ROOT, WASM_FILES, WASM_FILES_PORT};
use serde_json::{json, Value};

/// Envoy cluster of the file server.
pub const CLUSTER: &str = "infergate-wasm-files";

/// In-cluster host name of the file server's Service.
pub fn host(namespace: &str) -> String {
    format!("{WASM_FILES}.{namespace}.svc.cluster.local")
}

/// The Envoy cluster reaching the file server.
pub fn upstream(namespace: &str) -> Upstream {
    Upstream {
        name: CLUSTER.into(),
        host: host(namespace),
        port: WASM_FILES_PORT,
        tls: false,
    }
}

/// A plugin's `vm_config.code`: `remote` with the file server's URI and the `.wasm`'s sha256
/// (an empty sha256 when the images were not read: Envoy refuses that, so render with
/// `--images`).
pub fn code(plugin: &str, namespace: &str, images: &ImageRefs) -> Value {
    json!({"remote": {
        "http_uri": {
            "uri": format!("http://{}:{WASM_FILES_PORT}/{}.wasm", host(namespace), plugin_image(plugin)),
            "cluster": CLUSTER,
            "timeout": "30s",
        },
        "sha256": images.plugin_wasm_sha256(plugin).unwrap_or_default(),
        "retry_policy": {"num_retries": 5},
    }})
}

/// The file server's Deployment and Service (YAML, two documents).
pub fn manifests(namespace: &str, images: &ImageRefs) -> String {
    let labels =
        json!({"app.kubernetes.io/name": WASM_FILES, "app.kubernetes.io/part-of": "infergate"});
    let meta = json!({"name": WASM_FILES, "namespace": namespace, "labels": labels});
    let (uid, gid) = NON_ROOT.split_once(':').unwrap_or(("65532", "65532"));
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": WASM_FILES}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": false,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": uid.parse::<u32>().unwrap_or(65532), "runAsGroup": gid.parse::<u32>().unwrap_or(65532)},
                    "containers": [{
                        "name": "wasm-files",
                        "image": images.reference(WASM_FILES),
                        "args": ["--dir=/wasm", format!("--addr=0.0.0.0:{WASM_FILES_PORT}")],
                        "ports": [{"name": "http", "containerPort": WASM_FILES_PORT}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": WASM_FILES_PORT}},
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                    }],
                },
            },
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "selector": {"app.kubernetes.io/name": WASM_FILES},
            "ports": [{"name": "http", "port": WASM_FILES_PORT, "targetPort": WASM_FILES_PORT, "appProtocol": "http"}],
        },
    });
    let pinned = if images.pins.is_some() {
        ""
    } else {
        "# NOT PINNED: rendered without --images, so code.remote.sha256 is empty and Envoy will refuse\n# the plugins. Run `make images` and render with --images target/images.\n"
    };
    format!(
        "# Serves the plugins' .wasm files for envoyfilter-wasm.yaml (code.remote: HTTP URI + sha256).\n{pinned}{}---\n{}",
        serde_yaml::to_string(&deployment).unwrap_or_default(),
        serde_yaml::to_string(&service).unwrap_or_default()
    )
}
