//! Blocks, the unit a sorted file is read in: data blocks (entries in key order), the
//! index block (where each data block is), each framed with a CRC-32 of its payload.
//!
//! ```text
//! data block  = entry* offset* count          offset, count: u32 little-endian
//! entry       = varint(key len) key varint(seq << 1 | is_put) [varint(value len) value]
//! index block = varint(count) (varint(last key len) last_key varint(offset) varint(len))*
//! framed      = payload crc32(payload)        crc: u32 little-endian
//! ```
//!
//! Keys are stored whole (no prefix compression), so every entry decodes on its own and a
//! lookup binary-searches the offsets. A block that fails its checksum or does not parse
//! is a `StateError::Corrupt` naming the file and the block's offset, never a panic.

use super::codec::{get_length_prefixed, get_u32, get_varint, put_length_prefixed, put_u32, put_varint};
use super::entry::{EntryRef, Seq};
use super::key;
use crate::state::StateError;
use std::path::Path;

/// Bytes of the checksum after every block's payload.
pub const CHECKSUM_BYTES: usize = 4;

/// Appends the CRC-32 of `payload` to it.
pub fn frame(mut payload: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&payload);
    put_u32(&mut payload, crc);
    payload
}

/// The payload of a framed block read from `file` at `offset`, once its checksum holds.
pub fn unframe<'a>(framed: &'a [u8], file: &Path, offset: u64) -> Result<&'a [u8], StateError> {
    let Some(split) = framed.len().checked_sub(CHECKSUM_BYTES) else {
        return Err(corrupt(file, offset, format!("a block of {} bytes is shorter than its checksum", framed.len())));
    };
    let (payload, stored) = framed.split_at(split);
    let stored = u32::from_le_bytes(stored.try_into().expect("four bytes"));
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(corrupt(
            file,
            offset,
            format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"),
        ));
    }
    Ok(payload)
}

pub fn corrupt(file: &Path, offset: u64, message: impl Into<String>) -> StateError {
    StateError::Corrupt { file: file.to_path_buf(), offset, message: message.into() }
}

/// Builds one data block.
#[derive(Default)]
pub struct BlockBuilder {
    buffer: Vec<u8>,
    offsets: Vec<u32>,
}

