//! Checkpoint storage: the directory layout, the asynchronous part of a snapshot (writing a
//! subtask's state as the backend dictates), and the `_metadata` file.
//!
//! Layout, as Flink's: `<dir>/<job-id>/chk-<n>/_metadata` plus the checkpoint's exclusive
//! state files beside it, `<dir>/<job-id>/shared/` for files several checkpoints reference
//! and `<dir>/<job-id>/taskowned/` for files the job manager never deletes. A checkpoint is
//! complete exactly when its `_metadata` exists: it is written last, atomically.

use super::metadata::{
    self, AckedState, CheckpointMetadata, FileRef, KeyGroupHandle, METADATA_FILE_NAME, StateHandle, SubtaskState,
};
use crate::config::StateBackendKind;
use crate::faults::{CheckpointPhase, Faults};
use crate::ids::{CheckpointId, JobId, OperatorUid, SubtaskInfo};
use crate::seam::storage::{StorageError, StorageRef};
use crate::state::StateError;
use crate::state::snapshot::{SyncSnapshot, UploadTarget};
use std::path::{Path, PathBuf};

/// `<base>/<job-id>`.
pub fn job_dir(base: &Path, job: JobId) -> PathBuf {
    base.join(job.to_string())
}

/// `<job dir>/chk-<n>`.
pub fn checkpoint_dir(job_dir: &Path, id: CheckpointId) -> PathBuf {
    job_dir.join(format!("chk-{}", id.0))
}

/// `<job dir>/shared`: files several checkpoints refer to (the embedded backend's incremental checkpoints).
pub fn shared_dir(job_dir: &Path) -> PathBuf {
    job_dir.join(crate::state::snapshot::SHARED_DIR_NAME)
}

/// The checkpoint that uploaded a shared file, from its name (`…-c<n>.sst`).
pub fn shared_file_checkpoint(name: &str) -> Option<CheckpointId> {
    let stem = name.strip_suffix(".sst")?;
    let (_, id) = stem.rsplit_once("-c")?;
    id.parse().ok().map(CheckpointId)
}

/// Registers checkpoint `metadata`'s new shared files: moves each from the checkpoint's directory `dir` into
/// `shared/` beside it, and makes the moves durable. Nothing is in `shared/` that no registration put there, so
/// what an aborted checkpoint uploaded goes with its directory.
pub async fn register_shared_files(
    storage: &StorageRef,
    dir: &Path,
    metadata: &CheckpointMetadata,
) -> Result<(), StorageError> {
    let id = metadata.checkpoint_id;
    let new: Vec<String> =
        metadata.shared_references().into_iter().filter(|file| file.uploaded_by == id).map(|file| file.name).collect();
    if new.is_empty() {
        return Ok(());
    }
    let shared = crate::state::snapshot::shared_path(dir, "");
    for name in &new {
        storage.rename(&dir.join(name), &shared.join(name)).await?;
    }
    storage.sync_dir(&shared).await?;
    storage.sync_dir(dir).await?;
    // A storage crash between a rename and the fsyncs may lose the rename while the fsyncs, issued after the crash,
    // succeed: the files are registered only if they are in `shared/` now.
    for name in &new {
        if !storage.exists(&shared.join(name)).await? {
            return Err(StorageError::Stale { op: "rename", path: shared.join(name) });
        }
    }
    Ok(())
}

/// The checkpoint id of a `chk-<n>` directory name.
pub fn parse_checkpoint_dir_name(name: &str) -> Option<CheckpointId> {
    name.strip_prefix("chk-").and_then(|n| n.parse().ok()).map(CheckpointId)
}

/// Why the asynchronous part of a snapshot failed; the subtask declines the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error(
        "operator `{operator}` subtask {subtask}: state of {size_bytes} bytes exceeds the jobmanager backend's limit of {limit_bytes} bytes (weir.state.jobmanager.max-state-size); use the filesystem backend"
    )]
    StateTooLarge { operator: OperatorUid, subtask: u32, size_bytes: u64, limit_bytes: u64 },
    #[error("the filesystem state backend needs a checkpoint directory (state.checkpoints.dir)")]
    NoCheckpointDirectory,
    /// Encoding or uploading an operator's keyed state failed.
    #[error("operator `{operator}`: {source}")]
    State { operator: OperatorUid, source: StateError },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Where and how subtasks write their checkpointed state.
pub struct CheckpointWriter {
    pub storage: StorageRef,
    /// `<dir>/<job-id>`, or `None` when checkpoints live only in the job manager's memory.
    pub job_dir: Option<PathBuf>,
    pub backend: StateBackendKind,
    /// The embedded backend shares files across checkpoints (`state.backend.incremental`).
    pub incremental: bool,
    pub inline_threshold_bytes: u64,
    pub jobmanager_max_state_bytes: u64,
    /// Savepoints in progress and their directories: their state goes there, not to
    /// `chk-<n>`.
    pub savepoints: std::sync::Mutex<std::collections::BTreeMap<CheckpointId, PathBuf>>,
}

