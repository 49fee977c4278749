//! `--plot FILE.svg`: throughput and latency of a run over time, as a plain SVG
//! (two panels sharing the time axis; no plotting dependency).

use std::fmt::Write as _;

use super::Report;

const WIDTH: f64 = 820.0;
const PANEL: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 50.0;

/// One line of a panel.
struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    points: Vec<(f64, f64)>,
}

/// The SVG document for `report`.
pub fn svg(report: &Report) -> String {
    let t_max = report.timeline.last().map_or(1.0, |s| s.t).max(1.0);
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="14">{}</text>"#,
        escape(&format!(
            "{} — {:.0} msg/s, e2e p99 {:.2} ms",
            report.label, report.throughput, report.e2e.p99
        ))
    );
    let rates = vec![
        Series {
            name: "pushed/s",
            colour: "#1f77b4",
            points: report
                .timeline
                .iter()
                .map(|s| (s.t, s.pushed_per_s))
                .collect(),
        },
        Series {
            name: "consumed/s",
            colour: "#2ca02c",
            points: report
                .timeline
                .iter()
                .map(|s| (s.t, s.consumed_per_s))
                .collect(),
        },
    ];
    panel(&mut out, TOP, t_max, "messages per second", &rates);
    let latency = vec![
        Series {
            name: "end-to-end p50",
            colour: "#9467bd",
            points: report.timeline.iter().map(|s| (s.t, s.e2e_p50)).collect(),
        },
        Series {
            name: "end-to-end p99",
            colour: "#d62728",
            points: report.timeline.iter().map(|s| (s.t, s.e2e_p99)).collect(),
        },
        Series {
            name: "push ack p99",
            colour: "#ff7f0e",
            points: report.timeline.iter().map(|s| (s.t, s.push_p99)).collect(),
        },
    ];
    panel(&mut out, TOP + PANEL + GAP, t_max, "latency (ms)", &latency);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds</text>"#,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        height - 8.0
    );
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, top: f64, t_max: f64, title: &str, series: &[Series<'_>]) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let x = |t: f64| LEFT + t / t_max * plot_w;
    let y = |v: f64| top + PANEL - v / y_max * PANEL;
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#888"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
        WIDTH - RIGHT,
        top - 6.0,
        escape(title)
    );
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy}" y2="{yy}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            short(v),
            yy = y(v),
        );
    }
    for i in 0..=5 {
        let t = t_max * f64::from(i) / 5.0;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{:.0}</text>"#,
            x(t),
            top + PANEL + 16.0,
            t
        );
    }
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
            s.colour,
            points.join(" ")
        );
        let lx = LEFT + 10.0 + 150.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{lx}" y="{}" width="12" height="3" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            top + 12.0,
            s.colour,
            lx + 16.0,
            top + 16.0,
            escape(s.name)
        );
    }
}

fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
