//! What the timeline draws, worked out from a run's trace events alone: the lanes (a node, a subtask, the
//! harness, the storage), the checkpoint and savepoint spans, one mark per protocol event, and dense `records
//! emitted` events summed into bins. Pure: no drawing, no IO.

use crate::runner::TraceEvent;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use tracing::Level;

/// What a lane stands for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LaneKind {
    /// A simulated node: the job manager or a task manager.
    Node,
    /// A subtask (`vertex[n]`), shown below the node it first ran on.
    Task,
    /// The harness: scripted faults, restarts, healing.
    Harness,
    /// The simulated storage, for faults that hit all of it.
    Storage,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lane {
    pub kind: LaneKind,
    /// The node's name, `vertex[n]`, `harness` or `storage`.
    pub name: String,
    /// For a subtask: the node it first ran on.
    pub node: Option<String>,
}

/// What a mark stands for; each kind has its glyph.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MarkKind {
    /// A barrier reached an operator with several inputs (`aligning`).
    Barrier,
    /// A subtask took its snapshot.
    Snapshot,
    /// A subtask acked, or the job manager saw every ack.
    Ack,
    /// The coordinator's own steps: trigger, complete, abort, discard.
    Coordinator,
    /// A sink made output visible (or discarded it).
    Commit,
    /// State restored, a job restarted from a snapshot.
    Restore,
    /// A failure and what follows it: a task or job failed, a node came back, tasks were canceled.
    Failover,
    /// A fault the harness injected.
    Fault,
    /// A warning nothing above covers.
    Warning,
    /// Anything else: registrations, submissions, task starts.
    Other,
}

impl MarkKind {
    pub const ALL: [MarkKind; 10] = [
        MarkKind::Barrier,
        MarkKind::Snapshot,
        MarkKind::Ack,
        MarkKind::Coordinator,
        MarkKind::Commit,
        MarkKind::Restore,
        MarkKind::Failover,
        MarkKind::Fault,
        MarkKind::Warning,
        MarkKind::Other,
    ];

    /// The CSS class and legend word.
    pub fn name(self) -> &'static str {
        match self {
            MarkKind::Barrier => "barrier",
            MarkKind::Snapshot => "snapshot",
            MarkKind::Ack => "ack",
            MarkKind::Coordinator => "coordinator",
            MarkKind::Commit => "commit",
            MarkKind::Restore => "restore",
            MarkKind::Failover => "failover",
            MarkKind::Fault => "fault",
            MarkKind::Warning => "warning",
            MarkKind::Other => "other",
        }
    }
}

/// One event drawn on one lane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub lane: usize,
    pub kind: MarkKind,
    pub at_ns: u128,
    /// The event's index in the run's events.
    pub event: usize,
}

/// How a checkpoint or savepoint ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SpanEnd {
    Completed,
    Aborted,
    /// Aborted because it timed out.
    Expired,
    /// Never ended: it was in flight when its job failed over or the run ended.
    Unfinished,
}

impl SpanEnd {
    pub fn name(self) -> &'static str {
        match self {
            SpanEnd::Completed => "completed",
            SpanEnd::Aborted => "aborted",
            SpanEnd::Expired => "expired",
            SpanEnd::Unfinished => "unfinished",
        }
    }
}

/// A checkpoint or savepoint from its trigger to its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub job: String,
    pub id: String,
    pub savepoint: bool,
    pub start_ns: u128,
    pub end_ns: u128,
    pub end: SpanEnd,
    /// The trigger event.
    pub start_event: usize,
    /// The event that ended it, if one did.
    pub end_event: Option<usize>,
    /// Its row among the spans: concurrent snapshots stack.
    pub row: usize,
}

/// `records emitted` events of one lane within one bin of time, summed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordBin {
    pub lane: usize,
    pub start_ns: u128,
    pub end_ns: u128,
    pub records: u64,
    pub batches: u64,
    pub first_event: usize,
    pub last_event: usize,
}

