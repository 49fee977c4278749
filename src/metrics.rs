//! Metrics primitives: what the queues, the committer and the process count and
//! measure, as plain data and atomics that the layers below the service write
//! without knowing how they are exposed. The exposition (`/metrics`, the
//! per-queue series cap, `stats`' rates) is [`crate::telemetry`], above them.
//!
//! - [`Counters`]: what the queue state machine counts (pure data, not persisted).
//! - [`QueueMetrics`]: one queue's gauges and counters, published by its actor
//!   after each turn (a few relaxed stores) and counted by the push engine.
//! - [`CommitMetrics`]: each group-commit flush's size and time.
//! - [`ProcessFigures`], [`dir_size`]: the process and the data directory, read on
//!   demand.
//! - [`TotalsSample`], [`Rates`], [`rates_over`]: rates from one-second samples.
//! - One queue's rates ([`QueueMetrics::rates`]): a window of at least
//!   [`QUEUE_RATE_WINDOW_MS`] its actor rolls when it publishes, so a server with
//!   many queues keeps no per-queue samples and does no per-queue work while idle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// What happened to a queue's messages since its state was built (so since the
/// server started, or the queue was created): the per-queue counters of the
/// metrics (this module). Kept by the queue's state machine
/// (`queue/state.rs`), where each of these happens, and never persisted: a restart starts them at 0, which Prometheus reads
/// as a counter reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages pushed (or moved in: dead letters, redrives).
    pub pushed: u64,
    /// Reservations handed out (a delete-on-reserve counts here and in `deleted`).
    pub reserved: u64,
    /// Messages deleted: by a client, by delete-on-reserve, or acknowledged by
    /// every subscriber of a push queue.
    pub deleted: u64,
    /// Reservations released by their consumer.
    pub released: u64,
    /// Reservations that ran out: the message went back to the queue.
    pub timed_out: u64,
    /// Messages sent to the dead-letter queue.
    pub dead_lettered: u64,
    /// Messages removed because they expired.
    pub expired: u64,
}

/// Default cap on queues with series of their own (`--metrics-max-queues`).
pub const DEFAULT_MAX_QUEUE_SERIES: usize = 1000;

/// The label value of the series that sums the queues past the cap.
pub const OTHER_QUEUES: &str = "(other)";

/// The Content-Type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which front end a request or connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// The binary protocol.
    Binary,
    /// The IronMQ HTTP API (and `/metrics`, `/health`).
    Http,
}

impl Protocol {
    /// The value of the `protocol` label.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Binary => "binary",
            Protocol::Http => "http",
        }
    }
}

/// One queue's figures, shared by its actor (which publishes its state), its
/// handles, the push engine and the scrape. Cheap to update: relaxed atomics.
#[derive(Debug, Default)]
pub struct QueueMetrics {
    available: AtomicU64,
    reserved: AtomicU64,
    delayed: AtomicU64,
    bytes: AtomicU64,
    /// When the head message was pushed (ms since the epoch); 0: none available.
    head_pushed_at_ms: AtomicU64,
    pushed: AtomicU64,
    reservations: AtomicU64,
    deleted: AtomicU64,
    released: AtomicU64,
    timed_out: AtomicU64,
    dead_lettered: AtomicU64,
    expired: AtomicU64,
    push_delivered: AtomicU64,
    push_accepted: AtomicU64,
    push_failed: AtomicU64,
    /// The rate window: when it opened (the actor's clock, ms; 0: not yet) and
    /// the counters then (pushed, reserved, deleted).
    window_at_ms: AtomicU64,
    window_counts: [AtomicU64; 3],
    /// The rates of the last window closed (`f64` bits).
    window_rates: [AtomicU64; 3],
}

/// The shortest window of a queue's rates ([`QueueMetrics::rates`]).
pub const QUEUE_RATE_WINDOW_MS: u64 = 2000;

/// What a queue's actor publishes after a turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueGauges {
    /// AVAILABLE messages.
    pub available: u64,
    /// RESERVED messages.
    pub reserved: u64,
    /// DELAYED messages.
    pub delayed: u64,
    /// Bytes of bodies the queue's batches hold.
    pub bytes: u64,
    /// When the head message was pushed; `None`: nothing available.
    pub head_pushed_at_ms: Option<u64>,
}

/// How one push delivery to one subscriber went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The subscriber answered 2xx (not 202): delivered.
    Delivered,
    /// The subscriber answered 202: it will acknowledge later.
    Accepted,
    /// An error or another status: to be retried.
    Failed,
}

