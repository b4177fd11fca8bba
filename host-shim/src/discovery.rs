//! EPP mode start-up: Kubernetes discovery from the pool / selector flags, and the TLS
//! identity of `--secure-serving`.

use crate::cli::Args;
use anyhow::Context;
use host_shim::runtime::Runtime;
use host_shim::source::kube::pool::{PoolApi, PoolSpec};
use host_shim::source::kube::{self as kube_source, KubeDiscovery, Target};
use std::path::Path;
use std::sync::Arc;

/// Connects to the API server and starts following the pool's (or selector's) pods. The
/// runtime is not ready until the first lists complete.
pub async fn start(args: &Args, runtime: &Arc<Runtime>) -> anyhow::Result<()> {
    let target = match (&args.pool_name, &args.endpoint_selector) {
        (Some(name), _) => Target::Pool {
            name: name.clone(),
            api: PoolApi::for_group(&args.pool_group)?,
        },
        (None, Some(selector)) => Target::Selector(PoolSpec::from_flags(
            selector,
            args.endpoint_target_ports.as_deref().unwrap_or(""),
        )?),
        (None, None) => anyhow::bail!("give --pool-name or --endpoint-selector"),
    };
    // kube's errors can display as an empty string; the Debug form names the cause.
    let client = kube_source::client().await.map_err(|e| {
        anyhow::anyhow!("Kubernetes client (in-cluster service account or KUBECONFIG): {e:?}")
    })?;
    let namespace = kube_source::namespace(args.pool_namespace.as_deref(), &client);
    tracing::info!(
        namespace,
        ?target,
        "discovering endpoints through the Kubernetes API"
    );
    KubeDiscovery { namespace, target }.spawn(client, runtime.clone());
    Ok(())
}

/// The ext_proc server's certificate: `tls.crt` / `tls.key` in `cert_path`, or a fresh
/// self-signed one (as the EPP does; Envoy does not verify it).
pub fn tls_identity(cert_path: Option<&Path>) -> anyhow::Result<tonic::transport::Identity> {
    match cert_path {
        Some(dir) => {
            let read = |name: &str| {
                let p = dir.join(name);
                std::fs::read(&p)
                    .with_context(|| format!("--cert-path: cannot read {}", p.display()))
            };
            Ok(tonic::transport::Identity::from_pem(
                read("tls.crt")?,
                read("tls.key")?,
            ))
        }
        None => {
            let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
                .context("self-signed certificate")?;
            Ok(tonic::transport::Identity::from_pem(
                cert.cert.pem(),
                cert.key_pair.serialize_pem(),
            ))
        }
    }
}
