//! The closed vocabulary of what flows on a data channel between subtasks.

use crate::ids::CheckpointId;
use serde::{Deserialize, Serialize};

/// Everything a channel carries. Records travel in batches (a channel's capacity is counted
/// in batches); barriers and end-of-input travel in line with them and never overtake them.
#[derive(Debug)]
pub enum StreamElement<T> {
    /// A non-empty batch of records, in the order the sender produced them.
    Records(Vec<T>),
    /// Event time has advanced to this many milliseconds (reserved: no built-in job emits
    /// watermarks yet, and the input gate forwards the minimum over channels).
    Watermark(u64),
    /// Checkpoint barrier `n`: everything before it belongs to checkpoint `n`.
    Barrier(CheckpointBarrier),
    /// The sender has finished; nothing follows on this channel.
    EndOfInput,
}

/// A checkpoint barrier, as injected by a source and forwarded by every task.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointBarrier {
    pub checkpoint: CheckpointId,
    /// Simulated or real time of the trigger, in milliseconds since the job's start.
    pub triggered_at_ms: u64,
    pub kind: SnapshotClass,
}

/// What a snapshot is, as barriers and fault points name it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotClass {
    /// A periodic checkpoint.
    Checkpoint,
    /// The checkpoint taken once every task reached the end of its data.
    Final,
    /// A user's savepoint.
    Savepoint,
    /// The savepoint of a stop-with-savepoint.
    Stop,
}
