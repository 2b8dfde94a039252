//! Cursors and their merge: every source (memtable, sorted file, level) yields its entries
//! in key order, and the merge yields each key once, from the source with its newest write.
//!
//! Each source holds at most one entry per key, so the merge only has to pick, among the
//! sources positioned at the smallest key, the entry with the highest sequence number, and
//! move all of them on. Whether that entry is visible (not a tombstone, not covered by a
//! range tombstone) is the caller's decision: a read hides it, a compaction may keep it.

use super::entry::EntryRef;
use super::key;
use super::memtable::MemtableCursor;
use crate::state::StateError;

/// A source's entries in ascending key order, at most one per key.
pub trait Cursor: Send {
    /// The current entry, `None` once exhausted.
    fn entry(&self) -> Option<EntryRef<'_>>;
    fn advance(&mut self) -> Result<(), StateError>;
}

impl Cursor for MemtableCursor<'_> {
    fn entry(&self) -> Option<EntryRef<'_>> {
        MemtableCursor::entry(self)
    }

    fn advance(&mut self) -> Result<(), StateError> {
        MemtableCursor::advance(self);
        Ok(())
    }
}

/// The merge of several sources.
pub struct MergeCursor<'a> {
    sources: Vec<Box<dyn Cursor + 'a>>,
}

impl<'a> MergeCursor<'a> {
    pub fn new(sources: Vec<Box<dyn Cursor + 'a>>) -> MergeCursor<'a> {
        MergeCursor { sources }
    }

    /// The index of the source holding the newest entry at the smallest key.
    fn winner(&self) -> Option<usize> {
        let mut winner: Option<(usize, EntryRef<'_>)> = None;
        for (index, source) in self.sources.iter().enumerate() {
            let Some(entry) = source.entry() else { continue };
            winner = match winner {
                None => Some((index, entry)),
                Some((_, best)) if key::compare(entry.key, best.key).then(best.seq.cmp(&entry.seq)).is_lt() => {
                    Some((index, entry))
                }
                keep => keep,
            };
        }
        winner.map(|(index, _)| index)
    }

    /// Calls `f` with the next key's newest entry and moves past that key in every source;
    /// `Ok(None)` once every source is exhausted.
    pub fn step<R>(&mut self, f: impl FnOnce(EntryRef<'_>) -> R) -> Result<Option<R>, StateError> {
        let Some(winner) = self.winner() else {
            return Ok(None);
        };
        let result = f(self.sources[winner].entry().expect("the winner has an entry"));
        for index in 0..self.sources.len() {
            if index == winner {
                continue;
            }
            let same_key = {
                let key = self.sources[winner].entry().expect("the winner has an entry").key;
                self.sources[index].entry().is_some_and(|entry| entry.key == key)
            };
            if same_key {
                self.sources[index].advance()?;
            }
        }
        self.sources[winner].advance()?;
        Ok(Some(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::embedded::entry::Value;
    use crate::state::embedded::memtable::Memtable;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #[test]
        fn the_merge_yields_every_key_once_with_its_newest_write(
            writes in proptest::collection::vec((0usize..4, any::<u8>(), proptest::option::of(any::<u8>())), 0..200),
        ) {
            // Writes spread over four memtables; each write is newer than the ones before.
            let mut memtables: Vec<Memtable> = (0..4).map(|_| Memtable::new()).collect();
            let mut model: BTreeMap<u8, (u64, Option<u8>)> = BTreeMap::new();
            for (seq, (source, key, value)) in writes.into_iter().enumerate() {
                let seq = seq as u64 + 1;
                let stored = value.map_or(Value::Delete, |v| Value::Put(vec![v]));
                memtables[source].insert(&[key], seq, stored);
                model.insert(key, (seq, value));
            }
            let sources: Vec<Box<dyn Cursor + '_>> =
                memtables.iter().map(|m| Box::new(m.cursor(&[], None)) as Box<dyn Cursor + '_>).collect();
            let mut merge = MergeCursor::new(sources);
            let mut merged = BTreeMap::new();
            let mut previous: Option<u8> = None;
            while let Some((key, seq, value)) = merge.step(|e| (e.key[0], e.seq, e.value.map(|v| v[0]))).unwrap() {
                prop_assert!(previous < Some(key), "keys ascend, each once");
                previous = Some(key);
                merged.insert(key, (seq, value));
            }
            prop_assert_eq!(merged, model);
        }
    }
}
