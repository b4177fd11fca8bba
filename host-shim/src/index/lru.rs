//! A bounded LRU set of prefix block hashes for one endpoint.
//!
//! Nodes live in a slab (`Vec`) linked by `u32` indices, and a hash map from block hash to
//! slab index finds them; keys are already uniform xxh64 values, so the map uses them as
//! their own hash. Memory is `capacity × (16 B node + one map slot)` and never grows past
//! the capacity: a full set reuses the least recently used node.
//!
//! Eviction order matters for prefix caching: a prompt's blocks are chained, so losing block
//! 0 makes every later block useless, while losing the last block costs one block. When a
//! prefix is touched, its blocks are refreshed from the last to the first, so the head of the
//! prefix is the most recently used and the tail is evicted first — the order vLLM's own
//! block pool frees blocks in.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const NIL: u32 = u32::MAX;

/// Uses an already-uniform `u64` key as its own hash.
#[derive(Default, Clone, Copy)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-u64 keys; fold the bytes so it is still a hash.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>;

#[derive(Clone, Copy)]
struct Node {
    hash: u64,
    prev: u32,
    next: u32,
}

/// A bounded, least-recently-used set of block hashes.
pub struct BlockLru {
    map: Map,
    nodes: Vec<Node>,
    /// Most recently used.
    head: u32,
    /// Least recently used, evicted first.
    tail: u32,
    capacity: usize,
}

impl std::fmt::Debug for BlockLru {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockLru")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl BlockLru {
    /// An empty set holding at most `capacity` hashes (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, NIL as usize - 1);
        Self {
            map: Map::default(),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity,
        }
    }

    /// Number of hashes held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no hash is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Most hashes held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether `hash` is held (does not refresh it).
    pub fn contains(&self, hash: u64) -> bool {
        self.map.contains_key(&hash)
    }

    /// Bytes of heap this set uses now (node slab plus map table).
    pub fn memory_bytes(&self) -> usize {
        let node = std::mem::size_of::<Node>();
        // hashbrown: one (u64, u32) slot plus one control byte per bucket; buckets are the
        // next power of two above capacity × 8/7.
        let buckets = if self.map.capacity() == 0 {
            0
        } else {
            (self.map.capacity() * 8 / 7).next_power_of_two()
        };
        self.nodes.capacity() * node + buckets * (std::mem::size_of::<(u64, u32)>() + 1)
    }

    /// Records that an endpoint now holds `hashes` (a prompt's chained blocks, in order).
    ///
    /// Refreshes them tail first so `hashes[0]` ends up most recently used.
    pub fn touch_prefix(&mut self, hashes: &[u64]) {
        for &h in hashes.iter().rev() {
            self.touch(h);
        }
    }

    /// Inserts `hash` or refreshes it to most recently used.
    pub fn touch(&mut self, hash: u64) {
        if let Some(&i) = self.map.get(&hash) {
            self.unlink(i);
            self.push_front(i);
            return;
        }
        let i = if self.map.len() >= self.capacity {
            let victim = self.tail;
            self.unlink(victim);
            self.map.remove(&self.nodes[victim as usize].hash);
            self.nodes[victim as usize].hash = hash;
            victim
        } else {
            self.nodes.push(Node {
                hash,
                prev: NIL,
                next: NIL,
            });
            (self.nodes.len() - 1) as u32
        };
        self.map.insert(hash, i);
        self.push_front(i);
    }

    /// How many leading blocks of `hashes` this endpoint likely holds.
    ///
    /// Hash `i` of a chain stands for the whole prefix `0..=i`, and tails are evicted before
    /// heads, so the held blocks of one prompt form a prefix of its chain. That makes the
    /// boundary findable by binary search: O(log n) lookups instead of one per block.
    pub fn matched_prefix(&self, hashes: &[u64]) -> usize {
        if hashes.is_empty() || !self.contains(hashes[0]) {
            return 0;
        }
        if self.contains(hashes[hashes.len() - 1]) {
            return hashes.len();
        }
        // Invariant: hashes[lo] held, hashes[hi] not held.
        let (mut lo, mut hi) = (0, hashes.len() - 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.contains(hashes[mid]) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo + 1
    }

    /// Changes the capacity, evicting least recently used hashes if it shrinks.
    pub fn set_capacity(&mut self, capacity: usize) {
        let capacity = capacity.clamp(1, NIL as usize - 1);
        if capacity == self.capacity {
            return;
        }
        if capacity < self.map.len() {
            // Rebuild compactly, keeping the most recently used `capacity` hashes.
            let mut keep = Vec::with_capacity(capacity);
            let mut i = self.head;
            while i != NIL && keep.len() < capacity {
                keep.push(self.nodes[i as usize].hash);
                i = self.nodes[i as usize].next;
            }
            *self = Self::new(capacity);
            for h in keep.into_iter().rev() {
                self.touch(h);
            }
            self.map.shrink_to_fit();
        }
        self.capacity = capacity;
    }

    fn unlink(&mut self, i: u32) {
        let Node { prev, next, .. } = self.nodes[i as usize];
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let n = &mut self.nodes[i as usize];
            n.prev = NIL;
            n.next = old;
        }
        if old != NIL {
            self.nodes[old as usize].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut lru = BlockLru::new(3);
        for h in [1, 2, 3] {
            lru.touch(h);
        }
        lru.touch(1); // 2 is now the oldest
        lru.touch(4);
        assert!(lru.contains(1) && lru.contains(3) && lru.contains(4));
        assert!(!lru.contains(2));
        assert_eq!(lru.len(), 3);
    }

    #[test]
    fn evicts_prefix_tails_before_heads() {
        let mut lru = BlockLru::new(4);
        lru.touch_prefix(&[10, 11, 12, 13]);
        // A new two-block prefix must push out 13 and 12, not 10 and 11.
        lru.touch_prefix(&[20, 21]);
        assert_eq!(lru.matched_prefix(&[10, 11, 12, 13]), 2);
        assert!(!lru.contains(12) && !lru.contains(13));
    }

    #[test]
    fn matched_prefix_finds_the_boundary() {
        let mut lru = BlockLru::new(100);
        let chain: Vec<u64> = (100..164).collect();
        lru.touch_prefix(&chain[..37]);
        assert_eq!(lru.matched_prefix(&chain), 37);
        assert_eq!(lru.matched_prefix(&chain[..37]), 37);
        assert_eq!(lru.matched_prefix(&chain[..1]), 1);
        assert_eq!(lru.matched_prefix(&[5, 100]), 0);
        assert_eq!(lru.matched_prefix(&[]), 0);
    }

    #[test]
    fn shrinking_keeps_most_recent_and_bounds_memory() {
        let mut lru = BlockLru::new(1000);
        for h in 0..1000 {
            lru.touch(h);
        }
        let big = lru.memory_bytes();
        lru.set_capacity(10);
        assert_eq!(lru.len(), 10);
        assert!((990..1000).all(|h| lru.contains(h)));
        assert!(!lru.contains(989));
        assert!(lru.memory_bytes() < big / 10);
        // Growing again does not lose anything.
        lru.set_capacity(20);
        lru.touch(5000);
        assert_eq!(lru.len(), 11);
    }

    #[test]
    fn capacity_is_never_exceeded() {
        let mut lru = BlockLru::new(64);
        for h in 0..10_000u64 {
            lru.touch(h.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        assert_eq!(lru.len(), 64);
        assert!(lru.nodes.len() <= 64);
    }
}
