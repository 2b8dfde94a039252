//! What passes between the job manager and a running subtask outside the data channels:
//! commands in (trigger, notify, finish) and reports out (ack, decline, end of data).
//!
//! Both directions are RPC in Flink and may be lost or delayed; nothing here assumes they
//! arrive. A lost notification is covered by the next one (notify `n` commits everything up
//! to `n`) and by `Finish`, which carries the last completed checkpoint.

use crate::element::CheckpointBarrier;
use crate::ids::CheckpointId;
use tokio::sync::mpsc::{Receiver, Sender};

/// A command from the job manager to one subtask.
#[derive(Debug)]
pub enum TaskCommand {
    /// A source injects this barrier now; a subtask that reached the end of its data
    /// snapshots its final state for it.
    TriggerCheckpoint(CheckpointBarrier),
    /// Checkpoint `n` (and every lower one) is complete and durable.
    NotifyComplete(CheckpointId),
    /// Checkpoint `n` was abandoned.
    NotifyAborted(CheckpointId),
    /// The job is done: commit up to `last_completed` (idempotently) and exit.
    Finish { last_completed: Option<CheckpointId> },
}

pub use crate::checkpoint::metadata::AckedState;

/// A report from a subtask to the job manager.
#[derive(Debug)]
pub enum TaskReport {
    Ack {
        checkpoint: CheckpointId,
        state: AckedState,
    },
    Decline {
        checkpoint: CheckpointId,
        reason: String,
        failure: crate::checkpoint::coordinator::Failure,
    },
    /// The subtask processed all its input; it waits for the final checkpoint.
    EndOfData,
}

/// Sends a subtask's reports to the job manager.
pub trait Reporter: Send + Sync {
    fn report(&self, report: TaskReport);
}

/// The command channel of a subtask: one sender kept by the job manager.
pub fn command_channel() -> (Sender<TaskCommand>, Receiver<TaskCommand>) {
    // Commands are few per checkpoint; the bound only catches a runaway sender.
    tokio::sync::mpsc::channel(1024)
}
