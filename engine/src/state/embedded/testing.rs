//! Test fixtures: an in-memory storage (with byte-level damage for corruption tests) and
//! the backends under test, so that every keyed-state test runs against both.

use super::{EmbeddedKeyedBackend, EmbeddedOptions};
use crate::keygroup::KeyGroupRange;
use crate::seam::runtime;
use crate::seam::storage::{Storage, StorageError, StorageRef, WriteFile};
use crate::state::backend::KeyedStateBackend;
use crate::state::heap::HeapKeyedBackend;
use crate::state::snapshot::KeyGroupSnapshot;
use crate::state::{Key, StateError};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct MemState {
    files: BTreeMap<PathBuf, Vec<u8>>,
    dirs: BTreeSet<PathBuf>,
    bytes_written: u64,
    fail_writes: bool,
    /// Files whose whole content was fsynced since their last write.
    synced: BTreeSet<PathBuf>,
    /// Files whose directory entry was made durable by a `sync_dir` since they were created.
    entries_synced: BTreeSet<PathBuf>,
}

/// Files in memory: the current contents only (the store never relies on durability, and
/// the simulated storage tests the rest).
#[derive(Clone, Default)]
pub struct MemStorage {
    state: Arc<Mutex<MemState>>,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    pub fn shared(&self) -> StorageRef {
        Arc::new(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().expect("never poisoned")
    }

    /// Flips bits of the byte at `offset` of `path`.
    pub fn damage(&self, path: &Path, offset: u64) {
        let mut state = self.lock();
        let file = state.files.get_mut(path).expect("the damaged file exists");
        file[offset as usize] ^= 0x5a;
    }

    pub fn file(&self, path: &Path) -> Option<Vec<u8>> {
        self.lock().files.get(path).cloned()
    }

    /// Every file under `dir`, sorted.
    pub fn files_under(&self, dir: &Path) -> Vec<PathBuf> {
        self.lock().files.keys().filter(|p| p.starts_with(dir)).cloned().collect()
    }

    pub fn bytes_written(&self) -> u64 {
        self.lock().bytes_written
    }

    pub fn set_fail_writes(&self, fail: bool) {
        self.lock().fail_writes = fail;
    }

    /// Whether `path`'s content and directory entry were both made durable.
    pub fn is_durable(&self, path: &Path) -> bool {
        let state = self.lock();
        state.synced.contains(path) && state.entries_synced.contains(path)
    }
}

fn not_found(op: &'static str, path: &Path) -> StorageError {
    StorageError::NotFound { op, path: path.to_path_buf() }
}

struct MemFile {
    state: Arc<Mutex<MemState>>,
    path: PathBuf,
}

#[async_trait]
impl WriteFile for MemFile {
    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let mut state = self.state.lock().expect("never poisoned");
        if state.fail_writes {
            return Err(StorageError::Io { op: "write", path: self.path.clone(), message: "injected".into() });
        }
        state.bytes_written += bytes.len() as u64;
        let file = state.files.get_mut(&self.path).ok_or_else(|| not_found("write", &self.path))?;
        file.extend_from_slice(bytes);
        state.synced.remove(&self.path);
        Ok(())
    }

