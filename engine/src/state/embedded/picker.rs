//! The compaction policy: leveled, as LevelDB and RocksDB's default.
//!
//! Picks, in this order:
//! 1. level 0 once it holds `level0_compaction_trigger_files` files: all of level 0 with
//!    the level-1 files it overlaps, into level 1;
//! 2. the level (1 to 5) most over its target size (`level1_target_bytes`, then
//!    `level_size_ratio` times more per level): its next file in round-robin key order (a
//!    compaction pointer per level, as LevelDB) with the files it overlaps one level down;
//! 3. a file that a live range tombstone covers and that was written before it: rewritten
//!    in place (level-0 files go down with all of level 0), so deleted data leaves the disk
//!    and the tombstone can be forgotten.
//!
//! Point tombstones are dropped when no level below the output holds the keys at all.
//!
//! # Write amplification
//!
//! Every byte is written once by its flush. A level-0 compaction writes the level-0 bytes
//! once more and rewrites at most level 1 (its target) with them, so per flushed byte it
//! writes at most `1 + level1_target / (trigger * flush size)`. A compaction from level n
//! (n >= 1) moves one file of up to the target file size into a level whose target is
//! `ratio` times larger; with round-robin picking each byte of level n+1 is rewritten once
//! per pass of the pointer over level n, so a byte moving down costs at most `ratio + 1`
//! bytes written, amortized (LevelDB's argument). With data down to level d:
//!
//! ```text
//! write amplification <= 1 + (1 + level1_target / (trigger * flush size)) + (d - 1) * (ratio + 1)
//! ```
//!
//! [`write_amplification_bound`] computes it, and a test measures it. It holds for flushes
//! of full memtables; snapshots freeze memtables early, and small flushes raise the level-0
//! term (as a RocksDB checkpoint's flush does), which is why frozen memtables are flushed
//! together (`max_immutable_memtables`).

use super::options::EmbeddedOptions;
use super::table::TableFile;
use super::tombstone::RangeTombstone;
use super::version::{LEVELS, Version};
use std::sync::Arc;

/// Why a compaction was picked.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    Level0Files,
    LevelSize(usize),
    Tombstone,
    Full,
}

/// One compaction to run.
#[derive(Clone, Debug)]
pub struct CompactionPlan {
    pub reason: Reason,
    pub inputs: Vec<Arc<TableFile>>,
    pub output_level: usize,
    pub drop_point_tombstones: bool,
    /// The compaction pointer of `(level, key)` to set once it is installed.
    pub pointer: Option<(usize, Vec<u8>)>,
}

/// The bound on write amplification (bytes written to files per byte flushed) that the
/// policy keeps with data down to `deepest_level`, for flushes of `flush_bytes`.
pub fn write_amplification_bound(options: &EmbeddedOptions, deepest_level: usize, flush_bytes: u64) -> f64 {
    let mut bound = 1.0;
    if deepest_level >= 1 {
        let level0_bytes = (options.level0_compaction_trigger_files as u64 * flush_bytes).max(1);
        bound += 1.0 + options.level1_target_bytes as f64 / level0_bytes as f64;
    }
    if deepest_level >= 2 {
        bound += (deepest_level - 1) as f64 * (f64::from(options.level_size_ratio) + 1.0);
    }
    bound
}

/// The key range `[smallest, largest]` of `files`.
fn key_range(files: &[Arc<TableFile>]) -> (Vec<u8>, Vec<u8>) {
    let smallest = files.iter().map(|f| f.smallest()).min().expect("at least one file").to_vec();
    let largest = files.iter().map(|f| f.largest()).max().expect("at least one file").to_vec();
    (smallest, largest)
}

fn plan(
    version: &Version,
    reason: Reason,
    inputs: Vec<Arc<TableFile>>,
    output_level: usize,
    pointer: Option<(usize, Vec<u8>)>,
) -> CompactionPlan {
    let (smallest, largest) = key_range(&inputs);
    let drop_point_tombstones = !version.deeper_overlaps(output_level, &smallest, &largest);
    CompactionPlan { reason, inputs, output_level, drop_point_tombstones, pointer }
}

fn level0_plan(version: &Version, reason: Reason) -> CompactionPlan {
    let mut inputs: Vec<Arc<TableFile>> = version.level(0).to_vec();
    let (smallest, largest) = key_range(&inputs);
    inputs.extend(version.overlapping(1, &smallest, &largest));
    plan(version, reason, inputs, 1, None)
}

/// The next compaction, if one is due.
pub fn pick(version: &Version, options: &EmbeddedOptions, pointers: &[Vec<u8>]) -> Option<CompactionPlan> {
    if version.level(0).len() >= options.level0_compaction_trigger_files {
        return Some(level0_plan(version, Reason::Level0Files));
    }
    let mut best: Option<(f64, usize)> = None;
    for level in 1..LEVELS - 1 {
        let score = version.level_bytes(level) as f64 / options.level_target_bytes(level) as f64;
        if score >= 1.0 && best.is_none_or(|(best_score, _)| score > best_score) {
            best = Some((score, level));
        }
    }
    if let Some((_, level)) = best {
        let files = version.level(level);
        let pointer = &pointers[level];
        let file = files.iter().find(|f| f.smallest() > pointer.as_slice()).unwrap_or(&files[0]).clone();
        let mut inputs = vec![file.clone()];
        inputs.extend(version.overlapping(level + 1, file.smallest(), file.largest()));
        return Some(plan(
            version,
            Reason::LevelSize(level),
            inputs,
            level + 1,
            Some((level, file.largest().to_vec())),
        ));
    }
    for tombstone in version.tombstones() {
        if let Some((level, file)) = stale_file(version, tombstone) {
            if level == 0 {
                return Some(level0_plan(version, Reason::Tombstone));
            }
            return Some(plan(version, Reason::Tombstone, vec![file], level, None));
        }
    }
    None
}

/// A file that `tombstone` covers part of and that was written before it.
pub fn stale_file(version: &Version, tombstone: &RangeTombstone) -> Option<(usize, Arc<TableFile>)> {
    (0..LEVELS).find_map(|level| {
        version
            .level(level)
            .iter()
            .find(|f| {
                f.meta().properties.tombstones_applied_seq < tombstone.seq
                    && f.overlaps(&tombstone.start, &tombstone.end)
            })
            .map(|f| (level, f.clone()))
    })
}

/// Every file into one sorted run at the deepest level in use (at least level 1).
pub fn full(version: &Version) -> Option<CompactionPlan> {
    let inputs: Vec<Arc<TableFile>> = (0..LEVELS).flat_map(|level| version.level(level).iter().cloned()).collect();
    if inputs.is_empty() {
        return None;
    }
    let output_level = version.deepest_level().unwrap_or(1).max(1);
    Some(plan(version, Reason::Full, inputs, output_level, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_grows_by_ratio_plus_one_per_level() {
        let options = EmbeddedOptions::with_memory_budget(64 * 1024 * 1024);
        let flush = options.active_memtable_bytes() as u64;
        assert_eq!(write_amplification_bound(&options, 0, flush), 1.0);
        // level 1 is four flushes, so a level-0 compaction writes each byte at most twice.
        assert_eq!(write_amplification_bound(&options, 1, flush), 3.0);
        assert_eq!(write_amplification_bound(&options, 3, flush), 3.0 + 2.0 * 11.0);
    }
}
