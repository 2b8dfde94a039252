//! The simulated filesystem: an in-memory tree of directories and files behind the engine's
//! storage seam, shared by every node of a simulation through an `Arc`.
//!
//! This is the fault-free base: operations succeed or fail exactly as a POSIX filesystem
//! would (missing parents, missing files, renames over existing files). Crash semantics
//! (pending versus durable state per node), torn writes, seeded IO errors, out-of-space and
//! latency are layered on top of it by the fault-injection work; until then nothing here
//! pretends to model them.

use async_trait::async_trait;
use engine::seam::storage::{Storage, StorageError, WriteFile};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
enum Entry {
    Dir,
    File(Arc<Mutex<Vec<u8>>>),
}

/// An in-memory filesystem. Paths are normalised (`.` removed); relative paths are
/// relative to the root.
#[derive(Clone, Default)]
pub struct SimStorage {
    entries: Arc<Mutex<BTreeMap<PathBuf, Entry>>>,
}

fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

impl SimStorage {
    pub fn new() -> Self {
        SimStorage::default()
    }

    /// Writes a whole file, creating its parent directories: how a scenario puts its inputs
    /// in place before the job starts.
    pub fn put_file(&self, path: &Path, bytes: &[u8]) {
        let path = normalise(path);
        let mut entries = self.entries.lock().expect("storage lock");
        let mut dir = path.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            entries.entry(d.clone()).or_insert(Entry::Dir);
            dir = d.parent().map(Path::to_path_buf);
        }
        entries.insert(path, Entry::File(Arc::new(Mutex::new(bytes.to_vec()))));
    }

    fn parent_is_dir(entries: &BTreeMap<PathBuf, Entry>, path: &Path) -> bool {
        match path.parent() {
            None => true,
            Some(parent) if parent == Path::new("/") => true,
            Some(parent) => matches!(entries.get(parent), Some(Entry::Dir)),
        }
    }

    fn file(&self, op: &'static str, path: &Path) -> Result<Arc<Mutex<Vec<u8>>>, StorageError> {
        let entries = self.entries.lock().expect("storage lock");
        match entries.get(&normalise(path)) {
            Some(Entry::File(data)) => Ok(data.clone()),
            Some(Entry::Dir) => {
                Err(StorageError::Io { op, path: path.to_path_buf(), message: "is a directory".into() })
            }
            None => Err(StorageError::NotFound { op, path: path.to_path_buf() }),
        }
    }
}

struct SimFile {
    path: PathBuf,
    data: Arc<Mutex<Vec<u8>>>,
}

