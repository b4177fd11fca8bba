//! [`Gateway`]: one builder for the Envoy set-ups the suites start — which plugins in which
//! order with which configuration, which side services (rate limit service, host-shim, an
//! ext_proc Endpoint Picker) as clusters, and Envoy's own knobs.

use infergate_e2e::envoy::{ClusterSpec, Envoy, ExtProcSpec, GatewaySpec, RouteSpec, WasmFilter};
use serde_json::{json, Value};
use std::net::SocketAddr;

/// Name of the cluster the ratelimit plugin's `global.cluster` names in the suites.
pub const RLS_CLUSTER: &str = "ratelimit";
/// Name of the cluster the affinity plugin's `hostShim.cluster` names in the suites.
pub const HOST_SHIM_CLUSTER: &str = "host-shim";
/// Name of the ext_proc Endpoint Picker's cluster.
pub const EPP_CLUSTER: &str = "epp";

/// Starts building a gateway: `Gateway::builder().auth(..).ratelimit(..).pinned_to(pod)
/// .rls(addr).start()`. Plugins run in the order they are added.
pub struct Gateway;

impl Gateway {
    /// A builder over `GatewaySpec::default()`: no plugins, no side clusters.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::on(GatewaySpec::default())
    }
}

/// A gateway being described; [`GatewayBuilder::start`] runs it in a real Envoy.
pub struct GatewayBuilder {
    spec: GatewaySpec,
    plugins: Vec<(String, Value)>,
}

impl GatewayBuilder {
    /// A builder over `spec` (its filters come first, then the plugins added here).
    pub fn on(spec: GatewaySpec) -> Self {
        Self {
            spec,
            plugins: Vec::new(),
        }
    }

    /// Adds the plugin `name` (`auth`, `ratelimit`, `affinity`) with `config`, after the
    /// plugins added so far.
    pub fn plugin(mut self, name: &str, config: Value) -> Self {
        self.plugins.push((name.to_string(), config));
        self
    }

    /// Adds the auth plugin.
    pub fn auth(self, config: Value) -> Self {
        self.plugin("auth", config)
    }

    /// Adds the ratelimit plugin.
    pub fn ratelimit(self, config: Value) -> Self {
        self.plugin("ratelimit", config)
    }

    /// Adds the affinity plugin.
    pub fn affinity(self, config: Value) -> Self {
        self.plugin("affinity", config)
    }

    /// Adds the affinity plugin with the one endpoint `pod`: every request goes there.
    pub fn pinned_to(self, pod: SocketAddr) -> Self {
        self.affinity(json!({"endpoints": [pod.to_string()]}))
    }

    /// Adds a cluster `name` of the one address `addr`.
    pub fn cluster(mut self, name: &str, addr: SocketAddr, http2: bool) -> Self {
        self.spec.clusters.push(ClusterSpec {
            name: name.to_string(),
            addresses: vec![addr],
            http2,
        });
        self
    }

    /// Replaces the side clusters with `clusters`.
    pub fn clusters(mut self, clusters: Vec<ClusterSpec>) -> Self {
        self.spec.clusters = clusters;
        self
    }

    /// The rate limit service (gRPC) at `addr`, as cluster [`RLS_CLUSTER`].
    pub fn rls(self, addr: SocketAddr) -> Self {
        self.cluster(RLS_CLUSTER, addr, true)
    }

    /// host-shim's pick API (HTTP/2) at `addr`, as cluster [`HOST_SHIM_CLUSTER`].
    pub fn host_shim(self, addr: SocketAddr) -> Self {
        self.cluster(HOST_SHIM_CLUSTER, addr, true)
    }

    /// Envoy's ext_proc filter asking the Endpoint Picker at `addr` (cluster [`EPP_CLUSTER`])
    /// with request bodies sent in `body_mode` (`FULL_DUPLEX_STREAMED`, `BUFFERED`, …).
    pub fn ext_proc(mut self, addr: SocketAddr, body_mode: &str) -> Self {
        self.spec.ext_proc = Some(ExtProcSpec {
            cluster: EPP_CLUSTER.into(),
            body_mode: body_mode.into(),
        });
        self.cluster(EPP_CLUSTER, addr, true)
    }

    /// Envoy worker threads.
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.spec.concurrency = workers;
        self
    }

    /// The route timeout.
    pub fn route_timeout_secs(mut self, secs: u32) -> Self {
        self.spec.route_timeout_secs = secs;
        self
    }

    /// Envoy's `allow_on_headers_stop_iteration` (hold mode).
    pub fn hold_headers(mut self, on: bool) -> Self {
        self.spec.allow_on_headers_stop_iteration = on;
        self
    }

    /// Replaces the routes.
    pub fn routes(mut self, routes: Vec<RouteSpec>) -> Self {
        self.spec.routes = routes;
        self
    }

    /// The finished spec; an error names the plugin whose `.wasm` is missing.
    pub fn spec(self) -> anyhow::Result<GatewaySpec> {
        let mut spec = self.spec;
        for (name, config) in self.plugins {
            spec = spec.with_filter(WasmFilter::plugin(&name, config.to_string())?);
        }
        Ok(spec)
    }

    /// Starts Envoy with the finished spec.
    pub async fn start(self) -> anyhow::Result<Envoy> {
        Envoy::start(&self.spec()?).await
    }
}
