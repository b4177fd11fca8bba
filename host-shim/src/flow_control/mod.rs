//! Flow control: what a pick does when every endpoint is saturated.
//!
//! Off (the default), a pick never waits: the scheduler sheds a sheddable request (429) and
//! sends any other to the best saturated endpoint. On (`flowControl` in the
//! `EndpointPickerConfig`, see [`config`]), a pick that finds every candidate saturated — or
//! finds others already waiting, so nobody jumps the line — waits in a bounded queue
//! ([`queue`]): priority bands (sheddable requests below the rest), first come first served
//! within a band, at most `maxRequests` requests and `maxBytes` bytes, each for at most
//! `defaultRequestTTL`. One dispatcher task hands the queue's front to the scheduler whenever
//! something may have freed an endpoint — a scrape (every endpoint cell notifies after each), a
//! completion report from the affinity plugin or from the end of an ext_proc stream, a config
//! reload — and stops at the first request that still finds every endpoint saturated; it also
//! wakes for the earliest deadline. Nothing polls.
//!
//! A full queue answers `queueFullStatus` (429), a request that waited its TTL
//! `timeoutStatus` (503), both with `Retry-After: retryAfterSeconds` and an OpenAI error body
//! ([`refusal`]). A caller that goes away (the pick API's HTTP request dropped, the ext_proc
//! stream closed) drops its [`Ticket`], which takes the request out of the queue at once, or,
//! when the pick was already made for it, takes the pick back (it no longer counts in flight).
//! A caller that cannot drop its call — the affinity plugin, whose pending Wasm http call Envoy
//! never cancels — names the pick with the pick id it sent and cancels it with
//! `POST /v1/cancel` ([`cancel`]): the request leaves the queue at once, counted `cancelled`.
//! A cancel of a pick already made (answered just before the cancel came; the caller never
//! read it) takes the pick back, as a completion would (the last [`RECENT_PICKS`] picks with an
//! id are remembered for this). A cancel that finds neither is remembered (the last
//! [`EARLY_CANCELS`] ids), so a pick that arrives after its own cancel is refused at once
//! instead of waiting its TTL.

pub mod config;
pub mod metrics;
pub mod queue;
pub mod refusal;

use crate::runtime::Runtime;
use crate::scheduler::{Pick, PickError, PickRequest};
use config::{FlowControlConfig, DEFAULT_PRIORITY, SHEDDABLE_PRIORITY};
use queue::{Full, Queue};
use refusal::Refusal;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{oneshot, Notify};

type Answer = Result<Pick, Refusal>;

/// Cancels remembered that found no queued pick (a pick may arrive after its cancel).
pub const EARLY_CANCELS: usize = 1024;
/// Picks made for a pick id remembered, so a cancel that comes just after can take them back.
pub const RECENT_PICKS: usize = 256;

/// A pick made for a caller that named it.
#[derive(Debug)]
struct Picked {
    pick_id: u64,
    endpoint: crate::endpoint::Endpoint,
    hashes: Vec<u64>,
}

/// One waiting pick.
#[derive(Debug)]
struct Waiter {
    req: PickRequest,
    api: &'static str,
    since: Instant,
    tx: oneshot::Sender<Answer>,
    /// The caller's pick id, for [`cancel`].
    pick_id: Option<u64>,
}

/// The wait queue of one host-shim and its wake-up signal.
#[derive(Debug)]
pub struct FlowController {
    queue: Mutex<Queue<Waiter>>,
    wake: Arc<Notify>,
    started: AtomicBool,
    /// Pick ids cancelled before their pick was queued, oldest first.
    early_cancels: Mutex<VecDeque<u64>>,
    /// The last picks made for a pick id, oldest first.
    picked: Mutex<VecDeque<Picked>>,
}

impl Default for FlowController {
    fn default() -> Self {
        Self::new()
    }
}

impl FlowController {
    /// An empty queue; its dispatcher starts with the first request that waits.
    pub fn new() -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            wake: Arc::new(Notify::new()),
            started: AtomicBool::new(false),
            early_cancels: Mutex::new(VecDeque::new()),
            picked: Mutex::new(VecDeque::new()),
        }
    }

    /// The signal that something may have freed an endpoint (scrapes hold a clone).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Says that something may have freed an endpoint (a completion, a reload).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Remembers a cancel that found nothing queued (bounded).
    fn remember_cancel(&self, pick_id: u64) {
        let mut early = self.early_cancels.lock().unwrap_or_else(|p| p.into_inner());
        if early.contains(&pick_id) {
            return;
        }
        if early.len() >= EARLY_CANCELS {
            early.pop_front();
        }
        early.push_back(pick_id);
    }

    /// Whether `pick_id` was cancelled before its pick came (forgets it).
    fn take_early_cancel(&self, pick_id: u64) -> bool {
        let mut early = self.early_cancels.lock().unwrap_or_else(|p| p.into_inner());
        match early.iter().position(|id| *id == pick_id) {
            Some(at) => early.remove(at).is_some(),
            None => false,
        }
    }

    /// Remembers a pick made for `pick_id` (bounded).
    fn remember_pick(&self, picked: Picked) {
        let mut recent = self.picked.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= RECENT_PICKS {
            recent.pop_front();
        }
        recent.push_back(picked);
    }

    /// The remembered pick made for `pick_id` (forgets it).
    fn take_pick(&self, pick_id: u64) -> Option<Picked> {
        let mut recent = self.picked.lock().unwrap_or_else(|p| p.into_inner());
        let at = recent.iter().position(|p| p.pick_id == pick_id)?;
        recent.remove(at)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<Waiter>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(&self, rt: &Arc<Runtime>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(rt);
        let wake = self.wake.clone();
        tokio::spawn(async move {
            loop {
                let next = match weak.upgrade() {
                    Some(rt) => dispatch_round(&rt),
                    None => return,
                };
                match next {
                    Some(deadline) => {
                        tokio::select! {
                            _ = wake.notified() => {}
                            _ = tokio::time::sleep_until(deadline.into()) => {}
                        }
                    }
                    None => wake.notified().await,
                }
            }
        });
    }
}

