//! Fault points inside the engine: the one small hook through which a simulation injects faults at precise places
//! of the protocol. Real runs use [`NoFaults`], which lets everything proceed.
//!
//! The engine calls [`FaultHook::at`] with a [`FaultPoint`] at every protocol step that recovery must survive a
//! fault at, and obeys the [`Fate`] it returns. The hook decides; the engine must behave correctly whatever it
//! decides (that is what the simulator checks), so no outcome may be treated as impossible. The hook is one method
//! over a closed enum, so a new point cannot be forgotten by a hook that forwards or matches exhaustively.

pub use crate::element::SnapshotClass;
use crate::ids::{CheckpointId, JobId, TaskRef};
use std::sync::Arc;
use std::time::Duration;

/// Where a snapshot stands when the hook is told.
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
    /// `_metadata` is durable and recorded in the job manager's store; notifications are about to go out.
    Completed,
    /// The notifications went out: sinks are committing (job manager).
    Notified,
    /// The job was told to finish at this snapshot (the final checkpoint, or a stop's savepoint).
    Finishing,
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

/// A step of the job manager taking a job over (after it restarted) or recovering it (after a failover).
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryStep {
    /// Reading the job's entry in the high-availability store.
    ReadStore,
    /// Reading the `_metadata` of the snapshot to restore from.
    ReadMetadata,
    /// Listing the job's checkpoint directory to clean up what a dead job manager left.
    ScanDirectory,
}

/// A place in the protocol where a fault may strike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPoint<'a> {
    /// Snapshot `id` reached `phase`. Only [`Fate::Proceed`] means anything here; the hook reacts (crashes a node,
    /// breaks storage) on its own.
    Snapshot { job: JobId, id: CheckpointId, class: SnapshotClass, phase: CheckpointPhase },
    /// An RPC of `kind` to or from `task`, which runs on task manager `host`, is about to be sent: delivered,
    /// dropped or delayed.
    Rpc { kind: RpcKind, task: TaskRef, host: &'a str },
    /// Barrier `id` is about to leave `from` on its output `channel`: held for a delay, or not.
    Barrier { id: CheckpointId, from: TaskRef, channel: u32 },
    /// The asynchronous part of `task`'s snapshot `id` starts: stalled for a delay, or not.
    SnapshotAsync { id: CheckpointId, task: TaskRef },
    /// The job manager is about to delete snapshot `id`'s directory `dir` (retention, an abort, the job's end, a
    /// dead job manager's leftovers), or (`done`) has deleted it durably. The start may be delayed.
    Discard { job: JobId, id: CheckpointId, dir: &'a std::path::Path, done: bool },
    /// The job manager is at a step of taking a job over: it may fail (it then tries again later) or be delayed.
    Recovery { step: RecoveryStep },
    /// `task` is about to be deployed to task manager `host`.
    Deploy { task: TaskRef, host: &'a str },
    /// `task` of job `job` is about to pull its next batch: it may fail there (an operator error, not a node crash).
    Batch { job: JobId, task: TaskRef },
}

/// What happens at a fault point.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    Proceed,
    /// An RPC is lost.
    Drop,
    /// The step waits this long first.
    Delay(Duration),
    /// The step fails (an injected error), where the point allows it.
    Fail,
}

impl Fate {
    /// The delay to wait, for points that can only be delayed.
    pub fn delay(self) -> Option<Duration> {
        match self {
            Fate::Delay(delay) => Some(delay),
            Fate::Proceed | Fate::Drop | Fate::Fail => None,
        }
    }
}

/// The engine's fault points.
pub trait FaultHook: Send + Sync {
    /// The engine reached `point`; what happens there.
    fn at(&self, point: FaultPoint<'_>) -> Fate;

    /// Shorthand: snapshot `id` of `class` of job `job` reached `phase`, where only proceeding means anything.
    fn on_checkpoint_phase(&self, job: JobId, id: CheckpointId, class: SnapshotClass, phase: CheckpointPhase) {
        let _ = self.at(FaultPoint::Snapshot { job, id, class, phase });
    }

    /// Shorthand: how long to hold barrier `id` before it leaves `from` on output channel `channel`.
    fn barrier_delay(&self, id: CheckpointId, from: TaskRef, channel: u32) -> Option<Duration> {
        self.at(FaultPoint::Barrier { id, from, channel }).delay()
    }

    /// Shorthand: how long to stall the asynchronous part of `task`'s snapshot `id`.
    fn snapshot_stall(&self, id: CheckpointId, task: TaskRef) -> Option<Duration> {
        self.at(FaultPoint::SnapshotAsync { id, task }).delay()
    }
}

/// No faults: what real runs use.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFaults;

impl FaultHook for NoFaults {
    fn at(&self, _point: FaultPoint<'_>) -> Fate {
        Fate::Proceed
    }
}

/// A shared fault hook.
pub type FaultHookRef = Arc<dyn FaultHook>;

/// The hook of real runs.
pub fn none() -> FaultHookRef {
    Arc::new(NoFaults)
}
