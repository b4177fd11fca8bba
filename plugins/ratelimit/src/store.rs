//! proxy-wasm shared data as the counter store: one key-value space for every worker thread
//! of the Envoy process, with compare-and-swap.

use infergate_core::ratelimit::counter::{CounterStore, StoreError, CREATE_CAS};
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

/// The host's shared data.
pub struct SharedDataStore;

impl CounterStore for SharedDataStore {
    fn load(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), Some(cas))) => Some((bytes, cas)),
            _ => None,
        }
    }

    fn store(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        // A creating write sends a token no entry holds: Envoy inserts an absent key whatever
        // the token, and refuses a present one whose token differs (token 0 would overwrite).
        match hostcalls::set_shared_data(key, Some(value), Some(cas.unwrap_or(CREATE_CAS))) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(_) => Err(StoreError::Failed),
        }
    }

    fn nonce(&self) -> u64 {
        // RandomState draws its keys from WASI random_get: distinct per call and per worker.
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    }
}
