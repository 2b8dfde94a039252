//! The trace of a simulated run: one line per protocol event, in a stable human form that people read and tools
//! (the timeline picture, the determinism check) parse.
//!
//! A line is `<simulated time>  <node>  <task>  <event>  <key=value ...>`: the time in seconds to the microsecond,
//! the node the event happened on (`jm`, `tm-0`, or `sim` for the harness itself), the subtask (`vertex[n]`, or
//! `-`), the event's message, then its fields in the order the code names them. Values are printed with `Display`,
//! job ids shortened to the six hex digits savepoint names use. Runs of `records emitted` from one subtask, with
//! nothing else in between, are folded into one line that counts them, so the trace stays readable.
//!
//! Events of target `weir::trace` are traced, and warnings and errors of the engine and the harness.

use engine::seam::runtime;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// One traced event, before it becomes a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// Simulated time, in nanoseconds since the run started.
    pub at_ns: u128,
    pub node: String,
    /// `vertex[subtask]`, or `-`.
    pub task: String,
    pub level: Level,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

impl TraceEvent {
    /// The line this event is in the trace.
    pub fn line(&self) -> String {
        let mut line = format!("{:>10.6}s  {:<5} {:<28}", self.at_ns as f64 / 1e9, self.node, self.task);
        if self.level <= Level::WARN {
            let _ = write!(line, " {}:", self.level);
        }
        let _ = write!(line, " {}", self.message);
        for (key, value) in &self.fields {
            let _ = write!(line, " {key}={value}");
        }
        line
    }

    /// The value of field `key`.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Collects the events of `message`, `node`, `vertex` and `subtask` fields.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
            return;
        }
        let value = match field.name() {
            // A job id is 32 hex digits; its first six name it in a run, as in savepoint directory names.
            "job" if value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()) => value[..6].to_string(),
            _ => value,
        };
        self.fields.push((field.name().to_string(), value));
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, format!("{value:?}"));
    }
}

/// Where a span says events inside it happen: stored in the span's extensions. madsim enters a task's span, whose
/// parent is its node's span (`name` = the node's name), whenever it polls the task; the engine's subtask span
/// names the vertex and subtask.
#[derive(Clone, Default)]
struct Place {
    /// Whether this is a madsim node span, whose `name` is the node.
    node_span: bool,
    node: Option<String>,
    vertex: Option<String>,
    subtask: Option<String>,
}

impl Place {
    fn set(&mut self, field: &Field, value: String) {
        match field.name() {
            "name" if self.node_span => self.node = Some(value),
            "vertex" => self.vertex = Some(value),
            "subtask" => self.subtask = Some(value),
            _ => {}
        }
    }
}

impl Visit for Place {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, format!("{value:?}").trim_matches('"').to_string());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_string());
    }
}

/// A run of `records emitted` events of one subtask being folded into one line.
struct Fold {
    first: TraceEvent,
    batches: u64,
    records: u64,
}

/// The trace being recorded: events, with consecutive `records emitted` of a subtask folded.
#[derive(Default)]
struct Recording {
    events: Vec<TraceEvent>,
    folding: Vec<Fold>,
}

impl Recording {
    fn flush_folds(&mut self) {
        for fold in self.folding.drain(..) {
            let mut event = fold.first;
            if fold.batches > 1 {
                event.fields =
                    vec![("records".into(), fold.records.to_string()), ("batches".into(), fold.batches.to_string())];
            }
            self.events.push(event);
        }
    }

    fn record(&mut self, event: TraceEvent) {
        if event.message == "records emitted" {
            let records: u64 = event.field("records").and_then(|r| r.parse().ok()).unwrap_or(0);
            match self.folding.iter_mut().find(|f| f.first.task == event.task && f.first.node == event.node) {
                Some(fold) => {
                    fold.batches += 1;
                    fold.records += records;
                }
                None => self.folding.push(Fold { first: event, batches: 1, records }),
            }
            return;
        }
        self.flush_folds();
        self.events.push(event);
    }
}

/// The trace of one run, shared between the layer that records it and the runner that reads it.
#[derive(Clone, Default)]
pub struct Trace(Arc<Mutex<Recording>>);

impl Trace {
    /// The recorded events, with every fold finished.
    pub fn events(&self) -> Vec<TraceEvent> {
        let mut recording = self.0.lock().expect("trace lock");
        recording.flush_folds();
        recording.events.clone()
    }

