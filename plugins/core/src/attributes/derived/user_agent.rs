//! `request.useragent`: the client's `User-Agent` header.

use super::Derived;

/// `request.useragent`.
pub const USER_AGENT: Derived = Derived {
    names: &["request.useragent"],
    values: |r| r.header_values("user-agent"),
};
