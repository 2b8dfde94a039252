//! The shared-state registry (Flink's `SharedStateRegistry`): which checkpoints refer to each
//! file in the job's `shared/` directory, so that a file is deleted exactly when nothing can
//! need it any more. Pure bookkeeping inside the coordinator; the job manager deletes.
//!
//! The rules:
//!
//! - A checkpoint's acknowledgement lists the shared files its subtask's snapshot needs: new
//!   ones it uploaded (their uploading checkpoint is this one) and older ones it refers to.
//!   Both are registered for the checkpoint at once, while it is pending, so that no file an
//!   acknowledgement refers to is deleted before the checkpoint completes or aborts.
//! - An older file must still be registered when an acknowledgement refers to it: a subtask
//!   builds only on checkpoints it was told completed, but that checkpoint may have been
//!   subsumed since, and its files deleted. Then the checkpoint cannot complete (it would
//!   refer to a file that is gone) and is aborted; the subtask uploads again once it hears of
//!   a newer checkpoint.
//! - When a checkpoint completes, its references stay; when it leaves the retained set, or
//!   aborts, they go. A file no retained and no pending checkpoint refers to is deleted. The
//!   coordinator decides that only in [`super::coordinator::Coordinator::completion_succeeded`]
//!   (after the subsuming checkpoint's `_metadata` is durable) and on aborts.
//! - After a job manager failover the registry is rebuilt from the retained checkpoints'
//!   `_metadata`. A job restored with `-s` starts with an empty registry: it never refers to
//!   the restored checkpoint's files (its first checkpoint uploads everything), so it never
//!   deletes them (Flink's NO_CLAIM).

use crate::ids::CheckpointId;
use std::collections::{BTreeMap, BTreeSet};

/// A shared file as a checkpoint refers to it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SharedFile {
    /// Its name in `shared/`, unique in the job.
    pub name: String,
    /// The checkpoint that uploaded it.
    pub uploaded_by: CheckpointId,
}

/// What a snapshot's state says about shared files.
pub trait SharedReferences {
    /// The shared files the state needs, new and old.
    fn shared_files(&self) -> Vec<SharedFile>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    uploaded_by: CheckpointId,
    /// Completed checkpoints, still retained, that refer to the file.
    retained: BTreeSet<CheckpointId>,
    /// Pending checkpoints whose acknowledgements refer to the file.
    pending: BTreeSet<CheckpointId>,
}

impl Entry {
    fn new(uploaded_by: CheckpointId) -> Entry {
        Entry { uploaded_by, retained: BTreeSet::new(), pending: BTreeSet::new() }
    }
}

/// Reference counts of the job's shared files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedStateRegistry {
    files: BTreeMap<String, Entry>,
}

impl SharedStateRegistry {
    /// A registry of what `retained` (each completed checkpoint with the shared files its
    /// `_metadata` lists) refers to.
    pub fn rebuild(retained: impl IntoIterator<Item = (CheckpointId, Vec<SharedFile>)>) -> SharedStateRegistry {
        let mut registry = SharedStateRegistry::default();
        for (id, files) in retained {
            for file in files {
                let entry = registry.files.entry(file.name).or_insert_with(|| Entry::new(file.uploaded_by));
                entry.retained.insert(id);
            }
        }
        registry
    }

    /// Pending checkpoint `id` refers to `files` (one acknowledgement's). `Err` with the first
    /// older file that is no longer registered: then nothing is registered, and `id` must abort.
    pub fn reference(&mut self, id: CheckpointId, files: &[SharedFile]) -> Result<(), SharedFile> {
        if let Some(gone) = files.iter().find(|f| f.uploaded_by != id && !self.files.contains_key(&f.name)) {
            return Err(gone.clone());
        }
        for file in files {
            assert!(file.uploaded_by <= id, "checkpoint {id} refers to `{}` of a later checkpoint", file.name);
            let entry = self.files.entry(file.name.clone()).or_insert_with(|| Entry::new(file.uploaded_by));
            assert_eq!(entry.uploaded_by, file.uploaded_by, "`{}` uploaded by two checkpoints", file.name);
            entry.pending.insert(id);
        }
        Ok(())
    }

    /// Checkpoint `id`'s `_metadata` is durable: its references are a retained checkpoint's.
    pub fn complete(&mut self, id: CheckpointId) {
        for entry in self.files.values_mut() {
            if entry.pending.remove(&id) {
                entry.retained.insert(id);
            }
        }
    }

