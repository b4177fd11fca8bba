//! What one filter learned from a request body, handed to the next through Envoy filter state,
//! so a body is parsed once per request even when the rate limiter (token budgets) and the
//! affinity filter both need it.
//!
//! The summary carries what endpoint choice needs: model, session key, token estimate and the
//! leading bytes of the canonical prompt (capped: prefix hashing reads only a bounded window).
//! The wire form is private to infergate: a magic, then length-prefixed fields, all
//! little-endian; decoding checks every length, so a damaged value is rejected, not trusted.

use super::request::ParsedRequest;

/// The Envoy property (filter state `wasm.<name>`) the summary travels in.
pub const SUMMARY_PROPERTY: &str = "infergate.request_summary";

/// Most canonical-prompt bytes a summary carries: four times the window prefix hashing reads
/// with the default settings (256 blocks of 256 bytes). A reader whose window is larger than
/// what a summary covers parses the body itself.
pub const MAX_SUMMARY_PROMPT_BYTES: usize = 256 * 1024;

const MAGIC: &[u8; 4] = b"IGS1";

/// A parsed request, reduced to what choosing an endpoint needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSummary {
    /// `model`.
    pub model: String,
    /// The client's session key (see [`ParsedRequest::session_key`]).
    pub session_key: Option<String>,
    /// Estimated prompt tokens.
    pub estimated_prompt_tokens: u64,
    /// The leading canonical prompt bytes (all of them when the prompt is short enough).
    pub prompt_prefix: Vec<u8>,
    /// The whole canonical prompt's length.
    pub prompt_len: u64,
}

impl RequestSummary {
    /// Summarizes `parsed`, keeping at most `max_prompt_bytes` of its prompt.
    pub fn of(parsed: &ParsedRequest, max_prompt_bytes: usize) -> Self {
        let prompt = &parsed.prompt.bytes;
        Self {
            model: parsed.model.clone(),
            session_key: parsed.session_key.clone(),
            estimated_prompt_tokens: parsed.estimated_prompt_tokens(),
            prompt_prefix: prompt
                .get(..max_prompt_bytes.min(prompt.len()))
                .unwrap_or_default()
                .to_vec(),
            prompt_len: parsed.prompt.len,
        }
    }

    /// Whether the summary holds the prompt's first `bytes` bytes (or all of it).
    pub fn covers(&self, bytes: usize) -> bool {
        self.prompt_prefix.len() as u64 == self.prompt_len || self.prompt_prefix.len() >= bytes
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let session = self.session_key.as_deref();
        let mut out = Vec::with_capacity(
            40 + self.model.len() + session.map_or(0, str::len) + self.prompt_prefix.len(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.estimated_prompt_tokens.to_le_bytes());
        out.extend_from_slice(&self.prompt_len.to_le_bytes());
        put_field(&mut out, self.model.as_bytes());
        out.push(u8::from(session.is_some()));
        put_field(&mut out, session.unwrap_or_default().as_bytes());
        put_field(&mut out, &self.prompt_prefix);
        out
    }

    /// Reads the wire form; `None` when it is not a complete, well-formed summary.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        if r.take(MAGIC.len())? != MAGIC {
            return None;
        }
        let estimated_prompt_tokens = r.u64()?;
        let prompt_len = r.u64()?;
        let model = String::from_utf8(r.field()?.to_vec()).ok()?;
        let has_session = r.take(1)?.first().copied()?;
        let session = String::from_utf8(r.field()?.to_vec()).ok()?;
        let prompt_prefix = r.field()?.to_vec();
        let well_formed = r.0.is_empty()
            && has_session <= 1
            && !model.is_empty()
            && (prompt_prefix.len() as u64) <= prompt_len;
        well_formed.then(|| Self {
            model,
            session_key: (has_session == 1).then_some(session),
            estimated_prompt_tokens,
            prompt_prefix,
            prompt_len,
        })
    }
}

impl From<ParsedRequest> for RequestSummary {
    /// The whole request's summary (the prompt moved, not copied).
    fn from(parsed: ParsedRequest) -> Self {
        Self {
            estimated_prompt_tokens: parsed.estimated_prompt_tokens(),
            prompt_len: parsed.prompt.len,
            prompt_prefix: parsed.prompt.bytes,
            model: parsed.model,
            session_key: parsed.session_key,
        }
    }
}

fn put_field(out: &mut Vec<u8>, field: &[u8]) {
    // Fields are bounded far below 4 GiB (body limits); saturate rather than wrap anyway.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(field.get(..len as usize).unwrap_or(field));
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn field(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        self.take(usize::try_from(len).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{parse_request, ApiKind};

    fn parsed(body: &str) -> ParsedRequest {
        parse_request(ApiKind::ChatCompletions, body.as_bytes()).unwrap()
    }

    #[test]
    fn round_trips_what_endpoint_choice_needs() {
        let p = parsed(
            r#"{"model":"m","user":"u1","messages":[{"role":"user","content":"héllo wörld"}]}"#,
        );
        let s = RequestSummary::of(&p, MAX_SUMMARY_PROMPT_BYTES);
        assert_eq!(s.prompt_prefix, p.prompt.bytes);
        assert_eq!(s.session_key.as_deref(), Some("u1"));
        assert_eq!(s.estimated_prompt_tokens, p.estimated_prompt_tokens());
        assert_eq!(RequestSummary::decode(&s.encode()), Some(s.clone()));
        assert!(s.covers(usize::MAX), "a whole prompt covers any window");
        assert_eq!(RequestSummary::from(p), s);

        let none = RequestSummary {
            session_key: None,
            ..s
        };
        assert_eq!(RequestSummary::decode(&none.encode()), Some(none));
    }

    #[test]
    fn caps_the_prompt_and_knows_what_it_covers() {
        let long = "x".repeat(1000);
        let p = parsed(&format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"{long}"}}]}}"#
        ));
        let s = RequestSummary::of(&p, 100);
        assert_eq!(s.prompt_prefix, p.prompt.bytes[..100]);
        assert_eq!(s.prompt_len, p.prompt.bytes.len() as u64);
        assert!(s.covers(100));
        assert!(!s.covers(101));
        assert_eq!(RequestSummary::decode(&s.encode()), Some(s));
    }

    #[test]
    fn rejects_damaged_values() {
        let p = parsed(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        let good = RequestSummary::of(&p, 1024).encode();
        // Every truncation, and any trailing byte, is refused.
        for n in 0..good.len() {
            assert_eq!(RequestSummary::decode(&good[..n]), None, "truncated to {n}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(RequestSummary::decode(&longer), None);
        // Wrong magic, a huge length, a bad session flag.
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(RequestSummary::decode(&bad), None);
        let mut huge = good.clone();
        huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(RequestSummary::decode(&huge), None);
        let mut flag = good.clone();
        flag[25] = 7;
        assert_eq!(RequestSummary::decode(&flag), None);
        assert_eq!(RequestSummary::decode(b""), None);
    }
}
