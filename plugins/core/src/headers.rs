//! Header names the gateway owns. A client may never set these: every plugin that reads one
//! removes client-sent copies first.

/// The Endpoint Picker Protocol header that names the upstream `ip:port` the ORIGINAL_DST
/// cluster connects to.
pub const DESTINATION_ENDPOINT: &str = "x-gateway-destination-endpoint";

/// Fallback endpoints, comma separated, as the Endpoint Picker Protocol names them.
pub const DESTINATION_ENDPOINT_FALLBACKS: &str = "x-gateway-destination-endpoint-fallbacks";

/// Default header carrying the authenticated user id to upstreams and later filters.
pub const DEFAULT_USER_HEADER: &str = "x-infergate-user";

/// Default header carrying the authenticated identity's groups (comma separated).
pub const DEFAULT_GROUPS_HEADER: &str = "x-infergate-groups";

/// Lower-cases and checks a header name from configuration.
///
/// Returns `None` when the name is not a valid HTTP token or is an HTTP/2 pseudo-header.
pub fn normalize_header_name(name: &str) -> Option<String> {
    let valid = !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        });
    valid.then(|| name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_lowercased_and_checked() {
        assert_eq!(normalize_header_name("X-User").as_deref(), Some("x-user"));
        assert_eq!(normalize_header_name(""), None);
        assert_eq!(normalize_header_name(":path"), None);
        assert_eq!(normalize_header_name("bad header"), None);
        assert_eq!(normalize_header_name("x\r\ny"), None);
    }
}
