//! The network faces of host-shim: the HTTP listener (pick API, `/metrics`, `/healthz`,
//! `/debug/state`) and the gRPC listener (ext_proc EPP, `grpc.health.v1.Health`).

pub mod ext_proc;
pub mod grpc;
pub mod health;
pub mod http;
pub mod wire;