/// Everything the picture shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    pub lanes: Vec<Lane>,
    pub marks: Vec<Mark>,
    pub spans: Vec<Span>,
    /// Rows the spans take (at least 1).
    pub span_rows: usize,
    pub bins: Vec<RecordBin>,
    /// The end of the drawn time range.
    pub end_ns: u128,
    /// When the healing phase began.
    pub healing_ns: Option<u128>,
    /// The scripted faults (a `fault: firing` event), as marks' indices, with the fault's kind.
    pub scripted_faults: Vec<(usize, String)>,
    /// Each `records emitted` event on its own, for a view zoomed in past the bins.
    pub records: Vec<Mark>,
}

/// How an event is drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Drawn {
    Mark(MarkKind),
    Records,
}

fn classify(event: &TraceEvent) -> Drawn {
    let message = event.message.as_str();
    let kind = match message {
        "records emitted" => return Drawn::Records,
        "aligning" => MarkKind::Barrier,
        "snapshot taken" => MarkKind::Snapshot,
        "snapshot written, acking" | "checkpoint acked by every task" => MarkKind::Ack,
        "checkpoint triggered"
        | "checkpoint complete"
        | "checkpoint aborted"
        | "checkpoint aborted: the job ended"
        | "checkpoint discarded"
        | "savepoint triggered"
        | "savepoint complete"
        | "job finishing" => MarkKind::Coordinator,
        "part committed" | "sink committed" | "sink committed on restore" => MarkKind::Commit,
        "restoring state"
        | "restoring from a snapshot given at submission"
        | "finished on restore"
        | "job taken over" => MarkKind::Restore,
        "job failure" | "task failed" | "node restarted" | "job manager changed: canceling tasks" => MarkKind::Failover,
        _ if message.starts_with("fault: ") => MarkKind::Fault,
        _ if message.starts_with("sink discarded") => MarkKind::Commit,
        _ if message.starts_with("restart: new job") => MarkKind::Restore,
        _ if message.starts_with("restart: ") || message.starts_with("job manager taking") => MarkKind::Failover,
        _ if event.level <= Level::WARN => MarkKind::Warning,
        _ => MarkKind::Other,
    };
    Drawn::Mark(kind)
}

/// The fault kind a `fault: firing` event names (`CrashTaskManager { .. }` gives `CrashTaskManager`).
fn fired_kind(event: &TraceEvent) -> Option<&str> {
    let fault = event.field("fault")?;
    let end = fault.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(fault.len());
    Some(&fault[..end])
}

/// The node a `fault: firing` event names (`node: "tm-1"`), if it names one.
fn fired_node(event: &TraceEvent) -> Option<&str> {
    let fault = event.field("fault")?;
    let rest = &fault[fault.find("node: \"")? + 7..];
    Some(&rest[..rest.find('"')?])
}

const HARNESS: &str = "harness";
const STORAGE: &str = "storage";

/// The lane key of an event: `(kind, name)`. `ids` maps vertex ids (`v1`) to vertex names.
fn lane_of(event: &TraceEvent, ids: &FxHashMap<String, String>) -> (LaneKind, String) {
    if event.message == "fault: firing" {
        if let Some(kind) = fired_kind(event)
            && (kind.starts_with("Storage") || kind == "SlowStorage")
        {
            return (LaneKind::Storage, STORAGE.to_string());
        }
        if fired_kind(event) == Some("CrashJobManager") {
            return (LaneKind::Node, "jm".to_string());
        }
        match fired_node(event) {
            Some(node) if node != "random" => return (LaneKind::Node, node.to_string()),
            _ => return (LaneKind::Harness, HARNESS.to_string()),
        }
    }
    if event.message.starts_with("fault: node")
        && let Some(node) = event.field("node")
    {
        return (LaneKind::Node, node.to_string());
    }
    if event.message == "node restarted"
        && let Some(node) = event.field("node")
    {
        return (LaneKind::Node, node.to_string());
    }
    if event.task != "-" {
        return (LaneKind::Task, task_name(&event.task, ids));
    }
    match event.node.as_str() {
        "sim" | "-" => (LaneKind::Harness, HARNESS.to_string()),
        node => (LaneKind::Node, node.to_string()),
    }
}

/// `v1[0]` as `running-totals -> sink[0]` when the vertex id is known.
fn task_name(task: &str, ids: &FxHashMap<String, String>) -> String {
    let Some(open) = task.rfind('[') else { return task.to_string() };
    match ids.get(&task[..open]) {
        Some(name) => format!("{name}{}", &task[open..]),
        None => task.to_string(),
    }
}

