//! A tier-lookup service for tests, following models-as-a-service's `maas-api` contract
//! (`maas-api` is a Go server that needs a cluster; this is its HTTP contract, not a copy):
//! `POST /v1/tiers/lookup` with `{"groups": [...]}` answers `200 {"tier": "<name>"}` for the
//! highest-`level` tier sharing a group with the caller (the `tier-to-group-mapping` rule),
//! `404 {"error": ...}` when none does, `400` for a body that is not `{"groups": [strings]}`.
//!
//! It counts the lookups it answers and can misbehave on demand ([`Fault`]) so tests can see
//! what the gateway does when the tier service is down, slow, failing or answering garbage.

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// One tier of the `tier-to-group-mapping`.
#[derive(Debug, Clone)]
pub struct Tier {
    /// Name (`free`, `premium`, …).
    pub name: String,
    /// Precedence: the highest level among the caller's tiers wins.
    pub level: u32,
    /// Groups in the tier.
    pub groups: Vec<String>,
}

impl Tier {
    /// A tier.
    pub fn new(name: &str, level: u32, groups: &[&str]) -> Self {
        Self {
            name: name.into(),
            level,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}

/// How the service misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers as maas-api does.
    None,
    /// Resets every connection before answering (a crashed pod behind its Service).
    Down,
    /// Answers correctly after this long.
    Slow(Duration),
    /// `500 {"error": "internal"}` (JSON, so only the status says it failed).
    ServerError,
    /// `200` with `Content-Type: application/json` and a body that is not JSON.
    Garbage,
    /// `200` with a JSON body of this many bytes.
    Oversized(usize),
}

#[derive(Debug)]
struct State {
    tiers: Vec<Tier>,
    fault: Fault,
    lookups: Vec<Value>,
    headers: Vec<Vec<(String, String)>>,
}

/// The running service.
pub struct TierService {
    /// Where it listens (plain HTTP).
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TierService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The tier a set of groups maps to.
pub fn lookup(tiers: &[Tier], groups: &[String]) -> Option<String> {
    tiers
        .iter()
        .filter(|t| t.groups.iter().any(|g| groups.contains(g)))
        .max_by_key(|t| t.level)
        .map(|t| t.name.clone())
}

fn answer(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_answer(status: StatusCode, v: Value) -> Response<Full<Bytes>> {
    answer(status, "application/json", v.to_string().into_bytes())
}

async fn route(req: Request<Incoming>, state: &Mutex<State>) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/tiers/lookup" {
        return json_answer(StatusCode::NOT_FOUND, json!({"error": "not found"}));
    }
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return json_answer(StatusCode::BAD_REQUEST, json!({"error": "body"})),
    };
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (fault, tiers) = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.lookups.push(parsed.clone());
        st.headers.push(headers);
        (st.fault, st.tiers.clone())
    };
    match fault {
        Fault::Slow(d) => tokio::time::sleep(d).await,
        Fault::ServerError => {
            return json_answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal", "tier": "premium"}),
            )
        }
        Fault::Garbage => {
            return answer(
                StatusCode::OK,
                "application/json",
                b"{\"tier\": premium".to_vec(),
            )
        }
        Fault::Oversized(n) => {
            let pad = "x".repeat(n);
            return json_answer(StatusCode::OK, json!({"tier": "premium", "pad": pad}));
        }
        Fault::None | Fault::Down => {}
    }
    let groups: Option<Vec<String>> = parsed.get("groups").and_then(|g| {
        g.as_array()?
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect()
    });
    let Some(groups) = groups else {
        return json_answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_request", "message": "body must be {\"groups\": [string]}"}),
        );
    };
    match lookup(&tiers, &groups) {
        Some(tier) => json_answer(StatusCode::OK, json!({"tier": tier})),
        None => json_answer(
            StatusCode::NOT_FOUND,
            json!({"error": "not_found", "message": "no tier found for the user's groups"}),
        ),
    }
}

impl TierService {
    /// Starts the service on a free local port.
    pub async fn start(tiers: Vec<Tier>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            tiers,
            fault: Fault::None,
            lookups: Vec::new(),
            headers: Vec::new(),
        }));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let down = st.lock().map(|s| s.fault == Fault::Down).unwrap_or(false);
                if down {
                    // Reset: close with unread data pending is not needed; dropping the
                    // socket before any answer is what Envoy sees of a dead pod.
                    drop(tcp);
                    continue;
                }
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        async move {
                            // Down: a kept-alive connection is cut without an answer too.
                            if st.lock().map(|s| s.fault == Fault::Down).unwrap_or(false) {
                                return Err(std::io::Error::other("tier service down"));
                            }
                            Ok(route(req, &st).await)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .http1_only()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// Changes how it answers from now on.
    pub fn set_fault(&self, fault: Fault) {
        if let Ok(mut s) = self.state.lock() {
            s.fault = fault;
        }
    }

    /// Lookup bodies received, in order (also those it then failed).
    pub fn lookups(&self) -> Vec<Value> {
        self.state
            .lock()
            .map(|s| s.lookups.clone())
            .unwrap_or_default()
    }

    /// Request headers of each lookup, in order.
    pub fn lookup_headers(&self) -> Vec<Vec<(String, String)>> {
        self.state
            .lock()
            .map(|s| s.headers.clone())
            .unwrap_or_default()
    }

    /// How many lookups arrived.
    pub fn calls(&self) -> usize {
        self.state.lock().map(|s| s.lookups.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_level_tier_wins() {
        let tiers = vec![
            Tier::new("free", 1, &["system:authenticated"]),
            Tier::new("premium", 10, &["premium-users"]),
        ];
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            lookup(&tiers, &g(&["system:authenticated", "premium-users"])),
            Some("premium".into())
        );
        assert_eq!(
            lookup(&tiers, &g(&["system:authenticated"])),
            Some("free".into())
        );
        assert_eq!(lookup(&tiers, &g(&["nobody"])), None);
    }

    #[tokio::test]
    async fn answers_over_http_and_counts() {
        let svc = TierService::start(vec![Tier::new("premium", 10, &["p"])])
            .await
            .unwrap();
        let c = reqwest::Client::new();
        let url = format!("http://{}/v1/tiers/lookup", svc.addr);
        // A lookup of `groups`: the answer, or the error when none came.
        let lookup_of = |groups: &[&str]| c.post(&url).json(&json!({ "groups": groups })).send();
        let r = lookup_of(&["p"]).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"tier": "premium"}));
        let r = lookup_of(&["q"]).await.unwrap();
        assert_eq!(r.status(), 404);
        let r = c.post(&url).body("nope").send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(svc.calls(), 3);
        svc.set_fault(Fault::ServerError);
        let r = lookup_of(&["p"]).await.unwrap();
        assert_eq!(r.status(), 500);
        svc.set_fault(Fault::Down);
        assert!(lookup_of(&["p"]).await.is_err());
    }
}
