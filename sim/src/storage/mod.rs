//! The simulated filesystem: in-memory volumes behind the engine's storage seam. The root
//! volume is the shared "DFS" node holding checkpoints, savepoints, inputs and outputs;
//! further volumes can be mounted at path prefixes (a local disk per task manager). Every
//! node of a simulation shares the storage through an `Arc`; a volume loses data only when
//! it crashes ([`SimStorage::crash`], [`SimStorage::crash_volume`]) or is wiped
//! ([`SimStorage::wipe`]).
//!
//! # Two views
//!
//! Each volume keeps a *current* view, which reads, lists and `exists` see immediately, and
//! a *durable* view, which is what a crash is sure to leave. Every file is an inode with
//! `current` and `durable` contents; every directory is an inode with `current` and
//! `durable` maps from entry name to inode. Between the two directory views sits a journal
//! of the unsynced directory changes (creates, renames, removals) in the order they were
//! made: the durable view with every journaled change applied is the current view. The
//! operations move state between the views as the storage seam's contract says:
//!
//! - `WriteFile::write_all` appends to the file's current content only.
//! - `WriteFile::sync` (fsync) makes the file's current content its durable content. It
//!   makes no directory entry durable: a file created and fsynced in a directory that was
//!   never synced can vanish in a crash (POSIX asks for the directory's fsync too; ext4
//!   happens to commit the entry, other file systems and the standard do not promise it).
//! - `create`, `rename`, `remove_file` and `remove_dir_all` change the current entries and
//!   are journaled. `create` of an existing file truncates that inode (as `O_TRUNC` does):
//!   a data change, unsynced until the file is fsynced.
//! - `sync_dir(d)` makes durable every unsynced change that touches an entry of `d`
//!   (additions, removals, either end of a rename) together with the changes they depend on
//!   (see below), which may lie in other directories: persisting more than asked is always
//!   allowed.
//! - `create_dir_all` is durable immediately, in both views. Real filesystems need the
//!   parent directory synced too, but the engine creates its layout directories (the job
//!   directory, `chk-<n>`, the output directory) long before their contents matter and never
//!   syncs their parents; modelling that would only report a gap the engine deliberately
//!   leaves, not a bug. A directory removal still needs its parent synced to be durable.
//! - `put_file` (scenario set-up) and `mount` are durable immediately: inputs and disks exist
//!   before the job does.
//!
//! Directories are kept per inode rather than as flat path maps, so a directory rename
//! carries its whole subtree in both views, as a real rename of a directory inode does.
//!
//! # The crash model
//!
//! After the studies of application crash consistency (ALICE, Pillai et al., OSDI 2014;
//! CrashMonkey, Mohan et al., OSDI 2018), a crash leaves one of the states a POSIX file
//! system may be left in, chosen from the seed: every unsynced operation independently
//! survives or not, within the dependencies below. Synced state never changes.
//!
//! | unsynced operation | its barrier | what a crash before the barrier may leave |
//! |---|---|---|
//! | `write_all` (append) | `sync` of the file | none of the unsynced bytes, all of them, any prefix of them, or a prefix with any of its blocks (4 KiB, file-aligned) zero-filled |
//! | `create` of an existing file (truncation) | `sync` of the file | the old durable content, whole, and nothing written since; or the truncation, then what `write_all` allows of the bytes written since |
//! | `create` of a new file (its entry) | `sync_dir` of its directory | the entry or no entry, independently of the file's data: a surviving entry may name an empty file, a prefix, or zero-filled blocks |
//! | `rename(a, b)` | `sync_dir` of `a`'s or of `b`'s directory | the whole rename or none of it (`b` names the moved inode and `a` is gone; or `a` names it and `b` what it named before), independently of the moved file's data |
//! | `remove_file`, `remove_dir_all` | `sync_dir` of the parent | the entry gone, or still there (a removed directory's contents as the rest of the model leaves them) |
//! | `create_dir_all`, `put_file`, `mount` | none | (durable at once) |
//!
//! Unsynced directory changes survive in any combination closed under two dependencies:
//!
//! 1. **Per entry, a prefix.** A change to an entry (a name in a directory) survives only
//!    with every earlier unsynced change to that entry; a rename counts for both of its
//!    entries. A rename of a just-created file therefore survives only with its create, and
//!    a create over a just-removed name only with the removal.
//! 2. **Removal after contents.** A directory removal, and a rename over an empty
//!    directory, survive only with every earlier unsynced change inside that directory, as
//!    a real `rmdir` needs the entries unlinked first.
//!
//! Otherwise changes to different entries survive independently and in any order.
//! Precisely, for a rename `a -> b`: after a crash the moved inode is at `a` or at `b`,
//! never at both; if `a`'s entry was durable, the inode is at one of them (never neither)
//! and a durable `b` names either its old inode or the moved one (never nothing). If `a`'s
//! entry was itself unsynced (created and renamed with no `sync_dir` between), the create
//! and the rename may both be lost: the file was never durable anywhere. A barrier that fails
//! (an injected error, a stale error) makes nothing durable.
//!
//! Why each behaviour is allowed:
//!
//! - *Prefixes and zero-filled blocks*: dirty pages are written back in no promised order,
//!   and a file's size may reach the journal before its data (ext4 `data=writeback`, XFS's
//!   zero-filled files after a crash; ALICE's non-atomic appends). File systems zero extents
//!   that were allocated but never written rather than expose old blocks, so the unsynced
//!   range reads as written bytes or zeros, never garbage. (ext4's default ordered mode
//!   writes data before the metadata exposing it: one of the outcomes allowed here.)
//! - *An entry without its data*, and *a rename before the data of the file it names*:
//!   directory blocks and file data reach the disk separately; ext4's delayed allocation
//!   famously left zero-length files after a rename without an fsync of the data.
//! - *Directory changes in any order*: file systems without an ordered metadata journal
//!   (ext2, ext4 with its journal off) write directory blocks back in any order. Journaling
//!   file systems persist changes in order, which is one of the combinations allowed.
//! - *A rename whole or not at all*: POSIX makes `b` always name the old or the new inode,
//!   and journaling file systems commit a rename, both halves, as one transaction. For the
//!   same reason syncing either directory persists a rename across directories: that sync
//!   commits the transaction. (Portable code syncs both; but a rename surviving in half, or
//!   an entry synced in `b` vanishing because `a` was not synced, would be storage breaking
//!   its contract.)
//!
//! Never produced, whatever the seed: a byte that was not written (each byte is durable
//! data, unsynced data written at that offset, or a zero in the unsynced range); a change to
//! fsynced data or to a synced entry; half a rename; an entry naming nothing; a file at two
//! names (the seam has no hard links). The two ends are explicit ([`CrashMode`]):
//! `LoseUnsynced` leaves exactly the durable view (what [`SimStorage::durable_files`]
//! lists), `KeepUnsynced` exactly the current view; the seeded crash picks either end with
//! probability 1/4 each and decides every change and every file independently otherwise.
//!
//! At most 10,000 directory changes stay unsynced per volume: past that the oldest becomes
//! durable, as a full journal forces a commit. No engine directory comes near it.
//!
//! # Operations that span a crash
//!
//! An operation whose effect straddles a crash fails with [`StorageError::Stale`] instead of
//! silently succeeding on the post-crash namespace, as a remote file system's stale handle
//! does:
//!
//! - *Handles.* A write handle opened before a crash or wipe of its volume fails every
//!   later `write_all` and `sync`, rather than resurrecting data or fsyncing a file the
//!   crash may have emptied.
//! - *Barriers with no handle.* A crash leaves every directory that had unsynced changes
//!   owing one stale error per such change, whether the crash kept the change or lost it:
//!   a caller cannot tell which. Each `sync_dir` of that directory consumes one owed error,
//!   fails with it and makes nothing durable; once the owed errors are spent, `sync_dir`
//!   works again. So a caller that renamed (or created, or removed) and then calls
//!   `sync_dir` after a crash learns that its change may be gone, and cannot believe
//!   durable a rename or create the crash lost. Changes made after the crash are not stale.
//!   The storage does not know its callers, so an unrelated caller's `sync_dir` can spend an
//!   error owed to another: the rule is exact when one caller syncs a directory (the job
//!   manager's `chk-<n>`), and for a shared one (the file sink's output directory) as long
//!   as a directory is not synced more times between the crash and the barrier of the
//!   caller it owes than it had unsynced changes at the crash. A wipe leaves only its root
//!   owing errors; the other directories are gone, and syncing them is `NotFound`.
//! - Namespace operations take effect at once, on the namespace as it is: after a crash a
//!   rename whose source the crash lost fails with `NotFound`. Reads see the post-crash
//!   content.
//!
//! # Volumes
//!
//! [`SimStorage::mount`] puts an independent volume at a path prefix: paths under it
//! (longest prefix wins) live on that volume, with its own faults, fault windows, counters
//! and crashes. The mount point is a directory of the volume above it, so listing its
//! parent shows it. A rename between volumes fails (`EXDEV`); renaming or removing a
//! directory with a volume mounted below it fails ("busy"). Without mounts everything is
//! the root volume, which behaves as this storage always has.
//!
//! # Faults
//!
//! [`StorageFaults`] per volume, all off by default: base faults ([`SimStorage::set_faults`]
//! for the root volume, [`SimStorage::set_volume_faults`] for any) combined with those of
//! every [`FaultWindow`] covering the current simulated time
//! ([`SimStorage::add_fault_window`]), taking the harsher of each.
//!
//! - `write_error_rate`, `fsync_error_rate`, `read_error_rate`: data writes (`write_all`),
//!   durability barriers (`sync`, `sync_dir`) and data reads (`read`, `read_range`,
//!   `read_range_now`) fail with `StorageError::Io` ("injected ... error") with that
//!   probability, and change nothing. Namespace operations (create, rename, remove, list,
//!   stat) never fail by injection: the name node is modelled as reliable, and its failure
//!   is a crash. A failed fsync persists nothing and leaves the data pending, so a later
//!   fsync may still persist it; Linux can be harsher (a failed fsync may drop the dirty
//!   pages for good), which is not modelled because the engine never retries an fsync.
//! - `capacity_bytes`: the total current size of the volume's files that are reachable in
//!   the current view or open for writing. A write that would exceed it fails with
//!   `StorageError::NoSpace` and appends nothing; removing files frees their space at once.
//! - `latency`: every asynchronous operation first sleeps a duration drawn uniformly from
//!   `[min, max]`. This is how slow storage makes checkpoints time out.
//! - `stall`: every asynchronous operation first waits while a stall is in force: a base
//!   stall until the faults are next changed, a window's stall until the window ends
//!   (a sleep to that instant, not a poll). Operations already past their wait complete.
//!   `read_range_now` never waits.
//!
//! Randomness comes only from `engine::seam::runtime::random_u64`, so it is the seed's under
//! simulation, and none is drawn while no fault is configured and no crash has anything
//! unsynced to decide: a fault-free storage leaves the seed's random sequence, and so every
//! run without storage faults or crashes, as it was. Likewise nothing sleeps unless latency
//! or a stall is configured.
//!
//! # What recovery must survive
//!
//! A crash at any point, with anything the model allows lost, torn or zero-filled, stale
//! handles and barriers failing; a wiped local volume; injected write, fsync and read
//! errors; running out of space; and slow or stalled storage. Each of these is something a
//! real disk or DFS does to a correct program, so the engine has to turn it into a failed
//! checkpoint, a task restart or a job failure, never into lost or duplicated output. What
//! is not injected is storage breaking its own contract: synced data changing or vanishing,
//! an fsync that reports success without persisting, or a synced rename being undone. No
//! protocol built on fsync and rename can survive those, so they would be reported as
//! failures that are not bugs.