/// Node lanes' order: the job manager, task managers by number, others by name.
fn node_order(name: &str) -> (u8, u64, String) {
    if name == "jm" {
        return (0, 0, String::new());
    }
    match name.strip_prefix("tm-").and_then(|n| n.parse::<u64>().ok()) {
        Some(number) => (1, number, String::new()),
        None => (2, 0, name.to_string()),
    }
}

/// The lanes the events need, in drawing order: each node followed by the subtasks that first ran on it (by the
/// order their vertices first appear, then subtask index), then the harness and the storage. Returns the lanes
/// and each event's lane.
pub fn assign_lanes(events: &[TraceEvent]) -> (Vec<Lane>, Vec<usize>) {
    let mut ids: FxHashMap<String, String> = FxHashMap::default();
    for event in events.iter().filter(|e| e.message == "task started") {
        if let (Some(id), Some(open)) = (event.field("id"), event.task.rfind('[')) {
            ids.entry(id.to_string()).or_insert_with(|| event.task[..open].to_string());
        }
    }
    let keys: Vec<(LaneKind, String)> = events.iter().map(|e| lane_of(e, &ids)).collect();
    let mut nodes: Vec<String> = Vec::new();
    let mut vertices: Vec<String> = Vec::new();
    // A subtask's home: the first task manager it ran on (else the first node that named it).
    let mut homes: BTreeMap<String, String> = BTreeMap::new();
    let (mut harness, mut storage) = (false, false);
    for (event, (kind, name)) in events.iter().zip(&keys) {
        match kind {
            LaneKind::Node => push_new(&mut nodes, name),
            LaneKind::Harness => harness = true,
            LaneKind::Storage => storage = true,
            LaneKind::Task => {
                push_new(&mut vertices, crate::divergence::vertex_of(name));
                let on_task_manager = !matches!(event.node.as_str(), "jm" | "sim" | "-");
                match homes.get(name) {
                    Some(home) if !matches!(home.as_str(), "jm" | "sim" | "-") || !on_task_manager => {}
                    _ => {
                        homes.insert(name.clone(), event.node.clone());
                    }
                }
            }
        }
    }
    for home in homes.values() {
        if !matches!(home.as_str(), "sim" | "-") {
            push_new(&mut nodes, home);
        }
    }
    nodes.sort_by_key(|n| node_order(n));
    // Vertices by id where a `task started` event named it (ids follow the job graph, sources first), else by
    // first appearance; then subtasks by index.
    let id_number = |vertex: &str| {
        ids.iter().find(|(_, name)| *name == vertex).and_then(|(id, _)| id.trim_start_matches('v').parse::<u64>().ok())
    };
    let task_order = |task: &String| {
        let vertex = crate::divergence::vertex_of(task);
        let index: u64 = task[vertex.len()..].trim_matches(['[', ']']).parse().unwrap_or(0);
        (id_number(vertex).unwrap_or(u64::MAX), vertices.iter().position(|v| v == vertex), index)
    };
    let mut lanes = Vec::new();
    for node in &nodes {
        lanes.push(Lane { kind: LaneKind::Node, name: node.clone(), node: None });
        let mut tasks: Vec<&String> = homes.iter().filter(|(_, home)| *home == node).map(|(task, _)| task).collect();
        tasks.sort_by_key(|t| task_order(t));
        for task in tasks {
            lanes.push(Lane { kind: LaneKind::Task, name: task.clone(), node: Some(node.clone()) });
        }
    }
    let mut homeless: Vec<&String> =
        homes.iter().filter(|(_, home)| !nodes.contains(home)).map(|(task, _)| task).collect();
    homeless.sort_by_key(|t| task_order(t));
    for task in homeless {
        lanes.push(Lane { kind: LaneKind::Task, name: task.clone(), node: None });
    }
    if harness {
        lanes.push(Lane { kind: LaneKind::Harness, name: HARNESS.to_string(), node: None });
    }
    if storage {
        lanes.push(Lane { kind: LaneKind::Storage, name: STORAGE.to_string(), node: None });
    }
    let index: FxHashMap<(LaneKind, &str), usize> =
        lanes.iter().enumerate().map(|(i, lane)| ((lane.kind, lane.name.as_str()), i)).collect();
    let of_event = keys.iter().map(|(kind, name)| index[&(*kind, name.as_str())]).collect();
    (lanes, of_event)
}

