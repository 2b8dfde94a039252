//! Checkers: each takes the evidence of a finished run and reports violations of its
//! invariants. Expected results come from reference models and a fault-free run, never
//! from the output under test.

pub mod checkpoints;
pub mod liveness;
pub mod output;

use crate::checks::CheckpointDirReport;
use crate::invariants::{Invariant, Violation};
use engine::ids::CheckpointId;
pub use output::ExpectedOutput;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a run left behind, for the checkers.
pub struct Evidence<'a> {
    pub seed: u64,
    pub time_ms: u64,
    /// The committed output, part files concatenated in commit order per subtask.
    pub output: &'a str,
    /// The job's reference output, from its parameters alone.
    pub reference: &'a ExpectedOutput,
    /// A fault-free run's committed output (sorted lines).
    pub fault_free: Option<&'a [String]>,
    /// Checkpoints completed over the run, in completion order across every job.
    pub completed: &'a [CheckpointId],
    pub checkpoint_dirs: &'a [CheckpointDirReport],
    /// Jobs that a whole-cluster crash abandoned, by job directory, with the highest
    /// checkpoint id completed before the crash. No one is left to complete or discard the
    /// checkpoints the job had in flight (those above it), so their directories may remain.
    pub abandoned: &'a BTreeMap<PathBuf, Option<CheckpointId>>,
    pub num_retained: u32,
    pub jobmanager_backend: bool,
    /// `None` if the job did not finish within the healing bound.
    pub finished_at_ms: Option<u64>,
    pub healing_bound_ms: u64,
    pub self_contained: Vec<(String, bool)>,
    /// Savepoints taken during the run, and what became of each: `None` if intact, else
    /// the problem.
    pub savepoints: &'a [(String, Option<String>)],
}

impl Evidence<'_> {
    pub fn violation(&self, invariant: Invariant, event: impl Into<String>) -> Violation {
        Violation { invariant, seed: self.seed, time_ms: self.time_ms, event: event.into() }
    }

    /// Whether checkpoint `id` of the job in `job_dir` was in flight when a crash abandoned
    /// the job.
    pub fn in_flight_at_crash(&self, job_dir: &Path, id: CheckpointId) -> bool {
        self.abandoned.get(job_dir).is_some_and(|&completed| completed.is_none_or(|completed| id > completed))
    }
}

/// Runs the checkers of `invariants`.
pub fn check(invariants: &[Invariant], evidence: &Evidence<'_>) -> Vec<Violation> {
    let committed = output::Committed::new(evidence.output);
    let mut violations = Vec::new();
    for invariant in invariants {
        let found = match invariant {
            Invariant::ExactlyOnceOutput => output::exactly_once(evidence, &committed),
            Invariant::NoLossNoDupInOrder => output::sequence_in_order(evidence, &committed),
            Invariant::StateEqualsReference => output::state_equals_reference(evidence, &committed),
            Invariant::NothingLost => output::nothing_lost(evidence, &committed),
            Invariant::CheckpointIdsIncrease => checkpoints::ids_increase(evidence),
            Invariant::RetainedCount => checkpoints::retained_count(evidence),
            Invariant::NoOrphanFiles => checkpoints::no_orphans(evidence),
            Invariant::MetadataReadable => checkpoints::metadata_readable(evidence),
            Invariant::SelfContained => checkpoints::self_contained(evidence),
            Invariant::Liveness => liveness::finished_in_bound(evidence),
            Invariant::SavepointsKept => checkpoints::savepoints_kept(evidence),
        };
        violations.extend(found);
    }
    violations
}
