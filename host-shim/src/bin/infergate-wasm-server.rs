//! `infergate-wasm-server`: serves the plugins' `.wasm` files over plain HTTP so an Envoy
//! without an OCI-capable Wasm fetcher can load them through `vm_config.code.remote` (HTTP URI
//! plus sha256), the way Kuadrant's operator serves wasm-shim on Istio.
//!
//! Only `GET`/`HEAD /<name>.wasm` of files directly inside `--dir` are served (no sub-folders,
//! no dot files); the files are read once at start, so the answer never changes under Envoy's
//! sha256 check. `GET /healthz` answers `ok`.

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Folder whose `*.wasm` files are served.
    #[arg(long, default_value = "/wasm")]
    dir: PathBuf,
    /// Listen address.
    #[arg(long, default_value = "0.0.0.0:8080")]
    addr: SocketAddr,
}

type Files = Arc<BTreeMap<String, Bytes>>;

/// Reads every `*.wasm` file directly inside `dir`.
fn load(dir: &std::path::Path) -> std::io::Result<BTreeMap<String, Bytes>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".wasm") && !name.starts_with('.') && entry.file_type()?.is_file() {
            files.insert(name, Bytes::from(std::fs::read(entry.path())?));
        }
    }
    Ok(files)
}

fn answer(req: &Request<Incoming>, files: &Files) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        return status(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
    }
    if path == "/healthz" {
        return status(StatusCode::OK, "ok\n");
    }
    let Some(body) = path.strip_prefix('/').and_then(|n| files.get(n)) else {
        return status(StatusCode::NOT_FOUND, "not found\n");
    };
    let mut r = Response::new(Full::new(if head { Bytes::new() } else { body.clone() }));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/wasm"));
    if head {
        r.headers_mut()
            .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    r
}

fn status(code: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = code;
    r
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let files: Files =
        Arc::new(load(&cli.dir).map_err(|e| anyhow::anyhow!("--dir {}: {e}", cli.dir.display()))?);
    if files.is_empty() {
        anyhow::bail!("--dir {}: no .wasm files", cli.dir.display());
    }
    let listener = TcpListener::bind(cli.addr)
        .await
        .map_err(|e| anyhow::anyhow!("--addr {}: {e}", cli.addr))?;
    println!(
        "infergate-wasm-server: serving {} on http://{}",
        files.keys().cloned().collect::<Vec<_>>().join(", "),
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let files = files.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let files = files.clone();
                async move { Ok::<_, Infallible>(answer(&req, &files)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
