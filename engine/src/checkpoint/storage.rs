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
use crate::state::snapshot::SubtaskSnapshot;
use std::path::{Path, PathBuf};

/// `<base>/<job-id>`.
pub fn job_dir(base: &Path, job: JobId) -> PathBuf {
    base.join(job.to_string())
}

/// `<job dir>/chk-<n>`.
pub fn checkpoint_dir(job_dir: &Path, id: CheckpointId) -> PathBuf {
    job_dir.join(format!("chk-{}", id.0))
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
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Where and how subtasks write their checkpointed state.
pub struct CheckpointWriter {
    pub storage: StorageRef,
    /// `<dir>/<job-id>`, or `None` when checkpoints live only in the job manager's memory.
    pub job_dir: Option<PathBuf>,
    pub backend: StateBackendKind,
    pub inline_threshold_bytes: u64,
    pub jobmanager_max_state_bytes: u64,
    /// Savepoints in progress and their directories: their state goes there, not to
    /// `chk-<n>`.
    pub savepoints: std::sync::Mutex<std::collections::BTreeMap<CheckpointId, PathBuf>>,
}

impl CheckpointWriter {
    /// The asynchronous part of a snapshot: writes `snapshot` for checkpoint `id` and returns
    /// the handles the subtask acknowledges with.
    pub async fn write(
        &self,
        id: CheckpointId,
        info: &SubtaskInfo,
        snapshot: SubtaskSnapshot,
    ) -> Result<(AckedState, Vec<PathBuf>), WriteError> {
        let mut acked = AckedState::new();
        // Every file the handles reference, durable before the ack names them.
        let mut files = Vec::new();
        let savepoint_dir = self.savepoints.lock().expect("savepoints lock").get(&id).cloned();
        // Savepoints are canonical and self-contained whatever the backend: key groups in
        // files beside `_metadata` (above the inline threshold), with relative paths.
        let backend = if savepoint_dir.is_some() { StateBackendKind::FileSystem } else { self.backend };
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
                for (uid, operator) in snapshot.operators {
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
                    acked.insert(uid, SubtaskState { key_groups, lists: operator.lists, finished: operator.finished });
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
