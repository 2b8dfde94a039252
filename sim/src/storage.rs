//! The simulated filesystem: an in-memory "DFS" node behind the engine's storage seam,
//! holding the checkpoint directory, the inputs and the outputs. Every node of a simulation
//! shares it through an `Arc`, and it survives task-manager crashes; it loses data only
//! when a scenario crashes the storage node itself with [`SimStorage::crash`].
//!
//! # Two views
//!
//! The storage keeps a *current* view, which reads, lists and `exists` see immediately,
//! and a *durable* view, which is what a power loss leaves. Every file is an inode with
//! `current` and `durable` contents; every directory is an inode with `current` and
//! `durable` maps from entry name to inode. The operations move state between the views
//! exactly as the storage seam's contract says:
//!
//! - `WriteFile::write_all` appends to the file's current content only.
//! - `WriteFile::sync` (fsync) copies the file's current content to its durable content.
//!   It makes no directory entry durable: a file created and fsynced in a directory that
//!   was never synced disappears in a crash.
//! - `create`, `rename`, `remove_file` and `remove_dir_all` change the current entries of
//!   the directories involved only. `create` of an existing file truncates that inode (as
//!   `O_TRUNC` does), so the truncation is itself pending until the file is fsynced.
//! - `sync_dir(d)` makes `d`'s current entries its durable entries: additions, removals and
//!   both halves of a rename. A rename from `a/` into `b/` is durable in `b/` once `b/` is
//!   synced, and gone from `a/` once `a/` is synced.
//! - `create_dir_all` is durable immediately, in both views. Real filesystems need the
//!   parent directory synced too, but the engine creates its layout directories (the job
//!   directory, `chk-<n>`, the output directory) long before their contents matter and never
//!   syncs their parents; modelling that would only report a gap the engine deliberately
//!   leaves, not a bug. A directory removal still needs its parent synced to be durable.
//! - `put_file` (scenario set-up) is durable immediately: inputs exist before the job does.
//!
//! The spec this was written against describes the namespaces as two maps from path to
//! entry. They are kept per directory instead, which is the same thing for files but lets a
//! directory rename carry its whole subtree in both views, as a real rename of a directory
//! inode does; with flat path maps a synced directory rename would leave the durable
//! subtree behind under the old name.
//!
//! # Crashes
//!
//! [`SimStorage::crash`] is a power loss of the storage node. Every directory's current
//! entries become its durable entries and every file's current content becomes its durable
//! content, except for torn writes: a file whose pending content only appends to its durable
//! content keeps, with probability 1/2, a random non-empty prefix of the pending tail (the
//! page cache had written some of it back). Torn writes never produce bytes that were not
//! written and never extend beyond what was written; a file truncated since its last fsync
//! simply returns to its durable content. Write handles opened before a crash fail
//! afterwards with "stale file handle after a crash" instead of resurrecting data.
//! Unsynced directory changes are always lost, which is the pessimistic end of what a
//! journaling filesystem allows (it may also commit some of them, in order).
//!
//! # Faults
//!
//! [`StorageFaults`], all off by default and changeable at run time with
//! [`SimStorage::set_faults`]:
//!
//! - `write_error_rate`, `fsync_error_rate`, `read_error_rate`: data writes (`write_all`),
//!   durability barriers (`sync`, `sync_dir`) and data reads (`read`, `read_range`) fail
//!   with `StorageError::Io` ("injected ... error") with that probability, and change
//!   nothing. Namespace operations (create, rename, remove, list, stat) never fail by
//!   injection: the name node is modelled as reliable, and its failure is a crash. A failed
//!   fsync persists nothing and leaves the data pending, so a later fsync may still persist
//!   it; Linux can be harsher (a failed fsync may drop the dirty pages for good), which is
//!   not modelled because the engine never retries an fsync.
//! - `capacity_bytes`: the total current size of all files that are reachable in the
//!   current view or open for writing. A write that would exceed it fails with
//!   `StorageError::NoSpace` and appends nothing; removing files frees their space at once.
//! - `latency`: every asynchronous operation first sleeps a duration drawn uniformly from
//!   `[min, max]`. This is how slow storage makes checkpoints time out.
//! - `stall`: while set, every asynchronous operation waits, polling every 10 ms, until it
//!   is cleared: an unresponsive storage node. Operations already past their wait complete.
//!
//! Randomness comes only from `engine::seam::runtime::random_u64`, so it is the seed's under
//! simulation, and none is drawn while no fault is configured and no crash tears a write:
//! a fault-free storage leaves the seed's random sequence, and so every existing run, as it
//! was. Likewise nothing sleeps unless latency or a stall is configured.
//!
//! # What recovery must survive
//!
//! A crash at any point, with unsynced data lost or torn, unsynced directory changes lost
//! and stale handles failing; injected write, fsync and read errors; running out of space;
//! and slow or stalled storage. Each of these is something a real disk or DFS does to a
//! correct program, so the engine has to turn it into a failed checkpoint, a task restart
//! or a job failure, never into lost or duplicated output. What is not injected is storage
//! breaking its own contract: synced data changing or vanishing, an fsync that reports
//! success without persisting, or a synced rename being undone. No protocol built on fsync
//! and rename can survive those, so they would be reported as failures that are not bugs.

use async_trait::async_trait;
use engine::seam::runtime;
use engine::seam::storage::{Storage, StorageError, WriteFile};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How often a stalled operation checks whether the stall is over.
const STALL_POLL: Duration = Duration::from_millis(10);

/// Storage faults to inject. The default injects nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StorageFaults {
    /// Probability that a `write_all` fails with an injected IO error.
    pub write_error_rate: f64,
    /// Probability that a `sync` or `sync_dir` fails with an injected IO error.
    pub fsync_error_rate: f64,
    /// Probability that a `read` or `read_range` fails with an injected IO error.
    pub read_error_rate: f64,
    /// Total bytes the files may hold; a write beyond it fails with `NoSpace`.
    pub capacity_bytes: Option<u64>,
    /// Every asynchronous operation first sleeps a duration drawn uniformly from `[min, max]`.
    pub latency: Option<(Duration, Duration)>,
    /// While true, every asynchronous operation waits until it is false again.
    pub stall: bool,
}

