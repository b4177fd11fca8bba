//! Rate-limit response headers: the IETF draft (`RateLimit-Policy`, `RateLimit`) or OpenAI's
//! `x-ratelimit-*` names.

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
}
