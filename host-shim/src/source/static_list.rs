//! A fixed endpoint list (`--endpoints`).

use super::{EndpointSource, SourceError};
use crate::endpoint::Endpoint;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::watch;

/// Endpoints given once, never changing.
#[derive(Debug, Clone)]
pub struct StaticSource {
    text: String,
}

impl StaticSource {
    /// A source of the comma-separated `ip:port` list `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Self { text: text.into() }
    }
}

impl EndpointSource for StaticSource {
    fn load(&mut self) -> Result<Vec<Endpoint>, SourceError> {
        super::parse_endpoint_list(&self.text, "--endpoints")
    }

    fn watch(self: Box<Self>, tx: watch::Sender<Arc<Vec<Endpoint>>>) -> BoxFuture<'static, ()> {
        Box::pin(async move { tx.closed().await })
    }
}
