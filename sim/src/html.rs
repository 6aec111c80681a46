//! Traces as pictures: one self-contained HTML page that draws a run's trace as swimlanes on
//! the simulated time axis.
//!
//! The page has no external resources. The header (scenario, verdict, the commands that replay
//! and shrink the run, the oracle's problems), the evidence lines, the fault windows and a lane
//! summary are static HTML, readable without scripts. The timeline itself is a canvas drawn by
//! an inline script (`html/timeline.js`) from an inline JSON block: marks are bucketed per
//! few pixels, so 10,000 events cost no more DOM than 10; the wheel zooms, a drag pans, hovering
//! a mark shows its trace lines and a click lists them.
//!
//! Trace lines are classified by their verb alone (`component.object.verb`), so verbs added
//! later still render: `*.send.*` and `*.sent` are sends, `*.stored` stores, `*.acked` and
//! `*.answered` acknowledgements, `*.delivered` / `*.consumed` deliveries, `*.committed`
//! offset commits, `*.flush.*` flushes, failures and drops their own mark, every `sim.*` line a
//! fault mark, and anything else a small neutral dot.
//!
//! Fault windows are shaded: a crash until the node's restart, a partition until the heal, a
//! pause for its `ms`, and any `sim.<what>.begin|began` … `sim.<what>.end|ended|completed|
//! finished|done` pair on one node.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What the timeline page shows.
pub struct Timeline<'a> {
    /// Scenario name, the page's title.
    pub scenario: &'a str,
    /// The lane that ran it (`fast`, `stack`).
    pub lane: &'a str,
    /// Seed of the run.
    pub seed: u64,
    /// The oracle's verdict (`Pass`, `Safety`, `Liveness`); anything but `Pass` shows in red.
    pub verdict: &'a str,
    /// Trace digest, so a reader can tell two pages of the same run apart from two runs.
    pub digest: &'a str,
    /// The oracle's problem lines, listed in red at the top.
    pub problems: &'a [String],
    /// Message keys (e.g. "p0-17") whose events prove the violation; highlighted.
    pub evidence: &'a [String],
    /// The command that runs this again (`mqsim run … --seed N`).
    pub replay_command: &'a str,
    /// The command that shrinks this run (`mqsim shrink … --seed N`).
    pub shrink_command: &'a str,
    /// Trace lines in the fixed format.
    pub lines: &'a [String],
}

/// The whole page, as one HTML document.
pub fn render(t: &Timeline) -> String {
    let model = Model::build(t.lines, t.evidence);
    let mut out = String::with_capacity(32 * 1024 + t.lines.len() * 72);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(out, "<title>mqsim {} seed {}: {}</title>", esc(t.scenario), t.seed, esc(t.verdict));
    let _ = writeln!(out, "<style>\n{CSS}</style>\n</head>\n<body>");
    header(&mut out, t, &model);
    legend(&mut out, &model);
    out.push_str(CHART);
    evidence_table(&mut out, &model);
    windows_table(&mut out, &model);
    lanes_table(&mut out, &model);
    out.push_str("<script type=\"application/json\" id=\"timeline-data\">");
    model.json(&mut out);
    let _ = write!(out, "</script>\n<script>\n{JS}</script>\n</body>\n</html>\n");
    out
}

/// Message keys (`p<digits>-<digits>`, quoted or not) named in the oracle's problem lines, in
/// order of first mention.
pub fn evidence_keys(problems: &[String]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for p in problems {
        let b = p.as_bytes();
        for i in 0..b.len() {
            let starts_word = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-' || b[i - 1] == b'_');
            if b[i] != b'p' || !starts_word {
                continue;
            }
            let producer_digits = digits(&b[i + 1..]);
            let rest = i + 1 + producer_digits;
            if producer_digits == 0 || b.get(rest) != Some(&b'-') {
                continue;
            }
            let seq_digits = digits(&b[rest + 1..]);
            let end = rest + 1 + seq_digits;
            let ends_word = b.get(end).is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'));
            if seq_digits > 0 && ends_word {
                let key = &p[i..end];
                if !keys.iter().any(|k| k == key) {
                    keys.push(key.to_string());
                }
            }
        }
    }
    keys
}

const CSS: &str = include_str!("html/timeline.css");
const JS: &str = include_str!("html/timeline.js");

/// The chart's skeleton; `timeline.js` fills it in.
const CHART: &str = r#"<div id="controls">
<button id="btn-all" title="show the whole run">Whole run</button>
<button id="btn-in" title="zoom in (or: mouse wheel over the chart)">Zoom in</button>
<button id="btn-out" title="zoom out">Zoom out</button>
<button id="btn-evidence" title="zoom to the highlighted evidence">Zoom to evidence</button>
<span id="range"></span>
<span class="hint">wheel: zoom &middot; drag: pan &middot; hover a mark: its trace lines &middot; click: list them below</span>
</div>
<div id="overview-box"><canvas id="overview" title="the whole run: drag to choose the range shown below, click to move it"></canvas></div>
<div id="chart"><canvas id="canvas"></canvas><div id="tip" hidden></div></div>
<noscript><p class="problems">The timeline needs JavaScript; the tables below do not.</p></noscript>
<section id="details" hidden><h2 id="details-title"></h2><pre id="details-lines"></pre></section>
"#;

