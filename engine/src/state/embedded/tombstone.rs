//! Range tombstones: a deletion of every key in `[start, end)` written before it.
//!
//! They are few (clearing a state, clipping a store to a key-group range), so the store
//! keeps them in one list beside its files rather than inside them: every read checks the
//! list, every flush and compaction drops the entries they cover, and a tombstone is
//! forgotten once no memtable or file can still hold an entry it covers (each file records
//! the newest tombstone applied when it was written).

use super::entry::Seq;
use serde::{Deserialize, Serialize};

/// Deletes the keys in `[start, end)` written before `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeTombstone {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
    pub seq: Seq,
}

impl RangeTombstone {
    pub fn contains(&self, key: &[u8]) -> bool {
        self.start.as_slice() <= key && key < self.end.as_slice()
    }
}

/// Whether an entry for `key` written at `seq` is deleted by one of `tombstones`.
pub fn covers(tombstones: &[RangeTombstone], key: &[u8], seq: Seq) -> bool {
    tombstones.iter().any(|t| seq < t.seq && t.contains(key))
}

/// The newest sequence number among `tombstones`, 0 without any.
pub fn newest_seq(tombstones: &[RangeTombstone]) -> Seq {
    tombstones.iter().map(|t| t.seq).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tombstone_covers_older_writes_in_its_range_only() {
        let tombstones = [RangeTombstone { start: b"b".to_vec(), end: b"d".to_vec(), seq: 10 }];
        assert!(covers(&tombstones, b"b", 9));
        assert!(covers(&tombstones, b"c\xff", 1));
        assert!(!covers(&tombstones, b"d", 9), "the end is exclusive");
        assert!(!covers(&tombstones, b"a", 9));
        assert!(!covers(&tombstones, b"c", 11), "a later write survives");
        assert_eq!(newest_seq(&tombstones), 10);
        assert_eq!(newest_seq(&[]), 0);
    }
}
