//! A bounded LRU set of prefix block hashes for one endpoint.
//!
//! Nodes live in a slab (`Vec`) linked by `u32` indices; an open-addressing table of 8-byte
//! slots (32-bit hash tag + 32-bit node index, linear probing, load ≤ 0.8) finds them. Keys are
//! already uniform xxh64 values, so no hashing is needed and a miss is decided inside the
//! table without touching the nodes. Memory is about 26 bytes per block (16 B node + 10 B of
//! table) and never grows past the capacity: a full set reuses its least recently used node.
//!
//! Eviction order matters for prefix caching: a prompt's blocks are chained, so losing block
//! 0 makes every later block useless, while losing the last block costs one block. When a
//! prefix is touched, its blocks are refreshed from the last to the first, so the head of the
//! prefix is the most recently used and the tail is evicted first — the order vLLM's own
//! block pool frees blocks in.

const NIL: u32 = u32::MAX;
const EMPTY: u64 = u64::MAX;

#[derive(Clone, Copy)]
struct Node {
    hash: u64,
    prev: u32,
    next: u32,
}

/// Open-addressing index from block hash to node: each slot packs the hash's high 32 bits
/// (tag) and the node index; `EMPTY` marks a free slot. Deletion shifts entries back, so
/// there are no tombstones and probe runs stay short.
struct Table {
    slots: Vec<u64>,
}

impl Table {
    fn with_capacity(entries: usize) -> Self {
        let n = (entries + entries / 4 + 1).max(2);
        Self {
            slots: vec![EMPTY; n],
        }
    }

    fn home(&self, hash: u64) -> usize {
        // Multiply-shift maps the hash onto any table size, not only powers of two.
        ((u128::from(hash) * self.slots.len() as u128) >> 64) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    fn pack(hash: u64, node: u32) -> u64 {
        (hash & 0xFFFF_FFFF_0000_0000) | u64::from(node)
    }

    /// The slot holding `hash`, if any.
    fn find(&self, nodes: &[Node], hash: u64) -> Option<usize> {
        let tag = hash >> 32;
        let mut i = self.home(hash);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if s >> 32 == tag && nodes[(s & 0xFFFF_FFFF) as usize].hash == hash {
                return Some(i);
            }
            i = self.next(i);
        }
    }

    fn node_at(&self, slot: usize) -> u32 {
        (self.slots[slot] & 0xFFFF_FFFF) as u32
    }

    /// Inserts `hash → node`; `hash` must be absent and the table not full.
    fn insert(&mut self, hash: u64, node: u32) {
        let mut i = self.home(hash);
        while self.slots[i] != EMPTY {
            i = self.next(i);
        }
        self.slots[i] = Self::pack(hash, node);
    }

    /// Frees slot `i`, shifting later entries of the probe run back.
    fn remove_at(&mut self, nodes: &[Node], mut i: usize) {
        self.slots[i] = EMPTY;
        let mut j = i;
        loop {
            j = self.next(j);
            let s = self.slots[j];
            if s == EMPTY {
                return;
            }
            let home = self.home(nodes[(s & 0xFFFF_FFFF) as usize].hash);
            // The entry at j may stay if its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.slots[i] = s;
                self.slots[j] = EMPTY;
                i = j;
            }
        }
    }

    fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u64>()
    }
}

