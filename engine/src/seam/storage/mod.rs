//! The storage seam: every file the engine reads or writes (inputs, outputs, checkpoints)
//! goes through [`Storage`].
//!
//! The operations are the ones crash consistency is made of: create, write, fsync, atomic
//! rename, directory fsync, list, read, remove. A real implementation lives in `real.rs`;
//! the simulated one, with crash and fault semantics, lives in the `sim` crate. Engine code
//! must never assume a write is durable before `sync`, nor a rename before `sync_dir`.

mod real;

pub use real::LocalStorage;

use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Shared handle to the storage a job uses.
pub type StorageRef = Arc<dyn Storage>;

/// A storage operation failed. Every variant names the operation and the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("cannot {op} `{path}`: no such file or directory")]
    NotFound { op: &'static str, path: PathBuf },
    #[error("cannot {op} `{path}`: it already exists")]
    AlreadyExists { op: &'static str, path: PathBuf },
    #[error("cannot {op} `{path}`: no space left on device")]
    NoSpace { op: &'static str, path: PathBuf },
    #[error("cannot {op} `{path}`: {message}")]
    Io { op: &'static str, path: PathBuf, message: String },
    /// The operation spans a crash of the storage: a write or fsync through a handle opened
    /// before it, or a directory fsync covering changes made before it. Whatever was not
    /// durable before the crash may or may not have survived it.
    #[error("cannot {op} `{path}`: stale after a storage crash (unsynced changes made before it may be lost)")]
    Stale { op: &'static str, path: PathBuf },
}

impl StorageError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    pub fn is_stale(&self) -> bool {
        matches!(self, StorageError::Stale { .. })
    }
}

/// A file being written. Writes are not durable until [`WriteFile::sync`] returns.
#[async_trait]
pub trait WriteFile: Send {
    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), StorageError>;
    /// Makes everything written so far durable (fsync).
    async fn sync(&mut self) -> Result<(), StorageError>;
    /// The path this file was created at.
    fn path(&self) -> &Path;
}

/// A filesystem, real or simulated.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Creates (or truncates) a file for writing. Its directory must exist. The new
    /// directory entry is durable only after `sync_dir` of its directory.
    async fn create(&self, path: &Path) -> Result<Box<dyn WriteFile>, StorageError>;
    /// Reads a whole file.
    async fn read(&self, path: &Path) -> Result<Vec<u8>, StorageError>;
    /// Reads up to `len` bytes at `offset`; fewer at the end of the file.
    async fn read_range(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError>;
    /// As `read_range`, without suspending: a positioned read of a local file from
    /// synchronous code (the embedded state backend reading a block on a cache miss while
    /// it processes a record), as RocksDB's `pread` is. It never waits out injected latency
    /// or a stall, but fails as `read_range` would.
    fn read_range_now(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError>;
    /// The length of a file in bytes.
    async fn file_len(&self, path: &Path) -> Result<u64, StorageError>;
    /// Atomically renames `from` to `to`, replacing `to`. Durable after `sync_dir`.
    async fn rename(&self, from: &Path, to: &Path) -> Result<(), StorageError>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    async fn sync_dir(&self, dir: &Path) -> Result<(), StorageError>;
    /// Creates a directory and its missing parents.
    async fn create_dir_all(&self, dir: &Path) -> Result<(), StorageError>;
    /// The names of a directory's entries, sorted.
    async fn list(&self, dir: &Path) -> Result<Vec<String>, StorageError>;
    /// Whether a file or directory exists.
    async fn exists(&self, path: &Path) -> Result<bool, StorageError>;
    /// Whether `path` is a directory.
    async fn is_dir(&self, path: &Path) -> Result<bool, StorageError>;
    /// Removes a file.
    async fn remove_file(&self, path: &Path) -> Result<(), StorageError>;
    /// Removes a directory and everything below it.
    async fn remove_dir_all(&self, path: &Path) -> Result<(), StorageError>;
}

/// Bytes a streamed copy reads at a time: what it holds in memory, whatever the file's size.
pub const COPY_CHUNK_BYTES: usize = 1 << 20;

/// Writes `bytes` to `path` atomically and durably: a temporary file beside it, fsync,
/// rename over `path`, fsync of the directory. After a crash, `path` holds either the old
/// content or all of `bytes`, never a mix.
pub async fn write_atomic(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let temporary = temporary_beside(path);
    let mut file = storage.create(&temporary).await?;
    file.write_all(bytes).await?;
    file.sync().await?;
    drop(file);
    install_atomic(storage, &temporary, path).await
}

/// As [`write_atomic`], the content being the files `sources` one after another, copied a
/// chunk at a time, so that memory holds one chunk however large they are.
pub async fn concat_atomic(storage: &dyn Storage, path: &Path, sources: &[PathBuf]) -> Result<(), StorageError> {
    let temporary = temporary_beside(path);
    let mut file = storage.create(&temporary).await?;
    for source in sources {
        copy_into(storage, source, file.as_mut(), |_| {}).await?;
    }
    file.sync().await?;
    drop(file);
    install_atomic(storage, &temporary, path).await
}

/// Appends the file at `source` to `out` a chunk at a time, showing each chunk to
/// `inspect` (to checksum it on the way); returns the bytes copied.
pub async fn copy_into(
    storage: &dyn Storage,
    source: &Path,
    out: &mut dyn WriteFile,
    mut inspect: impl FnMut(&[u8]) + Send,
) -> Result<u64, StorageError> {
    let len = storage.file_len(source).await?;
    let mut offset = 0;
    while offset < len {
        let want = usize::try_from(len - offset).map_or(COPY_CHUNK_BYTES, |left| left.min(COPY_CHUNK_BYTES));
        let chunk = storage.read_range(source, offset, want).await?;
        if chunk.is_empty() {
            // Shorter than its length said a moment ago: changed under the copy.
            return Err(StorageError::Io {
                op: "copy",
                path: source.to_path_buf(),
                message: format!("ended at {offset} of {len} bytes"),
            });
        }
        inspect(&chunk);
        out.write_all(&chunk).await?;
        offset += chunk.len() as u64;
    }
    Ok(offset)
}

/// Where [`write_atomic`] writes before its rename.
fn temporary_beside(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(format!(".{name}.inprogress"))
}

/// Renames the synced `temporary` over `path` and makes the rename durable.
async fn install_atomic(storage: &dyn Storage, temporary: &Path, path: &Path) -> Result<(), StorageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    storage.rename(temporary, path).await?;
    storage.sync_dir(dir).await?;
    // A storage crash between the rename and the fsync may lose the rename while the fsync, issued after the
    // crash, succeeds: the write is done only if the file is there now.
    if !storage.exists(path).await? {
        return Err(StorageError::Stale { op: "write", path: path.to_path_buf() });
    }
    Ok(())
}
