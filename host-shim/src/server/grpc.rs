//! The gRPC listener: the ext_proc Endpoint Picker and the standard health service.

use super::ext_proc::{EppConfig, EppService};
use crate::runtime::Runtime;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessorServer;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

/// Serves ext_proc and `grpc.health.v1.Health` on `listener` until it fails.
///
/// Health follows [`super::health`]: `liveness` always `SERVING`; `""`, `readiness` and
/// `envoy.service.ext_proc.v3.ExternalProcessor` once the endpoint set is known.
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    config: EppConfig,
) -> Result<(), tonic::transport::Error> {
    serve_with(listener, runtime, config, None).await
}

/// [`serve`], over TLS with `tls` when given (the EPP's `--secure-serving`).
pub async fn serve_with(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    config: EppConfig,
    tls: Option<tonic::transport::Identity>,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    super::health::follow(reporter, &runtime).await;
    // A filter before ext_proc that buffered the body (the infergate Wasm filters reading a
    // prompt) hands it over as one message: accept one as large as the body limit plus
    // framing (tonic's default, 4 MiB, failed 4 MiB prompts).
    let max_message = config.max_body_bytes.saturating_add(64 * 1024);
    let epp = ExternalProcessorServer::new(EppService::new(runtime, config))
        .max_decoding_message_size(max_message);
    let mut builder = tonic::transport::Server::builder();
    if let Some(identity) = tls {
        builder =
            builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    builder
        .add_service(health)
        .add_service(epp)
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await
}
