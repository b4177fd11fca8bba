//! The paged KV cache with automatic prefix caching, after vLLM V1's `BlockPool`.
//!
//! `num_blocks` blocks of `block_size` tokens. A block referenced by a running request is pinned
//! (`ref_cnt > 0`). A block whose last reference is dropped goes to the *tail* of an LRU free
//! list but keeps its hash, so a later request with the same prefix can take it back (a cache
//! hit) until it reaches the *head* of the list and is reused for new data (an eviction).

use crate::block_hash::BlockHash;
use std::collections::HashMap;

/// Index of a physical KV block.
pub type BlockId = u32;

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Block {
    hash: Option<BlockHash>,
    ref_cnt: u32,
    prev: u32,
    next: u32,
}

/// A block pool with a prefix-hash index and an LRU free list.
#[derive(Debug, Clone)]
pub struct KvCache {
    blocks: Vec<Block>,
    head: u32,
    tail: u32,
    num_free: usize,
    cached: HashMap<BlockHash, BlockId>,
    caching: bool,
    evictions: u64,
}

impl KvCache {
    /// A pool of `num_blocks` empty blocks, all free. With `caching` off, hashes are never
    /// registered and nothing is ever a hit.
    pub fn new(num_blocks: usize, caching: bool) -> Self {
        let n = num_blocks as u32;
        let blocks = (0..n)
            .map(|i| Block {
                hash: None,
                ref_cnt: 0,
                prev: if i == 0 { NIL } else { i - 1 },
                next: if i + 1 == n { NIL } else { i + 1 },
            })
            .collect();
        Self {
            blocks,
            head: if n == 0 { NIL } else { 0 },
            tail: if n == 0 { NIL } else { n - 1 },
            num_free: num_blocks,
            cached: HashMap::new(),
            caching,
            evictions: 0,
        }
    }

    /// Total blocks.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Blocks not referenced by any request (cached or empty).
    pub fn num_free(&self) -> usize {
        self.num_free
    }

    /// Fraction of blocks pinned by requests, as vLLM reports `kv_cache_usage_perc`.
    pub fn usage(&self) -> f64 {
        if self.blocks.is_empty() {
            return 0.0;
        }
        1.0 - self.num_free as f64 / self.blocks.len() as f64
    }

    /// Cached blocks evicted so far (reused for other data).
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Whether a block with this hash is in the cache (pinned or free).
    pub fn contains(&self, hash: BlockHash) -> bool {
        self.cached.contains_key(&hash)
    }

    /// The blocks holding the longest cached prefix of `hashes`, without taking them.
    pub fn cached_prefix(&self, hashes: &[BlockHash]) -> Vec<BlockId> {
        hashes
            .iter()
            .map_while(|h| self.cached.get(h).copied())
            .collect()
    }

    /// How many of `ids` are currently free (taking them would shrink the free list).
    pub fn count_free(&self, ids: &[BlockId]) -> usize {
        ids.iter()
            .filter(|&&b| self.blocks[b as usize].ref_cnt == 0)
            .count()
    }

    /// Takes a reference on each of `ids` (cache hits), pinning them.
    pub fn touch(&mut self, ids: &[BlockId]) {
        for &b in ids {
            if self.blocks[b as usize].ref_cnt == 0 {
                self.unlink(b);
            }
            self.blocks[b as usize].ref_cnt += 1;
        }
    }

    /// Takes `n` blocks from the head of the free list (least recently freed first), evicting
    /// their cached hashes. `None`, taking nothing, if fewer than `n` are free.
    pub fn allocate(&mut self, n: usize) -> Option<Vec<BlockId>> {
        if n > self.num_free {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let b = self.head;
            self.unlink(b);
            let block = &mut self.blocks[b as usize];
            if let Some(h) = block.hash.take() {
                self.evictions += 1;
                if self.cached.get(&h) == Some(&b) {
                    self.cached.remove(&h);
                }
            }
            block.ref_cnt = 1;
            out.push(b);
        }
        Some(out)
    }

    /// Drops one reference from each of `ids`, in order; blocks reaching zero join the tail of
    /// the free list, so pass a request's blocks last-first to have its tail evicted first.
    pub fn release(&mut self, ids: impl IntoIterator<Item = BlockId>) {
        for b in ids {
            let block = &mut self.blocks[b as usize];
            debug_assert!(block.ref_cnt > 0, "double free of block {b}");
            block.ref_cnt -= 1;
            if block.ref_cnt == 0 {
                self.push_tail(b);
            }
        }
    }

