//! The unsynced directory changes of a volume, in the order they were made, with what each
//! depends on. A crash keeps a subset of them that is closed under those dependencies;
//! `sync_dir` makes durable the changes to one directory and, with them, their
//! dependencies.
//!
//! A change depends on the previous unsynced change to each directory entry (slot) it
//! touches, because it transforms that slot's state: a rename of a just-created file can
//! only survive with the create, a create over a just-removed name only with the removal.
//! Applying a closed set in order to the durable view is therefore always possible, and
//! [`super::volume::Volume::apply_durable`] asserts it. A directory removal also depends on
//! every unsynced change inside the removed subtree, as a real `rmdir` needs the
//! directory's entries unlinked first; a rename over an empty directory likewise.

use super::volume::InodeId;
use std::collections::{BTreeMap, BTreeSet};

/// A directory entry: a name in a directory inode.
pub(super) type Slot = (InodeId, String);

/// A change to the namespace, as it was made in the current view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// `create` of a new file: the slot was empty and now names `inode`.
    Link { slot: Slot, inode: InodeId },
    /// `remove_file` or `remove_dir_all`: the slot named `inode` and is now empty.
    Unlink { slot: Slot, inode: InodeId },
    /// `rename`: `from` named `inode` and `to` named `replaced`; now `from` is empty and `to`
    /// names `inode`. Both halves are one change: it survives whole or not at all.
    Rename { from: Slot, to: Slot, inode: InodeId, replaced: Option<InodeId> },
}

impl Change {
    /// The slots the change touches: one, or a rename's two.
    pub(super) fn slots(&self) -> impl Iterator<Item = &Slot> {
        let (first, second) = match self {
            Change::Link { slot, .. } | Change::Unlink { slot, .. } => (slot, None),
            Change::Rename { from, to, .. } => (from, Some(to)),
        };
        std::iter::once(first).chain(second)
    }

    /// Every inode a crash could need for this change: the directories and the files named.
    pub(super) fn inodes(&self) -> impl Iterator<Item = InodeId> + '_ {
        let named = match self {
            Change::Link { inode, .. } | Change::Unlink { inode, .. } => [Some(*inode), None],
            Change::Rename { inode, replaced, .. } => [Some(*inode), *replaced],
        };
        self.slots().map(|(dir, _)| *dir).chain(named.into_iter().flatten())
    }
}

/// One unsynced change and the earlier unsynced changes it depends on (by sequence number;
/// a dependency that is no longer pending became durable since).
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) change: Change,
    pub(super) depends_on: Vec<u64>,
}

#[derive(Debug, Default)]
pub(super) struct Journal {
    next_sequence: u64,
    pending: BTreeMap<u64, Pending>,
    /// The latest pending change to each slot.
    last_on_slot: BTreeMap<Slot, u64>,
    /// The pending changes touching each directory.
    by_dir: BTreeMap<InodeId, BTreeSet<u64>>,
}

impl Journal {
    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    /// The oldest pending change.
    pub(super) fn oldest(&self) -> Option<u64> {
        self.pending.keys().next().copied()
    }

    /// The latest pending change to `slot`.
    pub(super) fn last_on_slot(&self, slot: &Slot) -> Option<u64> {
        self.last_on_slot.get(slot).copied()
    }

    /// The pending changes touching directory `dir`.
    pub(super) fn touching(&self, dir: InodeId) -> impl Iterator<Item = u64> + '_ {
        self.by_dir.get(&dir).into_iter().flatten().copied()
    }

    /// Records `change`, made just now in the current view, depending on the latest pending
    /// change to each of its slots and on `also_depends_on`; returns its sequence number.
    pub(super) fn record(&mut self, change: Change, also_depends_on: impl IntoIterator<Item = u64>) -> u64 {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let mut depends_on: Vec<u64> =
            change.slots().filter_map(|slot| self.last_on_slot(slot)).chain(also_depends_on).collect();
        depends_on.sort_unstable();
        depends_on.dedup();
        assert!(depends_on.iter().all(|d| *d < sequence && self.pending.contains_key(d)), "depends on the past");
        for slot in change.slots() {
            self.last_on_slot.insert(slot.clone(), sequence);
            self.by_dir.entry(slot.0).or_default().insert(sequence);
        }
        self.pending.insert(sequence, Pending { change, depends_on });
        sequence
    }

    /// `seeds` and every pending change they depend on, transitively.
    pub(super) fn closure(&self, seeds: impl IntoIterator<Item = u64>) -> BTreeSet<u64> {
        let mut closed = BTreeSet::new();
        let mut stack: Vec<u64> = seeds.into_iter().collect();
        while let Some(sequence) = stack.pop() {
            let Some(pending) = self.pending.get(&sequence) else { continue };
            if closed.insert(sequence) {
                stack.extend(pending.depends_on.iter().copied());
            }
        }
        closed
    }

    /// Removes the changes `sequences` (closed under dependencies), returning them in the
    /// order they were made.
    pub(super) fn take(&mut self, sequences: &BTreeSet<u64>) -> Vec<Change> {
        let mut changes = Vec::with_capacity(sequences.len());
        for sequence in sequences {
            let pending = self.pending.remove(sequence).expect("a pending change");
            assert!(
                pending.depends_on.iter().all(|d| sequences.contains(d) || !self.pending.contains_key(d)),
                "only a set closed under dependencies becomes durable"
            );
            self.forget(*sequence, &pending.change);
            changes.push(pending.change);
        }
        changes
    }

    /// Removes every pending change, in the order they were made.
    pub(super) fn drain(&mut self) -> Vec<(u64, Pending)> {
        self.last_on_slot.clear();
        self.by_dir.clear();
        std::mem::take(&mut self.pending).into_iter().collect()
    }

    fn forget(&mut self, sequence: u64, change: &Change) {
        for slot in change.slots() {
            if self.last_on_slot.get(slot) == Some(&sequence) {
                self.last_on_slot.remove(slot);
            }
            if let Some(set) = self.by_dir.get_mut(&slot.0) {
                set.remove(&sequence);
                if set.is_empty() {
                    self.by_dir.remove(&slot.0);
                }
            }
        }
    }

    /// Every inode a pending change names (directories and files), for the garbage
    /// collector: a crash may bring any of them back.
    pub(super) fn inodes(&self) -> impl Iterator<Item = InodeId> + '_ {
        self.pending.values().flat_map(|pending| pending.change.inodes())
    }

    /// The pending changes, in the order they were made.
    #[cfg(test)]
    pub(super) fn changes(&self) -> impl Iterator<Item = &Change> {
        self.pending.values().map(|pending| &pending.change)
    }

    /// How many pending changes touch each directory.
    pub(super) fn count_by_dir(&self) -> BTreeMap<InodeId, u64> {
        self.by_dir.iter().map(|(dir, changes)| (*dir, changes.len() as u64)).collect()
    }
}
