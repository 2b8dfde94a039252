//! The sink contract: where records leave the job. A transactional sink pre-commits in
//! `snapshot` and commits in `notify_checkpoint_complete`.

use super::OperatorContext;
use crate::error::TaskError;
use crate::ids::CheckpointId;
use crate::state::operator::OperatorStateStore;
use async_trait::async_trait;

/// One parallel instance of a sink.
#[async_trait]
pub trait Sink<T>: Send + 'static {
    /// Prepares the subtask, given its restored operator state (`None` on a fresh start).
    async fn open(
        &mut self,
        context: OperatorContext<'_>,
        restored: Option<&OperatorStateStore>,
    ) -> Result<(), TaskError>;

    /// Writes (and drains) a batch.
    async fn write(&mut self, records: &mut Vec<T>) -> Result<(), TaskError>;

    /// Pre-commits everything written so far and records it in `state`.
    async fn snapshot(&mut self, checkpoint: CheckpointId, state: &mut OperatorStateStore) -> Result<(), TaskError>;

    /// All input has arrived.
    async fn finish(&mut self) -> Result<(), TaskError>;

    async fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError>;
}
