//! Restoring from a checkpoint or savepoint: find and decode `_metadata`, check that every
//! file it references is there and intact, and map its state onto the job's operators,
//! redistributed to their parallelism.
//!
//! Everything is checked before the job starts, and nothing is written: a failed restore
//! leaves the checkpoint directory exactly as it was.

use super::metadata::{self, CheckpointMetadata, FileRef, METADATA_FILE_NAME, MetadataError, StateHandle};
use crate::faults::{FaultPoint, Faults};
use crate::ids::OperatorUid;
use crate::seam::storage::{StorageError, StorageRef};
use crate::state::redistribute::redistribute;
use crate::state::snapshot::{KeyGroupSnapshot, OperatorSnapshot, StoreSnapshot, SubtaskSnapshot};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a restore cannot proceed. Every variant names the file or operator at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("`{path}` does not exist")]
    NotFound { path: PathBuf },
    #[error("`{path}` is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("`{path}` is not a checkpoint or savepoint: it has no `_metadata` file")]
    NotACheckpoint { path: PathBuf },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("checkpoint `{metadata}`: state file `{file}` of operator `{operator}` subtask {subtask} is missing")]
    MissingFile { metadata: PathBuf, file: PathBuf, operator: OperatorUid, subtask: u32 },
    #[error(
        "checkpoint `{metadata}`: state file `{file}` is {actual} bytes, but operator `{operator}` needs bytes up to {needed}"
    )]
    ShortFile { metadata: PathBuf, file: PathBuf, operator: OperatorUid, needed: u64, actual: u64 },
    #[error(
        "checkpoint `{metadata}`: state file `{file}` is corrupt (checksum mismatch at offset {offset}, operator `{operator}`)"
    )]
    CorruptFile { metadata: PathBuf, file: PathBuf, operator: OperatorUid, offset: u64 },
    #[error(
        "checkpoint `{metadata}`: state file `{file}` of operator `{operator}` is {actual} bytes, but the checkpoint recorded {expected}"
    )]
    FileSizeMismatch { metadata: PathBuf, file: PathBuf, operator: OperatorUid, expected: u64, actual: u64 },
    #[error(
        "checkpoint `{metadata}` holds state for operator `{operator}`, which this job does not have; pass --allow-non-restored-state to skip it"
    )]
    UnmatchedOperator { metadata: PathBuf, operator: OperatorUid },
    #[error(
        "checkpoint `{metadata}`: operator `{operator}` was checkpointed with max parallelism {checkpointed}, but the job has {job}; max parallelism cannot change"
    )]
    MaxParallelismMismatch { metadata: PathBuf, operator: OperatorUid, checkpointed: u32, job: u32 },
    #[error(
        "checkpoint `{metadata}`: operator `{operator}` had finished in some subtasks only, and it follows an exchange: its finished subtasks emitted their end-of-input results, so it can be restored only at its checkpointed parallelism"
    )]
    PartiallyFinished { metadata: PathBuf, operator: OperatorUid },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl RestoreError {
    /// Whether trying again may succeed: a storage error, not a problem of the snapshot or the job.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RestoreError::Storage(StorageError::Io { .. } | StorageError::NoSpace { .. } | StorageError::Stale { .. })
        )
    }
}

/// A decoded `_metadata` and the directory its relative paths are resolved against.
#[derive(Clone, Debug)]
pub struct LoadedCheckpoint {
    pub metadata_path: PathBuf,
    pub dir: PathBuf,
    pub metadata: CheckpointMetadata,
}

impl LoadedCheckpoint {
    /// The absolute or directory-relative path of a referenced file.
    pub fn file_path(&self, file: &FileRef) -> PathBuf {
        let path = Path::new(&file.path);
        if path.is_absolute() { path.to_path_buf() } else { self.dir.join(path) }
    }
}

