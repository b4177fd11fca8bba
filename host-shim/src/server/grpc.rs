//! The gRPC listener: the ext_proc Endpoint Picker and the standard health service.

use super::ext_proc::{EppConfig, EppService};
use crate::runtime::Runtime;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessorServer;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

/// Serves ext_proc and `grpc.health.v1.Health` on `listener` until it fails.
///
/// Health reports `SERVING` for the overall service (`""`) and for
/// `envoy.service.ext_proc.v3.ExternalProcessor`.
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    config: EppConfig,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<ExternalProcessorServer<EppService>>()
        .await;
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let epp = ExternalProcessorServer::new(EppService::new(runtime, config));
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(epp)
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await
}
