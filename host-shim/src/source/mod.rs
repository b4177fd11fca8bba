//! Where the endpoint list comes from.
//!
//! A source loads the initial set (an error there stops start-up, naming the bad entry) and
//! then publishes changes; a change that fails to load is logged and the last good set is
//! kept. A Kubernetes InferencePool watcher is one more implementation of [`EndpointSource`].

pub mod file;
pub mod kube;
pub mod static_list;

use crate::endpoint::Endpoint;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::watch;

/// An endpoint list that could not be loaded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{origin}: {message}")]
pub struct SourceError {
    /// Where the bad entry is (`endpoints.txt:3`, `--endpoints[1]`).
    pub origin: String,
    /// What is wrong with it.
    pub message: String,
}

/// A provider of the current endpoint set.
pub trait EndpointSource: Send + 'static {
    /// Loads the initial set.
    fn load(&mut self) -> Result<Vec<Endpoint>, SourceError>;

    /// Publishes every later change to `tx` until the receiver side is gone.
    fn watch(self: Box<Self>, tx: watch::Sender<Arc<Vec<Endpoint>>>) -> BoxFuture<'static, ()>;
}

/// Parses endpoints from text: separated by commas, whitespace or newlines; `#` starts a
/// comment to the end of the line. Duplicates are dropped; the order is kept.
pub fn parse_endpoint_list(text: &str, origin: &str) -> Result<Vec<Endpoint>, SourceError> {
    let mut out: Vec<Endpoint> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for item in line.split(|c: char| c == ',' || c.is_whitespace()) {
            if item.is_empty() {
                continue;
            }
            let e: Endpoint = item.parse().map_err(|m| SourceError {
                origin: format!("{origin}:{}", n + 1),
                message: m,
            })?;
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_with_comments_and_name_the_bad_line() {
        let eps = parse_endpoint_list(
            "# pods\n10.0.0.1:8000, 10.0.0.2:8000\n\n10.0.0.1:8000 # dup\n[fd00::1]:80",
            "f",
        )
        .unwrap();
        assert_eq!(eps.len(), 3);
        let err = parse_endpoint_list("10.0.0.1:8000\npod-a:80\n", "eps.txt").unwrap_err();
        assert_eq!(err.origin, "eps.txt:2");
        assert!(err.message.contains("pod-a:80"), "{err}");
    }
}
