//! The memtable: the newest writes, ordered in memory, until a flush writes them into a
//! sorted file. One entry per key (a later write replaces an earlier one), because nothing
//! reads a memtable at an older point than its latest write: a snapshot freezes the whole
//! memtable instead and writes go on in a new one.

use super::entry::{EntryRef, Found, Seq, Value};
use std::collections::BTreeMap;
use std::collections::btree_map;
use std::ops::Bound;

/// Bytes charged per entry beyond its key and value: the tree node share, the vectors'
/// headers and the sequence number. An estimate, used only to decide when to flush.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// Keys up to this long are stored inside the tree's nodes.
const INLINE_KEY_BYTES: usize = 22;

/// A memtable key: stored in the tree node itself when short (as the store's keys usually
/// are: a 4-byte prefix and a short user key), so that a lookup compares keys in the node
/// it is reading instead of following a pointer per comparison, and an insert allocates
/// nothing for the key. Orders (and borrows) as its bytes.
#[derive(Clone, Debug)]
enum MemKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY_BYTES] },
    Heap(Box<[u8]>),
}

impl MemKey {
    fn new(key: &[u8]) -> MemKey {
        if key.len() <= INLINE_KEY_BYTES {
            let mut bytes = [0; INLINE_KEY_BYTES];
            bytes[..key.len()].copy_from_slice(key);
            MemKey::Inline { len: key.len() as u8, bytes }
        } else {
            MemKey::Heap(key.into())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            MemKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            MemKey::Heap(bytes) => bytes,
        }
    }
}

impl std::borrow::Borrow<[u8]> for MemKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for MemKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for MemKey {}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MemKey {
    /// As the keys' bytes compare. Two inline keys compare as their zero-padded arrays, then
    /// by length (the shorter of two that differ only by trailing zeros sorts first, as a
    /// prefix does): three integer comparisons instead of a call to `memcmp`.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (MemKey::Inline { len: a_len, bytes: a }, MemKey::Inline { len: b_len, bytes: b }) => {
                padded_words(a).cmp(&padded_words(b)).then(a_len.cmp(b_len))
            }
            _ => self.as_slice().cmp(other.as_slice()),
        }
    }
}

/// An inline key's zero-padded bytes as big-endian words, which order as the bytes do.
fn padded_words(bytes: &[u8; INLINE_KEY_BYTES]) -> [u64; 3] {
    let word = |range: std::ops::Range<usize>| {
        let mut word = [0u8; 8];
        word[..range.len()].copy_from_slice(&bytes[range]);
        u64::from_be_bytes(word)
    };
    [word(0..8), word(8..16), word(16..INLINE_KEY_BYTES)]
}

#[derive(Clone, Debug)]
pub struct MemEntry {
    pub seq: Seq,
    pub value: Value,
}

/// Ordered writes in memory.
#[derive(Debug, Default)]
pub struct Memtable {
    entries: BTreeMap<MemKey, MemEntry>,
    bytes: usize,
    /// The lowest sequence number written here (`None` while nothing was). Forgetting
    /// entries leaves it as it was: it only ever errs low, which keeps a range tombstone
    /// alive longer, never shorter.
    min_seq: Option<Seq>,
}

fn charge(key: &[u8], value: &Value) -> usize {
    key.len()
        + ENTRY_OVERHEAD_BYTES
        + match value {
            Value::Put(bytes) => bytes.len(),
            Value::Delete => 0,
        }
}

impl Memtable {
    pub fn new() -> Memtable {
        Memtable::default()
    }

    /// Records a write for `key`, replacing this memtable's previous entry for it.
    pub fn insert(&mut self, key: &[u8], seq: Seq, value: Value) {
        let written: Result<(), std::convert::Infallible> = self.upsert(key, seq, |_| Ok((value, ())));
        let Ok(()) = written;
    }

    /// Forgets `key` entirely (not a tombstone): only for a key no older source holds.
    pub fn forget(&mut self, key: &[u8]) {
        if let Some(entry) = self.entries.remove(&MemKey::new(key)) {
            self.bytes -= charge(key, &entry.value);
        }
    }

    /// Forgets every entry in `[start, end)`, as a range deletion does to the writes it
    /// covers; older sources need the range tombstone itself.
    pub fn forget_range(&mut self, start: &[u8], end: &[u8]) {
        if start >= end {
            return;
        }
        let mut middle = self.entries.split_off(start);
        let mut after = middle.split_off(end);
        for (key, entry) in &middle {
            self.bytes -= charge(key.as_slice(), &entry.value);
        }
        self.entries.append(&mut after);
    }

    pub fn get(&self, key: &[u8]) -> Option<&MemEntry> {
        // Searched by a `MemKey`, whose comparison is cheaper than the bytes'.
        self.entries.get(&MemKey::new(key))
    }

    /// Calls `f` with this memtable's entry for `key` (`None` if it has none), and records
    /// the write `f` returns, with sequence number `seq`: a read-modify-write in one search.
    pub fn upsert<R, E>(
        &mut self,
        key: &[u8],
        seq: Seq,
        f: impl FnOnce(Option<&MemEntry>) -> Result<(Value, R), E>,
    ) -> Result<R, E> {
        self.min_seq = Some(self.min_seq.map_or(seq, |min| min.min(seq)));
        match self.entries.entry(MemKey::new(key)) {
            btree_map::Entry::Occupied(mut occupied) => {
                let (value, result) = f(Some(occupied.get()))?;
                let entry = occupied.get_mut();
                assert!(entry.seq < seq, "sequence numbers only grow");
                self.bytes = self.bytes - charge(key, &entry.value) + charge(key, &value);
                *entry = MemEntry { seq, value };
                Ok(result)
            }
            btree_map::Entry::Vacant(vacant) => {
                let (value, result) = f(None)?;
                self.bytes += charge(key, &value);
                vacant.insert(MemEntry { seq, value });
                Ok(result)
            }
        }
    }

