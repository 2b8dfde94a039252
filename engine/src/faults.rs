//! Fault points inside the engine: the one small hook interface through which a simulation
//! injects faults at precise places. Real runs use [`NoFaults`], which does nothing.
//!
//! The engine calls the hook at checkpoint phases, before every RPC between the job manager
//! and subtasks, before a barrier leaves a subtask, and before a snapshot's asynchronous
//! part. The hook decides; the engine must behave correctly whatever it decides (that is
//! what the simulator checks), so no hook outcome may be treated as impossible.

use crate::checkpoint::coordinator::TaskRef;
use crate::ids::CheckpointId;
use std::sync::Arc;
use std::time::Duration;

/// Where a checkpoint stands when the hook is told.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointPhase {
    /// The coordinator triggered it (job manager).
    Triggered,
    /// A subtask with several inputs received its first barrier and started aligning.
    Aligning,
    /// Every subtask acked; the `_metadata` write is about to start (job manager).
    Acked,
    /// `_metadata` is written to its temporary file but not yet fsynced nor renamed.
    WritingMetadata,
    /// `_metadata` is durable; notifications are about to go out (job manager).
    Completed,
}

/// An RPC between the job manager and a subtask.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpcKind {
    Trigger,
    Notify,
    Abort,
    Finish,
    Ack,
    Decline,
    EndOfData,
}

/// What happens to an RPC.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RpcFate {
    Deliver,
    Drop,
    Delay(Duration),
}

/// The engine's fault points. Every method has an inert default.
pub trait FaultHook: Send + Sync {
    /// Checkpoint `checkpoint` reached `phase`.
    fn on_checkpoint_phase(&self, _checkpoint: CheckpointId, _phase: CheckpointPhase) {}

    /// An RPC of `kind` to or from `task` is about to be sent.
    fn on_rpc(&self, _kind: RpcKind, _task: TaskRef) -> RpcFate {
        RpcFate::Deliver
    }

    /// How long to hold barrier `checkpoint` before it leaves `from` for downstream subtask
    /// `to_subtask`.
    fn barrier_delay(&self, _checkpoint: CheckpointId, _from: TaskRef, _to_subtask: u32) -> Option<Duration> {
        None
    }

    /// How long to stall the asynchronous part of `task`'s snapshot for `checkpoint`.
    fn snapshot_stall(&self, _checkpoint: CheckpointId, _task: TaskRef) -> Option<Duration> {
        None
    }
}

/// No faults: what real runs use.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFaults;

impl FaultHook for NoFaults {}

/// A shared fault hook.
pub type FaultHookRef = Arc<dyn FaultHook>;

/// The hook of real runs.
pub fn none() -> FaultHookRef {
    Arc::new(NoFaults)
}
