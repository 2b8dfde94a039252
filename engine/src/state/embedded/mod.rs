//! The embedded on-disk keyed state backend (Flink's RocksDB role): weir's own small LSM
//! store, one per keyed operator subtask, in a working directory on the task manager's
//! local disk, every byte through the storage seam.
//!
//! The path of a write and a read:
//!
//! ```text
//! KeyedStateBackend (backend.rs)  encodes key (key.rs) and value (postcard)
//!   -> Store (store.rs)           active memtable (memtable.rs), immutable memtables,
//!                                 a Version of sorted files by level (version.rs, table.rs)
//!   -> reads: merge (merge.rs) newest first, tombstones hidden (tombstone.rs),
//!             blocks via the cache (cache.rs, block.rs), filters (bloom.rs)
//!   -> maintain(): flushes and compactions (job.rs) picked by picker.rs, run in the
//!             background, installed into the next Version; dead files (files.rs) removed
//! freeze(): FrozenStore (frozen.rs), encoded into the canonical format (canonical.rs)
//! ```
//!
//! The store never relies on its directory surviving a restart: it is rebuilt from the
//! restored checkpoint. It must never use `std::fs`, threads or clocks: files go through
//! `StorageRef`, background work through the runtime seam.

pub mod backend;
mod block;
mod bloom;
pub mod cache;
pub mod canonical;
mod codec;
mod entry;
pub mod files;
pub mod frozen;
mod job;
pub mod key;
mod memtable;
mod merge;
pub mod options;
pub mod picker;
pub mod restore;
pub mod store;
pub mod table;
pub mod tombstone;
pub mod upload;
pub mod version;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use backend::EmbeddedKeyedBackend;
pub use options::EmbeddedOptions;
pub use store::{Store, StoreStats};