    /// This memtable's entry for `key`, owned.
    pub fn find(&self, key: &[u8]) -> Option<Found> {
        self.get(key).map(|entry| Found {
            seq: entry.seq,
            value: match &entry.value {
                Value::Put(bytes) => Some(bytes.clone()),
                Value::Delete => None,
            },
        })
    }

    /// Whether any entry lies in `[start, end)`.
    pub fn overlaps(&self, start: &[u8], end: &[u8]) -> bool {
        start < end && self.entries.range::<[u8], _>((Bound::Included(start), Bound::Excluded(end))).next().is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The memory this memtable is charged, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn min_seq(&self) -> Option<Seq> {
        self.min_seq
    }

    /// The smallest and largest keys held, if any.
    pub fn key_range(&self) -> Option<(&[u8], &[u8])> {
        let first = self.entries.keys().next()?;
        let last = self.entries.keys().next_back()?;
        Some((first.as_slice(), last.as_slice()))
    }

    /// Entries with keys in `[start, end)` (`end` unbounded when `None`), ascending.
    pub fn cursor<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> MemtableCursor<'a> {
        let upper = match end {
            Some(end) if end <= start => {
                let empty = self.entries.range::<[u8], _>((Bound::Included(start), Bound::Excluded(start)));
                return MemtableCursor { entries: empty, current: None };
            }
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        let mut entries = self.entries.range::<[u8], _>((Bound::Included(start), upper));
        let current = entries.next();
        MemtableCursor { entries, current }
    }
}

/// A position in a memtable.
pub struct MemtableCursor<'a> {
    entries: btree_map::Range<'a, MemKey, MemEntry>,
    current: Option<(&'a MemKey, &'a MemEntry)>,
}

impl<'a> MemtableCursor<'a> {
    pub fn entry(&self) -> Option<EntryRef<'a>> {
        self.current.map(|(key, entry)| EntryRef {
            key: key.as_slice(),
            seq: entry.seq,
            value: match &entry.value {
                Value::Put(bytes) => Some(bytes),
                Value::Delete => None,
            },
        })
    }

    pub fn advance(&mut self) {
        self.current = self.entries.next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u8),
        Delete(u8),
        Forget(u8),
        ForgetRange(u8, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
            any::<u8>().prop_map(Op::Delete),
            any::<u8>().prop_map(Op::Forget),
            (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::ForgetRange(a, b)),
        ]
    }

    proptest! {
        #[test]
        fn memtable_keys_order_as_their_bytes(
            // Short keys of few distinct bytes, so that prefixes, trailing zeros and the inline
            // limit (22 bytes) all come up.
            a in proptest::collection::vec(0u8..3, 0..26),
            b in proptest::collection::vec(0u8..3, 0..26),
        ) {
            prop_assert_eq!(MemKey::new(&a).cmp(&MemKey::new(&b)), a.cmp(&b));
            let key = MemKey::new(&a);
            prop_assert_eq!(key.as_slice(), &a[..]);
        }

        #[test]
        fn a_memtable_holds_the_last_write_per_key_in_key_order(ops in proptest::collection::vec(op(), 0..200)) {
            let mut memtable = Memtable::new();
            let mut model: BTreeMap<Vec<u8>, Value> = BTreeMap::new();
            for (seq, op) in ops.into_iter().enumerate() {
                let seq = seq as Seq + 1;
                match op {
                    Op::Put(k, v) => {
                        memtable.insert(&[k], seq, Value::Put(vec![v; usize::from(v % 7)]));
                        model.insert(vec![k], Value::Put(vec![v; usize::from(v % 7)]));
                    }
                    Op::Delete(k) => {
                        memtable.insert(&[k], seq, Value::Delete);
                        model.insert(vec![k], Value::Delete);
                    }
                    Op::Forget(k) => {
                        memtable.forget(&[k]);
                        model.remove(&vec![k]);
                    }
                    Op::ForgetRange(a, b) => {
                        memtable.forget_range(&[a], &[b]);
                        model.retain(|k, _| !([a][..] <= k[..] && k[..] < [b][..]));
                    }
                }
            }
            let mut cursor = memtable.cursor(&[], None);
            let mut seen = Vec::new();
            while let Some(entry) = cursor.entry() {
                seen.push((entry.key.to_vec(), entry.value.map_or(Value::Delete, |v| Value::Put(v.to_vec()))));
                cursor.advance();
            }
            prop_assert_eq!(seen, model.clone().into_iter().collect::<Vec<_>>());
            // The charge is a function of the contents, however they came about.
            let expected: usize = model.iter().map(|(k, v)| charge(k, v)).sum();
            prop_assert_eq!(memtable.bytes(), expected);
            prop_assert_eq!(memtable.len(), model.len());
        }
    }

    #[test]
    fn a_bounded_cursor_stops_before_its_end() {
        let mut memtable = Memtable::new();
        for (seq, k) in [1u8, 3, 5, 7].into_iter().enumerate() {
            memtable.insert(&[k], seq as Seq + 1, Value::Put(vec![k]));
        }
        let mut cursor = memtable.cursor(&[2], Some(&[7]));
        let mut keys = Vec::new();
        while let Some(entry) = cursor.entry() {
            keys.push(entry.key[0]);
            cursor.advance();
        }
        assert_eq!(keys, vec![3, 5]);
        assert!(memtable.overlaps(&[4], &[6]));
        assert!(!memtable.overlaps(&[6], &[7]));
        assert!(memtable.cursor(&[5], Some(&[5])).entry().is_none());
    }
}
