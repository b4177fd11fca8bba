//! JWKS documents for `jwksUri` methods: fetched by each worker's root context on a timer,
//! kept in shared data (`infergate.auth.jwks.<method>` = `<fetched-at-secs>\n<JWKS JSON>`),
//! parsed once per VM per version.
//!
//! A fetch that fails (error status, timeout, a document with no usable key) changes nothing:
//! the last good set stays in shared data and in use, and the fetch is retried after
//! [`RETRY_SECS`]. A fresh set fetched by any worker is used by every worker.

use infergate_core::auth::jwt::{JwksFetchError, KeySet};
use infergate_core::auth::JwksFetch;
use infergate_glue::host;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// Seconds between attempts after a failed fetch.
pub const RETRY_SECS: u64 = 5;

fn key(method: &str) -> String {
    format!("infergate.auth.jwks.{method}")
}

/// `(fetched-at, document)` of the stored set.
fn stored(method: &str) -> Option<(u64, Vec<u8>, Option<u32>)> {
    let (value, cas) = host::shared_get_versioned(&key(method))?;
    let nl = value.iter().position(|b| *b == b'\n')?;
    let at = std::str::from_utf8(value.get(..nl)?).ok()?.parse().ok()?;
    Some((at, value.get(nl + 1..)?.to_vec(), cas))
}

struct Slot {
    fetch: JwksFetch,
    in_flight: Option<u32>,
    last_attempt: Option<u64>,
}

/// The root context's side: which fetches are due, and storing their answers.
#[derive(Default)]
pub struct JwksFetcher {
    slots: Vec<Slot>,
}

/// `(cluster, headers, timeout, slot)` of a fetch to send.
pub type Due = (String, Vec<(String, String)>, Duration, usize);

impl JwksFetcher {
    /// One slot per `jwksUri` method.
    pub fn new(fetches: Vec<JwksFetch>) -> Self {
        Self {
            slots: fetches
                .into_iter()
                .map(|fetch| Slot {
                    fetch,
                    in_flight: None,
                    last_attempt: None,
                })
                .collect(),
        }
    }

    /// Fetches to send now: the stored set is missing or older than the refresh period, no
    /// fetch is in flight, and the last attempt is at least [`RETRY_SECS`] old.
    pub fn due(&self, now: u64) -> Vec<Due> {
        let mut out = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            if s.in_flight.is_some() {
                continue;
            }
            let fresh = stored(&s.fetch.method)
                .is_some_and(|(at, _, _)| now < at.saturating_add(s.fetch.refresh_seconds));
            if fresh {
                continue;
            }
            let retry = RETRY_SECS.min(s.fetch.refresh_seconds);
            if s.last_attempt
                .is_some_and(|t| now < t.saturating_add(retry))
            {
                continue;
            }
            out.push((
                s.fetch.cluster.clone(),
                vec![
                    (":method".to_string(), "GET".to_string()),
                    (":path".to_string(), s.fetch.path.clone()),
                    (":authority".to_string(), s.fetch.authority.clone()),
                    ("accept".to_string(), "application/json".to_string()),
                ],
                Duration::from_millis(s.fetch.timeout_ms),
                i,
            ));
        }
        out
    }

    /// A fetch was sent with `token`.
    pub fn sent(&mut self, slot: usize, token: u32, now: u64) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.in_flight = Some(token);
            s.last_attempt = Some(now);
        }
    }

    /// A fetch could not be sent.
    pub fn failed(&mut self, slot: usize, now: u64) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.in_flight = None;
            s.last_attempt = Some(now);
        }
    }

    /// An answer to call `token` (`status` `None`: no answer): `Some(Ok(()))` stored,
    /// `Some(Err(why))` refused (the last good set is kept, the failure logged), `None` not
    /// a JWKS call.
    pub fn on_response(
        &mut self,
        token: u32,
        status: Option<u32>,
        body: &[u8],
        now: u64,
    ) -> Option<Result<(), JwksFetchError>> {
        let slot = self.slots.iter_mut().find(|s| s.in_flight == Some(token))?;
        slot.in_flight = None;
        let outcome = store(&slot.fetch.method, status, body, now);
        if let Err(why) = &outcome {
            log_failure(&slot.fetch.method, why);
        }
        Some(outcome)
    }
}

/// Checks a fetched document and stores it with its fetch time.
fn store(method: &str, status: Option<u32>, body: &[u8], now: u64) -> Result<(), JwksFetchError> {
    if let Some(e) = JwksFetchError::of_status(status) {
        return Err(e);
    }
    KeySet::from_json(body)?;
    let mut value = format!("{now}\n").into_bytes();
    value.extend_from_slice(body);
    if host::shared_set(&key(method), &value) {
        Ok(())
    } else {
        Err(JwksFetchError::NotStored)
    }
}

fn log_failure(method: &str, why: &JwksFetchError) {
    infergate_glue::log(
        proxy_wasm::types::LogLevel::Warn,
        &format!("infergate-auth: JWKS fetch for method `{method}` failed ({why}); keeping the last good key set"),
    );
}

/// The HTTP contexts' side: the parsed set of each method, re-parsed only when the stored
/// version changes.
#[derive(Default)]
pub struct JwksCache {
    parsed: HashMap<String, (Option<u32>, Rc<KeySet>)>,
}

impl JwksCache {
    /// The current set of `method`, if one was ever fetched.
    pub fn get(&mut self, method: &str) -> Option<Rc<KeySet>> {
        let (_, doc, cas) = stored(method)?;
        if let Some((c, set)) = self.parsed.get(method) {
            if *c == cas {
                return Some(set.clone());
            }
        }
        let set = Rc::new(KeySet::from_json(&doc).ok()?);
        self.parsed.insert(method.to_string(), (cas, set.clone()));
        Some(set)
    }
}
