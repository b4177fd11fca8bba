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

/// The host of an `:authority` value, without its port (`[::1]:80` → `[::1]`).
pub fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        // [v6]:port
        return authority
            .split_once(']')
            .and_then(|(h, _)| authority.get(..h.len() + 1))
            .unwrap_or(authority);
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ports_from_hosts() {
        assert_eq!(strip_port("a.b:8443"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }

    #[test]
    fn header_names_are_lowercased_and_checked() {
        assert_eq!(normalize_header_name("X-User").as_deref(), Some("x-user"));
        assert_eq!(normalize_header_name(""), None);
        assert_eq!(normalize_header_name(":path"), None);
        assert_eq!(normalize_header_name("bad header"), None);
        assert_eq!(normalize_header_name("x\r\ny"), None);
    }
}