#[async_trait]
impl WriteFile for SimFile {
    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.data.lock().expect("file lock").extend_from_slice(bytes);
        Ok(())
    }

    async fn sync(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Storage for SimStorage {
    async fn create(&self, path: &Path) -> Result<Box<dyn WriteFile>, StorageError> {
        let normal = normalise(path);
        let mut entries = self.entries.lock().expect("storage lock");
        if !Self::parent_is_dir(&entries, &normal) {
            return Err(StorageError::NotFound { op: "create", path: path.to_path_buf() });
        }
        if matches!(entries.get(&normal), Some(Entry::Dir)) {
            return Err(StorageError::Io { op: "create", path: path.to_path_buf(), message: "is a directory".into() });
        }
        let data = Arc::new(Mutex::new(Vec::new()));
        entries.insert(normal, Entry::File(data.clone()));
        Ok(Box::new(SimFile { path: path.to_path_buf(), data }))
    }

    async fn read(&self, path: &Path) -> Result<Vec<u8>, StorageError> {
        Ok(self.file("read", path)?.lock().expect("file lock").clone())
    }

    async fn read_range(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let data = self.file("read", path)?;
        let data = data.lock().expect("file lock");
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(len).min(data.len());
        Ok(data[start..end].to_vec())
    }

    async fn file_len(&self, path: &Path) -> Result<u64, StorageError> {
        Ok(self.file("stat", path)?.lock().expect("file lock").len() as u64)
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), StorageError> {
        let (from_n, to_n) = (normalise(from), normalise(to));
        let mut entries = self.entries.lock().expect("storage lock");
        if !Self::parent_is_dir(&entries, &to_n) {
            return Err(StorageError::NotFound { op: "rename", path: to.to_path_buf() });
        }
        let Some(entry) = entries.remove(&from_n) else {
            return Err(StorageError::NotFound { op: "rename", path: from.to_path_buf() });
        };
        if matches!(entry, Entry::Dir) {
            // Move the subtree along with the directory.
            let below: Vec<PathBuf> = entries.keys().filter(|p| p.starts_with(&from_n)).cloned().collect();
            for old in below {
                let moved = entries.remove(&old).expect("listed");
                let suffix = old.strip_prefix(&from_n).expect("below").to_path_buf();
                entries.insert(to_n.join(suffix), moved);
            }
        }
        entries.insert(to_n, entry);
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> Result<(), StorageError> {
        let normal = normalise(dir);
        let entries = self.entries.lock().expect("storage lock");
        if normal != Path::new("/") && !matches!(entries.get(&normal), Some(Entry::Dir)) {
            return Err(StorageError::NotFound { op: "fsync directory", path: dir.to_path_buf() });
        }
        Ok(())
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<(), StorageError> {
        let mut entries = self.entries.lock().expect("storage lock");
        let mut current = PathBuf::from("/");
        for component in normalise(dir).components().skip(1) {
            current.push(component);
            match entries.get(&current) {
                Some(Entry::File(_)) => {
                    return Err(StorageError::AlreadyExists { op: "create directory", path: current });
                }
                Some(Entry::Dir) => {}
                None => {
                    entries.insert(current.clone(), Entry::Dir);
                }
            }
        }
        Ok(())
    }

    async fn list(&self, dir: &Path) -> Result<Vec<String>, StorageError> {
        let normal = normalise(dir);
        let entries = self.entries.lock().expect("storage lock");
        if normal != Path::new("/") && !matches!(entries.get(&normal), Some(Entry::Dir)) {
            return Err(StorageError::NotFound { op: "list", path: dir.to_path_buf() });
        }
        // BTreeMap order: names come out sorted.
        Ok(entries
            .keys()
            .filter(|p| p.parent() == Some(normal.as_path()))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    async fn exists(&self, path: &Path) -> Result<bool, StorageError> {
        let normal = normalise(path);
        Ok(normal == Path::new("/") || self.entries.lock().expect("storage lock").contains_key(&normal))
    }

    async fn is_dir(&self, path: &Path) -> Result<bool, StorageError> {
        let normal = normalise(path);
        Ok(normal == Path::new("/")
            || matches!(self.entries.lock().expect("storage lock").get(&normal), Some(Entry::Dir)))
    }

    async fn remove_file(&self, path: &Path) -> Result<(), StorageError> {
        let normal = normalise(path);
        let mut entries = self.entries.lock().expect("storage lock");
        match entries.get(&normal) {
            Some(Entry::File(_)) => {
                entries.remove(&normal);
                Ok(())
            }
            Some(Entry::Dir) => {
                Err(StorageError::Io { op: "remove", path: path.to_path_buf(), message: "is a directory".into() })
            }
            None => Err(StorageError::NotFound { op: "remove", path: path.to_path_buf() }),
        }
    }

    async fn remove_dir_all(&self, path: &Path) -> Result<(), StorageError> {
        let normal = normalise(path);
        let mut entries = self.entries.lock().expect("storage lock");
        if !entries.contains_key(&normal) {
            return Err(StorageError::NotFound { op: "remove", path: path.to_path_buf() });
        }
        entries.retain(|p, _| !p.starts_with(&normal));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        // The storage never awaits anything, so one poll finishes every operation.
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(value) => value,
            std::task::Poll::Pending => panic!("simulated storage awaited"),
        }
    }

    #[test]
    fn files_and_directories_behave_like_posix() {
        let storage = SimStorage::new();
        block_on(async {
            assert!(storage.create(Path::new("/a/b/file")).await.is_err(), "parent must exist");
            storage.create_dir_all(Path::new("/a/b")).await.unwrap();
            let mut file = storage.create(Path::new("/a/b/file")).await.unwrap();
            file.write_all(b"hello ").await.unwrap();
            file.write_all(b"world").await.unwrap();
            drop(file);
            assert_eq!(storage.read(Path::new("/a/b/file")).await.unwrap(), b"hello world");
            assert_eq!(storage.read_range(Path::new("/a/b/file"), 6, 100).await.unwrap(), b"world");
            storage.rename(Path::new("/a/b/file"), Path::new("/a/moved")).await.unwrap();
            assert_eq!(storage.list(Path::new("/a")).await.unwrap(), vec!["b", "moved"]);
            assert!(storage.read(Path::new("/a/b/file")).await.unwrap_err().is_not_found());
            storage.remove_dir_all(Path::new("/a")).await.unwrap();
            assert!(!storage.exists(Path::new("/a/moved")).await.unwrap());
        });
    }
}
