//! `ferromq-bench`: the load generator. It drives a server it did not start
//! (ferromq, beanstalkd or Redis, see [`target`]) with one workload definition and
//! reports throughput, latency and, given `--server-pid`, the server's CPU and
//! memory. It is a crate of its own, on ferromq's public client, so the server does
//! not compile its Redis and beanstalkd drivers, HDR histograms and SVG plots.
//!
//! # Workloads
//! - `mixed`: producers and consumers at once; throughput counts messages that went
//!   all the way (pushed, reserved, deleted).
//! - `push`: producers only.
//! - `drain`: first preloads the messages (not timed), then consumers only.
//!
//! # Method
//! `--producers` / `--consumers` connections each keep `--depth` requests in
//! flight (one task per slot, sharing the pipelined connection). A push carries
//! `--batch` messages, a consumer reserves up to `--batch` and deletes them in one
//! call. Every body starts with the time its push was *scheduled* (ns since the run
//! started) and a sequence number; the consumer's receive time minus it is the
//! end-to-end latency, so with `--rate` a stalled server cannot hide queueing delay
//! (no coordinated omission; lateness caused only by the generator's own 1 ms timer
//! is not counted). Latencies go into HDR histograms (µs, 3 significant
//! digits). With `--queues N`, ferromq and Redis workers move to the next queue at
//! every request (consumers then reserve without long-polling), so all N queues are
//! busy; beanstalkd binds a connection to a tube, so connection `i` stays on queue
//! `i mod N`. Every run is bounded by `--messages` and by `--duration` or
//! `--max-time`.

#![allow(
    clippy::cast_precision_loss,
    reason = "a report is floating point: counts and microseconds become f64, exactly below 2^52, which no run comes near"
)]

pub mod overload;
pub mod plot;
pub mod push;
pub mod target;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use target::{Driver, DriverError, Features, Finish, Kind};

/// What the run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Producers and consumers at the same time.
    Mixed,
    /// Producers only.
    Push,
    /// Preload, then consumers only.
    Drain,
}

/// Options of `ferromq-bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Server address. A ferromq server that requires a token gets the one in
    /// the environment variable FERROMQ_TOKEN.
    #[arg(long, default_value = "127.0.0.1:7600")]
    pub addr: String,
    /// The kind of server at `--addr`.
    #[arg(long, value_enum, default_value = "ferromq")]
    pub target: Kind,
    /// What to run.
    #[arg(long, value_enum, default_value = "mixed")]
    pub workload: Workload,
    /// Producer connections.
    #[arg(long, default_value_t = 4)]
    pub producers: usize,
    /// Consumer connections.
    #[arg(long, default_value_t = 4)]
    pub consumers: usize,
    /// Requests in flight per connection (pipelining).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub depth: u32,
    /// Messages per push, and most messages per reserve (1..=100).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub batch: u32,
    /// Body size in bytes (at least 16: timestamp and sequence number).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(16..=1_048_576))]
    pub body: u32,
    /// Messages to push (and, in mixed and drain, to consume).
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Stop after this long instead (e.g. 10s), whatever `--messages` says.
    #[arg(long, value_parser = ferromq::config::parse_duration_ms)]
    pub duration: Option<u64>,
    /// Offered load in messages per second over all producers (0: as fast as
    /// the server acknowledges).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Number of queues.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub queues: u32,
    /// Long-poll wait of a reserve. Default: 1s for ferromq, whose long polls do not
    /// hold up other requests on the connection; 0 for beanstalkd and Redis, whose
    /// blocking reserves stall every request pipelined behind them. A consumer whose
    /// non-blocking reserve finds nothing sleeps 1 ms before the next.
    #[arg(long, value_parser = ferromq::config::parse_duration_ms)]
    pub wait: Option<u64>,
    /// Lease of a reservation.
    #[arg(long, value_parser = ferromq::config::parse_duration_ms, default_value = "30s")]
    pub lease: u64,
    /// Queue name prefix (default: bench-PID, so runs never share queues).
    #[arg(long)]
    pub queue_prefix: Option<String>,
    /// Hard limit on the run's length.
    #[arg(long, value_parser = ferromq::config::parse_duration_ms, default_value = "120s")]
    pub max_time: u64,
    /// Report CPU time and memory of this server process (from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Draw throughput and latency over time into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Label for the report and the plot.
    #[arg(long)]
    pub label: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// ferromq: pushes cycle through this many priorities (8, 9, ..., wrapping
    /// to 0), to measure what priorities cost; 1 sends none (all 8).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub priorities: u8,
    /// ferromq: reserves ask for `timeout = auto` (lease advice) instead of
    /// `--lease`.
    #[arg(long)]
    pub auto_timeout: bool,
    /// ferromq: pushes cycle through this many dispatch keys (fair dispatch;
    /// 0: none).
    #[arg(long, default_value_t = 0)]
    pub keys: u32,
    /// ferromq: how consumers finish a message: `delete`, `hand-off` (an
    /// atomic hand-off to one follow-up in `QUEUE.next`, a request per
    /// message), `push-then-delete` (the same follow-ups pushed, then the
    /// messages deleted, a request each per reserve: not atomic), or
    /// `push-then-delete-each` (the same, a push and a delete per message).
    #[arg(long, value_enum, default_value_t = Finish::Delete)]
    pub finish: Finish,
    /// Leave the queues on the server after a mixed or drain run (they are removed
    /// by default): to measure against a backlog pushed beforehand, or to look at
    /// what is left.
    #[arg(long)]
    pub keep_queues: bool,
}

