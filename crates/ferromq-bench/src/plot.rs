//! `--plot FILE.svg`: throughput and latency of a run over time, drawn with
//! `plotters` (its SVG backend only): two panels sharing the time axis, each with
//! its own scale and a legend, ticks chosen by plotters on round numbers. Every
//! series is drawn with its own colour and markers, so one that lies on another
//! (consumed on pushed, in a steady mixed run) stays visible. Only whole sampling
//! intervals are plotted (see `sample` in lib.rs: the short tail after the last
//! second is left out, which would otherwise show as a drop to zero).

use plotters::prelude::*;

use super::Report;

const WIDTH: u32 = 860;
const HEIGHT: u32 = 620;

/// One line of a panel.
struct Series<'a> {
    name: &'a str,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

/// The SVG document for `report`.
///
/// # Errors
/// If plotters cannot draw (a message).
pub fn svg(report: &Report) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let title = format!(
            "{}: {:.0} msg/s, end-to-end p99 {:.2} ms",
            report.label, report.throughput, report.e2e.p99
        );
        let root = root
            .titled(&title, ("sans-serif", 18))
            .map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(HEIGHT / 2 - 10);
        let t_max = report.timeline.last().map_or(1.0, |s| s.t).max(1.0);
        let rates = [
            Series {
                name: "pushed/s",
                colour: RGBColor(31, 119, 180),
                points: report
                    .timeline
                    .iter()
                    .map(|s| (s.t, s.pushed_per_s))
                    .collect(),
            },
            Series {
                name: "consumed/s",
                colour: RGBColor(44, 160, 44),
                points: report
                    .timeline
                    .iter()
                    .map(|s| (s.t, s.consumed_per_s))
                    .collect(),
            },
        ];
        panel(&top, t_max, "messages per second", &rates)?;
        let latency = [
            Series {
                name: "end-to-end p50",
                colour: RGBColor(148, 103, 189),
                points: report.timeline.iter().map(|s| (s.t, s.e2e_p50)).collect(),
            },
            Series {
                name: "end-to-end p99",
                colour: RGBColor(214, 39, 40),
                points: report.timeline.iter().map(|s| (s.t, s.e2e_p99)).collect(),
            },
            Series {
                name: "push ack p99",
                colour: RGBColor(255, 127, 14),
                points: report.timeline.iter().map(|s| (s.t, s.push_p99)).collect(),
            },
        ];
        panel(&bottom, t_max, "latency (ms)", &latency)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    t_max: f64,
    y_desc: &str,
    series: &[Series<'_>],
) -> Result<(), String> {
    // Series with no point above zero (no consumers in a push run) are left out of
    // the legend and the scale.
    let shown: Vec<&Series<'_>> = series
        .iter()
        .filter(|s| s.points.iter().any(|p| p.1 > 0.0))
        .collect();
    let y_max = shown
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-6)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(y_desc)
        .x_labels(10)
        .y_labels(6)
        .y_label_formatter(&|v| short(*v))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| e.to_string())?;
    for s in &shown {
        let colour = s.colour;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|&(t, v)| Circle::new((t, v), 2, colour.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// A tick label: `250k`, `1.5M`, `12`, `0.25`.
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