    /// A subscriber that records into this trace.
    pub fn subscriber(&self) -> impl Subscriber + Send + Sync {
        use tracing_subscriber::layer::SubscriberExt;
        tracing_subscriber::registry().with(TraceLayer { trace: self.clone() })
    }
}

struct TraceLayer {
    trace: Trace,
}

fn traced(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    (metadata.is_span()
        && (target.starts_with("engine")
            || (target.starts_with("madsim") && matches!(metadata.name(), "node" | "task"))))
        || target == "weir::trace"
        || (*metadata.level() <= Level::WARN
            && (metadata.target().starts_with("engine") || metadata.target().starts_with("sim")))
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for TraceLayer {
    fn enabled(&self, metadata: &Metadata<'_>, _context: Context<'_, S>) -> bool {
        traced(metadata)
    }

    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let metadata = attributes.metadata();
        let mut place = Place {
            node_span: metadata.name() == "node" && metadata.target().starts_with("madsim"),
            ..Place::default()
        };
        attributes.record(&mut place);
        if let Some(span) = context.span(id) {
            span.extensions_mut().insert(place);
        }
    }

    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        let mut place = Place::default();
        if let Some(scope) = context.event_scope(event) {
            for span in scope.from_root() {
                if let Some(inner) = span.extensions().get::<Place>() {
                    place.node = inner.node.clone().or(place.node);
                    place.vertex = inner.vertex.clone().or(place.vertex);
                    place.subtask = inner.subtask.clone().or(place.subtask);
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        // An event that names its own subtask (a source head, the job manager about a task) is placed there.
        let vertex = place.vertex.or_else(|| fields.fields.iter().find(|(k, _)| k == "vertex").map(|(_, v)| v.clone()));
        let subtask =
            place.subtask.or_else(|| fields.fields.iter().find(|(k, _)| k == "subtask").map(|(_, v)| v.clone()));
        let task = match (&vertex, &subtask) {
            (Some(vertex), Some(subtask)) => format!("{vertex}[{subtask}]"),
            _ => "-".to_string(),
        };
        if vertex.is_some() && subtask.is_some() {
            fields.fields.retain(|(k, _)| k != "vertex" && k != "subtask");
        }
        let node =
            place.node.map_or_else(|| "-".to_string(), |n| if n == "madsim-main" { "sim".to_string() } else { n });
        let message = std::mem::take(&mut fields.message);
        let traced = TraceEvent {
            at_ns: runtime::elapsed().as_nanos(),
            node,
            task,
            level: *event.metadata().level(),
            message,
            fields: fields.fields,
        };
        self.trace.0.lock().expect("trace lock").record(traced);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(task: &str, message: &str, fields: &[(&str, &str)]) -> TraceEvent {
        TraceEvent {
            at_ns: 1_500_000,
            node: "tm-0".into(),
            task: task.into(),
            level: Level::INFO,
            message: message.into(),
            fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn a_line_is_time_node_task_event_and_fields() {
        let line = event("numbers[1]", "snapshot taken", &[("checkpoint", "7")]).line();
        assert_eq!(line, "  0.001500s  tm-0  numbers[1]                   snapshot taken checkpoint=7");
    }

    #[test]
    fn consecutive_records_emitted_of_a_subtask_fold_into_one_line() {
        let mut recording = Recording::default();
        recording.record(event("numbers[0]", "records emitted", &[("records", "4")]));
        recording.record(event("numbers[1]", "records emitted", &[("records", "1")]));
        recording.record(event("numbers[0]", "records emitted", &[("records", "6")]));
        recording.record(event("numbers[0]", "snapshot taken", &[("checkpoint", "1")]));
        recording.record(event("numbers[0]", "records emitted", &[("records", "2")]));
        recording.flush_folds();
        let lines: Vec<(String, Vec<(String, String)>)> =
            recording.events.iter().map(|e| (e.task.clone(), e.fields.clone())).collect();
        let f = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        assert_eq!(
            lines,
            vec![
                ("numbers[0]".into(), f(&[("records", "10"), ("batches", "2")])),
                ("numbers[1]".into(), f(&[("records", "1")])),
                ("numbers[0]".into(), f(&[("checkpoint", "1")])),
                ("numbers[0]".into(), f(&[("records", "2")])),
            ]
        );
    }
}
