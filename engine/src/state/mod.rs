//! State: keyed state scoped to the current key and stored per key group, operator (non-keyed)
//! list state, the snapshot format they share, and redistribution on rescale.

pub mod backend;
pub mod embedded;
pub mod heap;
pub mod keyed;
pub mod operator;
pub mod redistribute;
pub mod snapshot;

use crate::keygroup::StableHash;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::hash::Hash;

/// A key of a keyed stream: hashed stably into a key group, stored in state, snapshotted.
pub trait Key: StableHash + Hash + Eq + Ord + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T> Key for T where T: StableHash + Hash + Eq + Ord + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}

/// Computes a record's key: borrowed from the record when the key is one of its fields
/// (`key_by_ref`), owned when it is computed (`key_by`). Routing needs only a borrow, so a
/// borrowed key costs no allocation on the sender.
pub type KeySelector<T, K> = std::sync::Arc<dyn for<'a> Fn(&'a T) -> std::borrow::Cow<'a, K> + Send + Sync>;

/// A value kept in state.
/// `Sync` because a snapshot's asynchronous part reads a frozen copy-on-write view of it
/// from another thread.
pub trait StateValue: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T> StateValue for T where T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}

/// Errors of state access, snapshot and restore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("state `{name}` is registered as {registered}, but was accessed as {requested}")]
    TypeMismatch { name: String, registered: String, requested: String },
    #[error("state `{name}`: cannot encode a value: {message}")]
    Encode { name: String, message: String },
    #[error("state `{name}`: cannot decode key group {key_group}: {message}")]
    Decode { name: String, key_group: u32, message: String },
    #[error("operator list state `{name}`: cannot decode element {index}: {message}")]
    DecodeListElement { name: String, index: usize, message: String },
    #[error("key group {key_group} does not belong to this subtask's range {start}..{end}")]
    ForeignKeyGroup { key_group: u32, start: u32, end: u32 },
    /// The embedded store's local files could not be written or read.
    #[error("embedded state store: {0}")]
    Storage(#[from] crate::seam::storage::StorageError),
    /// A block of one of the embedded store's files failed its checksum or does not parse.
    #[error("embedded state store: corrupt file `{}` at offset {offset}: {message}", .file.display())]
    Corrupt { file: std::path::PathBuf, offset: u64, message: String },
    /// A file an embedded snapshot lists is not where the snapshot says.
    #[error("embedded state store: snapshot file `{}` is missing", .path.display())]
    MissingSnapshotFile { path: std::path::PathBuf },
    /// A file an embedded snapshot lists is not the file it was: another size or checksum.
    #[error(
        "embedded state store: snapshot file `{}` is {actual_bytes} bytes with checksum {actual_crc:#010x}, but the snapshot recorded {expected_bytes} bytes with checksum {expected_crc:#010x}",
        .path.display()
    )]
    SnapshotFileMismatch {
        path: std::path::PathBuf,
        expected_bytes: u64,
        actual_bytes: u64,
        expected_crc: u32,
        actual_crc: u32,
    },
    /// The embedded store's options are inconsistent.
    #[error("embedded state store: invalid options: {message}")]
    InvalidOptions { message: String },
    /// A flush or compaction of the embedded store ended without a result.
    #[error("embedded state store: {job} ended abnormally: {message}")]
    BackgroundJob { job: &'static str, message: String },
}
