//! An endpoint file (`--endpoints-file`), re-read when it changes.
//!
//! The file is polled (size, mtime and content) every `interval`; polling works the same on
//! every filesystem, including a Kubernetes ConfigMap volume whose symlink is swapped.

use super::{EndpointSource, SourceError};
use crate::endpoint::Endpoint;
use futures_util::future::BoxFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Endpoints from a file: `ip:port` entries separated by newlines, commas or spaces; `#`
/// comments.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    interval: Duration,
    last_text: Option<String>,
}

impl FileSource {
    /// A source reading `path`, checking for changes every `interval`.
    pub fn new(path: impl Into<PathBuf>, interval: Duration) -> Self {
        Self {
            path: path.into(),
            interval,
            last_text: None,
        }
    }

    fn read(&self) -> Result<String, SourceError> {
        std::fs::read_to_string(&self.path).map_err(|e| SourceError {
            origin: self.path.display().to_string(),
            message: format!("cannot read: {e}"),
        })
    }

    fn parse(&self, text: &str) -> Result<Vec<Endpoint>, SourceError> {
        let eps = super::parse_endpoint_list(text, &self.path.display().to_string())?;
        if eps.is_empty() {
            return Err(SourceError {
                origin: self.path.display().to_string(),
                message: "no endpoints in the file".into(),
            });
        }
        Ok(eps)
    }
}

impl EndpointSource for FileSource {
    fn load(&mut self) -> Result<Vec<Endpoint>, SourceError> {
        let text = self.read()?;
        let eps = self.parse(&text)?;
        self.last_text = Some(text);
        Ok(eps)
    }

    fn watch(mut self: Box<Self>, tx: watch::Sender<Arc<Vec<Endpoint>>>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = tx.closed() => return,
                }
                let text = match self.read() {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(error = %e, "endpoint file unreadable; keeping the last good list");
                        continue;
                    }
                };
                if self.last_text.as_deref() == Some(text.as_str()) {
                    continue;
                }
                match self.parse(&text) {
                    Ok(eps) => {
                        tracing::info!(endpoints = eps.len(), "endpoint file reloaded");
                        self.last_text = Some(text);
                        if tx.send(Arc::new(eps)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "endpoint file rejected; keeping the last good list");
                        // Remember the bad text so the warning is not repeated every tick.
                        self.last_text = Some(text);
                    }
                }
            }
        })
    }
}