/// A failed run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The server or connection failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// Writing the plot failed.
    #[error("cannot write the plot: {0}")]
    Plot(std::io::Error),
    /// The options do not make sense together.
    #[error("{0}")]
    Usage(String),
}

/// A latency summary in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Percentiles and maximum, ms.
    pub p50: f64,
    /// 90th percentile, ms.
    pub p90: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// 99.9th percentile, ms.
    pub p999: f64,
    /// Maximum, ms.
    pub max: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }

    fn json(&self) -> Value {
        json!({"count": self.count, "p50": self.p50, "p90": self.p90, "p99": self.p99,
               "p99_9": self.p999, "max": self.max})
    }
}

/// One second of the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Seconds since the timed part started (end of the interval).
    pub t: f64,
    /// Pushes acknowledged per second.
    pub pushed_per_s: f64,
    /// Messages deleted per second.
    pub consumed_per_s: f64,
    /// End-to-end latency in the interval, ms.
    pub e2e_p50: f64,
    /// End-to-end p99 in the interval, ms.
    pub e2e_p99: f64,
    /// Push acknowledgement p99 in the interval, ms.
    pub push_p99: f64,
}

/// What the server process used during the timed part.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerUse {
    /// User + system CPU seconds.
    pub cpu_s: f64,
    /// CPU seconds per million messages.
    pub cpu_s_per_million: f64,
    /// Resident memory at the end, MiB.
    pub rss_mib: f64,
    /// Peak resident memory, MiB.
    pub peak_rss_mib: f64,
    /// Context switches (voluntary + involuntary) of the server's threads.
    pub context_switches: u64,
    /// Context switches per message.
    pub context_switches_per_msg: f64,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Label (or target + workload).
    pub label: String,
    /// The options.
    pub args: BenchArgs,
    /// Pushes acknowledged (messages).
    pub pushed: u64,
    /// Messages deleted.
    pub consumed: u64,
    /// Length of the timed part, s.
    pub elapsed_s: f64,
    /// The workload's messages per second (consumed, or pushed for `push`).
    pub throughput: f64,
    /// Reserve-to-delete: end-to-end latency.
    pub e2e: Latency,
    /// Push request to acknowledgement.
    pub push_ack: Latency,
    /// Per second.
    pub timeline: Vec<Sample>,
    /// Server CPU and memory, if `--server-pid` was given.
    pub server: Option<ServerUse>,
    /// Group-commit flushes (fsyncs) during the run (ferromq only).
    pub fsyncs: Option<u64>,
}