impl BlockBuilder {
    /// Appends an entry; keys must come in ascending order (the writer checks).
    pub fn add(&mut self, key: &[u8], seq: Seq, value: Option<&[u8]>) {
        assert!(seq < 1 << 63, "sequence number {seq} beyond the format's 63 bits");
        self.offsets.push(u32::try_from(self.buffer.len()).expect("a block stays below 4 GiB"));
        put_length_prefixed(&mut self.buffer, key);
        put_varint(&mut self.buffer, seq << 1 | u64::from(value.is_some()));
        if let Some(value) = value {
            put_length_prefixed(&mut self.buffer, value);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The payload's size if finished now.
    pub fn estimated_bytes(&self) -> usize {
        self.buffer.len() + 4 * self.offsets.len() + 4
    }

    /// The block's payload (unframed); the builder is empty again.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut payload = std::mem::take(&mut self.buffer);
        for offset in &self.offsets {
            put_u32(&mut payload, *offset);
        }
        put_u32(&mut payload, self.offsets.len() as u32);
        self.offsets.clear();
        payload
    }
}

/// Where one entry lies in a block's payload.
#[derive(Copy, Clone, Debug)]
struct EntryPosition {
    key_start: u32,
    key_len: u32,
    /// `seq << 1 | is_put`.
    tag: u64,
    value_start: u32,
    value_len: u32,
}

/// A parsed data block: its payload and where each entry lies.
#[derive(Debug)]
pub struct Block {
    payload: Vec<u8>,
    entries: Vec<EntryPosition>,
}

impl Block {
    /// Parses and validates a data block's payload read from `file` at `offset`.
    pub fn parse(payload: Vec<u8>, file: &Path, offset: u64) -> Result<Block, StateError> {
        let bad = |message: &str| corrupt(file, offset, format!("data block: {message}"));
        let count_at = payload.len().checked_sub(4).ok_or_else(|| bad("shorter than its entry count"))?;
        let mut position = count_at;
        let count = get_u32(&payload, &mut position).expect("four bytes are there") as usize;
        let offsets_at = count
            .checked_mul(4)
            .and_then(|bytes| count_at.checked_sub(bytes))
            .ok_or_else(|| bad("entry count beyond the block"))?;
        let mut entries = Vec::with_capacity(count);
        let mut previous_key: Option<&[u8]> = None;
        for i in 0..count {
            let mut at = offsets_at + 4 * i;
            let start = get_u32(&payload, &mut at).expect("within the offsets") as usize;
            let mut position = start;
            let entries_end = &payload[..offsets_at];
            let key = get_length_prefixed(entries_end, &mut position).ok_or_else(|| bad("truncated key"))?;
            let key_start = position - key.len();
            let tag = get_varint(entries_end, &mut position).ok_or_else(|| bad("truncated sequence number"))?;
            let (value_start, value_len) = if tag & 1 == 1 {
                let value = get_length_prefixed(entries_end, &mut position).ok_or_else(|| bad("truncated value"))?;
                (position - value.len(), value.len())
            } else {
                (position, 0)
            };
            if previous_key.is_some_and(|previous| previous >= key) {
                return Err(bad("keys out of order"));
            }
            previous_key = Some(key);
            entries.push(EntryPosition {
                key_start: key_start as u32,
                key_len: key.len() as u32,
                tag,
                value_start: value_start as u32,
                value_len: value_len as u32,
            });
        }
        Ok(Block { payload, entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry(&self, index: usize) -> EntryRef<'_> {
        let position = self.entries[index];
        let key = &self.payload[position.key_start as usize..(position.key_start + position.key_len) as usize];
        let value = (position.tag & 1 == 1).then(|| {
            &self.payload[position.value_start as usize..(position.value_start + position.value_len) as usize]
        });
        EntryRef { key, seq: position.tag >> 1, value }
    }

    fn key(&self, index: usize) -> &[u8] {
        let position = self.entries[index];
        &self.payload[position.key_start as usize..(position.key_start + position.key_len) as usize]
    }

    /// The index of the first entry whose key is at least `key`.
    pub fn seek(&self, key: &[u8]) -> usize {
        let (mut low, mut high) = (0, self.entries.len());
        while low < high {
            let middle = (low + high) / 2;
            if key::compare(self.key(middle), key).is_lt() {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// The memory this block holds, as the block cache charges it.
    pub fn charge_bytes(&self) -> usize {
        self.payload.capacity() + self.entries.capacity() * std::mem::size_of::<EntryPosition>() + 64
    }
}

/// Where one data block is: its last key and its framed extent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub last_key: Vec<u8>,
    pub offset: u64,
    /// Framed length, checksum included.
    pub len: u64,
}

/// A file's index in memory, its keys in one buffer: a lookup's binary search reads the
/// compact offsets and the keys they point at, without a pointer per entry to follow.
#[derive(Debug, Default)]
pub struct BlockIndex {
    /// Every entry's last key, one after another.
    keys: Vec<u8>,
    /// Where entry `i`'s key ends in `keys` (it starts where entry `i - 1`'s ends).
    key_ends: Vec<u32>,
    /// Each data block's framed extent: offset and length.
    handles: Vec<(u64, u64)>,
}

impl BlockIndex {
    pub fn new(entries: &[IndexEntry]) -> BlockIndex {
        let mut index = BlockIndex {
            keys: Vec::with_capacity(entries.iter().map(|e| e.last_key.len()).sum()),
            key_ends: Vec::with_capacity(entries.len()),
            handles: Vec::with_capacity(entries.len()),
        };
        for entry in entries {
            index.keys.extend_from_slice(&entry.last_key);
            index.key_ends.push(u32::try_from(index.keys.len()).expect("an index's keys stay below 4 GiB"));
            index.handles.push((entry.offset, entry.len));
        }
        index
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Block `i`'s last key.
    fn last_key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.key_ends[i - 1] as usize };
        &self.keys[start..self.key_ends[i] as usize]
    }

    /// The first block whose last key is at least `key`: the only one that may hold it
    /// (`len()` if none).
    pub fn find(&self, key: &[u8]) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let middle = (low + high) / 2;
            if key::compare(self.last_key(middle), key).is_lt() {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// Block `i`'s framed extent: offset and length.
    pub fn handle(&self, i: usize) -> (u64, u64) {
        self.handles[i]
    }

    /// The memory the index holds.
    pub fn bytes(&self) -> usize {
        self.keys.len() + self.key_ends.len() * 4 + self.handles.len() * 16
    }
}

pub fn encode_index(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, entries.len() as u64);
    for entry in entries {
        put_length_prefixed(&mut out, &entry.last_key);
        put_varint(&mut out, entry.offset);
        put_varint(&mut out, entry.len);
    }
    out
}

pub fn decode_index(payload: &[u8], file: &Path, offset: u64) -> Result<Vec<IndexEntry>, StateError> {
    let bad = |message: &str| corrupt(file, offset, format!("index block: {message}"));
    let mut position = 0;
    let count = get_varint(payload, &mut position).ok_or_else(|| bad("truncated count"))?;
    let mut entries = Vec::new();
    for _ in 0..count {
        let last_key = get_length_prefixed(payload, &mut position).ok_or_else(|| bad("truncated key"))?.to_vec();
        let block_offset = get_varint(payload, &mut position).ok_or_else(|| bad("truncated offset"))?;
        let len = get_varint(payload, &mut position).ok_or_else(|| bad("truncated length"))?;
        if entries.last().is_some_and(|previous: &IndexEntry| previous.last_key >= last_key) {
            return Err(bad("keys out of order"));
        }
        entries.push(IndexEntry { last_key, offset: block_offset, len });
    }
    if position != payload.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #[test]
        fn a_data_block_reads_back_what_was_added(
            entries in proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..12),
                (0u64..1 << 40, proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20))),
                0..60,
            ),
            probe in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            let mut builder = BlockBuilder::default();
            for (key, (seq, value)) in &entries {
                builder.add(key, *seq, value.as_deref());
            }
            let estimated = builder.estimated_bytes();
            let payload = builder.finish();
            prop_assert_eq!(payload.len(), estimated);
            let framed = frame(payload);
            let payload = unframe(&framed, Path::new("t.sst"), 0).unwrap().to_vec();
            let block = Block::parse(payload, Path::new("t.sst"), 0).unwrap();
            let read: BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)> = (0..block.len())
                .map(|i| { let e = block.entry(i); (e.key.to_vec(), (e.seq, e.value.map(<[u8]>::to_vec))) })
                .collect();
            prop_assert_eq!(&read, &entries);
            let expected_seek = entries.range(probe.clone()..).count();
            prop_assert_eq!(block.len() - block.seek(&probe), expected_seek);
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_in_a_block_is_a_checksum_error_naming_file_and_offset() {
        let mut builder = BlockBuilder::default();
        builder.add(b"a", 1, Some(b"one"));
        builder.add(b"b", 2, None);
        let framed = frame(builder.finish());
        for byte in 0..framed.len() {
            let mut damaged = framed.clone();
            damaged[byte] ^= 0x10;
            let err = unframe(&damaged, Path::new("/w/000007.sst"), 4096).unwrap_err();
            assert!(
                matches!(&err, StateError::Corrupt { file, offset: 4096, message }
                    if file == Path::new("/w/000007.sst") && message.starts_with("checksum mismatch")),
                "{err:?}"
            );
            assert!(err.to_string().contains("`/w/000007.sst` at offset 4096: checksum mismatch"), "{err}");
        }
    }