/// Counters for checkers and traces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Asynchronous operations executed, file writes and fsyncs included.
    pub operations: u64,
    pub injected_write_errors: u64,
    pub injected_fsync_errors: u64,
    pub injected_read_errors: u64,
    /// Writes refused because they would have exceeded `capacity_bytes`.
    pub no_space_errors: u64,
    /// Writes or fsyncs through a handle opened before a crash.
    pub stale_handle_errors: u64,
    pub crashes: u64,
    /// Files that kept part or all of their unsynced tail through a crash.
    pub torn_writes: u64,
}

impl StorageStats {
    /// All injected IO errors, of every kind.
    pub fn injected_errors(&self) -> u64 {
        self.injected_write_errors + self.injected_fsync_errors + self.injected_read_errors
    }
}

type InodeId = u64;

/// The root directory's inode; it always exists.
const ROOT: InodeId = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    Current,
    Durable,
}

#[derive(Default)]
struct FileInode {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Write handles open on this inode; an open file keeps its inode alive when unlinked.
    open_handles: u32,
}

impl FileInode {
    /// Whether the pending content only appends to the durable content, so that a crash
    /// can keep part of the tail.
    fn pending_tail(&self) -> Option<&[u8]> {
        (self.current.len() > self.durable.len() && self.current.starts_with(&self.durable))
            .then(|| &self.current[self.durable.len()..])
    }
}

#[derive(Default)]
struct DirInode {
    current: BTreeMap<String, InodeId>,
    durable: BTreeMap<String, InodeId>,
}

impl DirInode {
    fn entries(&self, view: View) -> &BTreeMap<String, InodeId> {
        match view {
            View::Current => &self.current,
            View::Durable => &self.durable,
        }
    }
}

enum Inode {
    File(FileInode),
    Dir(DirInode),
}

/// Everything behind the storage's one lock.
struct State {
    inodes: BTreeMap<InodeId, Inode>,
    next_inode: InodeId,
    /// How many inodes the last sweep kept: see [`State::collect_garbage`].
    live_after_sweep: usize,
    faults: StorageFaults,
    stats: StorageStats,
}

impl Default for State {
    fn default() -> Self {
        State {
            inodes: BTreeMap::from([(ROOT, Inode::Dir(DirInode::default()))]),
            next_inode: ROOT + 1,
            live_after_sweep: 1,
            faults: StorageFaults::default(),
            stats: StorageStats::default(),
        }
    }
}

impl State {
    fn allocate(&mut self, inode: Inode) -> InodeId {
        let id = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(id, inode);
        id
    }

    fn dir(&self, id: InodeId) -> Option<&DirInode> {
        match self.inodes.get(&id) {
            Some(Inode::Dir(dir)) => Some(dir),
            _ => None,
        }
    }

    fn dir_mut(&mut self, id: InodeId) -> Option<&mut DirInode> {
        match self.inodes.get_mut(&id) {
            Some(Inode::Dir(dir)) => Some(dir),
            _ => None,
        }
    }

    fn file(&self, id: InodeId) -> Option<&FileInode> {
        match self.inodes.get(&id) {
            Some(Inode::File(file)) => Some(file),
            _ => None,
        }
    }

    fn file_mut(&mut self, id: InodeId) -> Option<&mut FileInode> {
        match self.inodes.get_mut(&id) {
            Some(Inode::File(file)) => Some(file),
            _ => None,
        }
    }

    fn is_dir(&self, id: InodeId) -> bool {
        self.dir(id).is_some()
    }

    /// The inode at `names` (path components below the root) in `view`.
    fn resolve(&self, view: View, names: &[String]) -> Option<InodeId> {
        let mut id = ROOT;
        for name in names {
            id = *self.dir(id)?.entries(view).get(name)?;
        }
        Some(id)
    }

    /// The current directory that holds `names`' last component, and that component.
    /// `None` for the root, or when the parent is missing or not a directory.
    fn parent<'a>(&self, names: &'a [String]) -> Option<(InodeId, &'a String)> {
        let (name, parent_names) = names.split_last()?;
        let parent = self.resolve(View::Current, parent_names)?;
        self.is_dir(parent).then_some((parent, name))
    }

    /// Draws whether an operation with failure probability `rate` fails. Draws nothing
    /// when the rate is zero, so that a fault-free storage consumes no randomness.
    fn draw_failure(rate: f64) -> bool {
        rate > 0.0 && unit_interval(runtime::random_u64()) < rate
    }

    /// Bytes held by files reachable in the current view or open for writing.
    fn used_bytes(&self) -> u64 {
        let mut counted = BTreeSet::new();
        let mut stack = vec![ROOT];
        while let Some(id) = stack.pop() {
            match self.inodes.get(&id) {
                Some(Inode::Dir(dir)) => stack.extend(dir.current.values().copied()),
                Some(Inode::File(_)) => {
                    counted.insert(id);
                }
                None => {}
            }
        }
        let open = self.inodes.iter().filter_map(|(id, inode)| match inode {
            Inode::File(file) if file.open_handles > 0 => Some(*id),
            _ => None,
        });
        counted.extend(open);
        counted.iter().filter_map(|id| self.file(*id)).map(|file| file.current.len() as u64).sum()
    }

    /// Sweeps once the inodes have grown past twice what the last sweep kept (plus a margin),
    /// so that the sweeps' cost stays linear in the inodes allocated. Unreachable inodes left
    /// until then are invisible: nothing names them, `used_bytes` counts only reachable and
    /// open files, and a crash sweeps first.
    fn collect_garbage(&mut self) {
        if self.inodes.len() > 2 * self.live_after_sweep + 64 {
            self.sweep();
        }
    }

    /// Frees inodes that neither view reaches and no handle holds open. Directories reached
    /// in either view keep the entries of both, so nothing a crash could bring back is freed.
    fn sweep(&mut self) {
        let mut live = BTreeSet::new();
        let mut stack: Vec<InodeId> = vec![ROOT];
        stack.extend(self.inodes.iter().filter_map(|(id, inode)| match inode {
            Inode::File(file) if file.open_handles > 0 => Some(*id),
            _ => None,
        }));
        while let Some(id) = stack.pop() {
            if !live.insert(id) {
                continue;
            }
            if let Some(dir) = self.dir(id) {
                stack.extend(dir.current.values().chain(dir.durable.values()).copied());
            }
        }
        self.inodes.retain(|id, _| live.contains(id));
        self.live_after_sweep = self.inodes.len();
    }

    /// The files of `view`, sorted.
    fn files(&self, view: View) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut stack = vec![(ROOT, PathBuf::from("/"))];
        while let Some((id, path)) = stack.pop() {
            match self.inodes.get(&id) {
                Some(Inode::Dir(dir)) => {
                    stack.extend(dir.entries(view).iter().map(|(name, child)| (*child, path.join(name))))
                }
                Some(Inode::File(_)) => files.push(path),
                None => {}
            }
        }
        files.sort();
        files
    }
}

