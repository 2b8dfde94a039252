//! The engine's fault points as scenarios name them: one [`PointName`] per kind of point (and per phase or step),
//! what can happen at each, and the attributes a fault's scope is matched against.
//!
//! [`name_of`] and [`attributes_of`] match [`FaultPoint`] exhaustively: a point the engine gains is a compile error
//! here until it has a name, so no point can be forgotten by the scenarios, the swarm or the recorder.

use engine::faults::{
    CheckpointPhase, FaultPoint, Interleaving, JobEvent, PointKind, RecoveryStep, RpcKind, SinkStep, SnapshotClass,
};
use engine::ids::{CheckpointId, TaskRef};
use serde::{Deserialize, Serialize};

/// A kind of fault point, as `[[fault]] kind = "at_point"` names it in `point = "..."`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointName {
    SnapshotTriggered,
    SnapshotAligning,
    SnapshotAcked,
    /// An embedded checkpoint's new files moved into `shared/`, before its `_metadata` is written.
    SnapshotSharedRegistered,
    SnapshotWritingMetadata,
    SnapshotCompleted,
    SnapshotNotified,
    SnapshotFinishing,
    SnapshotAborted,
    SnapshotExpired,
    RpcTrigger,
    RpcNotify,
    RpcAbort,
    RpcFinish,
    RpcAck,
    RpcDecline,
    RpcEndOfData,
    Barrier,
    SnapshotAsync,
    Acknowledge,
    Discard,
    Discarded,
    RecoveryReadStore,
    RecoveryReadMetadata,
    RecoveryScanDirectory,
    RestoreState,
    Deploy,
    Batch,
    SinkPreCommit,
    SinkCommit,
    SinkCommitApplied,
    SinkCommitted,
    SinkRecoverCommit,
    SinkAbort,
    JobDeployed,
    JobFailingOver,
    JobFinished,
    JobCanceled,
    JobEnded,
    InterleaveGate,
    InterleaveSnapshotAsync,
    InterleaveSinkWrite,
}

/// What a fault does at a point.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointAction {
    /// The node reaching the point dies there (and restarts after `restart_after`).
    Crash,
    /// The step fails, as an IO error or an operator error would.
    Fail,
    /// The step waits first.
    Delay,
    /// The message is lost (RPCs only).
    Drop,
    /// The shared storage (every `dfs` volume: checkpoints, savepoints, input, output) loses power there, as
    /// `storage_crash` does, keeping any subset of the unsynced operations; the step then goes on, after `delay`
    /// where it can wait. A crash point between two steps of a protocol, as ALICE and CrashMonkey place them.
    CrashStorage,
}

impl PointName {
    /// Every point name, in declaration order.
    pub const ALL: [PointName; 42] = [
        PointName::SnapshotTriggered,
        PointName::SnapshotAligning,
        PointName::SnapshotAcked,
        PointName::SnapshotSharedRegistered,
        PointName::SnapshotWritingMetadata,
        PointName::SnapshotCompleted,
        PointName::SnapshotNotified,
        PointName::SnapshotFinishing,
        PointName::SnapshotAborted,
        PointName::SnapshotExpired,
        PointName::RpcTrigger,
        PointName::RpcNotify,
        PointName::RpcAbort,
        PointName::RpcFinish,
        PointName::RpcAck,
        PointName::RpcDecline,
        PointName::RpcEndOfData,
        PointName::Barrier,
        PointName::SnapshotAsync,
        PointName::Acknowledge,
        PointName::Discard,
        PointName::Discarded,
        PointName::RecoveryReadStore,
        PointName::RecoveryReadMetadata,
        PointName::RecoveryScanDirectory,
        PointName::RestoreState,
        PointName::Deploy,
        PointName::Batch,
        PointName::SinkPreCommit,
        PointName::SinkCommit,
        PointName::SinkCommitApplied,
        PointName::SinkCommitted,
        PointName::SinkRecoverCommit,
        PointName::SinkAbort,
        PointName::JobDeployed,
        PointName::JobFailingOver,
        PointName::JobFinished,
        PointName::JobCanceled,
        PointName::JobEnded,
        PointName::InterleaveGate,
        PointName::InterleaveSnapshotAsync,
        PointName::InterleaveSinkWrite,
    ];