mod crash;
mod faults;
mod journal;
#[cfg(test)]
mod tests;
mod volume;

pub use crash::CrashMode;
pub use faults::{FaultWindow, StorageFaults, StorageStats};

use async_trait::async_trait;
use engine::seam::runtime;
use engine::seam::storage::{Storage, StorageError, WriteFile};
use faults::Stall;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use volume::{InodeId, View, Volume, injected_error, io_error, not_found};

/// How a volume starts when it is mounted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VolumeOptions {
    /// A name for the volume, for people reading counters and panics: `tm-0-disk`.
    pub name: String,
    /// Its base faults from the start ([`SimStorage::set_volume_faults`] changes them).
    pub faults: StorageFaults,
}

/// Every volume, and where each is mounted.
struct Volumes {
    /// The root volume first.
    volumes: Vec<Volume>,
    /// Mount points (path components) and their volumes, the root volume's excepted.
    mounts: Vec<(Vec<String>, usize)>,
}

impl Volumes {
    /// The volume `names` lives on, and how many of its leading components are the mount
    /// point: the longest mount point that is a prefix of it.
    fn route(&self, names: &[String]) -> (usize, usize) {
        self.mounts
            .iter()
            .filter(|(prefix, _)| names.starts_with(prefix))
            .map(|(prefix, volume)| (*volume, prefix.len()))
            .max_by_key(|(_, len)| *len)
            .unwrap_or((0, 0))
    }

