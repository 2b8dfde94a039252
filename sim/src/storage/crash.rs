//! What a crash leaves of a volume: the choice, drawn from the seed, among the states a real
//! file system may be left in (the module header of `storage` states the model).

use super::volume::{DirInode, FileInode, Inode, ROOT, Volume};
use engine::seam::runtime;
use std::collections::BTreeSet;

/// File data reaches the disk in blocks of this size, aligned to file offsets: a crash keeps
/// or zero-fills unsynced data block by block (the page cache's unit).
pub(super) const BLOCK_BYTES: usize = 4096;

/// How a crash decides what of the unsynced state survives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CrashMode {
    /// A power loss that the seed decides: with probability 1/4 nothing unsynced survives,
    /// with 1/4 everything does, and otherwise each unsynced directory change and each
    /// file's unsynced data survive or not independently, within the model. No randomness is
    /// drawn when nothing is unsynced.
    #[default]
    Seeded,
    /// A power loss that keeps nothing unsynced: the durable view exactly (the pessimistic
    /// end).
    LoseUnsynced,
    /// A power loss after everything reached the disk: the current view exactly, with handles
    /// still going stale (the lenient end).
    KeepUnsynced,
    /// The volume is gone, synced or not, and comes back empty: a local disk lost with its
    /// node.
    Wipe,
}

/// What one crash does, once the mode and the seed have spoken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    LoseAll,
    KeepAll,
    Independent,
}

fn coin() -> bool {
    runtime::random_u64() & 1 == 1
}

impl Volume {
    /// The volume loses power (or, with [`CrashMode::Wipe`], its disk).
    pub(super) fn crash(&mut self, mode: CrashMode) {
        self.generation += 1;
        // Every directory that had unsynced changes owes its next `sync_dir` callers a stale
        // error per change, whatever the crash keeps: see "Operations that span a crash".
        for (dir, changes) in self.journal.count_by_dir() {
            if mode != CrashMode::Wipe || dir == ROOT {
                *self.stale_barriers.entry(dir).or_default() += changes;
            }
        }
        // Handles from before the crash are stale; they no longer keep inodes alive.
        for inode in self.inodes.values_mut() {
            if let Inode::File(file) = inode {
                file.open_handles = 0;
            }
        }
        let fixed_policy = match mode {
            CrashMode::Wipe => return self.wipe(),
            CrashMode::LoseUnsynced => Some(Policy::LoseAll),
            CrashMode::KeepUnsynced => Some(Policy::KeepAll),
            CrashMode::Seeded => None,
        };
        self.stats.crashes += 1;
        // Sweeping first means randomness is drawn only for what could survive.
        self.sweep();
        if !self.has_unsynced_state() {
            return;
        }
        let policy = fixed_policy.unwrap_or_else(|| match runtime::random_u64() % 4 {
            0 => Policy::LoseAll,
            1 => Policy::KeepAll,
            _ => Policy::Independent,
        });
        self.decide_changes(policy);
        for inode in self.inodes.values_mut() {
            if let Inode::Dir(dir) = inode {
                dir.current.clone_from(&dir.durable);
            }
        }
        // Only files that are still reachable have data worth deciding.
        self.sweep();
        let Volume { inodes, stats, .. } = self;
        for inode in inodes.values_mut() {
            if let Inode::File(file) = inode {
                decide_data(file, policy, stats);
            }
        }
    }

    fn has_unsynced_state(&self) -> bool {
        !self.journal.is_empty()
            || self.inodes.values().any(|inode| matches!(inode, Inode::File(file) if file.has_unsynced_data()))
    }

