//! A stand-in for the Kubernetes API server's list/watch protocol, for tests. It is the
//! protocol, not a cluster: no kube-apiserver can run on these machines (no reachable
//! registry ships one), so this server speaks exactly what a client sees of one, over HTTPS
//! with a bearer token:
//!
//! - `GET /api/v1/namespaces/{ns}/pods` and
//!   `GET /apis/{group}/{version}/namespaces/{ns}/inferencepools` (`fieldSelector=metadata.name=…`):
//!   a `List` with `metadata.resourceVersion`;
//! - the same with `watch=true&resourceVersion=R`: a chunked stream of one JSON event per
//!   line, `ADDED` / `MODIFIED` / `DELETED` of everything after `R`, then live, with
//!   `BOOKMARK`s when `allowWatchBookmarks=true`;
//! - a `resourceVersion` older than the compacted history gets the API server's
//!   `ERROR` event carrying a `410 Expired` `Status`, so the client must relist;
//! - [`KubeApi::drop_watches`] cuts every watch mid-stream (no terminating chunk);
//!   [`KubeApi::set_down`] makes it reset every new connection (an API server gone away).
//!
//! Objects are stored and sent as the API server sends them (`kind`/`apiVersion` in watch
//! events, `resourceVersion` bumped on every write, `uid`, `creationTimestamp`).

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::rustls;

/// The bearer token the server accepts.
pub const TOKEN: &str = "infergate-test-token";

type Chunk = Result<Frame<Bytes>, std::io::Error>;
type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// Which collection an object belongs to: `(group/version or "v1", plural, namespace)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Collection {
    api: String,
    plural: String,
    namespace: String,
}

#[derive(Debug)]
struct Watcher {
    collection: Collection,
    name: Option<String>,
    tx: mpsc::UnboundedSender<Chunk>,
}

#[derive(Debug, Default)]
struct State {
    rv: u64,
    objects: BTreeMap<(Collection, String), Value>,
    /// `(resourceVersion, collection, event type, object)` of every write since `compacted`.
    history: Vec<(u64, Collection, &'static str, Value)>,
    /// Watches from a resourceVersion below this get `410 Gone`.
    compacted: u64,
    watchers: Vec<Watcher>,
    down: bool,
    lists: u64,
    watches: u64,
    next_uid: u64,
}

/// Counters of what clients asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// List requests served.
    pub lists: u64,
    /// Watch requests served (including those answered with 410).
    pub watches: u64,
    /// Watches open now.
    pub open_watches: usize,
}