impl QueueMetrics {
    /// Publishes the queue's state after a turn, at `now_ms` on the actor's clock
    /// (for the rate window).
    pub fn publish(&self, gauges: &QueueGauges, counters: &Counters, now_ms: u64) {
        let set = |cell: &AtomicU64, value: u64| cell.store(value, Ordering::Relaxed);
        set(&self.available, gauges.available);
        set(&self.reserved, gauges.reserved);
        set(&self.delayed, gauges.delayed);
        set(&self.bytes, gauges.bytes);
        set(
            &self.head_pushed_at_ms,
            gauges.head_pushed_at_ms.unwrap_or(0),
        );
        set(&self.pushed, counters.pushed);
        set(&self.reservations, counters.reserved);
        set(&self.deleted, counters.deleted);
        set(&self.released, counters.released);
        set(&self.timed_out, counters.timed_out);
        set(&self.dead_lettered, counters.dead_lettered);
        set(&self.expired, counters.expired);
        self.roll_window(
            [counters.pushed, counters.reserved, counters.deleted],
            now_ms,
        );
    }

    /// Closes the rate window if it is [`QUEUE_RATE_WINDOW_MS`] old: its rates
    /// are kept and a new one opens at `counts`. Only the actor writes these;
    /// `window_at_ms` is stored last (Release) so a reader that sees it sees the
    /// counts it goes with, or newer ones (a rate read a little low, once).
    fn roll_window(&self, counts: [u64; 3], now_ms: u64) {
        let opened = self.window_at_ms.load(Ordering::Acquire);
        if opened != 0 && now_ms < opened.saturating_add(QUEUE_RATE_WINDOW_MS) {
            return;
        }
        if opened != 0 {
            let seconds = float(now_ms - opened) / 1000.0;
            for (i, count) in counts.iter().enumerate() {
                let before = self.window_counts[i].load(Ordering::Relaxed);
                let rate = float(count.saturating_sub(before)) / seconds;
                self.window_rates[i].store(rate.to_bits(), Ordering::Relaxed);
            }
        }
        for (cell, count) in self.window_counts.iter().zip(counts) {
            cell.store(count, Ordering::Relaxed);
        }
        self.window_at_ms.store(now_ms.max(1), Ordering::Release);
    }

    /// Pushed, reserved and deleted per second at `now_ms` (the actor's clock):
    /// over the window open now if it is at least [`QUEUE_RATE_WINDOW_MS`] old
    /// (so an idle queue's rates fall to 0 without its actor doing anything),
    /// else over the last window closed. Both span 2 s or more.
    pub fn rates(&self, now_ms: u64) -> Rates {
        let opened = self.window_at_ms.load(Ordering::Acquire);
        if opened == 0 {
            return Rates::default();
        }
        let current = [
            self.pushed.load(Ordering::Relaxed),
            self.reservations.load(Ordering::Relaxed),
            self.deleted.load(Ordering::Relaxed),
        ];
        let elapsed = now_ms.saturating_sub(opened);
        let rate = |i: usize| {
            if elapsed >= QUEUE_RATE_WINDOW_MS {
                let before = self.window_counts[i].load(Ordering::Relaxed);
                float(current[i].saturating_sub(before)) / (float(elapsed) / 1000.0)
            } else {
                f64::from_bits(self.window_rates[i].load(Ordering::Relaxed))
            }
        };
        Rates {
            pushed: rate(0),
            reserved: rate(1),
            deleted: rate(2),
        }
    }

    /// Counts one push delivery try.
    pub fn delivery(&self, outcome: Delivery) {
        let cell = match outcome {
            Delivery::Delivered => &self.push_delivered,
            Delivery::Accepted => &self.push_accepted,
            Delivery::Failed => &self.push_failed,
        };
        cell.fetch_add(1, Ordering::Relaxed);
    }

    /// The figures now (`now_ms`: the wall clock, for the head's age).
    pub fn read(&self, now_ms: u64) -> QueueFigures {
        let get = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        let head = get(&self.head_pushed_at_ms);
        QueueFigures {
            available: get(&self.available),
            reserved: get(&self.reserved),
            delayed: get(&self.delayed),
            bytes: get(&self.bytes),
            oldest_age_ms: if head == 0 {
                0
            } else {
                now_ms.saturating_sub(head)
            },
            pushed: get(&self.pushed),
            reservations: get(&self.reservations),
            deleted: get(&self.deleted),
            released: get(&self.released),
            timed_out: get(&self.timed_out),
            dead_lettered: get(&self.dead_lettered),
            expired: get(&self.expired),
            push_delivered: get(&self.push_delivered),
            push_accepted: get(&self.push_accepted),
            push_failed: get(&self.push_failed),
        }
    }
}

