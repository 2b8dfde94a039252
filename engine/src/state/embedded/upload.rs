//! A checkpoint's asynchronous part for the embedded store: the frozen memtables are
//! flushed into a sorted file of their own, and the frozen version's files are copied into the
//! checkpoint's directory, except (incremental checkpoints) those that a checkpoint known to be
//! complete uploaded already, which the snapshot refers to instead (Flink's placeholders).
//!
//! The subtask learns that a checkpoint completed only from its notification, which may be
//! lost: the [`UploadLedger`] builds on the newest checkpoint it was told about, never on one
//! merely acknowledged, so a snapshot never refers to a file of an aborted checkpoint. After a
//! lost notification it uploads again what it cannot refer to. Every file goes into
//! `chk-<n>/` first; for an incremental checkpoint the job manager moves the new shared files
//! into `shared/` when it registers them, so that a checkpoint aborted before that leaves
//! nothing in `shared/` (its directory goes, and a late upload into it fails).

use super::canonical;
use super::frozen::FrozenStore;
use super::job::{self, JobContext};
use super::store::SnapshotFlush;
use crate::ids::CheckpointId;
use crate::keygroup::KeyGroupRange;
use crate::seam::storage::copy_into;
use crate::state::StateError;
use crate::state::snapshot::{
    EmbeddedFile, EmbeddedSnapshot, EmbeddedTombstone, FileScope, FrozenStoreState, KeyGroupSnapshot, UploadTarget,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Snapshots a subtask keeps the uploads of while waiting to hear that they completed: a
/// bound, so that a subtask whose notifications are all lost does not grow without end.
const PENDING_UPLOADS_MAX: usize = 16;

/// Where each of the store's files went, per checkpoint: what an incremental checkpoint
/// builds on.
#[derive(Debug, Default)]
pub struct UploadLedger {
    /// The newest checkpoint this subtask knows completed, with uploads recorded.
    confirmed: Option<CheckpointId>,
    /// By checkpoint: the store's files (by local file number) and where that checkpoint put
    /// them.
    uploads: BTreeMap<CheckpointId, BTreeMap<u64, EmbeddedFile>>,
}

impl UploadLedger {
    /// A ledger that builds on a restored checkpoint the job owns: `files` are the restored
    /// store's files by their new local numbers.
    pub fn restored(checkpoint: CheckpointId, files: BTreeMap<u64, EmbeddedFile>) -> UploadLedger {
        let mut uploads = BTreeMap::new();
        uploads.insert(checkpoint, files);
        UploadLedger { confirmed: Some(checkpoint), uploads }
    }

    /// The files of the newest confirmed checkpoint, which a new snapshot may refer to.
    fn base(&self) -> Option<&BTreeMap<u64, EmbeddedFile>> {
        self.uploads.get(&self.confirmed?)
    }

    /// The confirmed checkpoint a snapshot builds on, if any.
    pub fn confirmed(&self) -> Option<CheckpointId> {
        self.confirmed.filter(|c| self.uploads.contains_key(c))
    }

    fn record(&mut self, checkpoint: CheckpointId, files: BTreeMap<u64, EmbeddedFile>) {
        if self.confirmed.is_some_and(|confirmed| checkpoint <= confirmed) {
            return;
        }
        self.uploads.insert(checkpoint, files);
        while self.uploads.len() > PENDING_UPLOADS_MAX {
            let oldest = *self.uploads.keys().find(|id| Some(**id) != self.confirmed).expect("more than one upload");
            self.uploads.remove(&oldest);
        }
    }

    /// `checkpoint` completed (and with it every lower one that did): later snapshots build
    /// on its files. A checkpoint this subtask has no uploads of (a savepoint, a checkpoint
    /// of an earlier attempt) changes nothing: its files are not known here.
    pub fn confirm(&mut self, checkpoint: CheckpointId) {
        if self.confirmed.is_some_and(|confirmed| checkpoint <= confirmed) || !self.uploads.contains_key(&checkpoint) {
            return;
        }
        self.confirmed = Some(checkpoint);
        self.uploads.retain(|id, _| *id >= checkpoint);
    }
}

/// The name a file of store incarnation `incarnation` gets when checkpoint `checkpoint`
/// uploads it: unique in the job, since incarnations are drawn at random and file numbers
/// only grow within one.
pub fn upload_name(incarnation: u64, number: u64, checkpoint: CheckpointId) -> String {
    format!("{incarnation:016x}-{number:08}-c{}.sst", checkpoint.0)
}

/// An embedded store frozen by a snapshot's synchronous part.
pub struct FrozenUpload {
    pub frozen: FrozenStore,
    /// The frozen memtables, when the store adopts the file this snapshot flushes them into.
    pub adopt: Option<Arc<SnapshotFlush>>,
    /// The states' names by namespace, restored ones that no access registered included.
    pub namespaces: BTreeMap<u16, String>,
    pub range: KeyGroupRange,
    pub context: JobContext,
    pub incarnation: u64,
    pub ledger: Arc<Mutex<UploadLedger>>,
}

impl Drop for FrozenUpload {
    fn drop(&mut self) {
        // An upload that failed or never ran wrote nothing for the store to adopt.
        if let Some(offer) = &self.adopt {
            offer.abandon();
        }
    }
}

impl FrozenUpload {
    /// Copies the store's file at `path` into the checkpoint as `name`, a chunk at a time (a
    /// sorted file can be as large as the memtables' share), checking it against `expected`
    /// (size and CRC-32) on the way.
    async fn copy(
        &self,
        target: &UploadTarget,
        path: &std::path::Path,
        name: &str,
        expected: (u64, u32),
    ) -> Result<(), StateError> {
        let mut file = target.storage.create(&target.dir.join(name)).await?;
        let mut checksum = crc32fast::Hasher::new();
        let copied =
            copy_into(self.context.storage.as_ref(), path, file.as_mut(), |chunk| checksum.update(chunk)).await?;
        let actual = (copied, checksum.finalize());
        if actual != expected {
            // A local file that is not what the store wrote: a checkpoint holding it would
            // restore wrong state. The copy is never synced nor listed, and goes with the
            // checkpoint's directory when the checkpoint is declined.
            return Err(StateError::Corrupt {
                file: path.to_path_buf(),
                offset: 0,
                message: format!(
                    "{} bytes with checksum {:#010x}, but the store wrote {} bytes with checksum {:#010x}",
                    actual.0, actual.1, expected.0, expected.1
                ),
            });
        }
        file.sync().await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl FrozenStoreState for FrozenUpload {
    fn encode(self: Box<Self>) -> Result<Vec<KeyGroupSnapshot>, StateError> {
        canonical::encode_key_groups(&self.frozen, &self.namespaces, self.range)
    }

    async fn upload(self: Box<Self>, target: &UploadTarget) -> Result<EmbeddedSnapshot, StateError> {
        let scope = if target.incremental { FileScope::Shared } else { FileScope::Exclusive };
        let base: BTreeMap<u64, EmbeddedFile> = if target.incremental {
            self.ledger.lock().expect("ledger lock").base().cloned().unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        let mut files = Vec::new();
        let mut uploaded: BTreeMap<u64, EmbeddedFile> = BTreeMap::new();
        // The frozen memtables become level 0's newest file, which the store adopts as their flush
        // (then the next checkpoint refers to it) when it has not flushed them itself meanwhile.
        let version = self.frozen.version().clone();
        let memtables = self.frozen.memtables().to_vec();
        if memtables.iter().any(|m| !m.is_empty()) {
            self.context.storage.create_dir_all(&self.context.dir).await?;
            let output = job::flush(self.context.clone(), memtables, version.tombstones().to_vec(), false).await?;
            for table in &output.files {
                let meta = table.meta();
                let name = upload_name(self.incarnation, meta.number, target.checkpoint);
                self.copy(target, table.path(), &name, (meta.size_bytes, meta.checksum_crc32)).await?;
                let file = EmbeddedFile {
                    name,
                    scope,
                    level: 0,
                    size_bytes: meta.size_bytes,
                    checksum: meta.checksum_crc32,
                    uploaded_by: target.checkpoint,
                };
                uploaded.insert(meta.number, file.clone());
                files.push(file);
            }
            if let Some(offer) = &self.adopt {
                offer.done(output);
            }
        }
        for (level, table) in version.tables() {
            let meta = table.meta();
            let file = match base.get(&meta.number) {
                Some(known) => EmbeddedFile { level: level as u32, ..known.clone() },
                None => {
                    let name = upload_name(self.incarnation, meta.number, target.checkpoint);
                    self.copy(target, table.path(), &name, (meta.size_bytes, meta.checksum_crc32)).await?;
                    EmbeddedFile {
                        name,
                        scope,
                        level: level as u32,
                        size_bytes: meta.size_bytes,
                        checksum: meta.checksum_crc32,
                        uploaded_by: target.checkpoint,
                    }
                }
            };
            uploaded.insert(meta.number, file.clone());
            files.push(file);
        }
        if !files.is_empty() {
            target.storage.sync_dir(&target.dir).await?;
        }
        if target.incremental {
            self.ledger.lock().expect("ledger lock").record(target.checkpoint, uploaded);
        }
        let tombstones = version
            .tombstones()
            .iter()
            .map(|t| EmbeddedTombstone { start: t.start.clone(), end: t.end.clone(), seq: t.seq })
            .collect();
        Ok(EmbeddedSnapshot {
            key_groups: self.range,
            namespaces: self.namespaces.iter().map(|(namespace, name)| (*namespace, name.clone())).collect(),
            files,
            tombstones,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> EmbeddedFile {
        EmbeddedFile {
            name: name.into(),
            scope: FileScope::Shared,
            level: 1,
            size_bytes: 1,
            checksum: 0,
            uploaded_by: CheckpointId(1),
        }
    }

    #[test]
    fn a_snapshot_builds_only_on_a_checkpoint_it_was_told_completed() {
        let mut ledger = UploadLedger::default();
        ledger.record(CheckpointId(1), [(7, file("a"))].into());
        ledger.record(CheckpointId(2), [(7, file("a")), (8, file("b"))].into());
        // Acknowledged is not complete: nothing to build on yet.
        assert_eq!(ledger.base(), None);
        ledger.confirm(CheckpointId(2));
        assert_eq!(ledger.base().map(|b| b.len()), Some(2));
        // Older and unknown notifications change nothing.
        ledger.confirm(CheckpointId(1));
        ledger.confirm(CheckpointId(9));
        assert_eq!(ledger.confirmed(), Some(CheckpointId(2)));
        // An upload at or below the confirmed checkpoint is stale.
        ledger.record(CheckpointId(2), BTreeMap::new());
        assert_eq!(ledger.base().map(|b| b.len()), Some(2));
    }

    #[test]
    fn lost_notifications_keep_the_ledger_bounded() {
        let mut ledger = UploadLedger::default();
        ledger.record(CheckpointId(1), [(1, file("a"))].into());
        ledger.confirm(CheckpointId(1));
        for id in 2..100 {
            ledger.record(CheckpointId(id), [(id, file("x"))].into());
        }
        assert!(ledger.uploads.len() <= PENDING_UPLOADS_MAX);
        assert_eq!(ledger.confirmed(), Some(CheckpointId(1)));
        ledger.confirm(CheckpointId(99));
        assert_eq!(ledger.confirmed(), Some(CheckpointId(99)));
        assert_eq!(ledger.uploads.len(), 1);
    }
}
