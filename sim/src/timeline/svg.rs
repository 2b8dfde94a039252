//! The drawing: a [`Model`] as one SVG element, with every time-placed element carrying its time (`data-t`, and
//! `data-d` for a duration, in nanoseconds) so that the page's script can zoom and pan by moving them, and the
//! index of its trace event (`data-i`, `data-j`) for the tooltip. Positions are computed here for the whole run,
//! so the drawing is complete without the script.

use super::model::{LaneKind, MarkKind, Model};
use std::fmt::Write as _;

/// Where the lane labels end and the plot begins.
pub const PLOT_LEFT: f64 = 250.0;
/// The plot's width.
pub const PLOT_WIDTH: f64 = 1300.0;
const RIGHT_MARGIN: f64 = 30.0;
const AXIS_Y: f64 = 74.0;
const SPAN_ROW_HEIGHT: f64 = 18.0;
const LANE_HEIGHT: f64 = 20.0;

/// Events the drawing singles out.
#[derive(Clone, Debug, Default)]
pub struct Highlights {
    /// The first divergence: its event, a short label.
    pub divergence: Option<(usize, String)>,
    /// The commit of a duplicate's first copy.
    pub origin: Option<usize>,
    /// The violations, each as one line, and the simulated time their evidence was taken at.
    pub violations: Vec<(String, u128)>,
}

/// `text` safe inside XML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// x of simulated time `at_ns` over `[0, end_ns]`.
fn x_of(at_ns: u128, end_ns: u128) -> f64 {
    PLOT_LEFT + at_ns as f64 / end_ns as f64 * PLOT_WIDTH
}

/// A tick step of 1, 2 or 5 times a power of ten nanoseconds giving about `ticks` ticks over `range_ns`.
pub fn tick_step_ns(range_ns: u128, ticks: u128) -> u128 {
    let raw = (range_ns / ticks.max(1)).max(1);
    let mut step = 1u128;
    loop {
        for factor in [1, 2, 5] {
            if step * factor >= raw {
                return step * factor;
            }
        }
        step *= 10;
    }
}

/// A tick's label: milliseconds, with as many decimals as the step needs.
pub fn tick_label(at_ns: u128, step_ns: u128) -> String {
    let decimals = match step_ns {
        s if s >= 1_000_000 => 0,
        s if s >= 100_000 => 1,
        s if s >= 10_000 => 2,
        _ => 3,
    };
    format!("{:.*} ms", decimals, at_ns as f64 / 1e6)
}

/// The glyphs, one `<symbol>`-like `<g>` per mark kind, drawn around (0, 0).
fn glyphs() -> String {
    let mut defs = String::new();
    for kind in MarkKind::ALL {
        let shape = match kind {
            MarkKind::Barrier => "<rect x=\"-0.75\" y=\"-6\" width=\"1.5\" height=\"12\"/>",
            MarkKind::Snapshot => "<rect x=\"-1.5\" y=\"-5\" width=\"3\" height=\"10\"/>",
            MarkKind::Ack => "<circle r=\"2.5\"/>",
            MarkKind::Coordinator => "<rect x=\"-1\" y=\"-7\" width=\"2\" height=\"14\"/>",
            MarkKind::Commit => "<rect x=\"-3.5\" y=\"-3.5\" width=\"7\" height=\"7\"/>",
            MarkKind::Restore => "<path d=\"M0,-6 L6,0 L0,6 L-6,0 Z\"/>",
            MarkKind::Failover => "<path d=\"M-5,-5 L5,5 M5,-5 L-5,5\" stroke-width=\"2.5\" fill=\"none\"/>",
            MarkKind::Fault => "<path d=\"M-7,-8 L7,-8 L0,6 Z\" stroke=\"#000\" stroke-width=\"1\"/>",
            MarkKind::Warning => "<path d=\"M0,-5 L5,4 L-5,4 Z\"/>",
            MarkKind::Other => "<circle r=\"2\"/>",
        };
        let _ = write!(defs, "<g id=\"g-{0}\" class=\"glyph k-{0}\">{shape}</g>", kind.name());
    }
    defs.push_str(
        "<g id=\"g-records\" class=\"glyph records\"><rect x=\"-1.5\" y=\"-7\" width=\"3\" height=\"14\"/></g>",
    );
    defs
}