/// The running server.
pub struct KubeApi {
    /// Where it listens (`127.0.0.1:port`).
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    ca_pem: PathBuf,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KubeApi {
    /// Starts the server with a fresh certificate authority.
    pub async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let files = crate::tls::generate(dir.path())?;
        let config = server_config(&files)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let bookmarks = Duration::from_millis(200);
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                if st.lock().unwrap().down {
                    // An API server gone away: the connection is reset at once.
                    drop(tcp);
                    continue;
                }
                let acceptor = acceptor.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(route(req, &st, bookmarks).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .http1_only()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            state,
            ca_pem: files.ca_cert,
            task,
            _dir: dir,
        })
    }

    /// Writes a kubeconfig for this server (CA file, bearer token, `namespace`) into `dir`.
    pub fn write_kubeconfig(&self, dir: &Path, namespace: &str) -> Result<PathBuf> {
        let path = dir.join("kubeconfig.yaml");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://{addr}\n    certificate-authority: {ca}\nusers:\n- name: test\n  user:\n    token: {TOKEN}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: {namespace}\ncurrent-context: test\n",
            addr = self.addr,
            ca = self.ca_pem.display(),
        );
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Creates or replaces a pod (`metadata.uid` is kept on replace, or set to `uid`).
    pub fn apply_pod(&self, pod: &PodSpec) {
        self.apply(
            Collection {
                api: "v1".into(),
                plural: "pods".into(),
                namespace: pod.namespace.clone(),
            },
            pod.to_json(),
        );
    }

    /// Deletes a pod (as the API server does once its grace period is over).
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        self.delete(
            Collection {
                api: "v1".into(),
                plural: "pods".into(),
                namespace: namespace.into(),
            },
            name,
        );
    }

    /// Creates or replaces an InferencePool object (`apiVersion` decides its collection).
    pub fn apply_pool(&self, pool: Value) {
        let collection = pool_collection(&pool);
        self.apply(collection, pool);
    }

    /// Deletes an InferencePool.
    pub fn delete_pool(&self, api_version: &str, namespace: &str, name: &str) {
        self.delete(
            Collection {
                api: api_version.into(),
                plural: "inferencepools".into(),
                namespace: namespace.into(),
            },
            name,
        );
    }

    /// Forgets the write history: a watch resuming from any earlier resourceVersion gets
    /// `410 Gone` (as after etcd compaction).
    pub fn compact(&self) {
        let mut st = self.state.lock().unwrap();
        st.compacted = st.rv + 1;
        st.history.clear();
    }

    /// Cuts every open watch mid-stream.
    pub fn drop_watches(&self) {
        let mut st = self.state.lock().unwrap();
        for w in st.watchers.drain(..) {
            let _ = w.tx.send(Err(std::io::Error::other("connection dropped")));
        }
    }

    /// While `down`, every new connection is reset; open watches are cut.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
        if down {
            self.drop_watches();
        }
    }

    /// What clients asked so far.
    pub fn stats(&self) -> Stats {
        let st = self.state.lock().unwrap();
        Stats {
            lists: st.lists,
            watches: st.watches,
            open_watches: st.watchers.iter().filter(|w| !w.tx.is_closed()).count(),
        }
    }

    fn apply(&self, collection: Collection, mut obj: Value) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = (collection.clone(), name);
        let existing_uid = st
            .objects
            .get(&key)
            .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_string));
        let meta = &mut obj["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        meta["namespace"] = json!(collection.namespace);
        if meta.get("uid").and_then(Value::as_str).is_none() {
            let uid = match existing_uid.clone() {
                Some(u) => u,
                None => {
                    st.next_uid += 1;
                    format!("00000000-0000-4000-8000-{:012x}", st.next_uid)
                }
            };
            obj["metadata"]["uid"] = json!(uid);
        }
        if obj["metadata"].get("creationTimestamp").is_none() {
            obj["metadata"]["creationTimestamp"] = json!("2026-12-01T15:00:00Z");
        }
        let kind = if existing_uid.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        st.objects.insert(key, obj.clone());
        st.history.push((rv, collection.clone(), kind, obj.clone()));
        broadcast(&mut st, &collection, kind, &obj);
    }

    fn delete(&self, collection: Collection, name: &str) {
        let mut st = self.state.lock().unwrap();
        let Some(mut obj) = st.objects.remove(&(collection.clone(), name.to_string())) else {
            return;
        };
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        let rv = st.rv;
        st.history
            .push((rv, collection.clone(), "DELETED", obj.clone()));
        broadcast(&mut st, &collection, "DELETED", &obj);
    }
}

