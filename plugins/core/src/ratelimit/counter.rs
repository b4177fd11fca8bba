//! Fixed-window counters in a compare-and-swap store (proxy-wasm shared data in Envoy, shared
//! by every worker thread; a map in tests).
//!
//! Each counter is one entry holding `(window index, count)`; an entry from an older window
//! reads as zero, so a counter needs no cleanup and the number of entries is bounded by the
//! number of distinct counter keys, not by time.
//!
//! A creating write (`cas: None`) must fail when the key already exists, or two workers that
//! both found a counter absent would both "create" it and one unit would be lost. Envoy's shared
//! data has no such call: it ignores the CAS token when a key is absent, and treats token 0 as
//! "overwrite". The Envoy store therefore creates with a token no entry holds in practice
//! ([`CREATE_CAS`]): absent, the key is inserted; present, the write is a CAS mismatch and the
//! update is retried through the CAS path. Every write also carries a random nonce, and a
//! creating write is read back, which catches the one case the token cannot (an entry whose
//! token happens to equal [`CREATE_CAS`]).

/// A key-value store with compare-and-swap, like proxy-wasm shared data.
pub trait CounterStore {
    /// The value and its CAS token, or `None` if absent.
    fn load(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Stores `value` if the entry's CAS token is still `cas`; with `None`, only if the key
    /// does not exist yet (otherwise [`StoreError::CasMismatch`]).
    fn store(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
    /// A value unlikely to repeat, across threads and processes.
    fn nonce(&self) -> u64;
}

/// A store write that did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Someone else wrote first; reload and retry.
    CasMismatch,
    /// The store refused for another reason.
    Failed,
}

/// The CAS token a creating write sends to a proxy-wasm host. Hosts hand out tokens from a
/// counter that starts at 1 and skips 0, so an existing entry holds this one only after about
/// four billion writes; then the read-back in [`write`] catches a racing creator instead.
pub const CREATE_CAS: u32 = u32::MAX;

/// How many CAS rounds one update may take before giving up (contention from other workers
/// resolves in a few rounds; running out means something is wrong).
pub const MAX_CAS_ATTEMPTS: usize = 64;

/// The counter state in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowCount {
    /// Index of the window (`now_ms / window_ms`).
    pub window: u64,
    /// Units counted in it.
    pub count: u64,
}

fn decode(bytes: &[u8]) -> Option<WindowCount> {
    let window = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let count = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some(WindowCount { window, count })
}

fn encode(w: WindowCount, nonce: u64) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&w.window.to_le_bytes());
    out[8..16].copy_from_slice(&w.count.to_le_bytes());
    out[16..].copy_from_slice(&nonce.to_le_bytes());
    out
}

/// Writes `w`; a creating write (no CAS token) is read back to detect a racing creator.
fn write(
    store: &dyn CounterStore,
    key: &str,
    w: WindowCount,
    cas: Option<u32>,
) -> Result<(), StoreError> {
    let value = encode(w, store.nonce());
    store.store(key, &value, cas)?;
    if cas.is_none() {
        match store.load(key) {
            Some((bytes, _)) if bytes == value => {}
            _ => return Err(StoreError::CasMismatch),
        }
    }
    Ok(())
}

/// The count in `window` (zero if the entry is absent, unreadable or from another window).
pub fn read(store: &dyn CounterStore, key: &str, window: u64) -> u64 {
    store
        .load(key)
        .and_then(|(b, _)| decode(&b))
        .filter(|w| w.window == window)
        .map_or(0, |w| w.count)
}

/// Result of [`try_add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddResult {
    /// Added; the count is now this.
    Added(u64),
    /// Adding would exceed the limit; the count stays this.
    WouldExceed(u64),
    /// The store kept refusing.
    StoreFailed,
}

/// Adds `amount` in `window` unless the count would exceed `limit`, atomically with respect to
/// every other writer of `key`.
pub fn try_add(
    store: &dyn CounterStore,
    key: &str,
    window: u64,
    amount: u64,
    limit: u64,
) -> AddResult {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (current, cas) = match store.load(key) {
            Some((bytes, cas)) => (
                decode(&bytes)
                    .filter(|w| w.window == window)
                    .map_or(0, |w| w.count),
                Some(cas),
            ),
            None => (0, None),
        };
        let next = current.saturating_add(amount);
        if next > limit {
            return AddResult::WouldExceed(current);
        }
        match write(
            store,
            key,
            WindowCount {
                window,
                count: next,
            },
            cas,
        ) {
            Ok(()) => return AddResult::Added(next),
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Failed) => return AddResult::StoreFailed,
        }
    }
    AddResult::StoreFailed
}

/// Adds a signed `delta` in `window` without a limit (settling a charge); a count never goes
/// below zero. Does nothing when the stored window is newer than `window` (the charge's window
/// is over; its refund would only distort the next one). Returns whether the update happened.
pub fn adjust(store: &dyn CounterStore, key: &str, window: u64, delta: i64) -> bool {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (stored, cas) = match store.load(key) {
            Some((bytes, cas)) => (decode(&bytes), Some(cas)),
            None => (None, None),
        };
        let current = match stored {
            Some(w) if w.window == window => w.count,
            Some(w) if w.window > window => return false,
            _ => 0,
        };
        let next = if delta >= 0 {
            current.saturating_add(delta.unsigned_abs())
        } else {
            current.saturating_sub(delta.unsigned_abs())
        };
        match write(
            store,
            key,
            WindowCount {
                window,
                count: next,
            },
            cas,
        ) {
            Ok(()) => return true,
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Failed) => return false,
        }
    }
    false
}

