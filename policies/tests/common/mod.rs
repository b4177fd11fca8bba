//! Shared helpers: rendering the examples.

#![allow(dead_code)]

use infergate_policies::resources::Bundle;
use infergate_policies::{render, Options, Rendered};
use std::path::PathBuf;

pub const ENDPOINTS: [&str; 2] = ["10.0.0.7:8000", "10.0.0.8:8000"];

pub fn example(parts: &[&str]) -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    parts.iter().map(|p| root.join(p)).collect()
}

pub fn options() -> Options {
    Options {
        endpoints: ENDPOINTS.iter().map(|s| s.to_string()).collect(),
        kube_token: Some("gateway-sa-token".into()),
        ..Options::default()
    }
}

pub fn render_example(parts: &[&str]) -> Rendered {
    let bundle = Bundle::load(&example(parts)).unwrap();
    render(&bundle, &options()).unwrap_or_else(|e| panic!("{parts:?}: {e}"))
}

/// Renders inline YAML.
pub fn render_yaml(yaml: &str) -> infergate_policies::Result<Rendered> {
    let mut b = Bundle::default();
    b.add_yaml(yaml, std::path::Path::new("inline.yaml"))?;
    render(&b, &options())
}

/// The Gateway + HTTPRoute most inline tests use.
pub const TOPOLOGY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: chat, namespace: ns}
spec:
  parentRefs: [{name: gw}]
  rules:
    - name: chat
      matches: [{path: {type: PathPrefix, value: /v1/chat}}]
    - name: models
      matches: [{path: {type: PathPrefix, value: /v1/models}}]
---
apiVersion: v1
kind: Secret
metadata: {name: k1, namespace: ns, labels: {app: t}, annotations: {secret.kuadrant.io/user-id: u1}}
stringData: {api_key: key-one}
"#;

/// A child process killed and reaped when the test lets go of it.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh, empty scratch folder `infergate-<suite>-<name>-<pid>-<n>` under the temp dir.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    // Unique per call: tests run in parallel and several may ask for the same `name`.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!(
        "infergate-{suite}-{name}-{}-{seq}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