    /// Its index in [`PointName::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind of the engine's points this name is one of.
    pub fn kind(self) -> PointKind {
        use PointName::*;
        match self {
            SnapshotTriggered
            | SnapshotAligning
            | SnapshotAcked
            | SnapshotSharedRegistered
            | SnapshotWritingMetadata
            | SnapshotCompleted
            | SnapshotNotified
            | SnapshotFinishing
            | SnapshotAborted
            | SnapshotExpired => PointKind::Snapshot,
            RpcTrigger | RpcNotify | RpcAbort | RpcFinish | RpcAck | RpcDecline | RpcEndOfData => PointKind::Rpc,
            Barrier => PointKind::Barrier,
            SnapshotAsync => PointKind::SnapshotAsync,
            Acknowledge => PointKind::Acknowledge,
            Discard | Discarded => PointKind::Discard,
            RecoveryReadStore | RecoveryReadMetadata | RecoveryScanDirectory => PointKind::Recovery,
            RestoreState => PointKind::RestoreState,
            Deploy => PointKind::Deploy,
            Batch => PointKind::Batch,
            SinkPreCommit | SinkCommit | SinkCommitApplied | SinkCommitted | SinkRecoverCommit | SinkAbort => {
                PointKind::Sink
            }
            JobDeployed | JobFailingOver | JobFinished | JobCanceled | JobEnded => PointKind::Job,
            InterleaveGate | InterleaveSnapshotAsync | InterleaveSinkWrite => PointKind::Interleave,
        }
    }

    /// The actions the engine obeys at this point. Crashing the node reaching the point, and crashing the storage,
    /// are possible everywhere; failing and delaying only where the step can fail or wait.
    pub fn actions(self) -> &'static [PointAction] {
        use PointAction::{Crash, CrashStorage, Delay, Drop, Fail};
        use PointName::*;
        match self {
            SnapshotTriggered
            | SnapshotAligning
            | SnapshotAcked
            | SnapshotSharedRegistered
            | SnapshotWritingMetadata
            | SnapshotCompleted
            | SnapshotNotified
            | SnapshotFinishing
            | SnapshotAborted
            | SnapshotExpired
            | Acknowledge
            | JobDeployed
            | JobFailingOver
            | JobFinished
            | JobCanceled
            | JobEnded
            | Discarded => &[Crash, CrashStorage],
            RpcTrigger | RpcNotify | RpcAbort | RpcFinish | RpcAck | RpcDecline | RpcEndOfData => {
                &[Crash, CrashStorage, Delay, Drop]
            }
            Barrier | SnapshotAsync | InterleaveGate | InterleaveSnapshotAsync | InterleaveSinkWrite => {
                &[Crash, CrashStorage, Delay]
            }
            Batch => &[Crash, CrashStorage, Fail],
            Discard
            | RecoveryReadStore
            | RecoveryReadMetadata
            | RecoveryScanDirectory
            | RestoreState
            | Deploy
            | SinkPreCommit
            | SinkCommit
            | SinkCommitApplied
            | SinkCommitted
            | SinkRecoverCommit
            | SinkAbort => &[Crash, CrashStorage, Fail, Delay],
        }
    }

    /// Whether the point is reached on the job manager (else on a task manager, by a subtask).
    pub fn on_job_manager(self) -> bool {
        use PointName::*;
        match self {
            SnapshotTriggered
            | SnapshotAcked
            | SnapshotSharedRegistered
            | SnapshotWritingMetadata
            | SnapshotCompleted
            | SnapshotNotified
            | SnapshotFinishing
            | SnapshotAborted
            | SnapshotExpired
            | RpcTrigger
            | RpcNotify
            | RpcAbort
            | RpcFinish
            | Discard
            | Discarded
            | RecoveryReadStore
            | RecoveryReadMetadata
            | RecoveryScanDirectory
            | RestoreState
            | Deploy
            | JobDeployed
            | JobFailingOver
            | JobFinished
            | JobCanceled
            | JobEnded => true,
            SnapshotAligning
            | RpcAck
            | RpcDecline
            | RpcEndOfData
            | Barrier
            | SnapshotAsync
            | Acknowledge
            | Batch
            | SinkPreCommit
            | SinkCommit
            | SinkCommitApplied
            | SinkCommitted
            | SinkRecoverCommit
            | SinkAbort
            | InterleaveGate
            | InterleaveSnapshotAsync
            | InterleaveSinkWrite => false,
        }
    }

    /// Its name as scenario files spell it.
    pub fn as_str(self) -> String {
        toml::Value::try_from(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    }
}

