//! Output checkers: exactly-once committed output, ordering, final state, nothing lost.
//!
//! The expected side ([`ExpectedOutput`]) is prepared once per job and shared by every seed.
//! A seed's committed output ([`Committed`]) is split into lines once for all the checkers,
//! compared by hash lookups, and sorted only to describe a difference (or for a final state
//! made of every line).

use super::Evidence;
use crate::invariants::{Invariant, Violation};
use crate::workload::Reference;
use rustc_hash::{FxHashMap, FxHashSet};
use std::cell::OnceCell;
use std::sync::Arc;

/// A workload's reference, with what the checkers derive from it computed once.
#[derive(Debug)]
pub struct ExpectedOutput {
    /// Every line, sorted; shared with the fault-free runs that committed exactly these.
    lines: Arc<[String]>,
    /// Each distinct line's index in `counts`.
    index: FxHashMap<String, usize>,
    /// How many times each distinct line occurs.
    counts: Vec<u32>,
    /// The per-record lines, sorted.
    records: Vec<String>,
    /// The final-state lines, sorted.
    state: Vec<String>,
}

impl ExpectedOutput {
    /// Prepares a workload's reference.
    pub fn new(reference: Reference) -> Self {
        let Reference { mut lines, mut records, mut state } = reference;
        lines.sort_unstable();
        records.sort_unstable();
        state.sort_unstable();
        let mut index = FxHashMap::default();
        let mut counts = Vec::new();
        for line in &lines {
            let next = counts.len();
            let at = *index.entry(line.clone()).or_insert(next);
            if at == next {
                counts.push(0);
            }
            counts[at] += 1;
        }
        ExpectedOutput { lines: lines.into(), index, counts, records, state }
    }

    /// Every line, sorted.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Every line, sorted, shared: a fault-free run that committed exactly these holds them so, and the checkers
    /// know it by the address without comparing them line by line every seed.
    pub fn shared_lines(&self) -> Arc<[String]> {
        self.lines.clone()
    }

    /// Whether `output`'s lines are exactly these, each as often, in any order.
    pub fn matches(&self, output: &str) -> bool {
        self.matches_lines(&split_lines(output))
    }

    /// Whether `lines` are exactly these, each as often, in any order: one hash lookup per
    /// line rather than a sort.
    fn matches_lines(&self, lines: &[&str]) -> bool {
        if lines.len() != self.lines.len() {
            return false;
        }
        let mut counts = vec![0u32; self.counts.len()];
        for line in lines {
            match self.index.get(*line) {
                Some(&at) => counts[at] += 1,
                None => return false,
            }
        }
        counts == self.counts
    }
}

/// One run's committed output, split into lines once, and sorted at most once, for every
/// checker.
pub struct Committed<'a> {
    text: &'a str,
    lines: OnceCell<Vec<&'a str>>,
    sorted: OnceCell<Vec<&'a str>>,
}

impl<'a> Committed<'a> {
    pub fn new(text: &'a str) -> Self {
        Committed { text, lines: OnceCell::new(), sorted: OnceCell::new() }
    }

    /// The lines in commit order (part files concatenated).
    fn lines(&self) -> &[&'a str] {
        self.lines.get_or_init(|| split_lines(self.text))
    }

    /// The lines, sorted.
    fn sorted(&self) -> &[&'a str] {
        self.sorted.get_or_init(|| {
            let mut lines = self.lines().to_vec();
            lines.sort_unstable();
            lines
        })
    }
}