fn priority(req: &PickRequest) -> i32 {
    if req.sheddable {
        SHEDDABLE_PRIORITY
    } else {
        DEFAULT_PRIORITY
    }
}

fn publish(rt: &Runtime, q: &Queue<Waiter>) {
    let m = &rt.telemetry.flow;
    m.queue_length
        .set(i64::try_from(q.len()).unwrap_or(i64::MAX));
    m.queue_bytes
        .set(i64::try_from(q.bytes()).unwrap_or(i64::MAX));
}

/// Picks an endpoint for `req` (of `bytes` bytes, counted against the queue's byte limits),
/// waiting in the queue when flow control is on and every endpoint is saturated. Dropping the
/// returned future takes the request out of the queue.
pub async fn pick(
    rt: &Arc<Runtime>,
    req: PickRequest,
    bytes: u64,
    api: &'static str,
) -> Result<Pick, Refusal> {
    pick_with_id(rt, req, bytes, api, None).await
}

/// [`pick`] for a caller that named the pick with `pick_id`, so [`cancel`] can take it out of
/// the queue; a pick whose id was already cancelled is refused at once.
pub async fn pick_with_id(
    rt: &Arc<Runtime>,
    req: PickRequest,
    bytes: u64,
    api: &'static str,
    pick_id: Option<u64>,
) -> Result<Pick, Refusal> {
    let Some(id) = pick_id else {
        return pick_unnamed(rt, req, bytes, api, None).await;
    };
    if rt.flow.take_early_cancel(id) {
        rt.telemetry.flow.reject("cancelled");
        return Err(Refusal::cancelled(&rt.scheduler.config().flow_control));
    }
    let hashes = req.block_hashes.clone();
    let r = pick_unnamed(rt, req, bytes, api, Some(id)).await;
    if let Ok(p) = &r {
        if rt.flow.take_early_cancel(id) {
            // Cancelled while the answer was on its way: the caller will never use it.
            rt.observe_completed(&p.endpoint, &hashes);
            rt.telemetry.flow.reject("cancelled");
        } else {
            rt.flow.remember_pick(Picked {
                pick_id: id,
                endpoint: p.endpoint,
                hashes,
            });
        }
    }
    r
}

async fn pick_unnamed(
    rt: &Arc<Runtime>,
    req: PickRequest,
    bytes: u64,
    api: &'static str,
    pick_id: Option<u64>,
) -> Result<Pick, Refusal> {
    let cfg = rt.scheduler.config();
    let fc: &FlowControlConfig = &cfg.flow_control;
    if !fc.enabled {
        return rt.pick(&req, api).map_err(|e| Refusal::from_pick(e, fc));
    }
    if rt.flow.is_empty() {
        let started = Instant::now();
        let r = rt
            .scheduler
            .pick_admitting(&req, &rt.snapshot(), rt.clock().now(), true);
        if r != Err(PickError::Saturated) {
            rt.telemetry.record_pick(api, &r, started.elapsed());
            return r.map_err(|e| Refusal::from_pick(e, fc));
        }
    }
    let (tx, rx) = oneshot::channel();
    let hashes = req.block_hashes.clone();
    let now = Instant::now();
    let waiter = Waiter {
        req,
        api,
        since: now,
        tx,
        pick_id,
    };
    let pushed = {
        let mut q = rt.flow.lock();
        let r = q.push(
            fc,
            priority(&waiter.req),
            bytes,
            now + fc.request_ttl,
            waiter,
        );
        publish(rt, &q);
        r
    };
    let id = match pushed {
        Ok(id) => id,
        Err((full, _)) => {
            rt.telemetry.flow.reject(match full {
                Full::Requests => "queue_full",
                Full::Bytes => "bytes_full",
            });
            rt.telemetry
                .record_pick(api, &Err(PickError::Saturated), now.elapsed());
            return Err(Refusal::queue_full(fc, full));
        }
    };
    rt.telemetry.flow.queued.inc();
    rt.flow.start(rt);
    rt.flow.wake();
    let mut ticket = Ticket {
        rt: rt.clone(),
        id,
        rx,
        hashes,
        done: false,
    };
    ticket.wait().await
}

