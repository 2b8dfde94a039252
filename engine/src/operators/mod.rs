//! Operators: the chainable record transformations (`map`, `filter`, `flat_map`, keyed
//! process functions) and the source and sink contracts.
//!
//! A chained operator processes a whole batch at a time, synchronously, into an output
//! batch. Every operator implements `snapshot` explicitly, even when it holds nothing: a
//! stateful operator that forgot to snapshot would lose state silently.

pub mod filter;
pub mod flat_map;
pub mod keyed_process;
pub mod map;
pub mod sink;
pub mod source;
pub mod two_phase;

use crate::error::{TaskError, TaskFailure};
use crate::faults::Faults;
use crate::ids::{CheckpointId, OperatorUid};
use crate::seam::storage::StorageRef;
use crate::state::snapshot::SyncSnapshot;

pub use crate::ids::SubtaskInfo;

/// One operator of a chain, turning batches of `In` into batches of `Out`.
pub trait ChainOp<In, Out>: Send {
    /// Processes (and drains) `input`, appending results to `out`.
    fn process_batch(&mut self, input: &mut Vec<In>, out: &mut Vec<Out>) -> Result<(), TaskError>;
    /// All input has arrived: append final results to `out`. Returns [`Finish::More`] while
    /// some are still to come (the chain hands `out` on and calls again).
    fn finish(&mut self, out: &mut Vec<Out>) -> Result<Finish, TaskError>;
    /// The synchronous part of a checkpoint: add this operator's state to `snapshot`.
    fn snapshot(&mut self, checkpoint: CheckpointId, snapshot: &mut SyncSnapshot) -> Result<(), TaskError>;
    /// Checkpoint `checkpoint` (and every lower one) is complete.
    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError>;
    /// Whether [`ChainOp::maintain`] has work to do: checked after every batch, so cheap.
    fn needs_maintenance(&self) -> bool {
        false
    }
    /// The operator's IO between batches (an on-disk state backend's flushes and
    /// compactions, and its write stall). The chain awaits it after a batch when
    /// [`ChainOp::needs_maintenance`] says so; operators without IO have none.
    fn maintain(&mut self) -> MaintenanceFuture<'_> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Whether an operator's final results are all out.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// All of them are in `out`: the operator has finished.
    Done,
    /// `out` holds a part of them; [`ChainOp::finish`] is called again for the rest. Final
    /// results come in parts so that output as large as the state (a keyed operator's, which
    /// may be larger than memory) never sits in memory at once.
    More,
}

/// What [`ChainOp::maintain`] returns: boxed, and built only when there is work, so the
/// per-batch check costs no allocation.
pub type MaintenanceFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), TaskError>> + Send + 'a>>;

/// What a source or sink sees of its place in the job.
#[derive(Clone, Copy)]
pub struct OperatorContext<'a> {
    pub uid: &'a OperatorUid,
    pub info: &'a SubtaskInfo,
    pub storage: &'a StorageRef,
    /// Whether the job checkpoints. Without checkpoints a transactional sink commits at the
    /// end of its input.
    pub checkpointing: bool,
    /// The subtask's fault points (inert in real runs): a connector may mark steps of its own protocol.
    pub faults: &'a Faults,
}

impl OperatorContext<'_> {
    /// A state error of this operator, as a task error.
    pub fn state_error(&self, source: crate::state::StateError) -> TaskError {
        TaskError::from(TaskFailure::State { operator: self.uid.clone(), source })
    }
}