/// An in-memory [`CounterStore`] with proxy-wasm's CAS semantics, for tests and benchmarks.
#[derive(Default)]
pub struct MemoryStore {
    entries: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
    /// When set, the next N stores fail with a CAS mismatch after bumping the entry, as if
    /// another worker had written in between.
    pub interfere: std::cell::Cell<u32>,
    /// When set, a creating write is immediately overwritten by another creator's value.
    pub race_creation: std::cell::Cell<bool>,
    /// When set, another worker creates the counter (with one unit) just before the next
    /// creating write lands, so that write finds the key present.
    pub create_first: std::cell::Cell<bool>,
    next_nonce: std::cell::Cell<u64>,
}

impl CounterStore for MemoryStore {
    fn nonce(&self) -> u64 {
        let n = self.next_nonce.get().wrapping_add(1);
        self.next_nonce.set(n);
        n
    }

    fn load(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.entries.borrow().get(key).cloned()
    }

    fn store(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut entries = self.entries.borrow_mut();
        if self.interfere.get() > 0 {
            self.interfere.set(self.interfere.get() - 1);
            if let Some(e) = entries.get_mut(key) {
                e.1 = e.1.wrapping_add(1);
            }
            return Err(StoreError::CasMismatch);
        }
        if cas.is_none() && self.create_first.replace(false) {
            entries.insert(key.to_string(), (another_creators(value), 1));
        }
        match (entries.get_mut(key), cas) {
            (Some(e), Some(c)) if e.1 != c => Err(StoreError::CasMismatch),
            (Some(_), None) => Err(StoreError::CasMismatch),
            (Some(e), Some(_)) => {
                e.0 = value.to_vec();
                e.1 = e.1.wrapping_add(1);
                Ok(())
            }
            (None, Some(_)) => Err(StoreError::CasMismatch),
            (None, None) => {
                let stored = if self.race_creation.replace(false) {
                    // Another worker created the same counter in between.
                    another_creators(value)
                } else {
                    value.to_vec()
                };
                entries.insert(key.to_string(), (stored, 1));
                Ok(())
            }
        }
    }
}

/// The value another worker writes when it creates the counter `value` is about: the same
/// window, one unit, its own nonce.
fn another_creators(value: &[u8]) -> Vec<u8> {
    let mut other = value.to_vec();
    if let Some(count) = other.get_mut(8..16) {
        count.copy_from_slice(&1u64.to_le_bytes());
    }
    if let Some(nonce) = other.get_mut(16..24) {
        nonce.copy_from_slice(&u64::MAX.to_le_bytes());
    }
    other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_the_limit_exactly() {
        let s = MemoryStore::default();
        for i in 1..=5 {
            assert_eq!(try_add(&s, "k", 7, 1, 5), AddResult::Added(i));
        }
        assert_eq!(try_add(&s, "k", 7, 1, 5), AddResult::WouldExceed(5));
        assert_eq!(read(&s, "k", 7), 5);
    }

    #[test]
    fn a_new_window_starts_from_zero() {
        let s = MemoryStore::default();
        assert_eq!(try_add(&s, "k", 1, 5, 5), AddResult::Added(5));
        assert_eq!(try_add(&s, "k", 1, 1, 5), AddResult::WouldExceed(5));
        assert_eq!(try_add(&s, "k", 2, 1, 5), AddResult::Added(1));
        assert_eq!(read(&s, "k", 1), 0);
    }

    #[test]
    fn retries_through_cas_conflicts() {
        let s = MemoryStore::default();
        assert_eq!(try_add(&s, "k", 1, 1, 10), AddResult::Added(1));
        s.interfere.set(3);
        assert_eq!(try_add(&s, "k", 1, 1, 10), AddResult::Added(2));
        s.interfere.set(MAX_CAS_ATTEMPTS as u32 + 1);
        assert_eq!(try_add(&s, "k", 1, 1, 10), AddResult::StoreFailed);
    }

    #[test]
    fn adjust_settles_within_the_window_only() {
        let s = MemoryStore::default();
        try_add(&s, "k", 3, 100, 1000);
        assert!(adjust(&s, "k", 3, -40));
        assert_eq!(read(&s, "k", 3), 60);
        assert!(adjust(&s, "k", 3, -1000));
        assert_eq!(read(&s, "k", 3), 0);
        try_add(&s, "k", 4, 10, 1000);
        assert!(
            !adjust(&s, "k", 3, 50),
            "an old window's settlement must not touch the new one"
        );
        assert_eq!(read(&s, "k", 4), 10);
    }

    #[test]
    fn a_racing_creator_does_not_lose_an_update() {
        let s = MemoryStore::default();
        s.race_creation.set(true);
        assert_eq!(try_add(&s, "k", 1, 1, 10), AddResult::Added(2));
        assert_eq!(read(&s, "k", 1), 2);
    }

    #[test]
    fn a_creator_that_finds_the_key_taken_retries_through_cas() {
        let s = MemoryStore::default();
        s.create_first.set(true);
        assert_eq!(try_add(&s, "k", 1, 1, 10), AddResult::Added(2));
        assert_eq!(read(&s, "k", 1), 2);
        // A settlement that races a creator is not lost either.
        s.create_first.set(true);
        assert!(adjust(&s, "j", 1, 5));
        assert_eq!(read(&s, "j", 1), 6);
    }

    #[test]
    fn garbage_entries_read_as_zero() {
        let s = MemoryStore::default();
        s.store("k", b"short", None).unwrap();
        assert_eq!(read(&s, "k", 0), 0);
        assert_eq!(try_add(&s, "k", 0, 1, 1), AddResult::Added(1));
    }
}
