//! `ferromq stats` (the server's figures, once) and `ferromq top` (a live
//! per-queue view, refreshed like `top`).
//!
//! Both read what the server publishes without asking any queue: `stats` the
//! `ServerStats` answer (the server computes its rates over its last 10 s), `top`
//! the `ListQueueStats` pages, its rates being the change of each queue's counters
//! between two frames divided by the time between them (the first frame has
//! none: `-`). Durations are printed as durations (`1h 2m 3s`, `850ms`), sizes
//! with binary units.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{Client, ClientError};
use crate::proto;

/// `1h 2m 3s` (whole seconds) or `850ms` under a second.
pub(super) fn duration(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

/// Bytes with a binary unit: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub(super) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = float(bytes) / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[allow(clippy::cast_precision_loss)]
fn float(n: u64) -> f64 {
    n as f64
}

/// `ferromq stats`.
pub(super) async fn stats(client: &Client, as_json: bool) -> Result<(), ClientError> {
    let s = client.server_stats().await?;
    if as_json {
        println!(
            "{}",
            json!({
                "version": s.version, "uptime_ms": s.uptime_ms, "fsync": s.fsync,
                "connections": s.connections, "queues": s.queues, "messages": s.messages,
                "stored_bytes": s.stored_bytes, "pushed_total": s.pushed_total,
                "reserved_total": s.reserved_total, "deleted_total": s.deleted_total,
                "pushed_per_s": s.pushed_per_s, "reserved_per_s": s.reserved_per_s,
                "deleted_per_s": s.deleted_per_s, "flushes": s.flushes,
                "flush_ms_mean": s.flush_ms_mean,
                "requests_per_flush_mean": s.requests_per_flush_mean,
                "data_dir_bytes": s.data_dir_bytes,
            })
        );
        return Ok(());
    }
    println!(
        "ferromq {}, up {}, fsync {}",
        s.version,
        duration(s.uptime_ms),
        s.fsync
    );
    println!("connections   {}", s.connections);
    println!("queues        {}", s.queues);
    println!(
        "messages      {} held, {} of bodies",
        s.messages,
        size(s.stored_bytes)
    );
    println!(
        "totals        pushed {}  reserved {}  deleted {}",
        s.pushed_total, s.reserved_total, s.deleted_total
    );
    println!(
        "recent rates  pushed {:.1}/s  reserved {:.1}/s  deleted {:.1}/s",
        s.pushed_per_s, s.reserved_per_s, s.deleted_per_s
    );
    println!(
        "group commit  {} flushes, {:.2} ms mean, {:.1} queue writes per flush",
        s.flushes, s.flush_ms_mean, s.requests_per_flush_mean
    );
    println!("data dir      {}", size(s.data_dir_bytes));
    Ok(())
}

/// How `top` orders its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum SortBy {
    /// Most messages held first.
    Size,
    /// Most pushed per second first.
    Rate,
    /// Oldest head message first.
    Age,
    /// By name.
    Name,
}

/// What `top` shows.
#[derive(Debug, Clone)]
pub(super) struct TopOptions {
    pub(super) prefix: String,
    pub(super) interval: Duration,
    pub(super) frames: Option<u64>,
    pub(super) rows: usize,
    pub(super) sort: SortBy,
}

/// Every queue's figures under `prefix`, page by page.
async fn all_figures(
    client: &Client,
    prefix: &str,
) -> Result<Vec<proto::QueueFigures>, ClientError> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = client.list_queue_stats(prefix, &cursor, 100).await?;
        out.extend(page.queues);
        if page.next_cursor.is_empty() {
            return Ok(out);
        }
        cursor = page.next_cursor;
    }
}

/// One row of a frame.
struct Row {
    q: proto::QueueFigures,
    /// Pushed, reserved, deleted per second since the previous frame.
    rates: Option<(f64, f64, f64)>,
}