impl BenchArgs {
    /// The producers and consumers the workload runs: a drain has no producers
    /// (its preload is not timed) and a push run no consumers, whatever was given.
    pub fn workers(&self) -> (usize, usize) {
        match self.workload {
            Workload::Drain => (0, self.consumers),
            Workload::Push => (self.producers, 0),
            Workload::Mixed => (self.producers, self.consumers),
        }
    }
}

impl Report {
    /// The report as JSON.
    pub fn json(&self) -> Value {
        let a = &self.args;
        let (producers, consumers) = a.workers();
        json!({
            "label": self.label,
            "target": a.target.name(),
            "workload": format!("{:?}", a.workload).to_lowercase(),
            "producers": producers, "consumers": consumers, "depth": a.depth,
            "batch": a.batch, "body_bytes": a.body, "queues": a.queues, "rate": a.rate,
            "pushed": self.pushed, "consumed": self.consumed,
            "elapsed_s": self.elapsed_s, "throughput_msgs_per_s": self.throughput,
            "fsyncs": self.fsyncs,
            "fsyncs_per_s": self.fsyncs.map(|f| f as f64 / self.elapsed_s),
            "message_writes_per_fsync": self.fsyncs.map(|f| (self.pushed + self.consumed) as f64 / f.max(1) as f64),
            "e2e_latency_ms": self.e2e.json(), "push_ack_latency_ms": self.push_ack.json(),
            "server": self.server.map(|s| json!({
                "cpu_s": s.cpu_s, "cpu_s_per_million_msgs": s.cpu_s_per_million,
                "rss_mib": s.rss_mib, "peak_rss_mib": s.peak_rss_mib,
                "context_switches": s.context_switches,
                "context_switches_per_msg": s.context_switches_per_msg,
            })),
            "timeline": self.timeline.iter().map(|s| json!({
                "t": s.t, "pushed_per_s": s.pushed_per_s, "consumed_per_s": s.consumed_per_s,
                "e2e_p50_ms": s.e2e_p50, "e2e_p99_ms": s.e2e_p99, "push_p99_ms": s.push_p99,
            })).collect::<Vec<_>>(),
        })
    }

    /// A human summary.
    pub fn summary(&self) -> String {
        let a = &self.args;
        let (producers, consumers) = a.workers();
        let mut out = format!(
            "{}: {} {}, {} producer(s), {} consumer(s), depth {}, batch {}, {} B bodies, {} queue(s){}\n",
            self.label,
            a.target.name(),
            format!("{:?}", a.workload).to_lowercase(),
            producers,
            consumers,
            a.depth,
            a.batch,
            a.body,
            a.queues,
            if a.rate > 0 { format!(", offered {} msg/s", a.rate) } else { String::new() },
        );
        out += &format!(
            "  {:.0} msg/s  ({} pushed, {} consumed in {:.2} s)\n",
            self.throughput, self.pushed, self.consumed, self.elapsed_s
        );
        let line = |name: &str, l: &Latency| {
            format!(
                "  {name:<13} p50 {:.3} ms  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (n={})\n",
                l.p50, l.p90, l.p99, l.p999, l.max, l.count
            )
        };
        if self.e2e.count > 0 {
            out += &line("end-to-end", &self.e2e);
        }
        if self.push_ack.count > 0 {
            out += &line("push ack", &self.push_ack);
        }
        if let Some(s) = self.server {
            out += &format!(
                "  server: {:.2} CPU s ({:.2} CPU s per million messages), {:.1} context switches per message, RSS {:.1} MiB, peak {:.1} MiB\n",
                s.cpu_s, s.cpu_s_per_million, s.context_switches_per_msg, s.rss_mib, s.peak_rss_mib
            );
        }
        if let Some(f) = self.fsyncs {
            out += &format!(
                "  fsyncs: {f} ({:.0}/s, {:.1} message writes (pushes + deletes) per fsync)\n",
                f as f64 / self.elapsed_s,
                (self.pushed + self.consumed) as f64 / f.max(1) as f64
            );
        }
        out
    }
}

