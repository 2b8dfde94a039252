//! The store: an LSM tree of one keyed operator subtask, in its own directory on the task
//! manager's local disk.
//!
//! Writes go to the active memtable; reads merge the memtables, level 0 and the sorted
//! levels, newest first, and hide what point and range tombstones delete. Both are
//! synchronous, because they serve record processing: a block not in the cache is read
//! with `read_range_now`. Everything that writes files (flushes, compactions, removing
//! dead files) happens in [`Store::maintain`], which the operator awaits between batches:
//! it installs finished background jobs, starts new ones, and stalls the operator when the
//! memtables are over their budget or level 0 is too deep, until a job brings them back.
//!
//! The store never relies on its directory surviving: after a crash or restart it is
//! rebuilt from the restored checkpoint, in a directory of a new incarnation (`files.rs`).

use super::cache::{BlockCache, CacheStats};
use super::entry::{Found, Seq, Value};
use super::files::{Graveyard, STORE_DIR_PREFIX, store_dir};
use super::frozen::FrozenStore;
use super::job::{self, JobContext, JobOutput};
use super::memtable::Memtable;
use super::merge::{Cursor, MergeCursor};
use super::options::EmbeddedOptions;
use super::picker::{self, CompactionPlan};
use super::table::TableOptions;
use super::tombstone::{RangeTombstone, covers, newest_seq};
use super::version::{LEVELS, LiveFile, Version};
use crate::seam::runtime::{self, JoinHandle};
use crate::seam::storage::StorageRef;
use crate::state::StateError;
use crate::state::embedded::bloom::key_hash;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Dead files removed per maintenance call, so that one call's work stays bounded.
const REMOVALS_PER_CALL: usize = 16;

/// What the store has done, for tests and figures.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub flushes: u64,
    pub compactions: u64,
    pub bytes_flushed: u64,
    pub bytes_compacted: u64,
    pub bytes_compaction_read: u64,
    pub files_removed: u64,
    /// Times maintenance waited for a job because the memtables or level 0 were over their
    /// bound (RocksDB's write stall).
    pub stalls: u64,
}

impl StoreStats {
    /// Bytes written to sorted files per byte flushed.
    pub fn write_amplification(&self) -> f64 {
        if self.bytes_flushed == 0 {
            return 1.0;
        }
        (self.bytes_flushed + self.bytes_compacted) as f64 / self.bytes_flushed as f64
    }
}

/// Where a snapshot's own flush of the frozen memtables stands.
pub(super) enum SnapshotFlushState {
    /// The snapshot's asynchronous part has not written them yet.
    Pending,
    /// Written: the store may adopt the files as the flush of those memtables.
    Done(JobOutput),
    /// The snapshot will not write them (a savepoint encodes instead, or the upload failed).
    Abandoned,
}

/// The frozen memtables a snapshot's asynchronous part flushes into a file of the store's own
/// directory: the store adopts that file as their flush (unless it flushed them itself
/// meanwhile), so that the next incremental checkpoint refers to it instead of uploading the
/// same entries again.
pub struct SnapshotFlush {
    memtables: Vec<Arc<Memtable>>,
    state: std::sync::Mutex<SnapshotFlushState>,
}

impl SnapshotFlush {
    fn lock(&self) -> std::sync::MutexGuard<'_, SnapshotFlushState> {
        self.state.lock().expect("the snapshot flush lock is never poisoned")
    }

    /// The snapshot wrote the memtables into `output`.
    pub(super) fn done(&self, output: JobOutput) {
        *self.lock() = SnapshotFlushState::Done(output);
    }

    /// The snapshot will not write them.
    pub(super) fn abandon(&self) {
        let mut state = self.lock();
        if matches!(*state, SnapshotFlushState::Pending) {
            *state = SnapshotFlushState::Abandoned;
        }
    }

    fn is_pending(&self) -> bool {
        matches!(*self.lock(), SnapshotFlushState::Pending)
    }
}

struct FlushJob {
    memtables: Vec<Arc<Memtable>>,
    handle: JoinHandle<Result<JobOutput, StateError>>,
}

struct CompactionJob {
    removed: Vec<u64>,
    output_level: usize,
    pointer: Option<(usize, Vec<u8>)>,
    handle: JoinHandle<Result<JobOutput, StateError>>,
}

