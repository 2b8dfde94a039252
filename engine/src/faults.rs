//! Fault points inside the engine: the one small hook through which a simulation injects faults at precise places
//! of the protocol. Real runs use [`NoFaults`], which lets everything proceed.
//!
//! The engine calls [`Faults::at`] (or [`Faults::obey`]) with a [`FaultPoint`] at every protocol step that
//! recovery must survive a fault at, and obeys the [`Fate`] it returns. The hook decides; the engine must behave
//! correctly whatever it decides (that is what the simulator checks), so no outcome may be treated as impossible.
//! The hook is one method over a closed enum, so a new point cannot be forgotten by a hook that forwards or
//! matches exhaustively.
//!
//! Each node holds its own [`Faults`]: the hook plus the node's name (`jm`, `tm-<n>`), so the hook knows where a
//! point is reached, and can crash that very node there ([`Fate::Crash`]). Once a node's point was told to crash,
//! every later point of the same [`Faults`] is told so too, so the dying node does nothing more: no message it
//! would still send synchronously leaves it.

pub use crate::element::SnapshotClass;
use crate::ids::{CheckpointId, JobId, TaskRef};
use crate::seam::runtime;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// The snapshot's new shared files are registered (moved into `shared/` and durable there); its `_metadata`
    /// is not written yet (job manager).
    SharedRegistered,
    /// `_metadata` is written to its temporary file but not yet fsynced nor renamed.
    WritingMetadata,
    /// `_metadata` is durable and recorded in the job manager's store; notifications are about to go out.
    Completed,
    /// The notifications went out: sinks are committing (job manager).
    Notified,
    /// The job was told to finish at this snapshot (the final checkpoint, or a stop's savepoint).
    Finishing,
    /// It was aborted (declined, failed, subsumed, or the job failed over) (job manager).
    Aborted,
    /// It timed out before every subtask acked, and was aborted (job manager).
    Expired,
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

/// A step of a transactional sink's two-phase commit.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkStep {
    /// The open transaction is about to be pre-committed for checkpoint `id` (the snapshot's synchronous part).
    PreCommit,
    /// The pending transaction of checkpoint `id` is about to be committed.
    Commit,
    /// The sink made the commit's effect visible (the file sink renamed its part files) but has not yet made it
    /// durable (the directory's fsync). Reached only by sinks whose commit has such a step.
    CommitApplied,
    /// The commit of checkpoint `id`'s transaction returned; the sink is about to forget it.
    Committed,
    /// A restored subtask is about to commit the pending transactions of restored checkpoint `id`.
    RecoverCommit,
    /// A restored subtask is about to abort every transaction earlier attempts left, but those of checkpoint `id`'s.
    Abort,
}

/// Something that happened to a job as a whole (job manager), for faults relative to it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobEvent {
    /// Every subtask is about to be deployed, restored from the snapshot the point names, if any.
    Deployed,
    /// The job failed (a subtask failed, a task manager was lost) and is about to be redeployed.
    FailingOver,
    /// Every subtask finished: the job is done.
    Finished,
    /// The job was cancelled.
    Canceled,
    /// The job's end is recorded; its cleanup (deleting what the retention policy does not keep) and the answer to
    /// its submitter are about to follow.
    Ended,
}

/// Where engine code yields to let rare interleavings happen (madsim's `buggify`): the hook may delay there.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interleaving {
    /// A subtask's input gate, between two batches.
    Gate,
    /// The start of a snapshot's asynchronous part.
    SnapshotAsync,
    /// A sink about to write a batch into its open transaction.
    SinkWrite,
}