/// Evidence lines listed in the static table (all of them are drawn).
const EVIDENCE_ROWS_MAX: usize = 400;

/// The kinds of mark, in the order of the rows inside a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mark {
    Send,
    Store,
    Ack,
    Deliver,
    Commit,
    Flush,
    Fail,
    Fault,
    Other,
}

/// Per mark: (JSON name, legend label, colour, shape drawn by the script). Index = `Mark as usize`.
const MARKS: [(&str, &str, &str, &str); 9] = [
    ("send", "send", "#1f77b4", "circle"),
    ("store", "stored", "#2ca02c", "square"),
    ("ack", "acked / answered", "#0e9aa7", "triangle"),
    ("deliver", "delivered / consumed", "#ff7f0e", "diamond"),
    ("commit", "offset committed", "#9467bd", "triangle-down"),
    ("flush", "flush", "#8c564b", "bar"),
    ("fail", "failed / dropped / timed out", "#8a6d00", "cross"),
    ("fault", "fault injected (sim.*)", "#222222", "star"),
    ("other", "other", "#9a9a9a", "dot"),
];

impl Mark {
    /// The mark for a verb, by its shape alone.
    fn of(verb: &str) -> Mark {
        let last = verb.rsplit('.').next().unwrap_or(verb);
        let has = |part: &str| verb.split('.').any(|p| p == part);
        if verb.starts_with("sim.") {
            Mark::Fault
        } else if matches!(
            last,
            "failed"
                | "dropped"
                | "timed_out"
                | "timeout"
                | "lost"
                | "rejected"
                | "unconfirmed"
                | "undecodable"
                | "unencodable"
        ) {
            Mark::Fail
        } else if matches!(last, "acked" | "answered") {
            Mark::Ack
        } else if last == "stored" {
            Mark::Store
        } else if matches!(last, "delivered" | "consumed" | "received") {
            Mark::Deliver
        } else if last == "committed" {
            Mark::Commit
        } else if has("flush") || last == "flushed" {
            Mark::Flush
        } else if has("send") || last == "sent" {
            Mark::Send
        } else {
            Mark::Other
        }
    }
}

/// A shaded stretch of one lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum WindowKind {
    Crash,
    Partition,
    Pause,
    /// A generic `sim.<what>.begin` … `sim.<what>.end` pair.
    Span,
}

/// Per window kind: (JSON name, legend label, fill colour, label colour).
const WINDOWS: [(&str, &str, &str, &str); 4] = [
    ("crash", "node down (crashed until restart)", "rgba(70,70,70,0.20)", "#222222"),
    ("partition", "partitioned (until heal)", "rgba(217,70,239,0.16)", "#86198f"),
    ("pause", "paused", "rgba(245,158,11,0.24)", "#92400e"),
    ("span", "other sim.*.begin / end window (e.g. flush lag)", "rgba(14,165,233,0.16)", "#075985"),
];

/// A fault window on one lane.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    /// Index into `Model::lanes`.
    lane: usize,
    kind: WindowKind,
    from_ms: u64,
    to_ms: u64,
    /// Drawn inside the window when it is wide enough, and shown on hover.
    label: String,
}

/// One parsed trace line; `t=<t_ms>ms <lanes[lane]> <verbs[verb]> <fields>` rebuilds it.
#[derive(Debug, Clone, Copy)]
struct Event<'l> {
    t_ms: u64,
    lane: usize,
    verb: usize,
    fields: &'l str,
    /// Index into the evidence keys when a `key=` field names one.
    evidence: Option<usize>,
}

/// The parsed trace, ready to print.
struct Model<'l> {
    /// Node names, top to bottom (see `lane_order`).
    lanes: Vec<&'l str>,
    /// Per lane: the kinds of mark it has, in row order.
    rows: Vec<Vec<Mark>>,
    /// Distinct verbs, sorted; events refer to them by index to keep the page small.
    verbs: Vec<&'l str>,
    /// Parsed lines in time order (stable: equal times keep trace order).
    events: Vec<Event<'l>>,
    /// Fault windows, by start time.
    windows: Vec<Window>,
    /// Evidence keys, as given.
    evidence: Vec<&'l str>,
    /// Lines not in the trace format.
    skipped: usize,
    /// The end of the time axis: the last event or the end of the last window.
    end_ms: u64,
}

