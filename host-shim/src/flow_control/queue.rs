//! The bounded wait queue itself: priority bands, first come first served within a band,
//! limits on requests and bytes (overall and per band), deadlines. Plain data, no clock and
//! no tasks (the controller drives it), so it is tested on its own.

use super::config::{BandLimits, FlowControlConfig};
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// Why a request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The request count limit (overall or of the band).
    Requests,
    /// The byte limit (overall or of the band).
    Bytes,
}

/// One waiting request.
#[derive(Debug)]
pub struct Entry<T> {
    /// Its ticket number (unique per queue).
    pub id: u64,
    /// Its band.
    pub priority: i32,
    /// Its size, counted against the byte limits.
    pub bytes: u64,
    /// When it stops waiting.
    pub deadline: Instant,
    /// What the caller queued.
    pub item: T,
}

#[derive(Debug)]
struct Band<T> {
    entries: VecDeque<Entry<T>>,
    bytes: u64,
}

impl<T> Default for Band<T> {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
        }
    }
}

/// Waiting requests by band.
#[derive(Debug)]
pub struct Queue<T> {
    bands: BTreeMap<i32, Band<T>>,
    len: usize,
    bytes: u64,
    next_id: u64,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            bands: BTreeMap::new(),
            len: 0,
            bytes: 0,
            next_id: 1,
        }
    }
}

impl<T> Queue<T> {
    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Queues `item` in the band of `priority`, within `cfg`'s limits; its ticket number, or
    /// the item back with the limit it hit.
    pub fn push(
        &mut self,
        cfg: &FlowControlConfig,
        priority: i32,
        bytes: u64,
        deadline: Instant,
        item: T,
    ) -> Result<u64, (Full, T)> {
        let limits: BandLimits = cfg.band(priority);
        let (band_len, band_bytes) = self
            .bands
            .get(&priority)
            .map_or((0, 0), |b| (b.entries.len(), b.bytes));
        if self.len >= cfg.max_requests || limits.max_requests.is_some_and(|m| band_len >= m) {
            return Err((Full::Requests, item));
        }
        let over =
            |limit: Option<u64>, held: u64| limit.is_some_and(|m| held.saturating_add(bytes) > m);
        if over(cfg.max_bytes, self.bytes) || over(limits.max_bytes, band_bytes) {
            return Err((Full::Bytes, item));
        }
        let id = self.next_id;
        self.next_id += 1;
        let band = self.bands.entry(priority).or_default();
        band.entries.push_back(Entry {
            id,
            priority,
            bytes,
            deadline,
            item,
        });
        band.bytes += bytes;
        self.len += 1;
        self.bytes += bytes;
        Ok(id)
    }

    /// The next request to dispatch: the oldest of the highest band.
    pub fn front(&self) -> Option<&Entry<T>> {
        self.bands.values().rev().find_map(|b| b.entries.front())
    }

    /// Takes [`Self::front`] out.
    pub fn pop_front(&mut self) -> Option<Entry<T>> {
        let (&priority, _) = self
            .bands
            .iter()
            .rev()
            .find(|(_, b)| !b.entries.is_empty())?;
        self.take(priority, 0)
    }

    /// Takes the request with ticket `id` out (a caller that went away); `None` if it is no
    /// longer queued.
    pub fn remove(&mut self, id: u64) -> Option<Entry<T>> {
        let (priority, at) = self
            .bands
            .iter()
            .find_map(|(p, b)| b.entries.iter().position(|e| e.id == id).map(|i| (*p, i)))?;
        self.take(priority, at)
    }

    /// The ticket number of the first queued request whose item matches `pred` (oldest band
    /// order does not matter: callers look for a unique item).
    pub fn find(&self, pred: impl Fn(&T) -> bool) -> Option<u64> {
        self.bands
            .values()
            .flat_map(|b| b.entries.iter())
            .find(|e| pred(&e.item))
            .map(|e| e.id)
    }

    /// Takes out every request whose deadline is at or before `now`, oldest first.
    pub fn expire(&mut self, now: Instant) -> Vec<Entry<T>> {
        let mut out = Vec::new();
        let priorities: Vec<i32> = self.bands.keys().copied().collect();
        for p in priorities {
            while let Some(at) = self
                .bands
                .get(&p)
                .and_then(|b| b.entries.iter().position(|e| e.deadline <= now))
            {
                if let Some(e) = self.take(p, at) {
                    out.push(e);
                }
            }
        }
        out.sort_by_key(|e| e.id);
        out
    }

