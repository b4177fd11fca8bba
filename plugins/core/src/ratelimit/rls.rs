//! The Envoy rate limit service v3 (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`)
//! messages, encoded and decoded by hand: the plugin needs two small messages, and a protobuf
//! runtime would cost more Wasm size than this whole module.
//!
//! `RateLimitRequest { domain = 1; repeated RateLimitDescriptor descriptors = 2; uint32
//! hits_addend = 3; }`, `RateLimitDescriptor { repeated Entry entries = 1; }`,
//! `Entry { key = 1; value = 2; }`; `RateLimitResponse { Code overall_code = 1; repeated
//! DescriptorStatus statuses = 2; … }`, `DescriptorStatus { Code code = 1; RateLimit
//! current_limit = 2; uint32 limit_remaining = 3; Duration duration_until_reset = 4; }`,
//! `RateLimit { uint32 requests_per_unit = 1; Unit unit = 2; string name = 3; }`; and the
//! response's `repeated HeaderValue response_headers_to_add = 3` (`HeaderValue { string key = 1;
//! string value = 2; bytes raw_value = 3; }`), which Limitador fills with `X-RateLimit-*` when
//! started with `--rate-limit-headers DRAFT_VERSION_03` (it sends no statuses). These are
//! bounded: at most [`MAX_HEADERS`] are kept, and entries that are too long, not UTF-8 or
//! malformed are skipped (they are advisory; a bad one never fails the verdict).

/// gRPC service of the rate limit service.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";

/// The method called.
pub const METHOD: &str = "ShouldRateLimit";

/// One descriptor: ordered `(key, value)` entries.
pub type Descriptor = Vec<(String, String)>;

/// The service's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Not set by the service.
    Unknown,
    /// Within limits.
    Ok,
    /// Over a limit.
    OverLimit,
}

/// One descriptor's status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DescriptorStatus {
    /// Verdict for this descriptor.
    pub code: Option<Code>,
    /// `requests_per_unit` of the applied limit.
    pub limit: Option<u32>,
    /// The limit's unit in seconds (1, 60, 3600, 86400, …).
    pub unit_secs: Option<u64>,
    /// Units left.
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset_secs: Option<u64>,
}

/// A decoded `RateLimitResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The overall verdict.
    pub overall: Code,
    /// Per-descriptor statuses, in request order.
    pub statuses: Vec<DescriptorStatus>,
    /// `response_headers_to_add`, as sent (names not checked here; see
    /// [`super::headers::from_service`]).
    pub headers: Vec<(String, String)>,
}

/// Most `response_headers_to_add` entries kept; later ones are ignored.
pub const MAX_HEADERS: usize = 16;

/// Longest header name kept, in bytes.
pub const MAX_HEADER_NAME: usize = 128;

/// Longest header value kept, in bytes.
pub const MAX_HEADER_VALUE: usize = 1024;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    varint(out, u64::from(field << 3 | 2));
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// Encodes a `RateLimitRequest`.
pub fn encode_request(domain: &str, descriptors: &[Descriptor], hits_addend: u32) -> Vec<u8> {
    let mut out = Vec::new();
    bytes_field(&mut out, 1, domain.as_bytes());
    for d in descriptors {
        let mut desc = Vec::new();
        for (k, v) in d {
            let mut entry = Vec::new();
            bytes_field(&mut entry, 1, k.as_bytes());
            bytes_field(&mut entry, 2, v.as_bytes());
            bytes_field(&mut desc, 1, &entry);
        }
        bytes_field(&mut out, 2, &desc);
    }
    if hits_addend != 0 {
        varint(&mut out, 3 << 3);
        varint(&mut out, u64::from(hits_addend));
    }
    out
}

/// Why a `RateLimitResponse` could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RlsError {
    /// A varint runs past the end of the message.
    TruncatedVarint,
    /// A varint is longer than 10 bytes.
    VarintTooLong,
    /// A length-delimited field's length does not fit in memory.
    LengthTooLarge,
    /// A field runs past the end of the message.
    TruncatedField,
    /// A field uses a wire type this decoder does not know (groups, or garbage).
    UnsupportedWireType(u64),
}

impl std::fmt::Display for RlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TruncatedVarint => f.write_str("truncated varint"),
            Self::VarintTooLong => f.write_str("varint too long"),
            Self::LengthTooLarge => f.write_str("length too large"),
            Self::TruncatedField => f.write_str("truncated field"),
            Self::UnsupportedWireType(w) => write!(f, "unsupported wire type {w}"),
        }
    }
}

impl std::error::Error for RlsError {}

