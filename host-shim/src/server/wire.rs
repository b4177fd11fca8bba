//! The compact pick API encoding, for the affinity Wasm plugin's `dispatch_http_call`.
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
//! | 5 | 1 | flags: bit 0 = sheddable (may get 429 when every endpoint is saturated); other bits 0 |
//! | 6 | 2 | `block_size`: bytes per hashed block the client used (`0`: not stated). If non-zero and hashes are present it must equal host-shim's block size, else 400 |
//! | 8 | 4 | `prompt_tokens`: estimated prompt tokens |
//! | 12 | 2 | `model_len` |
//! | 14 | 2 | `session_len` (0: no session key) |
//! | 16 | 2 | `subset_len` (0: no subset hint) |
//! | 18 | 2 | `hash_count` (≤ 1024) |
//! | 20 | `model_len` | model name, UTF-8 |
//! | … | `session_len` | session key, UTF-8 |
//! | … | `subset_len` | allowed endpoints, ASCII, comma separated (`ip:port` or `ip`) |
//! | … | 8 × `hash_count` | block hashes, u64 each, in prompt order ([`infergate_core::prefix::BlockHasher`]) |
//!
//! Nothing may follow the last hash.
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

use crate::endpoint::Endpoint;
use crate::scheduler::{PickRequest, SubsetEntry};
use thiserror::Error;

/// Magic of a pick request.
pub const PICK_MAGIC: &[u8; 4] = b"IGPK";
/// Magic of a served report.
pub const SERVED_MAGIC: &[u8; 4] = b"IGSV";
/// The only version.
pub const VERSION: u8 = 1;
/// Most hashes in one message.
pub const MAX_HASHES: usize = 1024;
/// Largest message accepted.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A malformed message, naming the field.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("field `{field}`: {message}")]
pub struct WireError {
    /// The field (`hash_count`, `model`).
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> WireError {
    WireError {
        field,
        message: message.into(),
    }
}

/// A pick request as sent on the wire.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WirePick {
    /// The request.
    pub request: PickRequest,
    /// The client's block size (0: not stated).
    pub block_size: u16,
}

/// A served report.
#[derive(Debug, Clone, PartialEq)]
pub struct WireServed {
    /// The endpoint that served.
    pub endpoint: Endpoint,
    /// The request's block hashes.
    pub block_hashes: Vec<u64>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| err(field, format!("message ends before its {n} bytes")))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, f: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, f)?[0])
    }
    fn u16(&mut self, f: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, f)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, f: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, f)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn str(&mut self, n: usize, f: &'static str) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.take(n, f)?).map_err(|_| err(f, "not valid UTF-8"))
    }
    fn hashes(&mut self, n: usize) -> Result<Vec<u64>, WireError> {
        let b = self.take(n * 8, "hashes")?;
        Ok(b.chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }
    fn header(&mut self, magic: &[u8; 4]) -> Result<u8, WireError> {
        if self.take(4, "magic")? != magic {
            return Err(err(
                "magic",
                format!("expected `{}`", String::from_utf8_lossy(magic)),
            ));
        }
        let v = self.u8("version")?;
        if v != VERSION {
            return Err(err(
                "version",
                format!("{v} is not supported; use {VERSION}"),
            ));
        }
        self.u8("flags")
    }
    fn end(&self) -> Result<(), WireError> {
        if self.pos != self.buf.len() {
            return Err(err(
                "hashes",
                format!("{} bytes follow the last field", self.buf.len() - self.pos),
            ));
        }
        Ok(())
    }
}

fn hash_count(n: u16) -> Result<usize, WireError> {
    let n = n as usize;
    if n > MAX_HASHES {
        return Err(err("hash_count", format!("{n} exceeds {MAX_HASHES}")));
    }
    Ok(n)
}

