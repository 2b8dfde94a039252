//! Sorted files (SSTs): immutable, written once by a flush or a compaction, then read by
//! point lookups and cursors.
//!
//! ```text
//! file       = data block* filter properties index footer
//! footer     = index handle, filter handle, properties handle   (offset u64, len u64 each)
//!              format version u32, crc32 of the 52 bytes before it, magic u64
//! ```
//!
//! Every block is framed with its CRC-32 (`block.rs`); the footer has its own. The whole
//! file's CRC-32 is computed while writing and kept in its [`TableMeta`] (not in the file,
//! which cannot hold its own checksum): it is what an incremental checkpoint will verify a
//! copied file against. Writes go through the storage seam and the file is fsynced before
//! it is handed out; reads from record processing use `read_range_now`, a positioned read
//! that does not suspend.

use super::block::{self, Block, BlockBuilder, BlockIndex, IndexEntry, corrupt, frame, unframe};
use super::bloom::{Bloom, key_hash};
use super::cache::BlockCache;
use super::codec::{get_u32, get_u64, put_u32, put_u64};
use super::entry::{EntryRef, Found, Seq};
use super::files::FileGuard;
use super::merge::Cursor;
use crate::seam::storage::{StorageRef, WriteFile};
use crate::state::StateError;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// "weir_sst" as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"weir_sst");
pub const FORMAT_VERSION: u32 = 1;
pub const FOOTER_BYTES: usize = 64;

/// Bytes gathered before one write to storage.
const WRITE_CHUNK_BYTES: usize = 256 * 1024;

/// How sorted files are built.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TableOptions {
    /// A data block is closed once its payload reaches this size.
    pub block_bytes: usize,
    pub bloom_bits_per_key: u32,
}

/// What a sorted file is and holds: enough to list it in a checkpoint (name, size,
/// checksum) and to place it in a version (key range, sequence numbers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableMeta {
    pub number: u64,
    /// The file's name in the store's directory.
    pub name: String,
    pub size_bytes: u64,
    /// CRC-32 of the whole file.
    pub checksum_crc32: u32,
    pub properties: Properties,
}

/// What the file itself records about its entries (its properties block).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Properties {
    pub smallest: Vec<u8>,
    pub largest: Vec<u8>,
    pub min_seq: Seq,
    pub max_seq: Seq,
    pub entries: u64,
    /// Every range tombstone up to this sequence number was applied when the file was
    /// written: none of them covers any entry in it.
    pub tombstones_applied_seq: Seq,
}

/// Writes one sorted file.
pub struct TableWriter {
    file: Box<dyn WriteFile>,
    guard: FileGuard,
    number: u64,
    options: TableOptions,
    block: BlockBuilder,
    /// Framed bytes not yet handed to the file.
    pending: Vec<u8>,
    /// Bytes of the file so far, pending ones included.
    offset: u64,
    checksum: crc32fast::Hasher,
    index: Vec<IndexEntry>,
    hashes: Vec<u64>,
    smallest: Option<Vec<u8>>,
    last_key: Vec<u8>,
    min_seq: Seq,
    max_seq: Seq,
    entries: u64,
}

impl TableWriter {
    /// Creates the file at `guard`'s path; the guard buries it if the write never finishes.
    pub async fn create(
        storage: &StorageRef,
        number: u64,
        guard: FileGuard,
        options: TableOptions,
    ) -> Result<TableWriter, StateError> {
        let file = storage.create(guard.path()).await?;
        Ok(TableWriter {
            file,
            guard,
            number,
            options,
            block: BlockBuilder::default(),
            pending: Vec::with_capacity(WRITE_CHUNK_BYTES + options.block_bytes * 2),
            offset: 0,
            checksum: crc32fast::Hasher::new(),
            index: Vec::new(),
            hashes: Vec::new(),
            smallest: None,
            last_key: Vec::new(),
            min_seq: Seq::MAX,
            max_seq: 0,
            entries: 0,
        })
    }

