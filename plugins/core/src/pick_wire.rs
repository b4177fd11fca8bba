//! The client side of host-shim's compact pick API (`POST /v1/pick`, `POST /v1/served`):
//! binary, little-endian, no padding. host-shim's `server::wire` module documents and decodes
//! the same layout; these encoders are what the affinity plugin sends.

/// Most hashes in one message (host-shim refuses more).
pub const MAX_HASHES: usize = 1024;

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

/// Encodes a pick request (`IGPK`, version 1). Over-long strings are cut at 64 KiB - 1 and
/// hashes at [`MAX_HASHES`], so the result always decodes.
pub fn encode_pick(q: &PickQuery<'_>) -> Vec<u8> {
    let model = clip(q.model, u16::MAX as usize);
    let session = clip(q.session.unwrap_or_default(), u16::MAX as usize);
    let subset_joined = q.subset.join(",");
    let subset = clip(&subset_joined, u16::MAX as usize);
    let hashes = q
        .hashes
        .get(..q.hashes.len().min(MAX_HASHES))
        .unwrap_or_default();
    let mut out =
        Vec::with_capacity(20 + model.len() + session.len() + subset.len() + 8 * hashes.len());
    out.extend_from_slice(b"IGPK");
    out.push(1);
    out.push(u8::from(q.sheddable));
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
    out
}

/// Encodes a served report (`IGSV`, version 1): `endpoint` served the request whose prompt
/// had these block hashes.
pub fn encode_served(endpoint: &str, hashes: &[u64]) -> Vec<u8> {
    let endpoint = clip(endpoint, 255);
    let hashes = hashes
        .get(..hashes.len().min(MAX_HASHES))
        .unwrap_or_default();
    let mut out = Vec::with_capacity(10 + endpoint.len() + 8 * hashes.len());
    out.extend_from_slice(b"IGSV");
    out.push(1);
    out.push(0);
    out.extend_from_slice(&len16(endpoint.len()).to_le_bytes());
    out.extend_from_slice(&len16(hashes.len()).to_le_bytes());
    out.extend_from_slice(endpoint.as_bytes());
    for h in hashes {
        out.extend_from_slice(&h.to_le_bytes());
    }
    out
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