    /// The earliest deadline of any queued request.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.bands
            .values()
            .flat_map(|b| b.entries.iter().map(|e| e.deadline))
            .min()
    }

    fn take(&mut self, priority: i32, at: usize) -> Option<Entry<T>> {
        let band = self.bands.get_mut(&priority)?;
        let e = band.entries.remove(at)?;
        band.bytes -= e.bytes;
        if band.entries.is_empty() {
            self.bands.remove(&priority);
        }
        self.len -= 1;
        self.bytes -= e.bytes;
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(max_requests: usize, max_bytes: Option<u64>) -> FlowControlConfig {
        FlowControlConfig {
            enabled: true,
            max_requests,
            max_bytes,
            ..Default::default()
        }
    }

    #[test]
    fn bounded_by_requests_and_bytes() {
        let t = Instant::now();
        let mut q = Queue::default();
        let c = cfg(2, Some(100));
        assert!(q.push(&c, 0, 40, t, "a").is_ok());
        // 40 + 70 bytes is over the byte bound, though a request slot is free.
        assert_eq!(q.push(&c, 0, 70, t, "b").unwrap_err(), (Full::Bytes, "b"));
        assert!(q.push(&c, 0, 60, t, "c").is_ok());
        assert_eq!(q.push(&c, 0, 0, t, "d").unwrap_err(), (Full::Requests, "d"));
        assert_eq!((q.len(), q.bytes()), (2, 100));
        // A freed slot takes the next one.
        q.pop_front();
        assert!(q.push(&c, 0, 0, t, "e").is_ok());
        // maxRequests 0 queues nothing.
        assert!(Queue::default().push(&cfg(0, None), 0, 0, t, ()).is_err());
    }

    #[test]
    fn band_limits() {
        let t = Instant::now();
        let mut c = cfg(10, None);
        c.bands.push(BandLimits {
            priority: -1,
            max_bytes: Some(10),
            max_requests: Some(1),
        });
        c.default_band.max_bytes = Some(50);
        let mut q = Queue::default();
        assert!(q.push(&c, -1, 5, t, 1).is_ok());
        assert_eq!(q.push(&c, -1, 1, t, 2).unwrap_err().0, Full::Requests);
        assert_eq!(q.push(&c, 0, 51, t, 3).unwrap_err().0, Full::Bytes);
        assert!(q.push(&c, 0, 50, t, 4).is_ok());
        assert!(
            q.push(&c, 3, 50, t, 5).is_ok(),
            "another unlisted band has its own bytes"
        );
    }

    #[test]
    fn fifo_within_a_band_and_higher_bands_first() {
        let t = Instant::now();
        let c = cfg(10, None);
        let mut q = Queue::default();
        for (p, x) in [
            (0, "a"),
            (-1, "shed1"),
            (0, "b"),
            (5, "urgent"),
            (-1, "shed2"),
        ] {
            q.push(&c, p, 1, t, x).unwrap();
        }
        assert_eq!(q.front().map(|e| e.item), Some("urgent"));
        let order: Vec<_> = std::iter::from_fn(|| q.pop_front().map(|e| e.item)).collect();
        assert_eq!(order, ["urgent", "a", "b", "shed1", "shed2"]);
        assert!(q.is_empty());
    }

    #[test]
    fn cancel_frees_the_slot_and_keeps_order() {
        let t = Instant::now();
        let c = cfg(3, None);
        let mut q = Queue::default();
        let ids: Vec<u64> = ["a", "b", "c"]
            .into_iter()
            .map(|x| q.push(&c, 0, 10, t, x).unwrap())
            .collect();
        assert!(q.push(&c, 0, 10, t, "d").is_err());
        assert_eq!(q.remove(ids[1]).map(|e| e.item), Some("b"));
        assert!(q.remove(ids[1]).is_none(), "removing twice finds nothing");
        assert_eq!((q.len(), q.bytes()), (2, 20));
        q.push(&c, 0, 10, t, "d").unwrap();
        let order: Vec<_> = std::iter::from_fn(|| q.pop_front().map(|e| e.item)).collect();
        assert_eq!(order, ["a", "c", "d"]);
    }

    #[test]
    fn find_names_the_ticket_of_an_item() {
        let t = Instant::now();
        let c = cfg(10, None);
        let mut q = Queue::default();
        q.push(&c, 0, 1, t, ("a", Some(7))).unwrap();
        let b = q.push(&c, -1, 1, t, ("b", Some(9))).unwrap();
        q.push(&c, 0, 1, t, ("c", None)).unwrap();
        assert_eq!(q.find(|x| x.1 == Some(9)), Some(b));
        assert_eq!(q.find(|x| x.1 == Some(1)), None);
        assert_eq!(q.remove(b).map(|e| e.item.0), Some("b"));
        assert_eq!(q.find(|x| x.1 == Some(9)), None);
    }

    #[test]
    fn deadlines_expire_oldest_first() {
        let t = Instant::now();
        let s = Duration::from_secs(1);
        let c = cfg(10, None);
        let mut q = Queue::default();
        q.push(&c, 0, 1, t + 3 * s, "late").unwrap();
        q.push(&c, -1, 1, t + s, "early-shed").unwrap();
        q.push(&c, 0, 1, t + s, "early").unwrap();
        assert_eq!(q.next_deadline(), Some(t + s));
        assert!(q.expire(t).is_empty());
        let gone: Vec<_> = q.expire(t + s).into_iter().map(|e| e.item).collect();
        assert_eq!(gone, ["early-shed", "early"]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_deadline(), Some(t + 3 * s));
    }
}
