//! Why a subtask fails: the error of the operator contracts and the task runtime. A job's build errors live with
//! the typed API (`api::BuildError`), a run's with the cluster (`cluster::JobError`).

use crate::ids::{OperatorUid, SubtaskIndex};
use crate::seam::storage::StorageError;
use crate::state::StateError;

/// Why a subtask failed: its [`TaskFailure`], boxed, so that a `Result<_, TaskError>` is a word or two wide. Results
/// pass through every batch's path (pulls, emits, writes), and a 96-byte error moved at each step cost more than
/// the step. It dereferences to the failure, so `error.is_deterministic()` and `match &*error` read it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct TaskError(Box<TaskFailure>);

impl TaskError {
    /// What failed.
    pub fn failure(&self) -> &TaskFailure {
        &self.0
    }
}

impl std::ops::Deref for TaskError {
    type Target = TaskFailure;

    fn deref(&self) -> &TaskFailure {
        &self.0
    }
}

impl From<TaskFailure> for TaskError {
    fn from(failure: TaskFailure) -> Self {
        TaskError(Box::new(failure))
    }
}

impl From<StorageError> for TaskError {
    fn from(error: StorageError) -> Self {
        TaskFailure::Storage(error).into()
    }
}

/// Why a subtask failed. A failed subtask fails the job (or, with a restart strategy,
/// restarts it); it is never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskFailure {
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
    /// Restoring the operator cannot succeed: its state (restored, or written by this
    /// attempt) and what is on storage contradict each other, and they will on every retry.
    #[error("operator `{operator}`: {message}")]
    RestoreRefused { operator: OperatorUid, message: String },
}

impl TaskFailure {
    /// Whether the subtask ended because its deployment was canceled (a user's cancel, a
    /// failover of the whole job), not because something went wrong: it is logged as a
    /// cancellation, not as a failure.
    pub fn is_cancellation(&self) -> bool {
        matches!(self, TaskFailure::Canceled)
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
            TaskFailure::State { source, .. } => match source {
                StateError::TypeMismatch { .. }
                | StateError::Encode { .. }
                | StateError::Decode { .. }
                | StateError::DecodeListElement { .. }
                | StateError::ForeignKeyGroup { .. }
                | StateError::InvalidOptions { .. } => true,
                // The embedded store's local files are rebuilt from the checkpoint on a restart, so a corrupt
                // block or a failed write on the local disk may well pass.
                StateError::Storage(_) | StateError::Corrupt { .. } | StateError::BackgroundJob { .. } => false,
                // A snapshot's file that is not the file it recorded (its size or checksum) stays so: snapshot files
                // are immutable once their checkpoint completed, and a storage fault fails a read, it does not
                // change the bytes read.
                StateError::SnapshotFileMismatch { .. } => true,
                // The job manager checks that a snapshot's files exist before it deploys: one missing when a
                // subtask downloads it is what the next attempt's check reports, once and for all.
                StateError::MissingSnapshotFile { .. } => false,
            },
            TaskFailure::RestoreRefused { .. } => true,
            TaskFailure::Storage(_)
            | TaskFailure::User { .. }
            | TaskFailure::ChannelClosed { .. }
            | TaskFailure::Canceled
            | TaskFailure::Injected { .. }
            | TaskFailure::Panicked { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_result_stays_a_word_wide() {
        // Every batch's pull, emit and write returns one: a boxed failure keeps them cheap to move.
        assert_eq!(std::mem::size_of::<Result<(), TaskError>>(), std::mem::size_of::<usize>());
        let error: TaskError = TaskFailure::Canceled.into();
        assert_eq!(error.to_string(), "task canceled", "the box is transparent to the message");
        assert!(error.is_cancellation());
    }

    fn operator() -> OperatorUid {
        OperatorUid("count".into())
    }

    #[test]
    fn restored_state_that_cannot_be_decoded_fails_the_same_way_on_every_restart() {
        let decode = TaskFailure::State {
            operator: operator(),
            source: StateError::DecodeListElement { name: "offsets".into(), index: 3, message: "eof".into() },
        };
        assert!(decode.is_deterministic());
        let refused = TaskFailure::RestoreRefused { operator: operator(), message: "newer output".into() };
        assert!(refused.is_deterministic());
    }

    #[test]
    fn transient_failures_and_cancellations_are_retried_or_reported_as_such() {
        let injected = TaskFailure::Injected { vertex: "v".into(), subtask: SubtaskIndex(0) };
        assert!(!injected.is_deterministic());
        let storage = TaskFailure::Storage(StorageError::NoSpace { op: "write", path: "/x".into() });
        assert!(!storage.is_deterministic());
        assert!(!TaskFailure::Panicked { message: "bug".into() }.is_deterministic());
        assert!(TaskFailure::Canceled.is_cancellation() && !TaskFailure::Canceled.is_deterministic());
        assert!(!TaskFailure::Panicked { message: "bug".into() }.is_cancellation());
    }
}
