//! The store's files on local disk: their names, and the graveyard where a file goes when
//! the last holder of it (the live version, a frozen snapshot, a compaction reading it, or a
//! write that did not finish) lets go, to be removed by the next maintenance call.
//!
//! A store writes into a directory of its own, `<work dir>/store-<incarnation>`, where the
//! incarnation is drawn at random (from the simulation's seed under simulation) when the
//! store opens. File numbers only grow within a store, and a restored store is a new
//! incarnation, so a file name is never reused, not after a crash and not after a restore.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The prefix of a store directory's name in the work directory.
pub const STORE_DIR_PREFIX: &str = "store-";

/// The directory of the store incarnation `incarnation` in `work_dir`.
pub fn store_dir(work_dir: &Path, incarnation: u64) -> PathBuf {
    work_dir.join(format!("{STORE_DIR_PREFIX}{incarnation:016x}"))
}

/// The name of sorted file `number`.
pub fn table_name(number: u64) -> String {
    format!("{number:08}.sst")
}

/// Paths of files nobody needs any more, removed by maintenance.
#[derive(Debug, Default)]
pub struct Graveyard {
    paths: Mutex<Vec<PathBuf>>,
}

impl Graveyard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.paths.lock().expect("the graveyard's lock is never poisoned")
    }

    pub fn bury(&self, path: PathBuf) {
        self.lock().push(path);
    }

    /// The oldest buried path, still buried (removed only once its file is).
    pub fn first(&self) -> Option<PathBuf> {
        self.lock().first().cloned()
    }

    pub fn forget(&self, path: &Path) {
        let mut paths = self.lock();
        if let Some(position) = paths.iter().position(|p| p == path) {
            paths.remove(position);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Holds a file's place: when dropped, the file goes to the graveyard.
#[derive(Debug)]
pub struct FileGuard {
    path: PathBuf,
    graveyard: Option<Arc<Graveyard>>,
}

impl FileGuard {
    /// A guard burying `path` in `graveyard` (`None`: a file this store does not own).
    pub fn new(path: PathBuf, graveyard: Option<Arc<Graveyard>>) -> FileGuard {
        FileGuard { path, graveyard }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        if let Some(graveyard) = &self.graveyard {
            graveyard.bury(std::mem::take(&mut self.path));
        }
    }
}