impl CheckpointWriter {
    /// The asynchronous part of a snapshot: encodes (or, for the embedded backend's
    /// checkpoints, uploads) `snapshot` for checkpoint `id`, writes it, and returns the handles
    /// the subtask acknowledges with.
    pub async fn write(
        &self,
        id: CheckpointId,
        info: &SubtaskInfo,
        snapshot: SyncSnapshot,
    ) -> Result<(AckedState, Vec<PathBuf>), WriteError> {
        let mut acked = AckedState::new();
        // Every file the handles reference, durable before the ack names them.
        let mut files = Vec::new();
        let savepoint_dir = self.savepoints.lock().expect("savepoints lock").get(&id).cloned();
        // Savepoints are canonical and self-contained whatever the backend: key groups in
        // files beside `_metadata` (above the inline threshold), with relative paths.
        let backend = if savepoint_dir.is_some() { StateBackendKind::FileSystem } else { self.backend };
        let target = match (backend, &self.job_dir) {
            (StateBackendKind::Embedded, Some(job_dir)) => Some(UploadTarget {
                storage: self.storage.clone(),
                dir: checkpoint_dir(job_dir, id),
                checkpoint: id,
                incremental: self.incremental,
            }),
            (StateBackendKind::Embedded, None) => return Err(WriteError::NoCheckpointDirectory),
            _ => None,
        };
        let snapshot = snapshot
            .materialize_into(target.as_ref())
            .await
            .map_err(|(operator, source)| WriteError::State { operator, source })?;
        match backend {
            StateBackendKind::JobManager => {
                for (uid, operator) in snapshot.operators {
                    let size = operator.size_bytes() as u64;
                    if size > self.jobmanager_max_state_bytes {
                        return Err(WriteError::StateTooLarge {
                            operator: uid,
                            subtask: info.subtask.0,
                            size_bytes: size,
                            limit_bytes: self.jobmanager_max_state_bytes,
                        });
                    }
                    acked.insert(uid, inline(operator));
                }
            }
            StateBackendKind::FileSystem | StateBackendKind::Embedded => {
                let dir = match savepoint_dir {
                    Some(dir) => dir,
                    None => checkpoint_dir(self.job_dir.as_ref().ok_or(WriteError::NoCheckpointDirectory)?, id),
                };
                let mut file_bytes: Vec<u8> = Vec::new();
                let name = format!("state-{}-{}-{}", info.vertex.0, info.subtask.0, info.attempt.0);
                for (uid, mut operator) in snapshot.operators {
                    if let Some(store) = operator.stores.pop() {
                        assert!(operator.stores.is_empty() && operator.keyed.is_empty(), "one store per operator");
                        // The files this checkpoint uploaded are in its own directory until the job manager moves the
                        // shared ones.
                        files.extend(
                            store.snapshot.files.iter().filter(|f| f.uploaded_by == id).map(|f| dir.join(&f.name)),
                        );
                        let state = SubtaskState {
                            key_groups: Vec::new(),
                            lists: operator.lists,
                            finished: operator.finished,
                            embedded: Some(store.snapshot),
                        };
                        acked.insert(uid, state);
                        continue;
                    }
                    let keyed_bytes: usize = operator.keyed.iter().map(|g| g.bytes.len()).sum();
                    if keyed_bytes as u64 <= self.inline_threshold_bytes {
                        acked.insert(uid, inline(operator));
                        continue;
                    }
                    let mut key_groups = Vec::with_capacity(operator.keyed.len());
                    for group in operator.keyed {
                        let file = FileRef {
                            path: name.clone(),
                            offset: file_bytes.len() as u64,
                            length: group.bytes.len() as u64,
                            checksum: metadata::checksum(&group.bytes),
                        };
                        file_bytes.extend_from_slice(&group.bytes);
                        key_groups.push(KeyGroupHandle { key_group: group.key_group, handle: StateHandle::File(file) });
                    }
                    let state =
                        SubtaskState { key_groups, lists: operator.lists, finished: operator.finished, embedded: None };
                    acked.insert(uid, state);
                }
                if !file_bytes.is_empty() {
                    let mut file = self.storage.create(&dir.join(&name)).await?;
                    file.write_all(&file_bytes).await?;
                    file.sync().await?;
                    files.push(dir.join(&name));
                }
            }
        }
        Ok((acked, files))
    }
}

fn inline(operator: crate::state::snapshot::OperatorSnapshot) -> SubtaskState {
    SubtaskState {
        key_groups: operator
            .keyed
            .into_iter()
            .map(|g| KeyGroupHandle { key_group: g.key_group, handle: StateHandle::Inline(g.bytes) })
            .collect(),
        lists: operator.lists,
        finished: operator.finished,
        embedded: None,
    }
}

/// Writes `chk-<n>/_metadata` atomically: a temporary file, fsync, rename, fsync of the
/// directory. After a crash the checkpoint either has its whole `_metadata` or none. The
/// fault hook hears `WritingMetadata` between the temporary file's write and its fsync.
pub async fn write_metadata(
    storage: &StorageRef,
    dir: &Path,
    metadata: &CheckpointMetadata,
    class: crate::element::SnapshotClass,
    faults: &Faults,
) -> Result<(), StorageError> {
    let target = dir.join(METADATA_FILE_NAME);
    let temporary = dir.join(format!(".{METADATA_FILE_NAME}.inprogress"));
    let mut file = storage.create(&temporary).await?;
    file.write_all(&metadata::encode(metadata)).await?;
    faults.checkpoint_phase(metadata.job_id, metadata.checkpoint_id, class, CheckpointPhase::WritingMetadata).await;
    file.sync().await?;
    drop(file);
    storage.rename(&temporary, &target).await?;
    storage.sync_dir(dir).await?;
    // A storage crash between the rename and the fsync may lose the rename while the fsync, issued after the
    // crash, succeeds: the checkpoint is complete only if its `_metadata` is there now.
    if !storage.exists(&target).await? {
        return Err(StorageError::Stale { op: "write", path: target });
    }
    Ok(())
}
