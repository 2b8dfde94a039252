//! The liveness checker: once faults stop, the job must finish within the healing bound.

use super::Evidence;
use crate::invariants::{Invariant, Violation};

pub fn finished_in_bound(evidence: &Evidence<'_>) -> Vec<Violation> {
    match evidence.finished_at_ms {
        Some(_) => Vec::new(),
        None => vec![evidence.violation(
            Invariant::Liveness,
            format!("the job did not finish within {} ms after faults stopped", evidence.healing_bound_ms),
        )],
    }
}
