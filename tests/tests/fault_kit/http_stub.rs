//! A minimal HTTP/1.1 server standing in for the auth plugin's callout targets (a JWKS
//! endpoint, the kube-apiserver's TokenReview API), whose answers can be switched at run time
//! to an error status or a delay, counting every request it received and every answer it
//! finished sending.

use infergate_e2e::envoy::ClusterSpec;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One request received.
#[derive(Debug, Clone)]
pub struct StubRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target.
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl StubRequest {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`null` if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// An answer: status, JSON body, and how long to wait before sending it.
#[derive(Debug, Clone)]
pub struct StubResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// Delay before the answer.
    pub delay: Duration,
}

/// `status` with `body`, at once.
pub fn respond(status: u16, body: Value) -> StubResponse {
    StubResponse {
        status,
        body,
        delay: Duration::ZERO,
    }
}

/// Computes the answer to a request.
pub type Handler = Arc<dyn Fn(&StubRequest) -> StubResponse + Send + Sync>;

/// A running stub; stops when dropped.
pub struct HttpStub {
    /// Its address.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<StubRequest>>>,
    answered: Arc<AtomicU64>,
    handler: Arc<Mutex<Handler>>,
    task: JoinHandle<()>,
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpStub {
    /// Serves `handler` on a free loopback port.
    pub async fn start(handler: Handler) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answered = Arc::new(AtomicU64::new(0));
        let handler = Arc::new(Mutex::new(handler));
        let (reqs, done, h) = (requests.clone(), answered.clone(), handler.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (reqs, done, h) = (reqs.clone(), done.clone(), h.clone());
                tokio::spawn(async move {
                    while let Some(req) = read_request(&mut conn).await {
                        reqs.lock().unwrap().push(req.clone());
                        let handler = h.lock().unwrap().clone();
                        let resp = handler(&req);
                        tokio::time::sleep(resp.delay).await;
                        let body = resp.body.to_string();
                        let head = format!(
                            "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            resp.status,
                            body.len()
                        );
                        if conn.write_all(head.as_bytes()).await.is_err()
                            || conn.write_all(body.as_bytes()).await.is_err()
                        {
                            return;
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        Ok(Self {
            addr,
            requests,
            answered,
            handler,
            task,
        })
    }

    /// Answers with `handler` from now on.
    pub fn set(&self, handler: Handler) {
        *self.handler.lock().unwrap() = handler;
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<StubRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Answers written completely so far (a caller that gave up may have closed first).
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// An HTTP/1.1 Envoy cluster `name` pointing at this stub.
    pub fn cluster(&self, name: &str) -> ClusterSpec {
        ClusterSpec {
            name: name.to_string(),
            addresses: vec![self.addr],
            http2: false,
        }
    }
}

async fn read_request(conn: &mut TcpStream) -> Option<StubRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(StubRequest {
        method,
        path,
        headers,
        body,
    })
}
