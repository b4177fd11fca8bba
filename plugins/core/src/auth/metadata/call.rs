//! Building one metadata call from the authorization JSON: path, headers, body, cache key.

use super::template::{percent_encode, render_pieces, stringify};
use super::{ContentType, Evaluator, HttpMethod, MetadataError, CACHE_PREFIX};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// An HTTP call the adapter makes through Envoy (`dispatch_http_call`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataCall {
    /// Which evaluator (hand it back to [`super::Metadata::answered`]).
    pub index: usize,
    /// `auth.metadata.<name>`.
    pub name: String,
    /// Envoy cluster.
    pub cluster: String,
    /// Request headers, pseudo-headers (`:method`, `:path`, `:authority`) first.
    pub headers: Vec<(String, String)>,
    /// Request body (empty for GET).
    pub body: Vec<u8>,
    /// Timeout in milliseconds.
    pub timeout_ms: u64,
    /// Largest answer to read.
    pub max_response_bytes: usize,
    /// Shared-data key for the answer, when the evaluator caches.
    pub cache_key: Option<String>,
    /// Seconds to keep the answer.
    pub ttl_seconds: u64,
}

impl MetadataCall {
    /// The value of a request header of the call.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn safe(s: &str) -> Result<&str, MetadataError> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        Err(MetadataError::BadValue)
    } else {
        Ok(s)
    }
}

/// The shared-data key of a rendered cache key for evaluator `name`.
pub fn cache_key(name: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{CACHE_PREFIX}{name}.{hex}")
}

fn form_encode(params: &Map<String, Value>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(&stringify(v))))
        .collect::<Vec<_>>()
        .join("&")
}

/// Builds the call; `Err` when a required attribute is missing (`Missing`) or a rendered
/// header value holds a line break.
pub(crate) fn build(
    index: usize,
    e: &Evaluator,
    json: &Value,
) -> Result<MetadataCall, MetadataError> {
    let c = &e.config;
    let missing = |_| MetadataError::MissingInput;
    let mut path = render_pieces(&e.path, json, &percent_encode);
    let mut headers = vec![
        (":method".to_string(), c.method.as_str().to_string()),
        (":path".to_string(), String::new()),
        (
            ":authority".to_string(),
            c.authority.clone().unwrap_or_else(|| c.cluster.clone()),
        ),
    ];
    let body = match c.method {
        HttpMethod::Get => {
            headers.push(("content-type".into(), "text/plain".into()));
            Vec::new()
        }
        HttpMethod::Post => {
            headers.push(("content-type".into(), c.content_type.as_str().into()));
            match &e.body {
                Some(b) => b.render_text(json).map_err(missing)?.into_bytes(),
                None => {
                    let mut params = Map::new();
                    for (k, v) in &e.parameters {
                        params.insert(k.clone(), v.render(json).map_err(missing)?);
                    }
                    match c.content_type {
                        ContentType::Json => Value::Object(params).to_string().into_bytes(),
                        ContentType::Form => form_encode(&params).into_bytes(),
                    }
                }
            }
        }
    };
    for (k, v) in &e.headers {
        let value = v.render_text(json).map_err(missing)?;
        headers.push((k.clone(), safe(&value)?.to_string()));
    }
    if let Some(s) = &c.shared_secret {
        if let Some(h) = &s.custom_header {
            headers.push((h.name.to_ascii_lowercase(), s.secret.clone()));
        } else if let Some(q) = &s.query_string {
            let sep = if path.contains('?') { '&' } else { '?' };
            path = format!(
                "{path}{sep}{}={}",
                percent_encode(&q.name),
                percent_encode(&s.secret)
            );
        } else {
            let prefix = s
                .authorization_header
                .as_ref()
                .map(|p| p.prefix.as_str())
                .unwrap_or("Bearer");
            headers.push(("authorization".into(), format!("{prefix} {}", s.secret)));
        }
    }
    if let Some((_, p)) = headers.get_mut(1) {
        *p = path;
    }
    let cache_key = match (&e.cache_key, &c.cache) {
        (Some(k), Some(_)) => k.render_text(json).ok().map(|k| cache_key(&c.name, &k)),
        _ => None,
    };
    Ok(MetadataCall {
        index,
        name: c.name.clone(),
        cluster: c.cluster.clone(),
        headers,
        body,
        timeout_ms: c.timeout_ms,
        max_response_bytes: c.max_response_bytes,
        cache_key,
        ttl_seconds: c.cache.as_ref().map(|x| x.ttl_seconds).unwrap_or(0),
    })
}
