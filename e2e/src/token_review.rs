//! A stand-in for the kube-apiserver's TokenReview endpoint (no kube-apiserver can run on these
//! machines), following the `authentication.k8s.io/v1` contract: `POST
//! /apis/authentication.k8s.io/v1/tokenreviews` with the caller's service-account bearer token
//! answers `201` with the review's `status` (`authenticated`, `user.username`, `user.groups`,
//! `audiences`) for the tokens it knows, `authenticated: false` for the rest, `401` without the
//! caller's token.

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// The users behind tokens: token → (username, groups).
pub type Users = BTreeMap<String, (String, Vec<String>)>;

/// The running stand-in (plain HTTP).
pub struct TokenReviewApi {
    /// Where it listens.
    pub addr: SocketAddr,
    reviews: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenReviewApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn respond(status: StatusCode, v: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn route(
    req: Request<Incoming>,
    caller_token: &str,
    users: &Users,
    reviews: &Mutex<usize>,
) -> Response<Full<Bytes>> {
    let authorized = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {caller_token}").as_str());
    if !authorized {
        return respond(
            StatusCode::UNAUTHORIZED,
            json!({"kind": "Status", "code": 401}),
        );
    }
    if req.method() != hyper::Method::POST
        || req.uri().path() != "/apis/authentication.k8s.io/v1/tokenreviews"
    {
        return respond(
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "code": 404}),
        );
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Ok(mut n) = reviews.lock() {
        *n += 1;
    }
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    let status = match users.get(token) {
        Some((username, groups)) => json!({"authenticated": true,
            "audiences": review["spec"]["audiences"],
            "user": {"username": username, "uid": format!("uid-{username}"), "groups": groups}}),
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    respond(
        StatusCode::CREATED,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
               "spec": review["spec"], "status": status}),
    )
}

impl TokenReviewApi {
    /// Starts it; `caller_token` is the gateway's service-account token it accepts.
    pub async fn start(caller_token: &str, users: Users) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let reviews = Arc::new(Mutex::new(0usize));
        let (caller, users) = (Arc::new(caller_token.to_string()), Arc::new(users));
        let counter = reviews.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (caller, users, counter) = (caller.clone(), users.clone(), counter.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (caller, users, counter) =
                            (caller.clone(), users.clone(), counter.clone());
                        async move { Ok::<_, Infallible>(route(req, &caller, &users, &counter).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .http1_only()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            reviews,
            task,
        })
    }

    /// TokenReviews answered so far.
    pub fn reviews(&self) -> usize {
        self.reviews.lock().map(|n| *n).unwrap_or(0)
    }
}