/// `ferromq top`: a frame every `interval` until Ctrl-C or `frames` frames. On a
/// terminal each frame replaces the last; otherwise frames follow each other.
pub(super) async fn top(
    client: &Client,
    options: &TopOptions,
    as_json: bool,
) -> Result<(), ClientError> {
    let mut previous: HashMap<String, (u64, u64, u64)> = HashMap::new();
    let mut previous_at: Option<Instant> = None;
    let terminal = std::io::stdout().is_terminal() && !as_json;
    let mut frame = 0u64;
    loop {
        let stats = client.server_stats().await?;
        let figures = all_figures(client, &options.prefix).await?;
        let now = Instant::now();
        let elapsed = previous_at.map(|at| now.duration_since(at).as_secs_f64());
        let mut rows: Vec<Row> = figures
            .into_iter()
            .map(|q| {
                let rates = match (elapsed, previous.get(&q.name)) {
                    (Some(seconds), Some(&(p, r, d))) if seconds > 0.0 => Some((
                        float(q.pushed_total.saturating_sub(p)) / seconds,
                        float(q.reserved_total.saturating_sub(r)) / seconds,
                        float(q.deleted_total.saturating_sub(d)) / seconds,
                    )),
                    _ => None,
                };
                Row { q, rates }
            })
            .collect();
        previous = rows
            .iter()
            .map(|r| {
                (
                    r.q.name.clone(),
                    (r.q.pushed_total, r.q.reserved_total, r.q.deleted_total),
                )
            })
            .collect();
        previous_at = Some(now);
        sort(&mut rows, options.sort);
        let text = if as_json {
            frame_json(&stats, &rows, options.rows)
        } else {
            frame_text(&stats, &rows, options)
        };
        let mut out = std::io::stdout().lock();
        if terminal {
            // Home and clear: the frame replaces the previous one.
            let _ = write!(out, "\x1b[H\x1b[2J");
        } else if frame > 0 && !as_json {
            let _ = writeln!(out);
        }
        let _ = write!(out, "{text}");
        let _ = out.flush();
        drop(out);
        frame += 1;
        if options.frames.is_some_and(|frames| frame >= frames) {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(options.interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn sort(rows: &mut [Row], by: SortBy) {
    let held = |r: &Row| r.q.available + r.q.reserved + r.q.delayed;
    let pushed = |r: &Row| r.rates.map_or(0.0, |(p, _, _)| p);
    match by {
        SortBy::Name => rows.sort_by(|a, b| a.q.name.cmp(&b.q.name)),
        SortBy::Size => rows.sort_by(|a, b| held(b).cmp(&held(a)).then(a.q.name.cmp(&b.q.name))),
        SortBy::Age => rows.sort_by(|a, b| {
            b.q.oldest_age_ms
                .cmp(&a.q.oldest_age_ms)
                .then(a.q.name.cmp(&b.q.name))
        }),
        SortBy::Rate => rows.sort_by(|a, b| {
            pushed(b)
                .total_cmp(&pushed(a))
                .then(a.q.name.cmp(&b.q.name))
        }),
    }
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn frame_text(stats: &proto::ServerStats, rows: &[Row], options: &TopOptions) -> String {
    let mut out = format!(
        "ferromq {} up {}  fsync {}  connections {}  queues {}  messages {}\n\
         pushed {:.1}/s  reserved {:.1}/s  deleted {:.1}/s (server, last 10 s)  \
         flushes {} ({:.2} ms mean)  data dir {}\n\n",
        stats.version,
        duration(stats.uptime_ms),
        stats.fsync,
        stats.connections,
        stats.queues,
        stats.messages,
        stats.pushed_per_s,
        stats.reserved_per_s,
        stats.deleted_per_s,
        stats.flushes,
        stats.flush_ms_mean,
        size(stats.data_dir_bytes),
    );
    let width = rows
        .iter()
        .take(options.rows)
        .map(|r| r.q.name.len())
        .max()
        .unwrap_or(5)
        .clamp(5, 48);
    out.push_str(&format!(
        "{:<width$} {:>9} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>8}\n",
        "QUEUE", "AVAIL", "INFLIGHT", "DELAYED", "OLDEST", "PUSH/s", "RESV/s", "DEL/s", "TIMEOUTS"
    ));
    for row in rows.iter().take(options.rows) {
        let q = &row.q;
        let name: String = q.name.chars().take(width).collect();
        let oldest = if q.oldest_age_ms == 0 {
            "-".to_owned()
        } else {
            duration(q.oldest_age_ms)
        };
        out.push_str(&format!(
            "{name:<width$} {:>9} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>8}\n",
            q.available,
            q.reserved,
            q.delayed,
            oldest,
            rate(row.rates.map(|r| r.0)),
            rate(row.rates.map(|r| r.1)),
            rate(row.rates.map(|r| r.2)),
            q.timed_out_total,
        ));
    }
    if rows.len() > options.rows {
        out.push_str(&format!(
            "... and {} more queues\n",
            rows.len() - options.rows
        ));
    }
    out
}

fn frame_json(stats: &proto::ServerStats, rows: &[Row], limit: usize) -> String {
    let queues: Vec<serde_json::Value> = rows
        .iter()
        .take(limit)
        .map(|r| {
            let q = &r.q;
            json!({
                "name": q.name, "available": q.available, "reserved": q.reserved,
                "delayed": q.delayed, "stored_bytes": q.stored_bytes,
                "oldest_age_ms": q.oldest_age_ms, "pushed_total": q.pushed_total,
                "reserved_total": q.reserved_total, "deleted_total": q.deleted_total,
                "timed_out_total": q.timed_out_total,
                "pushed_per_s": r.rates.map(|r| r.0),
                "reserved_per_s": r.rates.map(|r| r.1),
                "deleted_per_s": r.rates.map(|r| r.2),
            })
        })
        .collect();
    format!(
        "{}\n",
        json!({
            "uptime_ms": stats.uptime_ms, "connections": stats.connections,
            "queues_total": rows.len(), "queues": queues,
        })
    )
}