fn push_new(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|known| known == item) {
        list.push(item.to_string());
    }
}

/// Whether an event ends every snapshot its job has in flight: a failover or a job manager takeover.
fn ends_in_flight(event: &TraceEvent) -> bool {
    matches!(event.message.as_str(), "job failure" | "restoring state" | "job manager taking jobs over")
}

/// Pairs each trigger with what ended it: a completion, an abort (an expiry, if its reason says so), or else the
/// job's next failover or the run's end (`end_ns`). Spans of one job and id pair; concurrent spans get rows.
pub fn pair_spans(events: &[TraceEvent], end_ns: u128) -> (Vec<Span>, usize) {
    let mut spans: Vec<Span> = Vec::new();
    // Open spans by (job, id).
    let mut open: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (index, event) in events.iter().enumerate() {
        let job = event.field("job").unwrap_or("").to_string();
        let id = event.field("checkpoint").unwrap_or("").to_string();
        let end = match event.message.as_str() {
            "checkpoint triggered" => {
                let savepoint = event.field("class").is_some_and(|c| c.contains("Savepoint"));
                open.insert((job.clone(), id.clone()), spans.len());
                spans.push(Span {
                    job,
                    id,
                    savepoint,
                    start_ns: event.at_ns,
                    end_ns,
                    end: SpanEnd::Unfinished,
                    start_event: index,
                    end_event: None,
                    row: 0,
                });
                continue;
            }
            "checkpoint complete" => SpanEnd::Completed,
            "checkpoint aborted" if event.field("reason").is_some_and(|r| r.starts_with("expired")) => SpanEnd::Expired,
            "checkpoint aborted" | "checkpoint aborted: the job ended" => SpanEnd::Aborted,
            _ if ends_in_flight(event) => {
                let ended: Vec<(String, String)> =
                    open.keys().filter(|(j, _)| job.is_empty() || *j == job).cloned().collect();
                for key in ended {
                    let span = &mut spans[open.remove(&key).expect("an open span")];
                    span.end_ns = event.at_ns;
                }
                continue;
            }
            _ => continue,
        };
        if let Some(at) = open.remove(&(job, id)) {
            let span = &mut spans[at];
            (span.end_ns, span.end, span.end_event) = (event.at_ns, end, Some(index));
        }
    }
    // Rows: each span goes to the first row free at its start.
    let mut row_ends: Vec<u128> = Vec::new();
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (spans[i].start_ns, i));
    for i in order {
        let span = &mut spans[i];
        let row = match row_ends.iter().position(|&end| end < span.start_ns) {
            Some(row) => row,
            None => {
                row_ends.push(0);
                row_ends.len() - 1
            }
        };
        row_ends[row] = span.end_ns.max(span.start_ns);
        span.row = row;
    }
    (spans, row_ends.len().max(1))
}

/// Sums `records emitted` events into `bin_count` bins of equal time over `[0, end_ns]`, per lane.
pub fn bin_records(events: &[TraceEvent], lanes_of: &[usize], end_ns: u128, bin_count: usize) -> Vec<RecordBin> {
    assert!(bin_count > 0, "at least one bin");
    let width = (end_ns / bin_count as u128).max(1);
    let mut bins: BTreeMap<(usize, u128), RecordBin> = BTreeMap::new();
    for (index, event) in events.iter().enumerate() {
        if classify(event) != Drawn::Records {
            continue;
        }
        let records: u64 = event.field("records").and_then(|r| r.parse().ok()).unwrap_or(0);
        let batches: u64 = event.field("batches").and_then(|b| b.parse().ok()).unwrap_or(1);
        let slot = (event.at_ns / width).min(bin_count as u128 - 1);
        let lane = lanes_of[index];
        let bin = bins.entry((lane, slot)).or_insert(RecordBin {
            lane,
            start_ns: slot * width,
            end_ns: (slot + 1) * width,
            records: 0,
            batches: 0,
            first_event: index,
            last_event: index,
        });
        bin.records += records;
        bin.batches += batches;
        bin.last_event = index;
    }
    bins.into_values().collect()
}

