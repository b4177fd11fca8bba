//! host-shim's compact pick API (`POST /v1/pick`, `POST /v1/served`, `POST /v1/cancel`),
//! defined once: what the
//! affinity plugin sends (the encoders) and what host-shim reads (the decoders).
//!
//! Binary, little-endian, no padding; `content-type: application/octet-stream`. A pick
//! request with a 30-byte model name and 256 block hashes is 2,098 bytes.
//!
//! # `POST /v1/pick`
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `IGPK` (`0x49 0x47 0x50 0x4B`) |
//! | 4 | 1 | version, `1` |
//! | 5 | 1 | flags: bit 0 = sheddable (may get 429 when every endpoint is saturated); bit 1 = a pick id follows the hashes; other bits 0 |
//! | 6 | 2 | `block_size`: bytes per hashed block the client used (`0`: not stated). If non-zero and hashes are present it must equal host-shim's block size, else 400 |
//! | 8 | 4 | `prompt_tokens`: estimated prompt tokens |
//! | 12 | 2 | `model_len` |
//! | 14 | 2 | `session_len` (0: no session key) |
//! | 16 | 2 | `subset_len` (0: no subset hint) |
//! | 18 | 2 | `hash_count` (≤ 1024) |
//! | 20 | `model_len` | model name, UTF-8 |
//! | … | `session_len` | session key, UTF-8 |
//! | … | `subset_len` | allowed endpoints, ASCII, comma separated (`ip:port` or `ip`) |
//! | … | 8 × `hash_count` | block hashes, u64 each, in prompt order ([`crate::prefix::BlockHasher`]) |
//!
//! | … | 8 (only with flags bit 1) | `pick_id`: u64 the caller chose, unique per request, naming this pick in a later `POST /v1/cancel` |
//!
//! Nothing may follow the last hash (or the pick id). Encodings without bit 1 (the original
//! layout) still decode: such a pick simply cannot be cancelled by id.
//!
//! Answer `200`, empty body, with headers `x-gateway-destination-endpoint: ip:port`,
//! `x-gateway-destination-endpoint-fallbacks: ip:port,ip:port` (absent when there are none)
//! and `x-infergate-prefix-match: matched/total`. `503` when no endpoint can serve, `429`
//! when shed (both with `retry-after: 1`), `400` for a malformed body; error bodies are
//! OpenAI-style JSON whose message names the offending field.
//!
//! # `POST /v1/served`
//!
//! Sent when the response headers arrive, with the endpoint that actually served (Envoy's
//! upstream address), so the prefix index follows reality rather than the pick.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `IGSV` |
//! | 4 | 1 | version, `1` |
//! | 5 | 1 | flags, `0` |
//! | 6 | 2 | `endpoint_len` |
//! | 8 | 2 | `hash_count` (≤ 1024) |
//! | 10 | `endpoint_len` | served endpoint, ASCII `ip:port` |
//! | … | 8 × `hash_count` | the request's block hashes |
//!
//! Answer `204`; `404` if the endpoint is not in the pool; `400` if malformed.
//!
//! # `POST /v1/cancel`
//!
//! Sent when the request whose pick carried `pick_id` ended (the client went away) before the
//! pick was answered: host-shim takes that pick out of its wait queue at once.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `IGCN` |
//! | 4 | 1 | version, `1` |
//! | 5 | 1 | flags, `0` |
//! | 6 | 8 | `pick_id` |
//!
//! Answer `204` whether or not a queued pick had that id (an unknown id is a no-op); `400`
//! if malformed.

use std::fmt;

/// Magic of a pick request.
pub const PICK_MAGIC: &[u8; 4] = b"IGPK";
/// Magic of a served report.
pub const SERVED_MAGIC: &[u8; 4] = b"IGSV";
/// Magic of a cancel.
pub const CANCEL_MAGIC: &[u8; 4] = b"IGCN";
/// Pick flag: sheddable.
const FLAG_SHEDDABLE: u8 = 1;
/// Pick flag: a pick id follows the hashes.
const FLAG_PICK_ID: u8 = 2;
/// The only version.
pub const VERSION: u8 = 1;
/// Most hashes in one message (host-shim refuses more).
pub const MAX_HASHES: usize = 1024;
/// Largest message accepted.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A malformed message, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// The field (`hash_count`, `model`).
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for WireError {}

