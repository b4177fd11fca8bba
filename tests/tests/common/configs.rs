//! Plugin configurations several suites share, written once.

use serde_json::{json, Value};

/// The model the suites' pods serve.
pub const MODEL: &str = "Qwen/Qwen3-0.6B";

/// The auth plugin with one API-key method (`keys`): each `(key, userid)` pair is a key
/// (stored as its SHA-256) whose identity is that user.
pub fn api_keys(users: &[(&str, &str)]) -> Value {
    let keys: Vec<Value> = users
        .iter()
        .map(|(key, user)| json!({"sha256": super::digest(key), "identity": {"userid": user}}))
        .collect();
    json!({"methods": [{"name": "keys", "apiKey": {"keys": keys}}]})
}

/// [`api_keys`] for `alice-key` (alice) and `bob-key` (bob).
pub fn alice_and_bob() -> Value {
    api_keys(&[("alice-key", "alice"), ("bob-key", "bob")])
}

/// The ratelimit plugin in global mode: 10 requests an hour per user (`per-user`), counted by
/// the rate limit service behind cluster `ratelimit`, which failing applies `failure_mode`
/// (`deny` or `allow`); answers carry `X-RateLimit-*` headers.
pub fn per_user_global(failure_mode: &str) -> Value {
    json!({
        "limits": [{"name": "per-user", "rates": [{"limit": 10, "window": "1h"}],
                    "counters": ["auth.identity.userid"]}],
        "global": {"cluster": "ratelimit", "domain": "infergate", "timeoutMs": 500,
                   "failureMode": failure_mode},
        "responseHeaders": "xRatelimit"
    })
}

/// The ratelimit plugin in local mode: a per-user budget of `budget` tokens an hour
/// (`tokens`), with `X-RateLimit-*` headers.
pub fn token_budget(budget: u64) -> Value {
    json!({
        "limits": [{"name": "tokens", "rates": [{"limit": budget, "window": "1h"}],
                    "counters": ["auth.identity.userid"], "counts": "tokens"}],
        "responseHeaders": "xRatelimit"
    })
}

/// `base` (an object) with the fields of `extra` (an object) added or replaced.
pub fn merged(mut base: Value, extra: &Value) -> Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

/// `n` statuses of 200 and then one 429: a budget with `n` requests left being used up.
pub fn n_then_429(n: usize) -> Vec<u16> {
    let mut want = vec![200; n];
    want.push(429);
    want
}
