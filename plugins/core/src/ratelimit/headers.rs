//! Rate-limit response headers: the IETF draft (`RateLimit-Policy`, `RateLimit`) or OpenAI's
//! `x-ratelimit-*` names; and the headers a rate limit service asks to add
//! (`response_headers_to_add`, e.g. Limitador's `X-RateLimit-*`), checked by [`from_service`].

use super::config::{Counts, HeaderStyle};
use super::decision::RateStatus;

/// Headers describing `status` in `style`. For `x-ratelimit-*` the most restrictive request
/// rate and token rate are shown.
pub fn render(style: HeaderStyle, status: &[RateStatus]) -> Vec<(String, String)> {
    match style {
        HeaderStyle::None => Vec::new(),
        HeaderStyle::Draft => {
            if status.is_empty() {
                return Vec::new();
            }
            let policy = status
                .iter()
                .map(|s| {
                    format!(
                        "\"{}\";q={};w={}",
                        s.name,
                        s.limit,
                        s.window_ms.div_ceil(1000)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let current = status
                .iter()
                .map(|s| {
                    format!(
                        "\"{}\";r={};t={}",
                        s.name,
                        s.remaining,
                        s.reset_ms.div_ceil(1000)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                ("ratelimit-policy".to_string(), policy),
                ("ratelimit".to_string(), current),
            ]
        }
        HeaderStyle::XRatelimit => {
            let mut out = Vec::new();
            for (counts, suffix) in [(Counts::Requests, "requests"), (Counts::Tokens, "tokens")] {
                if let Some(s) = status
                    .iter()
                    .filter(|s| s.counts == counts)
                    .min_by_key(|s| s.remaining)
                {
                    out.push((format!("x-ratelimit-limit-{suffix}"), s.limit.to_string()));
                    out.push((
                        format!("x-ratelimit-remaining-{suffix}"),
                        s.remaining.to_string(),
                    ));
                    out.push((
                        format!("x-ratelimit-reset-{suffix}"),
                        format!("{}s", s.reset_ms.div_ceil(1000)),
                    ));
                }
            }
            out
        }
    }
}

/// Names a service may not set: hop-by-hop headers (RFC 9110 §7.6.1), framing, and names the
/// proxy owns.
const FORBIDDEN: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-type",
    "host",
];

/// RFC 9110 `tchar` (header names; `:` pseudo-headers are not tokens).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The service's `response_headers_to_add` that may reach the client: names lower-cased; a
/// name that is not a token, a hop-by-hop or framing header, or a value with control
/// characters is dropped; a repeated name keeps its first value.
pub fn from_service(raw: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in raw {
        let name = name.to_ascii_lowercase();
        let valid_name = !name.is_empty() && name.bytes().all(is_tchar);
        let valid_value = value
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
        if valid_name
            && valid_value
            && !FORBIDDEN.contains(&name.as_str())
            && !out.iter().any(|(n, _)| *n == name)
        {
            out.push((name, value.trim().to_string()));
        }
    }
    out
}

/// `service` headers whose names are not among `own` (the plugin's own headers win).
pub fn without<'a>(
    service: &'a [(String, String)],
    own: &'a [(String, String)],
) -> impl Iterator<Item = &'a (String, String)> {
    service
        .iter()
        .filter(move |(n, _)| !own.iter().any(|(o, _)| o.eq_ignore_ascii_case(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(name: &str, counts: Counts, limit: u64, remaining: u64) -> RateStatus {
        RateStatus {
            name: name.into(),
            counts,
            limit,
            remaining,
            window_ms: 60_000,
            reset_ms: 1_500,
        }
    }

    #[test]
    fn draft_headers_list_every_rate() {
        let h = render(
            HeaderStyle::Draft,
            &[
                st("a", Counts::Requests, 10, 4),
                st("t", Counts::Tokens, 100, 50),
            ],
        );
        assert_eq!(
            h[0],
            (
                "ratelimit-policy".into(),
                "\"a\";q=10;w=60, \"t\";q=100;w=60".into()
            )
        );
        assert_eq!(
            h[1],
            ("ratelimit".into(), "\"a\";r=4;t=2, \"t\";r=50;t=2".into())
        );
    }

    #[test]
    fn x_headers_show_the_tightest_rate() {
        let h = render(
            HeaderStyle::XRatelimit,
            &[
                st("a", Counts::Requests, 10, 4),
                st("b", Counts::Requests, 100, 2),
            ],
        );
        assert!(h.contains(&("x-ratelimit-remaining-requests".into(), "2".into())));
        assert!(h.contains(&("x-ratelimit-limit-requests".into(), "100".into())));
        assert!(render(HeaderStyle::None, &[st("a", Counts::Requests, 1, 1)]).is_empty());
    }

    #[test]
    fn service_headers_are_lower_cased_and_checked() {
        let raw: Vec<(String, String)> = [
            ("X-RateLimit-Limit", "5, 5;w=60"),
            ("X-RateLimit-Remaining", " 0 "),
            ("x-ratelimit-limit", "dup"),
            ("Connection", "close"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "0"),
            (":status", "200"),
            ("bad name", "v"),
            ("x-split", "a\r\nset-cookie: x"),
            ("x-nul", "a\0b"),
            ("", "v"),
            ("X-Ok", "a\tb"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            from_service(&raw),
            vec![
                ("x-ratelimit-limit".into(), "5, 5;w=60".into()),
                ("x-ratelimit-remaining".into(), "0".into()),
                ("x-ok".into(), "a\tb".into()),
            ]
        );
    }

    #[test]
    fn own_headers_win_over_the_service() {
        let own = vec![("retry-after".to_string(), "60".to_string())];
        let service = vec![
            ("retry-after".to_string(), "1".to_string()),
            ("x-ratelimit-reset".to_string(), "42".to_string()),
        ];
        let kept: Vec<_> = without(&service, &own).collect();
        assert_eq!(kept, vec![&service[1]]);
    }
}
