//! The Endpoint Picker Protocol subset hint: when the data plane names the endpoints a
//! request may use (`envoy.lb.subset_hint`), only those are candidates.

use crate::endpoint::Endpoint;
use crate::scheduler::SubsetEntry;

/// Whether `e` may serve a request with subset hint `subset` (`None`: no hint, all may).
pub fn admits(subset: Option<&[SubsetEntry]>, e: &Endpoint) -> bool {
    subset.is_none_or(|s| s.iter().any(|entry| entry.admits(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_entries_match_by_address_or_ip() {
        let e: Endpoint = "10.0.0.1:8000".parse().unwrap();
        assert!(admits(None, &e));
        let by_ip = ["10.0.0.1".parse::<SubsetEntry>().unwrap()];
        assert!(admits(Some(&by_ip), &e));
        let other_port = ["10.0.0.1:9000".parse::<SubsetEntry>().unwrap()];
        assert!(!admits(Some(&other_port), &e));
        assert!(!admits(Some(&[]), &e));
        assert!("pod-a".parse::<SubsetEntry>().is_err());
    }
}
