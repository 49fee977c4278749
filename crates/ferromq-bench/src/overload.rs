//! The overload test of the hardening issue: offer a ferromq server a multiple of
//! its measured capacity for a fixed time and report what it did with the excess.
//!
//! - **Producers** push open loop: each connection's pushes are due at a fixed
//!   rate whatever the server answers, each sent as soon as it is due (pipelined),
//!   with at most `--outstanding` unanswered per connection; a push due while that
//!   many are unanswered is not sent and counted as *shed by the client* (the
//!   server was pushing back through TCP). A push is *accepted* (acknowledged),
//!   *refused* (RESOURCE_EXHAUSTED: the server's admission control) or *failed*
//!   (anything else).
//! - **Consumers** reserve and delete in a closed loop, as workers do.
//! - **A probe** sends `info` on the flooded queue every `--probe-every` on its own
//!   connection, and opens a new connection with a Hello every tenth time: the
//!   latency an operator's health check would see.
//! - **RSS** of `--server-pid` is read from /proc (peak: VmHWM).
//!
//! After the flood the producers stop; consumers and probe go on for `--after`,
//! and *recovery* is how long after the flood ended the probe's latency came back
//! under 10 ms for good. Everything is bounded by `--duration` + `--after`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use ferromq::client::{ClientError, ConnectOptions, ReserveOptions};
use ferromq::proto::ErrorCode;
use ferromq::Client;
use hdrhistogram::Histogram;

use crate::histogram;
use serde_json::{json, Value};

/// Options of `ferromq-overload`.
#[derive(Debug, Clone, Args)]
pub struct OverloadArgs {
    /// The server's address (its token in FERROMQ_TOKEN, if it needs one).
    #[arg(long, default_value = "127.0.0.1:7600")]
    pub addr: String,
    /// The server's measured capacity in messages per second (e.g. a mixed
    /// `ferromq-bench` run's throughput).
    #[arg(long)]
    pub capacity: f64,
    /// Offer this many times the capacity.
    #[arg(long, default_value_t = 10.0)]
    pub factor: f64,
    /// How long the flood lasts.
    #[arg(long, value_parser = ferromq::config::parse_duration_ms, default_value = "20s")]
    pub duration: u64,
    /// How long consumers and probe go on after the flood.
    #[arg(long, value_parser = ferromq::config::parse_duration_ms, default_value = "5s")]
    pub after: u64,
    /// Producer connections.
    #[arg(long, default_value_t = 32)]
    pub producers: usize,
    /// Most unanswered pushes per producer connection.
    #[arg(long, default_value_t = 64)]
    pub outstanding: usize,
    /// Consumer connections.
    #[arg(long, default_value_t = 4)]
    pub consumers: usize,
    /// Reserves in flight per consumer connection.
    #[arg(long, default_value_t = 8)]
    pub consumer_depth: usize,
    /// Messages per reserve.
    #[arg(long, default_value_t = 10)]
    pub reserve_n: u32,
    /// Body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub body: usize,
    /// The queue to flood.
    #[arg(long, default_value = "overload")]
    pub queue: String,
    /// How often the probe asks.
    #[arg(long, value_parser = ferromq::config::parse_duration_ms, default_value = "10ms")]
    pub probe_every: u64,
    /// The server's process id, for its RSS.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Why the run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OverloadError {
    /// A connection could not be made.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The options do not make sense.
    #[error("{0}")]
    Usage(String),
}

#[derive(Default)]
struct Counters {
    offered: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    shed: AtomicU64,
    consumed: AtomicU64,
}

struct Shared {
    counters: Counters,
    flooding: AtomicBool,
    running: AtomicBool,
    push_ack: Mutex<Histogram<u64>>,
    /// Probe latencies (µs) during the flood (info, and a new connection's Hello),
    /// and after it with when they came.
    probe_flood: Mutex<Histogram<u64>>,
    hello_flood: Mutex<Histogram<u64>>,
    probe_after: Mutex<Vec<(Duration, u64)>>,
    first_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn connect(addr: &str) -> Result<Client, ClientError> {
    let options = ConnectOptions {
        token: std::env::var("FERROMQ_TOKEN").ok(),
        ..ConnectOptions::default()
    };
    Client::connect_with(addr, &options).await
}

/// The report of one run.
#[derive(Debug)]
pub struct OverloadReport {
    value: Value,
}

impl OverloadReport {
    /// The figures as JSON.
    pub fn json(&self) -> &Value {
        &self.value
    }