    #[test]
    fn a_malformed_payload_with_a_valid_checksum_is_an_error_not_a_panic() {
        for payload in [vec![], vec![9, 0, 0, 0], vec![0, 0, 0, 0, 1, 0, 0, 0], vec![5, 1, 2, 0, 0, 0, 0, 1, 0, 0, 0]] {
            let err = Block::parse(payload.clone(), Path::new("f.sst"), 12).unwrap_err();
            assert!(matches!(err, StateError::Corrupt { offset: 12, .. }), "{payload:?}: {err}");
        }
        assert!(decode_index(&[2, 1], Path::new("f.sst"), 3).is_err());
    }

    #[test]
    fn an_index_reads_back() {
        let entries = vec![
            IndexEntry { last_key: b"k1".to_vec(), offset: 0, len: 100 },
            IndexEntry { last_key: b"k9".to_vec(), offset: 100, len: 4000 },
        ];
        assert_eq!(decode_index(&encode_index(&entries), Path::new("f"), 0).unwrap(), entries);
        let index = BlockIndex::new(&entries);
        assert_eq!((index.len(), index.handle(1)), (2, (100, 4000)));
        let found: Vec<usize> = [&b"k0"[..], b"k1", b"k10", b"k9", b"k91"].iter().map(|k| index.find(k)).collect();
        assert_eq!(found, vec![0, 0, 1, 1, 2]);
    }
}