/// One queue's figures as read at a scrape (or summed over the queues past the
/// cap: the oldest age is then the largest).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueFigures {
    /// AVAILABLE messages.
    pub available: u64,
    /// RESERVED messages.
    pub reserved: u64,
    /// DELAYED messages.
    pub delayed: u64,
    /// Bytes of bodies held.
    pub bytes: u64,
    /// Age of the message at the head of the queue in ms (0: none).
    pub oldest_age_ms: u64,
    /// Messages pushed.
    pub pushed: u64,
    /// Reservations handed out.
    pub reservations: u64,
    /// Messages deleted.
    pub deleted: u64,
    /// Reservations released.
    pub released: u64,
    /// Reservations that ran out.
    pub timed_out: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Messages expired.
    pub expired: u64,
    /// Push deliveries answered 2xx.
    pub push_delivered: u64,
    /// Push deliveries answered 202.
    pub push_accepted: u64,
    /// Push deliveries that failed.
    pub push_failed: u64,
}

impl QueueFigures {
    /// Adds `other` in (the oldest age is the larger of the two).
    pub fn add(&mut self, other: &QueueFigures) {
        self.available += other.available;
        self.reserved += other.reserved;
        self.delayed += other.delayed;
        self.bytes += other.bytes;
        self.oldest_age_ms = self.oldest_age_ms.max(other.oldest_age_ms);
        self.pushed += other.pushed;
        self.reservations += other.reservations;
        self.deleted += other.deleted;
        self.released += other.released;
        self.timed_out += other.timed_out;
        self.dead_lettered += other.dead_lettered;
        self.expired += other.expired;
        self.push_delivered += other.push_delivered;
        self.push_accepted += other.push_accepted;
        self.push_failed += other.push_failed;
    }
}

/// The committer's measurements: how many commit requests (one per queue turn
/// that wrote) each flush covered, and how long each flush (sled's log write and
/// the fdatasync) took.
#[derive(Debug, Clone)]
pub struct CommitMetrics {
    /// Commit requests covered by each flush.
    pub requests: Histogram,
    /// Seconds per flush.
    pub seconds: Histogram,
    /// Flushes, their nanoseconds and their requests, summed (`stats`).
    sums: std::sync::Arc<[AtomicU64; 3]>,
}

impl Default for CommitMetrics {
    fn default() -> Self {
        CommitMetrics {
            requests: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 17)),
            sums: std::sync::Arc::default(),
        }
    }
}

impl CommitMetrics {
    /// Records one flush: how many commit requests it covered (`None`: a timed
    /// flush, which covers whatever was written) and how long it took.
    pub fn flushed(&self, requests: Option<u64>, took: Duration) {
        if let Some(requests) = requests {
            self.requests.observe(float(requests));
            self.sums[2].fetch_add(requests, Ordering::Relaxed);
        }
        self.seconds.observe(took.as_secs_f64());
        self.sums[0].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sums[1].fetch_add(nanos, Ordering::Relaxed);
    }

    /// Since start: mean seconds per flush and mean requests per flush (`None`
    /// before the first flush).
    pub fn averages(&self) -> Option<(f64, f64)> {
        let flushes = self.sums[0].load(Ordering::Relaxed);
        if flushes == 0 {
            return None;
        }
        let nanos = self.sums[1].load(Ordering::Relaxed);
        let requests = self.sums[2].load(Ordering::Relaxed);
        Some((
            float(nanos) / 1e9 / float(flushes),
            float(requests) / float(flushes),
        ))
    }
}

/// The message totals of every queue at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TotalsSample {
    /// Seconds since the server started.
    pub at_s: f64,
    /// Messages pushed (moved in included).
    pub pushed: u64,
    /// Reservations handed out.
    pub reserved: u64,
    /// Messages deleted.
    pub deleted: u64,
}

/// Messages per second over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Pushed per second.
    pub pushed: f64,
    /// Reserved per second.
    pub reserved: f64,
    /// Deleted per second.
    pub deleted: f64,
}

/// Messages per second between the last sample and the one `window` samples
/// before it (or the oldest there is).
pub fn rates_over(samples: &[TotalsSample], window: usize) -> Rates {
    let (Some(last), Some(first)) = (
        samples.last(),
        samples
            .iter()
            .rev()
            .nth(window.min(samples.len().saturating_sub(1))),
    ) else {
        return Rates::default();
    };
    let seconds = last.at_s - first.at_s;
    if seconds <= 0.0 {
        return Rates::default();
    }
    let per_second = |a: u64, b: u64| float(b.saturating_sub(a)) / seconds;
    Rates {
        pushed: per_second(first.pushed, last.pushed),
        reserved: per_second(first.reserved, last.reserved),
        deleted: per_second(first.deleted, last.deleted),
    }
}

