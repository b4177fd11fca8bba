//! Upstream endpoints as the ORIGINAL_DST cluster needs them: literal `ip:port`, never a name.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// One model-server endpoint (`10.0.0.7:8000`, `[fd00::7]:8000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint(pub SocketAddr);

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let addr: SocketAddr = s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an ip:port address"))?;
        if addr.port() == 0 {
            return Err(format!("`{s}` has port 0"));
        }
        if addr.ip().is_unspecified() {
            return Err(format!("`{s}` is an unspecified address"));
        }
        Ok(Self(addr))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The valid endpoints of a comma-separated list (as in
/// `x-gateway-destination-endpoint-fallbacks` or host-shim's `/v1/endpoints`); invalid entries
/// are skipped.
pub fn parse_list(list: &[u8]) -> Vec<Endpoint> {
    String::from_utf8_lossy(list)
        .split(',')
        .filter_map(|e| e.parse().ok())
        .collect()
}

/// Rendezvous (highest-random-weight) choice of an endpoint for `key`.
///
/// Removing one endpoint moves only the keys that were on it, which is what keeps prefix
/// affinity when the endpoint list changes.
pub fn rendezvous(key: u64, endpoints: &[Endpoint]) -> Option<Endpoint> {
    endpoints
        .iter()
        .max_by_key(|e| {
            let text = e.to_string();
            xxhash_rust::xxh64::xxh64(text.as_bytes(), key)
        })
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(n: u16) -> Vec<Endpoint> {
        (0..n)
            .map(|i| format!("10.0.0.{}:8000", i + 1).parse().unwrap())
            .collect()
    }

    #[test]
    fn parses_literal_addresses_only() {
        assert!("10.0.0.1:8000".parse::<Endpoint>().is_ok());
        assert!("[fd00::1]:8000".parse::<Endpoint>().is_ok());
        assert!("pod.local:8000".parse::<Endpoint>().is_err());
        assert!("10.0.0.1".parse::<Endpoint>().is_err());
        assert!("10.0.0.1:0".parse::<Endpoint>().is_err());
        assert!("0.0.0.0:80".parse::<Endpoint>().is_err());
    }

    #[test]
    fn parses_lists_skipping_junk() {
        assert_eq!(
            parse_list(b"10.0.0.1:80, 10.0.0.2:81,pod:1,,\xff"),
            vec![
                "10.0.0.1:80".parse::<Endpoint>().unwrap(),
                "10.0.0.2:81".parse().unwrap()
            ]
        );
        assert!(parse_list(b"").is_empty());
    }

    #[test]
    fn rendezvous_is_stable_and_spreads() {
        let all = eps(4);
        let mut counts = [0usize; 4];
        for key in 0..4000u64 {
            let e = rendezvous(key, &all).unwrap();
            assert_eq!(rendezvous(key, &all), Some(e));
            counts[all.iter().position(|x| *x == e).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
        assert_eq!(rendezvous(1, &[]), None);
    }

    #[test]
    fn removing_an_endpoint_moves_only_its_keys() {
        let all = eps(4);
        let fewer: Vec<_> = all[..3].to_vec();
        for key in 0..2000u64 {
            let before = rendezvous(key, &all).unwrap();
            if before != all[3] {
                assert_eq!(rendezvous(key, &fewer), Some(before));
            }
        }
    }
}
