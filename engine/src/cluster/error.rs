//! Why a job run ended without finishing, and whether running it again could help.

use crate::api::BuildError;
use crate::checkpoint::restore::RestoreError;
use crate::error::TaskError;
use crate::ids::{JobId, SubtaskIndex};
use crate::seam::storage::StorageError;

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
    /// [`TaskFailure::is_deterministic`]): a restore that cannot be planned for a reason other
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
    use crate::error::TaskFailure;
    use crate::ids::OperatorUid;

    #[test]
    fn a_task_failure_that_repeats_on_every_restart_fails_the_job_for_good() {
        let refused =
            TaskFailure::RestoreRefused { operator: OperatorUid("sink".into()), message: "newer output".into() };
        let failed = JobError::TaskFailed { vertex: "v".into(), subtask: SubtaskIndex(0), error: refused.into() };
        assert!(failed.is_deterministic());
        let injected = TaskFailure::Injected { vertex: "v".into(), subtask: SubtaskIndex(0) };
        assert!(
            !JobError::TaskFailed { vertex: "v".into(), subtask: SubtaskIndex(0), error: injected.into() }
                .is_deterministic()
        );
        assert!(JobError::FatalCheckpointFailure { cause: "state too large".into() }.is_deterministic());
    }

    #[test]
    fn a_cancel_is_a_cancellation_and_restarting_does_not_help_nothing_else() {
        assert!(JobError::Canceled.is_cancellation());
        assert!(!JobError::RestartsExhausted { attempts: 3, last_failure: "x".into() }.is_cancellation());
    }
}
