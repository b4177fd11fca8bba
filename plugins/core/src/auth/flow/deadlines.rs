//! [`Deadlines`]: requests whose local answer waits for the rest of their body
//! ([`Phase::Draining`](super::Phase::Draining)), each with the time it is answered anyway;
//! the plugin's timer takes the overdue ones.

use std::rc::{Rc, Weak};

/// Longest a denied request's answer waits for the rest of its body, in milliseconds.
pub const DRAIN_TIMEOUT_MS: u64 = 2000;

/// Requests (context id, deadline in ms, a weak handle on the request's state) waiting for
/// their deadline. A request that ended meanwhile is skipped when its deadline comes.
#[derive(Debug)]
pub struct Deadlines<T> {
    entries: Vec<(u32, u64, Weak<T>)>,
}

impl<T> Default for Deadlines<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T> Deadlines<T> {
    /// Arms the deadline of request `context_id`: `now_ms` + [`DRAIN_TIMEOUT_MS`].
    pub fn arm(&mut self, context_id: u32, now_ms: u64, state: &Rc<T>) {
        let deadline = now_ms.saturating_add(DRAIN_TIMEOUT_MS);
        self.entries
            .push((context_id, deadline, Rc::downgrade(state)));
    }

    /// Takes the requests whose deadline is at or before `now_ms` and which still exist.
    pub fn overdue(&mut self, now_ms: u64) -> Vec<(u32, Rc<T>)> {
        let (due, keep) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|(_, deadline, _)| *deadline <= now_ms);
        self.entries = keep;
        due.into_iter()
            .filter_map(|(id, _, state): (u32, u64, Weak<T>)| Some((id, state.upgrade()?)))
            .collect()
    }

    /// How many deadlines are armed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is armed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overdue_requests_come_out_once_and_ended_ones_never() {
        let mut d = Deadlines::default();
        let a = Rc::new("a");
        let b = Rc::new("b");
        let c = Rc::new("c");
        d.arm(1, 1_000, &a);
        d.arm(2, 1_500, &b);
        d.arm(3, 1_000, &c);
        drop(c);
        assert!(d.overdue(2_999).is_empty());
        let due = d.overdue(3_000);
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].0, *due[0].1), (1, "a"));
        assert_eq!(d.len(), 1, "b waits; c's entry is gone with a's");
        assert!(d.overdue(3_000).is_empty());
        assert_eq!(d.overdue(u64::MAX).len(), 1);
        assert!(d.is_empty());
    }
}
