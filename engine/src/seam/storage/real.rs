//! Storage on the local filesystem, through `std::fs`.
//!
//! Calls block the calling worker thread briefly; local-disk operations are short, and the
//! engine writes in large chunks.

use super::{Storage, StorageError, WriteFile};
use async_trait::async_trait;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The local filesystem.
#[derive(Clone, Debug, Default)]
pub struct LocalStorage;

/// Files kept open for positioned reads (`read_range_now`, which the embedded store calls for
/// every block it misses in its cache), so that a read is one `pread` and not an open, a seek, a
/// read and a close. Bounded; an entry goes when its path is created, renamed or removed
/// through this storage, so a read never sees an older file under a reused name.
#[cfg(unix)]
static OPEN_FOR_READS: std::sync::Mutex<std::collections::BTreeMap<PathBuf, std::sync::Arc<fs::File>>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The most files kept open for reads.
#[cfg(unix)]
const OPEN_FOR_READS_MAX: usize = 512;

/// Forgets the open files at `path` and (for a directory) below it.
fn forget_open(path: &Path) {
    #[cfg(unix)]
    {
        let mut open = OPEN_FOR_READS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        open.retain(|kept, _| !kept.starts_with(path));
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn error(op: &'static str, path: &Path, err: io::Error) -> StorageError {
    let path = path.to_path_buf();
    match err.kind() {
        io::ErrorKind::NotFound => StorageError::NotFound { op, path },
        io::ErrorKind::AlreadyExists => StorageError::AlreadyExists { op, path },
        io::ErrorKind::StorageFull => StorageError::NoSpace { op, path },
        _ => StorageError::Io { op, path, message: err.to_string() },
    }
}

struct LocalFile {
    path: PathBuf,
    file: io::BufWriter<fs::File>,
}

#[async_trait]
impl WriteFile for LocalFile {
    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.file.write_all(bytes).map_err(|e| error("write", &self.path, e))
    }

    async fn sync(&mut self) -> Result<(), StorageError> {
        self.file.flush().map_err(|e| error("write", &self.path, e))?;
        self.file.get_ref().sync_all().map_err(|e| error("fsync", &self.path, e))
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LocalFile {
    fn drop(&mut self) {
        // Unsynced data is allowed to be lost, but a clean drop should still reach the OS.
        let _ = self.file.flush();
    }
}

#[async_trait]
impl Storage for LocalStorage {
    async fn create(&self, path: &Path) -> Result<Box<dyn WriteFile>, StorageError> {
        forget_open(path);
        let file = fs::File::create(path).map_err(|e| error("create", path, e))?;
        Ok(Box::new(LocalFile { path: path.to_path_buf(), file: io::BufWriter::with_capacity(1 << 20, file) }))
    }

    async fn read(&self, path: &Path) -> Result<Vec<u8>, StorageError> {
        fs::read(path).map_err(|e| error("read", path, e))
    }

    async fn read_range(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        self.read_range_now(path, offset, len)
    }

    #[cfg(unix)]
    fn read_range_now(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        use std::os::unix::fs::FileExt;
        let file = {
            let mut open = OPEN_FOR_READS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match open.get(path) {
                Some(file) => file.clone(),
                None => {
                    let file = std::sync::Arc::new(fs::File::open(path).map_err(|e| error("open", path, e))?);
                    if open.len() >= OPEN_FOR_READS_MAX {
                        open.clear();
                    }
                    open.insert(path.to_path_buf(), file.clone());
                    file
                }
            }
        };
        let mut buffer = vec![0; len];
        let mut filled = 0;
        while filled < len {
            match file.read_at(&mut buffer[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(error("read", path, e)),
            }
        }
        buffer.truncate(filled);
        Ok(buffer)
    }

    #[cfg(not(unix))]
    fn read_range_now(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = fs::File::open(path).map_err(|e| error("open", path, e))?;
        file.seek(SeekFrom::Start(offset)).map_err(|e| error("seek", path, e))?;
        let mut buffer = Vec::with_capacity(len);
        file.take(len as u64).read_to_end(&mut buffer).map_err(|e| error("read", path, e))?;
        Ok(buffer)
    }

    async fn file_len(&self, path: &Path) -> Result<u64, StorageError> {
        let metadata = fs::metadata(path).map_err(|e| error("stat", path, e))?;
        if metadata.is_dir() {
            return Err(StorageError::Io { op: "read", path: path.to_path_buf(), message: "is a directory".into() });
        }
        Ok(metadata.len())
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), StorageError> {
        forget_open(from);
        forget_open(to);
        fs::rename(from, to).map_err(|e| error("rename", from, e))
    }

    async fn sync_dir(&self, dir: &Path) -> Result<(), StorageError> {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| error("fsync directory", dir, e))
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<(), StorageError> {
        fs::create_dir_all(dir).map_err(|e| error("create directory", dir, e))
    }

    async fn list(&self, dir: &Path) -> Result<Vec<String>, StorageError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| error("list", dir, e))? {
            let entry = entry.map_err(|e| error("list", dir, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    async fn exists(&self, path: &Path) -> Result<bool, StorageError> {
        match path.try_exists() {
            // A path under a regular file cannot exist.
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(false),
            other => other.map_err(|e| error("stat", path, e)),
        }
    }

    async fn is_dir(&self, path: &Path) -> Result<bool, StorageError> {
        match fs::metadata(path) {
            Ok(metadata) => Ok(metadata.is_dir()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(error("stat", path, e)),
        }
    }

    async fn remove_file(&self, path: &Path) -> Result<(), StorageError> {
        forget_open(path);
        fs::remove_file(path).map_err(|e| error("remove", path, e))
    }

    async fn remove_dir_all(&self, path: &Path) -> Result<(), StorageError> {
        forget_open(path);
        fs::remove_dir_all(path).map_err(|e| error("remove", path, e))
    }
}
