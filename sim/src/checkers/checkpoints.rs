//! Checkpoint checkers: ids increase, retention, orphan files, readable metadata,
//! self-contained jobmanager checkpoints.

use super::{Completion, Evidence};
use crate::invariants::{Invariant, Violation};
use engine::checkpoint::metadata::SnapshotFormat;
use engine::faults::SnapshotClass;
use engine::ids::{CheckpointId, JobId};
use std::collections::{BTreeMap, BTreeSet};

/// Ids strictly increase along a job's lineage: every snapshot's id is above the one the job was restored from and
/// is used once, and checkpoints complete in id order (a newer one subsumes the older ones still pending). A user's
/// savepoint is never subsumed (as in Flink): triggered before a checkpoint, it may complete after it.
pub fn ids_increase(evidence: &Evidence<'_>) -> Vec<Violation> {
    let mut last_checkpoint: BTreeMap<JobId, CheckpointId> = BTreeMap::new();
    let mut seen: BTreeSet<(JobId, CheckpointId)> = BTreeSet::new();
    for completion in evidence.completions {
        let Completion { job, id, class } = *completion;
        let violation = |message: String| {
            vec![evidence.violation(Invariant::CheckpointIdsIncrease, format!("job {job}: {message}"))]
        };
        if let Some(from) = evidence.lineage.get(&job).copied().flatten().filter(|&from| id <= from) {
            return violation(format!("snapshot {id} completed, but the job was restored from {from}"));
        }
        if !seen.insert((job, id)) {
            return violation(format!("snapshot {id} completed twice"));
        }
        if class == SnapshotClass::Savepoint {
            continue;
        }
        if let Some(last) = last_checkpoint.get(&job).copied().filter(|&last| id <= last) {
            return violation(format!("checkpoint {id} completed after {last}"));
        }
        last_checkpoint.insert(job, id);
    }
    Vec::new()
}

pub fn retained_count(evidence: &Evidence<'_>) -> Vec<Violation> {
    evidence
        .checkpoint_dirs
        .iter()
        .filter_map(|report| {
            // One that completed as a crash abandoned its job was never subject to retention.
            let retained: Vec<CheckpointId> = report
                .retained
                .iter()
                .copied()
                .filter(|&id| !evidence.in_flight_at_crash(&report.job_dir, id))
                .collect();
            (retained.len() > evidence.num_retained as usize).then(|| {
                let event =
                    format!("{} retains {retained:?}, more than {}", report.job_dir.display(), evidence.num_retained);
                evidence.violation(Invariant::RetainedCount, event)
            })
        })
        .collect()
}

pub fn no_orphans(evidence: &Evidence<'_>) -> Vec<Violation> {
    problems(evidence, Invariant::NoOrphanFiles, |p| p.contains("orphan file"))
}

pub fn metadata_readable(evidence: &Evidence<'_>) -> Vec<Violation> {
    let mut violations = problems(evidence, Invariant::MetadataReadable, |p| !p.contains("orphan file"));
    // An incomplete checkpoint must have been discarded (aborted, subsumed, or the job ended),
    // unless a crash abandoned its job while it was in flight.
    for report in evidence.checkpoint_dirs {
        for &id in report.incomplete.iter().filter(|&&id| !evidence.in_flight_at_crash(&report.job_dir, id)) {
            let event = format!("{}: chk-{}: left without a `_metadata` file", report.job_dir.display(), id.0);
            violations.push(evidence.violation(Invariant::MetadataReadable, event));
        }
    }
    violations
}

fn problems(evidence: &Evidence<'_>, invariant: Invariant, select: impl Fn(&str) -> bool) -> Vec<Violation> {
    evidence
        .checkpoint_dirs
        .iter()
        .flat_map(|report| report.problems.iter().filter(|p| select(p)).map(move |p| (report, p)))
        .map(|(report, problem)| evidence.violation(invariant, format!("{}: {problem}", report.job_dir.display())))
        .collect()
}

/// Every retained checkpoint written by the jobmanager backend is self-contained: judged by the backend of the job
/// that wrote it, as its `_metadata` records it.
pub fn self_contained(evidence: &Evidence<'_>) -> Vec<Violation> {
    evidence
        .checkpoint_dirs
        .iter()
        .flat_map(|report| report.self_contained.iter())
        .filter(|(_, format, contained)| *format == SnapshotFormat::JobManager && !contained)
        .map(|(path, _, _)| {
            evidence.violation(Invariant::SelfContained, format!("{path} (jobmanager backend) references state files"))
        })
        .collect()
}

