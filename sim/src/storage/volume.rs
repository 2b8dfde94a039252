//! One volume: an independent file system with its own inodes, its own unsynced changes,
//! its own faults and its own crashes. Paths here are component lists relative to the
//! volume's root; errors name the full path the caller gave.

use super::faults::{FaultWindow, StorageFaults, StorageStats};
use super::journal::{Change, Journal, Slot};
use engine::seam::storage::StorageError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub(super) type InodeId = u64;

/// The volume's root directory; it always exists.
pub(super) const ROOT: InodeId = 0;

/// At most this many directory changes stay unsynced on a volume. Past it the oldest is made
/// durable (with what it depends on), as a full journal forces a commit: a program that
/// never syncs a directory would otherwise keep every file it ever created and removed
/// there alive for a crash to bring back.
pub(super) const UNSYNCED_CHANGES_MAX: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum View {
    Current,
    Durable,
}

#[derive(Debug, Default)]
pub(super) struct FileInode {
    pub(super) current: Vec<u8>,
    pub(super) durable: Vec<u8>,
    /// `create` truncated the file since its last fsync, so `current` holds only what was
    /// written since. Otherwise `current` is `durable` followed by the unsynced appends.
    pub(super) truncated: bool,
    /// Write handles open on this inode; an open file keeps its inode alive when unlinked.
    pub(super) open_handles: u32,
}

impl FileInode {
    /// Whether a crash has anything of this file's data to decide.
    pub(super) fn has_unsynced_data(&self) -> bool {
        self.truncated || self.current.len() != self.durable.len()
    }
}

#[derive(Debug, Default)]
pub(super) struct DirInode {
    pub(super) current: BTreeMap<String, InodeId>,
    pub(super) durable: BTreeMap<String, InodeId>,
}

impl DirInode {
    pub(super) fn entries(&self, view: View) -> &BTreeMap<String, InodeId> {
        match view {
            View::Current => &self.current,
            View::Durable => &self.durable,
        }
    }
}

#[derive(Debug)]
pub(super) enum Inode {
    File(FileInode),
    Dir(DirInode),
}

pub(super) fn io_error(op: &'static str, path: &Path, message: &str) -> StorageError {
    StorageError::Io { op, path: path.to_path_buf(), message: message.to_string() }
}

/// An error the storage's fault model injects: traced, so that a run's timeline marks where it hit.
pub(super) fn injected_error(op: &'static str, path: &Path, message: &str) -> StorageError {
    tracing::info!(target: "weir::trace", op, path = %path.display(), "fault: storage error");
    io_error(op, path, message)
}

pub(super) fn not_found(op: &'static str, path: &Path) -> StorageError {
    StorageError::NotFound { op, path: path.to_path_buf() }
}

pub(super) struct Volume {
    pub(super) name: String,
    pub(super) inodes: BTreeMap<InodeId, Inode>,
    next_inode: InodeId,
    /// How many inodes the last sweep kept: see [`Volume::collect_garbage`].
    live_after_sweep: usize,
    pub(super) journal: Journal,
    pub(super) faults: StorageFaults,
    pub(super) windows: Vec<FaultWindow>,
    pub(super) stats: StorageStats,
    /// Directories whose unsynced changes straddled a crash, and how many of their
    /// `sync_dir` calls still owe a stale error: one per such change.
    pub(super) stale_barriers: BTreeMap<InodeId, u64>,
    /// Crashes and wipes so far; a handle opened in an earlier generation is stale.
    pub(super) generation: u64,
}

impl Volume {
    pub(super) fn new(name: String, faults: StorageFaults) -> Volume {
        Volume {
            name,
            inodes: BTreeMap::from([(ROOT, Inode::Dir(DirInode::default()))]),
            next_inode: ROOT + 1,
            live_after_sweep: 1,
            journal: Journal::default(),
            faults,
            windows: Vec::new(),
            stats: StorageStats::default(),
            stale_barriers: BTreeMap::new(),
            generation: 0,
        }
    }