    /// Whether a volume is mounted strictly below `names`.
    fn mounted_below(&self, names: &[String]) -> bool {
        self.mounts.iter().any(|(prefix, _)| prefix.len() > names.len() && prefix.starts_with(names))
    }

    /// The volume mounted exactly at `mount` (`/` for the root volume).
    ///
    /// # Panics
    ///
    /// If no volume is mounted there: the harness named a volume it never mounted.
    fn index(&self, mount: &Path) -> usize {
        let names = components(mount);
        if names.is_empty() {
            return 0;
        }
        self.mounts
            .iter()
            .find(|(prefix, _)| *prefix == names)
            .map(|(_, volume)| *volume)
            .unwrap_or_else(|| panic!("no volume is mounted at `{}`", mount.display()))
    }

    /// The mount point of volume `volume`, as a path.
    fn mount_path(&self, volume: usize) -> PathBuf {
        let names = self.mounts.iter().find(|(_, v)| *v == volume).map(|(prefix, _)| prefix.as_slice());
        let mut path = PathBuf::from("/");
        path.extend(names.unwrap_or_default());
        path
    }

    /// The files of `view` on every volume, as full paths, sorted. A volume's files under a
    /// deeper mount point are hidden by that mount, as on a real system.
    fn files(&self, view: View) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for (index, volume) in self.volumes.iter().enumerate() {
            let mount = self.mount_path(index);
            for relative in volume.files(view) {
                let path = mount.join(relative);
                if self.route(&components(&path)).0 == index {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }
}

struct Shared {
    state: Mutex<Volumes>,
    /// Woken whenever faults change, so that stalled operations look again.
    faults_changed: Notify,
}

/// The simulated storage. Clones share the same storage.
#[derive(Clone)]
pub struct SimStorage {
    shared: Arc<Shared>,
}

impl Default for SimStorage {
    fn default() -> Self {
        let root = Volume::new("root".into(), StorageFaults::default());
        let state = Volumes { volumes: vec![root], mounts: Vec::new() };
        SimStorage { shared: Arc::new(Shared { state: Mutex::new(state), faults_changed: Notify::new() }) }
    }
}

/// A path's components below the root. Paths are normalised (`.` removed, `..` applied);
/// relative paths are relative to the root.
/// How much of a file a crash now would keep: see [`SimStorage::durability`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Durability {
    /// A crash keeps the file's content as reads see it.
    pub content: bool,
    /// A crash keeps the file's entry where reads see it.
    pub entry: bool,
}

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

/// The faults in force on `volume` now.
fn faults_now(volume: &Volume) -> StorageFaults {
    faults::effective(&volume.faults, &volume.windows, runtime::elapsed())
}

/// An operation's locked state: every volume, the operation's volume, and its path below
/// that volume's mount point.
struct Operation<'a> {
    state: MutexGuard<'a, Volumes>,
    volume: usize,
    names: Vec<String>,
}

