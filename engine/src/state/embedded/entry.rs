//! The entry vocabulary shared by memtables, sorted files and cursors: a key's newest
//! write in one source, with the sequence number that orders it against other sources.

/// Orders writes: every put, point delete and range delete takes the next number, so of
/// two entries for one key the higher number is the newer, whatever source holds it.
pub type Seq = u64;

/// What one write left for a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Put(Vec<u8>),
    /// A point tombstone: the key has no value, whatever older sources hold.
    Delete,
}

impl Value {
    /// The value written, `None` for a tombstone.
    pub fn as_put(&self) -> Option<&[u8]> {
        match self {
            Value::Put(bytes) => Some(bytes),
            Value::Delete => None,
        }
    }
}

/// One source's entry for a key, borrowed from the source.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub key: &'a [u8],
    pub seq: Seq,
    /// `None` for a point tombstone.
    pub value: Option<&'a [u8]>,
}

/// A source's newest entry for one key, owned: what a point lookup returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub seq: Seq,
    /// `None` for a point tombstone.
    pub value: Option<Vec<u8>>,
}
