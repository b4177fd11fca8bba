//! host-shim's scheduler — the same library the sidecar runs live, with the deployment guide's
//! EndpointPickerConfig (queue 2, kv-cache 2, prefix 3) — driven by the benchmark's virtual
//! clock and scraped metrics.
//!
//! The prompt is hashed exactly as the gateway's affinity plugin hashes it
//! (`infergate_core::prefix::BlockHasher` over the prompt bytes). The served endpoint is
//! reported right after the pick: in the simulator the picked engine always serves, and a
//! streaming response's headers (when the plugin reports) come before the first token.

use crate::bench::router::{ClusterView, RouteRequest, Router};
use host_shim::endpoint::{EndpointState, EngineMetrics};
use host_shim::scheduler::config::SchedulerConfig;
use host_shim::scheduler::{PickRequest, Scheduler};
use infergate_core::prefix::BlockHasher;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The host-shim scheduler as a benchmark router.
pub struct HostShimRouter {
    name: String,
    scheduler: Scheduler,
    hasher: BlockHasher,
    endpoints: Vec<host_shim::endpoint::Endpoint>,
}

impl HostShimRouter {
    /// A scheduler with the guide's profile, seeded for its random tie-breaks.
    pub fn new(seed: u64) -> Self {
        Self::with_config("host-shim".into(), SchedulerConfig::guide_default(), seed)
    }

    /// A scheduler running the EndpointPickerConfig in `path`, named `host-shim-<file stem>`.
    ///
    /// # Errors
    /// If the file cannot be read or is not a valid EndpointPickerConfig.
    pub fn from_file(path: &std::path::Path, seed: u64) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let cfg = SchedulerConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let stem = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        Ok(Self::with_config(format!("host-shim-{stem}"), cfg, seed))
    }

    fn with_config(name: String, cfg: SchedulerConfig, seed: u64) -> Self {
        let scheduler = Scheduler::new(cfg, seed);
        let hasher = scheduler.hasher();
        Self {
            name,
            scheduler,
            hasher,
            endpoints: Vec::new(),
        }
    }

    fn endpoint(i: usize) -> host_shim::endpoint::Endpoint {
        let octet = u8::try_from(i % 250).unwrap_or(0);
        let port = 8000 + u16::try_from(i / 250).unwrap_or(0);
        host_shim::endpoint::Endpoint(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, octet + 1)),
            port,
        ))
    }
}

impl Router for HostShimRouter {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn route(&mut self, req: &RouteRequest<'_>, cluster: &ClusterView<'_>) -> usize {
        if self.endpoints.len() != cluster.len() {
            self.endpoints = (0..cluster.len()).map(Self::endpoint).collect();
            self.scheduler.sync_endpoints(&self.endpoints);
        }
        let states: Vec<EndpointState> = (0..cluster.len())
            .map(|i| {
                let m = cluster.metrics(i);
                EndpointState::scraped(
                    self.endpoints[i],
                    EngineMetrics {
                        waiting: m.waiting,
                        running: m.running,
                        kv_cache_usage: m.kv_cache_usage,
                        kv_capacity_tokens: Some(m.kv_capacity_tokens),
                        prompt_tokens_total: None,
                    },
                    Duration::from_secs_f64(m.scraped_at.max(0.0)),
                )
            })
            .collect();
        let block_hashes = self.hasher.hashes(req.model, &req.prompt_bytes());
        let pick = self.scheduler.pick(
            &PickRequest {
                model: req.model.to_string(),
                block_hashes: block_hashes.clone(),
                prompt_tokens: u64::from(req.prompt_len),
                ..Default::default()
            },
            &states,
            Duration::from_secs_f64(req.now.max(0.0)),
        );
        match pick {
            Ok(p) => {
                let i = self
                    .endpoints
                    .iter()
                    .position(|e| *e == p.endpoint)
                    .unwrap_or(0);
                // The request's hashes, reported for the engine that serves it.
                self.scheduler.observe_served(&p.endpoint, &block_hashes);
                i
            }
            // Nothing ready (no scrape yet): spread by request id.
            Err(_) => usize::try_from(req.id).unwrap_or(0) % cluster.len().max(1),
        }
    }
}
