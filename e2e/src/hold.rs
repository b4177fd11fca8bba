//! An upstream that holds every request open until released: thousands of long-lived streams
//! in flight at once, the way LLM streams occupy a gateway, without a model behind them.

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running holding upstream; stops when dropped.
pub struct HoldUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    arrived: Arc<AtomicUsize>,
    release: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HoldUpstream {
    /// Listens on a free loopback port; every request waits for [`Self::release`], then gets
    /// `200` with a small JSON body.
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let arrived = Arc::new(AtomicUsize::new(0));
        let (release, rx) = watch::channel(false);
        let counter = arrived.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (counter, rx) = (counter.clone(), rx.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                        let mut rx = rx.clone();
                        counter.fetch_add(1, Ordering::AcqRel);
                        async move {
                            let _ = rx.wait_for(|go| *go).await;
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"{\"ok\":true}",
                            ))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            arrived,
            release,
            task,
        })
    }

    /// Requests that have reached it so far (held or answered).
    pub fn arrived(&self) -> usize {
        self.arrived.load(Ordering::Acquire)
    }

    /// Answers every held request, and every later one at once.
    pub fn release(&self) {
        let _ = self.release.send(true);
    }
}

impl Drop for HoldUpstream {
    fn drop(&mut self) {
        self.release();
        self.task.abort();
    }
}
