//! The first divergence of a failing run: the first event at which its committed output departs from the
//! fault-free run's, so that a failure report names a moment in the run, not only the final difference.
//!
//! The rule, exactly:
//!
//! - The reference is the fault-free run's committed output `F`, a multiset of lines (the same one the
//!   `exactly_once_output` checker compares with).
//! - The run's committed output is followed as it grows. A commit is the first `part committed` trace event that
//!   names a part (`part=<name>`); the part's lines are those the part holds at the end of the run
//!   ([`crate::workload::Workload::committed_parts`]). A part committed again (a restore repeats the commits of its
//!   checkpoint) adds nothing the second time; a part present at the end that no event names counts as committed
//!   at the run's last event.
//! - **Duplicate** or **unexpected record**: the first commit after which the committed multiset `C` is no longer
//!   a sub-multiset of `F`, that is, some line is committed more often than the fault-free run commits it (a
//!   duplicate if `F` has it, an unexpected record otherwise). Within a commit, the first such line in the part's
//!   order is named, and so is the commit that brought its first copy, with whether that commit came before its
//!   checkpoint completed (the usual cause: a transaction made visible for a checkpoint that then failed).
//! - **Lost records**: if `C` never overflows `F` but ends short of it, the divergence is the run's end (its last
//!   event): the first point after which the missing lines can no longer appear. Parts that were committed but are
//!   gone at the end (discarded on a restore, or a rename a storage crash undid) are named in the explanation;
//!   their lines are not known, so they count for nothing.
//! - If `C` equals `F` at the end, the output never departs (`OutputMatches`): the failure lies elsewhere
//!   (checkpoint files, liveness, an order within the output).
//!
//! Only the events of a traced run and its parts are needed: `replay` computes it from its own run, and a suite,
//! whose runs are not traced, with one extra, traced run of a failing seed ([`by_traced_rerun`]).

use crate::runner::{self, RunOptions, RunReport, TraceEvent};
use crate::scenario::Scenario;
use crate::workload::CommittedPart;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use std::fmt;

/// How the committed output first departs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DivergenceKind {
    /// A line committed more often than the fault-free run commits it.
    Duplicate,
    /// A line the fault-free run never commits.
    Unexpected,
    /// Lines the fault-free run commits that this run never did.
    Lost,
}

impl fmt::Display for DivergenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DivergenceKind::Duplicate => "duplicate",
            DivergenceKind::Unexpected => "unexpected record",
            DivergenceKind::Lost => "lost records",
        })
    }
}

/// The event where the committed output first departs, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    pub kind: DivergenceKind,
    /// The event's index in the run's events.
    pub event: usize,
    /// Simulated time of the event, in nanoseconds.
    pub at_ns: u64,
    pub node: String,
    pub task: String,
    /// The event's message (`part committed`, or the last event's for lost records).
    pub message: String,
    /// The event's trace line.
    pub trace_line: String,
    /// The first line that departs.
    pub record: String,
    /// What happened, in a sentence.
    pub explanation: String,
    /// For a duplicate: the index of the event that committed its first copy.
    pub origin: Option<usize>,
}

impl Divergence {
    /// What failures of one cause share across seeds: the kind, the event's message and the operator (the task
    /// without its subtask index). Times, ids and records are left out.
    pub fn signature(&self) -> String {
        format!("{} at `{}` on {}", self.kind, self.message, vertex_of(&self.task))
    }
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: at {} on {} {}: {}",
            self.kind,
            seconds(self.at_ns as u128),
            self.node,
            self.task,
            self.explanation
        )
    }
}

/// A failing run's first divergence, as reports carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum FirstDivergence {
    /// The committed output departs here.
    Found(Divergence),
    /// The committed output stays a part of the fault-free run's and ends equal to it.
    OutputMatches,
    /// It cannot be told.
    Unknown { reason: String },
}

impl FirstDivergence {
    /// See [`Divergence::signature`].
    pub fn signature(&self) -> String {
        match self {
            FirstDivergence::Found(divergence) => divergence.signature(),
            FirstDivergence::OutputMatches => "the committed output matches the fault-free run".to_string(),
            FirstDivergence::Unknown { .. } => "first divergence unknown".to_string(),
        }
    }

    pub fn found(&self) -> Option<&Divergence> {
        match self {
            FirstDivergence::Found(divergence) => Some(divergence),
            FirstDivergence::OutputMatches | FirstDivergence::Unknown { .. } => None,
        }
    }
}