impl<'l> Model<'l> {
    fn build(lines: &'l [String], evidence: &'l [String]) -> Model<'l> {
        let mut parsed: Vec<(u64, &str, &str, &str)> = lines.iter().filter_map(|l| parse_line(l)).collect();
        let skipped = lines.len() - parsed.len();
        parsed.sort_by_key(|p| p.0); // stable: equal times keep trace order
        let mut names: Vec<&str> = parsed.iter().map(|p| p.1).collect();
        for p in parsed.iter().filter(|p| p.2 == "sim.net.partitioned") {
            names.extend(["a", "b", "from", "to"].iter().filter_map(|f| field(p.3, f)));
        }
        names.sort_by_key(|n| lane_order(n));
        names.dedup();
        let lane_of: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let mut verbs: Vec<&str> = parsed.iter().map(|p| p.2).collect();
        verbs.sort_unstable();
        verbs.dedup();
        let verb_of: BTreeMap<&str, usize> = verbs.iter().enumerate().map(|(i, v)| (*v, i)).collect();
        let evidence_of: BTreeMap<&str, usize> = evidence.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
        let events: Vec<Event> = parsed
            .iter()
            .map(|&(t_ms, node, verb, fields)| Event {
                t_ms,
                lane: lane_of[node],
                verb: verb_of[verb],
                fields,
                evidence: message_keys(fields).find_map(|k| evidence_of.get(k).copied()),
            })
            .collect();
        let mut rows = vec![Vec::new(); names.len()];
        for e in &events {
            rows[e.lane].push(Mark::of(verbs[e.verb]));
        }
        for r in &mut rows {
            r.sort_unstable();
            r.dedup();
        }
        let last_ms = events.last().map_or(0, |e| e.t_ms);
        let windows = fault_windows(&events, &verbs, &names, last_ms);
        let end_ms = windows.iter().map(|w| w.to_ms).fold(last_ms, u64::max);
        let evidence = evidence.iter().map(String::as_str).collect();
        Model { lanes: names, rows, verbs, events, windows, evidence, skipped, end_ms }
    }

    /// The data block the script draws from. Strings go through `json_str`, which escapes
    /// `<`, `>` and `&`, so nothing in a trace can close the script element.
    fn json(&self, out: &mut String) {
        out.push_str("{\"end\":");
        let _ = write!(out, "{}", self.end_ms);
        out.push_str(",\"marks\":[");
        for (i, (name, label, colour, shape)) in MARKS.iter().enumerate() {
            sep(out, i);
            let _ = write!(
                out,
                "{{\"name\":\"{name}\",\"label\":\"{label}\",\"color\":\"{colour}\",\"shape\":\"{shape}\"}}"
            );
        }
        out.push_str("],\"windowKinds\":[");
        for (i, (name, label, fill, ink)) in WINDOWS.iter().enumerate() {
            sep(out, i);
            let _ = write!(out, "{{\"name\":\"{name}\",\"label\":\"{label}\",\"fill\":\"{fill}\",\"ink\":\"{ink}\"}}");
        }
        out.push_str("],\"lanes\":[");
        for (i, name) in self.lanes.iter().enumerate() {
            sep(out, i);
            out.push_str("{\"name\":");
            json_str(out, name);
            let _ = write!(out, ",\"role\":\"{}\",\"rows\":[", role(name));
            for (j, m) in self.rows[i].iter().enumerate() {
                sep(out, j);
                let _ = write!(out, "{}", *m as usize);
            }
            out.push_str("]}");
        }
        out.push_str("],\"verbs\":[");
        for (i, v) in self.verbs.iter().enumerate() {
            sep(out, i);
            out.push('[');
            json_str(out, v);
            let _ = write!(out, ",{}]", Mark::of(v) as usize);
        }
        out.push_str("],\"evidence\":[");
        for (i, k) in self.evidence.iter().enumerate() {
            sep(out, i);
            json_str(out, k);
        }
        self.json_events(out);
        out.push('}');
    }

    /// Events as one flat array, four entries each: time, lane, verb, fields. Then the
    /// highlighted ones as (event index, evidence key index) pairs, and the fault windows.
    fn json_events(&self, out: &mut String) {
        out.push_str("],\n\"events\":[");
        for (i, e) in self.events.iter().enumerate() {
            sep(out, i);
            if i % 64 == 0 {
                out.push('\n');
            }
            let _ = write!(out, "{},{},{},", e.t_ms, e.lane, e.verb);
            json_str(out, e.fields);
        }
        out.push_str("],\n\"highlight\":[");
        for (i, (n, k)) in self.events.iter().enumerate().filter_map(|(n, e)| Some((n, e.evidence?))).enumerate() {
            sep(out, i);
            let _ = write!(out, "{n},{k}");
        }
        out.push_str("],\n\"windows\":[");
        for (i, w) in self.windows.iter().enumerate() {
            sep(out, i);
            let _ = write!(out, "[{},{},{},{},", w.lane, w.kind as usize, w.from_ms, w.to_ms);
            json_str(out, &w.label);
            out.push(']');
        }
        out.push(']');
    }

    fn line(&self, e: &Event) -> String {
        if e.fields.is_empty() {
            format!("t={}ms {} {}", e.t_ms, self.lanes[e.lane], self.verbs[e.verb])
        } else {
            format!("t={}ms {} {} {}", e.t_ms, self.lanes[e.lane], self.verbs[e.verb], e.fields)
        }
    }
}