    async fn sync(&mut self) -> Result<(), StorageError> {
        self.state.lock().expect("never poisoned").synced.insert(self.path.clone());
        Ok(())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

#[async_trait]
impl Storage for MemStorage {
    async fn create(&self, path: &Path) -> Result<Box<dyn WriteFile>, StorageError> {
        let mut state = self.lock();
        if !state.dirs.contains(&parent(path)) {
            return Err(not_found("create", path));
        }
        state.files.insert(path.to_path_buf(), Vec::new());
        state.synced.remove(path);
        state.entries_synced.remove(path);
        Ok(Box::new(MemFile { state: self.state.clone(), path: path.to_path_buf() }))
    }

    async fn read(&self, path: &Path) -> Result<Vec<u8>, StorageError> {
        self.lock().files.get(path).cloned().ok_or_else(|| not_found("read", path))
    }

    async fn read_range(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        self.read_range_now(path, offset, len)
    }

    fn read_range_now(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let state = self.lock();
        let data = state.files.get(path).ok_or_else(|| not_found("read", path))?;
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(len).min(data.len());
        Ok(data[start..end].to_vec())
    }

    async fn file_len(&self, path: &Path) -> Result<u64, StorageError> {
        self.lock().files.get(path).map(|f| f.len() as u64).ok_or_else(|| not_found("stat", path))
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), StorageError> {
        let mut state = self.lock();
        let data = state.files.remove(from).ok_or_else(|| not_found("rename", from))?;
        state.files.insert(to.to_path_buf(), data);
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> Result<(), StorageError> {
        let mut state = self.lock();
        if !state.dirs.contains(dir) {
            return Err(not_found("fsync directory", dir));
        }
        let entries: Vec<PathBuf> = state.files.keys().filter(|p| p.parent() == Some(dir)).cloned().collect();
        state.entries_synced.extend(entries);
        Ok(())
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<(), StorageError> {
        let mut state = self.lock();
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    async fn list(&self, dir: &Path) -> Result<Vec<String>, StorageError> {
        let state = self.lock();
        if !state.dirs.contains(dir) {
            return Err(not_found("list", dir));
        }
        let children = state.files.keys().chain(state.dirs.iter()).filter(|p| p.parent() == Some(dir));
        let names: BTreeSet<String> =
            children.filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
        Ok(names.into_iter().collect())
    }

    async fn exists(&self, path: &Path) -> Result<bool, StorageError> {
        let state = self.lock();
        Ok(state.files.contains_key(path) || state.dirs.contains(path))
    }

    async fn is_dir(&self, path: &Path) -> Result<bool, StorageError> {
        Ok(self.lock().dirs.contains(path))
    }

    async fn remove_file(&self, path: &Path) -> Result<(), StorageError> {
        self.lock().files.remove(path).map(|_| ()).ok_or_else(|| not_found("remove", path))
    }

    async fn remove_dir_all(&self, path: &Path) -> Result<(), StorageError> {
        let mut state = self.lock();
        state.files.retain(|p, _| !p.starts_with(path));
        state.dirs.retain(|p| !p.starts_with(path));
        Ok(())
    }
}

/// Small sizes, so that a test's few kilobytes of state go through every part of the
/// store: several memtables, blocks, files, levels and compactions.
pub fn small_options() -> EmbeddedOptions {
    EmbeddedOptions {
        memory_budget_bytes: 16 * 1024,
        memtable_share_percent: 50,
        block_bytes: 256,
        bloom_bits_per_key: 10,
        target_file_bytes: 2 * 1024,
        level1_target_bytes: 8 * 1024,
        level_size_ratio: 4,
        level0_compaction_trigger_files: 2,
        level0_stop_files: 6,
        max_immutable_memtables: 3,
    }
}

/// The work directory tests give a store.
pub fn work_dir() -> PathBuf {
    PathBuf::from("/local/tm-0/op-1/subtask-0")
}

/// Runs `future` to completion in a fresh runtime (simulated under simulation).
pub fn block_on<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    runtime::run(0, future)
}

/// A keyed state backend under test: how to make one, and how to let it do its IO.
pub trait BackendUnderTest<K: Key>: KeyedStateBackend<K> + Sized {
    fn open_for_test(range: KeyGroupRange, restored: &[KeyGroupSnapshot]) -> Result<Self, StateError>;

    /// Lets the backend do all its due IO (flushes, compactions); nothing for the heap.
    fn settled(self) -> Self {
        self
    }
}

impl<K: Key> BackendUnderTest<K> for HeapKeyedBackend<K> {
    fn open_for_test(range: KeyGroupRange, restored: &[KeyGroupSnapshot]) -> Result<Self, StateError> {
        HeapKeyedBackend::new(range, restored)
    }
}

impl<K: Key> BackendUnderTest<K> for EmbeddedKeyedBackend<K> {
    fn open_for_test(range: KeyGroupRange, restored: &[KeyGroupSnapshot]) -> Result<Self, StateError> {
        EmbeddedKeyedBackend::open(MemStorage::new().shared(), work_dir(), range, small_options(), restored)
    }

    fn settled(mut self) -> Self {
        block_on(async move {
            self.settle().await.expect("maintenance succeeds on memory storage");
            self
        })
    }
}
