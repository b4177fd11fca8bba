//! The endpoint set as a pure function of watch events: the InferencePool (or the fixed
//! `--endpoint-selector` spec) and the namespace's pods go in, endpoint-set changes come out.
//! No I/O and no clock, so every rule is unit-tested here:
//!
//! - a pod is an endpoint only while it is in the pool's namespace, matches the selector,
//!   has a pod IP, condition `Ready=True` and no `deletionTimestamp` (the EPP's rule);
//! - every `podIP:port` of the spec's ports is its own endpoint;
//! - nothing is published until the first lists have completed (a partial set would drop
//!   endpoints); a relist replaces the pod set at once, so pods that stayed keep their state;
//! - an endpoint whose address now belongs to a different pod (a new UID) is reported as
//!   restarted: it is a new pod whose KV cache is cold.

use super::pool::PoolSpec;
use crate::endpoint::Endpoint;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// What discovery needs from one pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`: tells a replaced pod from the one before it at the same IP.
    pub uid: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `status.podIP`, when assigned and valid.
    pub ip: Option<IpAddr>,
    /// Condition `Ready` is `True`.
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

/// One thing the watchers saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A (re)list of the pool finished: the pool's spec, or `None` when it does not exist.
    /// `Err` is a pool whose spec cannot be used (the last good spec is kept).
    PoolListed(Option<Result<PoolSpec, String>>),
    /// The pool was created or changed.
    PoolApplied(Result<PoolSpec, String>),
    /// The pool was deleted.
    PoolDeleted,
    /// A (re)list of the pods finished: the complete set.
    PodsListed(Vec<PodInfo>),
    /// A pod was created or changed.
    PodApplied(PodInfo),
    /// A pod was deleted.
    PodDeleted(PodInfo),
}

/// How the endpoint set changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Change {
    /// The complete new set, ordered by pod name then port.
    pub endpoints: Vec<Endpoint>,
    /// Endpoints that were not in the previous set.
    pub added: Vec<Endpoint>,
    /// Endpoints of the previous set that are gone.
    pub removed: Vec<Endpoint>,
    /// Endpoints in both sets that now belong to a different pod: their state must start
    /// empty.
    pub restarted: Vec<Endpoint>,
    /// This is the first set published (discovery just became ready).
    pub first: bool,
}

/// Where the spec comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SpecSource {
    /// The InferencePool, once listed (`None` inside: the pool does not exist).
    Pool {
        listed: bool,
        spec: Option<PoolSpec>,
    },
    /// `--endpoint-selector` / `--endpoint-target-ports`.
    Fixed(PoolSpec),
}

/// The discovery state.
#[derive(Debug, Clone)]
pub struct Discovery {
    namespace: String,
    source: SpecSource,
    pods: BTreeMap<String, PodInfo>,
    pods_listed: bool,
    /// The last published set: endpoint → owning pod UID.
    published: Option<BTreeMap<Endpoint, String>>,
}

impl Discovery {
    /// Discovery of an InferencePool's pods in `namespace`.
    pub fn for_pool(namespace: impl Into<String>) -> Self {
        Self::new(
            namespace,
            SpecSource::Pool {
                listed: false,
                spec: None,
            },
        )
    }

    /// Discovery of the pods `spec` selects in `namespace` (EPP's selector mode).
    pub fn for_selector(namespace: impl Into<String>, spec: PoolSpec) -> Self {
        Self::new(namespace, SpecSource::Fixed(spec))
    }

    fn new(namespace: impl Into<String>, source: SpecSource) -> Self {
        Self {
            namespace: namespace.into(),
            source,
            pods: BTreeMap::new(),
            pods_listed: false,
            published: None,
        }
    }

    /// Whether the first lists have completed (host-shim is ready from then on).
    pub fn is_synced(&self) -> bool {
        self.published.is_some()
    }

    /// The spec in force, if any.
    pub fn spec(&self) -> Option<&PoolSpec> {
        match &self.source {
            SpecSource::Pool { spec, .. } => spec.as_ref(),
            SpecSource::Fixed(spec) => Some(spec),
        }
    }

