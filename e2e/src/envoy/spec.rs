//! The typed description of a gateway that [`super::bootstrap`] turns into Envoy config.

use crate::paths;
use crate::tls::TlsFiles;
use anyhow::Result;
use std::path::PathBuf;

/// Name of the ORIGINAL_DST cluster that sends each request to the address in
/// `x-gateway-destination-endpoint`.
pub const MODEL_CLUSTER: &str = "model-servers";

/// One downstream listener on loopback.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    /// Listener name (also the stats prefix).
    pub name: String,
    /// Port to bind; 0 lets the kernel choose (read it back with [`super::Envoy::port`]).
    pub port: u16,
    /// Terminate TLS with these files (HTTPS), or plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
}

/// A proxy-wasm HTTP filter in the chain.
#[derive(Debug, Clone)]
pub struct WasmFilter {
    /// Plugin name (`auth`, `ratelimit`, `affinity`); also the Wasm VM id.
    pub name: String,
    /// The `.wasm` file.
    pub wasm: PathBuf,
    /// The plugin configuration, handed to `on_configure` verbatim.
    pub config: String,
}

impl WasmFilter {
    /// Our built plugin `infergate_<name>.wasm` with a configuration.
    pub fn plugin(name: &str, config: impl Into<String>) -> Result<Self> {
        Ok(Self {
            name: name.to_string(),
            wasm: paths::plugin_wasm(name)?,
            config: config.into(),
        })
    }
}

/// Envoy's ext_proc filter calling an Endpoint Picker (host-shim's gRPC listener), as a
/// Gateway API Inference Extension deployment configures it.
#[derive(Debug, Clone)]
pub struct ExtProcSpec {
    /// The HTTP/2 cluster of the picker.
    pub cluster: String,
    /// `request_body_mode`: `FULL_DUPLEX_STREAMED` (llm-d's default) or `BUFFERED`.
    pub body_mode: String,
}

/// A route: requests whose path starts with `prefix` go to `cluster`.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// Path prefix to match.
    pub prefix: String,
    /// Replace the matched prefix with this (the guide's `/<namespace>/<model>/` → `/`).
    pub prefix_rewrite: Option<String>,
    /// Target cluster.
    pub cluster: String,
}

/// An extra upstream cluster with fixed addresses (e.g. host-shim for plugin callouts).
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Cluster name, as plugins refer to it.
    pub name: String,
    /// `ip:port` addresses.
    pub addresses: Vec<std::net::SocketAddr>,
    /// Speak HTTP/2 to it (gRPC).
    pub http2: bool,
}

/// A consistent-hash cluster for the affinity plugin's sidecar-less hint mode: a `RING_HASH`
/// cluster over fixed pods, and routes to it hash on the hint header.
#[derive(Debug, Clone)]
pub struct RingHashSpec {
    /// Cluster name.
    pub cluster: String,
    /// The pods.
    pub addresses: Vec<std::net::SocketAddr>,
    /// The header the routes hash on (the plugin's `hintHeader`).
    pub header: String,
}

/// A whole gateway: listeners, the filter chain, routes and clusters.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    /// Downstream listeners; all share the same filter chain and routes.
    pub listeners: Vec<ListenerSpec>,
    /// Wasm filters, in order, before the router.
    pub filters: Vec<WasmFilter>,
    /// An ext_proc Endpoint Picker after the Wasm filters.
    pub ext_proc: Option<ExtProcSpec>,
    /// Routes, first match wins. Empty means one catch-all route to [`MODEL_CLUSTER`].
    pub routes: Vec<RouteSpec>,
    /// Extra clusters besides [`MODEL_CLUSTER`].
    pub clusters: Vec<ClusterSpec>,
    /// A consistent-hash cluster (hint mode).
    pub ring_hash: Option<RingHashSpec>,
    /// Envoy worker threads (`--concurrency`).
    pub concurrency: u32,
    /// Upstream request timeout in seconds (0 disables it, for long streams).
    pub route_timeout_secs: u32,
    /// Set the Wasm `allow_on_headers_stop_iteration` field (Envoy >= 1.35) and tell our
    /// plugins so: each plugin configuration that is a JSON object without
    /// `allowOnHeadersStopIteration` gets it set to `true`. `false` omits the field and leaves
    /// the configurations as given, so the plugins run in their no-hold mode (as under a
    /// `WasmPlugin`, an `EnvoyExtensionPolicy` or Envoy 1.34).
    pub allow_on_headers_stop_iteration: bool,
}

impl Default for GatewaySpec {
    /// One plain HTTP listener on a free port, no filters, the catch-all model route, one
    /// worker.
    fn default() -> Self {
        Self {
            listeners: vec![ListenerSpec {
                name: "http".to_string(),
                port: 0,
                tls: None,
            }],
            filters: Vec::new(),
            ext_proc: None,
            routes: Vec::new(),
            clusters: Vec::new(),
            ring_hash: None,
            concurrency: 1,
            route_timeout_secs: 0,
            allow_on_headers_stop_iteration: true,
        }
    }
}

impl GatewaySpec {
    /// Appends a Wasm filter to the chain.
    pub fn with_filter(mut self, filter: WasmFilter) -> Self {
        self.filters.push(filter);
        self
    }

    /// Adds an HTTPS listener on a free port.
    pub fn with_https(mut self, tls: TlsFiles) -> Self {
        self.listeners.push(ListenerSpec {
            name: "https".to_string(),
            port: 0,
            tls: Some(tls),
        });
        self
    }
}
