//! The embedded store's settings: a memory budget split between memtables and the block
//! cache, and the shape of its files and levels.

use crate::state::StateError;

/// How an embedded store uses memory and disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// Memory for memtables and the block cache together, in bytes.
    pub memory_budget_bytes: usize,
    /// The memtables' share of the budget, in percent; the block cache gets the rest.
    /// Half of the memtables' share is the active memtable's; the other half holds
    /// memtables waiting for their flush. Past the whole share, maintenance stalls the
    /// operator until a flush frees memory (RocksDB's write stall).
    pub memtable_share_percent: u32,
    /// A data block is closed once its payload reaches this size.
    pub block_bytes: usize,
    pub bloom_bits_per_key: u32,
    /// A compaction starts a new output file once the current one reaches this size.
    pub target_file_bytes: u64,
    /// Level 1's target size; each deeper level's is `level_size_ratio` times the one above.
    pub level1_target_bytes: u64,
    pub level_size_ratio: u32,
    /// Level 0 is compacted into level 1 once it holds this many files.
    pub level0_compaction_trigger_files: usize,
    /// With this many level-0 files, maintenance stalls the operator until a compaction
    /// brings them down.
    pub level0_stop_files: usize,
    /// Frozen memtables (one per snapshot) are flushed together once there are this many,
    /// even if they are small.
    pub max_immutable_memtables: usize,
}

impl EmbeddedOptions {
    /// Settings for a budget of `memory_budget_bytes`, with files and levels sized from it.
    pub fn with_memory_budget(memory_budget_bytes: usize) -> EmbeddedOptions {
        let mut options = EmbeddedOptions {
            memory_budget_bytes,
            memtable_share_percent: 50,
            block_bytes: 4096,
            bloom_bits_per_key: 10,
            target_file_bytes: 0,
            level1_target_bytes: 0,
            level_size_ratio: 10,
            level0_compaction_trigger_files: 4,
            level0_stop_files: 12,
            max_immutable_memtables: 8,
        };
        let active = options.active_memtable_bytes() as u64;
        options.target_file_bytes = active.clamp(64 * 1024, 64 * 1024 * 1024);
        // Level 1 as large as a level-0 compaction's worth of flushes: each level-0
        // compaction then rewrites about as much of level 1 as it brings from level 0.
        options.level1_target_bytes = (active * options.level0_compaction_trigger_files as u64).max(256 * 1024);
        options
    }

    /// The memtables' share of the budget.
    pub fn memtable_bytes(&self) -> usize {
        (self.memory_budget_bytes as u128 * u128::from(self.memtable_share_percent) / 100) as usize
    }

    /// The active memtable is made immutable (and queued for its flush) at this size.
    pub fn active_memtable_bytes(&self) -> usize {
        self.memtable_bytes() / 2
    }

    /// The block cache's bound.
    pub fn cache_bytes(&self) -> usize {
        self.memory_budget_bytes - self.memtable_bytes()
    }

    /// The size past which `level` (1 and deeper) is compacted into the next.
    pub fn level_target_bytes(&self, level: usize) -> u64 {
        assert!(level >= 1);
        let mut target = self.level1_target_bytes;
        for _ in 1..level {
            target = target.saturating_mul(u64::from(self.level_size_ratio));
        }
        target
    }

    pub fn validate(&self) -> Result<(), StateError> {
        let fail = |message: String| Err(StateError::InvalidOptions { message });
        if self.memtable_share_percent == 0 || self.memtable_share_percent >= 100 {
            return fail(format!("memtable share {}% must be within 1..=99", self.memtable_share_percent));
        }
        if self.active_memtable_bytes() < 1024 {
            return fail(format!("memory budget {} B leaves memtables under 1 KiB each", self.memory_budget_bytes));
        }
        if self.block_bytes < 64 || self.block_bytes > 1 << 24 {
            return fail(format!("block size {} B must be within 64 B..=16 MiB", self.block_bytes));
        }
        if self.bloom_bits_per_key == 0 || self.bloom_bits_per_key > 40 {
            return fail(format!("bloom filter bits per key {} must be within 1..=40", self.bloom_bits_per_key));
        }
        if self.target_file_bytes < self.block_bytes as u64 {
            return fail(format!("target file size {} B is below the block size", self.target_file_bytes));
        }
        if self.level1_target_bytes < self.target_file_bytes {
            return fail(format!("level 1 target {} B is below the target file size", self.level1_target_bytes));
        }
        if self.level_size_ratio < 2 {
            return fail(format!("level size ratio {} must be at least 2", self.level_size_ratio));
        }
        if self.level0_compaction_trigger_files < 1 || self.level0_stop_files <= self.level0_compaction_trigger_files {
            return fail(format!(
                "level 0 trigger {} must be at least 1 and below the stop count {}",
                self.level0_compaction_trigger_files, self.level0_stop_files
            ));
        }
        if self.max_immutable_memtables < 1 {
            return fail("at least one immutable memtable must be allowed".into());
        }
        Ok(())
    }
}

impl Default for EmbeddedOptions {
    /// 64 MiB: 32 MiB of memtables, a 32 MiB block cache.
    fn default() -> Self {
        EmbeddedOptions::with_memory_budget(64 * 1024 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_splits_between_memtables_and_cache_and_defaults_are_valid() {
        let options = EmbeddedOptions::default();
        assert_eq!(options.memtable_bytes() + options.cache_bytes(), options.memory_budget_bytes);
        assert_eq!(options.active_memtable_bytes(), 16 * 1024 * 1024);
        assert_eq!(options.level_target_bytes(3), options.level1_target_bytes * 100);
        options.validate().unwrap();
        EmbeddedOptions::with_memory_budget(64 * 1024).validate().unwrap();
        let err = EmbeddedOptions { memtable_share_percent: 0, ..options.clone() }.validate().unwrap_err();
        assert!(err.to_string().contains("memtable share 0%"), "{err}");
        let err = EmbeddedOptions::with_memory_budget(1000).validate().unwrap_err();
        assert!(err.to_string().contains("under 1 KiB"), "{err}");
    }
}
