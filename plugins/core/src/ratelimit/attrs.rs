//! Request attributes for limit conditions and counter keys, read once from the host.
//!
//! The identity comes from the auth plugin's filter state (`infergate.identity`: the identity
//! object with every property, bounded in size, which clients cannot set); without it, from the
//! identity headers the auth plugin sets (client copies are stripped there).

use super::config::RateLimitConfig;
use crate::attributes::derived::RequestFacts;
use crate::attributes::{Attribute, AttributeSource};
use crate::auth::identity::{self, IdentityObject};

/// What limits can key on for one request.
pub struct RequestAttributes {
    /// Request headers (pseudo-headers included), as the host gave them.
    pub headers: Vec<(String, String)>,
    /// Identity header names (lower case).
    pub user_header: String,
    /// Groups header name (lower case).
    pub groups_header: String,
    /// The body's `model`, once the body was parsed.
    pub model: Option<String>,
    /// The identity object the auth plugin left in filter state.
    pub identity: Option<IdentityObject>,
    /// The client's `ip:port`.
    pub source: Option<String>,
}

impl RequestAttributes {
    /// The attributes of a request with these `headers`, the auth plugin's encoded identity
    /// object (filter state `infergate.identity`, when present) and the client's `ip:port`.
    pub fn new(
        headers: Vec<(String, String)>,
        identity: Option<&[u8]>,
        source: Option<String>,
        config: &RateLimitConfig,
    ) -> Self {
        Self {
            headers,
            user_header: config.identity_headers.userid.to_ascii_lowercase(),
            groups_header: config.identity_headers.groups.to_ascii_lowercase(),
            model: None,
            identity: identity.and_then(identity::decode),
            source,
        }
    }

    /// The first value of the identity (user id) header.
    pub fn user_header_value(&self) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&self.user_header))
            .map(|(_, v)| v.clone())
    }

    fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn identity_path(&self, path: &[String]) -> Option<Vec<String>> {
        identity::values_at(self.identity.as_ref()?, path)
    }
}

impl RequestFacts for RequestAttributes {
    fn header_values(&self, name: &str) -> Vec<String> {
        self.header(name)
    }
    fn source_address(&self) -> Option<&str> {
        self.source.as_deref()
    }
}

impl AttributeSource for RequestAttributes {
    fn values(&self, attr: &Attribute) -> Vec<String> {
        match attr {
            Attribute::UserId => match self.identity_path(&["userid".to_string()]) {
                Some(v) => v,
                None => self.header(&self.user_header),
            },
            Attribute::Groups => match self.identity.as_ref().and_then(|m| m.get("groups")) {
                Some(g) => identity::groups_of(g),
                None => self
                    .header(&self.groups_header)
                    .iter()
                    .flat_map(|v| v.split(','))
                    .map(|g| g.trim().to_string())
                    .filter(|g| !g.is_empty())
                    .collect(),
            },
            Attribute::Identity(path) => self.identity_path(path).unwrap_or_default(),
            Attribute::Path => self
                .header(":path")
                .into_iter()
                .map(|p| p.split('?').next().unwrap_or_default().to_string())
                .collect(),
            Attribute::Query => self
                .header(":path")
                .into_iter()
                .filter_map(|p| p.split_once('?').map(|(_, q)| q.to_string()))
                .collect(),
            Attribute::Method => self.header(":method"),
            Attribute::Host => self
                .header(":authority")
                .into_iter()
                .map(|h| crate::headers::strip_port(&h).to_string())
                .collect(),
            Attribute::Header(h) => self.header(h),
            Attribute::Model => self.model.iter().cloned().collect(),
            Attribute::SourceAddress => self.source.iter().cloned().collect(),
            Attribute::SourceIp => self
                .source
                .iter()
                .filter_map(|s| crate::auth::cidr::ip_of(s))
                .map(|ip| ip.to_string())
                .collect(),
            Attribute::Derived(d) => (d.values)(self),
        }
    }
}