/// Maps a random `u64` to `[0, 1)` using its top 53 bits, the precision of an `f64`.
fn unit_interval(random: u64) -> f64 {
    (random >> 11) as f64 / (1u64 << 53) as f64
}

/// A duration drawn uniformly from `[min, max]`; `min` when the range is empty.
fn draw_duration(min: Duration, max: Duration) -> Duration {
    if max <= min {
        return min;
    }
    let span_nanos = u64::try_from((max - min).as_nanos()).unwrap_or(u64::MAX);
    min + Duration::from_nanos(runtime::random_u64() % span_nanos.saturating_add(1))
}

/// A path's components below the root. Paths are normalised (`.` removed, `..` applied);
/// relative paths are relative to the root.
fn components(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => names.push(part.to_string_lossy().into_owned()),
            Component::ParentDir => {
                names.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    names
}

fn io_error(op: &'static str, path: &Path, message: &str) -> StorageError {
    StorageError::Io { op, path: path.to_path_buf(), message: message.to_string() }
}

fn not_found(op: &'static str, path: &Path) -> StorageError {
    StorageError::NotFound { op, path: path.to_path_buf() }
}

/// The simulated storage node. Clones share the same storage.
#[derive(Clone)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
}

impl Default for SimStorage {
    fn default() -> Self {
        SimStorage { state: Arc::new(Mutex::new(State::default())) }
    }
}

impl SimStorage {
    pub fn new() -> Self {
        SimStorage::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("storage lock")
    }

    /// Writes a whole file, creating its parent directories, all durable at once: how a
    /// scenario puts its inputs in place before the job starts.
    ///
    /// # Panics
    ///
    /// If a file stands where a directory of the path should be, or the path names a
    /// directory: a broken scenario, not a storage fault.
    pub fn put_file(&self, path: &Path, bytes: &[u8]) {
        let names = components(path);
        let (name, parent_names) = names.split_last().expect("put_file needs a file path, not the root");
        let mut state = self.lock();
        let mut dir = ROOT;
        for part in parent_names {
            let existing = state.dir(dir).expect("walking directories").current.get(part).copied();
            dir = match existing {
                Some(child) if state.is_dir(child) => child,
                Some(_) => panic!("put_file `{}`: `{part}` is a file", path.display()),
                None => {
                    let child = state.allocate(Inode::Dir(DirInode::default()));
                    let parent = state.dir_mut(dir).expect("walking directories");
                    parent.current.insert(part.clone(), child);
                    parent.durable.insert(part.clone(), child);
                    child
                }
            };
        }
        let existing = state.dir(dir).expect("the parent").current.get(name).copied();
        assert!(!existing.is_some_and(|id| state.is_dir(id)), "put_file `{}`: it is a directory", path.display());
        let file = state.allocate(Inode::File(FileInode {
            current: bytes.to_vec(),
            durable: bytes.to_vec(),
            open_handles: 0,
        }));
        let parent = state.dir_mut(dir).expect("the parent");
        parent.current.insert(name.clone(), file);
        parent.durable.insert(name.clone(), file);
        state.collect_garbage();
    }

    /// The storage node loses power: see the module documentation.
    pub fn crash(&self) {
        let mut state = self.lock();
        state.stats.crashes += 1;
        for inode in state.inodes.values_mut() {
            match inode {
                Inode::Dir(dir) => dir.current.clone_from(&dir.durable),
                // Handles from before the crash are stale; they no longer keep inodes alive.
                Inode::File(file) => file.open_handles = 0,
            }
        }
        // Sweeping first means randomness is drawn only for files that survive the crash.
        state.sweep();
        let State { inodes, stats, .. } = &mut *state;
        for inode in inodes.values_mut() {
            let Inode::File(file) = inode else { continue };
            let tail_len = file.pending_tail().map(|tail| tail.len() as u64);
            // A coin decides whether the page cache wrote any of the tail back before the
            // power went; if it did, it wrote a prefix, since appends reach the disk in order.
            if let Some(tail_len) = tail_len
                && runtime::random_u64() % 2 == 1
            {
                let kept_len = 1 + runtime::random_u64() % tail_len;
                let kept_end = file.durable.len() + kept_len as usize;
                let kept = file.current[file.durable.len()..kept_end].to_vec();
                file.durable.extend_from_slice(&kept);
                stats.torn_writes += 1;
            }
            file.current.clone_from(&file.durable);
        }
    }

    /// Replaces the faults to inject from now on. Operations already waiting keep the
    /// latency they drew; a stall ends for waiting operations at their next poll.
    pub fn set_faults(&self, faults: StorageFaults) {
        self.lock().faults = faults;
    }