    /// Applies one event; returns the change to the endpoint set, if it changed (or if this
    /// event completed the first sync).
    pub fn apply(&mut self, event: Event) -> Option<Change> {
        match event {
            Event::PoolListed(pool) => {
                if let SpecSource::Pool { listed, spec } = &mut self.source {
                    *listed = true;
                    match pool {
                        None => *spec = None,
                        Some(Ok(s)) => *spec = Some(s),
                        // An unusable spec keeps the last good one.
                        Some(Err(_)) => {}
                    }
                }
            }
            Event::PoolApplied(pool) => {
                if let (SpecSource::Pool { spec, .. }, Ok(s)) = (&mut self.source, pool) {
                    *spec = Some(s);
                }
            }
            Event::PoolDeleted => {
                if let SpecSource::Pool { spec, .. } = &mut self.source {
                    *spec = None;
                }
            }
            Event::PodsListed(pods) => {
                self.pods_listed = true;
                self.pods = pods.into_iter().map(|p| (p.name.clone(), p)).collect();
            }
            Event::PodApplied(pod) => {
                self.pods.insert(pod.name.clone(), pod);
            }
            Event::PodDeleted(pod) => {
                // A delete names the pod that is gone; a newer pod of the same name (a
                // StatefulSet's) has another UID and stays.
                if self.pods.get(&pod.name).is_some_and(|p| p.uid == pod.uid) {
                    self.pods.remove(&pod.name);
                }
            }
        }
        self.publish()
    }

    fn ready_to_publish(&self) -> bool {
        let spec_listed = match &self.source {
            SpecSource::Pool { listed, .. } => *listed,
            SpecSource::Fixed(_) => true,
        };
        spec_listed && self.pods_listed
    }

    /// The endpoint set the current state yields: endpoint → pod UID.
    pub fn current(&self) -> BTreeMap<Endpoint, String> {
        let mut out = BTreeMap::new();
        let Some(spec) = self.spec() else {
            return out;
        };
        for pod in self.pods.values() {
            let Some(ip) = pod.ip else { continue };
            if pod.namespace != self.namespace || !pod.ready || pod.deleting {
                continue;
            }
            if !spec.selects(&pod.labels) {
                continue;
            }
            for port in &spec.ports {
                // Two pods claiming one address (a stale IP during a relist): the first by
                // name keeps it.
                out.entry(Endpoint(SocketAddr::new(ip, *port)))
                    .or_insert_with(|| pod.uid.clone());
            }
        }
        out
    }