    pub(super) fn allocate(&mut self, inode: Inode) -> InodeId {
        let id = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(id, inode);
        id
    }

    pub(super) fn dir(&self, id: InodeId) -> Option<&DirInode> {
        match self.inodes.get(&id) {
            Some(Inode::Dir(dir)) => Some(dir),
            _ => None,
        }
    }

    pub(super) fn dir_mut(&mut self, id: InodeId) -> Option<&mut DirInode> {
        match self.inodes.get_mut(&id) {
            Some(Inode::Dir(dir)) => Some(dir),
            _ => None,
        }
    }

    pub(super) fn file(&self, id: InodeId) -> Option<&FileInode> {
        match self.inodes.get(&id) {
            Some(Inode::File(file)) => Some(file),
            _ => None,
        }
    }

    pub(super) fn file_mut(&mut self, id: InodeId) -> Option<&mut FileInode> {
        match self.inodes.get_mut(&id) {
            Some(Inode::File(file)) => Some(file),
            _ => None,
        }
    }

    pub(super) fn is_dir(&self, id: InodeId) -> bool {
        self.dir(id).is_some()
    }

    /// The inode at `names` (path components below the volume's root) in `view`.
    pub(super) fn resolve(&self, view: View, names: &[String]) -> Option<InodeId> {
        let mut id = ROOT;
        for name in names {
            id = *self.dir(id)?.entries(view).get(name)?;
        }
        Some(id)
    }

