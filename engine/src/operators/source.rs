//! The source contract: a replayable, partitioned reader whose positions live in operator
//! state, so that a restore rewinds it exactly to the last checkpoint.

use super::OperatorContext;
use crate::error::TaskError;
use crate::ids::CheckpointId;
use crate::state::operator::OperatorStateStore;
use async_trait::async_trait;

/// What a poll produced.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SourcePoll {
    /// Records were appended (possibly none); poll again.
    More,
    /// This subtask's share of the input is exhausted.
    Finished,
}

/// One parallel instance of a source.
#[async_trait]
pub trait Source: Send + 'static {
    type Out: Send + 'static;

    /// Prepares the subtask: restores positions from `restored`, or, on a fresh start
    /// (`None`), starts at the beginning of the partitions assigned to it.
    async fn open(
        &mut self,
        context: OperatorContext<'_>,
        restored: Option<&OperatorStateStore>,
    ) -> Result<(), TaskError>;

    /// Appends up to about `max_records` records to `out`.
    async fn poll(&mut self, out: &mut Vec<Self::Out>, max_records: usize) -> Result<SourcePoll, TaskError>;

    /// Records the current positions (the synchronous snapshot part).
    fn snapshot(&mut self, checkpoint: CheckpointId, state: &mut OperatorStateStore) -> Result<(), TaskError>;

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError>;
}