/// What a fault's scope can be matched against at a point.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub task: Option<TaskRef>,
    pub checkpoint: Option<CheckpointId>,
    pub class: Option<SnapshotClass>,
    pub channel: Option<u32>,
}

/// The name of `point`.
pub fn name_of(point: &FaultPoint<'_>) -> PointName {
    match point {
        FaultPoint::Snapshot { phase, .. } => match phase {
            CheckpointPhase::Triggered => PointName::SnapshotTriggered,
            CheckpointPhase::Aligning => PointName::SnapshotAligning,
            CheckpointPhase::Acked => PointName::SnapshotAcked,
            CheckpointPhase::SharedRegistered => PointName::SnapshotSharedRegistered,
            CheckpointPhase::WritingMetadata => PointName::SnapshotWritingMetadata,
            CheckpointPhase::Completed => PointName::SnapshotCompleted,
            CheckpointPhase::Notified => PointName::SnapshotNotified,
            CheckpointPhase::Finishing => PointName::SnapshotFinishing,
            CheckpointPhase::Aborted => PointName::SnapshotAborted,
            CheckpointPhase::Expired => PointName::SnapshotExpired,
        },
        FaultPoint::Rpc { kind, .. } => match kind {
            RpcKind::Trigger => PointName::RpcTrigger,
            RpcKind::Notify => PointName::RpcNotify,
            RpcKind::Abort => PointName::RpcAbort,
            RpcKind::Finish => PointName::RpcFinish,
            RpcKind::Ack => PointName::RpcAck,
            RpcKind::Decline => PointName::RpcDecline,
            RpcKind::EndOfData => PointName::RpcEndOfData,
        },
        FaultPoint::Barrier { .. } => PointName::Barrier,
        FaultPoint::SnapshotAsync { .. } => PointName::SnapshotAsync,
        FaultPoint::Acknowledge { .. } => PointName::Acknowledge,
        FaultPoint::Discard { done: false, .. } => PointName::Discard,
        FaultPoint::Discard { done: true, .. } => PointName::Discarded,
        FaultPoint::Recovery { step } => match step {
            RecoveryStep::ReadStore => PointName::RecoveryReadStore,
            RecoveryStep::ReadMetadata => PointName::RecoveryReadMetadata,
            RecoveryStep::ScanDirectory => PointName::RecoveryScanDirectory,
        },
        FaultPoint::RestoreState { .. } => PointName::RestoreState,
        FaultPoint::Deploy { .. } => PointName::Deploy,
        FaultPoint::Batch { .. } => PointName::Batch,
        FaultPoint::Sink { step, .. } => match step {
            SinkStep::PreCommit => PointName::SinkPreCommit,
            SinkStep::Commit => PointName::SinkCommit,
            SinkStep::CommitApplied => PointName::SinkCommitApplied,
            SinkStep::Committed => PointName::SinkCommitted,
            SinkStep::RecoverCommit => PointName::SinkRecoverCommit,
            SinkStep::Abort => PointName::SinkAbort,
        },
        FaultPoint::Job { event, .. } => match event {
            JobEvent::Deployed => PointName::JobDeployed,
            JobEvent::FailingOver => PointName::JobFailingOver,
            JobEvent::Finished => PointName::JobFinished,
            JobEvent::Canceled => PointName::JobCanceled,
            JobEvent::Ended => PointName::JobEnded,
        },
        FaultPoint::Interleave { site, .. } => match site {
            Interleaving::Gate => PointName::InterleaveGate,
            Interleaving::SnapshotAsync => PointName::InterleaveSnapshotAsync,
            Interleaving::SinkWrite => PointName::InterleaveSinkWrite,
        },
    }
}