    /// The current endpoints, ordered by pod name then port.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let current = self.current();
        let mut ordered = Vec::with_capacity(current.len());
        let mut seen = BTreeSet::new();
        if let Some(spec) = self.spec() {
            for pod in self.pods.values() {
                for port in &spec.ports {
                    if let Some(ip) = pod.ip {
                        let e = Endpoint(SocketAddr::new(ip, *port));
                        if current.get(&e) == Some(&pod.uid) && seen.insert(e) {
                            ordered.push(e);
                        }
                    }
                }
            }
        }
        ordered
    }

    fn publish(&mut self) -> Option<Change> {
        if !self.ready_to_publish() {
            return None;
        }
        let next = self.current();
        let first = self.published.is_none();
        let prev = self.published.take().unwrap_or_default();
        let added = next
            .keys()
            .filter(|e| !prev.contains_key(e))
            .copied()
            .collect();
        let removed: Vec<Endpoint> = prev
            .keys()
            .filter(|e| !next.contains_key(e))
            .copied()
            .collect();
        let restarted: Vec<Endpoint> = next
            .iter()
            .filter(|(e, uid)| prev.get(e).is_some_and(|old| old != *uid))
            .map(|(e, _)| *e)
            .collect();
        let changed = first || prev != next;
        self.published = Some(next);
        changed.then(|| Change {
            endpoints: self.endpoints(),
            added,
            removed,
            restarted,
            first,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "llm";

    fn spec(ports: &[u16]) -> PoolSpec {
        PoolSpec {
            selector: [("app".to_string(), "vllm".to_string())].into(),
            ports: ports.to_vec(),
        }
    }

    fn pod(name: &str, ip: &str) -> PodInfo {
        PodInfo {
            name: name.into(),
            namespace: NS.into(),
            uid: format!("uid-{name}"),
            labels: [("app".to_string(), "vllm".to_string())].into(),
            ip: Some(ip.parse().unwrap()),
            ready: true,
            deleting: false,
        }
    }

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    fn synced(ports: &[u16], pods: Vec<PodInfo>) -> Discovery {
        let mut d = Discovery::for_pool(NS);
        assert_eq!(
            d.apply(Event::PodsListed(pods)),
            None,
            "pool not listed yet"
        );
        let c = d.apply(Event::PoolListed(Some(Ok(spec(ports))))).unwrap();
        assert!(c.first);
        d
    }

    #[test]
    fn nothing_is_published_before_both_lists_complete() {
        let mut d = Discovery::for_pool(NS);
        assert!(d.apply(Event::PoolApplied(Ok(spec(&[8000])))).is_none());
        assert!(d.apply(Event::PodApplied(pod("a", "10.0.0.1"))).is_none());
        assert!(!d.is_synced());
        assert!(d
            .apply(Event::PoolListed(Some(Ok(spec(&[8000])))))
            .is_none());
        let c = d
            .apply(Event::PodsListed(vec![pod("a", "10.0.0.1")]))
            .unwrap();
        assert!(c.first && d.is_synced());
        assert_eq!(c.endpoints, vec![ep("10.0.0.1:8000")]);
        assert_eq!(c.added, c.endpoints);
    }

    #[test]
    fn a_missing_pool_syncs_to_an_empty_set() {
        let mut d = Discovery::for_pool(NS);
        d.apply(Event::PodsListed(vec![pod("a", "10.0.0.1")]));
        let c = d.apply(Event::PoolListed(None)).unwrap();
        assert!(c.first && c.endpoints.is_empty());
        // The pool appears later: its pods become endpoints.
        let c = d.apply(Event::PoolApplied(Ok(spec(&[8000])))).unwrap();
        assert_eq!(c.added, vec![ep("10.0.0.1:8000")]);
        // And goes away again.
        let c = d.apply(Event::PoolDeleted).unwrap();
        assert_eq!(c.removed, vec![ep("10.0.0.1:8000")]);
        assert!(c.endpoints.is_empty());
    }

    #[test]
    fn every_port_of_every_ready_pod_is_an_endpoint() {
        let d = synced(
            &[8000, 8001],
            vec![pod("b", "10.0.0.2"), pod("a", "10.0.0.1")],
        );
        assert_eq!(
            d.endpoints(),
            vec![
                ep("10.0.0.1:8000"),
                ep("10.0.0.1:8001"),
                ep("10.0.0.2:8000"),
                ep("10.0.0.2:8001")
            ]
        );
    }

    #[test]
    fn readiness_rules_of_the_epp() {
        let mut unready = pod("unready", "10.0.0.2");
        unready.ready = false;
        let mut deleting = pod("deleting", "10.0.0.3");
        deleting.deleting = true;
        let mut no_ip = pod("no-ip", "10.0.0.4");
        no_ip.ip = None;
        let mut other_ns = pod("other-ns", "10.0.0.5");
        other_ns.namespace = "default".into();
        let mut other_app = pod("other-app", "10.0.0.6");
        other_app.labels.insert("app".into(), "redis".into());
        let mut no_labels = pod("no-labels", "10.0.0.7");
        no_labels.labels.clear();
        let mut extra_labels = pod("extra-labels", "10.0.0.8");
        extra_labels
            .labels
            .insert("pod-template-hash".into(), "abc".into());
        let d = synced(
            &[8000],
            vec![
                pod("ok", "10.0.0.1"),
                unready,
                deleting,
                no_ip,
                other_ns,
                other_app,
                no_labels,
                extra_labels,
            ],
        );
        assert_eq!(
            d.endpoints(),
            vec![ep("10.0.0.8:8000"), ep("10.0.0.1:8000")]
        );
    }

    #[test]
    fn pod_lifecycle_add_unready_ready_delete() {
        let mut d = synced(&[8000], vec![pod("a", "10.0.0.1")]);
        // Scale-out: a pod is created without IP, gets one, then becomes ready.
        let mut b = pod("b", "10.0.0.2");
        b.ip = None;
        b.ready = false;
        assert!(d.apply(Event::PodApplied(b.clone())).is_none());
        b.ip = Some("10.0.0.2".parse().unwrap());
        assert!(d.apply(Event::PodApplied(b.clone())).is_none());
        b.ready = true;
        let c = d.apply(Event::PodApplied(b.clone())).unwrap();
        assert_eq!(c.added, vec![ep("10.0.0.2:8000")]);
        assert_eq!(c.endpoints.len(), 2);
        // A status update that changes nothing publishes nothing.
        assert!(d.apply(Event::PodApplied(b.clone())).is_none());
        // Ready=False removes it at once.
        b.ready = false;
        let c = d.apply(Event::PodApplied(b.clone())).unwrap();
        assert_eq!(c.removed, vec![ep("10.0.0.2:8000")]);
        // Back to ready: the same pod (same UID) is added again, not restarted.
        b.ready = true;
        let c = d.apply(Event::PodApplied(b.clone())).unwrap();
        assert_eq!((c.added.len(), c.restarted.len()), (1, 0));
        // Graceful delete: deletionTimestamp first, then the DELETED event.
        b.deleting = true;
        let c = d.apply(Event::PodApplied(b.clone())).unwrap();
        assert_eq!(c.removed, vec![ep("10.0.0.2:8000")]);
        assert!(d.apply(Event::PodDeleted(b)).is_none());
        assert_eq!(d.endpoints(), vec![ep("10.0.0.1:8000")]);
    }

    #[test]
    fn a_relist_keeps_pods_that_stayed_and_drops_the_rest() {
        let mut d = synced(&[8000], vec![pod("a", "10.0.0.1"), pod("b", "10.0.0.2")]);
        // Same set: nothing changes (their index and scores are kept).
        assert!(d
            .apply(Event::PodsListed(vec![
                pod("b", "10.0.0.2"),
                pod("a", "10.0.0.1")
            ]))
            .is_none());
        // b was deleted while the watch was down, c appeared.
        let c = d
            .apply(Event::PodsListed(vec![
                pod("a", "10.0.0.1"),
                pod("c", "10.0.0.3"),
            ]))
            .unwrap();
        assert_eq!(c.added, vec![ep("10.0.0.3:8000")]);
        assert_eq!(c.removed, vec![ep("10.0.0.2:8000")]);
        assert!(c.restarted.is_empty() && !c.first);
    }

    #[test]
    fn a_new_pod_at_an_old_address_is_restarted() {
        let mut d = synced(&[8000], vec![pod("a", "10.0.0.1")]);
        // Replaced during a disconnection: another pod got the same IP.
        let mut a2 = pod("a-2", "10.0.0.1");
        a2.uid = "uid-new".into();
        let c = d.apply(Event::PodsListed(vec![a2.clone()])).unwrap();
        assert_eq!(c.restarted, vec![ep("10.0.0.1:8000")]);
        assert!(c.added.is_empty() && c.removed.is_empty());
        // Same name, new UID (a StatefulSet pod recreated) also restarts.
        let mut a3 = a2.clone();
        a3.uid = "uid-newer".into();
        let c = d.apply(Event::PodApplied(a3.clone())).unwrap();
        assert_eq!(c.restarted, vec![ep("10.0.0.1:8000")]);
        // A late DELETED of the older incarnation does not remove the newer one.
        assert!(d.apply(Event::PodDeleted(a2)).is_none());
        assert_eq!(d.endpoints(), vec![ep("10.0.0.1:8000")]);
        let c = d.apply(Event::PodDeleted(a3)).unwrap();
        assert_eq!(c.removed, vec![ep("10.0.0.1:8000")]);
    }

    #[test]
    fn two_pods_claiming_one_address_yield_one_endpoint() {
        let mut old = pod("a", "10.0.0.1");
        old.uid = "old".into();
        let d = synced(&[8000], vec![old, pod("b", "10.0.0.1")]);
        assert_eq!(d.endpoints(), vec![ep("10.0.0.1:8000")]);
        assert_eq!(d.current()[&ep("10.0.0.1:8000")], "old");
    }

    #[test]
    fn pool_changes_move_selector_and_ports() {
        let mut redis = pod("r", "10.0.0.9");
        redis.labels.insert("app".into(), "redis".into());
        let mut d = synced(&[8000], vec![pod("a", "10.0.0.1"), redis]);
        let c = d
            .apply(Event::PoolApplied(Ok(spec(&[8000, 9000]))))
            .unwrap();
        assert_eq!(c.added, vec![ep("10.0.0.1:9000")]);
        let c = d.apply(Event::PoolApplied(Ok(spec(&[9000])))).unwrap();
        assert_eq!(c.removed, vec![ep("10.0.0.1:8000")]);
        let mut s = spec(&[9000]);
        s.selector.insert("app".into(), "redis".into());
        let c = d.apply(Event::PoolApplied(Ok(s))).unwrap();
        assert_eq!(c.endpoints, vec![ep("10.0.0.9:9000")]);
        // An unusable spec keeps the last good one.
        assert!(d.apply(Event::PoolApplied(Err("bad".into()))).is_none());
        assert!(d
            .apply(Event::PoolListed(Some(Err("bad".into()))))
            .is_none());
        assert_eq!(d.endpoints(), vec![ep("10.0.0.9:9000")]);
    }

    #[test]
    fn selector_mode_needs_only_the_pod_list() {
        let mut d = Discovery::for_selector(NS, spec(&[8000]));
        assert!(d.apply(Event::PodApplied(pod("a", "10.0.0.1"))).is_none());
        let c = d
            .apply(Event::PodsListed(vec![pod("a", "10.0.0.1")]))
            .unwrap();
        assert!(c.first);
        // Pool events do not touch a fixed spec.
        assert!(d.apply(Event::PoolDeleted).is_none());
        assert_eq!(d.endpoints(), vec![ep("10.0.0.1:8000")]);
    }

    #[test]
    fn ipv6_pods_work() {
        let d = synced(&[8000], vec![pod("a", "fd00::1")]);
        assert_eq!(d.endpoints(), vec![ep("[fd00::1]:8000")]);
    }

    /// Any event sequence: the published changes, replayed from empty, always equal the
    /// state's own endpoint set, and no endpoint is published that a pod rule excludes.
    #[test]
    fn published_changes_always_track_the_state() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for _round in 0..200 {
            let mut d = Discovery::for_pool(NS);
            let mut mirror: BTreeSet<Endpoint> = BTreeSet::new();
            for _ in 0..60 {
                let name = format!("p{}", next(6));
                let mut p = pod(&name, &format!("10.0.0.{}", next(4) + 1));
                p.uid = format!("{name}-{}", next(3));
                p.ready = next(4) != 0;
                p.deleting = next(8) == 0;
                if next(10) == 0 {
                    p.namespace = "other".into();
                }
                let ev = match next(9) {
                    0 => Event::PoolListed(Some(Ok(spec(&[8000])))),
                    1 => Event::PoolApplied(Ok(spec(&[8000, 8001]))),
                    2 => Event::PoolDeleted,
                    3 => Event::PodsListed(vec![p.clone(), pod("p0", "10.0.0.1")]),
                    4 | 5 => Event::PodDeleted(p),
                    _ => Event::PodApplied(p),
                };
                if let Some(c) = d.apply(ev) {
                    for e in &c.removed {
                        assert!(mirror.remove(e));
                    }
                    for e in &c.added {
                        assert!(mirror.insert(*e));
                    }
                    for e in &c.restarted {
                        assert!(mirror.contains(e));
                    }
                    let set: BTreeSet<Endpoint> = c.endpoints.iter().copied().collect();
                    assert_eq!(set, mirror);
                    assert_eq!(set.len(), c.endpoints.len(), "no duplicates");
                }
                if d.is_synced() {
                    assert_eq!(d.current().keys().copied().collect::<BTreeSet<_>>(), mirror);
                }
            }
        }
    }
}