impl Operation<'_> {
    fn volume(&mut self) -> &mut Volume {
        &mut self.state.volumes[self.volume]
    }
}

impl SimStorage {
    pub fn new() -> Self {
        SimStorage::default()
    }

    fn lock(&self) -> MutexGuard<'_, Volumes> {
        self.shared.state.lock().expect("storage lock")
    }

    /// Mounts a new, empty volume at `prefix`: every path under it lives on that volume from
    /// now on, with its own faults, counters and crashes. The mount point becomes a durable
    /// directory of the volume above it. Mount before the job starts: a mount hides whatever
    /// the volume above held below the mount point.
    ///
    /// # Panics
    ///
    /// If `prefix` is the root, already a mount point, or a file of the volume above: a
    /// broken set-up, not a storage fault.
    pub fn mount(&self, prefix: &Path, options: VolumeOptions) {
        let names = components(prefix);
        assert!(!names.is_empty(), "the root volume is always mounted at `/`");
        let mut state = self.lock();
        assert!(
            !state.mounts.iter().any(|(mounted, _)| *mounted == names),
            "a volume is already mounted at `{}`",
            prefix.display()
        );
        let (above, above_len) = state.route(&names);
        let mount_path = state.mount_path(above);
        if let Err(error) = state.volumes[above].create_dir_all(&names[above_len..], &mount_path) {
            panic!("cannot mount a volume at `{}`: {error}", prefix.display());
        }
        let index = state.volumes.len();
        state.volumes.push(Volume::new(options.name, options.faults));
        state.mounts.push((names, index));
    }

    /// The mount points of every volume, the root volume's `/` first.
    pub fn volumes(&self) -> Vec<PathBuf> {
        let state = self.lock();
        (0..state.volumes.len()).map(|index| state.mount_path(index)).collect()
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
        let mut state = self.lock();
        let (volume, prefix_len) = state.route(&names);
        state.volumes[volume].put_file(&names[prefix_len..], bytes, path);
    }

    /// The root volume loses power, the seed deciding what unsynced state survives: see the
    /// module documentation. The fault injector's `storage_crash`.
    pub fn crash(&self) {
        self.crash_volume(Path::new("/"), CrashMode::Seeded);
    }

    /// The volume mounted at `volume` (`/` for the root volume) crashes as `mode` says;
    /// only that volume. Handles opened on it before become stale, and its directories that
    /// had unsynced changes owe stale errors to their next `sync_dir` calls.
    ///
    /// # Panics
    ///
    /// If no volume is mounted at `volume`.
    pub fn crash_volume(&self, volume: &Path, mode: CrashMode) {
        let mut state = self.lock();
        let index = state.index(volume);
        state.volumes[index].crash(mode);
    }

    /// The volume mounted at `volume` loses everything, synced or not, and comes back empty
    /// (the mount point stays): a task manager's local disk after its node crashed. Same as
    /// `crash_volume(volume, CrashMode::Wipe)`.
    ///
    /// # Panics
    ///
    /// If no volume is mounted at `volume`.
    pub fn wipe(&self, volume: &Path) {
        self.crash_volume(volume, CrashMode::Wipe);
    }

    /// Drops every volume's contents: the end of a run. A simulation's tasks that were parked when it ended are
    /// never dropped by the runtime, and those holding the storage would keep every file of the run alive.
    pub fn release(&self) {
        let mut state = self.lock();
        for volume in &mut state.volumes {
            *volume = Volume::new(volume.name.clone(), StorageFaults::default());
        }
    }

    /// Replaces the root volume's base faults from now on. Operations already waiting keep
    /// the latency they drew; a stall ends for waiting operations at once.
    pub fn set_faults(&self, faults: StorageFaults) {
        self.set_volume_faults(Path::new("/"), faults);
    }

    /// The root volume's base faults (windows aside).
    pub fn faults(&self) -> StorageFaults {
        self.volume_faults(Path::new("/"))
    }

    /// Replaces the base faults of the volume mounted at `volume` (`/` for the root), as
    /// [`SimStorage::set_faults`] does for the root volume.
    ///
    /// # Panics
    ///
    /// If no volume is mounted at `volume`.
    pub fn set_volume_faults(&self, volume: &Path, faults: StorageFaults) {
        {
            let mut state = self.lock();
            let index = state.index(volume);
            state.volumes[index].faults = faults;
        }
        self.shared.faults_changed.notify_waiters();
    }

    /// The base faults of the volume mounted at `volume` (windows aside).
    ///
    /// # Panics
    ///
    /// If no volume is mounted at `volume`.
    pub fn volume_faults(&self, volume: &Path) -> StorageFaults {
        let state = self.lock();
        state.volumes[state.index(volume)].faults.clone()
    }

    /// Adds faults that apply to the volume mounted at `volume` (`/` for the root) only
    /// within `window.from .. window.until` of simulated time, on top of its base faults.
    /// Windows may overlap; each stays until it is cleared, harmless once past.
    ///
    /// # Panics
    ///
    /// If no volume is mounted at `volume`, or the window ends before it starts.
    pub fn add_fault_window(&self, volume: &Path, window: FaultWindow) {
        assert!(window.from <= window.until, "a fault window ends after it starts: {window:?}");
        {
            let mut state = self.lock();
            let index = state.index(volume);
            state.volumes[index].windows.push(window);
        }
        self.shared.faults_changed.notify_waiters();
    }

    /// Drops every fault window of the volume mounted at `volume`; operations stalled by one
    /// go on at once.
    ///
    /// # Panics
    ///
    /// If no volume is mounted at `volume`.
    pub fn clear_fault_windows(&self, volume: &Path) {
        {
            let mut state = self.lock();
            let index = state.index(volume);
            state.volumes[index].windows.clear();
        }
        self.shared.faults_changed.notify_waiters();
    }

    /// The healing phase for storage: every volume's base faults back to none and every
    /// fault window dropped; stalled operations go on at once.
    pub fn heal(&self) {
        {
            let mut state = self.lock();
            for volume in &mut state.volumes {
                volume.faults = StorageFaults::default();
                volume.windows.clear();
            }
        }
        self.shared.faults_changed.notify_waiters();
    }

    /// Counters summed over every volume.
    pub fn stats(&self) -> StorageStats {
        self.lock().volumes.iter().fold(StorageStats::default(), |total, volume| total.plus(volume.stats))
    }

    /// The counters of the volume mounted at `volume`.
    ///
    /// # Panics
    ///
    /// If no volume is mounted at `volume`.
    pub fn volume_stats(&self, volume: &Path) -> StorageStats {
        let state = self.lock();
        state.volumes[state.index(volume)].stats
    }

    /// The files a crash that keeps nothing unsynced ([`CrashMode::LoseUnsynced`]) would
    /// leave, on every volume, sorted.
    pub fn durable_files(&self) -> Vec<PathBuf> {
        self.lock().files(View::Durable)
    }

    /// The content reads see at `path` now, without the faults and delays an operation would meet; `None` if no
    /// file is there. For oracles that look at the storage as a run goes.
    pub fn read_now(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let names = components(path);
        let (index, prefix) = state.route(&names);
        let volume = &state.volumes[index];
        let id = volume.resolve(View::Current, &names[prefix..])?;
        volume.file(id).map(|file| file.current.clone())
    }

    /// How durable the file that reads see at `path` is now, for the protocol monitor: `None` if there is no
    /// file there. Its content is durable when it holds no unsynced byte (a crash keeps exactly what reads see);
    /// its entry, when the durable view names the same inode at `path` (a crash keeps it there).
    pub fn durability(&self, path: &Path) -> Option<Durability> {
        let state = self.lock();
        let names = components(path);
        let (index, prefix) = state.route(&names);
        let volume = &state.volumes[index];
        let names = &names[prefix..];
        let id = volume.resolve(View::Current, names)?;
        let file = volume.file(id)?;
        Some(Durability { content: !file.has_unsynced_data(), entry: volume.resolve(View::Durable, names) == Some(id) })
    }

    /// The files reads and lists see now, on every volume, sorted.
    pub fn current_files(&self) -> Vec<PathBuf> {
        self.lock().files(View::Current)
    }

    /// What every asynchronous operation on `volume` does first: wait out a stall, then
    /// sleep the latency in force. The lock is never held across these awaits.
    async fn delay(&self, volume: usize) {
        // The common case, no stall, costs one look; a stalled operation registers for
        // changes before it looks again, so that a change in between is not missed.
        while self.stall(volume).is_some() {
            let changed = self.shared.faults_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = runtime::elapsed();
            match self.stall(volume) {
                None => break,
                Some(Stall::UntilChanged) => changed.await,
                Some(Stall::Until(end)) => {
                    tokio::select! {
                        biased;
                        () = &mut changed => {}
                        () = runtime::sleep(end.saturating_sub(now)) => {}
                    }
                }
            }
        }
        let latency = faults_now(&self.lock().volumes[volume]).latency;
        if let Some((min, max)) = latency {
            runtime::sleep(faults::draw_duration(min, max)).await;
        }
    }

    /// Whether operations on `volume` starting now must wait, and for how long.
    fn stall(&self, volume: usize) -> Option<Stall> {
        let state = self.lock();
        let volume = &state.volumes[volume];
        faults::stall(&volume.faults, &volume.windows, runtime::elapsed())
    }

    /// Waits as [`SimStorage::delay`] says for the volume of `path`, then locks the state
    /// for one operation on it.
    async fn begin(&self, path: &Path) -> Operation<'_> {
        let names = components(path);
        let (volume, _) = self.lock().route(&names);
        self.delay(volume).await;
        let mut state = self.lock();
        let (volume, prefix_len) = state.route(&names);
        state.volumes[volume].stats.operations += 1;
        Operation { state, volume, names: names[prefix_len..].to_vec() }
    }

    /// Waits as [`SimStorage::delay`] says for volume `volume`, then locks the state for one
    /// operation on it (through a file handle).
    async fn begin_on(&self, volume: usize) -> MutexGuard<'_, Volumes> {
        self.delay(volume).await;
        let mut state = self.lock();
        state.volumes[volume].stats.operations += 1;
        state
    }

    /// Reads a current file under the lock, failing with an injected read error at the
    /// rate in force.
    fn read_locked(
        volume: &mut Volume,
        names: &[String],
        path: &Path,
        read: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<Vec<u8>, StorageError> {
        let id = volume.file_id("read", names, path)?;
        if faults::draw_failure(faults_now(volume).read_error_rate) {
            volume.stats.injected_read_errors += 1;
            return Err(injected_error("read", path, "injected read error"));
        }
        Ok(read(&volume.file(id).expect("resolved to a file").current))
    }
}