/// Header: what ran, how it ended, how to run it again, and what the oracle objected to.
fn header(out: &mut String, t: &Timeline, m: &Model) {
    let class = if t.verdict.eq_ignore_ascii_case("pass") { "pass" } else { "fail" };
    let _ = writeln!(
        out,
        "<header>\n<h1>{} <span class=\"verdict {class}\">{}</span></h1>",
        esc(t.scenario),
        esc(t.verdict)
    );
    let _ = writeln!(
        out,
        "<p class=\"meta\">lane <b>{}</b> &middot; seed <b>{}</b> &middot; digest <code>{}</code> &middot; \
         {} trace lines &middot; {} nodes &middot; {} simulated ms</p>",
        esc(t.lane),
        t.seed,
        esc(t.digest),
        m.events.len(),
        m.lanes.len(),
        m.end_ms
    );
    let _ = writeln!(
        out,
        "<p class=\"cmds\">replay: <code>{}</code> &middot; shrink: <code>{}</code></p>",
        esc(t.replay_command),
        esc(t.shrink_command)
    );
    if m.skipped > 0 {
        let _ = writeln!(out, "<p class=\"meta\">{} lines not in the trace format were left out.</p>", m.skipped);
    }
    if !t.problems.is_empty() {
        out.push_str("<ul class=\"problems\">\n");
        for p in t.problems {
            let _ = writeln!(out, "<li>{}</li>", esc(p));
        }
        out.push_str("</ul>\n");
    }
    if !m.evidence.is_empty() {
        let highlighted = m.events.iter().filter(|e| e.evidence.is_some()).count();
        let keys: Vec<String> = m.evidence.iter().map(|k| format!("<code>{}</code>", esc(k))).collect();
        let _ = writeln!(
            out,
            "<p class=\"evidence-note\">Evidence, ringed in red and joined in time order: {} ({highlighted} trace lines, listed below the chart).</p>",
            keys.join(", ")
        );
    }
    out.push_str("</header>\n");
}

/// The legend: one inline SVG icon per mark kind and a swatch per window kind.
fn legend(out: &mut String, m: &Model) {
    out.push_str("<div id=\"legend\">\n");
    for (name, label, colour, shape) in MARKS {
        let _ = writeln!(
            out,
            "<span class=\"key\" data-mark=\"{name}\"><svg width=\"14\" height=\"14\" viewBox=\"-7 -7 14 14\">{}</svg>{label}</span>",
            svg_shape(shape, colour)
        );
    }
    if !m.evidence.is_empty() {
        out.push_str(
            "<span class=\"key\"><svg width=\"14\" height=\"14\" viewBox=\"-7 -7 14 14\"><circle r=\"5.5\" fill=\"rgba(220,38,38,0.25)\" stroke=\"#dc2626\" stroke-width=\"2\"/></svg><b class=\"red\">evidence</b></span>\n",
        );
    }
    for (name, label, fill, _) in WINDOWS {
        let _ = writeln!(
            out,
            "<span class=\"key\"><i class=\"swatch {name}\" style=\"background:{fill}\"></i>{label}</span>"
        );
    }
    out.push_str("</div>\n");
}

fn svg_shape(shape: &str, colour: &str) -> String {
    match shape {
        "circle" => format!("<circle r=\"4\" fill=\"{colour}\"/>"),
        "square" => format!("<rect x=\"-4\" y=\"-4\" width=\"8\" height=\"8\" fill=\"{colour}\"/>"),
        "triangle" => format!("<path d=\"M0-5L5 4H-5Z\" fill=\"{colour}\"/>"),
        "triangle-down" => format!("<path d=\"M0 5L5-4H-5Z\" fill=\"{colour}\"/>"),
        "diamond" => format!("<path d=\"M0-5L5 0L0 5L-5 0Z\" fill=\"{colour}\"/>"),
        "bar" => format!("<rect x=\"-1.5\" y=\"-5\" width=\"3\" height=\"10\" fill=\"{colour}\"/>"),
        "cross" => format!("<path d=\"M-4-4L4 4M4-4L-4 4\" stroke=\"{colour}\" stroke-width=\"2\"/>"),
        "star" => format!("<path d=\"M0-6L1.8-1.8L6 0L1.8 1.8L0 6L-1.8 1.8L-6 0L-1.8-1.8Z\" fill=\"{colour}\"/>"),
        _ => format!("<circle r=\"2.5\" fill=\"{colour}\"/>"),
    }
}

/// Every evidence line as text, each a link that zooms the chart to it.
fn evidence_table(out: &mut String, m: &Model) {
    let hits: Vec<&Event> = m.events.iter().filter(|e| e.evidence.is_some()).collect();
    if m.evidence.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<section><h2 class=\"red\">Evidence: {} trace lines naming {}</h2>",
        hits.len(),
        m.evidence.iter().map(|k| esc(k)).collect::<Vec<_>>().join(", ")
    );
    if hits.is_empty() {
        out.push_str("<p>No trace line carries these keys.</p></section>\n");
        return;
    }
    out.push_str("<table class=\"lines\" id=\"evidence\">\n");
    for e in hits.iter().take(EVIDENCE_ROWS_MAX) {
        let _ = writeln!(out, "<tr class=\"ev-line\" data-t=\"{}\"><td>{}</td></tr>", e.t_ms, esc(&m.line(e)));
    }
    out.push_str("</table>\n");
    if hits.len() > EVIDENCE_ROWS_MAX {
        let _ = writeln!(out, "<p>… and {} more (all drawn on the chart).</p>", hits.len() - EVIDENCE_ROWS_MAX);
    }
    out.push_str("</section>\n");
}