    /// The current directory that holds `names`' last component, and that component.
    /// `None` for the root, or when the parent is missing or not a directory.
    pub(super) fn parent<'a>(&self, names: &'a [String]) -> Option<(InodeId, &'a String)> {
        let (name, parent_names) = names.split_last()?;
        let parent = self.resolve(View::Current, parent_names)?;
        self.is_dir(parent).then_some((parent, name))
    }

    /// The current entry at `names`: its directory, name and inode.
    fn entry<'a>(&self, names: &'a [String]) -> Option<(InodeId, &'a String, InodeId)> {
        let (parent, name) = self.parent(names)?;
        self.dir(parent)?.current.get(name).map(|id| (parent, name, *id))
    }

    /// The current file at `names`, for reading; `op` names the operation in errors.
    pub(super) fn file_id(&self, op: &'static str, names: &[String], path: &Path) -> Result<InodeId, StorageError> {
        match self.resolve(View::Current, names) {
            Some(id) if self.is_dir(id) => Err(io_error(op, path, "is a directory")),
            Some(id) => Ok(id),
            None => Err(not_found(op, path)),
        }
    }

    // ----- Durability -----

    /// Applies one change to the durable view. The change was recorded against the state
    /// its dependencies left, and every dependency is durable by now, so the slots must hold
    /// exactly what the change expects: anything else is a bug in the journal.
    pub(super) fn apply_durable(&mut self, change: &Change) {
        let set = |volume: &mut Volume, (dir, name): &Slot, value: Option<InodeId>, expected: Option<InodeId>| {
            let entries = &mut volume.dir_mut(*dir).expect("a journaled directory is live").durable;
            let previous = match value {
                Some(id) => entries.insert(name.clone(), id),
                None => entries.remove(name),
            };
            assert_eq!(
                previous, expected,
                "volume `{}`: durable `{name}` in directory {dir} before {change:?}",
                volume.name
            );
        };
        match change {
            Change::Link { slot, inode } => set(self, slot, Some(*inode), None),
            Change::Unlink { slot, inode } => set(self, slot, None, Some(*inode)),
            Change::Rename { from, to, inode, replaced } => {
                set(self, from, None, Some(*inode));
                set(self, to, Some(*inode), *replaced);
            }
        }
    }

    /// Makes `seeds` durable with everything they depend on, in the order they were made.
    fn persist(&mut self, seeds: impl IntoIterator<Item = u64>) {
        let closed = self.journal.closure(seeds);
        for change in self.journal.take(&closed) {
            self.apply_durable(&change);
        }
    }

    /// Makes every unsynced change of directory `dir` durable: `sync_dir`.
    pub(super) fn persist_dir(&mut self, dir: InodeId) {
        let seeds: Vec<u64> = self.journal.touching(dir).collect();
        self.persist(seeds);
        self.collect_garbage();
    }

    /// Makes the unsynced changes of one slot durable, before an operation that writes the
    /// slot durably at once (`create_dir_all`, `put_file`).
    fn persist_slot(&mut self, slot: &Slot) {
        if let Some(last) = self.journal.last_on_slot(slot) {
            self.persist([last]);
        }
    }

    /// Records a change made in the current view, keeping the journal within its bound.
    fn record(&mut self, change: Change, also_depends_on: Vec<u64>) {
        self.journal.record(change, also_depends_on);
        while self.journal.len() > UNSYNCED_CHANGES_MAX {
            let oldest = self.journal.oldest().expect("not empty");
            self.persist([oldest]);
        }
    }

    /// Consumes one stale error owed to `sync_dir` of `dir`, if any is.
    pub(super) fn take_stale_barrier(&mut self, dir: InodeId) -> bool {
        let Some(owed) = self.stale_barriers.get_mut(&dir) else { return false };
        *owed -= 1;
        if *owed == 0 {
            self.stale_barriers.remove(&dir);
        }
        true
    }

    // ----- Namespace operations (current view, journaled) -----

    /// `create`: a new file, or the existing one truncated (a pending data change).
    pub(super) fn create_file(&mut self, names: &[String], path: &Path) -> Result<InodeId, StorageError> {
        let Some((parent, name)) = self.parent(names) else {
            return Err(if names.is_empty() {
                io_error("create", path, "is a directory")
            } else {
                not_found("create", path)
            });
        };
        let existing = self.dir(parent).expect("resolved to a directory").current.get(name).copied();
        let inode = match existing {
            Some(id) if self.is_dir(id) => return Err(io_error("create", path, "is a directory")),
            Some(id) => {
                let file = self.file_mut(id).expect("not a directory");
                file.current.clear();
                file.truncated = true;
                id
            }
            None => {
                let id = self.allocate(Inode::File(FileInode::default()));
                self.dir_mut(parent).expect("resolved to a directory").current.insert(name.clone(), id);
                self.record(Change::Link { slot: (parent, name.clone()), inode: id }, Vec::new());
                id
            }
        };
        self.file_mut(inode).expect("a file").open_handles += 1;
        Ok(inode)
    }

    pub(super) fn rename(
        &mut self,
        from_names: &[String],
        to_names: &[String],
        from: &Path,
        to: &Path,
    ) -> Result<(), StorageError> {
        if from_names.is_empty() || to_names.is_empty() {
            return Err(io_error("rename", from, "cannot rename the root directory of a volume"));
        }
        let Some((to_parent, to_name)) = self.parent(to_names) else {
            return Err(not_found("rename", to));
        };
        let Some((from_parent, from_name, moved)) = self.entry(from_names) else {
            return Err(not_found("rename", from));
        };
        if from_names == to_names {
            return Ok(());
        }
        let moved_is_dir = self.is_dir(moved);
        if moved_is_dir && to_names.starts_with(from_names) {
            return Err(io_error("rename", from, "cannot move a directory into itself"));
        }
        let replaced = self.dir(to_parent).expect("resolved to a directory").current.get(to_name).copied();
        if let Some(replaced) = replaced {
            match (moved_is_dir, self.dir(replaced)) {
                (false, Some(_)) => return Err(io_error("rename", to, "is a directory")),
                (true, None) => return Err(io_error("rename", to, "not a directory")),
                (true, Some(dir)) if !dir.current.is_empty() => {
                    return Err(io_error("rename", to, "directory not empty"));
                }
                _ => {}
            }
        }
        self.dir_mut(from_parent).expect("resolved to a directory").current.remove(from_name);
        self.dir_mut(to_parent).expect("resolved to a directory").current.insert(to_name.clone(), moved);
        // Replacing an empty directory needs its entries' removals first, as `rmdir` does.
        let emptied: Vec<u64> = replaced.into_iter().flat_map(|dir| self.journal.touching(dir)).collect();
        let change = Change::Rename {
            from: (from_parent, from_name.clone()),
            to: (to_parent, to_name.clone()),
            inode: moved,
            replaced,
        };
        self.record(change, emptied);
        if replaced.is_some() {
            self.collect_garbage();
        }
        Ok(())
    }

    pub(super) fn remove_file(&mut self, names: &[String], path: &Path) -> Result<(), StorageError> {
        match self.entry(names) {
            Some((_, _, id)) if self.is_dir(id) => Err(io_error("remove", path, "is a directory")),
            Some((parent, name, id)) => {
                self.dir_mut(parent).expect("resolved to a directory").current.remove(name);
                self.record(Change::Unlink { slot: (parent, name.clone()), inode: id }, Vec::new());
                self.collect_garbage();
                Ok(())
            }
            None if names.is_empty() => Err(io_error("remove", path, "is a directory")),
            None => Err(not_found("remove", path)),
        }
    }

    pub(super) fn remove_dir_all(&mut self, names: &[String], path: &Path) -> Result<(), StorageError> {
        if names.is_empty() {
            return Err(io_error("remove", path, "cannot remove the root directory of a volume"));
        }
        let Some((parent, name, id)) = self.entry(names) else {
            return Err(not_found("remove", path));
        };
        // Unlinking the top entry removes the whole subtree from the current view. Its
        // durable entries stay until the parent is synced, and the removal can only become
        // durable after every unsynced change inside the subtree, as a real recursive
        // removal unlinks the entries before the directory.
        let mut inside = Vec::new();
        let mut stack = vec![id];
        while let Some(dir) = stack.pop() {
            let Some(entries) = self.dir(dir) else { continue };
            stack.extend(entries.current.values().copied());
            inside.extend(self.journal.touching(dir));
        }
        self.dir_mut(parent).expect("resolved to a directory").current.remove(name);
        self.record(Change::Unlink { slot: (parent, name.clone()), inode: id }, inside);
        self.collect_garbage();
        Ok(())
    }

    /// `create_dir_all`: missing directories are durable at once (see the module header).
    /// `mount_path` is the volume's mount point, for naming a file in the way.
    pub(super) fn create_dir_all(&mut self, names: &[String], mount_path: &Path) -> Result<(), StorageError> {
        let mut id = ROOT;
        let mut path = mount_path.to_path_buf();
        for name in names {
            path.push(name);
            id = match self.dir(id).expect("walking directories").current.get(name).copied() {
                Some(child) if self.is_dir(child) => child,
                Some(_) => return Err(StorageError::AlreadyExists { op: "create directory", path }),
                None => self.make_dir_durably(id, name),
            };
        }
        Ok(())
    }

    /// A new directory `name` in `parent`, durable at once in both views.
    fn make_dir_durably(&mut self, parent: InodeId, name: &str) -> InodeId {
        self.persist_slot(&(parent, name.to_string()));
        let child = self.allocate(Inode::Dir(DirInode::default()));
        let entries = self.dir_mut(parent).expect("walking directories");
        entries.current.insert(name.to_string(), child);
        let durable_before = entries.durable.insert(name.to_string(), child);
        assert_eq!(durable_before, None, "a name absent in the current view with no pending change is absent durably");
        child
    }

    /// `put_file`: a whole file, durable at once with its directories.
    ///
    /// # Panics
    ///
    /// If a file stands where a directory should be, or the path names a directory.
    pub(super) fn put_file(&mut self, names: &[String], bytes: &[u8], path: &Path) {
        let (name, parent_names) = names.split_last().expect("put_file needs a file path, not a volume's root");
        let mut dir = ROOT;
        for part in parent_names {
            dir = match self.dir(dir).expect("walking directories").current.get(part).copied() {
                Some(child) if self.is_dir(child) => child,
                Some(_) => panic!("put_file `{}`: `{part}` is a file", path.display()),
                None => self.make_dir_durably(dir, part),
            };
        }
        let existing = self.dir(dir).expect("the parent").current.get(name).copied();
        assert!(!existing.is_some_and(|id| self.is_dir(id)), "put_file `{}`: it is a directory", path.display());
        self.persist_slot(&(dir, name.clone()));
        let file = self.allocate(Inode::File(FileInode {
            current: bytes.to_vec(),
            durable: bytes.to_vec(),
            truncated: false,
            open_handles: 0,
        }));
        let parent = self.dir_mut(dir).expect("the parent");
        parent.current.insert(name.clone(), file);
        let durable_before = parent.durable.insert(name.clone(), file);
        assert_eq!(durable_before, existing, "with no pending change the durable entry is the current one");
        self.collect_garbage();
    }

    // ----- Space, garbage, listings -----

    /// Bytes held by files reachable in the current view or open for writing.
    pub(super) fn used_bytes(&self) -> u64 {
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
    pub(super) fn collect_garbage(&mut self) {
        if self.inodes.len() > 2 * self.live_after_sweep + 64 {
            self.sweep();
        }
    }

    /// Frees inodes that neither view reaches, no handle holds open and no unsynced change
    /// names. Directories reached in either view keep the entries of both, so nothing a
    /// crash could bring back is freed.
    pub(super) fn sweep(&mut self) {
        let mut live = BTreeSet::new();
        let mut stack: Vec<InodeId> = vec![ROOT];
        stack.extend(self.inodes.iter().filter_map(|(id, inode)| match inode {
            Inode::File(file) if file.open_handles > 0 => Some(*id),
            _ => None,
        }));
        stack.extend(self.journal.inodes());
        while let Some(id) = stack.pop() {
            if !live.insert(id) {
                continue;
            }
            if let Some(dir) = self.dir(id) {
                stack.extend(dir.current.values().chain(dir.durable.values()).copied());
            }
        }
        self.inodes.retain(|id, _| live.contains(id));
        self.stale_barriers.retain(|id, _| live.contains(id));
        self.live_after_sweep = self.inodes.len();
    }

    /// The files of `view`, as paths relative to the volume's root, sorted.
    pub(super) fn files(&self, view: View) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut stack = vec![(ROOT, PathBuf::new())];
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

    /// Checks that the durable view with every unsynced change applied is the current view,
    /// directory by directory: the journal describes exactly the difference.
    #[cfg(test)]
    pub(super) fn assert_journal_matches(&self) {
        let mut durable: BTreeMap<InodeId, BTreeMap<String, InodeId>> = self
            .inodes
            .iter()
            .filter_map(|(id, inode)| match inode {
                Inode::Dir(dir) => Some((*id, dir.durable.clone())),
                Inode::File(_) => None,
            })
            .collect();
        for change in self.journal.changes() {
            let mut set = |(dir, name): &Slot, value: Option<InodeId>| {
                let entries = durable.get_mut(dir).expect("a live directory");
                match value {
                    Some(id) => entries.insert(name.clone(), id),
                    None => entries.remove(name),
                };
            };
            match change {
                Change::Link { slot, inode } => set(slot, Some(*inode)),
                Change::Unlink { slot, .. } => set(slot, None),
                Change::Rename { from, to, inode, .. } => {
                    set(from, None);
                    set(to, Some(*inode));
                }
            }
        }
        for (id, inode) in &self.inodes {
            if let Inode::Dir(dir) = inode {
                assert_eq!(durable[id], dir.current, "directory {id}: durable plus unsynced changes is current");
            }
        }
    }
}
