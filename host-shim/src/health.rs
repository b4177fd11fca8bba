//! `GET /healthz` over plain HTTP/1.1.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

/// Serves `/healthz` (200 `ok`) and 404 for anything else until the listener fails.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                let (status, body) = match req.uri().path() {
                    "/healthz" => (StatusCode::OK, "ok\n"),
                    _ => (StatusCode::NOT_FOUND, "not found\n"),
                };
                let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                *resp.status_mut() = status;
                Ok::<_, Infallible>(resp)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