/// A [`WireError`] for `field`.
pub fn wire_error(field: &'static str, message: impl Into<String>) -> WireError {
    WireError {
        field,
        message: message.into(),
    }
}

/// A pick request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PickQuery<'a> {
    /// The request's model.
    pub model: &'a str,
    /// Session key, if any.
    pub session: Option<&'a str>,
    /// Allowed endpoints (`ip:port` or `ip`), empty for all.
    pub subset: &'a [String],
    /// Estimated prompt tokens.
    pub prompt_tokens: u64,
    /// Bytes per hashed block.
    pub block_size: usize,
    /// Block hashes in prompt order.
    pub hashes: &'a [u64],
    /// May be shed (429) when every endpoint is saturated.
    pub sheddable: bool,
}

fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Encodes a pick request (`IGPK`, version 1) without a pick id. Over-long strings are cut
/// at 64 KiB - 1 and hashes at [`MAX_HASHES`], so the result always decodes.
pub fn encode_pick(q: &PickQuery<'_>) -> Vec<u8> {
    encode_pick_with_id(q, None)
}

/// Encodes a pick request like [`encode_pick`], with `pick_id` (flags bit 1) when given, so
/// the pick can be cancelled later ([`encode_cancel`]).
pub fn encode_pick_with_id(q: &PickQuery<'_>, pick_id: Option<u64>) -> Vec<u8> {
    let model = clip(q.model, u16::MAX as usize);
    let session = clip(q.session.unwrap_or_default(), u16::MAX as usize);
    let subset_joined = q.subset.join(",");
    let subset = clip(&subset_joined, u16::MAX as usize);
    let hashes = q
        .hashes
        .get(..q.hashes.len().min(MAX_HASHES))
        .unwrap_or_default();
    let mut out =
        Vec::with_capacity(28 + model.len() + session.len() + subset.len() + 8 * hashes.len());
    out.extend_from_slice(PICK_MAGIC);
    out.push(VERSION);
    let mut flags = 0;
    if q.sheddable {
        flags |= FLAG_SHEDDABLE;
    }
    if pick_id.is_some() {
        flags |= FLAG_PICK_ID;
    }
    out.push(flags);
    out.extend_from_slice(&len16(q.block_size).to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(q.prompt_tokens)
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&len16(model.len()).to_le_bytes());
    out.extend_from_slice(&len16(session.len()).to_le_bytes());
    out.extend_from_slice(&len16(subset.len()).to_le_bytes());
    out.extend_from_slice(&len16(hashes.len()).to_le_bytes());
    out.extend_from_slice(model.as_bytes());
    out.extend_from_slice(session.as_bytes());
    out.extend_from_slice(subset.as_bytes());
    for h in hashes {
        out.extend_from_slice(&h.to_le_bytes());
    }
    if let Some(id) = pick_id {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

/// Encodes a cancel (`IGCN`, version 1) of the pick sent with `pick_id`.
pub fn encode_cancel(pick_id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    out.extend_from_slice(CANCEL_MAGIC);
    out.push(VERSION);
    out.push(0);
    out.extend_from_slice(&pick_id.to_le_bytes());
    out
}

/// Decodes a `/v1/cancel` body: the pick id to cancel.
pub fn decode_cancel(buf: &[u8]) -> Result<u64, WireError> {
    check_size(buf)?;
    let mut r = Reader { buf, pos: 0 };
    let flags = r.header(CANCEL_MAGIC)?;
    if flags != 0 {
        return Err(wire_error("flags", format!("unknown bits {flags:#04x}")));
    }
    let id = u64::from_le_bytes(r.array("pick_id")?);
    r.end("pick_id")?;
    Ok(id)
}

/// Encodes a served report (`IGSV`, version 1): `endpoint` served the request whose prompt
/// had these block hashes.
pub fn encode_served(endpoint: &str, hashes: &[u64]) -> Vec<u8> {
    let endpoint = clip(endpoint, 255);
    let hashes = hashes
        .get(..hashes.len().min(MAX_HASHES))
        .unwrap_or_default();
    let mut out = Vec::with_capacity(10 + endpoint.len() + 8 * hashes.len());
    out.extend_from_slice(SERVED_MAGIC);
    out.push(VERSION);
    out.push(0);
    out.extend_from_slice(&len16(endpoint.len()).to_le_bytes());
    out.extend_from_slice(&len16(hashes.len()).to_le_bytes());
    out.extend_from_slice(endpoint.as_bytes());
    for h in hashes {
        out.extend_from_slice(&h.to_le_bytes());
    }
    out
}

/// A decoded pick request; host-shim parses its subset entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pick {
    /// The request's model (never empty).
    pub model: String,
    /// Session key, if any.
    pub session: Option<String>,
    /// Allowed endpoints as sent (blank entries dropped); `None` when no subset was sent.
    pub subset: Option<Vec<String>>,
    /// Estimated prompt tokens.
    pub prompt_tokens: u64,
    /// The client's block size (0: not stated).
    pub block_size: u16,
    /// Block hashes in prompt order.
    pub hashes: Vec<u64>,
    /// May be shed (429) when every endpoint is saturated.
    pub sheddable: bool,
    /// The caller's id for this pick (flags bit 1), for a later cancel.
    pub pick_id: Option<u64>,
}

/// A decoded served report; host-shim parses its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The endpoint that served, as sent.
    pub endpoint: String,
    /// The request's block hashes.
    pub hashes: Vec<u64>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let s = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or_else(|| wire_error(field, format!("message ends before its {n} bytes")))?;
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, f: &'static str) -> Result<[u8; N], WireError> {
        let b = self.take(N, f)?;
        <[u8; N]>::try_from(b).map_err(|_| wire_error(f, "truncated"))
    }
    fn u8(&mut self, f: &'static str) -> Result<u8, WireError> {
        Ok(u8::from_le_bytes(self.array(f)?))
    }
    fn u16(&mut self, f: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array(f)?))
    }
    fn u32(&mut self, f: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(f)?))
    }
    fn str(&mut self, n: usize, f: &'static str) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.take(n, f)?).map_err(|_| wire_error(f, "not valid UTF-8"))
    }
    fn hashes(&mut self, n: usize) -> Result<Vec<u64>, WireError> {
        let b = self.take(n * 8, "hashes")?;
        Ok(b.chunks_exact(8)
            .filter_map(|c| <[u8; 8]>::try_from(c).ok())
            .map(u64::from_le_bytes)
            .collect())
    }
    fn header(&mut self, magic: &[u8; 4]) -> Result<u8, WireError> {
        if self.take(4, "magic")? != magic {
            return Err(wire_error(
                "magic",
                format!("expected `{}`", String::from_utf8_lossy(magic)),
            ));
        }
        let v = self.u8("version")?;
        if v != VERSION {
            return Err(wire_error(
                "version",
                format!("{v} is not supported; use {VERSION}"),
            ));
        }
        self.u8("flags")
    }
    /// Nothing may follow the last field; bytes that do are blamed on `last`.
    fn end(&self, last: &'static str) -> Result<(), WireError> {
        if self.pos != self.buf.len() {
            return Err(wire_error(
                last,
                format!("{} bytes follow the last field", self.buf.len() - self.pos),
            ));
        }
        Ok(())
    }
}