impl fmt::Display for FirstDivergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirstDivergence::Found(divergence) => write!(f, "{divergence}"),
            FirstDivergence::OutputMatches => {
                f.write_str("none: the committed output never departs from the fault-free run's")
            }
            FirstDivergence::Unknown { reason } => write!(f, "unknown: {reason}"),
        }
    }
}

/// The first divergence of `failed` (an untraced run of a seed that failed), from one traced run of the same
/// seed, which takes the same course. `None` if the run broke no invariant (a canary that was not caught).
pub fn by_traced_rerun(
    scenario: &Scenario,
    failed: &RunReport,
    fault_free: Option<&[String]>,
) -> Option<FirstDivergence> {
    if failed.passed() {
        return None;
    }
    let traced = runner::run(scenario, failed.seed, RunOptions { faults: true, trace: true }, fault_free);
    if traced.fingerprint != failed.fingerprint {
        let reason = format!(
            "the traced run of seed {} took another course than the suite's ({:016x}, then {:016x}): a determinism bug",
            failed.seed, failed.fingerprint, traced.fingerprint
        );
        return Some(FirstDivergence::Unknown { reason });
    }
    traced.first_divergence
}

/// `at_ns` as the trace prints times.
pub fn seconds(at_ns: u128) -> String {
    format!("{:.6}s", at_ns as f64 / 1e9)
}

/// `vertex[n]` without `[n]`.
pub fn vertex_of(task: &str) -> &str {
    match task.rfind('[') {
        Some(at) if task.ends_with(']') => &task[..at],
        _ => task,
    }
}

/// What became of a checkpoint, from the job manager's events.
#[derive(Default)]
struct Fate {
    completed: Option<usize>,
    aborted: Option<(usize, String)>,
}

/// The fate of every checkpoint id, by id.
fn checkpoint_fates(events: &[TraceEvent]) -> FxHashMap<&str, Fate> {
    let mut fates: FxHashMap<&str, Fate> = FxHashMap::default();
    for (index, event) in events.iter().enumerate() {
        let Some(id) = event.field("checkpoint") else { continue };
        match event.message.as_str() {
            "checkpoint complete" => {
                fates.entry(id).or_default().completed.get_or_insert(index);
            }
            "checkpoint aborted" | "checkpoint aborted: the job ended" => {
                let reason = event.field("reason").unwrap_or("the job ended");
                // The reason's head says what failed; what follows names files.
                let head = reason.split(':').next().unwrap_or(reason).trim().to_string();
                fates.entry(id).or_default().aborted.get_or_insert((index, head));
            }
            _ => {}
        }
    }
    fates
}

/// Where the first copy of a duplicated line came from, in words.
fn origin_story(events: &[TraceEvent], origin: usize, fates: &FxHashMap<&str, Fate>) -> String {
    let event = &events[origin];
    let at = seconds(event.at_ns);
    let Some(checkpoint) = event.field("checkpoint") else {
        return format!("its first copy was committed at {at} on {}", event.task);
    };
    let fate = fates.get(checkpoint);
    let before = match fate.and_then(|f| f.completed) {
        Some(completed) if completed < origin => {
            return format!(
                "its first copy was committed at {at} on {} with checkpoint {checkpoint}, after that checkpoint completed",
                event.task
            );
        }
        Some(completed) => format!("it completed only at {}", seconds(events[completed].at_ns)),
        None => match fate.and_then(|f| f.aborted.as_ref()) {
            Some((aborted, reason)) => format!("it was aborted at {}: {reason}", seconds(events[*aborted].at_ns)),
            None => "it never completed".to_string(),
        },
    };
    format!(
        "its first copy was committed at {at} on {} with checkpoint {checkpoint} before that checkpoint completed ({before})",
        event.task
    )
}