/// An LSM store in a working directory.
pub struct Store {
    storage: StorageRef,
    work_dir: PathBuf,
    /// This incarnation's directory, chosen when the store opens.
    planned_dir: PathBuf,
    /// This incarnation's number, drawn when the store opens: part of every file name it uploads.
    incarnation: u64,
    /// The directory once made (by the first maintenance call that writes, or a restore).
    dir: Option<PathBuf>,
    options: EmbeddedOptions,
    last_seq: Seq,
    active: Memtable,
    /// Frozen memtables waiting for their flush, oldest first.
    immutables: Vec<Arc<Memtable>>,
    version: Arc<Version>,
    cache: Arc<BlockCache>,
    graveyard: Arc<Graveyard>,
    file_numbers: Arc<AtomicU64>,
    flush: Option<FlushJob>,
    compaction: Option<CompactionJob>,
    /// A snapshot's flush of the immutable memtables, to adopt when it is done.
    snapshot_flush: Option<Arc<SnapshotFlush>>,
    pointers: Vec<Vec<u8>>,
    /// The version changed since the picker last found nothing to do.
    compaction_due: bool,
    stats: StoreStats,
}

impl Drop for Store {
    fn drop(&mut self) {
        // A job outliving its store would write files nobody reads.
        if let Some(job) = &self.flush {
            job.handle.abort();
        }
        if let Some(job) = &self.compaction {
            job.handle.abort();
        }
    }
}

/// Whether `found` (a source's newest entry for `key`) is a visible value.
fn visible(found: Option<Found>, key: &[u8], tombstones: &[RangeTombstone]) -> Option<Vec<u8>> {
    let found = found?;
    if covers(tombstones, key, found.seq) {
        return None;
    }
    found.value
}

/// Calls `f` with every visible entry in `[start, end)` of the sources: `active` (if any),
/// then `immutables` newest first, then `version`'s files.
pub(super) fn scan_sources(
    active: Option<&Memtable>,
    immutables: &[Arc<Memtable>],
    version: &Version,
    (start, end): (&[u8], &[u8]),
    fill_cache: bool,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let mut sources: Vec<Box<dyn Cursor + '_>> = Vec::new();
    if let Some(active) = active {
        sources.push(Box::new(active.cursor(start, Some(end))));
    }
    for memtable in immutables.iter().rev() {
        sources.push(Box::new(memtable.cursor(start, Some(end))));
    }
    sources.extend(version.cursors(start, Some(end), fill_cache)?);
    let mut merge = MergeCursor::new(sources);
    let tombstones = version.tombstones();
    while let Some(result) = merge.step(|entry| match entry.value {
        Some(value) if !covers(tombstones, entry.key, entry.seq) => f(entry.key, value),
        _ => Ok(()),
    })? {
        result?;
    }
    Ok(())
}

async fn join(
    job: &'static str,
    handle: &mut JoinHandle<Result<JobOutput, StateError>>,
) -> Result<JobOutput, StateError> {
    match handle.await {
        Ok(result) => result,
        Err(e) => Err(StateError::BackgroundJob { job, message: e.to_string() }),
    }
}

impl Store {
    /// A store for `work_dir`, empty. Does no IO: the directory is made by the first
    /// maintenance call that writes a file.
    pub fn open(storage: StorageRef, work_dir: PathBuf, options: EmbeddedOptions) -> Result<Store, StateError> {
        options.validate()?;
        let incarnation = runtime::random_u64();
        Ok(Store {
            storage,
            planned_dir: store_dir(&work_dir, incarnation),
            incarnation,
            work_dir,
            dir: None,
            cache: Arc::new(BlockCache::new(options.cache_bytes())),
            options,
            last_seq: 0,
            active: Memtable::new(),
            immutables: Vec::new(),
            version: Arc::new(Version::default()),
            graveyard: Arc::new(Graveyard::default()),
            file_numbers: Arc::new(AtomicU64::new(1)),
            flush: None,
            compaction: None,
            snapshot_flush: None,
            pointers: vec![Vec::new(); LEVELS],
            compaction_due: false,
            stats: StoreStats::default(),
        })
    }

    fn next_seq(&mut self) -> Seq {
        self.last_seq += 1;
        self.last_seq
    }

    pub fn put(&mut self, key: &[u8], value: Vec<u8>) {
        let seq = self.next_seq();
        self.active.insert(key, seq, Value::Put(value));
        self.rotate_if_full();
    }

    /// A full active memtable is queued for its flush at once (cheap: no copy), so that
    /// flushed files have the memtable's size even when maintenance comes late.
    fn rotate_if_full(&mut self) {
        if self.active.bytes() >= self.options.active_memtable_bytes() {
            self.rotate();
        }
    }