    /// The figures as text, one per line.
    pub fn summary(&self) -> String {
        let v = &self.value;
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        format!(
            "capacity {:.0} msg/s, offered {:.0} msg/s ({:.1}x) for {:.1} s\n\
             goodput (accepted pushes) {:.0} msg/s = {:.0} % of capacity\n\
             refused {:.0}/s, shed by the client (server pushing back) {:.0}/s, failed {}\n\
             push-ack of accepted pushes: p50 {:.2} ms, p99 {:.2} ms\n\
             consumed {:.0} msg/s = {:.0} % of capacity\n\
             probe during the flood: info p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
             connect + Hello p50 {:.2} ms, p99 {:.2} ms\n\
             probe after the flood: p99 {:.2} ms; under 10 ms for good {:.0} ms after it ended\n\
             server RSS: peak {:.1} MiB, at the end {:.1} MiB\n",
            f("capacity"),
            f("offered_per_s"),
            f("factor"),
            f("flood_s"),
            f("goodput_per_s"),
            f("goodput_pct"),
            f("refused_per_s"),
            f("shed_per_s"),
            v["failed"],
            f("push_ack_p50_ms"),
            f("push_ack_p99_ms"),
            f("consumed_per_s"),
            f("consumed_pct"),
            f("probe_flood_p50_ms"),
            f("probe_flood_p99_ms"),
            f("probe_flood_max_ms"),
            f("hello_flood_p50_ms"),
            f("hello_flood_p99_ms"),
            f("probe_after_p99_ms"),
            f("recovery_ms"),
            f("rss_peak_mib"),
            f("rss_end_mib"),
        )
    }
}

/// Runs the overload test; see the module docs.
///
/// # Errors
/// If the server cannot be reached, or the options are out of range.
#[allow(clippy::cast_precision_loss)] // counts and rates far below 2^52
pub async fn run(args: OverloadArgs) -> Result<OverloadReport, OverloadError> {
    if !(args.capacity > 0.0 && args.factor > 0.0) || args.producers == 0 || args.consumers == 0 {
        return Err(OverloadError::Usage(
            "--capacity and --factor must be positive, --producers and --consumers at least 1"
                .into(),
        ));
    }
    let shared = Arc::new(Shared {
        counters: Counters::default(),
        flooding: AtomicBool::new(true),
        running: AtomicBool::new(true),
        push_ack: Mutex::new(histogram()),
        probe_flood: Mutex::new(histogram()),
        hello_flood: Mutex::new(histogram()),
        probe_after: Mutex::new(Vec::new()),
        first_error: Mutex::new(None),
    });
    let admin = connect(&args.addr).await?;
    let _ = admin.delete_queue(&args.queue).await;
    admin
        .create_queue(&args.queue, ferromq::proto::QueueSettings::default())
        .await?;
    let mut producers = Vec::new();
    for _ in 0..args.producers {
        producers.push(connect(&args.addr).await?);
    }
    let mut consumers = Vec::new();
    for _ in 0..args.consumers {
        consumers.push(connect(&args.addr).await?);
    }
    let flood = Duration::from_millis(args.duration);
    let after = Duration::from_millis(args.after);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_producer = args.capacity * args.factor / args.producers as f64;
    for (k, client) in producers.into_iter().enumerate() {
        let phase = k as f64 / args.producers as f64;
        tasks.spawn(produce(
            client,
            Arc::clone(&shared),
            args.clone(),
            per_producer,
            phase,
            start,
        ));
    }
    for client in consumers {
        for _ in 0..args.consumer_depth {
            tasks.spawn(consume(client.clone(), Arc::clone(&shared), args.clone()));
        }
    }
    tasks.spawn(probe(Arc::clone(&shared), args.clone(), start + flood));
    let rss = args.server_pid;
    let mut rss_end = f64::NAN;
    let mut rss_peak = f64::NAN;
    tokio::time::sleep_until((start + flood).into()).await;
    shared.flooding.store(false, Ordering::Relaxed);
    let flooded = shared_snapshot(&shared);
    let flood_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(after).await;
    shared.running.store(false, Ordering::Relaxed);
    if let Some(pid) = rss {
        if let Some((now, peak)) = crate::read_rss_mib(pid) {
            rss_end = now;
            rss_peak = peak;
        }
    }
    // Everything in flight ends within a second: pushes and probes are answered or
    // refused, and reserves wait at most 1 s.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let _ = admin.delete_queue(&args.queue).await;

    let (offered, accepted, refused, failed, shed, consumed) = flooded;
    let ack = lock(&shared.push_ack).clone();
    let flood_probe = lock(&shared.probe_flood).clone();
    let flood_hello = lock(&shared.hello_flood).clone();
    let after_probe = lock(&shared.probe_after).clone();
    let mut after_hist = histogram();
    for (_, us) in &after_probe {
        after_hist.saturating_record(*us);
    }
    // Recovery: the end of the last after-flood probe over 10 ms.
    let recovery_ms = after_probe
        .iter()
        .filter(|(_, us)| *us > 10_000)
        .map(|(at, _)| at.as_secs_f64() * 1000.0)
        .fold(0.0, f64::max);
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let value = json!({
        "capacity": args.capacity,
        "factor": args.factor,
        "flood_s": flood_s,
        "offered_per_s": offered as f64 / flood_s,
        "goodput_per_s": accepted as f64 / flood_s,
        "goodput_pct": 100.0 * accepted as f64 / flood_s / args.capacity,
        "refused_per_s": refused as f64 / flood_s,
        "shed_per_s": shed as f64 / flood_s,
        "failed": failed,
        "first_error": *lock(&shared.first_error),
        "push_ack_p50_ms": ms(&ack, 0.5),
        "push_ack_p99_ms": ms(&ack, 0.99),
        "consumed_per_s": consumed as f64 / flood_s,
        "consumed_pct": 100.0 * consumed as f64 / flood_s / args.capacity,
        "probe_flood_p50_ms": ms(&flood_probe, 0.5),
        "probe_flood_p99_ms": ms(&flood_probe, 0.99),
        "probe_flood_max_ms": flood_probe.max() as f64 / 1000.0,
        "hello_flood_p50_ms": ms(&flood_hello, 0.5),
        "hello_flood_p99_ms": ms(&flood_hello, 0.99),
        "probe_after_p99_ms": ms(&after_hist, 0.99),
        "recovery_ms": recovery_ms,
        "rss_peak_mib": rss_peak,
        "rss_end_mib": rss_end,
    });
    Ok(OverloadReport { value })
}

fn shared_snapshot(shared: &Shared) -> (u64, u64, u64, u64, u64, u64) {
    let c = &shared.counters;
    (
        c.offered.load(Ordering::Relaxed),
        c.accepted.load(Ordering::Relaxed),
        c.refused.load(Ordering::Relaxed),
        c.failed.load(Ordering::Relaxed),
        c.shed.load(Ordering::Relaxed),
        c.consumed.load(Ordering::Relaxed),
    )
}

fn note_error(shared: &Shared, err: &ClientError) {
    shared.counters.failed.fetch_add(1, Ordering::Relaxed);
    lock(&shared.first_error).get_or_insert_with(|| err.to_string());
}

/// One producer connection: a push due every `1 / rate` s, sent at once, at most
/// `outstanding` unanswered.
async fn produce(
    client: Client,
    shared: Arc<Shared>,
    args: OverloadArgs,
    rate: f64,
    phase: f64,
    start: Instant,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(args.outstanding));
    let body = Bytes::from(vec![b'x'; args.body]);
    let mut k = 0u64;
    #[allow(clippy::cast_precision_loss)]
    while shared.flooding.load(Ordering::Relaxed) {
        let due = start + Duration::from_secs_f64((k as f64 + phase) / rate);
        k += 1;
        tokio::time::sleep_until(due.into()).await;
        if !shared.flooding.load(Ordering::Relaxed) {
            break;
        }
        shared.counters.offered.fetch_add(1, Ordering::Relaxed);
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            shared.counters.shed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let client = client.clone();
        let shared = Arc::clone(&shared);
        let queue = args.queue.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let result = client.push(&queue, vec![body]).await;
            let counters = &shared.counters;
            match result {
                Ok(_) => {
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    let us = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
                    lock(&shared.push_ack).saturating_record(us.max(1));
                }
                Err(err) if err.code() == Some(ErrorCode::ResourceExhausted) => {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => note_error(&shared, &err),
            }
            drop(slot);
        });
    }
}