/// The first divergence of a run's committed output from the fault-free run's (`fault_free`: its lines, in any
/// order), given the run's events and its committed parts. See the module header for the rule.
pub fn first_divergence(events: &[TraceEvent], parts: &[CommittedPart], fault_free: &[String]) -> FirstDivergence {
    let mut expected: FxHashMap<&str, u32> = FxHashMap::default();
    for line in fault_free {
        *expected.entry(line.as_str()).or_default() += 1;
    }
    let by_name: FxHashMap<&str, &CommittedPart> = parts.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut committed: FxHashMap<&str, u32> = FxHashMap::default();
    let mut first_copy: FxHashMap<&str, usize> = FxHashMap::default();
    let mut seen: FxHashSet<&str> = FxHashSet::default();
    let mut vanished: Vec<(usize, &str)> = Vec::new();
    let Some(last) = events.len().checked_sub(1) else {
        return FirstDivergence::Unknown { reason: "the run recorded no events".to_string() };
    };
    // Commits in event order, then the parts no event named, at the last event.
    let traced = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.message == "part committed")
        .filter_map(|(i, e)| Some((i, e.field("part")?)));
    let untraced: Vec<(usize, &str)> = parts.iter().map(|p| (last, p.name.as_str())).collect();
    for (index, name) in traced.collect::<Vec<_>>().into_iter().chain(untraced) {
        if !seen.insert(name) {
            continue;
        }
        let Some(part) = by_name.get(name) else {
            vanished.push((index, name));
            continue;
        };
        for line in part.text.lines() {
            let count = committed.entry(line).or_default();
            *count += 1;
            let want = expected.get(line).copied().unwrap_or(0);
            let origin = *first_copy.entry(line).or_insert(index);
            if *count <= want {
                continue;
            }
            let event = &events[index];
            let (kind, explanation, origin) = if want == 0 {
                (
                    DivergenceKind::Unexpected,
                    format!("`{line}` committed, which the fault-free run never commits"),
                    None,
                )
            } else {
                let story = origin_story(events, origin, &checkpoint_fates(events));
                let explanation = format!(
                    "`{line}` committed {count} times by this commit{}, the fault-free run {want}; {story}",
                    event.field("checkpoint").map(|c| format!(" (checkpoint {c})")).unwrap_or_default()
                );
                (DivergenceKind::Duplicate, explanation, Some(origin))
            };
            return FirstDivergence::Found(found(events, index, kind, line, explanation, origin));
        }
    }
    let mut missing = fault_free.iter().filter(|line| {
        let left = committed.get_mut(line.as_str()).filter(|count| **count > 0);
        match left {
            Some(count) => {
                *count -= 1;
                false
            }
            None => true,
        }
    });
    let Some(first) = missing.next() else { return FirstDivergence::OutputMatches };
    let count = 1 + missing.count();
    let mut explanation = format!(
        "the run ended with {count} of the fault-free run's {} lines never committed, e.g. `{first}`",
        fault_free.len()
    );
    if let Some((index, name)) = vanished.first() {
        explanation.push_str(&format!(
            "; {} committed part(s) are not in the final output, the first `{name}` committed at {}",
            vanished.len(),
            seconds(events[*index].at_ns)
        ));
    }
    FirstDivergence::Found(found(events, last, DivergenceKind::Lost, first, explanation, None))
}