/// A place in the protocol where a fault may strike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPoint<'a> {
    /// Snapshot `id` reached `phase`. The hook may crash the node; delays and failures mean nothing here.
    Snapshot { job: JobId, id: CheckpointId, class: SnapshotClass, phase: CheckpointPhase },
    /// An RPC of `kind` to or from `task`, which runs on task manager `host`, is about to be sent: delivered,
    /// dropped or delayed.
    Rpc { kind: RpcKind, task: TaskRef, host: &'a str },
    /// Barrier `id` is about to leave `from` on its output `channel`: held for a delay, or not.
    Barrier { id: CheckpointId, from: TaskRef, channel: u32 },
    /// The asynchronous part of `task`'s snapshot `id` starts: stalled for a delay, or not.
    SnapshotAsync { id: CheckpointId, task: TaskRef },
    /// `task`'s snapshot `id` is written and durable, and the ack naming `files` (every file its state handles
    /// reference) is about to be sent.
    Acknowledge { job: JobId, id: CheckpointId, task: TaskRef, files: &'a [PathBuf] },
    /// The job manager is about to delete snapshot `id`'s directory `dir` (retention, an abort, the job's end, a
    /// dead job manager's leftovers), or (`done`) has deleted it durably. The start may be delayed or failed
    /// (the deletion is then tried again later).
    Discard { job: JobId, id: CheckpointId, dir: &'a Path, done: bool },
    /// The job manager is at a step of taking a job over: it may fail (it then tries again later) or be delayed.
    Recovery { step: RecoveryStep },
    /// A restore is about to read state file `file` of the snapshot it restores from (job manager): the read may
    /// fail (as an IO error would: the restore is tried again later) or wait.
    RestoreState { file: &'a Path },
    /// `task` is about to be deployed to task manager `host`: the deployment may be delayed or fail.
    Deploy { task: TaskRef, host: &'a str },
    /// `task` of job `job` is about to pull its next batch: it may fail there (an operator error, not a node crash).
    Batch { job: JobId, task: TaskRef },
    /// A transactional sink's `task` is at `step` of the two-phase commit of checkpoint `id`'s transaction: the
    /// step may fail (an injected IO error), wait, or its node crash.
    Sink { job: JobId, task: TaskRef, id: CheckpointId, step: SinkStep },
    /// Job `job` went through `event`; `restored` is the snapshot a deployment restores from: the job that took it
    /// (another one, for a job started from a retained checkpoint or a savepoint) and its id.
    Job { job: JobId, event: JobEvent, restored: Option<(JobId, CheckpointId)> },
    /// A place where `task` may yield for a while, so that other tasks run in between.
    Interleave { task: TaskRef, site: Interleaving },
}

/// The kind of a [`FaultPoint`]: its variant, without the data.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PointKind {
    Snapshot,
    Rpc,
    Barrier,
    SnapshotAsync,
    Acknowledge,
    Discard,
    Recovery,
    RestoreState,
    Deploy,
    Batch,
    Sink,
    Job,
    Interleave,
}

impl PointKind {
    /// Every kind, in declaration order.
    pub const ALL: [PointKind; 13] = [
        PointKind::Snapshot,
        PointKind::Rpc,
        PointKind::Barrier,
        PointKind::SnapshotAsync,
        PointKind::Acknowledge,
        PointKind::Discard,
        PointKind::Recovery,
        PointKind::RestoreState,
        PointKind::Deploy,
        PointKind::Batch,
        PointKind::Sink,
        PointKind::Job,
        PointKind::Interleave,
    ];

    /// This kind's bit in a set of kinds.
    fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl FaultPoint<'_> {
    pub fn kind(&self) -> PointKind {
        match self {
            FaultPoint::Snapshot { .. } => PointKind::Snapshot,
            FaultPoint::Rpc { .. } => PointKind::Rpc,
            FaultPoint::Barrier { .. } => PointKind::Barrier,
            FaultPoint::SnapshotAsync { .. } => PointKind::SnapshotAsync,
            FaultPoint::Acknowledge { .. } => PointKind::Acknowledge,
            FaultPoint::Discard { .. } => PointKind::Discard,
            FaultPoint::Recovery { .. } => PointKind::Recovery,
            FaultPoint::RestoreState { .. } => PointKind::RestoreState,
            FaultPoint::Deploy { .. } => PointKind::Deploy,
            FaultPoint::Batch { .. } => PointKind::Batch,
            FaultPoint::Sink { .. } => PointKind::Sink,
            FaultPoint::Job { .. } => PointKind::Job,
            FaultPoint::Interleave { .. } => PointKind::Interleave,
        }
    }
}

impl fmt::Display for FaultPoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultPoint::Snapshot { id, class, phase, .. } => write!(f, "{class:?} {id} {phase:?}"),
            FaultPoint::Rpc { kind, task, host } => write!(f, "{kind:?} rpc of {task} on {host}"),
            FaultPoint::Barrier { id, from, channel } => write!(f, "barrier {id} leaving {from} on channel {channel}"),
            FaultPoint::SnapshotAsync { id, task } => write!(f, "asynchronous part of {task}'s snapshot {id}"),
            FaultPoint::Acknowledge { id, task, .. } => write!(f, "{task}'s ack of snapshot {id}"),
            FaultPoint::Discard { id, done, .. } => {
                write!(f, "{} snapshot {id}", if *done { "deleted" } else { "deleting" })
            }
            FaultPoint::Recovery { step } => write!(f, "recovery step {step:?}"),
            FaultPoint::RestoreState { file } => write!(f, "reading `{}` to restore", file.display()),
            FaultPoint::Deploy { task, host } => write!(f, "deploying {task} to {host}"),
            FaultPoint::Batch { task, .. } => write!(f, "{task}'s next batch"),
            FaultPoint::Sink { task, id, step, .. } => write!(f, "{task}'s sink at {step:?} of {id}"),
            FaultPoint::Job { event, .. } => write!(f, "job {event:?}"),
            FaultPoint::Interleave { task, site } => write!(f, "{task} at {site:?}"),
        }
    }
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
    /// The node reaching the point dies here: the hook killed it, and the engine must do nothing more on it.
    Crash,
}

