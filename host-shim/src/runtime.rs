//! The live wiring around the scheduler: endpoint sources, one scraper per endpoint, the
//! wall clock, telemetry, and config reloads. The servers call [`Runtime::pick`] and
//! [`Runtime::observe_served`].

use crate::clock::WallClock;
use crate::endpoint::{Endpoint, EndpointState};
use crate::peers::PeerFanout;
use crate::scheduler::config::SchedulerConfig;
use crate::scheduler::{Pick, PickError, PickRequest, Scheduler};
use crate::scrape::{self, EndpointCell, ScrapeConfig};
use crate::source::EndpointSource;
use crate::telemetry::Telemetry;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Shared state of a running host-shim.
#[derive(Debug)]
pub struct Runtime {
    /// The scheduler.
    pub scheduler: Scheduler,
    /// host-shim's own metrics.
    pub telemetry: Telemetry,
    /// The wait queue for picks when every endpoint is saturated.
    pub flow: crate::flow_control::FlowController,
    clock: WallClock,
    scrape: ScrapeConfig,
    cells: RwLock<Arc<Vec<Arc<EndpointCell>>>>,
    scrapers: Mutex<HashMap<Endpoint, (Arc<EndpointCell>, AbortHandle)>>,
    peers: OnceLock<PeerFanout>,
    /// Whether the endpoint set is known (false until Kubernetes discovery's first lists).
    ready: watch::Sender<bool>,
}

/// Who reported that an endpoint served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A gateway plugin, through `POST /v1/served`.
    Http,
    /// Envoy's ext_proc stream (host-shim picked and saw the response).
    ExtProc,
    /// Another host-shim replica sharing what its gateways reported.
    Peer,
}

impl Source {
    /// The `api` label of the served-report stats.
    pub fn api(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::ExtProc => "ext_proc",
            Self::Peer => "peer",
        }
    }
}

impl Runtime {
    /// A runtime with no endpoints yet.
    pub fn new(scheduler: Scheduler, scrape: ScrapeConfig) -> Arc<Self> {
        Arc::new(Self {
            scheduler,
            telemetry: Telemetry::new(),
            flow: crate::flow_control::FlowController::new(),
            clock: WallClock::new(),
            scrape,
            cells: RwLock::new(Arc::new(Vec::new())),
            scrapers: Mutex::new(HashMap::new()),
            peers: OnceLock::new(),
            ready: watch::Sender::new(true),
        })
    }

    /// Whether the endpoint set is known; readiness probes and gRPC health follow it.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Marks the endpoint set known (or not yet known).
    pub fn set_ready(&self, ready: bool) {
        self.ready.send_replace(ready);
    }

    /// A receiver seeing every readiness change.
    pub fn subscribe_ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// The clock picks are made against.
    pub fn clock(&self) -> &WallClock {
        &self.clock
    }

    /// Every endpoint's current state.
    pub fn snapshot(&self) -> Vec<EndpointState> {
        let cells = self.cells.read().unwrap_or_else(|p| p.into_inner()).clone();
        cells.iter().map(|c| c.get()).collect()
    }

    /// Picks an endpoint for `req` now, recording telemetry under `api`.
    pub fn pick(&self, req: &PickRequest, api: &'static str) -> Result<Pick, PickError> {
        let started = Instant::now();
        let states = self.snapshot();
        let result = self.scheduler.pick(req, &states, self.clock.now());
        self.telemetry.record_pick(api, &result, started.elapsed());
        result
    }

    /// Records that `endpoint` served a request with `hashes`; `false` if it is unknown.
    /// Reports from a gateway (not from a peer) are also shared with the peers, if any.
    pub fn observe_served(&self, endpoint: &Endpoint, hashes: &[u64], source: Source) -> bool {
        let known = if source == Source::Peer {
            self.scheduler.observe_peer_served(endpoint, hashes)
        } else {
            self.scheduler.observe_served(endpoint, hashes)
        };
        self.telemetry
            .record_served(source.api(), if known { "ok" } else { "unknown_endpoint" });
        if known && source != Source::Peer {
            if let Some(peers) = self.peers.get() {
                peers.send(crate::server::wire::encode_served(endpoint, hashes).into());
            }
        }
        known
    }

    /// Records that the request with `hashes` that `endpoint` served has completed (it no
    /// longer counts in flight); `false` if the endpoint is unknown.
    pub fn observe_completed(&self, endpoint: &Endpoint, hashes: &[u64]) -> bool {
        let known = self.scheduler.observe_completed(endpoint, hashes);
        self.flow.wake();
        known
    }

    /// Shares served reports with the host-shim replicas at `peers` (their HTTP addresses).
    /// Only the first call has an effect. Must be called inside a tokio runtime.
    pub fn set_peers(&self, peers: &[std::net::SocketAddr]) {
        if !peers.is_empty() {
            let _ = self.peers.set(PeerFanout::start(peers));
        }
    }

    /// Replaces the endpoint set: starts scrapers for new endpoints, stops removed ones.
    /// Must be called inside a tokio runtime.
    pub fn set_endpoints(&self, endpoints: &[Endpoint]) {
        let mut scrapers = self.scrapers.lock().unwrap_or_else(|p| p.into_inner());
        scrapers.retain(|e, (_, handle)| {
            let keep = endpoints.contains(e);
            if !keep {
                handle.abort();
                self.telemetry.forget_endpoint(e);
            }
            keep
        });
        let mut cells = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            let (cell, _) = scrapers.entry(*e).or_insert_with(|| {
                let cell = Arc::new(EndpointCell::notifying(*e, self.flow.waker()));
                let task = tokio::spawn(scrape::run(cell.clone(), self.clock, self.scrape.clone()));
                (cell, task.abort_handle())
            });
            cells.push(cell.clone());
        }
        self.scheduler.sync_endpoints(endpoints);
        *self.cells.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(cells);
    }

    /// Loads `source`'s initial set and then follows its changes in a background task.
    pub fn start_source(
        self: &Arc<Self>,
        mut source: Box<dyn EndpointSource>,
    ) -> Result<(), crate::source::SourceError> {
        let initial = source.load()?;
        self.set_endpoints(&initial);
        let (tx, mut rx) = watch::channel(Arc::new(initial));
        tokio::spawn(source.watch(tx));
        let rt = Arc::downgrade(self);
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let eps = rx.borrow_and_update().clone();
                match rt.upgrade() {
                    Some(rt) => rt.set_endpoints(&eps),
                    None => return,
                }
            }
        });
        Ok(())
    }

    /// Re-reads `path` every `interval` and switches to the new `EndpointPickerConfig` when
    /// its text differs from `loaded` (the text the running config came from) and is valid;
    /// an invalid one is logged and the running config kept.
    pub fn watch_config_file(self: &Arc<Self>, path: PathBuf, interval: Duration, loaded: String) {
        let rt = Arc::downgrade(self);
        let mut last = Some(loaded);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(rt) = rt.upgrade() else { return };
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                if last.as_deref() == Some(text.as_str()) {
                    continue;
                }
                match SchedulerConfig::parse(&text) {
                    Ok(cfg) => {
                        rt.scheduler.reconfigure(cfg);
                        rt.flow.wake();
                        tracing::info!(path = %path.display(), "EndpointPickerConfig reloaded");
                    }
                    Err(e) => tracing::warn!(
                        path = %path.display(), error = %e,
                        "EndpointPickerConfig rejected; keeping the running config"
                    ),
                }
                last = Some(text);
            }
        });
    }
}