fn windows_table(out: &mut String, m: &Model) {
    if m.windows.is_empty() {
        return;
    }
    let _ =
        writeln!(out, "<section><h2>Fault windows ({})</h2>\n<table class=\"grid\" id=\"windows\">", m.windows.len());
    out.push_str("<tr><th>lane</th><th>kind</th><th>from</th><th>to</th><th>length</th><th></th></tr>\n");
    for w in &m.windows {
        let _ = writeln!(
            out,
            "<tr class=\"window\" data-t=\"{}\" data-u=\"{}\"><td>{}</td><td>{}</td><td>{} ms</td><td>{} ms</td><td>{} ms</td><td>{}</td></tr>",
            w.from_ms,
            w.to_ms,
            esc(m.lanes[w.lane]),
            WINDOWS[w.kind as usize].0,
            w.from_ms,
            w.to_ms,
            w.to_ms - w.from_ms,
            esc(&w.label)
        );
    }
    out.push_str("</table></section>\n");
}

fn lanes_table(out: &mut String, m: &Model) {
    let mut counts = vec![[0u64; MARKS.len()]; m.lanes.len()];
    for e in &m.events {
        counts[e.lane][Mark::of(m.verbs[e.verb]) as usize] += 1;
    }
    out.push_str("<section><h2>Lanes</h2>\n<table class=\"grid\" id=\"lanes\">\n<tr><th>lane</th><th>role</th>");
    for (_, label, _, _) in MARKS {
        let _ = write!(out, "<th>{label}</th>");
    }
    out.push_str("</tr>\n");
    for (i, name) in m.lanes.iter().enumerate() {
        let _ = write!(out, "<tr class=\"lane\"><td><b>{}</b></td><td>{}</td>", esc(name), role(name));
        for n in counts[i] {
            let _ = write!(out, "<td>{}</td>", if n == 0 { String::new() } else { n.to_string() });
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table></section>\n");
}

/// Pairs up fault lines into windows. Anything still open at the end of the trace lasts until
/// `last_ms` (a crash without a restart, a partition without a heal).
fn fault_windows(events: &[Event], verbs: &[&str], lanes: &[&str], last_ms: u64) -> Vec<Window> {
    let mut windows = Vec::new();
    let mut crashed: BTreeMap<usize, u64> = BTreeMap::new();
    let mut cuts: Vec<Cut> = Vec::new();
    let mut spans: BTreeMap<(usize, &str), u64> = BTreeMap::new();
    for e in events {
        let verb = verbs[e.verb];
        match verb {
            "sim.node.crashed" => {
                crashed.entry(e.lane).or_insert(e.t_ms);
            }
            "sim.node.restarted" => {
                if let Some(from_ms) = crashed.remove(&e.lane) {
                    windows.push(crash_window(e.lane, from_ms, e.t_ms, true));
                }
            }
            "sim.net.partitioned" => cuts.extend(Cut::of(e, lanes)),
            "sim.net.healed" => {
                for cut in cuts.drain(..) {
                    cut.windows(&mut windows, e.t_ms, lanes, true);
                }
            }
            "sim.node.paused" => {
                if let Some(ms) = field(e.fields, "ms").and_then(|ms| ms.parse::<u64>().ok()) {
                    let (lane, from_ms, to_ms) = (e.lane, e.t_ms, e.t_ms + ms);
                    windows.push(Window {
                        lane,
                        kind: WindowKind::Pause,
                        from_ms,
                        to_ms,
                        label: format!("paused {ms} ms"),
                    });
                }
            }
            _ => match span_edge(verb) {
                Some((what, true)) => {
                    spans.entry((e.lane, what)).or_insert(e.t_ms);
                }
                Some((what, false)) => {
                    if let Some(from_ms) = spans.remove(&(e.lane, what)) {
                        let label = what.to_string();
                        windows.push(Window { lane: e.lane, kind: WindowKind::Span, from_ms, to_ms: e.t_ms, label });
                    }
                }
                None => {}
            },
        }
    }
    for (lane, from_ms) in crashed {
        windows.push(crash_window(lane, from_ms, last_ms, false));
    }
    for cut in cuts {
        cut.windows(&mut windows, last_ms, lanes, false);
    }
    for ((lane, what), from_ms) in spans {
        let label = format!("{what} (no end)");
        windows.push(Window { lane, kind: WindowKind::Span, from_ms, to_ms: last_ms, label });
    }
    windows.sort_by_key(|w| (w.from_ms, w.lane, w.kind));
    windows
}

fn crash_window(lane: usize, from_ms: u64, to_ms: u64, restarted: bool) -> Window {
    let label = if restarted { "crashed" } else { "crashed, no restart" };
    Window { lane, kind: WindowKind::Crash, from_ms, to_ms, label: label.to_string() }
}

/// An open partition: `sim.net.partitioned a=X b=Y` or `from=X to=Y oneway=true`.
struct Cut {
    since_ms: u64,
    /// Lane of the fault line itself (`sim`).
    at: usize,
    a: usize,
    b: usize,
    one_way: bool,
}

impl Cut {
    fn of(e: &Event, lanes: &[&str]) -> Option<Cut> {
        let lane = |name: &str| lanes.iter().position(|l| Some(*l) == field(e.fields, name));
        let cut = |a, b, one_way| Cut { since_ms: e.t_ms, at: e.lane, a, b, one_way };
        match ((lane("a"), lane("b")), (lane("from"), lane("to"))) {
            ((Some(a), Some(b)), _) => Some(cut(a, b, false)),
            (_, (Some(a), Some(b))) => Some(cut(a, b, true)),
            _ => None,
        }
    }

    /// Shades both ends and the lane of the fault line.
    fn windows(&self, windows: &mut Vec<Window>, to_ms: u64, lanes: &[&str], healed: bool) {
        let (na, nb) = (lanes[self.a], lanes[self.b]);
        let until = if healed { "" } else { ", no heal" };
        let from_ms = self.since_ms;
        let mut push = |lane: usize, label: String| {
            windows.push(Window { lane, kind: WindowKind::Partition, from_ms, to_ms, label: format!("{label}{until}") })
        };
        if self.one_way {
            push(self.at, format!("one-way cut {na} → {nb}"));
            push(self.a, format!("cannot reach {nb}"));
            push(self.b, format!("hears nothing from {na}"));
        } else {
            push(self.at, format!("partition {na} | {nb}"));
            push(self.a, format!("cut off from {nb}"));
            push(self.b, format!("cut off from {na}"));
        }
    }
}

/// `sim.<what>.begin` → `(what, true)`, `sim.<what>.end` → `(what, false)`.
fn span_edge(verb: &str) -> Option<(&str, bool)> {
    let middle = verb.strip_prefix("sim.")?;
    let (what, edge) = middle.rsplit_once('.')?;
    match edge {
        "begin" | "began" | "begun" => Some((what, true)),
        "end" | "ended" | "completed" | "finished" | "done" => Some((what, false)),
        _ => None,
    }
}

/// `t=<ms>ms <node> <verb> <fields>` → (ms, node, verb, fields).
fn parse_line(line: &str) -> Option<(u64, &str, &str, &str)> {
    let (t, rest) = line.strip_prefix("t=")?.split_once("ms ")?;
    let t_ms = t.parse().ok()?;
    let mut parts = rest.splitn(3, ' ');
    let node = parts.next().filter(|n| !n.is_empty())?;
    let verb = parts.next().filter(|v| !v.is_empty())?;
    Some((t_ms, node, verb, parts.next().unwrap_or("")))
}

/// The value of `name=value` among space-separated fields.
fn field<'f>(fields: &'f str, name: &str) -> Option<&'f str> {
    fields.split(' ').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// Values of `key=` (and `*_key=`) fields, unquoted.
fn message_keys(fields: &str) -> impl Iterator<Item = &str> {
    fields.split([' ', ',']).filter_map(|kv| {
        let (name, value) = kv.split_once('=')?;
        (name == "key" || name.ends_with("_key")).then(|| value.trim_matches(|c| c == '"' || c == '\''))
    })
}

/// Lanes top to bottom: global faults, NameServers, brokers, producers, consumers, the rest;
/// numbered nodes in numeric order (`broker`, `broker1`, `broker2`, …, `p2`, `p10`).
fn lane_order(name: &str) -> (u8, &str, u64, &str) {
    let prefix = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let number = name[prefix.len()..].parse::<u64>().map_or(0, |n| n + 1);
    let group = match prefix {
        "sim" => 0,
        "ns" => 1,
        "broker" => 2,
        "p" => 3,
        "c" => 4,
        _ => 5,
    };
    (group, prefix, number, name)
}

fn role(name: &str) -> &'static str {
    match lane_order(name).0 {
        0 => "faults",
        1 => "NameServer",
        2 => "broker",
        3 => "producer",
        4 => "consumer",
        _ => "",
    }
}