/// The wall clock in milliseconds since the Unix epoch (messages' push times are
/// on it).
pub fn now_ms() -> u64 {
    epoch_ms(SystemTime::now())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Lossy on purpose: a gauge is a float.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn float(value: u64) -> f64 {
    value as f64
}

/// Total bytes of the files under `dir` (unreadable entries count 0).
pub fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => pending.push(entry.path()),
                Ok(meta) => total = total.saturating_add(meta.len()),
                Err(_) => {}
            }
        }
    }
    total
}

/// The process's own figures, from `/proc/self` (Linux; `None` elsewhere).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessFigures {
    /// User + system CPU seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size in bytes.
    pub resident_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
}

/// Clock ticks per second of `/proc/self/stat`'s CPU times: `USER_HZ`, which
/// Linux fixes at 100 for user space on every architecture it exposes it.
const USER_HZ: f64 = 100.0;

impl ProcessFigures {
    /// Reads them now.
    pub fn read() -> Self {
        let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| {
                // Fields after the command name (which may hold spaces) in parentheses.
                let rest = stat.rsplit_once(')')?.1;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                // utime and stime are fields 14 and 15; `rest` starts at field 3.
                let utime: u64 = fields.get(11)?.parse().ok()?;
                let stime: u64 = fields.get(12)?.parse().ok()?;
                Some(float(utime + stime) / USER_HZ)
            });
        let resident_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            });
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| u64::try_from(entries.count()).unwrap_or(u64::MAX));
        ProcessFigures {
            cpu_seconds,
            resident_bytes,
            open_fds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_s: f64, pushed: u64, deleted: u64) -> TotalsSample {
        TotalsSample {
            at_s,
            pushed,
            reserved: 0,
            deleted,
        }
    }

    #[test]
    fn a_queues_rates_are_over_its_last_window_and_fall_to_zero_when_idle() {
        let metrics = QueueMetrics::default();
        let gauges = QueueGauges::default();
        let counters = |pushed, deleted| Counters {
            pushed,
            deleted,
            ..Counters::default()
        };
        assert_eq!(metrics.rates(1_000), Rates::default());
        metrics.publish(&gauges, &counters(0, 0), 10_000);
        // Within the first window nothing is closed yet: 0.
        metrics.publish(&gauges, &counters(50, 10), 11_000);
        assert_eq!(metrics.rates(11_500), Rates::default());
        // The window closes at its first publish 2 s or more after it opened.
        metrics.publish(&gauges, &counters(200, 40), 12_000);
        let rates = metrics.rates(12_500);
        assert!((rates.pushed - 100.0).abs() < 1e-9, "{rates:?}");
        assert!((rates.deleted - 20.0).abs() < 1e-9, "{rates:?}");
        // An idle queue publishes nothing: read past the window, its rate is
        // over the open window (no change since 12 s): 0.
        assert_eq!(metrics.rates(20_000), Rates::default());
        // Busy again after the idle spell: the closed window spans the idle time.
        metrics.publish(&gauges, &counters(300, 40), 22_000);
        let rates = metrics.rates(22_100);
        assert!((rates.pushed - 10.0).abs() < 1e-9, "{rates:?}");
        // A reader at an earlier time than the window (clock skew): no panic.
        let _ = metrics.rates(0);
    }

    #[test]
    fn rates_are_the_change_over_the_window_and_never_negative() {
        assert_eq!(rates_over(&[], 10), Rates::default());
        assert_eq!(rates_over(&[sample(1.0, 5, 0)], 10), Rates::default());
        let samples: Vec<TotalsSample> = (0..20)
            .map(|i: u32| sample(f64::from(i), u64::from(i) * 100, u64::from(i) * 50))
            .collect();
        let rates = rates_over(&samples, 10);
        assert!((rates.pushed - 100.0).abs() < 1e-9, "{rates:?}");
        assert!((rates.deleted - 50.0).abs() < 1e-9, "{rates:?}");
        // Fewer samples than the window: over what there is.
        let rates = rates_over(&samples[..3], 10);
        assert!((rates.pushed - 100.0).abs() < 1e-9, "{rates:?}");
        // A queue deleted between samples takes its counts away: 0, not negative.
        let dropped = [sample(0.0, 500, 0), sample(1.0, 200, 0)];
        assert_eq!(rates_over(&dropped, 10).pushed, 0.0);
    }

    #[test]
    fn commit_averages_are_per_flush() {
        let commit = CommitMetrics::default();
        assert_eq!(commit.averages(), None);
        commit.flushed(Some(3), Duration::from_millis(2));
        commit.flushed(Some(5), Duration::from_millis(4));
        let (seconds, requests) = commit.averages().unwrap();
        assert!((seconds - 0.003).abs() < 1e-9, "{seconds}");
        assert!((requests - 4.0).abs() < 1e-9, "{requests}");
    }
}