    /// The faults currently injected.
    pub fn faults(&self) -> StorageFaults {
        self.lock().faults.clone()
    }

    pub fn stats(&self) -> StorageStats {
        self.lock().stats
    }

    /// The files a crash now would leave (torn tails aside), sorted.
    pub fn durable_files(&self) -> Vec<PathBuf> {
        self.lock().files(View::Durable)
    }

    /// The files reads and lists see now, sorted.
    pub fn current_files(&self) -> Vec<PathBuf> {
        self.lock().files(View::Current)
    }

    /// What every asynchronous operation does first: wait out a stall, then sleep the
    /// configured latency. The lock is never held across these awaits.
    async fn delay(&self) {
        while self.faults().stall {
            runtime::sleep(STALL_POLL).await;
        }
        if let Some((min, max)) = self.faults().latency {
            runtime::sleep(draw_duration(min, max)).await;
        }
    }

    /// Waits as [`SimStorage::delay`] says, then locks the state for one operation.
    async fn begin(&self) -> MutexGuard<'_, State> {
        self.delay().await;
        let mut state = self.lock();
        state.stats.operations += 1;
        state
    }

    /// The current file at `path`, for reading; `op` names the operation in errors.
    fn file_id(state: &State, op: &'static str, path: &Path) -> Result<InodeId, StorageError> {
        match state.resolve(View::Current, &components(path)) {
            Some(id) if state.is_dir(id) => Err(io_error(op, path, "is a directory")),
            Some(id) => Ok(id),
            None => Err(not_found(op, path)),
        }
    }

    /// Reads a current file, failing with an injected read error at the configured rate.
    async fn read_file(&self, path: &Path, read: impl FnOnce(&[u8]) -> Vec<u8>) -> Result<Vec<u8>, StorageError> {
        let mut state = self.begin().await;
        Self::read_locked(&mut state, path, read)
    }

    /// Reads a current file under the lock, failing with an injected read error at the
    /// configured rate.
    fn read_locked(
        state: &mut State,
        path: &Path,
        read: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<Vec<u8>, StorageError> {
        let id = Self::file_id(state, "read", path)?;
        if State::draw_failure(state.faults.read_error_rate) {
            state.stats.injected_read_errors += 1;
            return Err(io_error("read", path, "injected read error"));
        }
        Ok(read(&state.file(id).expect("resolved to a file").current))
    }
}

/// A file open for writing. It names its inode, so it keeps writing to the same file
/// through renames and removals, as a POSIX file descriptor does.
struct SimFile {
    storage: SimStorage,
    path: PathBuf,
    inode: InodeId,
    /// The crash count when the file was opened; a later crash makes the handle stale.
    epoch: u64,
}

impl SimFile {
    fn check_fresh(&self, state: &mut State, op: &'static str) -> Result<(), StorageError> {
        if state.stats.crashes == self.epoch {
            return Ok(());
        }
        state.stats.stale_handle_errors += 1;
        Err(io_error(op, &self.path, "stale file handle after a crash"))
    }
}

#[async_trait]
impl WriteFile for SimFile {
    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let mut state = self.storage.begin().await;
        self.check_fresh(&mut state, "write")?;
        if State::draw_failure(state.faults.write_error_rate) {
            state.stats.injected_write_errors += 1;
            return Err(io_error("write", &self.path, "injected write error"));
        }
        if let Some(capacity_bytes) = state.faults.capacity_bytes
            && state.used_bytes().saturating_add(bytes.len() as u64) > capacity_bytes
        {
            state.stats.no_space_errors += 1;
            return Err(StorageError::NoSpace { op: "write", path: self.path.clone() });
        }
        state.file_mut(self.inode).expect("an open file's inode is live").current.extend_from_slice(bytes);
        Ok(())
    }

    async fn sync(&mut self) -> Result<(), StorageError> {
        let mut state = self.storage.begin().await;
        self.check_fresh(&mut state, "fsync")?;
        if State::draw_failure(state.faults.fsync_error_rate) {
            state.stats.injected_fsync_errors += 1;
            return Err(io_error("fsync", &self.path, "injected fsync error"));
        }
        let file = state.file_mut(self.inode).expect("an open file's inode is live");
        file.durable.clone_from(&file.current);
        Ok(())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        // A poisoned lock means a test already failed; panicking again here would abort.
        let Ok(mut state) = self.storage.state.lock() else { return };
        if state.stats.crashes != self.epoch {
            return;
        }
        let Some(file) = state.file_mut(self.inode) else { return };
        file.open_handles -= 1;
        let closed = file.open_handles == 0;
        // Only a file that was unlinked or renamed while open can have become garbage.
        if closed && state.resolve(View::Current, &components(&self.path)) != Some(self.inode) {
            state.collect_garbage();
        }
    }
}

#[async_trait]
impl Storage for SimStorage {
    async fn create(&self, path: &Path) -> Result<Box<dyn WriteFile>, StorageError> {
        let names = components(path);
        let mut state = self.begin().await;
        let Some((parent, name)) = state.parent(&names) else {
            return Err(if names.is_empty() {
                io_error("create", path, "is a directory")
            } else {
                not_found("create", path)
            });
        };
        let existing = state.dir(parent).expect("resolved to a directory").current.get(name).copied();
        let inode = match existing {
            Some(id) if state.is_dir(id) => return Err(io_error("create", path, "is a directory")),
            Some(id) => {
                let file = state.file_mut(id).expect("not a directory");
                file.current.clear();
                id
            }
            None => {
                let id = state.allocate(Inode::File(FileInode::default()));
                state.dir_mut(parent).expect("resolved to a directory").current.insert(name.clone(), id);
                id
            }
        };
        state.file_mut(inode).expect("just created").open_handles += 1;
        let epoch = state.stats.crashes;
        Ok(Box::new(SimFile { storage: self.clone(), path: path.to_path_buf(), inode, epoch }))
    }