/// A file open for writing. It names its inode, so it keeps writing to the same file
/// through renames and removals, as a POSIX file descriptor does.
struct SimFile {
    storage: SimStorage,
    volume: usize,
    path: PathBuf,
    /// `path` below the volume's mount point.
    names: Vec<String>,
    inode: InodeId,
    /// The volume's generation when the file was opened; a later crash makes it stale.
    generation: u64,
}

impl SimFile {
    fn check_fresh(&self, volume: &mut Volume, op: &'static str) -> Result<(), StorageError> {
        if volume.generation == self.generation {
            return Ok(());
        }
        volume.stats.stale_handle_errors += 1;
        Err(StorageError::Stale { op, path: self.path.clone() })
    }
}

#[async_trait]
impl WriteFile for SimFile {
    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let mut state = self.storage.begin_on(self.volume).await;
        let volume = &mut state.volumes[self.volume];
        self.check_fresh(volume, "write")?;
        let faults = faults_now(volume);
        if faults::draw_failure(faults.write_error_rate) {
            volume.stats.injected_write_errors += 1;
            return Err(injected_error("write", &self.path, "injected write error"));
        }
        if let Some(capacity_bytes) = faults.capacity_bytes
            && volume.used_bytes().saturating_add(bytes.len() as u64) > capacity_bytes
        {
            volume.stats.no_space_errors += 1;
            tracing::info!(target: "weir::trace", op = "write", path = %self.path.display(), "fault: storage full");
            return Err(StorageError::NoSpace { op: "write", path: self.path.clone() });
        }
        volume.file_mut(self.inode).expect("an open file's inode is live").current.extend_from_slice(bytes);
        Ok(())
    }

    async fn sync(&mut self) -> Result<(), StorageError> {
        let mut state = self.storage.begin_on(self.volume).await;
        let volume = &mut state.volumes[self.volume];
        self.check_fresh(volume, "fsync")?;
        if faults::draw_failure(faults_now(volume).fsync_error_rate) {
            volume.stats.injected_fsync_errors += 1;
            return Err(injected_error("fsync", &self.path, "injected fsync error"));
        }
        let file = volume.file_mut(self.inode).expect("an open file's inode is live");
        file.durable.clone_from(&file.current);
        file.truncated = false;
        Ok(())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        // A poisoned lock means a test already failed; panicking again here would abort.
        let Ok(mut state) = self.storage.shared.state.lock() else { return };
        let volume = &mut state.volumes[self.volume];
        if volume.generation != self.generation {
            return;
        }
        let Some(file) = volume.file_mut(self.inode) else { return };
        file.open_handles -= 1;
        let closed = file.open_handles == 0;
        // Only a file that was unlinked or renamed while open can have become garbage.
        if closed && volume.resolve(View::Current, &self.names) != Some(self.inode) {
            volume.collect_garbage();
        }
    }
}

