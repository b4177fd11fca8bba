//! Sharing served reports with peer host-shim replicas.
//!
//! Each replica learns which endpoint holds which prefix only from the requests it routed,
//! so several replicas behind one pool would otherwise build different indexes and disagree.
//! With `--peers`, every served report a replica receives (pick API or ext_proc) is also sent
//! to each peer's `POST /v1/served`, marked with [`PEER_HEADER`] so it is not forwarded again.
//! Delivery is best effort: a bounded queue per peer, dropped when full or when the peer is
//! down, so a slow peer never slows picks.

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Request header marking a served report forwarded by a peer.
pub const PEER_HEADER: &str = "x-infergate-peer";

/// Reports queued per peer before new ones are dropped.
const QUEUE: usize = 4096;

/// Fan-out of served reports to peer replicas.
#[derive(Debug)]
pub struct PeerFanout {
    peers: Vec<mpsc::Sender<Bytes>>,
    dropped: Arc<AtomicU64>,
}

impl PeerFanout {
    /// Starts one sender task per peer HTTP address. Must be called inside a tokio runtime.
    pub fn start(peers: &[SocketAddr]) -> Self {
        let dropped = Arc::new(AtomicU64::new(0));
        let peers = peers
            .iter()
            .map(|addr| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run(*addr, rx, dropped.clone()));
                tx
            })
            .collect();
        Self { peers, dropped }
    }

    /// Queues an encoded `/v1/served` body for every peer.
    pub fn send(&self, body: Bytes) {
        for p in &self.peers {
            if p.try_send(body.clone()).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Reports not delivered (queue full or peer unreachable) since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn connect(addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(send)
}

async fn run(addr: SocketAddr, mut rx: mpsc::Receiver<Bytes>, dropped: Arc<AtomicU64>) {
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    while let Some(body) = rx.recv().await {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            conn = connect(addr).await;
        }
        let Some(c) = conn.as_mut() else {
            dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let req = hyper::Request::post("/v1/served")
            .header(hyper::header::HOST, addr.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/octet-stream")
            .header(PEER_HEADER, "1")
            .body(Full::new(body));
        let ok = match req {
            Ok(req) => match c.ready().await {
                Ok(()) => c.send_request(req).await.is_ok(),
                Err(_) => false,
            },
            Err(_) => false,
        };
        if !ok {
            dropped.fetch_add(1, Ordering::Relaxed);
            conn = None;
        }
    }
}
