//! The timeline picture of a simulated run: one self-contained HTML page (`weir-sim replay --timeline run.html`)
//! with an SVG drawing of the run over simulated time.
//!
//! A lane per node and per subtask (below the node it first ran on), then the harness and the storage; a row of
//! checkpoint and savepoint spans from trigger to completion, abort, expiry, or the failover that cut them off;
//! a mark per protocol event (barriers, snapshots, acks, coordinator steps, commits, restores, failovers), a red
//! marker for each injected fault on the lane it hit (a line across every lane for scripted ones); the
//! violations from the run's report and its first divergence ([`crate::divergence`]) highlighted; the trace line
//! of what is under the pointer. `records emitted` events, the dense ones, are summed into bins per lane (drawn one by one
//! once the view is zoomed in past the bins), and the page's small script zooms (wheel, buttons) and pans (drag),
//! so that a run of 10,000 events and more stays readable.
//!
//! It is built from the run's structured events ([`crate::runner::TraceEvent`]), never by parsing trace lines.
//! The page fetches nothing: its style, script and drawing are inline.
//!
//! - `model.rs`: lanes, spans, marks and bins, from the events (pure);
//! - `svg.rs`: the drawing;
//! - `timeline.js`: zoom, pan and the tooltip.

pub mod model;
pub mod svg;

use crate::divergence::FirstDivergence;
use crate::runner::RunReport;
use model::MarkKind;
use std::fmt::Write as _;
use svg::{Highlights, escape};

/// The page's script.
const SCRIPT: &str = include_str!("timeline.js");

/// Record bins over the run: about one per two pixels of the plot.
const BINS: usize = (svg::PLOT_WIDTH / 2.0) as usize;

/// Violation labels inside the drawing are cut to this many characters (the header has them whole).
const LABEL_CHARS_MAX: usize = 150;

/// What the page says of the run besides its events.
#[derive(Clone, Debug)]
pub struct About<'a> {
    /// The scenario's file, as given.
    pub scenario_path: &'a str,
    /// Whether the seed passed (a canary passes when its violation is found).
    pub passed: bool,
    /// For a canary: the invariant it must break.
    pub canary: Option<String>,
    /// The command that replays the seed.
    pub replay: String,
}

fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// What the drawing singles out of `report`.
fn highlights(report: &RunReport) -> Highlights {
    let mut highlights = Highlights::default();
    if let Some(FirstDivergence::Found(divergence)) = &report.first_divergence {
        highlights.divergence = Some((divergence.event, format!("first divergence: {}", divergence.kind)));
        highlights.origin = divergence.origin;
    }
    let end_ns = u128::from(report.sim_time_ms) * 1_000_000;
    // The two exactly-once comparisons often say the same thing: one label per invariant, the first.
    let mut labelled = Vec::new();
    for violation in &report.violations {
        if labelled.contains(&violation.invariant) {
            continue;
        }
        labelled.push(violation.invariant);
        let label = cut(&format!("✗ {} violated: {}", violation.invariant, violation.event), LABEL_CHARS_MAX);
        highlights.violations.push((label, u128::from(violation.time_ms) * 1_000_000));
    }
    if let Some(error) = &report.error {
        highlights.violations.push((cut(&format!("✗ the run failed: {error}"), LABEL_CHARS_MAX), end_ns));
    }
    highlights.violations.truncate(2);
    highlights
}

/// The legend: a glyph per mark kind, a swatch per span end.
fn legend() -> String {
    let mut html = String::from("<div class=\"legend\">");
    for kind in MarkKind::ALL {
        let _ = write!(
            html,
            "<span><svg width=\"16\" height=\"16\"><use href=\"#g-{0}\" x=\"8\" y=\"9\"/></svg>{0}</span>",
            kind.name()
        );
    }
    for (class, word) in [
        ("completed", "checkpoint completed"),
        ("aborted", "aborted"),
        ("expired", "expired"),
        ("unfinished", "cut off"),
    ] {
        let _ = write!(html, "<span><i class=\"swatch {class}\"></i>{word}</span>");
    }
    html.push_str(
        "<span><i class=\"swatch savepoint\"></i>savepoint</span><span><i class=\"swatch bin\"></i>records emitted</span></div>",
    );
    html
}

