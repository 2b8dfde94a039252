//! The engine's error types: what can make a task, a job build or a job run fail.

use crate::checkpoint::restore::RestoreError;
use crate::ids::{JobId, OperatorUid, SubtaskIndex};
use crate::seam::storage::StorageError;
use crate::state::StateError;

/// Why a subtask failed. A failed subtask fails the job (or, with a restart strategy,
/// restarts it); it is never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("operator `{operator}`: {source}")]
    State { operator: OperatorUid, source: StateError },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("operator `{operator}`: {message}")]
    User { operator: OperatorUid, message: String },
    #[error("{vertex}[{subtask}]: {what} channel closed unexpectedly (its peer task is gone)")]
    ChannelClosed { vertex: String, subtask: SubtaskIndex, what: &'static str },
    #[error("task canceled")]
    Canceled,
}

/// Why a job could not be built from the typed API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("operator uid `{0}` is used twice; every operator needs its own uid")]
    DuplicateUid(String),
    #[error("parallelism must be at least 1, got {0}")]
    ZeroParallelism(u32),
    #[error("parallelism {parallelism} is above max parallelism {max_parallelism}")]
    ParallelismAboveMax { parallelism: u32, max_parallelism: u32 },
    #[error("max parallelism must be in 1..=32768, got {0}")]
    MaxParallelismOutOfRange(u32),
    #[error("the job has no sink: a job must end in at least one sink")]
    NoSink,
    #[error("the `{0}` state backend is not available in this build")]
    BackendUnavailable(&'static str),
    #[error("checkpointing (`execution.checkpointing.interval`) is not available in this build yet")]
    CheckpointingUnavailable,
    #[error("job `{job}`: parameter `{parameter}`: {message}")]
    InvalidParameter { job: String, parameter: String, message: String },
}

/// Why a job run ended without finishing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("task {vertex}[{subtask}] failed: {error}")]
    TaskFailed { vertex: String, subtask: SubtaskIndex, error: TaskError },
    #[error("not enough task slots: the job needs {needed}, the cluster offers {available}")]
    NotEnoughSlots { needed: u32, available: u32 },
    #[error("the job manager is unreachable")]
    JobManagerUnreachable,
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("the job was canceled")]
    Canceled,
    #[error("no job `{0}` is running")]
    UnknownJob(JobId),
    #[error("the job failed {attempts} times, more than the restart strategy allows; last failure: {last_failure}")]
    RestartsExhausted { attempts: u32, last_failure: String },
    #[error(
        "{consecutive} consecutive checkpoints failed, more than execution.checkpointing.tolerable-failed-checkpoints allows"
    )]
    TooManyCheckpointFailures { consecutive: u32 },
    #[error("cannot prepare checkpoint storage: {0}")]
    CheckpointStorage(StorageError),
    #[error("{0}")]
    Setup(String),
    #[error("savepoint {id} failed: {reason}")]
    SavepointFailed { id: u64, reason: String },
}
