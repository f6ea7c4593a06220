//! Summarises a run for people: [`summarize`] condenses a [`History`] and its
//! [`CheckReport`] into a [`Summary`] (serializable, for machines too), which
//! [`render_text`] prints as plain-text tables and [`render_html`] turns into
//! one self-contained HTML page with a timeline of faults and operations.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::checker::CheckReport;
use crate::history::{History, NodeInfo, Op, OpKind, Outcome};

/// How many violation messages a [`CheckSummary`] keeps.
pub const EXAMPLES: usize = 5;

/// A run, condensed.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Summary {
    /// The seed of the run.
    pub seed: u64,
    /// The planned length of the faulty part of the run.
    pub duration_ms: u64,
    /// How long the run actually took: the end of its last operation, or when
    /// the final state was read, whichever is later.
    pub run_ms: u64,
    /// The nodes under test.
    pub nodes: Vec<NodeInfo>,
    /// The nemeses the schedule drew from.
    pub nemeses: Vec<String>,
    /// Operations by kind (`publish`, `rotate`, `delete`, `read`, those
    /// present), then a `total` row.
    pub ops: Vec<OpCount>,
    /// Every fault, by start time.
    pub faults: Vec<FaultSummary>,
    /// Every check, in the order of [`Check::ALL`](crate::checker::Check::ALL).
    pub checks: Vec<CheckSummary>,
    /// Whether every check passed.
    pub passed: bool,
}

/// How operations of one kind ended.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OpCount {
    /// `publish`, `rotate`, `delete`, `read` or `total`.
    pub kind: String,
    /// Acknowledged.
    pub ok: u64,
    /// Refused.
    pub fail: u64,
    /// Without an answer.
    pub unknown: u64,
}

/// One fault, and how the cluster fared while it lasted.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FaultSummary {
    /// The fault's id.
    pub id: u64,
    /// The nemesis (`kill`, `partition`, …).
    pub kind: String,
    /// What exactly was done.
    pub description: String,
    /// When it was injected.
    pub start_ms: u64,
    /// When it was healed (`None` if it never was).
    pub end_ms: Option<u64>,
    /// Operations started while it lasted (from `start_ms` to `end_ms`
    /// inclusive, or to the end of the run).
    pub ops: u64,
    /// The share of those that were writes (publishes and rotations) and
    /// were acknowledged; `None` when none was a write.
    pub writes_ok_ratio: Option<f64>,
    /// The share of those that were reads and succeeded; `None` when none
    /// was a read.
    pub reads_ok_ratio: Option<f64>,
    /// From healing to the end of the first acknowledged write started at or
    /// after it; `None` if it was not healed or no write succeeded after.
    pub recovery_ms: Option<u64>,
}

/// The outcome of one check.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CheckSummary {
    /// The check's name (`lost-write`, …).
    pub check: String,
    /// Whether it passed.
    pub passed: bool,
    /// How many violations it found.
    pub violations: usize,
    /// The first [`EXAMPLES`] violation messages.
    pub examples: Vec<String>,
}

fn is_write(op: &Op) -> bool {
    matches!(op.kind, OpKind::Publish { .. } | OpKind::Rotate { .. })
}

fn is_read(op: &Op) -> bool {
    matches!(op.kind, OpKind::Read { .. })
}