fn digits(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

fn sep(out: &mut String, i: usize) {
    if i > 0 {
        out.push(',');
    }
}

/// HTML text and attribute escaping.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON string that is also safe inside a `<script>` element.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
    }

    fn page(lines: &[String], problems: &[String], evidence: &[String]) -> String {
        render(&Timeline {
            scenario: "broker-crash-sync",
            lane: "fast",
            seed: 42,
            verdict: if problems.is_empty() { "Pass" } else { "Safety" },
            digest: "02d7c63849ce4af9",
            problems,
            evidence,
            replay_command: "mqsim run broker-crash-sync --seed 42",
            shrink_command: "mqsim shrink broker-crash-sync --seed 42",
            lines,
        })
    }

    const RUN: &str = "
        t=0ms broker broker.node.started
        t=1ms ns namesrv.broker.changed BrokerRegistered { addr: \"10.0.0.10:10911\", name: \"broker-a\" }
        t=1ms broker1 broker.node.started
        t=605ms p0 client.message.sent key=p0-17 queue=1 attempt=1
        t=606ms p10 client.message.sent key=p10-0 queue=1 attempt=1
        t=607ms broker broker.message.stored topic=SimTopic queue=1 offset=0 clo=0 key=p0-17
        t=609ms p0 client.send.acked key=p0-17 queue=1 offset=0
        t=650ms p2 client.message.sent key=p2-170 queue=1 attempt=1
        t=700ms c0 client.message.consumed key=p0-17 queue=1 offset=0
        t=710ms broker broker.offset.committed group=G topic=SimTopic queue=1 offset=1
        t=800ms sim sim.net.partitioned a=c0 b=broker
        t=1200ms broker sim.node.crashed dirty_pages=3
        t=2000ms sim sim.net.healed
        t=2500ms broker sim.node.restarted
        t=2600ms broker1 sim.node.paused ms=300
        t=2700ms broker1 sim.flush.began clo=10
        t=2750ms broker1 sim.flush.completed clo=10
        t=2800ms sim sim.net.partitioned from=p0 to=broker1 oneway=true
        t=3000ms ns sim.node.crashed
    ";

    #[test]
    fn every_node_gets_a_lane_in_role_order() {
        let m_lines = lines(RUN);
        let html = page(&m_lines, &[], &[]);
        let model = Model::build(&m_lines, &[]);
        assert_eq!(model.lanes, ["sim", "ns", "broker", "broker1", "p0", "p2", "p10", "c0"]);
        for (name, role) in
            [("sim", "faults"), ("ns", "NameServer"), ("broker1", "broker"), ("p10", "producer"), ("c0", "consumer")]
        {
            assert!(html.contains(&format!("<tr class=\"lane\"><td><b>{name}</b></td><td>{role}</td>")), "lane {name}");
        }
        assert!(html.contains(
            r#""lanes":[{"name":"sim","role":"faults","rows":[7]},{"name":"ns","role":"NameServer","rows":[7,8]}"#
        ));
        // The broker's rows: stored, offset committed, fault, other (started).
        let broker_rows = [Mark::Store, Mark::Commit, Mark::Fault, Mark::Other];
        assert_eq!(model.rows[2], broker_rows);
        assert!(html.contains("<h1>broker-crash-sync <span class=\"verdict pass\">Pass</span></h1>"));
        assert!(html.contains("replay: <code>mqsim run broker-crash-sync --seed 42</code>"));
        assert!(html.contains("shrink: <code>mqsim shrink broker-crash-sync --seed 42</code>"));
        assert!(html.contains("digest <code>02d7c63849ce4af9</code>"));
        assert!(!html.contains("class=\"problems\"><li>"), "a passing run lists no problems");
    }

    #[test]
    fn fault_windows_pair_up_per_node() {
        let m_lines = lines(RUN);
        let model = Model::build(&m_lines, &[]);
        let lane = |n: &str| model.lanes.iter().position(|l| *l == n).unwrap();
        let got: Vec<(&str, WindowKind, u64, u64, &str)> =
            model.windows.iter().map(|w| (model.lanes[w.lane], w.kind, w.from_ms, w.to_ms, w.label.as_str())).collect();
        assert_eq!(
            got,
            [
                ("sim", WindowKind::Partition, 800, 2000, "partition c0 | broker"),
                ("broker", WindowKind::Partition, 800, 2000, "cut off from c0"),
                ("c0", WindowKind::Partition, 800, 2000, "cut off from broker"),
                ("broker", WindowKind::Crash, 1200, 2500, "crashed"),
                ("broker1", WindowKind::Pause, 2600, 2900, "paused 300 ms"),
                ("broker1", WindowKind::Span, 2700, 2750, "flush"),
                ("sim", WindowKind::Partition, 2800, 3000, "one-way cut p0 → broker1, no heal"),
                ("broker1", WindowKind::Partition, 2800, 3000, "hears nothing from p0, no heal"),
                ("p0", WindowKind::Partition, 2800, 3000, "cannot reach broker1, no heal"),
                ("ns", WindowKind::Crash, 3000, 3000, "crashed, no restart"),
            ]
        );
        let html = page(&m_lines, &[], &[]);
        let crash = format!("[{},0,1200,2500,\"crashed\"]", lane("broker"));
        assert!(html.contains(&crash), "crash window in the chart data: {crash}");
        assert!(html.contains(
            "<tr class=\"window\" data-t=\"1200\" data-u=\"2500\"><td>broker</td><td>crash</td><td>1200 ms</td><td>2500 ms</td><td>1300 ms</td><td>crashed</td></tr>"
        ));
    }

    #[test]
    fn evidence_lines_are_highlighted_and_problems_listed() {
        let problems =
            vec!["1 acknowledged messages lost, e.g. [\"p0-17\"]".to_string(), "grp0-1 is no key".to_string()];
        let evidence = evidence_keys(&problems);
        assert_eq!(evidence, ["p0-17"]);
        let m_lines = lines(RUN);
        let html = page(&m_lines, &problems, &evidence);
        assert!(html.contains("<span class=\"verdict fail\">Safety</span>"));
        assert!(
            html.contains("<ul class=\"problems\">\n<li>1 acknowledged messages lost, e.g. [&quot;p0-17&quot;]</li>")
        );
        for l in [
            "t=605ms p0 client.message.sent key=p0-17 queue=1 attempt=1",
            "t=607ms broker broker.message.stored topic=SimTopic queue=1 offset=0 clo=0 key=p0-17",
            "t=609ms p0 client.send.acked key=p0-17 queue=1 offset=0",
            "t=700ms c0 client.message.consumed key=p0-17 queue=1 offset=0",
        ] {
            let t = &l[2..l.find("ms").unwrap()];
            assert!(html.contains(&format!("<tr class=\"ev-line\" data-t=\"{t}\"><td>{l}</td></tr>")), "{l}");
        }
        assert_eq!(html.matches("class=\"ev-line\"").count(), 4, "p2-170 and p10-0 are other keys");
        // Indices of the four lines in time order, each with evidence key 0.
        assert!(html.contains("\"highlight\":[3,0,5,0,6,0,8,0]"));
        assert!(html.contains("Evidence: 4 trace lines naming p0-17"));
    }

    #[test]
    fn evidence_keys_come_quoted_or_bare_once_each() {
        let problems = vec![
            "3 acknowledged messages lost, e.g. [\"p0-72\", \"p0-73\", \"p12-0\"]".to_string(),
            "p0-72 again, and p1-5; not cp1-2, p1-, p-1 or p1-2x".to_string(),
        ];
        assert_eq!(evidence_keys(&problems), ["p0-72", "p0-73", "p12-0", "p1-5"]);
        assert!(evidence_keys(&["a broker is down at the end of the run".to_string()]).is_empty());
    }

    #[test]
    fn trace_text_is_escaped() {
        let evil = lines(
            "t=5ms p0 client.send.failed key=p0-1 cause=<script>alert(1)</script>&amp\"'
             t=6ms <img> x.y.z a=b",
        );
        let problems = vec!["p0-1 was <script>lost</script>".to_string()];
        let html = render(&Timeline {
            scenario: "<b>evil</b>",
            lane: "fast",
            seed: 1,
            verdict: "Safety",
            digest: "0",
            problems: &problems,
            evidence: &evidence_keys(&problems),
            replay_command: "mqsim run x --seed 1 && rm -rf <dir>",
            shrink_command: "mqsim shrink x --seed 1",
            lines: &evil,
        });
        assert!(!html.contains("<script>alert"));
        assert!(!html.contains("<script>lost"));
        assert!(!html.contains("<img>"));
        assert!(!html.contains("<b>evil"));
        assert_eq!(html.matches("<script").count(), 2, "only the page's own data and code blocks");
        assert_eq!(html.matches("</script>").count(), 2);
        assert!(html.contains(
            "<td>t=5ms p0 client.send.failed key=p0-1 cause=&lt;script&gt;alert(1)&lt;/script&gt;&amp;amp&quot;&#39;</td>"
        ));
        assert!(html.contains(r#""key=p0-1 cause=\u003cscript\u003ealert(1)\u003c/script\u003e\u0026amp\"'""#));
        assert!(html.contains("<li>p0-1 was &lt;script&gt;lost&lt;/script&gt;</li>"));
        assert!(html.contains("<h1>&lt;b&gt;evil&lt;/b&gt; "));
        assert!(html.contains("rm -rf &lt;dir&gt;"));
        assert!(html.contains(r#"{"name":"\u003cimg\u003e","role":"","rows":[8]}"#));
    }

    #[test]
    fn verbs_are_classified_by_shape_so_new_ones_render() {
        for (verb, mark) in [
            ("client.message.sent", Mark::Send),
            ("client.send.sent", Mark::Send),
            ("broker.message.stored", Mark::Store),
            ("client.send.acked", Mark::Ack),
            ("broker.send.answered", Mark::Ack),
            ("client.message.delivered", Mark::Deliver),
            ("client.message.consumed", Mark::Deliver),
            ("broker.offset.committed", Mark::Commit),
            ("broker.flush.completed", Mark::Flush),
            ("client.send.timed_out", Mark::Fail),
            ("net.frame.dropped", Mark::Fail),
            ("sim.flush.began", Mark::Fault),
            ("broker.pull.held", Mark::Other),
            ("something.new.happened", Mark::Other),
        ] {
            assert_eq!(Mark::of(verb), mark, "{verb}");
        }
        let odd = lines("not a trace line\nt=3ms p0 widget.gizmo.twirled x=1");
        let html = page(&odd, &[], &[]);
        assert!(html.contains("1 lines not in the trace format were left out."));
        assert!(html.contains(r#""verbs":[["widget.gizmo.twirled",8]]"#));
        assert!(html.contains("\"events\":[\n3,0,0,\"x=1\"]"));
    }

    #[test]
    fn ten_thousand_events_stay_small() {
        let mut big = Vec::new();
        for i in 0..2_500u64 {
            let (t, p, q) = (i * 3, i % 3, i % 8);
            big.push(format!("t={t}ms p{p} client.message.sent key=p{p}-{i} queue={q} attempt=1"));
            big.push(format!(
                "t={}ms broker broker.message.stored topic=SimTopic queue={q} offset={i} clo={} key=p{p}-{i}",
                t + 1,
                i * 127
            ));
            big.push(format!("t={}ms p{p} client.send.acked key=p{p}-{i} queue={q} offset={i}", t + 2));
            big.push(format!("t={}ms c{} client.message.consumed key=p{p}-{i} queue={q} offset={i}", t + 40, q % 3));
        }
        let problems = vec!["1 acknowledged messages lost, e.g. [\"p1-700\"]".to_string()];
        let html = page(&big, &problems, &evidence_keys(&problems));
        assert!(html.len() < 1_000_000, "10,000 events took {} bytes", html.len());
        assert!(html.contains("10000 trace lines"));
        assert_eq!(html.matches("class=\"ev-line\"").count(), 4);
        // No per-event DOM: the events are data, drawn on two canvases (overview and lanes).
        assert_eq!(html.matches("<canvas").count(), 2);
        assert!(html.matches("<tr").count() < 40);
    }
}
