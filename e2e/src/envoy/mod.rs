//! Running the real Envoy: a typed description of the gateway ([`GatewaySpec`]), its
//! bootstrap ([`bootstrap`]), and the supervised process ([`Envoy`]).

pub mod bootstrap;
mod process;
mod spec;

pub use process::Envoy;
pub use spec::{
    ClusterSpec, ExtProcSpec, GatewaySpec, ListenerSpec, RingHashSpec, RouteSpec, WasmFilter,
    MODEL_CLUSTER,
};
