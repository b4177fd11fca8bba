//! Scraping one endpoint's `/metrics`, on a timer, into its shared state cell.
//!
//! Each endpoint has its own task and its own kept-alive HTTP/1.1 connection, so endpoints
//! are scraped concurrently and a slow pod delays nobody else. A scrape that fails or times
//! out marks the endpoint unreachable (out of picks) until one succeeds.

use crate::clock::WallClock;
use crate::endpoint::{Endpoint, EndpointState};
use crate::metrics_text::{parse_engine_metrics, MetricsError};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;

/// Largest `/metrics` page read (vLLM's is ~100 KB with many models and histograms).
pub const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// Scrape timing.
#[derive(Debug, Clone)]
pub struct ScrapeConfig {
    /// Time between scrapes of one endpoint.
    pub interval: Duration,
    /// Longest a scrape may take, connection included.
    pub timeout: Duration,
    /// Path of the metrics page.
    pub path: String,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(500),
            path: "/metrics".into(),
        }
    }
}

/// Why a scrape failed.
#[derive(Debug, Error)]
pub enum ScrapeError {
    /// Connecting or talking HTTP failed.
    #[error("http: {0}")]
    Http(String),
    /// The endpoint answered with a non-200 status.
    #[error("status {0}")]
    Status(u16),
    /// The scrape took longer than the timeout.
    #[error("timed out")]
    Timeout,
    /// The page is not usable.
    #[error("metrics: {0}")]
    Metrics(#[from] MetricsError),
}

/// The latest state of one endpoint, written by its scraper and read by picks.
#[derive(Debug)]
pub struct EndpointCell {
    state: Mutex<EndpointState>,
    /// Told after every scrape (the flow controller's queue waits for headroom on it).
    updates: Option<Arc<tokio::sync::Notify>>,
}

impl EndpointCell {
    /// A cell for an endpoint not scraped yet.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            state: Mutex::new(EndpointState::unscraped(endpoint)),
            updates: None,
        }
    }

    /// A cell for an endpoint not scraped yet that notifies `updates` after every scrape.
    pub fn notifying(endpoint: Endpoint, updates: Arc<tokio::sync::Notify>) -> Self {
        Self {
            state: Mutex::new(EndpointState::unscraped(endpoint)),
            updates: Some(updates),
        }
    }

    /// A copy of the current state.
    pub fn get(&self) -> EndpointState {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, f: impl FnOnce(&mut EndpointState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(n) = &self.updates {
            n.notify_one();
        }
    }
}

/// A kept-alive connection to one endpoint.
struct Scraper {
    endpoint: Endpoint,
    path: String,
    conn: Option<SendRequest<Empty<Bytes>>>,
}

impl Scraper {
    async fn connect(&mut self) -> Result<&mut SendRequest<Empty<Bytes>>, ScrapeError> {
        if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.endpoint.0)
                .await
                .map_err(|e| ScrapeError::Http(e.to_string()))?;
            let _ = stream.set_nodelay(true);
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| ScrapeError::Http(e.to_string()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.conn = Some(send);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| ScrapeError::Http("no connection".into()))
    }

    async fn fetch(&mut self) -> Result<String, ScrapeError> {
        let req = hyper::Request::get(self.path.as_str())
            .header(hyper::header::HOST, self.endpoint.to_string())
            .header(hyper::header::ACCEPT, "text/plain")
            .body(Empty::new())
            .map_err(|e| ScrapeError::Http(e.to_string()))?;
        let conn = self.connect().await?;
        conn.ready()
            .await
            .map_err(|e| ScrapeError::Http(e.to_string()))?;
        let resp = conn
            .send_request(req)
            .await
            .map_err(|e| ScrapeError::Http(e.to_string()))?;
        if resp.status() != hyper::StatusCode::OK {
            return Err(ScrapeError::Status(resp.status().as_u16()));
        }
        let body = Limited::new(resp.into_body(), MAX_PAGE_BYTES)
            .collect()
            .await
            .map_err(|e| ScrapeError::Http(e.to_string()))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| ScrapeError::Http("page is not UTF-8".into()))
    }

    async fn scrape(
        &mut self,
        timeout: Duration,
    ) -> Result<crate::endpoint::EngineMetrics, ScrapeError> {
        match tokio::time::timeout(timeout, self.fetch()).await {
            Ok(Ok(text)) => Ok(parse_engine_metrics(&text)?),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(ScrapeError::Timeout)
            }
        }
    }
}

/// Scrapes `cell`'s endpoint every `cfg.interval` until the task is aborted.
pub async fn run(cell: Arc<EndpointCell>, clock: WallClock, cfg: ScrapeConfig) {
    let endpoint = cell.get().endpoint;
    let mut scraper = Scraper {
        endpoint,
        path: cfg.path.clone(),
        conn: None,
    };
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_ok: Option<bool> = None;
    loop {
        tick.tick().await;
        match scraper.scrape(cfg.timeout).await {
            Ok(m) => {
                let now = clock.now();
                cell.set(|s| {
                    s.metrics = Some(m);
                    s.scraped_at = Some(now);
                    s.reachable = true;
                });
                if was_ok != Some(true) {
                    tracing::info!(%endpoint, "endpoint ready");
                }
                was_ok = Some(true);
            }
            Err(e) => {
                cell.set(|s| s.reachable = false);
                if was_ok != Some(false) {
                    tracing::warn!(%endpoint, error = %e, "endpoint scrape failed; out of picks until it recovers");
                }
                was_ok = Some(false);
            }
        }
    }
}