/// A protobuf reader over one message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Skipped,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, RlsError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(RlsError::TruncatedVarint)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RlsError::VarintTooLong)
    }

    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, RlsError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.skip(8)?;
                Value::Skipped
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| RlsError::LengthTooLarge)?;
                let end = self.pos.checked_add(len).ok_or(RlsError::LengthTooLarge)?;
                let data = self
                    .buf
                    .get(self.pos..end)
                    .ok_or(RlsError::TruncatedField)?;
                self.pos = end;
                Value::Bytes(data)
            }
            5 => {
                self.skip(4)?;
                Value::Skipped
            }
            w => return Err(RlsError::UnsupportedWireType(w)),
        };
        Ok(Some((key >> 3, value)))
    }

    fn skip(&mut self, n: usize) -> Result<(), RlsError> {
        let end = self.pos.checked_add(n).ok_or(RlsError::TruncatedField)?;
        if end > self.buf.len() {
            return Err(RlsError::TruncatedField);
        }
        self.pos = end;
        Ok(())
    }
}

fn code(v: u64) -> Code {
    match v {
        1 => Code::Ok,
        2 => Code::OverLimit,
        _ => Code::Unknown,
    }
}

fn unit_secs(v: u64) -> Option<u64> {
    match v {
        1 => Some(1),
        2 => Some(60),
        3 => Some(3_600),
        4 => Some(86_400),
        5 => Some(30 * 86_400),
        6 => Some(365 * 86_400),
        7 => Some(7 * 86_400),
        _ => None,
    }
}