fn hash_count(n: u16) -> Result<usize, WireError> {
    let n = usize::from(n);
    if n > MAX_HASHES {
        return Err(wire_error(
            "hash_count",
            format!("{n} exceeds {MAX_HASHES}"),
        ));
    }
    Ok(n)
}

fn check_size(buf: &[u8]) -> Result<(), WireError> {
    if buf.len() > MAX_MESSAGE_BYTES {
        return Err(wire_error(
            "message",
            format!("larger than {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Decodes a `/v1/pick` body.
pub fn decode_pick(buf: &[u8]) -> Result<Pick, WireError> {
    check_size(buf)?;
    let mut r = Reader { buf, pos: 0 };
    let flags = r.header(PICK_MAGIC)?;
    if flags & !(FLAG_SHEDDABLE | FLAG_PICK_ID) != 0 {
        return Err(wire_error("flags", format!("unknown bits {flags:#04x}")));
    }
    let block_size = r.u16("block_size")?;
    let prompt_tokens = r.u32("prompt_tokens")?;
    let model_len = usize::from(r.u16("model_len")?);
    let session_len = usize::from(r.u16("session_len")?);
    let subset_len = usize::from(r.u16("subset_len")?);
    let n = hash_count(r.u16("hash_count")?)?;
    let model = r.str(model_len, "model")?.to_string();
    if model.is_empty() {
        return Err(wire_error("model", "must not be empty"));
    }
    let session = r.str(session_len, "session")?;
    let subset_text = r.str(subset_len, "subset")?;
    let hashes = r.hashes(n)?;
    let pick_id = if flags & FLAG_PICK_ID != 0 {
        Some(u64::from_le_bytes(r.array("pick_id")?))
    } else {
        None
    };
    r.end("hashes")?;
    let subset = (subset_len != 0).then(|| {
        subset_text
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
            .collect()
    });
    Ok(Pick {
        model,
        session: (!session.is_empty()).then(|| session.to_string()),
        subset,
        prompt_tokens: u64::from(prompt_tokens),
        block_size,
        hashes,
        sheddable: flags & FLAG_SHEDDABLE != 0,
        pick_id,
    })
}

/// Decodes a `/v1/served` body.
pub fn decode_served(buf: &[u8]) -> Result<Served, WireError> {
    check_size(buf)?;
    let mut r = Reader { buf, pos: 0 };
    let flags = r.header(SERVED_MAGIC)?;
    if flags != 0 {
        return Err(wire_error("flags", format!("unknown bits {flags:#04x}")));
    }
    let ep_len = usize::from(r.u16("endpoint_len")?);
    let n = hash_count(r.u16("hash_count")?)?;
    let endpoint = r.str(ep_len, "endpoint")?.to_string();
    let hashes = r.hashes(n)?;
    r.end("hashes")?;
    Ok(Served { endpoint, hashes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_layout_matches_the_documented_offsets() {
        let subset = vec!["10.0.0.1:8000".to_string()];
        let b = encode_pick(&PickQuery {
            model: "m",
            session: Some("s1"),
            subset: &subset,
            prompt_tokens: 1234,
            block_size: 256,
            hashes: &[1, 2],
            sheddable: true,
        });
        assert_eq!(&b[0..4], b"IGPK");
        assert_eq!(b[4], 1);
        assert_eq!(b[5], 1);
        assert_eq!(u16::from_le_bytes([b[6], b[7]]), 256);
        assert_eq!(u32::from_le_bytes([b[8], b[9], b[10], b[11]]), 1234);
        assert_eq!(u16::from_le_bytes([b[12], b[13]]), 1);
        assert_eq!(u16::from_le_bytes([b[14], b[15]]), 2);
        assert_eq!(u16::from_le_bytes([b[16], b[17]]), 13);
        assert_eq!(u16::from_le_bytes([b[18], b[19]]), 2);
        assert_eq!(&b[20..21], b"m");
        assert_eq!(&b[21..23], b"s1");
        assert_eq!(&b[23..36], b"10.0.0.1:8000");
        assert_eq!(b.len(), 36 + 16);
        assert_eq!(u64::from_le_bytes(b[44..52].try_into().unwrap()), 2);
    }

    #[test]
    fn caps_hashes_and_strings() {
        let many = vec![7u64; 5000];
        let long = "é".repeat(40_000);
        let b = encode_pick(&PickQuery {
            model: &long,
            hashes: &many,
            ..Default::default()
        });
        let model_len = u16::from_le_bytes([b[12], b[13]]) as usize;
        assert!(std::str::from_utf8(&b[20..20 + model_len]).is_ok());
        assert_eq!(u16::from_le_bytes([b[18], b[19]]) as usize, MAX_HASHES);
        assert_eq!(b.len(), 20 + model_len + 8 * MAX_HASHES);
    }

    fn query<'a>(hashes: &'a [u64], subset: &'a [String]) -> PickQuery<'a> {
        PickQuery {
            model: "Qwen/Qwen3-0.6B",
            session: Some("s-1"),
            subset,
            prompt_tokens: 16_000,
            block_size: 256,
            hashes,
            sheddable: true,
        }
    }

    #[test]
    fn pick_round_trips() {
        let hashes: Vec<u64> = (0..256).map(|i| i * 0x0101_0101).collect();
        let subset = vec!["10.0.0.1:8000".to_string(), "10.0.0.2".to_string()];
        let bytes = encode_pick(&query(&hashes, &subset));
        assert_eq!(bytes.len(), 20 + 15 + 3 + 22 + 256 * 8);
        assert_eq!(
            decode_pick(&bytes).unwrap(),
            Pick {
                model: "Qwen/Qwen3-0.6B".into(),
                session: Some("s-1".into()),
                subset: Some(subset),
                prompt_tokens: 16_000,
                block_size: 256,
                hashes,
                sheddable: true,
                pick_id: None,
            }
        );
        let none = decode_pick(&encode_pick(&query(&[], &[]))).unwrap();
        assert_eq!(none.subset, None);
    }

    #[test]
    fn malformed_picks_name_the_field() {
        let good = encode_pick(&query(&[1, 2, 3], &[]));
        let field = |b: &[u8]| decode_pick(b).unwrap_err().field;
        assert_eq!(field(&good[..good.len() - 3]), "hashes");
        assert_eq!(field(b"XXXX"), "magic");
        assert_eq!(field(&[]), "magic");
        assert_eq!(field(b"IGPK"), "version");
        let mut v = good.clone();
        v[4] = 9;
        assert_eq!(field(&v), "version");
        let mut v = good.clone();
        v[5] = 0x80;
        assert_eq!(field(&v), "flags");
        let mut v = good.clone();
        v[18..20].copy_from_slice(&2000u16.to_le_bytes());
        assert_eq!(field(&v), "hash_count");
        let mut v = good.clone();
        v.push(0);
        assert_eq!(field(&v), "hashes");
        let mut v = good.clone();
        v[20] = 0xff;
        assert_eq!(field(&v), "model");
        let empty_model = PickQuery {
            model: "",
            ..query(&[], &[])
        };
        assert_eq!(field(&encode_pick(&empty_model)), "model");
        assert_eq!(field(&vec![0u8; MAX_MESSAGE_BYTES + 1]), "message");
    }

    #[test]
    fn served_round_trips_and_names_fields() {
        let b = encode_served("10.0.0.3:8000", &[1, 2, 3]);
        assert_eq!(
            decode_served(&b).unwrap(),
            Served {
                endpoint: "10.0.0.3:8000".into(),
                hashes: vec![1, 2, 3]
            }
        );
        assert_eq!(decode_served(&b[..12]).unwrap_err().field, "endpoint");
        let mut v = b.clone();
        v[5] = 1;
        assert_eq!(decode_served(&v).unwrap_err().field, "flags");
        assert_eq!(
            decode_pick(&b).unwrap_err().to_string(),
            "field `magic`: expected `IGPK`"
        );
    }

    #[test]
    fn pick_id_round_trips_and_old_encodings_still_decode() {
        let hashes = [9u64, 8, 7];
        let plain = encode_pick(&query(&hashes, &[]));
        let with_id = encode_pick_with_id(&query(&hashes, &[]), Some(0xDEAD_BEEF_0000_0001));
        // Bit 1 set, the id after the last hash, everything before unchanged.
        assert_eq!(with_id[5], 0b11);
        assert_eq!(with_id.len(), plain.len() + 8);
        assert_eq!(&with_id[6..plain.len()], &plain[6..]);
        assert_eq!(
            u64::from_le_bytes(with_id[plain.len()..].try_into().unwrap()),
            0xDEAD_BEEF_0000_0001
        );
        let decoded = decode_pick(&with_id).unwrap();
        assert_eq!(decoded.pick_id, Some(0xDEAD_BEEF_0000_0001));
        assert_eq!(decoded.hashes, hashes);
        assert!(decoded.sheddable);
        assert_eq!(decode_pick(&plain).unwrap().pick_id, None);
        // Id 0 and u64::MAX are ids like any other.
        for id in [0, u64::MAX] {
            let b = encode_pick_with_id(&query(&[], &[]), Some(id));
            assert_eq!(decode_pick(&b).unwrap().pick_id, Some(id));
        }
    }

    #[test]
    fn hostile_pick_ids_name_the_field() {
        let with_id = encode_pick_with_id(&query(&[1, 2], &[]), Some(42));
        let field = |b: &[u8]| decode_pick(b).unwrap_err().field;
        // The flag promises an id that is cut short or missing.
        assert_eq!(field(&with_id[..with_id.len() - 1]), "pick_id");
        assert_eq!(field(&with_id[..with_id.len() - 8]), "pick_id");
        // Bytes after the id.
        let mut v = with_id.clone();
        v.push(0);
        assert_eq!(field(&v), "hashes");
        // An id without the flag reads as trailing bytes.
        let mut v = with_id.clone();
        v[5] &= !FLAG_PICK_ID;
        assert_eq!(field(&v), "hashes");
        // Unknown flag bits next to the id bit.
        let mut v = with_id;
        v[5] |= 0x04;
        assert_eq!(field(&v), "flags");
    }

    #[test]
    fn cancel_round_trips_and_names_fields() {
        let b = encode_cancel(0x0102_0304_0506_0708);
        assert_eq!(&b[0..4], b"IGCN");
        assert_eq!(b.len(), 14);
        assert_eq!(decode_cancel(&b).unwrap(), 0x0102_0304_0506_0708);
        let field = |b: &[u8]| decode_cancel(b).unwrap_err().field;
        assert_eq!(field(&b[..13]), "pick_id");
        assert_eq!(field(&b[..6]), "pick_id");
        assert_eq!(field(&b[..5]), "flags");
        assert_eq!(field(b""), "magic");
        let mut v = b.clone();
        v.push(1);
        assert_eq!(field(&v), "pick_id");
        let mut v = b.clone();
        v[5] = 1;
        assert_eq!(field(&v), "flags");
        let mut v = b.clone();
        v[4] = 2;
        assert_eq!(field(&v), "version");
        assert_eq!(field(&encode_served("10.0.0.1:1", &[])), "magic");
        assert_eq!(field(&vec![0u8; MAX_MESSAGE_BYTES + 1]), "message");
        // A pick is not a cancel, and a cancel is not a pick.
        assert_eq!(decode_pick(&b).unwrap_err().field, "magic");
    }

    #[test]
    fn served_layout() {
        let b = encode_served("127.0.0.1:9", &[5]);
        assert_eq!(&b[0..4], b"IGSV");
        assert_eq!(u16::from_le_bytes([b[6], b[7]]), 11);
        assert_eq!(u16::from_le_bytes([b[8], b[9]]), 1);
        assert_eq!(&b[10..21], b"127.0.0.1:9");
        assert_eq!(b.len(), 21 + 8);
    }
}