    /// Deletes `key`: a point tombstone if an older source may hold it, otherwise the
    /// active memtable just forgets it.
    pub fn delete(&mut self, key: &[u8]) {
        let hash = key_hash(key);
        let older = self.immutables.iter().any(|m| m.get(key).is_some()) || self.version.may_contain(key, hash);
        if older {
            let seq = self.next_seq();
            self.active.insert(key, seq, Value::Delete);
            self.rotate_if_full();
        } else {
            self.active.forget(key);
        }
    }

    /// Deletes every key in `[start, end)`.
    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) {
        if start >= end {
            return;
        }
        self.active.forget_range(start, end);
        let older = self.immutables.iter().any(|m| m.overlaps(start, end)) || self.version.overlaps(start, end);
        if older {
            let seq = self.next_seq();
            Arc::make_mut(&mut self.version).add_tombstone(RangeTombstone {
                start: start.to_vec(),
                end: end.to_vec(),
                seq,
            });
            self.compaction_due = true;
        }
    }

    /// Reads and writes `key` at once: `f` gets its value (if it has one) and returns the new
    /// value. Searches the active memtable once for both, since every record of a keyed
    /// operator's `update` does this.
    pub fn update<R>(
        &mut self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Result<(Vec<u8>, R), StateError>,
    ) -> Result<R, StateError> {
        let seq = self.next_seq();
        let Store { active, immutables, version, .. } = self;
        let result = active.upsert(key, seq, |entry| {
            let tombstones = version.tombstones();
            let (value, result) = match entry {
                Some(entry) => {
                    let live = entry.value.as_put().filter(|_| !covers(tombstones, key, entry.seq));
                    f(live)?
                }
                None => {
                    let mut found = immutables.iter().rev().find_map(|m| m.find(key));
                    if found.is_none() {
                        found = version.get(key, key_hash(key))?;
                    }
                    f(visible(found, key, tombstones).as_deref())?
                }
            };
            Ok::<_, StateError>((Value::Put(value), result))
        })?;
        self.rotate_if_full();
        Ok(result)
    }

    /// The value of `key`, if it has one.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let mut found = self.active.find(key);
        if found.is_none() {
            found = self.immutables.iter().rev().find_map(|m| m.find(key));
        }
        if found.is_none() {
            found = self.version.get(key, key_hash(key))?;
        }
        Ok(visible(found, key, self.version.tombstones()))
    }

    /// Calls `f` with every key and value in `[start, end)`, ascending.
    pub fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        f: impl FnMut(&[u8], &[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        scan_sources(Some(&self.active), &self.immutables, &self.version, (start, end), true, f)
    }

    /// The synchronous part of a snapshot: the active memtable becomes immutable (a new one
    /// takes the writes) and the current files are pinned. Costs no copy of the state.
    pub fn freeze(&mut self) -> FrozenStore {
        if !self.active.is_empty() {
            self.rotate();
        }
        FrozenStore::new(self.immutables.clone(), self.version.clone())
    }

    /// As [`Store::freeze`], and the frozen memtables offered to the snapshot to flush for the
    /// store (when no flush of them is running or offered already).
    pub fn freeze_for_snapshot(&mut self) -> (FrozenStore, Option<Arc<SnapshotFlush>>) {
        let frozen = self.freeze();
        if self.flush.is_some() || self.snapshot_flush.is_some() || self.immutables.is_empty() {
            return (frozen, None);
        }
        let offer = Arc::new(SnapshotFlush {
            memtables: self.immutables.clone(),
            state: std::sync::Mutex::new(SnapshotFlushState::Pending),
        });
        self.snapshot_flush = Some(offer.clone());
        (frozen, Some(offer))
    }

    /// Installs a snapshot's finished flush as the flush of the memtables it wrote, if they are
    /// still the oldest immutable ones and no flush of the store's own runs.
    fn adopt_snapshot_flush(&mut self) {
        let Some(offer) = self.snapshot_flush.as_ref() else { return };
        let state = std::mem::replace(&mut *offer.lock(), SnapshotFlushState::Abandoned);
        let output = match state {
            SnapshotFlushState::Pending => {
                *offer.lock() = SnapshotFlushState::Pending;
                return;
            }
            SnapshotFlushState::Abandoned => None,
            SnapshotFlushState::Done(output) => Some(output),
        };
        let offer = self.snapshot_flush.take().expect("checked above");
        let Some(output) = output else { return };
        let flushed = offer.memtables.len();
        let still_oldest = self.flush.is_none()
            && self.immutables.len() >= flushed
            && self.immutables.iter().zip(&offer.memtables).all(|(live, frozen)| Arc::ptr_eq(live, frozen));
        if !still_oldest {
            return; // Flushed by the store meanwhile: the snapshot's file was for the snapshot alone.
        }
        self.install_flush(flushed, output);
    }

    /// Installs the flush of the `flushed` oldest immutable memtables into `output`.
    fn install_flush(&mut self, flushed: usize, output: JobOutput) {
        self.immutables.drain(..flushed);
        self.stats.flushes += 1;
        self.stats.bytes_flushed += output.bytes_written;
        let version = Arc::make_mut(&mut self.version);
        for file in output.files {
            version.add_flushed(file);
        }
        self.version_changed();
    }

    /// Whether a flush should start: one is due, and no snapshot is flushing the same memtables
    /// (unless memory is over its budget, which cannot wait for the snapshot).
    fn flush_wanted(&self) -> bool {
        self.flush_due() && (self.snapshot_flush.is_none() || self.memtable_bytes() > self.options.memtable_bytes())
    }

    /// Whether the store's directory is made (a snapshot that writes its memtables needs it).
    pub fn has_dir(&self) -> bool {
        self.dir.is_some()
    }

    fn rotate(&mut self) {
        let full = std::mem::take(&mut self.active);
        self.immutables.push(Arc::new(full));
    }

    /// Memory held by the active and immutable memtables.
    pub fn memtable_bytes(&self) -> usize {
        self.active.bytes() + self.immutables.iter().map(|m| m.bytes()).sum::<usize>()
    }

    fn immutable_bytes(&self) -> usize {
        self.immutables.iter().map(|m| m.bytes()).sum()
    }

    fn flush_due(&self) -> bool {
        !self.immutables.is_empty()
            && (self.immutable_bytes() >= self.options.active_memtable_bytes()
                || self.immutables.len() >= self.options.max_immutable_memtables
                || self.memtable_bytes() > self.options.memtable_bytes())
    }

    fn over_bounds(&self) -> bool {
        self.memtable_bytes() > self.options.memtable_bytes()
            || self.version.level(0).len() >= self.options.level0_stop_files
    }

    /// Whether [`Store::maintain`] has something to do: cheap, for every batch.
    pub fn needs_maintenance(&self) -> bool {
        self.active.bytes() >= self.options.active_memtable_bytes()
            || self.flush.as_ref().map_or(self.flush_wanted(), |job| job.handle.is_finished())
            || self.snapshot_flush.as_ref().is_some_and(|offer| !offer.is_pending())
            || self.compaction.as_ref().map_or(self.compaction_due, |job| job.handle.is_finished())
            || self.over_bounds()
            || !self.graveyard.is_empty()
    }

    /// Installs finished jobs, removes dead files, queues a full memtable for its flush,
    /// and starts the flush and compaction that are due. Stalls (awaits the running jobs)
    /// only while the memtables are over their budget or level 0 holds
    /// `level0_stop_files` files; otherwise its work is bounded and it returns at once.
    pub async fn maintain(&mut self) -> Result<(), StateError> {
        self.install_finished().await?;
        self.remove_dead_files(REMOVALS_PER_CALL).await?;
        self.rotate_if_full();
        self.start_jobs(false).await?;
        while self.over_bounds() {
            self.stats.stalls += 1;
            let memory = self.memtable_bytes() > self.options.memtable_bytes();
            if memory && self.flush.is_some() {
                self.wait_flush().await?;
            } else if self.compaction.is_some() {
                self.wait_compaction().await?;
            } else if self.flush.is_some() {
                self.wait_flush().await?;
            } else {
                unreachable!("over bounds with no job running: a flush or level-0 compaction is always due then");
            }
            self.start_jobs(false).await?;
        }
        Ok(())
    }

    /// Maintains until nothing is left to do: every due flush and compaction done, every
    /// dead file removed. For tests and for callers that want the store quiet.
    pub async fn settle(&mut self) -> Result<(), StateError> {
        loop {
            self.maintain().await?;
            if self.flush.is_some() {
                self.wait_flush().await?;
            } else if self.compaction.is_some() {
                self.wait_compaction().await?;
            } else if !self.graveyard.is_empty() {
                self.remove_dead_files(usize::MAX).await?;
            } else if !self.needs_maintenance() {
                return Ok(());
            }
        }
    }

    /// Writes every memtable into level 0 now, then settles.
    pub async fn flush_all(&mut self) -> Result<(), StateError> {
        if !self.active.is_empty() {
            self.rotate();
        }
        if self.flush.is_some() {
            self.wait_flush().await?;
        }
        self.start_jobs(true).await?;
        if self.flush.is_some() {
            self.wait_flush().await?;
        }
        self.settle().await
    }

    /// Compacts every file into one sorted run at the deepest level: every tombstone that
    /// can go goes.
    pub async fn compact_all(&mut self) -> Result<(), StateError> {
        self.flush_all().await?;
        assert!(self.flush.is_none() && self.compaction.is_none(), "settled");
        if let Some(plan) = picker::full(&self.version) {
            self.start_compaction(plan).await?;
            self.wait_compaction().await?;
        }
        self.settle().await
    }

    async fn install_finished(&mut self) -> Result<(), StateError> {
        self.adopt_snapshot_flush();
        if self.flush.as_ref().is_some_and(|job| job.handle.is_finished()) {
            self.wait_flush().await?;
        }
        if self.compaction.as_ref().is_some_and(|job| job.handle.is_finished()) {
            self.wait_compaction().await?;
        }
        Ok(())
    }

    async fn wait_flush(&mut self) -> Result<(), StateError> {
        let job = self.flush.as_mut().expect("a flush is running");
        let output = join("flush", &mut job.handle).await;
        let job = self.flush.take().expect("a flush is running");
        let output = output?;
        let flushed = job.memtables.len();
        assert!(
            self.immutables.len() >= flushed
                && self.immutables.iter().zip(&job.memtables).all(|(live, flushed)| Arc::ptr_eq(live, flushed)),
            "a flush writes the oldest immutable memtables"
        );
        self.install_flush(flushed, output);
        Ok(())
    }

    async fn wait_compaction(&mut self) -> Result<(), StateError> {
        let job = self.compaction.as_mut().expect("a compaction is running");
        let output = join("compaction", &mut job.handle).await;
        let job = self.compaction.take().expect("a compaction is running");
        let output = output?;
        self.stats.compactions += 1;
        self.stats.bytes_compacted += output.bytes_written;
        self.stats.bytes_compaction_read += output.bytes_read;
        Arc::make_mut(&mut self.version).replace(&job.removed, job.output_level, output.files);
        if let Some((level, key)) = job.pointer {
            self.pointers[level] = key;
        }
        self.version_changed();
        Ok(())
    }

    /// After an install: forget range tombstones nothing needs any more, and look for
    /// compactions again.
    fn version_changed(&mut self) {
        let immutables = &self.immutables;
        let stale_memtable = |t: &RangeTombstone| {
            immutables.iter().any(|m| m.min_seq().is_some_and(|min| min < t.seq) && m.overlaps(&t.start, &t.end))
        };
        let version = &self.version;
        let needed: Vec<bool> = version
            .tombstones()
            .iter()
            .map(|t| stale_memtable(t) || picker::stale_file(version, t).is_some())
            .collect();
        if needed.iter().any(|n| !n) {
            let mut needed = needed.into_iter();
            Arc::make_mut(&mut self.version).retain_tombstones(|_| needed.next().expect("one flag per tombstone"));
        }
        self.compaction_due = true;
    }

    /// Makes this incarnation's directory, removing the directories of earlier ones (they
    /// belong to attempts of this subtask that are gone).
    pub(super) async fn prepare_dir(&mut self) -> Result<PathBuf, StateError> {
        if let Some(dir) = &self.dir {
            return Ok(dir.clone());
        }
        if self.storage.is_dir(&self.work_dir).await? {
            let mut removed = false;
            for name in self.storage.list(&self.work_dir).await? {
                // This incarnation's own directory may exist already: a snapshot's asynchronous part
                // makes it when it writes the memtables before any maintenance did.
                if name.starts_with(STORE_DIR_PREFIX) && self.work_dir.join(&name) != self.planned_dir {
                    self.storage.remove_dir_all(&self.work_dir.join(name)).await?;
                    removed = true;
                }
            }
            // The removals made durable: until then a file system may still hold (and a crash bring back) every
            // earlier incarnation's files, so a subtask that fails over and over would fill its disk.
            if removed {
                self.storage.sync_dir(&self.work_dir).await?;
            }
        }
        let dir = self.planned_dir.clone();
        self.storage.create_dir_all(&dir).await?;
        self.dir = Some(dir.clone());
        Ok(dir)
    }

    /// What a snapshot's asynchronous part needs to write a file into this store's directory
    /// (made by the time it runs: a snapshot with memtables to write follows maintenance).
    pub(super) fn context_now(&self) -> JobContext {
        JobContext {
            storage: self.storage.clone(),
            dir: self.planned_dir.clone(),
            cache: self.cache.clone(),
            graveyard: self.graveyard.clone(),
            file_numbers: self.file_numbers.clone(),
            table: TableOptions {
                block_bytes: self.options.block_bytes,
                bloom_bits_per_key: self.options.bloom_bits_per_key,
            },
        }
    }

    /// The storage the store's files are on.
    pub fn storage_ref(&self) -> StorageRef {
        self.storage.clone()
    }

    /// This incarnation's number.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The highest sequence number the store has handed out.
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// Installs a version rebuilt from a snapshot's files (the store is empty and its directory
    /// made): every entry and tombstone in it is older than what the store writes next.
    pub(super) fn install_restored(&mut self, version: Version) {
        assert!(self.version.file_count() == 0 && self.active.is_empty() && self.immutables.is_empty());
        let newest_file = (0..LEVELS).flat_map(|l| version.level(l).iter()).map(|f| f.meta().properties.max_seq).max();
        self.last_seq = self.last_seq.max(newest_file.unwrap_or(0)).max(newest_seq(version.tombstones()));
        self.version = Arc::new(version);
        self.compaction_due = true;
    }

    async fn context(&mut self) -> Result<JobContext, StateError> {
        self.prepare_dir().await?;
        Ok(self.context_now())
    }

    /// Starts the flush and the compaction that are due (`force_flush`: any immutable
    /// memtable is due).
    async fn start_jobs(&mut self, force_flush: bool) -> Result<(), StateError> {
        if self.flush.is_none() && !self.immutables.is_empty() && (force_flush || self.flush_wanted()) {
            let context = self.context().await?;
            let memtables = self.immutables.clone();
            let range = memtables.iter().filter_map(|m| m.key_range()).fold(None, |range, (low, high)| match range {
                None => Some((low, high)),
                Some((l, h)) => Some((low.min(l), high.max(h))),
            });
            // Nothing older holds these keys: their point tombstones need not be written.
            let drop_point_tombstones = range.is_none_or(|(low, high)| !self.version.holds_any(low, high));
            let tombstones = self.version.tombstones().to_vec();
            let job_memtables = memtables.clone();
            let handle =
                runtime::spawn_background(job::flush(context, job_memtables, tombstones, drop_point_tombstones));
            self.flush = Some(FlushJob { memtables, handle });
        }
        if self.compaction.is_none() && self.compaction_due {
            match picker::pick(&self.version, &self.options, &self.pointers) {
                Some(plan) => self.start_compaction(plan).await?,
                None => self.compaction_due = false,
            }
        }
        Ok(())
    }

    async fn start_compaction(&mut self, plan: CompactionPlan) -> Result<(), StateError> {
        assert!(self.compaction.is_none());
        let context = self.context().await?;
        let removed = plan.inputs.iter().map(|f| f.meta().number).collect();
        let tombstones = self.version.tombstones().to_vec();
        let handle = runtime::spawn_background(job::compact(
            context,
            plan.inputs,
            tombstones,
            plan.drop_point_tombstones,
            self.options.target_file_bytes,
        ));
        self.compaction =
            Some(CompactionJob { removed, output_level: plan.output_level, pointer: plan.pointer, handle });
        Ok(())
    }

    /// Removes up to `limit` dead files. A file leaves the graveyard only once it is gone.
    async fn remove_dead_files(&mut self, limit: usize) -> Result<(), StateError> {
        for _ in 0..limit {
            let Some(path) = self.graveyard.first() else { break };
            match self.storage.remove_file(&path).await {
                Ok(()) => self.stats.files_removed += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            self.graveyard.forget(&path);
        }
        Ok(())
    }

    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// The live files, level by level.
    pub fn files(&self) -> Vec<LiveFile> {
        self.version.files()
    }

    pub fn version(&self) -> &Version {
        &self.version
    }

    /// This incarnation's directory, once made.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn options(&self) -> &EmbeddedOptions {
        &self.options
    }

    /// The newest tombstone sequence number (0 without any): for tests.
    pub fn newest_tombstone_seq(&self) -> Seq {
        newest_seq(self.version.tombstones())
    }
}