    /// Records that block `id` now holds the full block with `hash`. Returns false (and keeps
    /// the existing entry) if another block already caches that hash, or caching is off.
    pub fn register(&mut self, id: BlockId, hash: BlockHash) -> bool {
        if !self.caching || self.cached.contains_key(&hash) {
            return false;
        }
        self.cached.insert(hash, id);
        self.blocks[id as usize].hash = Some(hash);
        true
    }

    fn unlink(&mut self, b: BlockId) {
        let Block { prev, next, .. } = self.blocks[b as usize];
        if prev == NIL {
            self.head = next;
        } else {
            self.blocks[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.blocks[next as usize].prev = prev;
        }
        self.blocks[b as usize].prev = NIL;
        self.blocks[b as usize].next = NIL;
        self.num_free -= 1;
    }

    fn push_tail(&mut self, b: BlockId) {
        self.blocks[b as usize].prev = self.tail;
        self.blocks[b as usize].next = NIL;
        if self.tail == NIL {
            self.head = b;
        } else {
            self.blocks[self.tail as usize].next = b;
        }
        self.tail = b;
        self.num_free += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_blocks_stay_cached_until_reused() {
        let mut kv = KvCache::new(4, true);
        let a = kv.allocate(2).unwrap();
        assert!(kv.register(a[0], 10) && kv.register(a[1], 11));
        kv.release(a.iter().rev().copied());
        assert_eq!(kv.num_free(), 4);
        assert_eq!(kv.cached_prefix(&[10, 11, 12]), a);
        // A prefix that breaks early only matches up to the break.
        assert_eq!(kv.cached_prefix(&[10, 12, 11]), vec![a[0]]);
        assert!(kv.cached_prefix(&[12]).is_empty());
    }

    #[test]
    fn eviction_takes_least_recently_freed_first() {
        let mut kv = KvCache::new(3, true);
        let blocks = kv.allocate(3).unwrap();
        for (i, &b) in blocks.iter().enumerate() {
            kv.register(b, 100 + i as u64);
        }
        // Freed in the order 2, 0, 1: block 2 is the oldest free block.
        kv.release([blocks[2], blocks[0], blocks[1]]);
        let got = kv.allocate(1).unwrap();
        assert_eq!(got, vec![blocks[2]]);
        assert!(!kv.contains(102));
        assert!(kv.contains(100) && kv.contains(101));
        assert_eq!(kv.evictions(), 1);
        let got = kv.allocate(1).unwrap();
        assert_eq!(got, vec![blocks[0]]);
        assert!(!kv.contains(100));
    }

    #[test]
    fn pinned_blocks_are_never_evicted() {
        let mut kv = KvCache::new(3, true);
        let a = kv.allocate(1).unwrap();
        kv.register(a[0], 7);
        kv.release(a.clone());
        // A second request hits and pins it.
        let hit = kv.cached_prefix(&[7]);
        assert_eq!(kv.count_free(&hit), 1);
        kv.touch(&hit);
        assert_eq!(kv.num_free(), 2);
        assert!(kv.allocate(3).is_none(), "must not take a pinned block");
        let rest = kv.allocate(2).unwrap();
        assert!(!rest.contains(&a[0]));
        assert!(kv.contains(7));
        assert!((kv.usage() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn touched_free_block_leaves_the_free_list() {
        let mut kv = KvCache::new(2, true);
        let a = kv.allocate(2).unwrap();
        kv.register(a[0], 1);
        kv.register(a[1], 2);
        kv.release(a.clone());
        kv.touch(&[a[0]]);
        // Only a[1] is free now; allocating it evicts hash 2 but not the touched hash 1.
        assert_eq!(kv.allocate(1).unwrap(), vec![a[1]]);
        assert!(kv.contains(1) && !kv.contains(2));
    }

    #[test]
    fn duplicate_hash_keeps_first_block_and_caching_can_be_off() {
        let mut kv = KvCache::new(2, true);
        let a = kv.allocate(2).unwrap();
        assert!(kv.register(a[0], 5));
        assert!(!kv.register(a[1], 5));
        assert_eq!(kv.cached_prefix(&[5]), vec![a[0]]);
        let mut off = KvCache::new(2, false);
        let b = off.allocate(1).unwrap();
        assert!(!off.register(b[0], 5));
        assert!(off.cached_prefix(&[5]).is_empty());
    }
}
