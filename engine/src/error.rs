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
    /// The simulator failed the subtask at a fault point: an operator error, not a node crash.
    #[error("{vertex}[{subtask}]: injected failure")]
    Injected { vertex: String, subtask: SubtaskIndex },
    /// The subtask's code panicked: a bug, caught so that the job manager hears of it
    /// instead of waiting for a subtask that is gone.
    #[error("panicked: {message}")]
    Panicked { message: String },
    /// Restoring the operator cannot succeed: the restored state and what is on storage
    /// contradict each other, and they will on every retry.
    #[error("operator `{operator}`: {message}")]
    RestoreRefused { operator: OperatorUid, message: String },
}

impl TaskError {
    /// Whether the subtask ended because its deployment was canceled (a user's cancel, a
    /// failover of the whole job), not because something went wrong: it is logged as a
    /// cancellation, not as a failure.
    pub fn is_cancellation(&self) -> bool {
        matches!(self, TaskError::Canceled)
    }

    /// Whether the same restore would fail the same way again: a restart from the same
    /// checkpoint cannot help, so the job should fail instead of restarting forever.
    ///
    /// Corrupt or mismatched restored state, a restore that contradicts the output on
    /// storage and code that uses state wrongly are deterministic. Storage errors, lost
    /// peers, injected faults and panics are not: a restart may well get past them, as
    /// Flink's restart strategies assume.
    pub fn is_deterministic(&self) -> bool {
        match self {
            TaskError::State { source, .. } => match source {
                StateError::TypeMismatch { .. }
                | StateError::Encode { .. }
                | StateError::Decode { .. }
                | StateError::DecodeListElement { .. }
                | StateError::ForeignKeyGroup { .. }
                | StateError::InvalidOptions { .. } => true,
                // The embedded store's local files are rebuilt from the checkpoint on a restart, so a corrupt
                // block or a failed write on the local disk may well pass.
                StateError::Storage(_) | StateError::Corrupt { .. } | StateError::BackgroundJob { .. } => false,
            },
            TaskError::RestoreRefused { .. } => true,
            TaskError::Storage(_)
            | TaskError::User { .. }
            | TaskError::ChannelClosed { .. }
            | TaskError::Canceled
            | TaskError::Injected { .. }
            | TaskError::Panicked { .. } => false,
        }
    }
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
        "{consecutive} consecutive checkpoints failed, more than execution.checkpointing.tolerable-failed-checkpoints allows; the last one {cause}"
    )]
    TooManyCheckpointFailures { consecutive: u32, cause: String },
    #[error("a checkpoint failed in a way that would repeat on every attempt: it {cause}")]
    FatalCheckpointFailure { cause: String },
    #[error("cannot prepare checkpoint storage: {0}")]
    CheckpointStorage(StorageError),
    #[error("{0}")]
    Setup(String),
    #[error("savepoint {id} failed: {reason}")]
    SavepointFailed { id: u64, reason: String },
    #[error("job {job} cannot take a savepoint now: {reason}")]
    SavepointRefused { job: JobId, reason: String },
    #[error("job {job} already {how}")]
    JobEnded { job: JobId, how: String },
}

impl JobError {
    /// Whether the job ended because it was canceled (`weir cancel`, Ctrl-C): the outcome a
    /// user asked for, logged at info rather than as a warning.
    pub fn is_cancellation(&self) -> bool {
        matches!(self, JobError::Canceled)
    }

    /// Whether restarting the job from the same checkpoint would fail the same way (see
    /// [`TaskError::is_deterministic`]): a restore that cannot be planned for a reason other
    /// than a storage error, or a checkpoint failure that repeats on every attempt.
    pub fn is_deterministic(&self) -> bool {
        match self {
            JobError::TaskFailed { error, .. } => error.is_deterministic(),
            JobError::Restore(error) => !error.is_transient(),
            JobError::Build(_) | JobError::FatalCheckpointFailure { .. } => true,
            JobError::NotEnoughSlots { .. }
            | JobError::JobManagerUnreachable
            | JobError::Canceled
            | JobError::UnknownJob(_)
            | JobError::RestartsExhausted { .. }
            | JobError::TooManyCheckpointFailures { .. }
            | JobError::CheckpointStorage(_)
            | JobError::Setup(_)
            | JobError::SavepointFailed { .. }
            | JobError::SavepointRefused { .. }
            | JobError::JobEnded { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operator() -> OperatorUid {
        OperatorUid("count".into())
    }

    #[test]
    fn restored_state_that_cannot_be_decoded_fails_the_same_way_on_every_restart() {
        let decode = TaskError::State {
            operator: operator(),
            source: StateError::DecodeListElement { name: "offsets".into(), index: 3, message: "eof".into() },
        };
        assert!(decode.is_deterministic());
        let refused = TaskError::RestoreRefused { operator: operator(), message: "newer output".into() };
        assert!(refused.is_deterministic());
        let failed = JobError::TaskFailed { vertex: "v".into(), subtask: SubtaskIndex(0), error: refused };
        assert!(failed.is_deterministic());
    }

    #[test]
    fn transient_failures_and_cancellations_are_retried_or_reported_as_such() {
        let injected = TaskError::Injected { vertex: "v".into(), subtask: SubtaskIndex(0) };
        assert!(!injected.is_deterministic());
        let storage = TaskError::Storage(StorageError::NoSpace { op: "write", path: "/x".into() });
        assert!(!storage.is_deterministic());
        assert!(!TaskError::Panicked { message: "bug".into() }.is_deterministic());
        assert!(TaskError::Canceled.is_cancellation() && !TaskError::Canceled.is_deterministic());
        assert!(!TaskError::Panicked { message: "bug".into() }.is_cancellation());
        assert!(JobError::Canceled.is_cancellation());
        assert!(!JobError::RestartsExhausted { attempts: 3, last_failure: "x".into() }.is_cancellation());
    }
}