/// Loads the checkpoint at `path`: a `chk-<n>` (or savepoint) directory or its `_metadata`.
pub async fn load(storage: &StorageRef, path: &Path) -> Result<LoadedCheckpoint, RestoreError> {
    if !storage.exists(path).await? {
        return Err(RestoreError::NotFound { path: path.to_path_buf() });
    }
    let (dir, metadata_path) = if storage.is_dir(path).await? {
        let metadata_path = path.join(METADATA_FILE_NAME);
        if !storage.exists(&metadata_path).await? {
            return Err(RestoreError::NotACheckpoint { path: path.to_path_buf() });
        }
        (path.to_path_buf(), metadata_path)
    } else {
        if path.file_name().and_then(|n| n.to_str()) != Some(METADATA_FILE_NAME) {
            return Err(RestoreError::NotACheckpoint { path: path.to_path_buf() });
        }
        (path.parent().unwrap_or(Path::new(".")).to_path_buf(), path.to_path_buf())
    };
    let bytes = storage.read(&metadata_path).await?;
    let metadata = metadata::decode(&bytes, &metadata_path)?;
    Ok(LoadedCheckpoint { metadata_path, dir, metadata })
}

/// Reads every referenced file once, checks bounds and checksums, and returns each
/// operator's per-subtask snapshots with all state inline, but for embedded stores' files,
/// whose presence and sizes are checked here and checksums when a subtask downloads them.
/// `owned`: the job restoring owns the checkpoint (a failover), so its stores may build on it.
pub async fn resolve(
    storage: &StorageRef,
    checkpoint: &LoadedCheckpoint,
    owned: bool,
    faults: &Faults,
) -> Result<BTreeMap<OperatorUid, Vec<OperatorSnapshot>>, RestoreError> {
    let mut files: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    let mut resolved = BTreeMap::new();
    for operator in &checkpoint.metadata.operators {
        let mut subtasks = Vec::with_capacity(operator.subtasks.len());
        for (index, subtask) in operator.subtasks.iter().enumerate() {
            let mut keyed = Vec::with_capacity(subtask.key_groups.len());
            for group in &subtask.key_groups {
                let bytes = match &group.handle {
                    StateHandle::Inline(bytes) => bytes.clone(),
                    StateHandle::File(file) => {
                        let path = checkpoint.file_path(file);
                        if !files.contains_key(&path) {
                            restore_point(faults, &path).await?;
                            let content = storage
                                .read(&path)
                                .await
                                .map_err(|e| missing_or(e, checkpoint, &path, &operator.uid, index))?;
                            files.insert(path.clone(), content);
                        }
                        let content = &files[&path];
                        // Validated metadata guarantees offset + length does not overflow.
                        let end = file.offset + file.length;
                        if end > content.len() as u64 {
                            return Err(RestoreError::ShortFile {
                                metadata: checkpoint.metadata_path.clone(),
                                file: path,
                                operator: operator.uid.clone(),
                                needed: end,
                                actual: content.len() as u64,
                            });
                        }
                        let bytes = &content[file.offset as usize..end as usize];
                        if metadata::checksum(bytes) != file.checksum {
                            return Err(RestoreError::CorruptFile {
                                metadata: checkpoint.metadata_path.clone(),
                                file: path,
                                operator: operator.uid.clone(),
                                offset: file.offset,
                            });
                        }
                        bytes.to_vec()
                    }
                };
                keyed.push(KeyGroupSnapshot { key_group: group.key_group, bytes });
            }
            let mut stores = Vec::new();
            if let Some(embedded) = &subtask.embedded {
                for file in &embedded.files {
                    let path = file.path(&checkpoint.dir);
                    restore_point(faults, &path).await?;
                    let actual = storage
                        .file_len(&path)
                        .await
                        .map_err(|e| missing_or(e, checkpoint, &path, &operator.uid, index))?;
                    if actual != file.size_bytes {
                        return Err(RestoreError::FileSizeMismatch {
                            metadata: checkpoint.metadata_path.clone(),
                            file: path,
                            operator: operator.uid.clone(),
                            expected: file.size_bytes,
                            actual,
                        });
                    }
                }
                stores.push(StoreSnapshot {
                    snapshot: embedded.clone(),
                    dir: checkpoint.dir.clone(),
                    owned: owned.then_some(checkpoint.metadata.checkpoint_id),
                });
            }
            subtasks.push(OperatorSnapshot { keyed, lists: subtask.lists.clone(), finished: subtask.finished, stores });
        }
        resolved.insert(operator.uid.clone(), subtasks);
    }
    Ok(resolved)
}

/// The fault point before state file `path` is read: an injected failure is a read error on it.
async fn restore_point(faults: &Faults, path: &Path) -> Result<(), RestoreError> {
    faults.obey(FaultPoint::RestoreState { file: path }).await.map_err(|injected| {
        RestoreError::Storage(StorageError::Io { op: "read", path: path.to_path_buf(), message: injected.to_string() })
    })
}