/// A bounded, least-recently-used set of block hashes.
pub struct BlockLru {
    table: Table,
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
            table: Table::with_capacity(capacity),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity,
        }
    }

    /// Number of hashes held.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no hash is held.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Most hashes held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether `hash` is held (does not refresh it).
    pub fn contains(&self, hash: u64) -> bool {
        self.table.find(&self.nodes, hash).is_some()
    }

    /// Bytes of heap this set uses now (node slab plus table).
    pub fn memory_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>() + self.table.bytes()
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
        if let Some(slot) = self.table.find(&self.nodes, hash) {
            let i = self.table.node_at(slot);
            self.unlink(i);
            self.push_front(i);
            return;
        }
        let i = if self.nodes.len() >= self.capacity {
            let victim = self.tail;
            self.unlink(victim);
            let old = self.nodes[victim as usize].hash;
            if let Some(slot) = self.table.find(&self.nodes, old) {
                self.table.remove_at(&self.nodes, slot);
            }
            self.nodes[victim as usize].hash = hash;
            victim
        } else {
            if self.nodes.len() == self.nodes.capacity() {
                // Grow by doubling, but never past the capacity.
                let more = self
                    .nodes
                    .len()
                    .max(16)
                    .min(self.capacity - self.nodes.len());
                self.nodes.reserve_exact(more);
            }
            self.nodes.push(Node {
                hash,
                prev: NIL,
                next: NIL,
            });
            (self.nodes.len() - 1) as u32
        };
        self.table.insert(hash, i);
        self.push_front(i);
    }
    /// Forgets `hash` (a provisional insert the served report contradicted); `false` if it
    /// was not held. The last node of the slab moves into the freed one, so the slab stays
    /// dense.
    pub fn remove(&mut self, hash: u64) -> bool {
        let Some(slot) = self.table.find(&self.nodes, hash) else {
            return false;
        };
        let i = self.table.node_at(slot);
        self.unlink(i);
        self.table.remove_at(&self.nodes, slot);
        let last = (self.nodes.len() - 1) as u32;
        if i != last {
            let moved = self.nodes[last as usize];
            if let Some(s) = self.table.find(&self.nodes, moved.hash) {
                self.table.slots[s] = Table::pack(moved.hash, i);
            }
            self.nodes[i as usize] = moved;
            if moved.prev == NIL {
                self.head = i;
            } else {
                self.nodes[moved.prev as usize].next = i;
            }
            if moved.next == NIL {
                self.tail = i;
            } else {
                self.nodes[moved.next as usize].prev = i;
            }
        }
        self.nodes.pop();
        true
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
        if capacity < self.nodes.len() {
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
        } else {
            // Same contents, table sized for the new capacity.
            let mut table = Table::with_capacity(capacity);
            for (i, n) in self.nodes.iter().enumerate() {
                table.insert(n.hash, i as u32);
            }
            self.table = table;
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
    fn remove_keeps_order_and_lookups_of_the_rest() {
        let mut lru = BlockLru::new(4);
        for h in [1, 2, 3, 4] {
            lru.touch(h);
        }
        // Removing a middle node moves the slab's last node (4, the newest) into its place.
        assert!(lru.remove(2));
        assert!(!lru.remove(2));
        assert_eq!(lru.len(), 3);
        assert!(lru.contains(1) && lru.contains(3) && lru.contains(4) && !lru.contains(2));
        // LRU order is intact: 1 is the oldest and goes first, then 3.
        lru.touch(5);
        lru.touch(6);
        assert!(!lru.contains(1) && lru.contains(3));
        lru.touch(7);
        assert!(!lru.contains(3) && lru.contains(4) && lru.contains(7));
        for h in [4, 5, 6, 7] {
            assert!(lru.remove(h));
        }
        assert!(lru.is_empty());
        lru.touch(8);
        assert!(lru.contains(8));
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

    #[test]
    fn matches_a_reference_lru_under_random_operations() {
        use std::collections::VecDeque;
        // Small key space and tiny capacities force collisions, evictions, probe-run
        // wrap-around and backward shifts.
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for cap in [1usize, 2, 3, 7, 16] {
            let mut lru = BlockLru::new(cap);
            let mut model: VecDeque<u64> = VecDeque::new(); // front = most recent
                                                            // Half the keys share their high 32 bits (the slot tag) to exercise tag collisions.
            let keys: Vec<u64> = (0..40u64)
                .map(|i| {
                    if i % 2 == 0 {
                        rand()
                    } else {
                        0xABCD_EF01_0000_0000 | i
                    }
                })
                .collect();
            for step in 0..5000 {
                let k = keys[(rand() % keys.len() as u64) as usize];
                if let Some(p) = model.iter().position(|&x| x == k) {
                    model.remove(p);
                } else if model.len() == cap {
                    model.pop_back();
                }
                model.push_front(k);
                lru.touch(k);
                assert_eq!(lru.len(), model.len(), "cap {cap} step {step}");
                for &q in &keys {
                    assert_eq!(lru.contains(q), model.contains(&q), "cap {cap} step {step}");
                }
            }
            // Resizing keeps the most recent entries in order.
            lru.set_capacity(cap + 5);
            lru.set_capacity(1);
            assert!(lru.contains(model[0]));
            assert_eq!(lru.len(), 1);
        }
    }
}