/// How long the run took: see [`Summary::run_ms`] (faults are counted too).
fn run_length(history: &History) -> u64 {
    let ops = history.ops.iter().map(|o| o.end_ms.max(o.start_ms)).max().unwrap_or(0);
    let faults = history
        .faults
        .iter()
        .map(|f| f.end_ms.unwrap_or(0).max(f.start_ms))
        .max()
        .unwrap_or(0);
    let fin = history.final_state.as_ref().map_or(0, |f| f.at_ms.max(f.healed_at_ms));
    ops.max(faults).max(fin)
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Counts of operations by start time, to count any time window in
/// logarithmic time.
struct Windows {
    starts: Vec<u64>,
    /// Prefix sums, `[i]` over the first `i` operations by start time:
    /// operations, writes, acknowledged writes, reads, successful reads.
    sums: Vec<[u64; 5]>,
    /// `[i]`: the earliest end of an acknowledged write among operations
    /// `i..` by start time.
    first_ok_write_end: Vec<Option<u64>>,
}

impl Windows {
    fn new(ops: &[Op]) -> Windows {
        let mut sorted: Vec<&Op> = ops.iter().collect();
        sorted.sort_by_key(|o| o.start_ms);
        let mut sums = Vec::with_capacity(sorted.len() + 1);
        let mut acc = [0u64; 5];
        sums.push(acc);
        for op in &sorted {
            let ok = u64::from(op.outcome == Outcome::Ok);
            acc[0] += 1;
            if is_write(op) {
                acc[1] += 1;
                acc[2] += ok;
            }
            if is_read(op) {
                acc[3] += 1;
                acc[4] += ok;
            }
            sums.push(acc);
        }
        let mut first_ok_write_end = vec![None; sorted.len() + 1];
        for (i, op) in sorted.iter().enumerate().rev() {
            let here = (is_write(op) && op.outcome == Outcome::Ok).then_some(op.end_ms);
            first_ok_write_end[i] = match (here, first_ok_write_end[i + 1]) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Windows {
            starts: sorted.iter().map(|o| o.start_ms).collect(),
            sums,
            first_ok_write_end,
        }
    }

    /// The counts of operations started in `[from, to]`.
    fn count(&self, from: u64, to: u64) -> [u64; 5] {
        let lo = self.starts.partition_point(|&s| s < from);
        let hi = self.starts.partition_point(|&s| s <= to).max(lo);
        let (a, b) = (self.sums[lo], self.sums[hi]);
        std::array::from_fn(|k| b[k] - a[k])
    }

    /// The earliest end of an acknowledged write started at or after `t`.
    fn first_ok_write_after(&self, t: u64) -> Option<u64> {
        let lo = self.starts.partition_point(|&s| s < t);
        self.first_ok_write_end.get(lo).copied().flatten()
    }
}

/// Condenses a history and its check report.
pub fn summarize(history: &History, report: &CheckReport) -> Summary {
    let run_ms = run_length(history);

    let mut ops = Vec::new();
    let mut total = OpCount {
        kind: "total".into(),
        ok: 0,
        fail: 0,
        unknown: 0,
    };
    for kind in ["publish", "rotate", "delete", "read"] {
        let mut row = OpCount {
            kind: kind.into(),
            ok: 0,
            fail: 0,
            unknown: 0,
        };
        for op in history.ops.iter().filter(|o| o.kind.name() == kind) {
            match op.outcome {
                Outcome::Ok => row.ok += 1,
                Outcome::Fail => row.fail += 1,
                Outcome::Unknown => row.unknown += 1,
            }
        }
        if row.ok + row.fail + row.unknown > 0 {
            total.ok += row.ok;
            total.fail += row.fail;
            total.unknown += row.unknown;
            ops.push(row);
        }
    }
    ops.push(total);

    let windows = Windows::new(&history.ops);
    let mut faults: Vec<FaultSummary> = history
        .faults
        .iter()
        .map(|f| {
            let to = f.end_ms.unwrap_or(u64::MAX);
            let [n, writes, writes_ok, reads, reads_ok] = windows.count(f.start_ms, to);
            FaultSummary {
                id: f.id,
                kind: f.kind.clone(),
                description: f.description.clone(),
                start_ms: f.start_ms,
                end_ms: f.end_ms,
                ops: n,
                writes_ok_ratio: ratio(writes_ok, writes),
                reads_ok_ratio: ratio(reads_ok, reads),
                recovery_ms: f
                    .end_ms
                    .and_then(|end| windows.first_ok_write_after(end).map(|ok| ok.saturating_sub(end))),
            }
        })
        .collect();
    faults.sort_by_key(|f| (f.start_ms, f.id));

    let checks = report
        .results
        .iter()
        .map(|r| CheckSummary {
            check: r.check.name().to_string(),
            passed: r.passed,
            violations: r.total.max(usize::from(!r.passed)),
            examples: r.violations.iter().take(EXAMPLES).map(|v| v.message.clone()).collect(),
        })
        .collect();

    Summary {
        seed: history.header.seed,
        duration_ms: history.header.duration_ms,
        run_ms,
        nodes: history.header.nodes.clone(),
        nemeses: history.header.nemeses.clone(),
        ops,
        faults,
        checks,
        passed: report.passed(),
    }
}

// ---------------------------------------------------------------------------
// Tables, shared by the text and HTML renderings.

/// A table: a title, headers, rows, and which columns are numbers (right-aligned).
struct Table {
    title: &'static str,
    headers: Vec<&'static str>,
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

fn seconds(ms: u64) -> String {
    format!("{:.1}", ms as f64 / 1000.0)
}

fn percent(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{:.1}", r * 100.0))
}

fn run_line(s: &Summary) -> String {
    let nodes = s
        .nodes
        .iter()
        .map(|n| format!("{} ({})", n.id, n.role))
        .collect::<Vec<_>>()
        .join(", ");
    let nemeses = if s.nemeses.is_empty() {
        "none".to_string()
    } else {
        s.nemeses.join(", ")
    };
    format!(
        "seed {}, planned {} s, ran {} s, {} nodes: {nodes}; nemeses: {nemeses}",
        s.seed,
        seconds(s.duration_ms),
        seconds(s.run_ms),
        s.nodes.len()
    )
}

fn tables(s: &Summary) -> Vec<Table> {
    let ops = Table {
        title: "operations",
        headers: vec!["kind", "ok", "fail", "unknown"],
        numeric: vec![false, true, true, true],
        rows: s
            .ops
            .iter()
            .map(|o| {
                vec![
                    o.kind.clone(),
                    o.ok.to_string(),
                    o.fail.to_string(),
                    o.unknown.to_string(),
                ]
            })
            .collect(),
    };
    let faults = Table {
        title: "faults",
        headers: vec![
            "id",
            "kind",
            "description",
            "at s",
            "for s",
            "ops",
            "writes ok %",
            "reads ok %",
            "recovery ms",
        ],
        numeric: vec![true, false, false, true, true, true, true, true, true],
        rows: s
            .faults
            .iter()
            .map(|f| {
                vec![
                    f.id.to_string(),
                    f.kind.clone(),
                    f.description.clone(),
                    seconds(f.start_ms),
                    f.end_ms
                        .map_or_else(|| "unhealed".to_string(), |e| seconds(e.saturating_sub(f.start_ms))),
                    f.ops.to_string(),
                    percent(f.writes_ok_ratio),
                    percent(f.reads_ok_ratio),
                    f.recovery_ms.map_or_else(|| "-".to_string(), |r| r.to_string()),
                ]
            })
            .collect(),
    };
    let checks = Table {
        title: "checks",
        headers: vec!["check", "result", "violations"],
        numeric: vec![false, false, true],
        rows: s
            .checks
            .iter()
            .map(|c| {
                vec![
                    c.check.clone(),
                    if c.passed { "PASS" } else { "FAIL" }.to_string(),
                    c.violations.to_string(),
                ]
            })
            .collect(),
    };
    vec![ops, faults, checks]
}

fn total_violations(s: &Summary) -> usize {
    s.checks.iter().map(|c| c.violations).sum()
}

/// "1 violation", "3 violations".
fn violations_phrase(n: usize) -> String {
    format!("{n} violation{}", if n == 1 { "" } else { "s" })
}

fn verdict(s: &Summary) -> String {
    if s.passed {
        "PASS".to_string()
    } else {
        format!("FAIL ({})", violations_phrase(total_violations(s)))
    }
}

/// Text messages are printed on one line each.
fn flat(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn text_table(t: &Table) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = t.headers.iter().map(|h| width(h)).collect();
    for row in &t.rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(&flat(cell)));
        }
    }
    let line = |cells: &mut dyn Iterator<Item = String>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i > 0 {
                out.push_str("  ");
            }
            let pad = " ".repeat(w.saturating_sub(width(&cell)));
            if t.numeric.get(i).copied().unwrap_or(false) {
                out.push_str(&pad);
                out.push_str(&cell);
            } else {
                out.push_str(&cell);
                out.push_str(&pad);
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = format!("{}\n", t.title);
    out += &line(&mut t.headers.iter().map(|h| (*h).to_string()));
    if t.rows.is_empty() {
        out += "(none)\n";
    }
    for row in &t.rows {
        out += &line(&mut row.iter().map(|c| flat(c)));
    }
    out
}

/// Plain-text tables: the run, operations, faults and checks, the examples
/// of failed checks, and a last line `verdict: PASS` or `verdict: FAIL (n violations)`.
pub fn render_text(summary: &Summary) -> String {
    let mut out = format!("run: {}\n", run_line(summary));
    for t in tables(summary) {
        out.push('\n');
        out += &text_table(&t);
    }
    for c in summary.checks.iter().filter(|c| !c.passed) {
        let _ = writeln!(out, "\n{} ({}):", c.check, violations_phrase(c.violations));
        for e in &c.examples {
            let _ = writeln!(out, "  - {}", flat(e));
        }
        if c.violations > c.examples.len() {
            let _ = writeln!(out, "  ... {} more", c.violations - c.examples.len());
        }
    }
    let _ = writeln!(out, "\nverdict: {}", verdict(summary));
    out
}

// ---------------------------------------------------------------------------
// HTML

/// Escapes text for HTML (content and attribute values).
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

/// The colour of a nemesis in the timeline.
fn kind_colour(kind: &str) -> &'static str {
    match kind {
        "kill" => "#9467bd",
        "pause" => "#ff7f0e",
        "partition" => "#1f77b4",
        "clock-skew" => "#17becf",
        "fsync-delay" => "#bcbd22",
        "signer-kill" => "#8c564b",
        other => {
            const MORE: [&str; 6] = ["#e377c2", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5"];
            let h = other
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
            MORE[h % MORE.len()]
        }
    }
}

/// A tick step (in seconds) giving at most about 12 ticks over `span` seconds.
fn tick_step(span: f64) -> f64 {
    const STEPS: [f64; 14] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 12.0)
        .unwrap_or_else(|| (span / 12.0).ceil())
}