/// The run's timeline as one HTML page.
pub fn html(report: &RunReport, about: &About<'_>) -> String {
    let model = model::build(&report.events, u128::from(report.sim_time_ms) * 1_000_000, BINS);
    let drawing = svg::draw(&model, &highlights(report));
    let lines: Vec<String> = report.events.iter().map(|e| e.line()).collect();
    // `</` cannot appear inside a script element.
    let lines_json = serde_json::to_string(&lines).expect("strings serialize").replace("</", "<\\/");
    let title = format!("{}, seed {}", report.scenario, report.seed);
    let mut findings = String::new();
    for violation in &report.violations {
        let _ = write!(findings, "<li class=\"violation\">{}</li>", escape(&violation.to_string()));
    }
    if let Some(error) = &report.error {
        let _ = write!(findings, "<li class=\"violation\">the run failed: {}</li>", escape(error));
    }
    if let Some(divergence) = &report.first_divergence {
        let _ = write!(findings, "<li class=\"divergence\">first divergence: {}</li>", escape(&divergence.to_string()));
    }
    let verdict = match (about.passed, &about.canary) {
        (true, Some(canary)) => {
            format!("<b class=\"pass\">passed: the canary broke `{}`, as it must</b>", escape(canary))
        }
        (true, None) => "<b class=\"pass\">passed</b>".to_string(),
        (false, Some(canary)) => format!("<b class=\"fail\">FAILED: the canary did not break `{}`</b>", escape(canary)),
        (false, None) => "<b class=\"fail\">FAILED</b>".to_string(),
    };
    let faults = model.marks.iter().filter(|m| m.kind == MarkKind::Fault).count();
    let completed = model.spans.iter().filter(|s| s.end == model::SpanEnd::Completed).count();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>{STYLE}</style></head><body>\
         <header><h1>{title} {verdict}</h1>\
         <p class=\"meta\">{path} · {events} events over {ms} ms simulated · {faults} faults · {completed} of {spans} snapshots completed · replay: <code>{replay}</code></p>\
         <ul class=\"findings\">{findings}</ul>{legend}\
         <p class=\"controls\"><button id=\"zoom-in\">zoom in</button><button id=\"zoom-out\">zoom out</button><button id=\"zoom-fit\">whole run</button><button id=\"zoom-divergence\">to the first divergence</button> wheel: zoom · drag: pan · double-click: whole run · hover: the trace line</p></header>\
         <main>{drawing}</main><pre id=\"tip\" hidden></pre>\
         <script type=\"application/json\" id=\"trace-lines\">{lines_json}</script><script>{SCRIPT}</script></body></html>\n",
        title = escape(&title),
        path = escape(about.scenario_path),
        events = report.events.len(),
        ms = report.sim_time_ms,
        spans = model.spans.len(),
        replay = escape(&about.replay),
        legend = legend(),
    )
}