pub fn savepoints_kept(evidence: &Evidence<'_>) -> Vec<Violation> {
    let mut violations: Vec<Violation> = evidence
        .savepoints
        .iter()
        .filter_map(|(path, problem)| {
            problem.as_ref().map(|p| evidence.violation(Invariant::SavepointsKept, format!("{path}: {p}")))
        })
        .collect();
    // Savepoint steps must take one, or the invariant says nothing; steps marked `optional` (a swarm's drawn
    // ones) may all meet a job that is finishing or restarting, and then there is nothing to keep.
    if evidence.savepoints.is_empty() && evidence.savepoints_required {
        violations.push(evidence.violation(Invariant::SavepointsKept, "no savepoint was taken"));
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::{Abandoned, ExpectedOutput};
    use crate::checks::CheckpointDirReport;
    use crate::workload::{Reference, Registry};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn ids(ids: &[u64]) -> Vec<CheckpointId> {
        ids.iter().copied().map(CheckpointId).collect()
    }

    fn report(retained: &[u64], incomplete: &[u64]) -> CheckpointDirReport {
        CheckpointDirReport {
            job_dir: PathBuf::from("/checkpoints/job"),
            retained: ids(retained),
            incomplete: ids(incomplete),
            problems: Vec::new(),
            self_contained: Vec::new(),
            dangling: Vec::new(),
            leaked: Vec::new(),
        }
    }

    /// The invariants `retained_count` and `metadata_readable` break for one job directory, with the job abandoned
    /// by a crash after completing `crashed_after` (and while discarding `discarding`) if given.
    fn broken_while(
        report: CheckpointDirReport,
        crashed_after: Option<Option<u64>>,
        discarding: &[u64],
    ) -> Vec<Invariant> {
        let abandoned: BTreeMap<PathBuf, Abandoned> = crashed_after
            .map(|after| {
                let discarding = discarding.iter().copied().map(CheckpointId).collect();
                (report.job_dir.clone(), Abandoned { completed: after.map(CheckpointId), discarding })
            })
            .into_iter()
            .collect();
        let reference = ExpectedOutput::new(Reference::default());
        let workload = Registry::builtin().prepare("sequence", &toml::Table::new()).unwrap();
        let evidence = Evidence {
            seed: 0,
            time_ms: 0,
            output: "",
            reference: &reference,
            workload: workload.as_ref(),
            fault_free: None,
            completions: &[],
            lineage: &BTreeMap::new(),
            checkpoint_dirs: &[report],
            abandoned: &abandoned,
            num_retained: 2,
            finished_at_ms: None,
            healing_bound_ms: 0,
            savepoints: &[],
            protocol: &[],
            savepoints_required: true,
        };
        retained_count(&evidence).into_iter().chain(metadata_readable(&evidence)).map(|v| v.invariant).collect()
    }

    fn broken(report: CheckpointDirReport, crashed_after: Option<Option<u64>>) -> Vec<Invariant> {
        broken_while(report, crashed_after, &[])
    }

    #[test]
    fn a_checkpoint_being_discarded_at_the_crash_may_remain_and_only_that_one() {
        // Checkpoint 1 was subsumed and half deleted when the crash came; 2 and 3 are retained.
        assert_eq!(broken_while(report(&[1, 2, 3], &[]), Some(Some(3)), &[1]), []);
        assert_eq!(broken_while(report(&[2, 3], &[1]), Some(Some(3)), &[1]), []);
        // Any other leftover is still a violation: one more retained checkpoint, or an incomplete one.
        assert_eq!(broken_while(report(&[1, 2, 3, 4], &[]), Some(Some(4)), &[1]), [Invariant::RetainedCount]);
        assert_eq!(broken_while(report(&[2, 3], &[1]), Some(Some(3)), &[2]), [Invariant::MetadataReadable]);
    }

    fn ids_evidence(completions: &[(u128, u64)], lineage: &[(u128, Option<u64>)]) -> Vec<Invariant> {
        let completions: Vec<(u128, u64, SnapshotClass)> =
            completions.iter().map(|&(job, id)| (job, id, SnapshotClass::Checkpoint)).collect();
        classed_ids_evidence(&completions, lineage)
    }

    fn classed_ids_evidence(
        completions: &[(u128, u64, SnapshotClass)],
        lineage: &[(u128, Option<u64>)],
    ) -> Vec<Invariant> {
        let completions: Vec<Completion> = completions
            .iter()
            .map(|&(job, id, class)| Completion { job: JobId(job), id: CheckpointId(id), class })
            .collect();
        let lineage: BTreeMap<JobId, Option<CheckpointId>> =
            lineage.iter().map(|&(job, from)| (JobId(job), from.map(CheckpointId))).collect();
        let reference = ExpectedOutput::new(Reference::default());
        let workload = Registry::builtin().prepare("sequence", &toml::Table::new()).unwrap();
        let evidence = Evidence {
            seed: 0,
            time_ms: 0,
            output: "",
            reference: &reference,
            workload: workload.as_ref(),
            fault_free: None,
            completions: &completions,
            lineage: &lineage,
            checkpoint_dirs: &[],
            abandoned: &BTreeMap::new(),
            num_retained: 2,
            finished_at_ms: None,
            healing_bound_ms: 0,
            savepoints: &[],
            protocol: &[],
            savepoints_required: true,
        };
        ids_increase(&evidence).into_iter().map(|v| v.invariant).collect()
    }

    #[test]
    fn ids_increase_along_each_jobs_lineage_not_across_unrelated_jobs() {
        // Job 1 completes 1..3; job 2 starts fresh (a crash lost everything) and numbers from 1 again.
        assert_eq!(ids_evidence(&[(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)], &[(1, None), (2, None)]), []);
        // Job 2 restored from job 1's checkpoint 3 numbers above it.
        assert_eq!(ids_evidence(&[(1, 3), (2, 4)], &[(1, None), (2, Some(3))]), []);
        assert_eq!(ids_evidence(&[(1, 3), (2, 3)], &[(1, None), (2, Some(3))]), [Invariant::CheckpointIdsIncrease]);
        assert_eq!(ids_evidence(&[(1, 3), (1, 2)], &[(1, None)]), [Invariant::CheckpointIdsIncrease]);
    }

    #[test]
    fn a_savepoint_may_complete_after_a_newer_checkpoint_but_no_id_completes_twice() {
        use SnapshotClass::{Checkpoint, Savepoint, Stop};
        let none = [(1, None)];
        assert_eq!(classed_ids_evidence(&[(1, 9, Savepoint), (1, 10, Checkpoint)], &none), []);
        assert_eq!(classed_ids_evidence(&[(1, 10, Checkpoint), (1, 9, Savepoint), (1, 11, Checkpoint)], &none), []);
        let twice = [(1, 9, Savepoint), (1, 9, Savepoint)];
        assert_eq!(classed_ids_evidence(&twice, &none), [Invariant::CheckpointIdsIncrease]);
        // A stop's savepoint ends the job: it is no more exempt than a checkpoint.
        let stop = [(1, 10, Checkpoint), (1, 9, Stop)];
        assert_eq!(classed_ids_evidence(&stop, &none), [Invariant::CheckpointIdsIncrease]);
        let restored = [(2, 3, Savepoint)];
        assert_eq!(classed_ids_evidence(&restored, &[(2, Some(3))]), [Invariant::CheckpointIdsIncrease]);
    }

    #[test]
    fn an_incomplete_checkpoint_left_behind_is_a_violation() {
        assert_eq!(broken(report(&[2, 3], &[4]), None), [Invariant::MetadataReadable]);
        assert_eq!(broken(report(&[2, 3, 4], &[]), None), [Invariant::RetainedCount]);
    }

    #[test]
    fn checkpoints_in_flight_when_a_crash_abandoned_the_job_may_remain() {
        assert_eq!(broken(report(&[2, 3], &[4, 5]), Some(Some(3))), []);
        assert_eq!(broken(report(&[2, 3, 4], &[5]), Some(Some(3))), []);
        assert_eq!(broken(report(&[], &[1]), Some(None)), []);
    }

    #[test]
    fn checkpoints_a_crashed_job_had_completed_or_aborted_are_still_checked() {
        assert_eq!(broken(report(&[2, 3], &[1]), Some(Some(3))), [Invariant::MetadataReadable]);
        assert_eq!(broken(report(&[1, 2, 3], &[]), Some(Some(3))), [Invariant::RetainedCount]);
    }
}