    /// Appends an entry. Keys must strictly ascend.
    pub fn add(&mut self, key: &[u8], seq: Seq, value: Option<&[u8]>) {
        assert!(self.smallest.is_none() || self.last_key.as_slice() < key, "keys added to a sorted file ascend");
        if self.smallest.is_none() {
            self.smallest = Some(key.to_vec());
        }
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.block.add(key, seq, value);
        self.hashes.push(key_hash(key));
        self.min_seq = self.min_seq.min(seq);
        self.max_seq = self.max_seq.max(seq);
        self.entries += 1;
        if self.block.estimated_bytes() >= self.options.block_bytes {
            self.close_block();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The file's size so far, the open block included.
    pub fn estimated_file_bytes(&self) -> u64 {
        self.offset + self.block.estimated_bytes() as u64
    }

    fn append(&mut self, bytes: &[u8]) {
        self.checksum.update(bytes);
        self.pending.extend_from_slice(bytes);
        self.offset += bytes.len() as u64;
    }

    fn close_block(&mut self) {
        if self.block.is_empty() {
            return;
        }
        let framed = frame(self.block.finish());
        self.index.push(IndexEntry { last_key: self.last_key.clone(), offset: self.offset, len: framed.len() as u64 });
        self.append(&framed);
    }

    /// Hands buffered bytes to the file once there are enough of them.
    pub async fn write_buffered(&mut self) -> Result<(), StateError> {
        if self.pending.len() >= WRITE_CHUNK_BYTES {
            self.file.write_all(&self.pending).await?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Writes the filter, properties, index and footer, fsyncs, and opens the result. The
    /// file's directory entry is not synced here: the caller syncs the directory once for
    /// every file of a flush or compaction.
    pub async fn finish(
        mut self,
        tombstones_applied_seq: Seq,
        storage: StorageRef,
        cache: Arc<BlockCache>,
    ) -> Result<TableFile, StateError> {
        assert!(!self.is_empty(), "an empty sorted file is never written");
        self.close_block();
        let bloom = Bloom::build(&self.hashes, self.options.bloom_bits_per_key);
        let properties = Properties {
            smallest: self.smallest.take().expect("not empty"),
            largest: self.last_key.clone(),
            min_seq: self.min_seq,
            max_seq: self.max_seq,
            entries: self.entries,
            tombstones_applied_seq,
        };
        let mut footer = Vec::with_capacity(FOOTER_BYTES);
        for payload in [
            bloom.encode(),
            postcard::to_stdvec(&properties).expect("properties always encode"),
            block::encode_index(&self.index),
        ] {
            let framed = frame(payload);
            put_u64(&mut footer, self.offset);
            put_u64(&mut footer, framed.len() as u64);
            self.append(&framed);
        }
        // The handles were written filter, properties, index; the footer lists them index,
        // filter, properties.
        let handles: Vec<u8> = [&footer[32..48], &footer[0..16], &footer[16..32]].concat();
        let mut footer = handles;
        put_u32(&mut footer, FORMAT_VERSION);
        let footer_crc = crc32fast::hash(&footer);
        put_u32(&mut footer, footer_crc);
        put_u64(&mut footer, MAGIC);
        assert_eq!(footer.len(), FOOTER_BYTES);
        self.append(&footer);
        self.file.write_all(&self.pending).await?;
        self.pending = Vec::new();
        self.file.sync().await?;
        let path = self.guard.path().to_path_buf();
        let meta = TableMeta {
            number: self.number,
            name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            size_bytes: self.offset,
            checksum_crc32: self.checksum.clone().finalize(),
            properties,
        };
        let index = BlockIndex::new(&self.index);
        Ok(TableFile { meta, index, bloom, storage, cache, guard: self.guard })
    }
}

/// An immutable sorted file, open for reading: its index and filter in memory (outside
/// the block cache, as RocksDB keeps them by default), data blocks through the cache.
pub struct TableFile {
    meta: TableMeta,
    index: BlockIndex,
    bloom: Bloom,
    storage: StorageRef,
    cache: Arc<BlockCache>,
    guard: FileGuard,
}

impl std::fmt::Debug for TableFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableFile").field("meta", &self.meta).finish()
    }
}

impl Drop for TableFile {
    fn drop(&mut self) {
        self.cache.evict_file(self.meta.number);
    }
}

impl TableFile {
    /// Opens a sorted file from storage, checking every checksum, the whole file's
    /// included: for a file this store did not just write (a copy restored from a
    /// checkpoint).
    pub async fn open(
        storage: StorageRef,
        cache: Arc<BlockCache>,
        number: u64,
        guard: FileGuard,
    ) -> Result<TableFile, StateError> {
        let path = guard.path().to_path_buf();
        let bytes = storage.read(&path).await?;
        let bad = |offset: usize, message: &str| corrupt(&path, offset as u64, message.to_string());
        let footer_at = bytes.len().checked_sub(FOOTER_BYTES).ok_or_else(|| bad(0, "shorter than a footer"))?;
        let footer = &bytes[footer_at..];
        let mut position = 52;
        let stored_crc = get_u32(footer, &mut position).expect("within the footer");
        let magic = get_u64(footer, &mut position).expect("within the footer");
        if magic != MAGIC {
            return Err(bad(footer_at, &format!("not a sorted file (magic {magic:#018x})")));
        }
        if crc32fast::hash(&footer[..52]) != stored_crc {
            return Err(bad(footer_at, "footer checksum mismatch"));
        }
        let mut position = 48;
        let version = get_u32(footer, &mut position).expect("within the footer");
        if version != FORMAT_VERSION {
            return Err(bad(footer_at, &format!("format version {version}, this build reads {FORMAT_VERSION}")));
        }
        let mut position = 0;
        let mut handle = || {
            let offset = get_u64(footer, &mut position).expect("within the footer");
            let len = get_u64(footer, &mut position).expect("within the footer");
            (offset, len)
        };
        let (index_handle, filter_handle, properties_handle) = (handle(), handle(), handle());
        let block_at = |handle: (u64, u64)| framed_block(&bytes[..footer_at], &path, handle);
        let index = BlockIndex::new(&block::decode_index(block_at(index_handle)?, &path, index_handle.0)?);
        let bloom =
            Bloom::decode(block_at(filter_handle)?).ok_or_else(|| corrupt(&path, filter_handle.0, "filter block"))?;
        let properties: Properties = postcard::from_bytes(block_at(properties_handle)?)
            .map_err(|e| corrupt(&path, properties_handle.0, format!("properties block: {e}")))?;
        let meta = TableMeta {
            number,
            name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            size_bytes: bytes.len() as u64,
            checksum_crc32: crc32fast::hash(&bytes),
            properties,
        };
        Ok(TableFile { meta, index, bloom, storage, cache, guard })
    }

    pub fn meta(&self) -> &TableMeta {
        &self.meta
    }

    pub fn path(&self) -> &Path {
        self.guard.path()
    }

    pub fn smallest(&self) -> &[u8] {
        &self.meta.properties.smallest
    }

    pub fn largest(&self) -> &[u8] {
        &self.meta.properties.largest
    }

    /// Whether the file's key range meets `[start, end)`.
    pub fn overlaps(&self, start: &[u8], end: &[u8]) -> bool {
        self.smallest() < end && start <= self.largest()
    }

    /// Whether the file's key range meets `[smallest, largest]` (both inclusive).
    pub fn overlaps_inclusive(&self, smallest: &[u8], largest: &[u8]) -> bool {
        self.smallest() <= largest && smallest <= self.largest()
    }

    /// False if the file certainly does not hold `key` (its key range or filter says so).
    pub fn may_contain(&self, key: &[u8], hash: u64) -> bool {
        self.smallest() <= key && key <= self.largest() && self.bloom.may_contain(hash)
    }

    /// Memory the index and filter hold.
    pub fn resident_bytes(&self) -> usize {
        self.bloom.bytes() + self.index.bytes()
    }

    /// Data block `index`, from the cache or read now.
    fn block(&self, index: usize, fill_cache: bool) -> Result<Arc<Block>, StateError> {
        let (offset, len) = self.index.handle(index);
        let id = (self.meta.number, offset);
        if let Some(block) = self.cache.get(id) {
            return Ok(block);
        }
        let len = usize::try_from(len).map_err(|_| corrupt(self.path(), offset, "block length"))?;
        let mut bytes = self.storage.read_range_now(self.path(), offset, len)?;
        if bytes.len() != len {
            return Err(corrupt(self.path(), offset, format!("truncated block: {} of {len} bytes", bytes.len())));
        }
        let payload_len = unframe(&bytes, self.path(), offset)?.len();
        bytes.truncate(payload_len);
        let block = Arc::new(Block::parse(bytes, self.path(), offset)?);
        if fill_cache {
            self.cache.insert(id, block.clone());
        }
        Ok(block)
    }

    /// The file's entry for `key`, if it has one. `hash` is `key_hash(key)`.
    pub fn get(&self, key: &[u8], hash: u64) -> Result<Option<Found>, StateError> {
        if !self.may_contain(key, hash) {
            return Ok(None);
        }
        let index = self.index.find(key);
        if index == self.index.len() {
            return Ok(None);
        }
        let block = self.block(index, true)?;
        let position = block.seek(key);
        if position == block.len() {
            return Ok(None);
        }
        let entry = block.entry(position);
        Ok((entry.key == key).then(|| Found { seq: entry.seq, value: entry.value.map(<[u8]>::to_vec) }))
    }

    /// A cursor over entries in `[start, end)` (`end` unbounded when `None`).
    pub fn cursor(&self, start: &[u8], end: Option<&[u8]>, fill_cache: bool) -> Result<TableCursor<'_>, StateError> {
        let block_index = self.index.find(start);
        let mut cursor = TableCursor {
            table: self,
            end: end.map(<[u8]>::to_vec),
            block_index,
            block: None,
            position: 0,
            fill_cache,
        };
        if block_index < self.index.len() {
            let block = self.block(block_index, fill_cache)?;
            cursor.position = block.seek(start);
            cursor.block = Some(block);
            cursor.settle()?;
        }
        Ok(cursor)
    }
}

/// The payload of the framed block at `(offset, len)` of `bytes`.
fn framed_block<'a>(bytes: &'a [u8], path: &Path, (offset, len): (u64, u64)) -> Result<&'a [u8], StateError> {
    let end = offset.checked_add(len).filter(|end| *end <= bytes.len() as u64);
    let Some(end) = end else {
        return Err(corrupt(path, offset, format!("a block of {len} bytes runs past the footer")));
    };
    unframe(&bytes[offset as usize..end as usize], path, offset)
}

/// A position in a sorted file.
pub struct TableCursor<'a> {
    table: &'a TableFile,
    end: Option<Vec<u8>>,
    block_index: usize,
    /// `None` once exhausted.
    block: Option<Arc<Block>>,
    position: usize,
    fill_cache: bool,
}

impl TableCursor<'_> {
    /// Moves past the end of a block to the next one, and stops at the end bound.
    fn settle(&mut self) -> Result<(), StateError> {
        while let Some(block) = &self.block {
            if self.position < block.len() {
                let key = block.entry(self.position).key;
                if self.end.as_deref().is_some_and(|end| key >= end) {
                    self.block = None;
                }
                return Ok(());
            }
            self.block_index += 1;
            self.position = 0;
            self.block = None;
            if self.block_index < self.table.index.len() {
                self.block = Some(self.table.block(self.block_index, self.fill_cache)?);
            }
        }
        Ok(())
    }
}

impl Cursor for TableCursor<'_> {
    fn entry(&self) -> Option<EntryRef<'_>> {
        self.block.as_ref().map(|block| block.entry(self.position))
    }

    fn advance(&mut self) -> Result<(), StateError> {
        if self.block.is_some() {
            self.position += 1;
            self.settle()?;
        }
        Ok(())
    }
}
