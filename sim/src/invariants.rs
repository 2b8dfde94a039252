//! The named invariants a scenario can check. A violation names the invariant, the seed,
//! the simulated time and the event that broke it.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    /// The committed output equals a fault-free run of the same scenario and the job's
    /// reference model: nothing lost, nothing duplicated.
    ExactlyOnceOutput,
    /// `sequence`: every record committed exactly once, numbers ascending per (partition,
    /// key) in commit order.
    NoLossNoDupInOrder,
    /// The final keyed state (per-key totals or counts) equals the reference model's.
    StateEqualsReference,
    /// Completed checkpoint ids strictly increase over the whole run, across restarts.
    CheckpointIdsIncrease,
    /// At most `num-retained` complete `chk-*` directories remain per job, besides one that
    /// completed as a crash abandoned the job.
    RetainedCount,
    /// No file in a retained checkpoint that its `_metadata` does not reference.
    NoOrphanFiles,
    /// Every retained `_metadata` parses, and every file it references exists and is intact;
    /// no `chk-*` directory without a `_metadata` remains, except those of checkpoints in
    /// flight when a crash abandoned their job.
    MetadataReadable,
    /// With the jobmanager backend, every retained `_metadata` is self-contained.
    SelfContained,
    /// Every shared file a retained checkpoint refers to exists, with the size it recorded: no
    /// file was deleted while a checkpoint still needed it.
    NoDanglingSharedFiles,
    /// After the run, every file in a job's `shared/` directory is referenced by a retained
    /// checkpoint (unless a crash abandoned the job, leaving no one to delete it).
    NoLeakedSharedFiles,
    /// The job finishes within the healing bound after faults stop.
    Liveness,
    /// AT_LEAST_ONCE: every record is committed at least once.
    NothingLost,
    /// Every savepoint taken still exists at the end, parses, and has every file it
    /// references: the engine never deletes or subsumes savepoints.
    SavepointsKept,
    /// Protocol monitor: a sink commits only transactions of snapshots at or below the newest one its job
    /// completed or was restored from.
    CommitsFollowCompletion,
    /// Protocol monitor: a snapshot aborted or expired never completes afterwards.
    NoCompletionAfterAbort,
    /// Protocol monitor: an ack names only state files whose content is fsynced, and a completed snapshot's files
    /// are durable where its `_metadata` says.
    AcksFollowDurability,
    /// Protocol monitor: each snapshot id is triggered once per job, above every id triggered before and the
    /// snapshot the job was restored from.
    IdsTriggeredOnce,
    /// Consistent-cut oracle: every completed snapshot's state is the reference model's for exactly the input
    /// its sources recorded (checked as each checkpoint completes, and for every savepoint at the end; exactly
    /// once only, for workloads that check cuts).
    ConsistentCut,
}

impl Invariant {
    /// Whether the protocol monitors check it as the run goes ([`crate::monitor`]): always, whatever a scenario
    /// lists.
    pub fn is_protocol(self) -> bool {
        Invariant::PROTOCOL.contains(&self)
    }

    /// The invariants the monitors check ([`crate::monitor`]), in every scenario.
    pub const PROTOCOL: [Invariant; 5] = [
        Invariant::CommitsFollowCompletion,
        Invariant::NoCompletionAfterAbort,
        Invariant::AcksFollowDurability,
        Invariant::IdsTriggeredOnce,
        Invariant::ConsistentCut,
    ];
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        f.write_str(&name)
    }
}

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub invariant: Invariant,
    pub seed: u64,
    /// Simulated time at which the evidence was taken, in milliseconds.
    pub time_ms: u64,
    /// What broke it, specifically.
    pub event: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant `{}` violated (seed {}, at {} ms): {}",
            self.invariant, self.seed, self.time_ms, self.event
        )
    }
}