/// A round upper bound for a chart's y axis.
fn nice_max(v: u64) -> u64 {
    let v = v.max(1);
    let mut p = 1u64;
    while p.saturating_mul(10) <= v {
        p *= 10;
    }
    for m in [1, 2, 5, 10] {
        if p.saturating_mul(m) >= v {
            return p.saturating_mul(m);
        }
    }
    v
}

/// Round values for the rate axis, from 0 to `peak` (a [`nice_max`]).
fn rate_ticks(peak: u64) -> Vec<u64> {
    let parts = [5, 4, 2, 1]
        .into_iter()
        .find(|&n| peak % n == 0 && peak / n > 0)
        .unwrap_or(1);
    let step = (peak / parts).max(1);
    (0..=parts).map(|i| i * step).collect()
}

/// The inline SVG: fault lanes above a chart of operations per second.
fn timeline_svg(history: &History, summary: &Summary) -> String {
    const W: f64 = 1000.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const LANE: f64 = 18.0;
    const GAP: f64 = 4.0;
    const CHART: f64 = 160.0;
    let plot_w = W - LEFT - RIGHT;
    let run_ms = summary.run_ms.max(1);
    let x = |ms: u64| LEFT + (ms.min(run_ms) as f64) / (run_ms as f64) * plot_w;

    // Kinds, in order of first appearance, for the legend.
    let mut kinds: Vec<&str> = Vec::new();
    for f in &summary.faults {
        if !kinds.contains(&f.kind.as_str()) {
            kinds.push(&f.kind);
        }
    }

    let legend_y = 16.0;
    let lanes_top = 34.0;
    let lanes_h = summary.faults.len() as f64 * (LANE + GAP);
    let chart_top = lanes_top + lanes_h + 30.0;
    let chart_bottom = chart_top + CHART;
    let height = chart_bottom + 50.0;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height:.0}" viewBox="0 0 {W} {height:.0}" font-family="sans-serif" font-size="11">"##
    );
    let _ = write!(
        svg,
        r##"<rect x="0" y="0" width="{W}" height="{height:.0}" fill="#ffffff"/>"##
    );

    // Legend: fault kinds, then the chart's series.
    let mut lx = LEFT;
    for kind in &kinds {
        let _ = write!(
            svg,
            r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{legend_y:.1}">{}</text>"##,
            legend_y - 10.0,
            kind_colour(kind),
            lx + 16.0,
            esc(kind)
        );
        lx += 24.0 + 7.0 * kind.chars().count() as f64;
    }
    let _ = write!(
        svg,
        r##"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#2ca02c" stroke-width="2"/><text x="{:.1}" y="{legend_y:.1}">ok ops/s</text>"##,
        legend_y - 4.0,
        lx + 14.0,
        legend_y - 4.0,
        lx + 18.0
    );
    lx += 80.0;
    let _ = write!(
        svg,
        r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="#d62728"/><text x="{:.1}" y="{legend_y:.1}">failed or unknown ops/s</text>"##,
        legend_y - 10.0,
        lx + 16.0
    );

    // Operations per second, by when they ended.
    let secs = usize::try_from(run_ms.div_ceil(1000))
        .unwrap_or(usize::MAX)
        .clamp(1, 1_000_000);
    let mut ok = vec![0u64; secs];
    let mut bad = vec![0u64; secs];
    for op in &history.ops {
        let s = usize::try_from(op.end_ms / 1000).unwrap_or(usize::MAX).min(secs - 1);
        if op.outcome == Outcome::Ok {
            ok[s] += 1;
        } else {
            bad[s] += 1;
        }
    }
    let peak = nice_max(ok.iter().chain(bad.iter()).copied().max().unwrap_or(0));
    let y = |v: u64| chart_bottom - (v as f64) / (peak as f64) * CHART;
    let bin_w = plot_w / secs as f64;

    // The time axis: grid lines through lanes and chart, ticks and labels.
    let span = run_ms as f64 / 1000.0;
    let step = tick_step(span);
    let mut t = 0.0;
    while t <= span + 1e-9 {
        let xx = LEFT + t / span * plot_w;
        let _ = write!(
            svg,
            r##"<line x1="{xx:.1}" y1="{lanes_top:.1}" x2="{xx:.1}" y2="{chart_bottom:.1}" stroke="#eeeeee"/><line x1="{xx:.1}" y1="{chart_bottom:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#000000"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{t:.0}</text>"##,
            chart_bottom + 5.0,
            chart_bottom + 18.0
        );
        t += step;
    }
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds since the start of the run</text>"##,
        LEFT + plot_w / 2.0,
        chart_bottom + 36.0
    );

    // One lane per fault, and its span lightly shaded over the chart.
    for (i, f) in summary.faults.iter().enumerate() {
        let top = lanes_top + i as f64 * (LANE + GAP);
        let x0 = x(f.start_ms);
        let x1 = x(f.end_ms.unwrap_or(run_ms)).max(x0 + 2.0);
        let colour = kind_colour(&f.kind);
        let dash = if f.end_ms.is_none() {
            r##" stroke="#000000" stroke-dasharray="4 2""##
        } else {
            ""
        };
        let _ = write!(
            svg,
            r##"<g><title>{}</title><rect x="{x0:.1}" y="{top:.1}" width="{:.1}" height="{LANE}" fill="{colour}" fill-opacity="0.8"{dash}/><text x="{:.1}" y="{:.1}">{}</text></g>"##,
            esc(&format!(
                "fault {} ({}): {}, {}-{} s",
                f.id,
                f.kind,
                f.description,
                seconds(f.start_ms),
                f.end_ms.map_or_else(|| "end".to_string(), seconds)
            )),
            x1 - x0,
            x0 + 3.0,
            top + LANE - 5.0,
            esc(&f.kind)
        );
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555555">#{}</text><rect x="{x0:.1}" y="{chart_top:.1}" width="{:.1}" height="{CHART}" fill="{colour}" fill-opacity="0.08"/>"##,
            LEFT - 6.0,
            top + LANE - 5.0,
            f.id,
            x1 - x0
        );
    }

    // The rate axis.
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{chart_bottom:.1}" x2="{:.1}" y2="{chart_bottom:.1}" stroke="#000000"/><line x1="{LEFT}" y1="{chart_top:.1}" x2="{LEFT}" y2="{chart_bottom:.1}" stroke="#000000"/><text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">ops/s</text>"##,
        W - RIGHT,
        chart_top + CHART / 2.0,
        chart_top + CHART / 2.0
    );
    for v in rate_ticks(peak) {
        let yy = y(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#dddddd"/><line x1="{:.1}" y1="{yy:.1}" x2="{LEFT}" y2="{yy:.1}" stroke="#000000"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v}</text>"##,
            W - RIGHT,
            LEFT - 4.0,
            LEFT - 6.0,
            yy + 4.0
        );
    }

    // When the faults were healed and the final state read.
    if let Some(fin) = &history.final_state {
        for (ms, label) in [(fin.healed_at_ms, "healed"), (fin.at_ms, "final state")] {
            let xx = x(ms);
            // Labels near the right edge go on the left of their line.
            let (lx, anchor) = if xx > W - RIGHT - 80.0 {
                (xx - 3.0, "end")
            } else {
                (xx + 3.0, "start")
            };
            let _ = write!(
                svg,
                r##"<line x1="{xx:.1}" y1="{lanes_top:.1}" x2="{xx:.1}" y2="{chart_bottom:.1}" stroke="#333333" stroke-dasharray="3 3"/><text x="{lx:.1}" y="{:.1}" fill="#333333" text-anchor="{anchor}">{label}</text>"##,
                chart_top - 4.0
            );
        }
    }

    // Failed or unknown: red bars; ok: a green line.
    for (i, &n) in bad.iter().enumerate().filter(|&(_, &n)| n > 0) {
        let _ = write!(
            svg,
            r##"<rect x="{:.2}" y="{:.1}" width="{:.2}" height="{:.1}" fill="#d62728" fill-opacity="0.8"><title>{i} s: {n} failed or unknown</title></rect>"##,
            LEFT + i as f64 * bin_w,
            y(n),
            bin_w.max(1.0),
            chart_bottom - y(n)
        );
    }
    let points = ok
        .iter()
        .enumerate()
        .map(|(i, &n)| format!("{:.1},{:.1}", LEFT + (i as f64 + 0.5) * bin_w, y(n)))
        .collect::<Vec<_>>()
        .join(" ");
    let _ = write!(
        svg,
        r##"<polyline points="{points}" fill="none" stroke="#2ca02c" stroke-width="1.5"/>"##
    );
    svg.push_str("</svg>");
    svg
}

