//! Checkers: each takes the evidence of a finished run and reports violations of its
//! invariants. Expected results come from reference models and a fault-free run, never
//! from the output under test.

pub mod checkpoints;
pub mod liveness;
pub mod output;
pub mod shared;

use crate::checks::CheckpointDirReport;
use crate::invariants::{Invariant, Violation};
use crate::workload::Prepared;
use engine::ids::{CheckpointId, JobId};
pub use output::ExpectedOutput;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What a whole-cluster crash left of one job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Abandoned {
    /// The highest snapshot id the job completed before the crash: those above were in flight.
    pub completed: Option<CheckpointId>,
    /// Checkpoints whose directories the job manager was deleting at the crash.
    pub discarding: BTreeSet<CheckpointId>,
}

/// What a run left behind, for the checkers.
/// A snapshot that completed, in the order they completed across the run.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub job: JobId,
    pub id: CheckpointId,
    pub class: engine::faults::SnapshotClass,
}

pub struct Evidence<'a> {
    pub seed: u64,
    pub time_ms: u64,
    /// The committed output, part files concatenated in commit order per subtask.
    pub output: &'a str,
    /// The workload's reference, from its parameters alone.
    pub reference: &'a ExpectedOutput,
    /// The workload, which reads state from output and knows its own order rule.
    pub workload: &'a dyn Prepared,
    /// A fault-free run's committed output (sorted lines).
    pub fault_free: Option<&'a [String]>,
    /// Snapshots completed over the run, in completion order, with the job that completed each.
    pub completions: &'a [Completion],
    /// Every job of the run, with the id of the snapshot it was restored from (`None`: a fresh start). Ids
    /// increase along a lineage: a job restored from `n` numbers above `n`.
    pub lineage: &'a BTreeMap<JobId, Option<CheckpointId>>,
    pub checkpoint_dirs: &'a [CheckpointDirReport],
    /// Jobs that a whole-cluster crash abandoned, by job directory. No one is left to complete or discard what
    /// the job had in flight, so those directories may remain.
    pub abandoned: &'a BTreeMap<PathBuf, Abandoned>,
    pub num_retained: u32,
    /// `None` if the job did not finish within the healing bound.
    pub finished_at_ms: Option<u64>,
    pub healing_bound_ms: u64,
    /// Savepoints taken during the run, and what became of each: `None` if intact, else
    /// the problem.
    pub savepoints: &'a [(String, Option<String>)],
    /// What the protocol monitors found as the run went.
    pub protocol: &'a [Violation],
    /// Whether a savepoint step must have taken a savepoint: one of the scenario's is not `optional`.
    pub savepoints_required: bool,
}

impl Evidence<'_> {
    pub fn violation(&self, invariant: Invariant, event: impl Into<String>) -> Violation {
        Violation { invariant, seed: self.seed, time_ms: self.time_ms, event: event.into() }
    }

    /// Whether checkpoint `id` of the job in `job_dir` was in flight, or being discarded, when a crash abandoned
    /// the job: then its directory may remain, complete or not.
    pub fn in_flight_at_crash(&self, job_dir: &Path, id: CheckpointId) -> bool {
        self.abandoned.get(job_dir).is_some_and(|abandoned| {
            abandoned.completed.is_none_or(|completed| id > completed) || abandoned.discarding.contains(&id)
        })
    }
}

/// Runs the checkers of `invariants` (each once, in order).
pub fn check(invariants: &[Invariant], evidence: &Evidence<'_>) -> Vec<Violation> {
    let committed = output::Committed::new(evidence.output);
    let mut violations = Vec::new();
    for invariant in invariants {
        let found = match invariant {
            Invariant::ExactlyOnceOutput => output::exactly_once(evidence, &committed),
            Invariant::NoLossNoDupInOrder => output::in_order(evidence, &committed),
            Invariant::StateEqualsReference => output::state_equals_reference(evidence, &committed),
            Invariant::NothingLost => output::nothing_lost(evidence, &committed),
            Invariant::CheckpointIdsIncrease => checkpoints::ids_increase(evidence),
            Invariant::RetainedCount => checkpoints::retained_count(evidence),
            Invariant::NoOrphanFiles => checkpoints::no_orphans(evidence),
            Invariant::MetadataReadable => checkpoints::metadata_readable(evidence),
            Invariant::SelfContained => checkpoints::self_contained(evidence),
            Invariant::Liveness => liveness::finished_in_bound(evidence),
            Invariant::SavepointsKept => checkpoints::savepoints_kept(evidence),
            Invariant::NoDanglingSharedFiles => shared::no_dangling(evidence),
            Invariant::NoLeakedSharedFiles => shared::no_leak(evidence),
            Invariant::CommitsFollowCompletion
            | Invariant::NoCompletionAfterAbort
            | Invariant::AcksFollowDurability
            | Invariant::IdsTriggeredOnce
            | Invariant::ConsistentCut => {
                evidence.protocol.iter().filter(|v| v.invariant == *invariant).cloned().collect()
            }
        };
        violations.extend(found);
    }
    violations
}
