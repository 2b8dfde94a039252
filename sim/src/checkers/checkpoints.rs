//! Checkpoint checkers: ids increase, retention, orphan files, readable metadata,
//! self-contained jobmanager checkpoints.

use super::Evidence;
use crate::invariants::{Invariant, Violation};
use engine::ids::CheckpointId;

pub fn ids_increase(evidence: &Evidence<'_>) -> Vec<Violation> {
    for pair in evidence.completed.windows(2) {
        if pair[0] >= pair[1] {
            return vec![evidence.violation(
                Invariant::CheckpointIdsIncrease,
                format!("checkpoint {} completed after {}", pair[1], pair[0]),
            )];
        }
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

pub fn self_contained(evidence: &Evidence<'_>) -> Vec<Violation> {
    if !evidence.jobmanager_backend {
        return Vec::new();
    }
    evidence
        .self_contained
        .iter()
        .filter(|(_, contained)| !contained)
        .map(|(path, _)| evidence.violation(Invariant::SelfContained, format!("{path} references state files")))
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
    if evidence.savepoints.is_empty() {
        violations.push(evidence.violation(Invariant::SavepointsKept, "no savepoint was taken"));
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::ExpectedOutput;
    use crate::checks::CheckpointDirReport;
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
        }
    }

    /// The invariants `retained_count` and `metadata_readable` break for one job directory,
    /// with the job abandoned by a crash after completing `crashed_after` if given.
    fn broken(report: CheckpointDirReport, crashed_after: Option<Option<u64>>) -> Vec<Invariant> {
        let abandoned: BTreeMap<PathBuf, Option<CheckpointId>> =
            crashed_after.map(|after| (report.job_dir.clone(), after.map(CheckpointId))).into_iter().collect();
        let reference = ExpectedOutput::new(Vec::new());
        let evidence = Evidence {
            seed: 0,
            time_ms: 0,
            output: "",
            reference: &reference,
            fault_free: None,
            completed: &[],
            checkpoint_dirs: &[report],
            abandoned: &abandoned,
            num_retained: 2,
            jobmanager_backend: false,
            finished_at_ms: None,
            healing_bound_ms: 0,
            self_contained: Vec::new(),
            savepoints: &[],
        };
        retained_count(&evidence).into_iter().chain(metadata_readable(&evidence)).map(|v| v.invariant).collect()
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
