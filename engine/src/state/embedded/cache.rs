//! The block cache: parsed data blocks shared by every reader of one store, within a
//! memory bound, least recently used first out.
//!
//! Eviction is deterministic: recency is a counter bumped on every hit and insert, kept in
//! ordered maps, so the same sequence of lookups evicts the same blocks. Blocks read by a
//! snapshot's encoding or a compaction (one pass over much of the state) are looked up here
//! but not inserted, so they do not push out the blocks the operator reads record by record.

use super::block::Block;
use std::collections::BTreeMap;
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

struct Slot {
    block: Arc<Block>,
    tick: u64,
    charge: usize,
}

struct Lru {
    slots: BTreeMap<BlockId, Slot>,
    /// Recency order: the smallest tick is the least recently used.
    order: BTreeMap<u64, BlockId>,
    next_tick: u64,
    stats: CacheStats,
}

/// Parsed blocks within `capacity_bytes`.
pub struct BlockCache {
    lru: Mutex<Lru>,
}

impl BlockCache {
    pub fn new(capacity_bytes: usize) -> BlockCache {
        BlockCache {
            lru: Mutex::new(Lru {
                slots: BTreeMap::new(),
                order: BTreeMap::new(),
                next_tick: 0,
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
        let Lru { slots, order, stats, next_tick } = &mut *lru;
        match slots.get_mut(&id) {
            Some(slot) => {
                order.remove(&slot.tick);
                order.insert(*next_tick, id);
                slot.tick = *next_tick;
                *next_tick += 1;
                stats.hits += 1;
                Some(slot.block.clone())
            }
            None => {
                stats.misses += 1;
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
        if let Some(old) = lru.slots.remove(&id) {
            lru.order.remove(&old.tick);
            lru.stats.used_bytes -= old.charge;
        }
        while lru.stats.used_bytes + charge > lru.stats.capacity_bytes {
            let (_, victim) = lru.order.pop_first().expect("a cache over its bound holds something");
            let slot = lru.slots.remove(&victim).expect("every ordered id has a slot");
            lru.stats.used_bytes -= slot.charge;
            lru.stats.evictions += 1;
        }
        let tick = lru.next_tick;
        lru.next_tick += 1;
        lru.order.insert(tick, id);
        lru.slots.insert(id, Slot { block, tick, charge });
        lru.stats.used_bytes += charge;
        lru.stats.inserts += 1;
        assert!(lru.stats.used_bytes <= lru.stats.capacity_bytes);
    }

    /// Drops every block of file `file` (the file is gone).
    pub fn evict_file(&self, file: u64) {
        let mut lru = self.lock();
        let ids: Vec<BlockId> = lru.slots.range((file, 0)..=(file, u64::MAX)).map(|(id, _)| *id).collect();
        for id in ids {
            let slot = lru.slots.remove(&id).expect("listed just above");
            lru.order.remove(&slot.tick);
            lru.stats.used_bytes -= slot.charge;
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
