//! The picks of one endpoint that have not completed yet, as this scheduler counts them.
//!
//! A pick counts at once (the engine's queue only shows it at the next scrape, tens of
//! milliseconds later); the completion report takes it off, and the served report confirms
//! it or moves it to the endpoint that really served. Reports carry no request id, only the
//! prompt's block hashes, so an entry is keyed by the prompt's last chained block hash (which
//! stands for the whole hashed prefix) and matched to the oldest entry with that key. Entries
//! older than a time-to-live are dropped, so a lost completion cannot pin an endpoint busy.

use crate::clock::Timestamp;
use std::collections::VecDeque;
use std::time::Duration;

/// The key of a request in the ledger: its last prefix block hash, or 0 without one.
pub fn request_key(block_hashes: &[u64]) -> u64 {
    block_hashes.last().copied().unwrap_or(0)
}

/// One pick in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlightEntry {
    /// [`request_key`] of the request.
    pub key: u64,
    /// When it was picked (or moved here).
    pub at: Timestamp,
    /// Estimated prompt tokens.
    pub tokens: u64,
    /// Index of the first prompt block this pick inserted provisionally into the endpoint's
    /// prefix index (blocks before it were already there); the prompt length when none.
    pub fresh_from: usize,
    /// Whether a served report confirmed the endpoint.
    pub confirmed: bool,
}

/// Picks in flight to one endpoint, oldest first.
#[derive(Debug, Default)]
pub struct InFlightLedger {
    entries: VecDeque<InFlightEntry>,
}

/// Most entries one endpoint keeps; beyond it the oldest are dropped (memory bound against a
/// data plane that never reports completion).
pub const MAX_ENTRIES: usize = 65_536;

impl InFlightLedger {
    /// Adds a pick.
    pub fn push(&mut self, entry: InFlightEntry) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// Drops entries picked more than `ttl` before `now`. Entries are pushed in pick order,
    /// so this pops from the front and costs only what it drops (called on every pick).
    pub fn expire(&mut self, now: Timestamp, ttl: Duration) {
        let Some(cutoff) = now.checked_sub(ttl) else {
            return;
        };
        while self.entries.front().is_some_and(|e| e.at < cutoff) {
            self.entries.pop_front();
        }
    }

    /// Requests in flight.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes and returns the oldest entry with `key` that is (when `unconfirmed_only`) not
    /// confirmed yet.
    pub fn take(&mut self, key: u64, unconfirmed_only: bool) -> Option<InFlightEntry> {
        let i = self
            .entries
            .iter()
            .position(|e| e.key == key && !(unconfirmed_only && e.confirmed))?;
        self.entries.remove(i)
    }

    /// Marks the newest unconfirmed entry with `key` confirmed; `false` if there is none.
    /// Newest first: the served report follows its pick within milliseconds, so the search
    /// stops near the back however many long streams are open.
    pub fn confirm(&mut self, key: u64) -> bool {
        match self
            .entries
            .iter_mut()
            .rev()
            .find(|e| e.key == key && !e.confirmed)
        {
            Some(e) => {
                e.confirmed = true;
                true
            }
            None => false,
        }
    }

    /// Removes the oldest entry (a completion whose key matches nothing here).
    pub fn take_oldest(&mut self) -> Option<InFlightEntry> {
        self.entries.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: u64, ms: u64) -> InFlightEntry {
        InFlightEntry {
            key,
            at: Duration::from_millis(ms),
            tokens: 10,
            fresh_from: 0,
            confirmed: false,
        }
    }

    #[test]
    fn completion_takes_the_oldest_match_and_expiry_drops_lost_ones() {
        let mut l = InFlightLedger::default();
        l.push(entry(1, 0));
        l.push(entry(2, 10));
        l.push(entry(1, 20));
        assert_eq!(l.take(1, false).map(|e| e.at.as_millis()), Some(0));
        assert_eq!(l.len(), 2);
        assert!(l.take(9, false).is_none());
        // A lost completion: the entry at 10 ms ages out, the one at 20 ms stays.
        l.expire(Duration::from_millis(1015), Duration::from_secs(1));
        assert_eq!(l.len(), 1);
        assert_eq!(l.take_oldest().map(|e| e.key), Some(1));
        assert!(l.is_empty());
    }

    #[test]
    fn confirmed_entries_are_not_moved_but_can_complete() {
        let mut l = InFlightLedger::default();
        l.push(entry(5, 0));
        assert!(l.confirm(5));
        assert!(!l.confirm(5));
        assert!(l.take(5, true).is_none());
        assert!(l.take(5, false).is_some());
    }

    #[test]
    fn keys_follow_the_last_block() {
        assert_eq!(request_key(&[3, 4, 5]), 5);
        assert_eq!(request_key(&[]), 0);
    }
}