/// The body of this crate's binaries: runs `work` on a multi-threaded runtime and
/// prints its report with `print`, or the error; the exit code says which.
pub fn main_with<T, E: std::fmt::Display>(
    work: impl std::future::Future<Output = Result<T, E>>,
    print: impl FnOnce(T),
) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(report) => {
            print(report);
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub(crate) fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 hour at 3 significant digits; the bounds are constants that
    // hdrhistogram accepts.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// State shared by the workers and the sampler.
struct Shared {
    epoch: Instant,
    target: u64,
    issued: AtomicU64,
    pushed: AtomicU64,
    consumed: AtomicU64,
    stop: AtomicBool,
    deadline: Instant,
    /// Histograms of the current one-second interval.
    e2e: Mutex<Histogram<u64>>,
    push_ack: Mutex<Histogram<u64>>,
    error: Mutex<Option<DriverError>>,
}

impl Shared {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    fn fail(&self, err: DriverError) {
        let mut slot = self
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(err);
        }
        self.stop.store(true, Ordering::Relaxed);
    }

    fn since_epoch_ns(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs a benchmark.
///
/// # Errors
/// If the server cannot be reached or fails a request, or the plot cannot be written.
pub async fn run(args: BenchArgs) -> Result<Report, BenchError> {
    let prefix = args
        .queue_prefix
        .clone()
        .unwrap_or_else(|| format!("bench-{}", std::process::id()));
    let queues: Arc<Vec<String>> =
        Arc::new((0..args.queues).map(|i| format!("{prefix}-{i}")).collect());
    let (producers, consumers) = args.workers();
    if (args.workload != Workload::Drain && producers == 0)
        || (args.workload != Workload::Push && consumers == 0)
    {
        return Err(BenchError::Usage(
            "this workload needs producers and/or consumers > 0".into(),
        ));
    }
    if args.target != Kind::Ferromq
        && (args.priorities > 1
            || args.auto_timeout
            || args.keys > 0
            || args.finish != Finish::Delete)
    {
        return Err(BenchError::Usage(
            "--priorities, --auto-timeout, --keys and --finish are ferromq features".into(),
        ));
    }
    let features = Arc::new(Features::new(
        args.priorities,
        args.auto_timeout,
        args.keys,
        args.finish,
    ));
    let label = args
        .label
        .clone()
        .unwrap_or_else(|| format!("{} {:?}", args.target.name(), args.workload).to_lowercase());

    if args.workload == Workload::Drain {
        preload(&args, &queues).await?;
    }

    let max = Duration::from_millis(args.duration.unwrap_or(args.max_time).min(args.max_time));
    let target = if args.duration.is_some() {
        u64::MAX
    } else {
        args.messages
    };
    let epoch = Instant::now();
    let shared = Arc::new(Shared {
        epoch,
        target,
        issued: AtomicU64::new(0),
        pushed: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        deadline: epoch + max,
        e2e: Mutex::new(histogram()),
        push_ack: Mutex::new(histogram()),
        error: Mutex::new(None),
    });
    let cpu_before = args.server_pid.and_then(read_cpu_s);
    let switches_before = args.server_pid.and_then(read_context_switches);
    let stats_conn = Driver::connect(args.target, &args.addr, &queues[0]).await?;
    let flushes_before = stats_conn.flushes().await?;

    let mut tasks = tokio::task::JoinSet::new();
    let per_worker_rate = if args.rate > 0 && producers > 0 {
        Some(args.rate as f64 / (producers as f64 * f64::from(args.depth)))
    } else {
        None
    };
    let depth = usize::try_from(args.depth).unwrap_or(1);
    for c in 0..producers {
        let conn = Driver::connect(args.target, &args.addr, &queues[c % queues.len()])
            .await?
            .with_features(&features);
        for w in 0..args.depth {
            let (conn, queues, shared, args) =
                (conn.clone(), queues.clone(), shared.clone(), args.clone());
            let offset = (c as u64) << 32 | u64::from(w);
            let spread = Spread::new(&args, c, w, producers * depth);
            let workers = producers as f64 * f64::from(args.depth);
            let pacing = per_worker_rate.map(|rate| Pacing {
                rate,
                phase: (c as f64 * f64::from(args.depth) + f64::from(w)) / workers,
            });
            tasks.spawn(async move {
                produce(conn, queues, spread, shared, args, pacing, offset).await;
            });
        }
    }
    let consume_target = if args.workload == Workload::Push {
        0
    } else {
        target
    };
    for c in 0..consumers {
        let conn = Driver::connect(args.target, &args.addr, &queues[c % queues.len()])
            .await?
            .with_features(&features);
        for w in 0..args.depth {
            let (conn, queues, shared, args) =
                (conn.clone(), queues.clone(), shared.clone(), args.clone());
            let spread = Spread::new(&args, c, w, consumers * depth);
            tasks.spawn(async move {
                consume(conn, queues, spread, shared, args, consume_target).await;
            });
        }
    }

    let progress = !args.quiet && !args.json && std::io::stderr().is_terminal();
    let (timeline, e2e_total, push_total, done_at) =
        sample(&shared, &mut tasks, &args, progress).await;
    let elapsed_s = done_at.duration_since(epoch).as_secs_f64().max(1e-9);
    if let Some(err) = lock(&shared.error).take() {
        return Err(err.into());
    }
    let flushes_after = stats_conn.flushes().await?;
    let fsyncs = flushes_before
        .zip(flushes_after)
        .map(|(before, after)| after.saturating_sub(before));
    let server = args.server_pid.and_then(|pid| {
        let cpu_s = read_cpu_s(pid)? - cpu_before?;
        let context_switches = read_context_switches(pid)?.saturating_sub(switches_before?);
        let (rss_mib, peak_rss_mib) = read_rss_mib(pid)?;
        let counted = match args.workload {
            Workload::Push => shared.pushed.load(Ordering::Relaxed),
            _ => shared.consumed.load(Ordering::Relaxed),
        };
        Some(ServerUse {
            cpu_s,
            cpu_s_per_million: cpu_s / (counted.max(1) as f64 / 1e6),
            rss_mib,
            peak_rss_mib,
            context_switches,
            context_switches_per_msg: context_switches as f64 / counted.max(1) as f64,
        })
    });
    // Leave nothing behind on the server (best effort).
    if args.workload != Workload::Push && !args.keep_queues {
        if let Ok(conn) = Driver::connect(args.target, &args.addr, &queues[0]).await {
            for queue in queues.iter() {
                let _ = conn.remove_queue(queue).await;
                if args.finish != Finish::Delete {
                    let _ = conn.remove_queue(&target::follow_up_queue(queue)).await;
                }
            }
        }
    }
    let pushed = shared.pushed.load(Ordering::Relaxed);
    let consumed = shared.consumed.load(Ordering::Relaxed);
    let counted = if args.workload == Workload::Push {
        pushed
    } else {
        consumed
    };
    let report = Report {
        label,
        pushed,
        consumed,
        elapsed_s,
        throughput: counted as f64 / elapsed_s,
        e2e: Latency::of(&e2e_total),
        push_ack: Latency::of(&push_total),
        timeline,
        server,
        fsyncs,
        args,
    };
    if let Some(path) = &report.args.plot {
        let svg = plot::svg(&report).map_err(|e| BenchError::Plot(std::io::Error::other(e)))?;
        std::fs::write(path, svg).map_err(BenchError::Plot)?;
    }
    Ok(report)
}

/// Fills the queues before a drain run, as fast as the server takes it.
async fn preload(args: &BenchArgs, queues: &[String]) -> Result<(), BenchError> {
    let per_queue = args.messages.div_ceil(queues.len() as u64);
    let conns = args.producers.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    let epoch = Instant::now();
    for (i, queue) in queues.iter().enumerate() {
        let conn = Driver::connect(args.target, &args.addr, queue).await?;
        let (queue, batch, body) = (queue.clone(), u64::from(args.batch), args.body);
        let mut left = per_queue;
        let mut seq = (i as u64) << 40;
        // A bounded number of concurrent pushes per queue.
        let per_task = left
            .div_ceil(u64::try_from(conns).unwrap_or(1) * 8)
            .max(batch);
        while left > 0 {
            let n = left.min(per_task);
            left -= n;
            let (conn, queue) = (conn.clone(), queue.clone());
            let start_seq = seq;
            seq += n;
            tasks.spawn(async move {
                let mut sent = 0;
                while sent < n {
                    let k = batch.min(n - sent);
                    let bodies = (0..k)
                        .map(|j| make_body(body, 0, start_seq + sent + j))
                        .collect();
                    conn.push(&queue, bodies).await?;
                    sent += k;
                }
                Ok::<(), DriverError>(())
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(err)) = done {
            return Err(err.into());
        }
    }
    tracing::debug!(secs = epoch.elapsed().as_secs_f64(), "preloaded");
    Ok(())
}

/// A body: 8 bytes of push time (ns since the run's epoch), 8 of sequence, padding.
fn make_body(size: u32, sent_ns: u64, seq: u64) -> Bytes {
    let size = usize::try_from(size).unwrap_or(16).max(16);
    let mut body = BytesMut::with_capacity(size);
    body.put_u64(sent_ns);
    body.put_u64(seq);
    body.resize(size, b'x');
    body.freeze()
}

fn body_time_ns(body: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(body.get(..8)?.try_into().ok()?))
}

/// Which queue a worker uses for its next request. ferromq and Redis name the queue
/// in every request, so their workers move to another queue at every request: the
/// `workers` workers of a role (producers, or consumers) stride through the queues
/// together, worker `i` taking queues `i, i + workers, i + 2 * workers, ...`, so
/// every request goes to another queue and all queues are visited evenly. A
/// beanstalkd connection is bound to one tube, so connection `c` stays on queue
/// `c mod N`.
struct Spread {
    next: usize,
    step: usize,
    len: usize,
}

impl Spread {
    fn new(args: &BenchArgs, connection: usize, worker: u32, workers: usize) -> Spread {
        let len = usize::try_from(args.queues).unwrap_or(1).max(1);
        let depth = usize::try_from(args.depth).unwrap_or(1);
        if args.target == Kind::Beanstalkd {
            return Spread {
                next: connection % len,
                step: 0,
                len,
            };
        }
        Spread {
            next: (connection * depth + usize::try_from(worker).unwrap_or(0)) % len,
            step: workers.max(1) % len,
            len,
        }
    }

    fn take<'a>(&mut self, queues: &'a [String]) -> &'a str {
        let queue = &queues[self.next % queues.len()];
        self.next = (self.next + self.step) % self.len;
        queue
    }

    fn moves(&self) -> bool {
        self.len > 1 && self.step > 0
    }
}

/// An offered-rate schedule for one producer worker: its calls are due every
/// `batch / rate` seconds, shifted by `phase` of that interval, so the workers
/// together send evenly instead of in bursts.
#[derive(Debug, Clone, Copy)]
struct Pacing {
    rate: f64,
    phase: f64,
}

async fn produce(
    conn: Driver,
    queues: Arc<Vec<String>>,
    mut spread: Spread,
    shared: Arc<Shared>,
    args: BenchArgs,
    pacing: Option<Pacing>,
    seq_base: u64,
) {
    let batch = u64::from(args.batch);
    let mut seq = seq_base << 20;
    let mut calls = 0u64;
    let mut last_done = shared.epoch;
    while shared.running() {
        let claimed = shared.issued.fetch_add(batch, Ordering::Relaxed);
        if claimed >= shared.target {
            break;
        }
        let n = batch.min(shared.target - claimed);
        // With an offered rate, this worker's k-th call is due at k × batch / rate.
        let scheduled = match pacing {
            Some(pacing) => {
                let due = shared.epoch
                    + Duration::from_secs_f64(
                        (calls as f64 + pacing.phase) * batch as f64 / pacing.rate,
                    );
                tokio::time::sleep_until(due.into()).await;
                // Late because the previous push was slow: count from `due`, so a
                // stalling server cannot hide its queueing delay. Late only because
                // tokio's timer has 1 ms granularity: count from the actual send.
                if last_done > due {
                    due
                } else {
                    Instant::now()
                }
            }
            None => Instant::now(),
        };
        calls += 1;
        let sent_ns = shared.since_epoch_ns(scheduled);
        let bodies = (0..n)
            .map(|i| make_body(args.body, sent_ns, seq + i))
            .collect();
        seq += n;
        if let Err(err) = conn.push(spread.take(&queues), bodies).await {
            shared.fail(err);
            return;
        }
        last_done = Instant::now();
        let took_us =
            u64::try_from(last_done.duration_since(scheduled).as_micros()).unwrap_or(u64::MAX);
        lock(&shared.push_ack).saturating_record(took_us.max(1));
        shared.pushed.fetch_add(n, Ordering::Relaxed);
    }
}

async fn consume(
    conn: Driver,
    queues: Arc<Vec<String>>,
    mut spread: Spread,
    shared: Arc<Shared>,
    args: BenchArgs,
    target: u64,
) {
    // A worker that moves between queues must not park on an empty one.
    let wait_ms = args.wait.unwrap_or(match args.target {
        Kind::Ferromq if !spread.moves() => 1000,
        _ => 0,
    });
    while shared.running() && shared.consumed.load(Ordering::Relaxed) < target {
        let queue = spread.take(&queues);
        let got = match conn.reserve(queue, args.batch, args.lease, wait_ms).await {
            Ok(got) => got,
            Err(err) => {
                shared.fail(err);
                return;
            }
        };
        if got.is_empty() {
            if wait_ms == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            continue;
        }
        let now_ns = shared.since_epoch_ns(Instant::now());
        {
            let mut h = lock(&shared.e2e);
            for m in &got {
                if let Some(sent) = body_time_ns(&m.body) {
                    h.saturating_record((now_ns.saturating_sub(sent) / 1000).max(1));
                }
            }
        }
        let n = got.len() as u64;
        if let Err(err) = conn
            .delete(queue, got.into_iter().map(|m| m.handle).collect())
            .await
        {
            shared.fail(err);
            return;
        }
        if shared.consumed.fetch_add(n, Ordering::Relaxed) + n >= target {
            shared.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// Samples every second until the workers finish; returns the timeline, the total
/// histograms and when the work was done.
async fn sample(
    shared: &Arc<Shared>,
    tasks: &mut tokio::task::JoinSet<()>,
    args: &BenchArgs,
    progress: bool,
) -> (Vec<Sample>, Histogram<u64>, Histogram<u64>, Instant) {
    let mut timeline = Vec::new();
    let mut e2e_total = histogram();
    let mut push_total = histogram();
    let mut last = (shared.epoch, 0u64, 0u64);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut done_at = None;
    // indicatif's bar on stderr (it draws only on a terminal); cleared at the end,
    // so no stale line is left above the report.
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(1000);
        bar.set_style(
            indicatif::ProgressStyle::with_template("[{bar:30}] {percent:>3}%  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("#>."),
        );
        bar
    });
    let take = |timeline: &mut Vec<Sample>,
                e2e_total: &mut Histogram<u64>,
                push_total: &mut Histogram<u64>,
                last: &mut (Instant, u64, u64)| {
        let now = Instant::now();
        let pushed = shared.pushed.load(Ordering::Relaxed);
        let consumed = shared.consumed.load(Ordering::Relaxed);
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-9);
        let e2e = std::mem::replace(&mut *lock(&shared.e2e), histogram());
        let push = std::mem::replace(&mut *lock(&shared.push_ack), histogram());
        let ms = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        timeline.push(Sample {
            t: now.duration_since(shared.epoch).as_secs_f64(),
            pushed_per_s: (pushed - last.1) as f64 / dt,
            consumed_per_s: (consumed - last.2) as f64 / dt,
            e2e_p50: ms(&e2e, 0.5),
            e2e_p99: ms(&e2e, 0.99),
            push_p99: ms(&push, 0.99),
        });
        let _ = e2e_total.add(&e2e);
        let _ = push_total.add(&push);
        *last = (now, pushed, consumed);
        dt
    };
    loop {
        tokio::select! {
            joined = tasks.join_next() => {
                if joined.is_none() {
                    break;
                }
                if shared.stop.load(Ordering::Relaxed) && done_at.is_none() {
                    done_at = Some(Instant::now());
                }
            }
            _ = tick.tick() => {
                take(&mut timeline, &mut e2e_total, &mut push_total, &mut last);
                if let Some(bar) = &bar {
                    draw_progress(bar, shared, args, timeline.last().copied().unwrap_or_default());
                }
            }
        }
    }
    let end = done_at.unwrap_or_else(Instant::now);
    // The tail after the last whole second: its latencies count in the totals, but
    // a rate over a fraction of a second (often nothing, as the workers stopped)
    // is not a sample of the run.
    let tail = take(&mut timeline, &mut e2e_total, &mut push_total, &mut last);
    if tail < 0.5 && timeline.len() > 1 {
        timeline.pop();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    (timeline, e2e_total, push_total, end)
}

/// Moves the bar to the run's progress and says what the last second did.
fn draw_progress(bar: &indicatif::ProgressBar, shared: &Shared, args: &BenchArgs, s: Sample) {
    let done = match args.workload {
        Workload::Push => shared.pushed.load(Ordering::Relaxed),
        _ => shared.consumed.load(Ordering::Relaxed),
    };
    let fraction = match args.duration {
        Some(ms) => shared.epoch.elapsed().as_secs_f64() * 1000.0 / ms as f64,
        None => done as f64 / args.messages.max(1) as f64,
    }
    .clamp(0.0, 1.0);
    // In 0..=1000 (`fraction` is clamped to 0..=1): the cast is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    bar.set_position((fraction * 1000.0).round() as u64);
    bar.set_message(format!(
        "{done} msgs; last second: push {:.0}/s, consume {:.0}/s, e2e p99 {:.2} ms",
        s.pushed_per_s, s.consumed_per_s, s.e2e_p99
    ));
}

/// User + system CPU seconds of a process (Linux /proc; USER_HZ is 100 there).
fn read_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Context switches (voluntary + involuntary) of a process: the sum over its
/// threads alive now (Linux /proc/PID/task/*/status), so the switches of a thread
/// that ended during the run are not counted.
fn read_context_switches(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(status) = std::fs::read_to_string(task.ok()?.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        for line in status.lines() {
            if let Some(rest) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += rest.trim().parse::<u64>().ok()?;
            }
        }
    }
    Some(total)
}

/// (VmRSS, VmHWM) of a process in MiB.
pub(crate) fn read_rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_carry_the_push_time_in_the_body() {
        let body = make_body(100, 123_456, 7);
        assert_eq!(body.len(), 100);
        assert_eq!(body_time_ns(&body), Some(123_456));
        assert_eq!(body_time_ns(b"short"), None);
    }

    #[test]
    fn should_read_this_process_from_proc() {
        let pid = std::process::id();
        assert!(read_cpu_s(pid).is_some_and(|s| s >= 0.0));
        let before = read_context_switches(pid).expect("task status");
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(read_context_switches(pid).expect("task status") > before);
        let (rss, peak) = read_rss_mib(pid).expect("status");
        assert!(rss > 0.0 && peak >= rss);
    }
}