/// Decodes a `/v1/pick` body.
pub fn decode_pick(buf: &[u8]) -> Result<WirePick, WireError> {
    if buf.len() > MAX_MESSAGE_BYTES {
        return Err(err(
            "message",
            format!("larger than {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    let mut r = Reader { buf, pos: 0 };
    let flags = r.header(PICK_MAGIC)?;
    if flags & !1 != 0 {
        return Err(err("flags", format!("unknown bits {flags:#04x}")));
    }
    let block_size = r.u16("block_size")?;
    let prompt_tokens = r.u32("prompt_tokens")?;
    let model_len = r.u16("model_len")? as usize;
    let session_len = r.u16("session_len")? as usize;
    let subset_len = r.u16("subset_len")? as usize;
    let n = hash_count(r.u16("hash_count")?)?;
    let model = r.str(model_len, "model")?.to_string();
    if model.is_empty() {
        return Err(err("model", "must not be empty"));
    }
    let session = r.str(session_len, "session")?;
    let subset_text = r.str(subset_len, "subset")?;
    let block_hashes = r.hashes(n)?;
    r.end()?;
    let subset = if subset_len == 0 {
        None
    } else {
        Some(
            subset_text
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.parse::<SubsetEntry>().map_err(|m| err("subset", m)))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    Ok(WirePick {
        request: PickRequest {
            model,
            block_hashes,
            prompt_tokens: u64::from(prompt_tokens),
            session_key: (!session.is_empty()).then(|| session.to_string()),
            subset,
            sheddable: flags & 1 != 0,
        },
        block_size,
    })
}

/// Encodes a `/v1/pick` body (what the plugin sends; used by tests and the bench).
pub fn encode_pick(req: &PickRequest, block_size: u16, subset: &str) -> Vec<u8> {
    let session = req.session_key.as_deref().unwrap_or("");
    let mut out = Vec::with_capacity(
        20 + req.model.len() + session.len() + subset.len() + 8 * req.block_hashes.len(),
    );
    out.extend_from_slice(PICK_MAGIC);
    out.push(VERSION);
    out.push(u8::from(req.sheddable));
    out.extend_from_slice(&block_size.to_le_bytes());
    out.extend_from_slice(&(req.prompt_tokens.min(u32::MAX as u64) as u32).to_le_bytes());
    for len in [
        req.model.len(),
        session.len(),
        subset.len(),
        req.block_hashes.len(),
    ] {
        out.extend_from_slice(&(len.min(u16::MAX as usize) as u16).to_le_bytes());
    }
    out.extend_from_slice(req.model.as_bytes());
    out.extend_from_slice(session.as_bytes());
    out.extend_from_slice(subset.as_bytes());
    for h in &req.block_hashes {
        out.extend_from_slice(&h.to_le_bytes());
    }
    out
}

/// Decodes a `/v1/served` body.
pub fn decode_served(buf: &[u8]) -> Result<WireServed, WireError> {
    if buf.len() > MAX_MESSAGE_BYTES {
        return Err(err(
            "message",
            format!("larger than {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    let mut r = Reader { buf, pos: 0 };
    let flags = r.header(SERVED_MAGIC)?;
    if flags != 0 {
        return Err(err("flags", format!("unknown bits {flags:#04x}")));
    }
    let ep_len = r.u16("endpoint_len")? as usize;
    let n = hash_count(r.u16("hash_count")?)?;
    let endpoint = r
        .str(ep_len, "endpoint")?
        .parse::<Endpoint>()
        .map_err(|m| err("endpoint", m))?;
    let block_hashes = r.hashes(n)?;
    r.end()?;
    Ok(WireServed {
        endpoint,
        block_hashes,
    })
}

/// Encodes a `/v1/served` body.
pub fn encode_served(endpoint: &Endpoint, hashes: &[u64]) -> Vec<u8> {
    let ep = endpoint.to_string();
    let mut out = Vec::with_capacity(10 + ep.len() + 8 * hashes.len());
    out.extend_from_slice(SERVED_MAGIC);
    out.push(VERSION);
    out.push(0);
    out.extend_from_slice(&(ep.len() as u16).to_le_bytes());
    out.extend_from_slice(&(hashes.len().min(u16::MAX as usize) as u16).to_le_bytes());
    out.extend_from_slice(ep.as_bytes());
    for h in hashes {
        out.extend_from_slice(&h.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> PickRequest {
        PickRequest {
            model: "Qwen/Qwen3-0.6B".into(),
            block_hashes: (0..256).map(|i| i * 0x0101_0101).collect(),
            prompt_tokens: 16_000,
            session_key: Some("s-1".into()),
            subset: None,
            sheddable: true,
        }
    }

    #[test]
    fn pick_round_trips_and_is_compact() {
        let bytes = encode_pick(&req(), 256, "");
        assert_eq!(bytes.len(), 20 + 15 + 3 + 256 * 8);
        let got = decode_pick(&bytes).unwrap();
        assert_eq!(got.request, req());
        assert_eq!(got.block_size, 256);

        let with_subset = encode_pick(&req(), 256, "10.0.0.1:8000,10.0.0.2");
        let got = decode_pick(&with_subset).unwrap();
        assert_eq!(got.request.subset.unwrap().len(), 2);
    }

    #[test]
    fn pick_layout_is_pinned() {
        let r = PickRequest {
            model: "m".into(),
            block_hashes: vec![0x0102_0304_0506_0708],
            prompt_tokens: 5,
            ..Default::default()
        };
        let b = encode_pick(&r, 256, "");
        assert_eq!(
            b,
            [
                b'I', b'G', b'P', b'K', 1, 0, 0, 1, 5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, b'm', 8, 7,
                6, 5, 4, 3, 2, 1
            ]
        );
    }

    #[test]
    fn malformed_picks_name_the_field() {
        let good = encode_pick(&req(), 256, "");
        assert_eq!(
            decode_pick(&good[..good.len() - 3]).unwrap_err().field,
            "hashes"
        );
        assert_eq!(decode_pick(b"XXXX").unwrap_err().field, "magic");
        let mut v = good.clone();
        v[4] = 9;
        assert_eq!(decode_pick(&v).unwrap_err().field, "version");
        let mut v = good.clone();
        v[5] = 0x80;
        assert_eq!(decode_pick(&v).unwrap_err().field, "flags");
        let mut v = good.clone();
        v[18..20].copy_from_slice(&2000u16.to_le_bytes());
        assert_eq!(decode_pick(&v).unwrap_err().field, "hash_count");
        let mut v = good.clone();
        v.push(0);
        assert_eq!(decode_pick(&v).unwrap_err().field, "hashes");
        let empty_model = PickRequest {
            model: String::new(),
            ..req()
        };
        assert_eq!(
            decode_pick(&encode_pick(&empty_model, 0, ""))
                .unwrap_err()
                .field,
            "model"
        );
        assert_eq!(
            decode_pick(&encode_pick(&req(), 0, "pod-a"))
                .unwrap_err()
                .field,
            "subset"
        );
        assert_eq!(decode_pick(&[]).unwrap_err().field, "magic");
    }

    #[test]
    fn served_round_trips_and_rejects_names() {
        let e: Endpoint = "10.0.0.3:8000".parse().unwrap();
        let b = encode_served(&e, &[1, 2, 3]);
        assert_eq!(
            decode_served(&b).unwrap(),
            WireServed {
                endpoint: e,
                block_hashes: vec![1, 2, 3]
            }
        );
        let mut bad = b.clone();
        bad[10] = b'x';
        assert_eq!(decode_served(&bad).unwrap_err().field, "endpoint");
        assert_eq!(decode_served(&b[..12]).unwrap_err().field, "endpoint");
    }
}
