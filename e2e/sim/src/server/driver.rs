//! The engine driver: one task that owns an [`Engine`] and runs its steps in (scaled) real
//! time, taking new requests and handing each request's tokens to its stream.
//!
//! Steps are laid end to end on a deadline schedule: a step that follows another starts at the
//! previous step's deadline, not when the task got round to it, so the task's own processing
//! time does not stretch the latencies the model reports. If the task ever wakes later than a
//! deadline, the delay is added to `lag_seconds` and shown in `/metrics`. Lateness of one step
//! does not carry over (the next step still starts at the missed deadline), so it is jitter of
//! at most the timer resolution unless the host cannot keep up, when it grows step after step.

use crate::engine::{AdmissionError, Engine, EngineStats, NewRequest, TokenEvent};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;

/// Maps real instants to the engine's virtual seconds (`time_scale` × real elapsed).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    scale: f64,
}

impl Clock {
    /// A clock starting now, running `scale` times faster than real time.
    pub fn new(scale: f64) -> Self {
        Self {
            origin: Instant::now(),
            scale,
        }
    }

    /// Virtual seconds at `t`.
    pub fn virtual_at(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.origin).as_secs_f64() * self.scale
    }

    /// Real time that `virtual_s` of engine time take.
    pub fn real(&self, virtual_s: f64) -> Duration {
        Duration::from_secs_f64((virtual_s / self.scale).max(0.0))
    }
}

/// A request for the driver (prompt already tokenized and hashed).
#[derive(Debug)]
pub struct Submission {
    /// Prompt length, tokens.
    pub prompt_len: u32,
    /// Output tokens to generate.
    pub max_output: u32,
    /// Chained hashes of prompt + output full blocks.
    pub block_hashes: Vec<u64>,
    /// Where this request's tokens go; dropping the receiver aborts the request.
    pub events: mpsc::UnboundedSender<TokenEvent>,
}

/// Engine state for `/metrics`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Requests running.
    pub running: usize,
    /// Requests waiting.
    pub waiting: usize,
    /// Fraction of KV blocks in use.
    pub kv_usage: f64,
    /// KV blocks.
    pub num_gpu_blocks: usize,
    /// Tokens per block.
    pub block_size: usize,
    /// Counters.
    pub stats: EngineStats,
    /// Total real seconds the driver woke up late for a step deadline.
    pub lag_seconds: f64,
    /// Worst single wake-up delay, real seconds.
    pub max_lag_seconds: f64,
    /// Steps run.
    pub steps: u64,
}

enum Command {
    Submit(Submission, oneshot::Sender<Result<(), AdmissionError>>),
    Snapshot(oneshot::Sender<Snapshot>),
}

/// A cheap, cloneable handle to the driver task.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    tx: mpsc::UnboundedSender<Command>,
}

/// The driver task is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineGone;

impl EngineHandle {
    /// Queues a request; its tokens arrive on `sub.events`.
    pub async fn submit(&self, sub: Submission) -> Result<Result<(), AdmissionError>, EngineGone> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Submit(sub, tx))
            .map_err(|_| EngineGone)?;
        rx.await.map_err(|_| EngineGone)
    }

    /// Current engine state.
    pub async fn snapshot(&self) -> Result<Snapshot, EngineGone> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Snapshot(tx))
            .map_err(|_| EngineGone)?;
        rx.await.map_err(|_| EngineGone)
    }
}

/// Starts the driver task for `engine` on the current runtime.
pub fn spawn(engine: Engine, clock: Clock) -> EngineHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(engine, rx, clock));
    EngineHandle { tx }
}

async fn run(mut engine: Engine, mut rx: mpsc::UnboundedReceiver<Command>, clock: Clock) {
    let mut streams: HashMap<u64, mpsc::UnboundedSender<TokenEvent>> = HashMap::new();
    let mut next_id = 0u64;
    let mut deadline: Option<Instant> = None;
    let mut last_end = Instant::now();
    let (mut lag, mut max_lag, mut steps) = (0.0f64, 0.0f64, 0u64);
    let mut events = Vec::new();
    loop {
        if deadline.is_none() {
            if let Some(step) = engine.schedule() {
                let start = last_end.max(Instant::now());
                deadline = Some(start + clock.real(step.duration_s));
            }
        }
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None => break,
                Some(Command::Submit(sub, reply)) => {
                    next_id += 1;
                    let res = engine.add_request(NewRequest {
                        id: next_id,
                        prompt_len: sub.prompt_len,
                        max_output: sub.max_output,
                        block_hashes: sub.block_hashes,
                        arrival: clock.virtual_at(Instant::now()),
                    });
                    if res.is_ok() {
                        streams.insert(next_id, sub.events);
                    }
                    let _ = reply.send(res);
                }
                Some(Command::Snapshot(reply)) => {
                    let _ = reply.send(Snapshot {
                        running: engine.num_running(),
                        waiting: engine.num_waiting(),
                        kv_usage: engine.kv().usage(),
                        num_gpu_blocks: engine.config().num_gpu_blocks,
                        block_size: engine.config().block_size,
                        stats: engine.stats().clone(),
                        lag_seconds: lag,
                        max_lag_seconds: max_lag,
                        steps,
                    });
                }
            },
            () = async { if let Some(d) = deadline { sleep_until(d.into()).await } }, if deadline.is_some() => {
                let end = deadline.take().unwrap_or_else(Instant::now);
                last_end = end;
                let late = Instant::now().saturating_duration_since(end).as_secs_f64();
                lag += late;
                max_lag = max_lag.max(late);
                steps += 1;
                engine.complete_step(clock.virtual_at(end), &mut events);
                for ev in events.drain(..) {
                    let gone = streams.get(&ev.id).is_none_or(|tx| tx.send(ev).is_err());
                    if gone {
                        streams.remove(&ev.id);
                        engine.abort(ev.id);
                    } else if ev.finished {
                        streams.remove(&ev.id);
                    }
                }
            }
        }
    }
}
