//! Output checkers: exactly-once committed output, ordering, final state, nothing lost.

use super::Evidence;
use crate::invariants::{Invariant, Violation};
use std::collections::{BTreeMap, BTreeSet};

fn sorted(output: &str) -> Vec<String> {
    let mut lines: Vec<String> = output.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// The first difference between two sorted line lists, as a readable event.
fn first_difference(got: &[String], expected: &[String]) -> String {
    let got_set: BTreeMap<&String, usize> = got.iter().fold(BTreeMap::new(), |mut m, l| {
        *m.entry(l).or_default() += 1;
        m
    });
    let expected_set: BTreeMap<&String, usize> = expected.iter().fold(BTreeMap::new(), |mut m, l| {
        *m.entry(l).or_default() += 1;
        m
    });
    for (line, &count) in &got_set {
        let want = expected_set.get(line).copied().unwrap_or(0);
        if count > want {
            return format!(
                "`{line}` committed {count} times, expected {want} ({} lines, expected {})",
                got.len(),
                expected.len()
            );
        }
    }
    for (line, &want) in &expected_set {
        let count = got_set.get(line).copied().unwrap_or(0);
        if count < want {
            return format!(
                "`{line}` committed {count} times, expected {want} ({} lines, expected {})",
                got.len(),
                expected.len()
            );
        }
    }
    "outputs differ".to_string()
}

pub fn exactly_once(evidence: &Evidence<'_>) -> Vec<Violation> {
    let got = sorted(evidence.output);
    let mut violations = Vec::new();
    if got != evidence.reference {
        let event = format!("versus the reference model: {}", first_difference(&got, evidence.reference));
        violations.push(evidence.violation(Invariant::ExactlyOnceOutput, event));
    }
    if let Some(fault_free) = evidence.fault_free
        && got != fault_free
    {
        let event = format!("versus a fault-free run: {}", first_difference(&got, fault_free));
        violations.push(evidence.violation(Invariant::ExactlyOnceOutput, event));
    }
    violations
}

/// `r <partition> <number> <key>` lines.
fn records(output: &str) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
    output.lines().filter(|l| l.starts_with("r ")).filter_map(|l| {
        let mut fields = l[2..].split(' ').map(|f| f.parse::<u64>().ok());
        Some((fields.next()??, fields.next()??, fields.next()??))
    })
}

pub fn sequence_in_order(evidence: &Evidence<'_>) -> Vec<Violation> {
    let mut last: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let mut seen: BTreeSet<(u64, u64)> = BTreeSet::new();
    for (partition, number, key) in records(evidence.output) {
        if !seen.insert((partition, number)) {
            return vec![evidence.violation(
                Invariant::NoLossNoDupInOrder,
                format!("record (partition {partition}, number {number}) committed twice"),
            )];
        }
        if let Some(previous) = last.insert((partition, key), number)
            && previous > number
        {
            let event = format!("partition {partition} key {key}: number {number} committed after {previous}");
            return vec![evidence.violation(Invariant::NoLossNoDupInOrder, event)];
        }
    }
    let expected: BTreeSet<(u64, u64)> = records(&evidence.reference.join("\n")).map(|(p, n, _)| (p, n)).collect();
    if let Some((partition, number)) = expected.difference(&seen).next() {
        let missing = expected.difference(&seen).count();
        return vec![evidence.violation(
            Invariant::NoLossNoDupInOrder,
            format!("{missing} records lost, e.g. partition {partition} number {number}"),
        )];
    }
    Vec::new()
}

/// Final state lines: `k ...` for `sequence`, every line for `wordcount`.
fn state_lines(lines: &[String]) -> Vec<String> {
    let keyed: Vec<String> = lines.iter().filter(|l| l.starts_with("k ")).cloned().collect();
    if keyed.is_empty() && !lines.iter().any(|l| l.starts_with("r ")) { lines.to_vec() } else { keyed }
}

pub fn state_equals_reference(evidence: &Evidence<'_>) -> Vec<Violation> {
    let got = state_lines(&sorted(evidence.output));
    let expected = state_lines(evidence.reference);
    if got == expected {
        return Vec::new();
    }
    vec![
        evidence
            .violation(Invariant::StateEqualsReference, format!("final state: {}", first_difference(&got, &expected))),
    ]
}

pub fn nothing_lost(evidence: &Evidence<'_>) -> Vec<Violation> {
    let got: BTreeSet<&str> = evidence.output.lines().collect();
    let missing: Vec<&String> =
        evidence.reference.iter().filter(|l| l.starts_with("r ") && !got.contains(l.as_str())).collect();
    match missing.first() {
        None => Vec::new(),
        Some(first) => {
            vec![evidence.violation(
                Invariant::NothingLost,
                format!("{} records never committed, e.g. `{first}`", missing.len()),
            )]
        }
    }
}