/// The page's style.
const STYLE: &str = "\
body{font:12px 'DejaVu Sans',Arial,sans-serif;margin:8px 12px;color:#222;background:#fff}\
h1{font-size:17px;margin:2px 0}h1 .pass{color:#1b7f2a}h1 .fail{color:#c00}\
.meta{color:#555;margin:2px 0}.findings{margin:4px 0;padding-left:18px}\
.findings .violation{color:#b00000;font-weight:bold}.findings .divergence{color:#b35900;font-weight:bold}\
.legend span{margin-right:12px;white-space:nowrap;display:inline-flex;align-items:center;gap:3px}\
.legend svg{vertical-align:middle}.swatch{display:inline-block;width:14px;height:10px;border:1px solid #666}\
.swatch.completed{background:#a5d6a7}.swatch.aborted{background:#ef9a9a}.swatch.expired{background:#ffcc80}\
.swatch.unfinished{background:#eee;border-style:dashed}.swatch.savepoint{background:#fff;border:2px solid #7b1fa2}\
.swatch.bin{background:#4a90d9;opacity:.6}.controls{margin:4px 0;color:#555}.controls button{margin-right:4px}\
main{overflow-x:auto}svg#timeline{user-select:none;cursor:grab}\
#tip{position:absolute;background:#fffbe6;border:1px solid #b59f3b;padding:4px 6px;font:11px monospace;\
white-space:pre;pointer-events:none;max-width:900px;overflow:hidden;box-shadow:1px 1px 4px #999;margin:0}\
.lane.node{fill:#e3e8f0}.lane.task{fill:#fff;stroke:#f0f0f0}.lane.harness{fill:#f3eefc}.lane.storage{fill:#fff4e5}\
text.label{font-size:12px;fill:#333}text.label.node{font-weight:bold}text.label.spans{font-style:italic;fill:#555}\
line.tick{stroke:#e4e4e4}text.tick{font-size:10px;fill:#777;text-anchor:middle}\
.span{stroke-width:1}.span.completed{fill:#a5d6a7;stroke:#388e3c}.span.aborted{fill:#ef9a9a;stroke:#c62828}\
.span.expired{fill:#ffcc80;stroke:#e65100}.span.unfinished{fill:#eee;stroke:#999;stroke-dasharray:3 2}\
.span.savepoint{stroke:#7b1fa2;stroke-width:2}.span-label{font-size:10px;fill:#222;pointer-events:none}\
.bin{fill:#4a90d9}.glyph.records{fill:#4a90d9;fill-opacity:.55}\
.glyph.k-barrier{fill:#1565c0}.glyph.k-snapshot{fill:#00838f}.glyph.k-ack{fill:#2e7d32}.glyph.k-coordinator{fill:#757575}\
.glyph.k-commit{fill:#1b5e20}.glyph.k-restore{fill:#6a1b9a}.glyph.k-failover{stroke:#ef6c00}.glyph.k-fault{fill:#e00000}\
.glyph.k-warning{fill:#f9a825}.glyph.k-other{fill:#9e9e9e}\
.vline{stroke-width:1.5}.vline.fault{stroke:#e00000;stroke-dasharray:5 3}.vline.healing{stroke:#2e7d32;stroke-dasharray:8 4}\
.vline.divergence{stroke:#ff8c00;stroke-width:2.5}.vline.origin{stroke:#ff8c00;stroke-dasharray:3 3}\
.vline.violation{stroke:#b00000;stroke-width:3}\
.ring{fill:none;stroke-width:3}.ring.divergence{stroke:#ff8c00}.ring.origin{stroke:#ffb74d}\
.vlabel{font-size:12px;font-weight:bold}.vlabel.divergence{fill:#d35400}.vlabel.origin{fill:#e67e22}\
.vlabel.violation{fill:#b00000}.vlabel.fault{fill:#e00000;font-size:11px}.vlabel.healing{fill:#2e7d32;font-size:11px}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::divergence::{Divergence, DivergenceKind};
    use crate::invariants::{Invariant, Violation};
    use crate::runner::TraceEvent;
    use model::testing::event;

    fn report(
        events: Vec<TraceEvent>,
        violations: Vec<Violation>,
        first_divergence: Option<FirstDivergence>,
    ) -> RunReport {
        RunReport {
            scenario: "hand-made".into(),
            seed: 7,
            chosen: Vec::new(),
            violations,
            error: None,
            sim_time_ms: events.last().map_or(0, |e| (e.at_ns / 1_000_000) as u64 + 1),
            fingerprint: 0,
            wall_time: std::time::Duration::ZERO,
            output: String::new(),
            completed: Vec::new(),
            restores: 0,
            attempts: 1,
            profile: None,
            checkpoint_dirs: Vec::new(),
            unfired: Vec::new(),
            trace: events.iter().map(TraceEvent::line).collect(),
            events,
            first_divergence,
        }
    }

    /// A small run: a checkpoint, a fault that kills a node, a failed job, a restore, commits.
    fn small_run() -> Vec<TraceEvent> {
        let cp = |at, message: &str, id: &str| event(at, "jm", "-", message, &[("job", "ab12cd"), ("checkpoint", id)]);
        vec![
            event(0, "jm", "-", "task manager registered", &[("task_manager", "tm-0")]),
            event(10, "tm-0", "src[0]", "task started", &[("id", "v0"), ("attempt", "0")]),
            event(11, "tm-0", "sink[0]", "task started", &[("id", "v1"), ("attempt", "0")]),
            event(20, "tm-0", "src[0]", "records emitted", &[("records", "40"), ("batches", "10")]),
            cp(100, "checkpoint triggered", "1"),
            event(101, "tm-0", "src[0]", "snapshot taken", &[("checkpoint", "1")]),
            event(102, "tm-0", "sink[0]", "aligning", &[("checkpoint", "1")]),
            cp(150, "checkpoint complete", "1"),
            event(151, "tm-0", "sink[0]", "part committed", &[("part", "part-0000-1"), ("checkpoint", "1")]),
            cp(200, "checkpoint triggered", "2"),
            event(
                210,
                "sim",
                "-",
                "fault: firing",
                &[("fault", "CrashTaskManager { node: \"tm-0\", when: When { } }")],
            ),
            event(210, "sim", "-", "fault: node killed", &[("node", "tm-0"), ("restart_after", "50ms")]),
            event(211, "jm", "v1[0]", "fault: rpc dropped", &[("kind", "Ack")]),
            event(212, "jm", "-", "job failure", &[("job", "ab12cd")]),
            event(260, "jm", "-", "restoring state", &[("job", "ab12cd"), ("checkpoint", "1")]),
            event(270, "tm-0", "sink[0]", "part committed", &[("part", "part-0000-2"), ("checkpoint", "2")]),
            event(300, "sim", "-", "healing: faults stop", &[]),
        ]
    }

    fn svg_of(page: &str) -> &str {
        let start = page.find("<svg xmlns").expect("an inline SVG");
        let end = page[start..].find("</svg>").expect("a closed SVG") + start + "</svg>".len();
        &page[start..end]
    }

    fn about() -> About<'static> {
        About {
            scenario_path: "scenarios/hand-made.toml",
            passed: false,
            canary: None,
            replay: "weir-sim replay x --seed 7".into(),
        }
    }

    fn violation() -> Violation {
        Violation {
            invariant: Invariant::ExactlyOnceOutput,
            seed: 7,
            time_ms: 1,
            event: "`r <1>` committed 2 times".into(),
        }
    }

    fn divergence(event: usize) -> FirstDivergence {
        FirstDivergence::Found(Divergence {
            kind: DivergenceKind::Duplicate,
            event,
            at_ns: 270_000,
            node: "tm-0".into(),
            task: "sink[0]".into(),
            message: "part committed".into(),
            trace_line: String::new(),
            record: "r <1>".into(),
            explanation: "`r <1>` committed 2 times".into(),
            origin: Some(8),
        })
    }

    #[test]
    fn the_page_is_self_contained_and_its_drawing_is_well_formed_xml() {
        let page = html(&report(small_run(), vec![violation()], Some(divergence(15))), &about());
        let svg = svg_of(&page);
        let document = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("the SVG is not well-formed: {e}"));
        assert_eq!(document.root_element().tag_name().name(), "svg");
        // Nothing is fetched: no address but the SVG namespace's name, no external reference.
        let addresses = page.match_indices("http").map(|(at, _)| &page[at..]);
        assert!(
            addresses.into_iter().all(|a| a.starts_with("http://www.w3.org/2000/svg\"")),
            "only the SVG namespace may name an address"
        );
        for reference in ["src=", "<link", "@import", "url(h", "href=\"h", "href=\"/"] {
            assert!(!page.contains(reference), "the page refers to something outside it: `{reference}`");
        }
        // The trace lines travel in the page, escaped so that none closes its script element.
        let json_start = page.find("id=\"trace-lines\">").unwrap() + "id=\"trace-lines\">".len();
        let json_end = page[json_start..].find("</script>").unwrap() + json_start;
        let lines: Vec<String> = serde_json::from_str(&page[json_start..json_end]).unwrap();
        assert_eq!(lines, small_run().iter().map(TraceEvent::line).collect::<Vec<_>>());
    }

    #[test]
    fn every_fault_has_a_marker_and_the_violation_and_the_divergence_are_highlighted() {
        let events = small_run();
        let page = html(&report(events.clone(), vec![violation()], Some(divergence(15))), &about());
        let document = roxmltree::Document::parse(svg_of(&page)).unwrap();
        let attribute = |node: roxmltree::Node, name| node.attribute(name).unwrap_or("").to_string();
        let fault_marks: Vec<String> = document
            .descendants()
            .filter(|n| attribute(*n, "class") == "mark k-fault")
            .map(|n| attribute(n, "data-i"))
            .collect();
        let faults: Vec<String> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.message.starts_with("fault: "))
            .map(|(i, _)| i.to_string())
            .collect();
        assert_eq!(fault_marks, faults);
        let texts: Vec<&str> = document.descendants().filter_map(|n| n.text()).collect();
        assert!(texts.iter().any(|t| t.starts_with("✗ exactly_once_output violated")), "{texts:?}");
        assert!(texts.contains(&"first divergence: duplicate") && texts.contains(&"first copy committed"), "{texts:?}");
        assert!(texts.contains(&"CrashTaskManager"), "the scripted fault is labelled: {texts:?}");
        let ring = document.descendants().find(|n| attribute(*n, "class") == "ring divergence").expect("a ring");
        assert_eq!(attribute(ring, "data-i"), "15");
        // The header says it all in words too.
        assert!(page.contains("first divergence: duplicate: at 0.000270s on tm-0 sink[0]"), "{page}");
        assert!(page.contains("invariant `exactly_once_output` violated (seed 7"));
        // The checkpoint the fault cut off ends at the failover.
        let cut_off = document.descendants().find(|n| attribute(*n, "class") == "span checkpoint unfinished").unwrap();
        assert_eq!(attribute(cut_off, "data-d"), (212_000 - 200_000).to_string());
    }

    #[test]
    fn a_run_of_ten_thousand_events_and_more_stays_a_bounded_drawing() {
        let mut events = Vec::new();
        for checkpoint in 0..1_000u64 {
            let at = checkpoint * 1_000;
            let id = (checkpoint + 1).to_string();
            events.push(event(at, "jm", "-", "checkpoint triggered", &[("job", "j"), ("checkpoint", &id)]));
            for subtask in 0..4 {
                let task = format!("src[{subtask}]");
                for step in 1..4 {
                    events.push(event(
                        at + step * 100 + subtask,
                        "tm-0",
                        &task,
                        "records emitted",
                        &[("records", "4")],
                    ));
                }
                events.push(event(at + 500 + subtask, "tm-0", &task, "snapshot taken", &[("checkpoint", &id)]));
            }
            events.push(event(at + 900, "jm", "-", "checkpoint complete", &[("job", "j"), ("checkpoint", &id)]));
        }
        assert!(events.len() > 10_000);
        let run = report(events, Vec::new(), None);
        let page = html(&run, &about());
        let svg = svg_of(&page);
        let document = roxmltree::Document::parse(svg).unwrap();
        let bins = document.descendants().filter(|n| n.attribute("class") == Some("bin")).count();
        // 12,000 record events, drawn as at most one bin per lane and bin of time.
        assert!(bins <= 4 * BINS, "{bins} bins");
        let records: u64 =
            document.descendants().filter_map(|n| n.attribute("data-n")).map(|n| n.parse::<u64>().unwrap()).sum();
        assert_eq!(records, 1_000 * 4 * 3 * 4, "every record is in a bin");
        assert!(page.len() < 4 << 20, "{} bytes", page.len());
    }
}