fn pool_collection(pool: &Value) -> Collection {
    Collection {
        api: pool["apiVersion"].as_str().unwrap_or_default().to_string(),
        plural: "inferencepools".into(),
        namespace: pool["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string(),
    }
}

fn kind_of(c: &Collection) -> (&'static str, String) {
    if c.plural == "pods" {
        ("Pod", "v1".into())
    } else {
        ("InferencePool", c.api.clone())
    }
}

fn event_line(kind: &str, obj: &Value, c: &Collection) -> Bytes {
    let mut obj = obj.clone();
    let (k, api) = kind_of(c);
    obj["kind"] = json!(k);
    obj["apiVersion"] = json!(api);
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn broadcast(st: &mut State, c: &Collection, kind: &str, obj: &Value) {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    st.watchers.retain(|w| {
        if w.collection != *c || w.name.as_deref().is_some_and(|n| n != name) {
            return !w.tx.is_closed();
        }
        w.tx.send(Ok(Frame::data(event_line(kind, obj, c)))).is_ok()
    });
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    json_response(code, &body)
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `(collection, name from fieldSelector)` of a request path, if it is one this server has.
fn parse_path(path: &str, q: &BTreeMap<String, String>) -> Option<(Collection, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api, ns, plural) = match parts.as_slice() {
        ["api", "v1", "namespaces", ns, "pods"] => ("v1".to_string(), *ns, "pods"),
        ["apis", group, version, "namespaces", ns, "inferencepools"] => {
            (format!("{group}/{version}"), *ns, "inferencepools")
        }
        _ => return None,
    };
    let name = q
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("metadata.name="))
        .map(str::to_string);
    Some((
        Collection {
            api,
            plural: plural.into(),
            namespace: ns.into(),
        },
        name,
    ))
}

async fn route(
    req: Request<Incoming>,
    st: &Arc<Mutex<State>>,
    bookmarks: Duration,
) -> Response<Body> {
    let authorized = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let q = query(&req);
    let Some((collection, name)) = parse_path(req.uri().path(), &q) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    if req.method() != hyper::Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "only GET here",
        );
    }
    if q.get("watch").map(String::as_str) == Some("true")
        || q.get("watch").map(String::as_str) == Some("1")
    {
        let from: u64 = q
            .get("resourceVersion")
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let with_bookmarks = q.get("allowWatchBookmarks").map(String::as_str) == Some("true");
        watch(st, collection, name, from, with_bookmarks, bookmarks)
    } else {
        list(st, &collection, name.as_deref())
    }
}

fn list(st: &Arc<Mutex<State>>, c: &Collection, name: Option<&str>) -> Response<Body> {
    let mut st = st.lock().unwrap();
    st.lists += 1;
    let items: Vec<Value> = st
        .objects
        .iter()
        .filter(|((oc, n), _)| oc == c && name.is_none_or(|want| want == n))
        .map(|(_, o)| o.clone())
        .collect();
    let (kind, api) = kind_of(c);
    let body = json!({"kind": format!("{kind}List"), "apiVersion": api,
        "metadata": {"resourceVersion": st.rv.to_string()}, "items": items});
    json_response(StatusCode::OK, &body)
}

fn watch(
    st: &Arc<Mutex<State>>,
    collection: Collection,
    name: Option<String>,
    from: u64,
    with_bookmarks: bool,
    bookmarks: Duration,
) -> Response<Body> {
    let (tx, rx) = mpsc::unbounded_channel::<Chunk>();
    {
        let mut st = st.lock().unwrap();
        st.watches += 1;
        if from < st.compacted {
            // What the API server sends for an expired resourceVersion: 200, then one ERROR
            // event with a 410 Status, then the end of the stream.
            let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {from} ({})", st.compacted),
                "reason": "Expired", "code": 410}});
            let _ = tx.send(Ok(Frame::data(Bytes::from(format!("{gone}\n")))));
            drop(tx);
            return stream_response(rx);
        }
        for (rv, c, kind, obj) in &st.history {
            let matches = *c == collection
                && name
                    .as_deref()
                    .is_none_or(|n| obj["metadata"]["name"].as_str() == Some(n));
            if *rv > from && matches {
                let _ = tx.send(Ok(Frame::data(event_line(kind, obj, c))));
            }
        }
        st.watchers.push(Watcher {
            collection: collection.clone(),
            name,
            tx: tx.clone(),
        });
    }
    if with_bookmarks {
        let st = st.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(bookmarks).await;
                let rv = st.lock().unwrap().rv;
                let (kind, api) = kind_of(&collection);
                let mark = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api,
                    "metadata": {"resourceVersion": rv.to_string()}}});
                if tx
                    .send(Ok(Frame::data(Bytes::from(format!("{mark}\n")))))
                    .is_err()
                {
                    return;
                }
            }
        });
    }
    stream_response(rx)
}

