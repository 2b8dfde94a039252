//! A frozen store: what a snapshot's synchronous part keeps (the memtables as they were,
//! immutable, and the version of that moment, which pins its files), read by the
//! asynchronous part on another task while the store goes on.
//!
//! Reading a frozen store does not fill the block cache: a snapshot reads all of the
//! state once, and should not push out the blocks that record processing reads. Phase 2
//! (incremental checkpoints) lists [`FrozenStore::files`] and uploads the new ones.

use super::memtable::Memtable;
use super::store::scan_sources;
use super::tombstone::RangeTombstone;
use super::version::{LiveFile, Manifest, Version};
use crate::state::StateError;
use std::sync::Arc;

/// The store's contents at a freeze.
pub struct FrozenStore {
    /// Oldest first.
    memtables: Vec<Arc<Memtable>>,
    version: Arc<Version>,
}

impl FrozenStore {
    pub fn new(memtables: Vec<Arc<Memtable>>, version: Arc<Version>) -> FrozenStore {
        FrozenStore { memtables, version }
    }

    /// Calls `f` with every key and value in `[start, end)` as of the freeze, ascending.
    pub fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        f: impl FnMut(&[u8], &[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        scan_sources(None, &self.memtables, &self.version, (start, end), false, f)
    }

    /// The sorted files of this frozen version (name, size, checksum, level, key range):
    /// immutable, and kept on disk while this frozen store lives.
    pub fn files(&self) -> Vec<LiveFile> {
        self.version.files()
    }

    /// The frozen memtables, oldest first.
    pub fn memtables(&self) -> &[Arc<Memtable>] {
        &self.memtables
    }

    /// The frozen version itself.
    pub fn version(&self) -> &Arc<Version> {
        &self.version
    }

    /// This frozen version as data: its files and range tombstones.
    pub fn manifest(&self) -> Manifest {
        self.version.manifest()
    }

    /// Range tombstones of this frozen version: part of its contents beside the files.
    pub fn tombstones(&self) -> &[RangeTombstone] {
        self.version.tombstones()
    }

    /// Bytes of the frozen memtables, which are not in any file yet.
    pub fn memtable_bytes(&self) -> usize {
        self.memtables.iter().map(|m| m.bytes()).sum()
    }
}