/// What `point` says of the task, checkpoint, snapshot class and channel it concerns.
pub fn attributes_of(point: &FaultPoint<'_>) -> Attributes {
    let none = Attributes::default();
    match *point {
        FaultPoint::Snapshot { id, class, .. } => Attributes { checkpoint: Some(id), class: Some(class), ..none },
        FaultPoint::Rpc { task, .. } => Attributes { task: Some(task), ..none },
        FaultPoint::Barrier { id, from, channel } => {
            Attributes { task: Some(from), checkpoint: Some(id), channel: Some(channel), ..none }
        }
        FaultPoint::SnapshotAsync { id, task } | FaultPoint::Acknowledge { id, task, .. } => {
            Attributes { task: Some(task), checkpoint: Some(id), ..none }
        }
        FaultPoint::Discard { id, .. } => Attributes { checkpoint: Some(id), ..none },
        FaultPoint::Recovery { .. } | FaultPoint::RestoreState { .. } | FaultPoint::Job { .. } => none,
        FaultPoint::Deploy { task, .. } | FaultPoint::Batch { task, .. } | FaultPoint::Interleave { task, .. } => {
            Attributes { task: Some(task), ..none }
        }
        FaultPoint::Sink { task, id, .. } => Attributes { task: Some(task), checkpoint: Some(id), ..none },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_listed_once_in_order_and_spelt_as_scenarios_spell_it() {
        for (index, name) in PointName::ALL.iter().enumerate() {
            assert_eq!(name.index(), index, "{name:?} is out of order in ALL");
            let spelt = name.as_str();
            let parsed: PointName = toml::Value::String(spelt.clone()).try_into().expect("parses back");
            assert_eq!(parsed, *name, "{spelt}");
            assert!(name.actions().contains(&PointAction::Crash), "{spelt}: every point can crash its node");
        }
        assert_eq!(PointName::SinkCommitApplied.as_str(), "sink_commit_applied");
    }

    #[test]
    fn each_name_is_of_the_kind_of_the_points_it_names_and_every_name_has_points() {
        use CheckpointPhase as P;
        let task = TaskRef { vertex: engine::ids::VertexId(0), subtask: engine::ids::SubtaskIndex(0) };
        let (job, id) = (engine::ids::JobId(1), CheckpointId(1));
        let mut points = Vec::new();
        for phase in [
            P::Triggered,
            P::Aligning,
            P::Acked,
            P::SharedRegistered,
            P::WritingMetadata,
            P::Completed,
            P::Notified,
            P::Finishing,
            P::Aborted,
            P::Expired,
        ] {
            points.push(FaultPoint::Snapshot { job, id, class: SnapshotClass::Checkpoint, phase });
        }
        use RpcKind as R;
        for kind in [R::Trigger, R::Notify, R::Abort, R::Finish, R::Ack, R::Decline, R::EndOfData] {
            points.push(FaultPoint::Rpc { kind, task, host: "tm-0" });
        }
        points.push(FaultPoint::Barrier { id, from: task, channel: 0 });
        points.push(FaultPoint::SnapshotAsync { id, task });
        points.push(FaultPoint::Acknowledge { job, id, task, files: &[] });
        for done in [false, true] {
            points.push(FaultPoint::Discard { job, id, dir: std::path::Path::new("/d"), done });
        }
        for step in [RecoveryStep::ReadStore, RecoveryStep::ReadMetadata, RecoveryStep::ScanDirectory] {
            points.push(FaultPoint::Recovery { step });
        }
        points.push(FaultPoint::RestoreState { file: std::path::Path::new("/f") });
        points.push(FaultPoint::Deploy { task, host: "tm-0" });
        points.push(FaultPoint::Batch { job, task });
        use SinkStep as S;
        for step in [S::PreCommit, S::Commit, S::CommitApplied, S::Committed, S::RecoverCommit, S::Abort] {
            points.push(FaultPoint::Sink { job, task, id, step });
        }
        use JobEvent as J;
        for event in [J::Deployed, J::FailingOver, J::Finished, J::Canceled, J::Ended] {
            points.push(FaultPoint::Job { job, event, restored: None });
        }
        for site in [Interleaving::Gate, Interleaving::SnapshotAsync, Interleaving::SinkWrite] {
            points.push(FaultPoint::Interleave { task, site });
        }
        let mut named = std::collections::BTreeSet::new();
        for point in &points {
            let name = name_of(point);
            assert_eq!(name.kind(), point.kind(), "{name:?} names {point}");
            named.insert(name);
        }
        assert_eq!(named.len(), PointName::ALL.len(), "a name without points: the list above misses a variant");
    }
}