/// The SVG element of `model`; `lines` are the events' trace lines (for the lanes' tooltips only the indices are
/// written; the page carries the lines).
pub fn draw(model: &Model, highlights: &Highlights) -> String {
    let end = model.end_ns;
    let spans_top = AXIS_Y + 10.0;
    let lanes_top = spans_top + model.span_rows as f64 * SPAN_ROW_HEIGHT + 10.0;
    let height = lanes_top + model.lanes.len() as f64 * LANE_HEIGHT + 16.0;
    let width = PLOT_LEFT + PLOT_WIDTH + RIGHT_MARGIN;
    let lane_y = |lane: usize| lanes_top + lane as f64 * LANE_HEIGHT + LANE_HEIGHT / 2.0;
    let mut svg = String::with_capacity(64 * (model.marks.len() + model.bins.len()) + 4096);
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"timeline\" width=\"{width}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width} {height:.0}\" data-end=\"{end}\" data-left=\"{PLOT_LEFT}\" data-width=\"{PLOT_WIDTH}\" \
         data-top=\"{spans_top}\" data-bottom=\"{:.0}\">",
        height - 16.0
    );
    let _ = write!(
        svg,
        "<defs>{}<clipPath id=\"plot-clip\"><rect x=\"{:.0}\" y=\"0\" width=\"{:.0}\" height=\"{height:.0}\"/></clipPath></defs>",
        glyphs(),
        PLOT_LEFT - 20.0,
        PLOT_WIDTH + 20.0 + RIGHT_MARGIN
    );
    // Lane bands and labels.
    svg.push_str("<g id=\"lanes\">");
    for (index, lane) in model.lanes.iter().enumerate() {
        let top = lanes_top + index as f64 * LANE_HEIGHT;
        let class = match lane.kind {
            LaneKind::Node => "node",
            LaneKind::Task => "task",
            LaneKind::Harness => "harness",
            LaneKind::Storage => "storage",
        };
        let label = match lane.kind {
            LaneKind::Task => format!("  {}", lane.name),
            LaneKind::Node if lane.name == "jm" => "jm (job manager)".to_string(),
            _ => lane.name.clone(),
        };
        let _ = write!(
            svg,
            "<rect class=\"lane {class}\" x=\"0\" y=\"{top}\" width=\"{width}\" height=\"{LANE_HEIGHT}\"/>\
             <text class=\"label {class}\" x=\"8\" y=\"{:.1}\">{}</text>",
            top + LANE_HEIGHT * 0.7,
            escape(&label)
        );
    }
    let _ = write!(
        svg,
        "<text class=\"label spans\" x=\"8\" y=\"{:.1}\">checkpoints, savepoints</text></g>",
        spans_top + SPAN_ROW_HEIGHT * 0.7
    );
    let _ = write!(svg, "<g id=\"plot\" clip-path=\"url(#plot-clip)\">");
    // The axis: ticks for the whole run; the script redraws them on zoom.
    let _ = write!(svg, "<g id=\"axis\">");
    let step = tick_step_ns(end, 10);
    let mut tick = 0;
    while tick <= end {
        let x = x_of(tick, end);
        let _ = write!(
            svg,
            "<line class=\"tick\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{AXIS_Y}\" y2=\"{:.0}\"/><text class=\"tick\" x=\"{x:.2}\" y=\"{:.0}\">{}</text>",
            height - 16.0,
            AXIS_Y - 4.0,
            tick_label(tick, step)
        );
        tick += step;
    }
    svg.push_str("</g>");
    // A line across every lane at `at`, labelled below them.
    let across = |svg: &mut String, class: &str, at: u128, label: &str| {
        let x = x_of(at, end);
        let _ = write!(
            svg,
            "<line class=\"vline {class}\" data-t=\"{at}\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{spans_top}\" y2=\"{:.0}\"/>\
             <text class=\"vlabel {class}\" data-t=\"{at}\" x=\"{:.2}\" y=\"{:.0}\">{}</text>",
            height - 16.0,
            x + 4.0,
            height - 4.0,
            escape(label)
        );
    };
    // Healing, then record bins (below everything else).
    if let Some(at) = model.healing_ns {
        across(&mut svg, "healing", at, "healing: faults stop");
    }
    svg.push_str("<g id=\"bins\">");
    let mut most: Vec<u64> = vec![1; model.lanes.len()];
    for bin in &model.bins {
        most[bin.lane] = most[bin.lane].max(bin.records);
    }
    for bin in &model.bins {
        let (x, w) = (x_of(bin.start_ns, end), (x_of(bin.end_ns, end) - x_of(bin.start_ns, end)).max(1.0));
        let opacity = 0.15 + 0.75 * bin.records as f64 / most[bin.lane] as f64;
        let _ = write!(
            svg,
            "<rect class=\"bin\" data-t=\"{}\" data-d=\"{}\" data-i=\"{}\" data-j=\"{}\" data-n=\"{}\" data-b=\"{}\" \
             x=\"{x:.2}\" y=\"{:.1}\" width=\"{w:.2}\" height=\"{:.1}\" fill-opacity=\"{opacity:.2}\"/>",
            bin.start_ns,
            bin.end_ns - bin.start_ns,
            bin.first_event,
            bin.last_event,
            bin.records,
            bin.batches,
            lane_y(bin.lane) - LANE_HEIGHT / 2.0 + 3.0,
            LANE_HEIGHT - 6.0
        );
    }
    // The same records event by event, shown instead of the bins once a bin is wider than a few pixels.
    let bin_ns = model.bins.first().map_or(end, |b| b.end_ns - b.start_ns);
    let _ = write!(svg, "</g><g id=\"records\" data-bin=\"{bin_ns}\" style=\"display:none\">");
    for record in &model.records {
        let _ = write!(
            svg,
            "<use href=\"#g-records\" class=\"rec\" data-t=\"{}\" data-i=\"{}\" x=\"{:.2}\" y=\"{:.1}\"/>",
            record.at_ns,
            record.event,
            x_of(record.at_ns, end),
            lane_y(record.lane)
        );
    }
    svg.push_str("</g><g id=\"spans\">");
    for span in &model.spans {
        let (x, w) = (x_of(span.start_ns, end), (x_of(span.end_ns, end) - x_of(span.start_ns, end)).max(1.5));
        let y = spans_top + span.row as f64 * SPAN_ROW_HEIGHT + 2.0;
        let kind = if span.savepoint { "savepoint" } else { "checkpoint" };
        let end_event = span.end_event.map(|e| format!(" data-j=\"{e}\"")).unwrap_or_default();
        let _ = write!(
            svg,
            "<rect class=\"span {kind} {}\" data-t=\"{}\" data-d=\"{}\" data-i=\"{}\"{end_event} x=\"{x:.2}\" y=\"{y:.1}\" \
             width=\"{w:.2}\" height=\"{:.1}\"/><text class=\"span-label\" data-t=\"{}\" data-d=\"{}\" x=\"{:.2}\" y=\"{:.1}\">{}{}</text>",
            span.end.name(),
            span.start_ns,
            span.end_ns - span.start_ns,
            span.start_event,
            SPAN_ROW_HEIGHT - 4.0,
            span.start_ns,
            span.end_ns - span.start_ns,
            x + 2.0,
            y + SPAN_ROW_HEIGHT - 8.0,
            if span.savepoint { "sp " } else { "" },
            escape(&span.id)
        );
    }
    svg.push_str("</g>");
    // Scripted faults: a line across every lane, so that what they hit lines up below them.
    svg.push_str("<g id=\"fault-lines\">");
    for (mark, label) in &model.scripted_faults {
        across(&mut svg, "fault", model.marks[*mark].at_ns, label);
    }
    svg.push_str("</g><g id=\"marks\">");
    for mark in &model.marks {
        let x = x_of(mark.at_ns, end);
        let _ = write!(
            svg,
            "<use href=\"#g-{0}\" class=\"mark k-{0}\" data-t=\"{1}\" data-i=\"{2}\" x=\"{x:.2}\" y=\"{3:.1}\"/>",
            mark.kind.name(),
            mark.at_ns,
            mark.event,
            lane_y(mark.lane)
        );
    }
    svg.push_str("</g><g id=\"highlights\">");
    let mark_of = |event: usize| model.marks.iter().find(|m| m.event == event);
    let ring = |event: usize, class: &str, label: &str, svg: &mut String| {
        let Some(mark) = mark_of(event) else { return };
        let x = x_of(mark.at_ns, end);
        let _ = write!(
            svg,
            "<line class=\"vline {class}\" data-t=\"{0}\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{1}\" y2=\"{2:.0}\"/>\
             <circle class=\"ring {class}\" data-t=\"{0}\" data-i=\"{event}\" cx=\"{x:.2}\" cy=\"{3:.1}\" r=\"10\"/>\
             <text class=\"vlabel {class}\" data-t=\"{0}\" x=\"{4:.2}\" y=\"{5:.0}\">{6}</text>",
            mark.at_ns,
            AXIS_Y,
            height - 16.0,
            lane_y(mark.lane),
            x + 4.0,
            if class == "divergence" { AXIS_Y - 20.0 } else { AXIS_Y - 34.0 },
            escape(label)
        );
    };
    if let Some(origin) = highlights.origin {
        ring(origin, "origin", "first copy committed", &mut svg);
    }
    if let Some((event, label)) = &highlights.divergence {
        ring(*event, "divergence", label, &mut svg);
    }
    for (index, (violation, at_ns)) in highlights.violations.iter().enumerate() {
        let at = (*at_ns).min(end);
        let x = x_of(at, end);
        let _ = write!(
            svg,
            "<line class=\"vline violation\" data-t=\"{at}\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{AXIS_Y}\" y2=\"{:.0}\"/>\
             <text class=\"vlabel violation\" data-t=\"{at}\" x=\"{:.2}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>",
            height - 16.0,
            x - 4.0,
            13.0 + 13.0 * index as f64,
            escape(violation)
        );
    }
    svg.push_str("</g></g></svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_step_by_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(tick_step_ns(1_940_000_000, 10), 200_000_000);
        assert_eq!(tick_step_ns(1_000_000_000, 10), 100_000_000);
        assert_eq!(tick_step_ns(4_000, 10), 500);
        assert_eq!(tick_step_ns(0, 10), 1);
        assert_eq!(tick_label(1_200_000_000, 200_000_000), "1200 ms");
        assert_eq!(tick_label(1_250_000, 50_000), "1.25 ms");
    }

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(escape("a<b & \"c\" 'd'>"), "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;");
    }
}