fn html_table(t: &Table) -> String {
    let mut out = format!("<h2>{}</h2>\n<table>\n<tr>", esc(t.title));
    for (i, h) in t.headers.iter().enumerate() {
        let class = if t.numeric.get(i).copied().unwrap_or(false) {
            " class=\"n\""
        } else {
            ""
        };
        let _ = write!(out, "<th{class}>{}</th>", esc(h));
    }
    out.push_str("</tr>\n");
    if t.rows.is_empty() {
        let _ = writeln!(out, "<tr><td colspan=\"{}\">(none)</td></tr>", t.headers.len());
    }
    for row in &t.rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = match cell.as_str() {
                "PASS" => " class=\"pass\"",
                "FAIL" => " class=\"fail\"",
                _ if t.numeric.get(i).copied().unwrap_or(false) => " class=\"n\"",
                _ => "",
            };
            let _ = write!(out, "<td{class}>{}</td>", esc(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// One self-contained HTML page (no external assets, no scripts): the run,
/// an SVG timeline of faults and of operations per second, and the tables
/// of [`render_text`].
pub fn render_html(history: &History, summary: &Summary) -> String {
    let title = format!("seal-chaos run, seed {}: {}", summary.seed, verdict(summary));
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(out, "<title>{}</title>", esc(&title));
    out.push_str(
        "<style>\n\
         body { font-family: sans-serif; margin: 2em; color: #222; }\n\
         table { border-collapse: collapse; margin-bottom: 1em; }\n\
         th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }\n\
         th { background: #f3f3f3; }\n\
         .n { text-align: right; font-variant-numeric: tabular-nums; }\n\
         .pass { color: #1a7f37; font-weight: bold; }\n\
         .fail { color: #c62828; font-weight: bold; }\n\
         .verdict { font-size: 1.4em; }\n\
         li { margin-bottom: 0.3em; }\n\
         </style>\n</head>\n<body>\n",
    );
    let _ = writeln!(out, "<h1>{}</h1>", esc(&title));
    let _ = writeln!(out, "<p>{}</p>", esc(&run_line(summary)));
    let _ = writeln!(out, "<h2>timeline</h2>\n{}", timeline_svg(history, summary));
    for t in tables(summary) {
        out += &html_table(&t);
    }
    let failed: Vec<_> = summary.checks.iter().filter(|c| !c.passed).collect();
    if !failed.is_empty() {
        out.push_str("<h2>violations</h2>\n");
        for c in failed {
            let _ = writeln!(
                out,
                "<h3>{} ({})</h3>\n<ul>",
                esc(&c.check),
                violations_phrase(c.violations)
            );
            for e in &c.examples {
                let _ = writeln!(out, "<li>{}</li>", esc(e));
            }
            if c.violations > c.examples.len() {
                let _ = writeln!(out, "<li>... {} more</li>", c.violations - c.examples.len());
            }
            out.push_str("</ul>\n");
        }
    }
    let class = if summary.passed { "pass" } else { "fail" };
    let _ = writeln!(
        out,
        "<p class=\"verdict\">verdict: <span class=\"{class}\">{}</span></p>",
        esc(&verdict(summary))
    );
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests;