/// The model of a run: `bin_count` bins of records over the run, which lasted at least `run_ns`.
pub fn build(events: &[TraceEvent], run_ns: u128, bin_count: usize) -> Model {
    let end_ns = events.iter().map(|e| e.at_ns).max().unwrap_or(0).max(run_ns).max(1);
    let (lanes, lanes_of) = assign_lanes(events);
    let marks: Vec<Mark> = events
        .iter()
        .enumerate()
        .filter_map(|(index, event)| match classify(event) {
            Drawn::Mark(kind) => Some(Mark { lane: lanes_of[index], kind, at_ns: event.at_ns, event: index }),
            Drawn::Records => None,
        })
        .collect();
    let records = events
        .iter()
        .enumerate()
        .filter(|(_, event)| classify(event) == Drawn::Records)
        .map(|(index, event)| Mark { lane: lanes_of[index], kind: MarkKind::Other, at_ns: event.at_ns, event: index })
        .collect();
    let scripted_faults = marks
        .iter()
        .enumerate()
        .filter(|(_, mark)| events[mark.event].message == "fault: firing")
        .map(|(index, mark)| (index, fired_kind(&events[mark.event]).unwrap_or("fault").to_string()))
        .collect();
    let (spans, span_rows) = pair_spans(events, end_ns);
    let bins = bin_records(events, &lanes_of, end_ns, bin_count);
    let healing_ns = events.iter().find(|e| e.message == "healing: faults stop").map(|e| e.at_ns);
    Model { lanes, marks, spans, span_rows, bins, end_ns, healing_ns, scripted_faults, records }
}

