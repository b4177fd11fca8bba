//! The Kubernetes side: list + watch of the InferencePool and of the namespace's pods with
//! `kube::runtime::watcher` (resourceVersion resume, bookmarks, relist after `410 Gone`,
//! reconnect with backoff), turned into [`Event`]s for [`Discovery`], whose changes are
//! applied to the [`Runtime`].
//!
//! A broken watch never changes the endpoint set: the watcher reconnects with backoff while
//! the last known endpoints keep serving; only a completed relist replaces the set.

use super::discovery::{Change, Discovery, Event, PodInfo};
use super::metrics::ResourceLabels;
use super::pool::{PoolApi, PoolSpec};
use crate::runtime::Runtime;
use ::kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use ::kube::runtime::{watcher, WatchStreamExt};
use ::kube::Client;
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What to discover.
#[derive(Debug, Clone)]
pub enum Target {
    /// The pods of the InferencePool `name`, read through `api`.
    Pool {
        /// `--pool-name`.
        name: String,
        /// From `--pool-group`.
        api: PoolApi,
    },
    /// The pods a fixed spec selects (`--endpoint-selector`, `--endpoint-target-ports`).
    Selector(PoolSpec),
}

/// Endpoint discovery in one namespace.
#[derive(Debug, Clone)]
pub struct KubeDiscovery {
    /// The pool's (and its pods') namespace; pods elsewhere never count.
    pub namespace: String,
    /// What to watch.
    pub target: Target,
}

impl KubeDiscovery {
    /// Starts watching with `client` and applies every change to `rt`. `rt` reports not
    /// ready until the first lists have completed.
    pub fn spawn(self, client: Client, rt: Arc<Runtime>) -> JoinHandle<()> {
        rt.set_ready(false);
        let (tx, rx) = mpsc::channel(256);
        let metrics = rt.telemetry.discovery.clone();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &self.namespace);
        let pod_task = tokio::spawn(forward(
            watcher(pods, watcher::Config::default()).default_backoff(),
            "pods",
            metrics.clone(),
            tx.clone(),
            |p: &Pod| PodInfo::from_pod(p),
            |pods: Vec<PodInfo>| Event::PodsListed(pods),
            Event::PodApplied,
            Event::PodDeleted,
        ));
        let mut tasks = vec![pod_task];
        let discovery = match &self.target {
            Target::Pool { name, api } => {
                let api = *api;
                let gvk = GroupVersionKind::gvk(api.group(), api.version(), "InferencePool");
                let resource = ApiResource::from_gvk_with_plural(&gvk, "inferencepools");
                let pools: Api<DynamicObject> =
                    Api::namespaced_with(client, &self.namespace, &resource);
                let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
                let parse = move |p: &DynamicObject| -> Result<PoolSpec, String> {
                    api.parse(&p.data).map_err(|e| {
                        tracing::warn!(error = %e, "InferencePool spec rejected; keeping the last good spec");
                        e.to_string()
                    })
                };
                tasks.push(tokio::spawn(forward(
                    watcher(pools, config).default_backoff(),
                    "inferencepools",
                    metrics.clone(),
                    tx,
                    parse,
                    |mut pools: Vec<Result<PoolSpec, String>>| Event::PoolListed(pools.pop()),
                    Event::PoolApplied,
                    |_| Event::PoolDeleted,
                )));
                Discovery::for_pool(&self.namespace)
            }
            Target::Selector(spec) => {
                drop(tx);
                Discovery::for_selector(&self.namespace, spec.clone())
            }
        };
        tokio::spawn(async move {
            run(discovery, rx, &rt).await;
            for t in tasks {
                t.abort();
            }
        })
    }
}

/// Applies events to `discovery` and its changes to `rt` until the watchers stop or `rt` is
/// the last owner of itself... (the process ends).
async fn run(mut discovery: Discovery, mut rx: mpsc::Receiver<Event>, rt: &Runtime) {
    while let Some(event) = rx.recv().await {
        if let Some(change) = discovery.apply(event) {
            apply(rt, &change);
        }
    }
}

/// Applies one change: restarted endpoints are removed first (their index, scores and
/// scraper are dropped) and then added back empty.
pub fn apply(rt: &Runtime, change: &Change) {
    if !change.restarted.is_empty() {
        let kept: Vec<_> = change
            .endpoints
            .iter()
            .filter(|e| !change.restarted.contains(e))
            .copied()
            .collect();
        rt.set_endpoints(&kept);
    }
    rt.set_endpoints(&change.endpoints);
    let m = &rt.telemetry.discovery;
    m.endpoints.set(change.endpoints.len() as i64);
    let list = |v: &[crate::endpoint::Endpoint]| {
        v.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    tracing::info!(
        endpoints = change.endpoints.len(),
        added = %list(&change.added),
        removed = %list(&change.removed),
        restarted = %list(&change.restarted),
        "endpoints discovered"
    );
    if change.first {
        m.synced.set(1);
        rt.set_ready(true);
        tracing::info!("discovery synced; ready");
    }
}

/// Forwards one watcher's stream as discovery events: `Init`..`InitDone` is buffered into
/// one list event, so a relist replaces the set at once.
#[allow(clippy::too_many_arguments)]
async fn forward<K, T, S>(
    stream: S,
    resource: &'static str,
    metrics: super::metrics::DiscoveryMetrics,
    tx: mpsc::Sender<Event>,
    convert: impl Fn(&K) -> T,
    listed: impl Fn(Vec<T>) -> Event,
    applied: impl Fn(T) -> Event,
    deleted: impl Fn(T) -> Event,
) where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let labels = ResourceLabels { resource };
    let mut stream = std::pin::pin!(stream);
    let mut buffer: Vec<T> = Vec::new();
    let mut failing = false;
    while let Some(item) = stream.next().await {
        let event = match item {
            // `Init` comes before the list request is even sent: not a sign of life.
            Ok(watcher::Event::Init) => watcher::Event::Init,
            Ok(e) => {
                metrics.watch_up.get_or_create(&labels).set(1);
                if failing {
                    tracing::info!(resource, "watch delivering again");
                    failing = false;
                }
                e
            }
            Err(e) => {
                metrics.watch_errors.get_or_create(&labels).inc();
                metrics.watch_up.get_or_create(&labels).set(0);
                tracing::warn!(resource, error = %e, "watch failed; keeping the last known endpoints, retrying with backoff");
                failing = true;
                continue;
            }
        };
        let out = match event {
            watcher::Event::Init => {
                buffer.clear();
                None
            }
            watcher::Event::InitApply(obj) => {
                buffer.push(convert(&obj));
                None
            }
            watcher::Event::InitDone => {
                metrics.lists.get_or_create(&labels).inc();
                Some(listed(std::mem::take(&mut buffer)))
            }
            watcher::Event::Apply(obj) => Some(applied(convert(&obj))),
            watcher::Event::Delete(obj) => Some(deleted(convert(&obj))),
        };
        if let Some(out) = out {
            if tx.send(out).await.is_err() {
                return;
            }
        }
    }
}
