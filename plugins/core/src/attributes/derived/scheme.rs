//! `request.scheme`: the URL scheme the client used (`http`, `https`; Envoy's `:scheme`).

use super::Derived;

/// `request.scheme`.
pub const SCHEME: Derived = Derived {
    names: &["request.scheme"],
    values: |r| r.header_values(":scheme"),
};