/// Events built by hand, for tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// An event at `at_us` microseconds; a `job failure` is a warning, as the engine logs it.
    pub fn event(at_us: u64, node: &str, task: &str, message: &str, fields: &[(&str, &str)]) -> TraceEvent {
        TraceEvent {
            at_ns: u128::from(at_us) * 1000,
            node: node.into(),
            task: task.into(),
            level: if message.starts_with("job failure") { Level::WARN } else { Level::INFO },
            message: message.into(),
            fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::event;
    use super::*;

    fn names(lanes: &[Lane]) -> Vec<&str> {
        lanes.iter().map(|l| l.name.as_str()).collect()
    }

    #[test]
    fn lanes_are_nodes_each_followed_by_its_subtasks_then_the_harness_and_the_storage() {
        let events = vec![
            event(0, "jm", "-", "task manager registered", &[]),
            event(1, "tm-1", "sink[1]", "task started", &[("id", "v1")]),
            event(2, "tm-1", "numbers[1]", "task started", &[("id", "v0")]),
            event(3, "tm-0", "sink[0]", "task started", &[("id", "v1")]),
            event(4, "tm-0", "numbers[0]", "records emitted", &[("records", "4")]),
            event(5, "sim", "-", "fault: firing", &[("fault", "StorageCrash { when: When { at: None } }")]),
            event(6, "sim", "-", "healing: faults stop", &[]),
            // The job manager names a subtask by vertex id; it belongs to the subtask's lane.
            event(7, "jm", "v1[0]", "fault: rpc dropped", &[("kind", "Ack")]),
            event(8, "sim", "-", "fault: firing", &[("fault", "CrashTaskManager { node: \"tm-1\", when: When { } }")]),
            event(9, "sim", "-", "fault: node killed", &[("node", "tm-1")]),
        ];
        let (lanes, of_event) = assign_lanes(&events);
        assert_eq!(
            names(&lanes),
            ["jm", "tm-0", "numbers[0]", "sink[0]", "tm-1", "numbers[1]", "sink[1]", "harness", "storage"]
        );
        let lane = |i: usize| lanes[of_event[i]].name.as_str();
        assert_eq!((lane(5), lane(6), lane(7), lane(8), lane(9)), ("storage", "harness", "sink[0]", "tm-1", "tm-1"));
        assert_eq!(lanes[2].node.as_deref(), Some("tm-0"));
    }

    #[test]
    fn task_managers_sort_by_number() {
        let events: Vec<TraceEvent> =
            ["tm-10", "tm-2", "jm"].iter().enumerate().map(|(i, n)| event(i as u64, n, "-", "x", &[])).collect();
        assert_eq!(names(&assign_lanes(&events).0), ["jm", "tm-2", "tm-10"]);
    }

    #[test]
    fn spans_pair_triggers_with_completions_aborts_expiries_and_failovers() {
        let cp = |at, message: &str, id: &str, extra: &[(&str, &str)]| {
            let mut fields = vec![("job", "j1"), ("checkpoint", id)];
            fields.extend_from_slice(extra);
            event(at, "jm", "-", message, &fields)
        };
        let events = vec![
            cp(100, "checkpoint triggered", "1", &[("class", "Checkpoint")]),
            cp(150, "checkpoint complete", "1", &[("class", "Checkpoint")]),
            cp(200, "checkpoint triggered", "2", &[("class", "Checkpoint")]),
            cp(210, "checkpoint triggered", "3", &[("class", "Savepoint { dir: x }")]),
            cp(300, "checkpoint aborted", "2", &[("reason", "expired before every task acked")]),
            cp(320, "checkpoint aborted", "3", &[("reason", "declined by v0[0]: stale")]),
            cp(400, "checkpoint triggered", "4", &[("class", "Checkpoint")]),
            event(450, "jm", "-", "job failure", &[("job", "j1")]),
            cp(500, "checkpoint triggered", "5", &[("class", "Checkpoint")]),
        ];
        let (spans, rows) = pair_spans(&events, 900_000);
        let got: Vec<(&str, bool, u128, u128, SpanEnd, usize)> = spans
            .iter()
            .map(|s| (s.id.as_str(), s.savepoint, s.start_ns / 1000, s.end_ns / 1000, s.end, s.row))
            .collect();
        assert_eq!(
            got,
            vec![
                ("1", false, 100, 150, SpanEnd::Completed, 0),
                ("2", false, 200, 300, SpanEnd::Expired, 0),
                ("3", true, 210, 320, SpanEnd::Aborted, 1),
                ("4", false, 400, 450, SpanEnd::Unfinished, 0),
                ("5", false, 500, 900, SpanEnd::Unfinished, 0),
            ]
        );
        assert_eq!(rows, 2);
        assert_eq!((spans[0].start_event, spans[0].end_event), (0, Some(1)));
    }

    #[test]
    fn records_are_summed_per_lane_and_bin() {
        let events = vec![
            event(10, "tm-0", "a[0]", "records emitted", &[("records", "40"), ("batches", "10")]),
            event(20, "tm-0", "a[0]", "records emitted", &[("records", "4")]),
            event(30, "tm-1", "a[1]", "records emitted", &[("records", "7")]),
            event(30, "tm-0", "a[0]", "snapshot taken", &[("checkpoint", "1")]),
            event(90, "tm-0", "a[0]", "records emitted", &[("records", "5")]),
        ];
        let (_, lanes_of) = assign_lanes(&events);
        let bins = bin_records(&events, &lanes_of, 100_000, 2);
        let got: Vec<(usize, u128, u64, u64, usize, usize)> = bins
            .iter()
            .map(|b| (b.lane, b.start_ns / 1000, b.records, b.batches, b.first_event, b.last_event))
            .collect();
        assert_eq!(got, vec![(1, 0, 44, 11, 0, 1), (1, 50, 5, 1, 4, 4), (3, 0, 7, 1, 2, 2)]);
    }

    #[test]
    fn every_event_but_records_is_a_mark_of_its_kind() {
        let events = vec![
            event(1, "tm-0", "a[0]", "records emitted", &[("records", "4")]),
            event(2, "tm-0", "a[0]", "aligning", &[]),
            event(3, "tm-0", "a[0]", "part committed", &[]),
            event(4, "jm", "-", "job failure", &[]),
            event(5, "sim", "-", "fault: firing", &[("fault", "SlowStorage { }")]),
            event(6, "jm", "-", "restoring state", &[]),
        ];
        let model = build(&events, 0, 10);
        let kinds: Vec<(usize, MarkKind)> = model.marks.iter().map(|m| (m.event, m.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (1, MarkKind::Barrier),
                (2, MarkKind::Commit),
                (3, MarkKind::Failover),
                (4, MarkKind::Fault),
                (5, MarkKind::Restore)
            ]
        );
        assert_eq!(model.bins.len(), 1);
        assert_eq!(model.end_ns, 6000);
    }
}