    async fn read(&self, path: &Path) -> Result<Vec<u8>, StorageError> {
        self.read_file(path, <[u8]>::to_vec).await
    }

    async fn read_range(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        self.delay().await;
        self.read_range_now(path, offset, len)
    }

    fn read_range_now(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let mut state = self.lock();
        state.stats.operations += 1;
        Self::read_locked(&mut state, path, |data| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
            let end = start.saturating_add(len).min(data.len());
            data[start..end].to_vec()
        })
    }

    async fn file_len(&self, path: &Path) -> Result<u64, StorageError> {
        let state = self.begin().await;
        let id = Self::file_id(&state, "stat", path)?;
        Ok(state.file(id).expect("resolved to a file").current.len() as u64)
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), StorageError> {
        let (from_names, to_names) = (components(from), components(to));
        let mut state = self.begin().await;
        if from_names.is_empty() || to_names.is_empty() {
            return Err(io_error("rename", from, "cannot rename the root directory"));
        }
        let Some((to_parent, to_name)) = state.parent(&to_names) else {
            return Err(not_found("rename", to));
        };
        let source = state.parent(&from_names).and_then(|(parent, name)| {
            state.dir(parent).and_then(|dir| dir.current.get(name)).map(|id| (parent, name, *id))
        });
        let Some((from_parent, from_name, moved)) = source else {
            return Err(not_found("rename", from));
        };
        if from_names == to_names {
            return Ok(());
        }
        let moved_is_dir = state.is_dir(moved);
        if moved_is_dir && to_names.starts_with(&from_names) {
            return Err(io_error("rename", from, "cannot move a directory into itself"));
        }
        let replaced = state.dir(to_parent).expect("resolved to a directory").current.get(to_name).copied();
        if let Some(replaced) = replaced {
            match (moved_is_dir, state.dir(replaced)) {
                (false, Some(_)) => return Err(io_error("rename", to, "is a directory")),
                (true, None) => return Err(io_error("rename", to, "not a directory")),
                (true, Some(dir)) if !dir.current.is_empty() => {
                    return Err(io_error("rename", to, "directory not empty"));
                }
                _ => {}
            }
        }
        state.dir_mut(from_parent).expect("resolved to a directory").current.remove(from_name);
        state.dir_mut(to_parent).expect("resolved to a directory").current.insert(to_name.clone(), moved);
        if replaced.is_some() {
            state.collect_garbage();
        }
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> Result<(), StorageError> {
        let names = components(dir);
        let mut state = self.begin().await;
        let Some(id) = state.resolve(View::Current, &names).filter(|id| state.is_dir(*id)) else {
            return Err(not_found("fsync directory", dir));
        };
        if State::draw_failure(state.faults.fsync_error_rate) {
            state.stats.injected_fsync_errors += 1;
            return Err(io_error("fsync directory", dir, "injected fsync error"));
        }
        let entries = state.dir_mut(id).expect("resolved to a directory");
        entries.durable.clone_from(&entries.current);
        state.collect_garbage();
        Ok(())
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<(), StorageError> {
        let names = components(dir);
        let mut state = self.begin().await;
        let mut id = ROOT;
        let mut path = PathBuf::from("/");
        for name in &names {
            path.push(name);
            let existing = state.dir(id).expect("walking directories").current.get(name).copied();
            id = match existing {
                Some(child) if state.is_dir(child) => child,
                Some(_) => return Err(StorageError::AlreadyExists { op: "create directory", path }),
                None => {
                    // Directory creation is durable at once: see the module documentation.
                    let child = state.allocate(Inode::Dir(DirInode::default()));
                    let parent = state.dir_mut(id).expect("walking directories");
                    parent.current.insert(name.clone(), child);
                    parent.durable.insert(name.clone(), child);
                    child
                }
            };
        }
        Ok(())
    }

    async fn list(&self, dir: &Path) -> Result<Vec<String>, StorageError> {
        let names = components(dir);
        let state = self.begin().await;
        match state.resolve(View::Current, &names).and_then(|id| state.dir(id)) {
            // BTreeMap order: names come out sorted.
            Some(dir) => Ok(dir.current.keys().cloned().collect()),
            None => Err(not_found("list", dir)),
        }
    }

    async fn exists(&self, path: &Path) -> Result<bool, StorageError> {
        let names = components(path);
        Ok(self.begin().await.resolve(View::Current, &names).is_some())
    }

    async fn is_dir(&self, path: &Path) -> Result<bool, StorageError> {
        let names = components(path);
        let state = self.begin().await;
        Ok(state.resolve(View::Current, &names).is_some_and(|id| state.is_dir(id)))
    }

    async fn remove_file(&self, path: &Path) -> Result<(), StorageError> {
        let names = components(path);
        let mut state = self.begin().await;
        let entry = state.parent(&names).and_then(|(parent, name)| {
            state.dir(parent).and_then(|dir| dir.current.get(name)).map(|id| (parent, name, *id))
        });
        match entry {
            Some((_, _, id)) if state.is_dir(id) => Err(io_error("remove", path, "is a directory")),
            Some((parent, name, _)) => {
                state.dir_mut(parent).expect("resolved to a directory").current.remove(name);
                state.collect_garbage();
                Ok(())
            }
            None if names.is_empty() => Err(io_error("remove", path, "is a directory")),
            None => Err(not_found("remove", path)),
        }
    }

    async fn remove_dir_all(&self, path: &Path) -> Result<(), StorageError> {
        let names = components(path);
        let mut state = self.begin().await;
        if names.is_empty() {
            return Err(io_error("remove", path, "cannot remove the root directory"));
        }
        let Some((parent, name)) = state.parent(&names) else {
            return Err(not_found("remove", path));
        };
        // Unlinking the top entry removes the whole subtree from the current view; its
        // durable entries stay until the parent directory is synced.
        if state.dir_mut(parent).expect("resolved to a directory").current.remove(name).is_none() {
            return Err(not_found("remove", path));
        }
        state.collect_garbage();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::seam::storage::write_atomic;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        // Without latency or a stall the storage never awaits anything, so one poll
        // finishes every operation.
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(value) => value,
            std::task::Poll::Pending => panic!("simulated storage awaited"),
        }
    }

    /// Runs a test inside a runtime: needed wherever randomness is drawn (crashes with
    /// pending data, injected errors), since under madsim it comes from the simulation.
    fn simulate<F>(seed: u64, test: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        runtime::run(seed, test)
    }

    fn path(text: &str) -> &Path {
        Path::new(text)
    }

    /// A fresh storage holding the directory `/d`.
    async fn storage_with_dir() -> SimStorage {
        let storage = SimStorage::new();
        storage.create_dir_all(path("/d")).await.unwrap();
        storage
    }

    /// Creates `path` with `bytes`, fsynced, and syncs its directory.
    async fn write_durably(storage: &SimStorage, file: &Path, bytes: &[u8]) {
        let mut handle = storage.create(file).await.unwrap();
        handle.write_all(bytes).await.unwrap();
        handle.sync().await.unwrap();
        storage.sync_dir(file.parent().unwrap()).await.unwrap();
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

    #[test]
    fn posix_errors_for_misuse() {
        let storage = SimStorage::new();
        block_on(async {
            storage.create_dir_all(path("/a/sub")).await.unwrap();
            storage.put_file(path("/a/file"), b"x");
            let is_io = |result: Result<(), StorageError>| matches!(result, Err(StorageError::Io { .. }));
            assert!(storage.rename(path("/missing"), path("/a/x")).await.unwrap_err().is_not_found());
            assert!(storage.rename(path("/a/file"), path("/nowhere/x")).await.unwrap_err().is_not_found());
            assert!(is_io(storage.rename(path("/a"), path("/a/sub/a")).await), "a directory into itself");
            assert!(is_io(storage.rename(path("/a/file"), path("/a/sub")).await), "a file over a directory");
            assert!(is_io(storage.remove_file(path("/a/sub")).await));
            assert!(storage.create(path("/a/sub")).await.is_err());
            assert!(matches!(
                storage.create_dir_all(path("/a/file/below")).await,
                Err(StorageError::AlreadyExists { .. })
            ));
            assert!(storage.sync_dir(path("/a/file")).await.unwrap_err().is_not_found());
            assert!(storage.list(path("/missing")).await.unwrap_err().is_not_found());
            assert!(storage.file_len(path("/a/sub")).await.is_err());
            assert_eq!(storage.file_len(path("/a/file")).await.unwrap(), 1);
            assert!(storage.is_dir(path("/")).await.unwrap() && storage.exists(path("/")).await.unwrap());
            assert_eq!(storage.stats().injected_errors(), 0);
        });
    }

    #[test]
    fn fsynced_data_survives_and_unsynced_data_can_be_lost() {
        simulate(1, async {
            let mut lost_everything_pending = 0;
            for _ in 0..64 {
                let storage = storage_with_dir().await;
                let mut file = storage.create(path("/d/f")).await.unwrap();
                file.write_all(b"synced ").await.unwrap();
                file.sync().await.unwrap();
                storage.sync_dir(path("/d")).await.unwrap();
                file.write_all(b"pending").await.unwrap();
                assert_eq!(storage.read(path("/d/f")).await.unwrap(), b"synced pending", "reads see pending data");
                storage.crash();
                let after = storage.read(path("/d/f")).await.unwrap();
                assert!(after.starts_with(b"synced "), "fsynced data survives: {after:?}");
                assert!(b"synced pending".starts_with(&after), "no bytes beyond what was written: {after:?}");
                if after == b"synced " {
                    lost_everything_pending += 1;
                }
            }
            assert!(lost_everything_pending > 0, "unsynced data is lost in some crashes");

            // A truncation is pending like any write: the durable content comes back.
            let storage = storage_with_dir().await;
            write_durably(&storage, path("/d/f"), b"old content").await;
            let mut file = storage.create(path("/d/f")).await.unwrap();
            file.write_all(b"new").await.unwrap();
            storage.crash();
            assert_eq!(storage.read(path("/d/f")).await.unwrap(), b"old content");
        });
    }

    #[test]
    fn a_new_file_needs_its_directory_synced_to_survive() {
        simulate(2, async {
            let storage = storage_with_dir().await;
            let mut file = storage.create(path("/d/f")).await.unwrap();
            file.write_all(b"data").await.unwrap();
            file.sync().await.unwrap();
            assert_eq!(storage.current_files(), vec![PathBuf::from("/d/f")]);
            assert!(storage.durable_files().is_empty(), "the entry is not durable yet");
            storage.crash();
            assert!(!storage.exists(path("/d/f")).await.unwrap(), "fsync alone does not make the entry durable");

            let storage = storage_with_dir().await;
            write_durably(&storage, path("/d/f"), b"data").await;
            assert_eq!(storage.durable_files(), vec![PathBuf::from("/d/f")]);
            storage.crash();
            assert_eq!(storage.read(path("/d/f")).await.unwrap(), b"data");
            assert_eq!(storage.stats().crashes, 1);
        });
    }

    #[test]
    fn removals_and_renames_need_their_directories_synced() {
        simulate(3, async {
            let storage = SimStorage::new();
            storage.put_file(path("/d/removed"), b"r");
            storage.put_file(path("/a/x"), b"x");
            storage.remove_file(path("/d/removed")).await.unwrap();
            storage.rename(path("/a"), path("/b")).await.unwrap();
            storage.crash();
            assert_eq!(storage.current_files(), vec![PathBuf::from("/a/x"), PathBuf::from("/d/removed")]);

            storage.remove_file(path("/d/removed")).await.unwrap();
            storage.sync_dir(path("/d")).await.unwrap();
            storage.rename(path("/a"), path("/b")).await.unwrap();
            storage.sync_dir(path("/")).await.unwrap();
            storage.crash();
            assert_eq!(storage.current_files(), vec![PathBuf::from("/b/x")], "the subtree moves with its directory");
            assert_eq!(storage.read(path("/b/x")).await.unwrap(), b"x");

            // Across directories, each half of a rename is durable with its own directory.
            storage.create_dir_all(path("/c")).await.unwrap();
            storage.rename(path("/b/x"), path("/c/x")).await.unwrap();
            storage.sync_dir(path("/c")).await.unwrap();
            assert_eq!(storage.durable_files(), vec![PathBuf::from("/b/x"), PathBuf::from("/c/x")]);
            storage.sync_dir(path("/b")).await.unwrap();
            assert_eq!(storage.durable_files(), vec![PathBuf::from("/c/x")]);
        });
    }

    /// The operations of `write_atomic`, one at a time, so a test can crash between any two.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        Create,
        Write,
        Sync,
        Rename,
        SyncDir,
    }

    const WRITE_ATOMIC_STEPS: [Step; 5] = [Step::Create, Step::Write, Step::Sync, Step::Rename, Step::SyncDir];

    async fn run_steps(storage: &SimStorage, target: &Path, bytes: &[u8], steps: &[Step]) {
        let dir = target.parent().unwrap();
        let temporary = dir.join(".target.inprogress");
        let mut file = None;
        for step in steps {
            match step {
                Step::Create => file = Some(storage.create(&temporary).await.unwrap()),
                Step::Write => file.as_mut().unwrap().write_all(bytes).await.unwrap(),
                Step::Sync => file.as_mut().unwrap().sync().await.unwrap(),
                Step::Rename => {
                    file = None;
                    storage.rename(&temporary, target).await.unwrap();
                }
                Step::SyncDir => storage.sync_dir(dir).await.unwrap(),
            }
        }
    }

    #[test]
    fn write_atomic_is_all_or_nothing_across_a_crash_at_every_step() {
        simulate(4, async {
            let new: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
            let target = path("/d/target");
            for round in 0..16 {
                for done in 0..=WRITE_ATOMIC_STEPS.len() {
                    for old in [None, Some(b"old content".as_slice())] {
                        let storage = storage_with_dir().await;
                        if let Some(old) = old {
                            storage.put_file(target, old);
                        }
                        run_steps(&storage, target, &new, &WRITE_ATOMIC_STEPS[..done]).await;
                        storage.crash();
                        let after = match storage.read(target).await {
                            Ok(bytes) => Some(bytes),
                            Err(error) if error.is_not_found() => None,
                            Err(error) => panic!("{error}"),
                        };
                        let expected = if done == WRITE_ATOMIC_STEPS.len() { Some(new.as_slice()) } else { old };
                        assert_eq!(after.as_deref(), expected, "round {round}, crash after {done} steps, old {old:?}");
                    }
                }
            }

            let storage = storage_with_dir().await;
            storage.put_file(target, b"old content");
            write_atomic(&storage, target, &new).await.unwrap();
            storage.crash();
            assert_eq!(storage.read(target).await.unwrap(), new);
        });
    }

    #[test]
    fn torn_writes_keep_a_prefix_of_what_was_written() {
        simulate(5, async {
            let base = b"durable base|".to_vec();
            let pending: Vec<u8> = (0..100u8).collect();
            let (mut strict_prefixes, mut nothing_kept, mut torn_writes) = (0, 0, 0);
            for _ in 0..200 {
                let storage = storage_with_dir().await;
                let mut file = storage.create(path("/d/f")).await.unwrap();
                file.write_all(&base).await.unwrap();
                file.sync().await.unwrap();
                storage.sync_dir(path("/d")).await.unwrap();
                file.write_all(&pending[..40]).await.unwrap();
                file.write_all(&pending[40..]).await.unwrap();
                storage.crash();
                let after = storage.read(path("/d/f")).await.unwrap();
                let (kept_base, kept_tail) = after.split_at(base.len().min(after.len()));
                assert_eq!(kept_base, base, "the durable content survives");
                assert!(pending.starts_with(kept_tail), "only a prefix of the written tail: {kept_tail:?}");
                match kept_tail.len() {
                    0 => nothing_kept += 1,
                    len if len < pending.len() => strict_prefixes += 1,
                    _ => {}
                }
                torn_writes += storage.stats().torn_writes;
            }
            assert!(strict_prefixes > 0, "some crashes tear the pending tail");
            assert!(nothing_kept > 0, "some crashes lose the whole pending tail");
            assert_eq!(torn_writes, 200 - nothing_kept, "every kept tail is counted");
        });
    }

    #[test]
    fn a_write_handle_from_before_a_crash_is_stale() {
        simulate(6, async {
            let storage = storage_with_dir().await;
            write_durably(&storage, path("/d/f"), b"before").await;
            let mut file = storage.create(path("/d/f")).await.unwrap();
            file.write_all(b"lost").await.unwrap();
            storage.crash();
            for result in [file.write_all(b"resurrected").await, file.sync().await] {
                match result {
                    Err(StorageError::Io { message, .. }) => assert!(message.contains("stale file handle")),
                    other => panic!("a stale handle must fail: {other:?}"),
                }
            }
            drop(file);
            assert_eq!(storage.read(path("/d/f")).await.unwrap(), b"before");
            assert_eq!(storage.stats().stale_handle_errors, 2);

            let mut fresh = storage.create(path("/d/f")).await.unwrap();
            fresh.write_all(b"after").await.unwrap();
            assert_eq!(storage.read(path("/d/f")).await.unwrap(), b"after");
        });
    }

    fn assert_injected(result: Result<(), StorageError>) -> bool {
        match result {
            Ok(()) => false,
            Err(StorageError::Io { message, .. }) if message.starts_with("injected") => true,
            Err(other) => panic!("not an injected error: {other}"),
        }
    }

    #[test]
    fn injected_errors_happen_at_the_configured_rate() {
        simulate(7, async {
            const OPERATIONS: u64 = 1000;
            let storage = storage_with_dir().await;
            write_durably(&storage, path("/d/read"), b"readable").await;
            storage.set_faults(StorageFaults {
                write_error_rate: 0.5,
                fsync_error_rate: 0.5,
                read_error_rate: 0.5,
                ..StorageFaults::default()
            });
            let mut file = storage.create(path("/d/f")).await.unwrap();
            let (mut write_errors, mut fsync_errors, mut read_errors) = (0, 0, 0);
            for _ in 0..OPERATIONS {
                write_errors += u64::from(assert_injected(file.write_all(b"x").await));
                fsync_errors += u64::from(assert_injected(file.sync().await));
                read_errors += u64::from(assert_injected(storage.read(path("/d/read")).await.map(drop)));
            }
            for errors in [write_errors, fsync_errors, read_errors] {
                assert!((350..=650).contains(&errors), "{errors} errors in {OPERATIONS} operations at rate 0.5");
            }
            assert_eq!(
                storage.file_len(path("/d/f")).await.unwrap(),
                OPERATIONS - write_errors,
                "failed writes append nothing"
            );
            let stats = storage.stats();
            assert_eq!(
                (stats.injected_write_errors, stats.injected_fsync_errors, stats.injected_read_errors),
                (write_errors, fsync_errors, read_errors)
            );

            storage.set_faults(StorageFaults::default());
            file.write_all(b"y").await.unwrap();
            file.sync().await.unwrap();
            assert_eq!(storage.stats().injected_errors(), write_errors + fsync_errors + read_errors);
        });
    }

    #[test]
    fn a_full_storage_refuses_writes_until_space_is_freed() {
        let storage = SimStorage::new();
        block_on(async {
            storage.create_dir_all(path("/d")).await.unwrap();
            storage.set_faults(StorageFaults { capacity_bytes: Some(10), ..StorageFaults::default() });
            let mut first = storage.create(path("/d/first")).await.unwrap();
            first.write_all(b"123456").await.unwrap();
            drop(first);
            let mut second = storage.create(path("/d/second")).await.unwrap();
            second.write_all(b"7890").await.unwrap();
            match second.write_all(b"!").await {
                Err(StorageError::NoSpace { .. }) => {}
                other => panic!("a write beyond the capacity must fail with NoSpace: {other:?}"),
            }
            assert_eq!(storage.read(path("/d/second")).await.unwrap(), b"7890", "nothing was appended");
            storage.remove_file(path("/d/first")).await.unwrap();
            second.write_all(b"!").await.unwrap();
            assert_eq!(storage.read(path("/d/second")).await.unwrap(), b"7890!");
            assert_eq!(storage.stats().no_space_errors, 1);
        });
    }

    #[test]
    fn latency_delays_every_operation() {
        simulate(8, async {
            let storage = storage_with_dir().await;
            let latency = Duration::from_millis(100);
            storage.set_faults(StorageFaults { latency: Some((latency, latency)), ..StorageFaults::default() });
            let start = runtime::now();
            assert!(storage.exists(path("/d")).await.unwrap());
            assert!(start.elapsed() >= latency, "one operation took {:?}", start.elapsed());

            let start = runtime::now();
            let mut file = storage.create(path("/d/f")).await.unwrap();
            file.write_all(b"slow").await.unwrap();
            file.sync().await.unwrap();
            assert!(start.elapsed() >= 3 * latency, "three operations took {:?}", start.elapsed());
        });
    }

    #[test]
    fn a_stall_blocks_operations_until_it_ends() {
        simulate(9, async {
            let storage = storage_with_dir().await;
            storage.set_faults(StorageFaults { stall: true, ..StorageFaults::default() });
            let writer = storage.clone();
            let task = runtime::spawn(async move {
                let mut file = writer.create(path("/d/f")).await.unwrap();
                file.write_all(b"eventually").await.unwrap();
            });
            runtime::sleep(Duration::from_millis(500)).await;
            assert!(storage.current_files().is_empty(), "a stalled operation does not run");
            storage.set_faults(StorageFaults::default());
            task.await.unwrap();
            assert_eq!(storage.read(path("/d/f")).await.unwrap(), b"eventually");
        });
    }

    #[test]
    fn unlinked_open_files_are_kept_until_closed() {
        let storage = SimStorage::new();
        block_on(async {
            storage.create_dir_all(path("/d")).await.unwrap();
            let mut file = storage.create(path("/d/f")).await.unwrap();
            storage.remove_file(path("/d/f")).await.unwrap();
            file.write_all(b"into the void").await.unwrap();
            file.sync().await.unwrap();
            // Sweeps are amortized: force one on each side of the close.
            storage.lock().sweep();
            let inodes = storage.lock().inodes.len();
            assert_eq!(inodes, 3, "the root, `/d` and the open, unlinked file");
            drop(file);
            storage.lock().sweep();
            assert_eq!(storage.lock().inodes.len(), inodes - 1, "the closed, unlinked inode is freed");
            assert!(storage.current_files().is_empty());
        });
    }

    #[test]
    fn garbage_is_collected_as_it_accumulates() {
        let storage = SimStorage::new();
        block_on(async {
            storage.create_dir_all(path("/d")).await.unwrap();
            storage.put_file(path("/d/kept"), b"kept");
            for round in 0..1000 {
                let mut file = storage.create(path("/d/f")).await.unwrap();
                file.write_all(b"garbage soon").await.unwrap();
                drop(file);
                storage.remove_file(path("/d/f")).await.unwrap();
                storage.sync_dir(path("/d")).await.unwrap();
                let inodes = storage.lock().inodes.len();
                assert!(inodes <= 2 * 3 + 64 + 1, "round {round}: {inodes} inodes for 3 live ones");
            }
            assert_eq!(storage.current_files(), vec![PathBuf::from("/d/kept")]);
        });
    }
}
