//! Shared-file checkers, for the embedded backend's incremental checkpoints: no retained checkpoint refers to a
//! shared file that is gone (the registry deleted it too early), and no file in `shared/` outlives every
//! checkpoint that referred to it (the registry never deleted it).

use super::Evidence;
use crate::invariants::{Invariant, Violation};

pub fn no_dangling(evidence: &Evidence<'_>) -> Vec<Violation> {
    evidence
        .checkpoint_dirs
        .iter()
        .flat_map(|report| report.dangling.iter().map(move |file| (report, file)))
        .map(|(report, file)| {
            let event = format!("{}: {file}: a shared file the checkpoint refers to is gone", report.job_dir.display());
            evidence.violation(Invariant::NoDanglingSharedFiles, event)
        })
        .collect()
}

pub fn no_leak(evidence: &Evidence<'_>) -> Vec<Violation> {
    evidence
        .checkpoint_dirs
        .iter()
        // A whole-cluster crash leaves no job manager to delete what the job had in flight or was deleting.
        .filter(|report| !evidence.abandoned.contains_key(&report.job_dir))
        .flat_map(|report| report.leaked.iter().map(move |leak| (report, leak)))
        .map(|(report, (name, uploaded_by))| {
            let by = uploaded_by.map_or("an unknown checkpoint".to_string(), |id| format!("checkpoint {id}"));
            let event = format!(
                "{}/shared/{name} (uploaded by {by}) is referenced by no retained checkpoint",
                report.job_dir.display()
            );
            evidence.violation(Invariant::NoLeakedSharedFiles, event)
        })
        .collect()
}
