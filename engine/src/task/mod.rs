//! The subtask runtime: one async task per subtask pulls from its head (a source or the
//! input gate), pushes batches through its chain of operators, and hands them to its tail
//! (network output or sink).

pub mod gate;
pub mod tail;
pub mod upstream;

use crate::element::CheckpointBarrier;
use crate::error::TaskError;
use crate::operators::SubtaskInfo;
use crate::state::snapshot::SubtaskSnapshot;
use tail::Tail;
use upstream::{Pulled, Upstream};

/// Runs one subtask to the end of its input.
pub async fn run_task<T: Send + 'static>(
    info: &SubtaskInfo,
    mut upstream: Box<dyn Upstream<T>>,
    mut tail: Box<dyn Tail<T>>,
    batch_size_records: usize,
) -> Result<(), TaskError> {
    let mut out: Vec<T> = Vec::with_capacity(batch_size_records);
    let mut records: u64 = 0;
    loop {
        match upstream.pull(&mut out).await? {
            Pulled::Records => {
                records += out.len() as u64;
                tail.emit(&mut out).await?;
            }
            Pulled::Idle => tail.flush().await?,
            Pulled::Barrier(barrier) => {
                snapshot_and_forward(&mut upstream, &mut tail, barrier).await?;
            }
            Pulled::End => {
                records += out.len() as u64;
                tail.emit(&mut out).await?;
                tail.finish().await?;
                tracing::debug!(vertex = %info.vertex_name, subtask = info.subtask.0, records, "task finished");
                return Ok(());
            }
        }
    }
}

/// The synchronous snapshot of the whole chain at a barrier, then the barrier downstream.
async fn snapshot_and_forward<T>(
    upstream: &mut Box<dyn Upstream<T>>,
    tail: &mut Box<dyn Tail<T>>,
    barrier: CheckpointBarrier,
) -> Result<SubtaskSnapshot, TaskError> {
    let mut snapshot = SubtaskSnapshot::default();
    upstream.snapshot(barrier.checkpoint, &mut snapshot)?;
    tail.barrier(barrier, &mut snapshot).await?;
    Ok(snapshot)
}