#[async_trait]
impl Storage for SimStorage {
    async fn create(&self, path: &Path) -> Result<Box<dyn WriteFile>, StorageError> {
        let mut operation = self.begin(path).await;
        let names = std::mem::take(&mut operation.names);
        let volume = operation.volume();
        let inode = volume.create_file(&names, path)?;
        let generation = volume.generation;
        let file = SimFile {
            storage: self.clone(),
            volume: operation.volume,
            path: path.to_path_buf(),
            names,
            inode,
            generation,
        };
        Ok(Box::new(file))
    }

    async fn read(&self, path: &Path) -> Result<Vec<u8>, StorageError> {
        let mut operation = self.begin(path).await;
        let names = std::mem::take(&mut operation.names);
        Self::read_locked(operation.volume(), &names, path, <[u8]>::to_vec)
    }

    async fn read_range(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let (volume, _) = self.lock().route(&components(path));
        self.delay(volume).await;
        self.read_range_now(path, offset, len)
    }

    fn read_range_now(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let names = components(path);
        let mut state = self.lock();
        let (volume, prefix_len) = state.route(&names);
        let volume = &mut state.volumes[volume];
        volume.stats.operations += 1;
        Self::read_locked(volume, &names[prefix_len..], path, |data| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
            let end = start.saturating_add(len).min(data.len());
            data[start..end].to_vec()
        })
    }

    async fn file_len(&self, path: &Path) -> Result<u64, StorageError> {
        let mut operation = self.begin(path).await;
        let names = std::mem::take(&mut operation.names);
        let volume = operation.volume();
        let id = volume.file_id("stat", &names, path)?;
        Ok(volume.file(id).expect("resolved to a file").current.len() as u64)
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), StorageError> {
        let mut operation = self.begin(from).await;
        let to_full = components(to);
        let (to_volume, to_prefix_len) = operation.state.route(&to_full);
        if to_volume != operation.volume {
            return Err(io_error("rename", to, "cross-device link: the paths are on different volumes"));
        }
        if operation.state.mounted_below(&components(from)) {
            return Err(io_error("rename", from, "device or resource busy: a volume is mounted below it"));
        }
        let from_names = std::mem::take(&mut operation.names);
        operation.volume().rename(&from_names, &to_full[to_prefix_len..], from, to)
    }

    async fn sync_dir(&self, dir: &Path) -> Result<(), StorageError> {
        let mut operation = self.begin(dir).await;
        let names = std::mem::take(&mut operation.names);
        let volume = operation.volume();
        let Some(id) = volume.resolve(View::Current, &names).filter(|id| volume.is_dir(*id)) else {
            return Err(not_found("fsync directory", dir));
        };
        if volume.take_stale_barrier(id) {
            volume.stats.stale_directory_errors += 1;
            return Err(StorageError::Stale { op: "fsync directory", path: dir.to_path_buf() });
        }
        if faults::draw_failure(faults_now(volume).fsync_error_rate) {
            volume.stats.injected_fsync_errors += 1;
            return Err(injected_error("fsync directory", dir, "injected fsync error"));
        }
        volume.persist_dir(id);
        Ok(())
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<(), StorageError> {
        let mut operation = self.begin(dir).await;
        let names = std::mem::take(&mut operation.names);
        let mount_path = operation.state.mount_path(operation.volume);
        operation.volume().create_dir_all(&names, &mount_path)
    }

    async fn list(&self, dir: &Path) -> Result<Vec<String>, StorageError> {
        let mut operation = self.begin(dir).await;
        let names = std::mem::take(&mut operation.names);
        let volume = operation.volume();
        match volume.resolve(View::Current, &names).and_then(|id| volume.dir(id)) {
            // BTreeMap order: names come out sorted.
            Some(entries) => Ok(entries.current.keys().cloned().collect()),
            None => Err(not_found("list", dir)),
        }
    }

    async fn exists(&self, path: &Path) -> Result<bool, StorageError> {
        let mut operation = self.begin(path).await;
        let names = std::mem::take(&mut operation.names);
        Ok(operation.volume().resolve(View::Current, &names).is_some())
    }

    async fn is_dir(&self, path: &Path) -> Result<bool, StorageError> {
        let mut operation = self.begin(path).await;
        let names = std::mem::take(&mut operation.names);
        let volume = operation.volume();
        Ok(volume.resolve(View::Current, &names).is_some_and(|id| volume.is_dir(id)))
    }

    async fn remove_file(&self, path: &Path) -> Result<(), StorageError> {
        let mut operation = self.begin(path).await;
        let names = std::mem::take(&mut operation.names);
        operation.volume().remove_file(&names, path)
    }

    async fn remove_dir_all(&self, path: &Path) -> Result<(), StorageError> {
        let mut operation = self.begin(path).await;
        if operation.state.mounted_below(&components(path)) {
            return Err(io_error("remove", path, "device or resource busy: a volume is mounted below it"));
        }
        let names = std::mem::take(&mut operation.names);
        operation.volume().remove_dir_all(&names, path)
    }
}