/// One consumer: reserve, delete, again.
async fn consume(client: Client, shared: Arc<Shared>, args: OverloadArgs) {
    let options = ReserveOptions {
        n: args.reserve_n,
        timeout_ms: 30_000,
        wait_ms: 1_000,
        delete: false,
        auto_timeout: false,
    };
    while shared.running.load(Ordering::Relaxed) {
        let got = match client.reserve(&args.queue, options).await {
            Ok(got) => got,
            Err(err) => {
                note_error(&shared, &err);
                return;
            }
        };
        if got.is_empty() {
            continue;
        }
        let entries: Vec<(u64, Option<u64>)> =
            got.iter().map(|m| (m.id, Some(m.reservation_id))).collect();
        let n = entries.len() as u64;
        match client.delete_batch(&args.queue, entries).await {
            Ok(_) => {
                if shared.flooding.load(Ordering::Relaxed) {
                    shared.counters.consumed.fetch_add(n, Ordering::Relaxed);
                }
            }
            Err(err) => note_error(&shared, &err),
        }
    }
}

/// `info` every `probe_every`, and a new connection with a Hello every tenth time.
async fn probe(shared: Arc<Shared>, args: OverloadArgs, flood_end: Instant) {
    let Ok(client) = connect(&args.addr).await else {
        return;
    };
    let mut every = tokio::time::interval(Duration::from_millis(args.probe_every.max(1)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut k = 0u64;
    while shared.running.load(Ordering::Relaxed) {
        every.tick().await;
        k += 1;
        let began = Instant::now();
        let ok = if k % 10 == 0 {
            connect(&args.addr).await.is_ok()
        } else {
            client.info(&args.queue).await.is_ok()
        };
        let us = u64::try_from(began.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if !ok {
            shared.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        if began < flood_end {
            let during = if k % 10 == 0 {
                &shared.hello_flood
            } else {
                &shared.probe_flood
            };
            lock(during).saturating_record(us);
        } else {
            lock(&shared.probe_after).push((began - flood_end, us));
        }
    }
}
