//! The compact pick API (`POST /v1/pick`, `POST /v1/served`) as host-shim reads it. The
//! layout is defined once, in [`infergate_core::pick_wire`] (documented there); this module
//! turns its decoded messages into the scheduler's types, parsing the endpoints.

use crate::endpoint::Endpoint;
use crate::scheduler::{PickRequest, SubsetEntry};
use infergate_core::pick_wire::{self as core_wire, wire_error, PickQuery};
pub use infergate_core::pick_wire::{
    decode_cancel, encode_cancel, WireError, CANCEL_MAGIC, MAX_HASHES, MAX_MESSAGE_BYTES,
    PICK_MAGIC, SERVED_MAGIC, VERSION,
};

/// A pick request as sent on the wire.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WirePick {
    /// The request.
    pub request: PickRequest,
    /// The client's block size (0: not stated).
    pub block_size: u16,
    /// The caller's id for this pick, for `POST /v1/cancel`.
    pub pick_id: Option<u64>,
}

/// A served report.
#[derive(Debug, Clone, PartialEq)]
pub struct WireServed {
    /// The endpoint that served.
    pub endpoint: Endpoint,
    /// The request's block hashes.
    pub block_hashes: Vec<u64>,
}

/// Decodes a `/v1/pick` body.
pub fn decode_pick(buf: &[u8]) -> Result<WirePick, WireError> {
    let pick = core_wire::decode_pick(buf)?;
    let subset = pick
        .subset
        .map(|entries| {
            entries
                .iter()
                .map(|s| {
                    s.parse::<SubsetEntry>()
                        .map_err(|m| wire_error("subset", m))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(WirePick {
        request: PickRequest {
            model: pick.model,
            block_hashes: pick.hashes,
            prompt_tokens: pick.prompt_tokens,
            session_key: pick.session,
            subset,
            sheddable: pick.sheddable,
        },
        block_size: pick.block_size,
        pick_id: pick.pick_id,
    })
}

/// Encodes a `/v1/pick` body as the plugin does (used by tests and the bench); `subset` is
/// the comma-separated endpoint list, empty for none.
pub fn encode_pick(req: &PickRequest, block_size: u16, subset: &str) -> Vec<u8> {
    let subset: Vec<String> = if subset.is_empty() {
        Vec::new()
    } else {
        vec![subset.to_string()]
    };
    core_wire::encode_pick(&PickQuery {
        model: &req.model,
        session: req.session_key.as_deref(),
        subset: &subset,
        prompt_tokens: req.prompt_tokens,
        block_size: usize::from(block_size),
        hashes: &req.block_hashes,
        sheddable: req.sheddable,
    })
}

/// Decodes a `/v1/served` body.
pub fn decode_served(buf: &[u8]) -> Result<WireServed, WireError> {
    let served = core_wire::decode_served(buf)?;
    let endpoint = served
        .endpoint
        .parse::<Endpoint>()
        .map_err(|m| wire_error("endpoint", m))?;
    Ok(WireServed {
        endpoint,
        block_hashes: served.hashes,
    })
}

/// Encodes a `/v1/served` body.
pub fn encode_served(endpoint: &Endpoint, hashes: &[u64]) -> Vec<u8> {
    core_wire::encode_served(&endpoint.to_string(), hashes)
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
