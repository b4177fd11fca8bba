//! Request attributes for limit conditions and counter keys, read once from the host.

use infergate_core::attributes::{Attribute, AttributeSource};

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
}

impl RequestAttributes {
    fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl AttributeSource for RequestAttributes {
    fn values(&self, attr: &Attribute) -> Vec<String> {
        match attr {
            Attribute::UserId => self.header(&self.user_header),
            Attribute::Groups => self
                .header(&self.groups_header)
                .iter()
                .flat_map(|v| v.split(','))
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty())
                .collect(),
            Attribute::Path => self
                .header(":path")
                .into_iter()
                .map(|p| p.split('?').next().unwrap_or_default().to_string())
                .collect(),
            Attribute::Method => self.header(":method"),
            Attribute::Host => self
                .header(":authority")
                .into_iter()
                .map(|h| infergate_core::headers::strip_port(&h).to_string())
                .collect(),
            Attribute::Header(h) => self.header(h),
            Attribute::Model => self.model.iter().cloned().collect(),
        }
    }
}