/// Cancels the pick the caller named `pick_id` (`POST /v1/cancel`): a queued one leaves the
/// queue at once and its call is answered [`Refusal::cancelled`]; one already made is taken
/// back (it no longer counts in flight); both are counted `cancelled`. Whether a pick had that
/// id; when none had, the id is remembered for a pick still on its way.
pub fn cancel(rt: &Runtime, pick_id: u64) -> bool {
    let removed = {
        let mut q = rt.flow.lock();
        let r = q
            .find(|w| w.pick_id == Some(pick_id))
            .and_then(|ticket| q.remove(ticket));
        publish(rt, &q);
        r
    };
    match removed {
        Some(e) => {
            rt.telemetry.flow.reject("cancelled");
            let _ = e
                .item
                .tx
                .send(Err(Refusal::cancelled(&rt.scheduler.config().flow_control)));
            // A place is free: the next waiter may fit (the dispatcher re-checks).
            rt.flow.wake();
            true
        }
        None => match rt.flow.take_pick(pick_id) {
            Some(p) => {
                rt.observe_completed(&p.endpoint, &p.hashes);
                rt.telemetry.flow.reject("cancelled");
                true
            }
            None => {
                rt.flow.remember_cancel(pick_id);
                false
            }
        },
    }
}

/// A queued pick's claim; dropping it before the answer gives the place (or the pick) back.
struct Ticket {
    rt: Arc<Runtime>,
    id: u64,
    rx: oneshot::Receiver<Answer>,
    hashes: Vec<u64>,
    done: bool,
}

impl Ticket {
    async fn wait(&mut self) -> Answer {
        let r = (&mut self.rx).await;
        self.done = true;
        match r {
            Ok(answer) => answer,
            // The dispatcher never drops a waiter unanswered; if it ever did, this is the
            // truthful answer.
            Err(_) => Err(Refusal::timed_out(&self.rt.scheduler.config().flow_control)),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let removed = {
            let mut q = self.rt.flow.lock();
            let r = q.remove(self.id);
            publish(&self.rt, &q);
            r.is_some()
        };
        if removed {
            self.rt.telemetry.flow.reject("cancelled");
        } else if let Ok(Ok(pick)) = self.rx.try_recv() {
            // Picked for a caller that is gone: the request will never run there.
            self.rt.observe_completed(&pick.endpoint, &self.hashes);
            self.rt.telemetry.flow.reject("cancelled");
        }
        // Otherwise the dispatcher holds the answer and finds the caller gone when it sends.
    }
}

/// Answers what can be answered now: expired requests, then the queue's front for as long as
/// an endpoint has headroom. Returns the next deadline, `None` when nothing waits.
fn dispatch_round(rt: &Arc<Runtime>) -> Option<std::time::Instant> {
    let cfg = rt.scheduler.config();
    let fc = &cfg.flow_control;
    let mut answered: Vec<(Waiter, Answer)> = Vec::new();
    let next = {
        let mut q = rt.flow.lock();
        if q.is_empty() {
            return None;
        }
        for e in q.expire(Instant::now()) {
            rt.telemetry.flow.reject("timeout");
            answered.push((e.item, Err(Refusal::timed_out(fc))));
        }
        let states = rt.snapshot();
        let now = rt.clock().now();
        while let Some(front) = q.front() {
            // Turned off by a reload: what a pick does without flow control.
            let hold = fc.enabled || front.item.req.sheddable;
            let started = Instant::now();
            let r = rt
                .scheduler
                .pick_admitting(&front.item.req, &states, now, hold);
            if fc.enabled && r == Err(PickError::Saturated) {
                break;
            }
            let Some(e) = q.pop_front() else { break };
            rt.telemetry.record_pick(e.item.api, &r, started.elapsed());
            if matches!(
                r,
                Err(PickError::NoReadyEndpoint | PickError::SubsetUnavailable)
            ) {
                rt.telemetry.flow.reject("no_endpoint");
            }
            answered.push((e.item, r.map_err(|x| Refusal::from_pick(x, fc))));
        }
        publish(rt, &q);
        q.next_deadline()
    };
    for (w, answer) in answered {
        let ok = answer.is_ok();
        let waited = w.since.elapsed();
        match w.tx.send(answer) {
            Ok(()) if ok => {
                rt.telemetry.flow.dispatched.inc();
                rt.telemetry.flow.wait.observe(waited.as_secs_f64());
            }
            Ok(()) => {}
            Err(Ok(pick)) => {
                rt.observe_completed(&pick.endpoint, &w.req.block_hashes);
                rt.telemetry.flow.reject("cancelled");
            }
            Err(Err(_)) => {}
        }
    }
    next
}