/// A storage error reading state file `path` of `operator`'s subtask `subtask`: a missing file, named, or the
/// error as it is.
fn missing_or(
    error: StorageError,
    checkpoint: &LoadedCheckpoint,
    path: &Path,
    operator: &OperatorUid,
    subtask: usize,
) -> RestoreError {
    match error {
        StorageError::NotFound { .. } => RestoreError::MissingFile {
            metadata: checkpoint.metadata_path.clone(),
            file: path.to_path_buf(),
            operator: operator.clone(),
            subtask: subtask as u32,
        },
        other => RestoreError::Storage(other),
    }
}

/// The restored state of every subtask of a job, by vertex index then subtask index.
pub type RestorePlan = Vec<Vec<SubtaskSnapshot>>;

/// What a restore needs to know of a job: its vertices (operators, parallelism, whether a source) and its max
/// parallelism. Plain data, so that checkpoints need nothing of the job graph's types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobLayout {
    /// By vertex index.
    pub vertices: Vec<VertexLayout>,
    pub max_parallelism: u32,
}

/// One vertex of a [`JobLayout`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VertexLayout {
    /// The uids of the operators chained in the vertex, head first.
    pub operators: Vec<OperatorUid>,
    pub parallelism: u32,
    pub is_source: bool,
}

/// Maps `checkpoint`'s state onto the operators of the job laid out as `graph` by uid and redistributes it to their
/// parallelism. State for an operator the job lacks is an error unless
/// `allow_non_restored_state`. `owned`: the restoring job owns the checkpoint (see [`resolve`]).
pub async fn plan(
    storage: &StorageRef,
    checkpoint: &LoadedCheckpoint,
    graph: &JobLayout,
    allow_non_restored_state: bool,
    owned: bool,
    faults: &Faults,
) -> Result<RestorePlan, RestoreError> {
    let mut owners: BTreeMap<&OperatorUid, usize> = BTreeMap::new();
    for (index, vertex) in graph.vertices.iter().enumerate() {
        for uid in &vertex.operators {
            owners.insert(uid, index);
        }
    }
    for operator in &checkpoint.metadata.operators {
        if !owners.contains_key(&operator.uid) {
            let holds_state = operator.subtasks.iter().any(|s| {
                !s.key_groups.is_empty() || s.embedded.is_some() || s.lists.iter().any(|l| !l.elements.is_empty())
            });
            if holds_state && !allow_non_restored_state {
                return Err(RestoreError::UnmatchedOperator {
                    metadata: checkpoint.metadata_path.clone(),
                    operator: operator.uid.clone(),
                });
            }
        } else if operator.max_parallelism != graph.max_parallelism {
            return Err(RestoreError::MaxParallelismMismatch {
                metadata: checkpoint.metadata_path.clone(),
                operator: operator.uid.clone(),
                checkpointed: operator.max_parallelism,
                job: graph.max_parallelism,
            });
        }
    }
    for operator in &checkpoint.metadata.operators {
        let Some(&vertex) = owners.get(&operator.uid) else { continue };
        let finished = operator.subtasks.iter().filter(|s| s.finished).count();
        // A source vertex's subtasks finish one by one, each at the end of its partitions: rescaled, the
        // finished ones' offsets are redistributed and read nothing more, as in Flink. Behind an exchange a
        // finished subtask has emitted its end-of-input results, which a rescaled restore would emit again.
        if finished > 0
            && finished < operator.subtasks.len()
            && graph.vertices[vertex].parallelism != operator.parallelism
            && !graph.vertices[vertex].is_source
        {
            return Err(RestoreError::PartiallyFinished {
                metadata: checkpoint.metadata_path.clone(),
                operator: operator.uid.clone(),
            });
        }
    }
    let resolved = resolve(storage, checkpoint, owned, faults).await?;
    let mut plan: RestorePlan =
        graph.vertices.iter().map(|v| vec![SubtaskSnapshot::default(); v.parallelism as usize]).collect();
    for (uid, snapshots) in resolved {
        let Some(&vertex) = owners.get(&uid) else { continue };
        let parallelism = graph.vertices[vertex].parallelism;
        for (subtask, snapshot) in redistribute(&snapshots, parallelism, graph.max_parallelism).into_iter().enumerate()
        {
            plan[vertex][subtask].operators.insert(uid.clone(), snapshot);
        }
    }
    Ok(plan)
}
