//! Checkpoint checkers: ids increase, retention, orphan files, readable metadata,
//! self-contained jobmanager checkpoints.

use super::Evidence;
use crate::invariants::{Invariant, Violation};

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
        .filter(|report| report.retained.len() > evidence.num_retained as usize)
        .map(|report| {
            let event = format!(
                "{} retains {:?}, more than {}",
                report.job_dir.display(),
                report.retained,
                evidence.num_retained
            );
            evidence.violation(Invariant::RetainedCount, event)
        })
        .collect()
}

pub fn no_orphans(evidence: &Evidence<'_>) -> Vec<Violation> {
    problems(evidence, Invariant::NoOrphanFiles, |p| p.contains("orphan file"))
}

pub fn metadata_readable(evidence: &Evidence<'_>) -> Vec<Violation> {
    problems(evidence, Invariant::MetadataReadable, |p| !p.contains("orphan file"))
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