fn stream_response(rx: mpsc::UnboundedReceiver<Chunk>) -> Response<Body> {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn server_config(files: &crate::tls::TlsFiles) -> Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&files.cert_chain)
        .context("certificate")?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&files.private_key).context("key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A pod as the API server returns it, built from the few fields tests vary.
#[derive(Debug, Clone)]
pub struct PodSpec {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`; `None` lets the server assign one (kept across updates).
    pub uid: Option<String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `status.podIP`.
    pub ip: Option<String>,
    /// Condition `Ready`.
    pub ready: bool,
    /// `metadata.deletionTimestamp` set (terminating).
    pub terminating: bool,
}

impl PodSpec {
    /// A ready pod `name` at `ip` with label `app=<app>`.
    pub fn ready(namespace: &str, name: &str, app: &str, ip: &str) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            uid: None,
            labels: [("app".to_string(), app.to_string())].into(),
            ip: Some(ip.into()),
            ready: true,
            terminating: false,
        }
    }

    /// The pod's JSON, shaped like `kubectl get pod -o json` of a vLLM pod.
    pub fn to_json(&self) -> Value {
        let ready = if self.ready { "True" } else { "False" };
        let mut meta = json!({"name": self.name, "namespace": self.namespace,
            "labels": self.labels, "generateName": format!("{}-", self.name)});
        if let Some(uid) = &self.uid {
            meta["uid"] = json!(uid);
        }
        if self.terminating {
            meta["deletionTimestamp"] = json!("2026-12-01T15:10:00Z");
            meta["deletionGracePeriodSeconds"] = json!(30);
        }
        let mut status = json!({"phase": "Running", "hostIP": "10.0.1.5", "qosClass": "Burstable",
            "startTime": "2026-12-01T15:00:00Z",
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-12-01T15:00:02Z"},
                {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-12-01T15:00:01Z"},
                {"type": "Ready", "status": ready, "lastProbeTime": null, "lastTransitionTime": "2026-12-01T15:00:30Z"},
                {"type": "ContainersReady", "status": ready, "lastProbeTime": null, "lastTransitionTime": "2026-12-01T15:00:30Z"},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-12-01T15:00:00Z"}]});
        if let Some(ip) = &self.ip {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{"ip": ip}]);
        }
        json!({"metadata": meta,
            "spec": {"containers": [{"name": "main", "image": "vllm/vllm-openai:v0.8.4",
                "ports": [{"containerPort": 8000, "name": "http", "protocol": "TCP"}]}],
                "restartPolicy": "Always", "terminationGracePeriodSeconds": 30},
            "status": status})
    }
}

/// An `inference.networking.k8s.io/v1` InferencePool selecting `app=<app>` on `ports`.
pub fn pool_v1(namespace: &str, name: &str, app: &str, ports: &[u16]) -> Value {
    let ports: Vec<Value> = ports.iter().map(|p| json!({"number": p})).collect();
    json!({"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {"selector": {"matchLabels": {"app": app}}, "targetPorts": ports,
            "endpointPickerRef": {"name": format!("{name}-epp"), "port": {"number": 9002}, "failureMode": "FailClose"}}})
}

/// An `inference.networking.x-k8s.io/v1alpha2` InferencePool selecting `app=<app>` on `port`.
pub fn pool_v1alpha2(namespace: &str, name: &str, app: &str, port: u16) -> Value {
    json!({"apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferencePool",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {"selector": {"app": app}, "targetPortNumber": port,
            "extensionRef": {"name": format!("{name}-epp"), "portNumber": 9002, "failureMode": "FailClose"}}})
}
