//! `request.id`: the request id Envoy assigns or keeps (`x-request-id`).

use super::Derived;

/// `request.id`.
pub const ID: Derived = Derived {
    names: &["request.id"],
    values: |r| r.header_values("x-request-id"),
};