fn found(
    events: &[TraceEvent],
    index: usize,
    kind: DivergenceKind,
    record: &str,
    explanation: String,
    origin: Option<usize>,
) -> Divergence {
    let event = &events[index];
    Divergence {
        kind,
        event: index,
        at_ns: u64::try_from(event.at_ns).unwrap_or(u64::MAX),
        node: event.node.clone(),
        task: event.task.clone(),
        message: event.message.clone(),
        trace_line: event.line(),
        record: record.to_string(),
        explanation,
        origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at_ms: u64, task: &str, message: &str, fields: &[(&str, &str)]) -> TraceEvent {
        let node = if task == "-" { "jm" } else { "tm-0" };
        crate::timeline::model::testing::event(at_ms * 1000, node, task, message, fields)
    }

    fn commit(at_ms: u64, part: &str, checkpoint: &str) -> TraceEvent {
        event(at_ms, "sink[0]", "part committed", &[("part", part), ("checkpoint", checkpoint)])
    }

    fn part(name: &str, lines: &[&str]) -> CommittedPart {
        CommittedPart { name: name.into(), text: lines.iter().map(|l| format!("{l}\n")).collect() }
    }

    fn lines(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn a_run_that_commits_the_fault_free_output_does_not_diverge() {
        let events = vec![commit(10, "p1", "1"), commit(20, "p2", "2"), commit(25, "p1", "1")];
        let parts = vec![part("p1", &["a", "b"]), part("p2", &["c"])];
        assert_eq!(first_divergence(&events, &parts, &lines(&["c", "b", "a"])), FirstDivergence::OutputMatches);
    }

    #[test]
    fn a_duplicate_is_found_at_the_commit_of_its_second_copy_with_the_origin_of_the_first() {
        let events = vec![
            event(5, "-", "checkpoint triggered", &[("checkpoint", "1")]),
            commit(10, "p1", "1"),
            event(
                12,
                "-",
                "checkpoint aborted",
                &[("checkpoint", "1"), ("reason", "its metadata could not be written: x")],
            ),
            commit(20, "p2", "2"),
            commit(30, "p3", "3"),
        ];
        // p2 repeats `b`, which p1 committed before its checkpoint failed; p3's repeat of `c` comes later.
        let parts = vec![part("p1", &["a", "b"]), part("p2", &["b", "c"]), part("p3", &["c"])];
        let FirstDivergence::Found(divergence) = first_divergence(&events, &parts, &lines(&["a", "b", "c"])) else {
            panic!("a duplicate must be found")
        };
        assert_eq!((divergence.kind, divergence.event, divergence.origin), (DivergenceKind::Duplicate, 3, Some(1)));
        assert_eq!(divergence.record, "b");
        assert!(
            divergence.explanation.contains(
                "before that checkpoint completed (it was aborted at 0.012000s: its metadata could not be written)"
            ),
            "{}",
            divergence.explanation
        );
        assert_eq!(divergence.signature(), "duplicate at `part committed` on sink");
    }

    #[test]
    fn a_line_committed_as_often_as_the_fault_free_run_commits_it_is_no_duplicate() {
        let events = vec![commit(10, "p1", "1"), commit(20, "p2", "2")];
        let parts = vec![part("p1", &["a"]), part("p2", &["a"])];
        assert_eq!(first_divergence(&events, &parts, &lines(&["a", "a"])), FirstDivergence::OutputMatches);
    }

    #[test]
    fn a_record_the_fault_free_run_never_commits_is_unexpected() {
        let events = vec![commit(10, "p1", "1"), commit(20, "p2", "2")];
        let parts = vec![part("p1", &["a"]), part("p2", &["z", "b"])];
        let FirstDivergence::Found(divergence) = first_divergence(&events, &parts, &lines(&["a", "b"])) else {
            panic!("an unexpected record must be found")
        };
        assert_eq!(
            (divergence.kind, divergence.event, divergence.record.as_str()),
            (DivergenceKind::Unexpected, 1, "z")
        );
    }

    #[test]
    fn lost_records_diverge_at_the_end_and_name_the_parts_that_vanished() {
        let events = vec![
            commit(10, "p1", "1"),
            commit(20, "gone", "2"),
            event(30, "-", "job finishing", &[("checkpoint", "3")]),
        ];
        let parts = vec![part("p1", &["a"])];
        let FirstDivergence::Found(divergence) = first_divergence(&events, &parts, &lines(&["a", "b", "c"])) else {
            panic!("the loss must be found")
        };
        assert_eq!((divergence.kind, divergence.event, divergence.record.as_str()), (DivergenceKind::Lost, 2, "b"));
        assert!(
            divergence.explanation.contains("2 of the fault-free run's 3 lines never committed"),
            "{}",
            divergence.explanation
        );
        assert!(divergence.explanation.contains("`gone` committed at 0.020000s"), "{}", divergence.explanation);
    }

    #[test]
    fn a_part_no_event_names_counts_at_the_last_event() {
        let events = vec![commit(10, "p1", "1"), event(30, "-", "job finishing", &[])];
        let parts = vec![part("p1", &["a"]), part("quiet", &["a"])];
        let FirstDivergence::Found(divergence) = first_divergence(&events, &parts, &lines(&["a"])) else {
            panic!("the duplicate must be found")
        };
        assert_eq!((divergence.kind, divergence.event), (DivergenceKind::Duplicate, 1));
    }

    #[test]
    fn the_outcome_survives_json() {
        let events = vec![commit(10, "p1", "1"), commit(20, "p2", "2")];
        let parts = vec![part("p1", &["a"]), part("p2", &["a"])];
        let outcome = first_divergence(&events, &parts, &lines(&["a"]));
        let json = serde_json::to_string(&outcome).unwrap();
        assert_eq!(serde_json::from_str::<FirstDivergence>(&json).unwrap(), outcome);
    }
}
