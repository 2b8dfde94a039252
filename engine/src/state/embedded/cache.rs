//! The block cache: parsed data blocks shared by every reader of one store, within a
//! memory bound, least recently used first out.
//!
//! Eviction is deterministic: recency is a doubly linked list through the slots (a hit or an
//! insert moves a block to its most recent end), so the same sequence of lookups evicts the
//! same blocks. A lookup is one hash probe and a few index writes, since every record that
//! misses the memtables makes one. Blocks read by a snapshot's encoding or a compaction (one
//! pass over much of the state) are looked up here but not inserted, so they do not push out
//! the blocks the operator reads record by record.

use super::block::Block;
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};

/// A block's identity: its file's number and its offset in the file.
pub type BlockId = (u64, u64);

/// Counters of the cache, for tests and figures.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub evictions: u64,
    pub used_bytes: usize,
    pub capacity_bytes: usize,
}

/// No slot: the end of the recency list.
const NONE: usize = usize::MAX;

struct Slot {
    id: BlockId,
    block: Option<Arc<Block>>,
    charge: usize,
    /// Neighbours in the recency list: `older` towards the next victim.
    older: usize,
    newer: usize,
}

struct Lru {
    /// Where each cached block's slot is.
    index: FxHashMap<BlockId, usize>,
    slots: Vec<Slot>,
    /// Slots of evicted blocks, for reuse.
    free: Vec<usize>,
    /// The least and the most recently used slots (`NONE` when empty).
    oldest: usize,
    newest: usize,
    stats: CacheStats,
}

impl Lru {
    /// Takes slot `at` out of the recency list.
    fn unlink(&mut self, at: usize) {
        let (older, newer) = (self.slots[at].older, self.slots[at].newer);
        match older {
            NONE => self.oldest = newer,
            older => self.slots[older].newer = newer,
        }
        match newer {
            NONE => self.newest = older,
            newer => self.slots[newer].older = older,
        }
    }

    /// Puts slot `at` at the most recent end of the list.
    fn link_newest(&mut self, at: usize) {
        self.slots[at].older = self.newest;
        self.slots[at].newer = NONE;
        match self.newest {
            NONE => self.oldest = at,
            newest => self.slots[newest].newer = at,
        }
        self.newest = at;
    }

    /// Drops the block in slot `at`.
    fn remove(&mut self, at: usize) {
        self.unlink(at);
        let slot = &mut self.slots[at];
        slot.block = None;
        self.stats.used_bytes -= slot.charge;
        self.index.remove(&slot.id);
        self.free.push(at);
    }
}

/// Parsed blocks within `capacity_bytes`.
pub struct BlockCache {
    lru: Mutex<Lru>,
}

impl BlockCache {
    pub fn new(capacity_bytes: usize) -> BlockCache {
        BlockCache {
            lru: Mutex::new(Lru {
                index: FxHashMap::default(),
                slots: Vec::new(),
                free: Vec::new(),
                oldest: NONE,
                newest: NONE,
                stats: CacheStats { capacity_bytes, ..CacheStats::default() },
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().expect("the block cache's lock is never poisoned")
    }

    /// The block, if cached; a hit makes it the most recently used.
    pub fn get(&self, id: BlockId) -> Option<Arc<Block>> {
        let mut lru = self.lock();
        match lru.index.get(&id).copied() {
            Some(at) => {
                lru.unlink(at);
                lru.link_newest(at);
                lru.stats.hits += 1;
                lru.slots[at].block.clone()
            }
            None => {
                lru.stats.misses += 1;
                None
            }
        }
    }

    /// Caches a block, evicting the least recently used ones to stay within the bound. A
    /// block larger than the whole cache is not cached.
    pub fn insert(&self, id: BlockId, block: Arc<Block>) {
        let charge = block.charge_bytes();
        let mut lru = self.lock();
        if charge > lru.stats.capacity_bytes {
            return;
        }
        if let Some(at) = lru.index.get(&id).copied() {
            lru.remove(at);
        }
        while lru.stats.used_bytes + charge > lru.stats.capacity_bytes {
            let victim = lru.oldest;
            assert_ne!(victim, NONE, "a cache over its bound holds something");
            lru.remove(victim);
            lru.stats.evictions += 1;
        }
        let slot = Slot { id, block: Some(block), charge, older: NONE, newer: NONE };
        let at = match lru.free.pop() {
            Some(at) => {
                lru.slots[at] = slot;
                at
            }
            None => {
                lru.slots.push(slot);
                lru.slots.len() - 1
            }
        };
        lru.link_newest(at);
        lru.index.insert(id, at);
        lru.stats.used_bytes += charge;
        lru.stats.inserts += 1;
        assert!(lru.stats.used_bytes <= lru.stats.capacity_bytes);
    }

    /// Drops every block of file `file` (the file is gone).
    pub fn evict_file(&self, file: u64) {
        let mut lru = self.lock();
        // Which slots go does not depend on the map's order, only on their ids.
        let slots: Vec<usize> = lru.index.iter().filter(|(id, _)| id.0 == file).map(|(_, at)| *at).collect();
        for at in slots {
            lru.remove(at);
        }
    }

    pub fn stats(&self) -> CacheStats {
        self.lock().stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::embedded::block::BlockBuilder;
    use proptest::prelude::*;
    use std::path::Path;

    fn block(value_bytes: usize) -> Arc<Block> {
        let mut builder = BlockBuilder::default();
        builder.add(b"k", 1, Some(&vec![7; value_bytes]));
        Arc::new(Block::parse(builder.finish(), Path::new("t"), 0).unwrap())
    }

    proptest! {
        #[test]
        fn the_cache_stays_within_its_bound_and_evicts_the_least_recently_used(
            ops in proptest::collection::vec((0u64..4, 0u64..8, any::<bool>(), 0usize..600), 1..300),
            capacity in 200usize..3000,
        ) {
            let cache = BlockCache::new(capacity);
            // The model: recency list, most recent last.
            let mut model: Vec<(BlockId, usize)> = Vec::new();
            for (file, offset, lookup, size) in ops {
                let id = (file, offset);
                if lookup {
                    let hit = cache.get(id).is_some();
                    let position = model.iter().position(|(m, _)| *m == id);
                    prop_assert_eq!(hit, position.is_some());
                    if let Some(position) = position {
                        let entry = model.remove(position);
                        model.push(entry);
                    }
                } else {
                    let block = block(size);
                    let charge = block.charge_bytes();
                    cache.insert(id, block);
                    if charge <= capacity {
                        model.retain(|(m, _)| *m != id);
                        while model.iter().map(|(_, c)| c).sum::<usize>() + charge > capacity {
                            model.remove(0);
                        }
                        model.push((id, charge));
                    }
                }
                let stats = cache.stats();
                prop_assert!(stats.used_bytes <= capacity, "{} > {}", stats.used_bytes, capacity);
                prop_assert_eq!(stats.used_bytes, model.iter().map(|(_, c)| c).sum::<usize>());
            }
            cache.evict_file(2);
            model.retain(|((file, _), _)| *file != 2);
            prop_assert_eq!(cache.stats().used_bytes, model.iter().map(|(_, c)| c).sum::<usize>());
        }
    }
}