/// `text.lines()`, collected by a plain byte loop, which beats the pattern searcher on short
/// lines: split after each `\n`, dropping it and a `\r` before it; no line after a final `\n`.
fn split_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::with_capacity(text.len() / 16);
    let mut start = 0;
    for (at, &byte) in text.as_bytes().iter().enumerate() {
        if byte == b'\n' {
            let line = &text[start..at];
            lines.push(line.strip_suffix('\r').unwrap_or(line));
            start = at + 1;
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// Whether two sorted line lists are equal.
fn same_lines<A: AsRef<str>, B: AsRef<str>>(got: &[A], expected: &[B]) -> bool {
    got.len() == expected.len() && got.iter().zip(expected).all(|(a, b)| a.as_ref() == b.as_ref())
}

/// How many times `lines[start]` repeats from `start` on.
fn run_length<S: AsRef<str>>(lines: &[S], start: usize, line: &str) -> usize {
    lines[start..].iter().take_while(|l| l.as_ref() == line).count()
}

/// The first difference between two sorted line lists, as a readable event: the first line
/// (in sorted order) committed more often than expected, else the first committed less often.
fn first_difference<A: AsRef<str>, B: AsRef<str>>(got: &[A], expected: &[B]) -> String {
    let message = |line: &str, count: usize, want: usize| {
        format!("`{line}` committed {count} times, expected {want} ({} lines, expected {})", got.len(), expected.len())
    };
    let (mut i, mut j) = (0, 0);
    let mut first_missing = None;
    loop {
        let line = match (got.get(i).map(AsRef::as_ref), expected.get(j).map(AsRef::as_ref)) {
            (None, None) => break,
            (Some(line), None) | (None, Some(line)) => line,
            (Some(a), Some(b)) => a.min(b),
        };
        let (count, want) = (run_length(got, i, line), run_length(expected, j, line));
        (i, j) = (i + count, j + want);
        if count > want {
            return message(line, count, want);
        }
        if count < want && first_missing.is_none() {
            first_missing = Some(message(line, count, want));
        }
    }
    first_missing.unwrap_or_else(|| "outputs differ".to_string())
}

pub fn exactly_once(evidence: &Evidence<'_>, committed: &Committed<'_>) -> Vec<Violation> {
    let reference = evidence.reference;
    let matches_reference = reference.matches_lines(committed.lines());
    let mut violations = Vec::new();
    if !matches_reference {
        let event = format!("versus the reference model: {}", first_difference(committed.sorted(), reference.lines()));
        violations.push(evidence.violation(Invariant::ExactlyOnceOutput, event));
    }
    if let Some(fault_free) = evidence.fault_free {
        // The fault-free run normally committed the reference output (and then holds its very lines): then so is
        // the answer, without sorting this run's lines.
        let matches_fault_free =
            if std::ptr::eq(fault_free, reference.lines()) || same_lines(fault_free, reference.lines()) {
                matches_reference
            } else {
                same_lines(committed.sorted(), fault_free)
            };
        if !matches_fault_free {
            let event = format!("versus a fault-free run: {}", first_difference(committed.sorted(), fault_free));
            violations.push(evidence.violation(Invariant::ExactlyOnceOutput, event));
        }
    }
    violations
}

/// The workload's own order rule, with every record committed once (`no_loss_no_dup_in_order`).
pub fn in_order(evidence: &Evidence<'_>, committed: &Committed<'_>) -> Vec<Violation> {
    match evidence.workload.check_order(committed.lines()) {
        Some(breach) => vec![evidence.violation(Invariant::NoLossNoDupInOrder, breach)],
        None => Vec::new(),
    }
}

/// The final keyed state, as the workload reads it from the committed output, equals the reference's.
pub fn state_equals_reference(evidence: &Evidence<'_>, committed: &Committed<'_>) -> Vec<Violation> {
    let mut got = evidence.workload.state_lines(committed.lines());
    got.sort_unstable();
    let expected = &evidence.reference.state;
    if same_lines(&got, expected) {
        return Vec::new();
    }
    vec![
        evidence
            .violation(Invariant::StateEqualsReference, format!("final state: {}", first_difference(&got, expected))),
    ]
}

/// AT_LEAST_ONCE: every per-record line of the reference is committed at least once.
pub fn nothing_lost(evidence: &Evidence<'_>, committed: &Committed<'_>) -> Vec<Violation> {
    let got: FxHashSet<&str> = committed.lines().iter().copied().collect();
    let mut missing = evidence.reference.records.iter().filter(|l| !got.contains(l.as_str()));
    match missing.next() {
        None => Vec::new(),
        Some(first) => {
            let count = 1 + missing.count();
            vec![evidence.violation(Invariant::NothingLost, format!("{count} records never committed, e.g. `{first}`"))]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The difference as it was computed with counting maps, for comparison.
    fn by_counting(got: &[&str], expected: &[&str]) -> String {
        let count = |lines: &[&str]| {
            lines.iter().fold(BTreeMap::<String, usize>::new(), |mut m, l| {
                *m.entry(l.to_string()).or_default() += 1;
                m
            })
        };
        let (got_set, expected_set) = (count(got), count(expected));
        let message = |line: &str, count: usize, want: usize| {
            format!(
                "`{line}` committed {count} times, expected {want} ({} lines, expected {})",
                got.len(),
                expected.len()
            )
        };
        for (line, &count) in &got_set {
            let want = expected_set.get(line).copied().unwrap_or(0);
            if count > want {
                return message(line, count, want);
            }
        }
        for (line, &want) in &expected_set {
            let count = got_set.get(line).copied().unwrap_or(0);
            if count < want {
                return message(line, count, want);
            }
        }
        "outputs differ".to_string()
    }

    #[test]
    fn lines_are_split_as_str_lines_does() {
        for text in
            ["", "\n", "a", "a\n", "a\r\n", "a\r", "\r\n\r\n", "a\rb\nc", "r 1 2 3\nk 1 2 3\n\n", "\r", "naïve\r\r\n"]
        {
            assert_eq!(split_lines(text), text.lines().collect::<Vec<_>>(), "{text:?}");
        }
    }

    #[test]
    fn the_first_difference_is_the_first_extra_line_else_the_first_missing_one() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["a", "b", "c"], &["a", "b", "c"]),
            (&["a", "b", "b", "c"], &["a", "b", "c"]),
            (&["a", "c"], &["a", "b", "c"]),
            (&["a", "c", "d"], &["a", "b", "c"]),
            (&["b", "b"], &["a", "a", "b", "c"]),
            (&[], &["a"]),
            (&["a"], &[]),
            (&["x", "y", "y"], &["a", "x", "y"]),
            (&["a", "a", "a"], &["a", "a", "b", "b"]),
        ];
        for (got, expected) in cases {
            assert_eq!(first_difference(got, expected), by_counting(got, expected), "{got:?} vs {expected:?}");
        }
    }
}
