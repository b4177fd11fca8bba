//! gRPC health as llm-d's Endpoint Picker reports it: `liveness` is always `SERVING`;
//! `readiness`, the overall service (`""`) and `envoy.service.ext_proc.v3.ExternalProcessor`
//! are `SERVING` only once the endpoint set is known (Kubernetes discovery's first lists).

use crate::runtime::Runtime;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// Service name of the liveness probe.
pub const LIVENESS: &str = "liveness";
/// Service name of the readiness probe.
pub const READINESS: &str = "readiness";
/// The ext_proc service's name.
pub const EXT_PROC: &str = "envoy.service.ext_proc.v3.ExternalProcessor";

async fn report(reporter: &HealthReporter, ready: bool) {
    let status = if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;
    for service in ["", READINESS, EXT_PROC] {
        reporter.set_service_status(service, status).await;
    }
}

/// Sets the current statuses on `reporter`, then keeps them following `rt`'s readiness in
/// a background task.
pub async fn follow(reporter: HealthReporter, rt: &Arc<Runtime>) {
    let mut rx = rt.subscribe_ready();
    let now = *rx.borrow_and_update();
    report(&reporter, now).await;
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let ready = *rx.borrow_and_update();
            report(&reporter, ready).await;
        }
    });
}

/// Serves only `grpc.health.v1.Health` on `listener` (the EPP's `--grpc-health-port`).
pub async fn serve(listener: TcpListener, rt: Arc<Runtime>) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    follow(reporter, &rt).await;
    tonic::transport::Server::builder()
        .add_service(health)
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await
}