fn decode_status(buf: &[u8]) -> Result<DescriptorStatus, RlsError> {
    let mut s = DescriptorStatus::default();
    let mut r = Reader { buf, pos: 0 };
    while let Some((field, value)) = r.field()? {
        match (field, value) {
            (1, Value::Varint(v)) => s.code = Some(code(v)),
            (2, Value::Bytes(b)) => {
                let mut lr = Reader { buf: b, pos: 0 };
                while let Some((f, v)) = lr.field()? {
                    match (f, v) {
                        (1, Value::Varint(n)) => s.limit = u32::try_from(n).ok(),
                        (2, Value::Varint(u)) => s.unit_secs = unit_secs(u),
                        _ => {}
                    }
                }
            }
            (3, Value::Varint(v)) => s.remaining = u32::try_from(v).unwrap_or(u32::MAX),
            (4, Value::Bytes(b)) => {
                let mut dr = Reader { buf: b, pos: 0 };
                while let Some((f, v)) = dr.field()? {
                    if let (1, Value::Varint(secs)) = (f, v) {
                        s.reset_secs = Some(secs);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(s)
}

/// Decodes one `HeaderValue`: `None` when malformed, oversized, not UTF-8 or without a key.
/// `raw_value` is used when `value` is empty (Envoy's newer senders use it).
fn decode_header(buf: &[u8]) -> Option<(String, String)> {
    let mut key: Option<&[u8]> = None;
    let mut value: &[u8] = &[];
    let mut raw: &[u8] = &[];
    let mut r = Reader { buf, pos: 0 };
    while let Some((field, v)) = r.field().ok()? {
        match (field, v) {
            (1, Value::Bytes(b)) => key = Some(b),
            (2, Value::Bytes(b)) => value = b,
            (3, Value::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let key = key.filter(|k| !k.is_empty() && k.len() <= MAX_HEADER_NAME)?;
    let value = if value.is_empty() { raw } else { value };
    if value.len() > MAX_HEADER_VALUE {
        return None;
    }
    Some((
        String::from_utf8(key.to_vec()).ok()?,
        String::from_utf8(value.to_vec()).ok()?,
    ))
}

/// Decodes a `RateLimitResponse`; unknown fields are skipped.
pub fn decode_response(buf: &[u8]) -> Result<Response, RlsError> {
    let mut overall = Code::Unknown;
    let mut statuses = Vec::new();
    let mut headers = Vec::new();
    let mut r = Reader { buf, pos: 0 };
    while let Some((field, value)) = r.field()? {
        match (field, value) {
            (1, Value::Varint(v)) => overall = code(v),
            (2, Value::Bytes(b)) => statuses.push(decode_status(b)?),
            (3, Value::Bytes(b)) if headers.len() < MAX_HEADERS => {
                if let Some(h) = decode_header(b) {
                    headers.push(h);
                }
            }
            _ => {}
        }
    }
    Ok(Response {
        overall,
        statuses,
        headers,
    })
}

/// Encodes a `RateLimitResponse` with `overall` and `response_headers_to_add` only (no
/// statuses), as Limitador answers; for tests and test services.
pub fn encode_response_with_headers(overall: Code, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    let code = match overall {
        Code::Unknown => 0,
        Code::Ok => 1,
        Code::OverLimit => 2,
    };
    varint(&mut out, 1 << 3);
    varint(&mut out, code);
    for (k, v) in headers {
        let mut h = Vec::new();
        bytes_field(&mut h, 1, k.as_bytes());
        bytes_field(&mut h, 2, v.as_bytes());
        bytes_field(&mut out, 3, &h);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_request_byte_for_byte() {
        let d = vec![vec![("limit".to_string(), "a".to_string())]];
        let b = encode_request("ig", &d, 3);
        // domain "ig"; descriptor { entry { key "limit" value "a" } }; hits_addend 3
        let expected: Vec<u8> = vec![
            0x0a, 2, b'i', b'g', 0x12, 12, 0x0a, 10, 0x0a, 5, b'l', b'i', b'm', b'i', b't', 0x12,
            1, b'a', 0x18, 3,
        ];
        assert_eq!(b, expected);
        // hits_addend 0 is the proto default and is not written.
        assert!(!encode_request("ig", &[], 0).contains(&0x18));
    }

    #[test]
    fn decodes_responses_and_skips_unknown_fields() {
        // overall OVER_LIMIT; status { code OVER_LIMIT; current_limit { 10 per MINUTE };
        // remaining 0; duration_until_reset { seconds 42 } }; unknown field 9 (varint).
        let status: Vec<u8> = vec![
            0x08, 2, 0x12, 4, 0x08, 10, 0x10, 2, 0x18, 0, 0x22, 2, 0x08, 42,
        ];
        let mut buf = vec![0x08, 2, 0x12, status.len() as u8];
        buf.extend_from_slice(&status);
        buf.extend_from_slice(&[0x48, 7]);
        let r = decode_response(&buf).unwrap();
        assert_eq!(r.overall, Code::OverLimit);
        assert_eq!(
            r.statuses,
            vec![DescriptorStatus {
                code: Some(Code::OverLimit),
                limit: Some(10),
                unit_secs: Some(60),
                remaining: 0,
                reset_secs: Some(42),
            }]
        );
    }

    #[test]
    fn rejects_truncated_and_hostile_input() {
        assert_eq!(
            decode_response(&[0x12, 50, 1]),
            Err(RlsError::TruncatedField)
        );
        assert_eq!(decode_response(&[0x08]), Err(RlsError::TruncatedVarint));
        assert_eq!(decode_response(&[0x80; 20]), Err(RlsError::VarintTooLong));
        assert_eq!(
            decode_response(&[0x0b]),
            Err(RlsError::UnsupportedWireType(3))
        );
        assert_eq!(
            decode_response(&[0x0b]).unwrap_err().to_string(),
            "unsupported wire type 3"
        );
        assert_eq!(decode_response(&[]).unwrap().overall, Code::Unknown);
    }

    #[test]
    fn decodes_response_headers_to_add() {
        let buf = encode_response_with_headers(
            Code::OverLimit,
            &[
                ("X-RateLimit-Limit", "5, 5;w=60"),
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", "42"),
            ],
        );
        let r = decode_response(&buf).unwrap();
        assert_eq!(r.overall, Code::OverLimit);
        assert!(r.statuses.is_empty());
        assert_eq!(
            r.headers,
            vec![
                ("X-RateLimit-Limit".into(), "5, 5;w=60".into()),
                ("X-RateLimit-Remaining".into(), "0".into()),
                ("X-RateLimit-Reset".into(), "42".into()),
            ]
        );
        // raw_value (field 3) stands in for an empty value.
        let h = [0x0a, 1, b'a', 0x1a, 2, b'o', b'k'];
        let mut buf = vec![0x08, 1, 0x1a, h.len() as u8];
        buf.extend_from_slice(&h);
        assert_eq!(
            decode_response(&buf).unwrap().headers,
            vec![("a".into(), "ok".into())]
        );
    }

    #[test]
    fn bounds_and_skips_hostile_headers() {
        // Too many: only MAX_HEADERS are kept.
        let many: Vec<(String, String)> = (0..100).map(|i| (format!("h{i}"), "v".into())).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = decode_response(&encode_response_with_headers(Code::Ok, &refs)).unwrap();
        assert_eq!(r.headers.len(), MAX_HEADERS);
        assert_eq!(r.headers[0].0, "h0");
        // Oversized name or value, empty name: skipped, the rest kept.
        let long_name = "n".repeat(MAX_HEADER_NAME + 1);
        let long_value = "v".repeat(MAX_HEADER_VALUE + 1);
        let buf = encode_response_with_headers(
            Code::Ok,
            &[
                (&long_name, "v"),
                ("big", &long_value),
                ("", "v"),
                ("ok", "1"),
            ],
        );
        let r = decode_response(&buf).unwrap();
        assert_eq!(r.overall, Code::Ok);
        assert_eq!(r.headers, vec![("ok".into(), "1".into())]);
        // Not UTF-8, and a header whose own bytes are garbage (truncated inner field,
        // wire type 3): skipped without failing the answer.
        let mut buf = vec![0x08, 1];
        for h in [
            vec![0x0a, 2, 0xff, 0xfe, 0x12, 1, b'v'],
            vec![0x0a, 50, b'a'],
            vec![0x0b, 0x0a, 1, b'a'],
        ] {
            buf.extend([0x1a, h.len() as u8]);
            buf.extend(h);
        }
        let r = decode_response(&buf).unwrap();
        assert_eq!((r.overall, r.headers.len()), (Code::Ok, 0));
        // A header field running past the message is a truncated answer.
        assert_eq!(
            decode_response(&[0x08, 1, 0x1a, 9, 0x0a]),
            Err(RlsError::TruncatedField)
        );
        // A header field with the wrong wire type is ignored.
        assert_eq!(
            decode_response(&[0x08, 1, 0x18, 5]).unwrap().headers.len(),
            0
        );
    }
}