    /// Keeps a subset of the unsynced directory changes closed under their dependencies (a
    /// change survives only with the changes it depends on) and applies it to the durable
    /// view, in order. Under `Independent` one coin per change whose dependencies survived.
    fn decide_changes(&mut self, policy: Policy) {
        let changes = self.journal.drain();
        let pending: BTreeSet<u64> = changes.iter().map(|(sequence, _)| *sequence).collect();
        let mut kept = BTreeSet::new();
        for (sequence, change) in changes {
            let dependencies_kept =
                change.depends_on.iter().all(|dependency| kept.contains(dependency) || !pending.contains(dependency));
            let keep = match policy {
                Policy::LoseAll => false,
                Policy::KeepAll => true,
                Policy::Independent => dependencies_kept && coin(),
            };
            if keep {
                assert!(dependencies_kept, "a change survives only with what it depends on");
                self.apply_durable(&change.change);
                kept.insert(sequence);
                self.stats.changes_kept += 1;
            } else {
                self.stats.changes_lost += 1;
            }
        }
    }

    /// Everything on the volume is gone; the root comes back empty.
    fn wipe(&mut self) {
        self.stats.wipes += 1;
        self.journal.drain();
        self.inodes.retain(|id, _| *id == ROOT);
        self.inodes.insert(ROOT, Inode::Dir(DirInode::default()));
        self.stale_barriers.retain(|id, _| *id == ROOT);
    }
}

/// Decides what of a file's unsynced data survives and makes that its content in both views.
///
/// Under `Independent`: a pending truncation survives on a coin (if it does not, nothing
/// written after it survives either: appends after a truncation are ordered after it). Then
/// the unsynced bytes `tail` (everything after the durable content, or after the truncation)
/// take one of four shapes: none of them, all of them, a prefix of them, or a prefix of them
/// with blocks zero-filled (the size reached the disk, some blocks did not). Bytes that were
/// durable never change.
fn decide_data(file: &mut FileInode, policy: Policy, stats: &mut super::faults::StorageStats) {
    if !file.has_unsynced_data() {
        return;
    }
    match policy {
        Policy::LoseAll => {}
        Policy::KeepAll => file.durable.clone_from(&file.current),
        Policy::Independent => {
            let base_len = match (file.truncated, file.truncated && coin()) {
                (true, true) => Some(0),
                (true, false) => None,
                (false, _) => Some(file.durable.len()),
            };
            if let Some(base_len) = base_len {
                let tail_len = file.current.len() - base_len;
                let (kept_len, zeroed) = if tail_len == 0 {
                    (0, false)
                } else {
                    match runtime::random_u64() % 4 {
                        0 => (0, false),
                        1 => (tail_len, false),
                        2 => (1 + (runtime::random_u64() % tail_len as u64) as usize, false),
                        _ => (1 + (runtime::random_u64() % tail_len as u64) as usize, true),
                    }
                };
                let mut content = if base_len == 0 { Vec::new() } else { std::mem::take(&mut file.durable) };
                assert!(file.current.starts_with(&content), "the durable content is the current one's prefix");
                content.extend_from_slice(&file.current[base_len..base_len + kept_len]);
                if zeroed {
                    stats.zeroed_blocks += zero_blocks(&mut content, base_len);
                }
                if kept_len < tail_len || zeroed {
                    stats.torn_writes += 1;
                }
                file.durable = content;
            }
        }
    }
    file.current.clone_from(&file.durable);
    file.truncated = false;
}

/// Zero-fills each block of `content` past `from`, on a coin per block (64 coins per draw),
/// never touching the bytes before `from`. Returns the blocks zeroed.
fn zero_blocks(content: &mut [u8], from: usize) -> u64 {
    let mut zeroed = 0;
    let (mut bits, mut bits_left) = (0u64, 0u32);
    let mut start = from;
    while start < content.len() {
        let end = ((start / BLOCK_BYTES + 1) * BLOCK_BYTES).min(content.len());
        if bits_left == 0 {
            (bits, bits_left) = (runtime::random_u64(), 64);
        }
        if bits & 1 == 1 {
            content[start..end].fill(0);
            zeroed += 1;
        }
        (bits, bits_left) = (bits >> 1, bits_left - 1);
        start = end;
    }
    zeroed
}