    /// Pending checkpoint `id` aborted: its references go. Returns the files nothing refers to
    /// any more, which are forgotten here and must be deleted.
    pub fn abort(&mut self, id: CheckpointId) -> Vec<String> {
        self.release(|entry| entry.pending.remove(&id))
    }

    /// Checkpoint `id` left the retained set: its references go. Returns the files nothing
    /// refers to any more, which are forgotten here and must be deleted.
    pub fn discard(&mut self, id: CheckpointId) -> Vec<String> {
        self.release(|entry| entry.retained.remove(&id))
    }

    fn release(&mut self, mut drop_reference: impl FnMut(&mut Entry) -> bool) -> Vec<String> {
        let mut unreferenced = Vec::new();
        for (name, entry) in self.files.iter_mut() {
            if drop_reference(entry) && entry.retained.is_empty() && entry.pending.is_empty() {
                unreferenced.push(name.clone());
            }
        }
        for name in &unreferenced {
            self.files.remove(name);
        }
        unreferenced
    }

    /// Every registered file: what the job's `shared/` may hold.
    pub fn live(&self) -> BTreeSet<String> {
        self.files.keys().cloned().collect()
    }

    /// The files checkpoint `id` uploaded that are registered.
    pub fn uploaded_by(&self, id: CheckpointId) -> Vec<String> {
        self.files.iter().filter(|(_, e)| e.uploaded_by == id).map(|(name, _)| name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, by: u64) -> SharedFile {
        SharedFile { name: name.into(), uploaded_by: CheckpointId(by) }
    }

    #[test]
    fn a_file_goes_when_the_last_checkpoint_referring_to_it_goes() {
        let mut r = SharedStateRegistry::default();
        r.reference(CheckpointId(1), &[f("a", 1), f("b", 1)]).unwrap();
        r.complete(CheckpointId(1));
        // Checkpoint 2 keeps `a`, replaces `b` with `c`.
        r.reference(CheckpointId(2), &[f("a", 1), f("c", 2)]).unwrap();
        r.complete(CheckpointId(2));
        assert_eq!(r.discard(CheckpointId(1)), ["b"]);
        assert_eq!(r.live(), ["a", "c"].map(String::from).into());
        assert_eq!(r.discard(CheckpointId(2)), ["a", "c"]);
        assert!(r.live().is_empty());
    }

    #[test]
    fn a_pending_checkpoints_references_keep_a_subsumed_checkpoints_files() {
        let mut r = SharedStateRegistry::default();
        r.reference(CheckpointId(1), &[f("a", 1)]).unwrap();
        r.complete(CheckpointId(1));
        // 3 acked referring to `a`; 2 re-uploaded it as `a2` and completes, subsuming 1.
        r.reference(CheckpointId(3), &[f("a", 1)]).unwrap();
        r.reference(CheckpointId(2), &[f("a2", 2)]).unwrap();
        r.complete(CheckpointId(2));
        assert_eq!(r.discard(CheckpointId(1)), Vec::<String>::new(), "3 still needs `a`");
        assert_eq!(r.abort(CheckpointId(3)), ["a"]);
    }

    #[test]
    fn a_reference_to_a_deleted_file_is_refused_and_registers_nothing() {
        let mut r = SharedStateRegistry::default();
        r.reference(CheckpointId(1), &[f("a", 1)]).unwrap();
        r.complete(CheckpointId(1));
        assert_eq!(r.discard(CheckpointId(1)), ["a"]);
        assert_eq!(r.reference(CheckpointId(4), &[f("n", 4), f("a", 1)]), Err(f("a", 1)));
        assert!(r.live().is_empty());
    }

    #[test]
    fn an_aborted_checkpoints_new_files_go_with_it() {
        let mut r = SharedStateRegistry::default();
        r.reference(CheckpointId(5), &[f("x", 5), f("y", 5)]).unwrap();
        assert_eq!(r.uploaded_by(CheckpointId(5)), ["x", "y"]);
        assert_eq!(r.abort(CheckpointId(5)), ["x", "y"]);
        assert_eq!(r.abort(CheckpointId(5)), Vec::<String>::new());
    }

    #[test]
    fn a_rebuilt_registry_counts_what_the_retained_checkpoints_list() {
        let mut r = SharedStateRegistry::rebuild([
            (CheckpointId(3), vec![f("a", 1), f("b", 3)]),
            (CheckpointId(4), vec![f("a", 1), f("c", 4)]),
        ]);
        assert_eq!(r.discard(CheckpointId(3)), ["b"]);
        assert_eq!(r.discard(CheckpointId(4)), ["a", "c"]);
    }
}