impl Fate {
    /// The delay to wait, for points that can only be delayed.
    pub fn delay(self) -> Option<Duration> {
        match self {
            Fate::Delay(delay) => Some(delay),
            Fate::Proceed | Fate::Drop | Fate::Fail | Fate::Crash => None,
        }
    }
}

/// A step failed because the fault hook said so.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("injected fault at {point}")]
pub struct Injected {
    /// The point, described.
    pub point: String,
}

/// The engine's fault points, as a simulation implements them.
pub trait FaultHook: Send + Sync {
    /// The engine reached `point` on node `node` (`jm`, `tm-<n>`); what happens there. To crash the node, the hook
    /// kills it and returns [`Fate::Crash`].
    fn at(&self, node: &str, point: FaultPoint<'_>) -> Fate;

    /// Whether the hook has anything to do at points of `kind`: a fate other than [`Fate::Proceed`] to give, or
    /// something to note. [`Faults`] asks once per kind when it is made and never calls [`FaultHook::at`] for a
    /// kind the hook does not listen to, so that the points reached at every batch cost nothing when nothing is
    /// aimed at them. The answer must not change while the hook is in use.
    fn listens(&self, kind: PointKind) -> bool {
        let _ = kind;
        true
    }
}

/// No faults: what real runs use.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFaults;

impl FaultHook for NoFaults {
    fn at(&self, _node: &str, _point: FaultPoint<'_>) -> Fate {
        Fate::Proceed
    }

    fn listens(&self, _kind: PointKind) -> bool {
        false
    }
}

/// A shared fault hook.
pub type FaultHookRef = Arc<dyn FaultHook>;

/// The hook of real runs.
pub fn none() -> FaultHookRef {
    Arc::new(NoFaults)
}

/// One node's fault points: what engine code on that node calls.
#[derive(Clone)]
pub struct Faults {
    node: Arc<str>,
    hook: FaultHookRef,
    /// Set once a point of this node was told to crash: every later point is told so too.
    crashed: Arc<AtomicBool>,
    /// The kinds of point the hook listens to ([`FaultHook::listens`]), as bits.
    listening: u16,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults").field("node", &self.node).finish_non_exhaustive()
    }
}

impl Faults {
    /// Node `node`'s points, decided by `hook`.
    pub fn on(node: &str, hook: FaultHookRef) -> Faults {
        let listening =
            PointKind::ALL.iter().filter(|kind| hook.listens(**kind)).fold(0, |bits, kind| bits | kind.bit());
        Faults { node: node.into(), hook, crashed: Arc::new(AtomicBool::new(false)), listening }
    }

    /// The points of a real run: everything proceeds.
    pub fn none() -> Faults {
        Faults::on("-", none())
    }

    /// The node these points are on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether points of `kind` may be anything but [`Fate::Proceed`]: the hook listens to them, or the node
    /// crashed. A caller may skip the point when not, as [`Faults::at`] would only say proceed.
    pub fn may_act(&self, kind: PointKind) -> bool {
        self.listening & kind.bit() != 0 || self.crashed()
    }

    /// Whether a point of this node was told to crash.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// What happens at `point`. Callers that cannot wait (synchronous code) must still stop acting on
    /// [`Fate::Crash`].
    pub fn at(&self, point: FaultPoint<'_>) -> Fate {
        if self.crashed() {
            return Fate::Crash;
        }
        if self.listening & point.kind().bit() == 0 {
            return Fate::Proceed;
        }
        let fate = self.hook.at(&self.node, point);
        if fate == Fate::Crash {
            self.crashed.store(true, Ordering::SeqCst);
            tracing::info!(target: "weir::trace", node = %self.node, %point, "fault: node crashes here");
        }
        fate
    }

    /// Obeys the fate of `point` for a step that can wait and fail: waits out a delay; `Err` for a failure; never
    /// returns after a crash (the node is dead, and its tasks are dropped at their next await).
    pub async fn obey(&self, point: FaultPoint<'_>) -> Result<(), Injected> {
        match self.at(point) {
            Fate::Proceed | Fate::Drop => Ok(()),
            Fate::Delay(delay) => {
                runtime::sleep(delay).await;
                Ok(())
            }
            Fate::Fail => Err(Injected { point: point.to_string() }),
            Fate::Crash => std::future::pending().await,
        }
    }

    /// Snapshot `id` of `class` of job `job` reached `phase`: stops here for good if the node crashes.
    pub async fn checkpoint_phase(&self, job: JobId, id: CheckpointId, class: SnapshotClass, phase: CheckpointPhase) {
        if self.at(FaultPoint::Snapshot { job, id, class, phase }) == Fate::Crash {
            std::future::pending::<()>().await;
        }
    }

    /// Yields at `site` for as long as the hook says: rare interleavings, made common under simulation.
    pub async fn interleave(&self, task: TaskRef, site: Interleaving) {
        match self.at(FaultPoint::Interleave { task, site }) {
            Fate::Delay(delay) if delay.is_zero() => runtime::yield_now().await,
            Fate::Delay(delay) => runtime::sleep(delay).await,
            Fate::Crash => std::future::pending().await,
            Fate::Proceed | Fate::Drop | Fate::Fail => {}
        }
    }

    /// Shorthand: how long to hold barrier `id` before it leaves `from` on output channel `channel`.
    pub fn barrier_delay(&self, id: CheckpointId, from: TaskRef, channel: u32) -> Option<Duration> {
        self.at(FaultPoint::Barrier { id, from, channel }).delay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SubtaskIndex, VertexId};
    use std::sync::Mutex;

    #[test]
    fn every_kind_is_listed_once_in_order() {
        for (index, kind) in PointKind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, index, "{kind:?} is out of order in ALL");
        }
        assert!(PointKind::ALL.len() <= 16, "the kinds must fit the bits of `Faults::listening`");
    }

    /// Listens to snapshot points only, crashes at the first, and counts every call.
    #[derive(Default)]
    struct SnapshotsOnly {
        calls: Mutex<Vec<PointKind>>,
    }

    impl FaultHook for SnapshotsOnly {
        fn at(&self, _node: &str, point: FaultPoint<'_>) -> Fate {
            self.calls.lock().unwrap().push(point.kind());
            Fate::Crash
        }

        fn listens(&self, kind: PointKind) -> bool {
            kind == PointKind::Snapshot
        }
    }

    #[test]
    fn a_hook_is_called_only_for_the_kinds_it_listens_to_and_a_crash_still_holds_for_every_point() {
        let hook = Arc::new(SnapshotsOnly::default());
        let faults = Faults::on("tm-0", hook.clone());
        let task = TaskRef { vertex: VertexId(0), subtask: SubtaskIndex(0) };
        let batch = FaultPoint::Batch { job: JobId(1), task };
        let snapshot = FaultPoint::Snapshot {
            job: JobId(1),
            id: CheckpointId(1),
            class: SnapshotClass::Checkpoint,
            phase: CheckpointPhase::Triggered,
        };
        assert_eq!(faults.at(batch), Fate::Proceed);
        assert_eq!(faults.at(snapshot), Fate::Crash);
        // The node is dead: the point the hook does not listen to is told so too, without asking it.
        assert_eq!(faults.at(batch), Fate::Crash);
        assert_eq!(*hook.calls.lock().unwrap(), vec![PointKind::Snapshot]);
    }
}
