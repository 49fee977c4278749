//! Telemetry: the server's metrics registry and its Prometheus exposition at
//! `/metrics` (on the HTTP API's listener and on `--metrics-listen`), built on the
//! primitives of [`crate::metrics`], which the layers below write.
//!
//! The exposition is the OpenMetrics text format, written by the
//! `prometheus-client` crate (Prometheus scrapes it; so does any OpenMetrics
//! parser). Every name starts with `ferromq_`, counters end in `_total`, and times
//! are in seconds and sizes in bytes; the one exception is the process figures,
//! which carry the names every Prometheus client library gives them
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...), so that
//! the usual dashboards find them.
//!
//! # Where the figures come from
//! - **Per queue** ([`QueueMetrics`]): the queue's actor publishes its state's
//!   gauges and [`crate::queue::state::Counters`] after each turn that changed
//!   something (a few relaxed stores), and the push engine counts deliveries by
//!   outcome. A scrape reads them without asking any actor.
//! - **Per request**: each front end records the operation, its result code and
//!   how long it took ([`Metrics::request`]).
//! - **Group commit**: the committer thread measures each flush
//!   ([`CommitMetrics`]).
//! - **Connections and bytes**: the acceptor and each front end.
//! - **At scrape time**: queue count, uptime, the data directory's size on disk
//!   (a walk of its files), and the process's CPU time, resident memory and open
//!   files from `/proc/self`.
//!
//! # Cardinality
//! Per-queue series are bounded by `--metrics-max-queues` (default
//! [`DEFAULT_MAX_QUEUE_SERIES`]): the first that many queues in name order get
//! series of their own, and the others are summed into one series with the label
//! `queue="(other)"` (not a valid queue name, so it cannot clash), so a server with
//! 100,000 queues exposes at most `cap + 1` series per per-queue metric. Operations
//! are a fixed set and result codes a closed enum, so the request series are
//! bounded by construction.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry as Prometheus, Unit};

use crate::metrics::{
    dir_size, epoch_ms, float, rates_over, CommitMetrics, ProcessFigures, Protocol, QueueFigures,
    Rates, TotalsSample, DEFAULT_MAX_QUEUE_SERIES, OTHER_QUEUES,
};
use crate::queue::Registry;

type ProtocolLabel = [(&'static str, &'static str); 1];
type OpLabels = [(&'static str, &'static str); 2];
type RequestLabels = [(&'static str, &'static str); 3];

/// How the server's metrics are exposed.
#[derive(Debug, Clone)]
pub struct MetricsOptions {
    /// Queues with series of their own; the rest are summed.
    pub max_queue_series: usize,
    /// The data directory, whose size is reported (`None`: not reported).
    pub data_dir: Option<PathBuf>,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        MetricsOptions {
            max_queue_series: DEFAULT_MAX_QUEUE_SERIES,
            data_dir: None,
        }
    }
}

/// How many one-second samples of the totals are kept for rates: the last five
/// minutes (`stats` uses the last 10 s, the dashboard's chart all of them; 32
/// bytes each).
pub const RATE_SAMPLES: usize = 301;

/// Binary operations with counters of their own in [`Metrics::binary_request`]
/// (indexes of `binary::dispatch::op_label`).
pub const BINARY_OPS: usize = 24;
/// Result codes with counters of their own there (0: OK, else the `ErrorCode`).
pub const BINARY_CODES: usize = 24;

/// The binary protocol's request counters and histograms, found by index: each
/// is the family's own metric (a clone shares its count), looked up once, so a
/// request costs an atomic add and a histogram observation, not two hashed
/// lookups of its labels. Measured on the 2-vCPU VM, push 4 × 32 against the
/// build before metrics: with the lookups 17.4–18.0 server CPU µs per message
/// against 14.4–15.8; with these cells 12.2–15.3 against 13.1–13.8 (noise).
struct BinaryCells {
    counters: Vec<std::sync::OnceLock<Counter>>,
    durations: Vec<std::sync::OnceLock<Histogram>>,
}

/// The server's metrics: the request and connection families the front ends
/// record into, and the registry that a scrape encodes.
pub struct Metrics {
    prometheus: Prometheus,
    requests: Family<RequestLabels, Counter>,
    durations: Family<OpLabels, Histogram, fn() -> Histogram>,
    received: Family<ProtocolLabel, Counter>,
    sent: Family<ProtocolLabel, Counter>,
    accepted: Family<ProtocolLabel, Counter>,
    refused: Family<ProtocolLabel, Counter>,
    closed: Family<ProtocolLabel, Counter>,
    queues: Registry,
    started: Instant,
    data_dir: Option<PathBuf>,
    commit: Option<CommitMetrics>,
    /// One sample of the totals a second ([`Metrics::sample`]), oldest first.
    samples: std::sync::Mutex<std::collections::VecDeque<TotalsSample>>,
    binary: BinaryCells,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn request_histogram() -> Histogram {
    // 50 µs .. ~26 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

impl Metrics {
    /// The metrics of a server over `queues`.
    pub fn new(queues: Registry, options: MetricsOptions) -> Self {
        let mut root = Prometheus::default();
        root.register_collector(Box::new(ProcessCollector {
            started_at: SystemTime::now(),
        }));
        let prometheus = root.sub_registry_with_prefix("ferromq");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<OpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            request_histogram,
        );
        let received = Family::<ProtocolLabel, Counter>::default();
        let sent = Family::<ProtocolLabel, Counter>::default();
        let accepted = Family::<ProtocolLabel, Counter>::default();
        let refused = Family::<ProtocolLabel, Counter>::default();
        let closed = Family::<ProtocolLabel, Counter>::default();
        prometheus.register(
            "requests",
            "Requests answered, by protocol, operation and result code",
            requests.clone(),
        );
        prometheus.register_with_unit(
            "request_duration",
            "Time from reading a request to having its answer, by protocol and operation",
            Unit::Seconds,
            durations.clone(),
        );
        prometheus.register_with_unit(
            "received",
            "Bytes of requests read (binary: frames; HTTP: bodies)",
            Unit::Bytes,
            received.clone(),
        );
        prometheus.register_with_unit(
            "sent",
            "Bytes of answers written (binary: frames; HTTP: bodies)",
            Unit::Bytes,
            sent.clone(),
        );
        prometheus.register(
            "connections_accepted",
            "Connections admitted",
            accepted.clone(),
        );
        prometheus.register(
            "connections_refused",
            "Connections refused at --max-connections",
            refused.clone(),
        );
        prometheus.register(
            "connections_closed",
            "Connections that ended",
            closed.clone(),
        );
        let commit = queues.store().commit_metrics();
        if let Some(commit) = commit.clone() {
            prometheus.register(
                "commit_requests_per_flush",
                "Commit requests (one per queue turn that wrote) each group-commit flush covered",
                commit.requests,
            );
            prometheus.register_with_unit(
                "commit_flush_duration",
                "Time of each group-commit flush: sled's log write and the fdatasync",
                Unit::Seconds,
                commit.seconds,
            );
        }
        let data_dir = options.data_dir.clone();
        prometheus.register_collector(Box::new(ServerCollector {
            queues: queues.clone(),
            options,
            started: Instant::now(),
            accepted: accepted.clone(),
            closed: closed.clone(),
        }));
        Metrics {
            prometheus: root,
            requests,
            durations,
            received,
            sent,
            accepted,
            refused,
            closed,
            queues,
            started: Instant::now(),
            data_dir,
            commit,
            samples: std::sync::Mutex::new(std::collections::VecDeque::with_capacity(RATE_SAMPLES)),
            binary: BinaryCells {
                counters: (0..BINARY_OPS * BINARY_CODES)
                    .map(|_| std::sync::OnceLock::new())
                    .collect(),
                durations: (0..BINARY_OPS)
                    .map(|_| std::sync::OnceLock::new())
                    .collect(),
            },
        }
    }

    /// Records one answered binary request: `op` and `code` are (index, label)
    /// pairs; an index past the cells falls back to [`Metrics::request`].
    pub fn binary_request(
        &self,
        op: (usize, &'static str),
        code: (usize, &'static str),
        took: Duration,
    ) {
        let (op_index, op_name) = op;
        let (code_index, code_name) = code;
        let cell = (op_index < BINARY_OPS && code_index < BINARY_CODES)
            .then(|| op_index * BINARY_CODES + code_index)
            .and_then(|i| {
                Some((
                    self.binary.counters.get(i)?,
                    self.binary.durations.get(op_index)?,
                ))
            });
        let Some((counter, duration)) = cell else {
            self.request(Protocol::Binary, op_name, code_name, took);
            return;
        };
        let protocol = Protocol::Binary.label();
        counter
            .get_or_init(|| {
                self.requests
                    .get_or_create(&[("protocol", protocol), ("op", op_name), ("code", code_name)])
                    .clone()
            })
            .inc();
        duration
            .get_or_init(|| {
                self.durations
                    .get_or_create(&[("protocol", protocol), ("op", op_name)])
                    .clone()
            })
            .observe(took.as_secs_f64());
    }

    /// The figures of every queue summed, now.
    pub fn totals(&self) -> QueueFigures {
        let now_ms = epoch_ms(SystemTime::now());
        let mut total = QueueFigures::default();
        self.queues
            .each_metrics(|queue| total.add(&queue.read(now_ms)));
        total
    }

    /// Takes one sample of the totals for the rates (the server calls it every
    /// second); keeps the last [`RATE_SAMPLES`].
    pub fn sample(&self) {
        let total = self.totals();
        let sample = TotalsSample {
            at_s: self.started.elapsed().as_secs_f64(),
            pushed: total.pushed,
            reserved: total.reservations,
            deleted: total.deleted,
        };
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if samples.len() == RATE_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> Vec<TotalsSample> {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }

    /// Messages per second over the last `window` samples (zero until there are
    /// two). A queue deleted meanwhile takes its counts with it; a rate never goes
    /// below zero.
    pub fn rates(&self, window: usize) -> Rates {
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rates_over(samples.make_contiguous(), window)
    }

    /// Group commit since start: mean flush time in seconds and mean commit
    /// requests per flush (`None` without a committer or before the first flush).
    pub fn commit_averages(&self) -> Option<(f64, f64)> {
        self.commit.as_ref()?.averages()
    }

    /// Bytes of the data directory's files (`None` when not configured).
    pub fn data_dir_bytes(&self) -> Option<u64> {
        self.data_dir.as_deref().map(dir_size)
    }

    /// Records one answered request.
    pub fn request(
        &self,
        protocol: Protocol,
        op: &'static str,
        code: &'static str,
        took: Duration,
    ) {
        let protocol = protocol.label();
        self.requests
            .get_or_create(&[("protocol", protocol), ("op", op), ("code", code)])
            .inc();
        self.durations
            .get_or_create(&[("protocol", protocol), ("op", op)])
            .observe(took.as_secs_f64());
    }

    /// The counters of bytes read from and written to clients on `protocol`
    /// (clones share the count: a front end keeps them and adds with one atomic
    /// add, no lookup).
    pub fn byte_counters(&self, protocol: Protocol) -> (Counter, Counter) {
        let label = [("protocol", protocol.label())];
        (
            self.received.get_or_create(&label).clone(),
            self.sent.get_or_create(&label).clone(),
        )
    }

    /// The connection counters of `protocol`, for its acceptor (`net.rs`),
    /// which counts and logs every connection's admission, end and refusal.
    pub fn connection_counters(&self, protocol: Protocol) -> ConnectionCounters {
        let label = [("protocol", protocol.label())];
        ConnectionCounters {
            protocol,
            opened: self.accepted.get_or_create(&label).clone(),
            closed: self.closed.get_or_create(&label).clone(),
            refused: self.refused.get_or_create(&label).clone(),
        }
    }

    /// Connections open now on `protocol`.
    pub fn open_connections(&self, protocol: Protocol) -> u64 {
        open(&self.accepted, &self.closed, protocol)
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.prometheus) {
            tracing::error!(cause = %err, "metrics could not be encoded");
        }
        text
    }
}

fn open(
    accepted: &Family<ProtocolLabel, Counter>,
    closed: &Family<ProtocolLabel, Counter>,
    protocol: Protocol,
) -> u64 {
    let label = [("protocol", protocol.label())];
    let read = |family: &Family<ProtocolLabel, Counter>| family.get(&label).map_or(0, |c| c.get());
    read(accepted).saturating_sub(read(closed))
}

/// What is read at scrape time.
struct ServerCollector {
    queues: Registry,
    options: MetricsOptions,
    started: Instant,
    accepted: Family<ProtocolLabel, Counter>,
    closed: Family<ProtocolLabel, Counter>,
}

impl std::fmt::Debug for ServerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCollector").finish_non_exhaustive()
    }
}

/// One metric without labels, of the kind `metric` is.
fn constant(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: f64,
) -> Result<(), std::fmt::Error> {
    constant(encoder, name, help, unit, &ConstGauge::new(value))
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: f64,
) -> Result<(), std::fmt::Error> {
    constant(encoder, name, help, unit, &ConstCounter::new(value))
}

/// One protocol's connection counters (clones share the counts).
#[derive(Debug, Clone)]
pub struct ConnectionCounters {
    /// Which front end.
    pub protocol: Protocol,
    /// Connections admitted.
    pub opened: Counter,
    /// Admitted connections that ended.
    pub closed: Counter,
    /// Connections refused at the cap.
    pub refused: Counter,
}

/// One per-queue metric: its name, help, unit, whether it is a counter, and how
/// to read it from a queue's figures.
struct PerQueue {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    counter: bool,
    read: fn(&QueueFigures) -> f64,
}

fn per_queue() -> [PerQueue; 13] {
    let gauge = |name, help, read| PerQueue {
        name,
        help,
        unit: None,
        counter: false,
        read,
    };
    let counter = |name, help, read| PerQueue {
        name,
        help,
        unit: None,
        counter: true,
        read,
    };
    [
        gauge("queue_available_messages", "AVAILABLE messages", |q: &QueueFigures| float(q.available)),
        gauge("queue_reserved_messages", "RESERVED messages (in flight)", |q: &QueueFigures| float(q.reserved)),
        gauge("queue_delayed_messages", "DELAYED messages", |q: &QueueFigures| float(q.delayed)),
        gauge("queue_messages", "Messages held: available + reserved + delayed", |q: &QueueFigures| {
            float(q.available + q.reserved + q.delayed)
        }),
        PerQueue {
            name: "queue_stored",
            help: "Bytes of message bodies the queue's stored batches hold (what --max-queue-bytes counts)",
            unit: Some(Unit::Bytes),
            counter: false,
            read: |q: &QueueFigures| float(q.bytes),
        },
        PerQueue {
            name: "queue_oldest_message_age",
            help: "Age of the message at the head of the queue (the next a reserve gets); 0 when none is available",
            unit: Some(Unit::Seconds),
            counter: false,
            read: |q: &QueueFigures| float(q.oldest_age_ms) / 1000.0,
        },
        counter("queue_pushed_messages", "Messages pushed (or moved in: dead letters, redrives)", |q: &QueueFigures| float(q.pushed)),
        counter("queue_reservations", "Reservations handed out", |q: &QueueFigures| float(q.reservations)),
        counter("queue_deleted_messages", "Messages deleted (by a client, delete-on-reserve, or a push acknowledgement)", |q: &QueueFigures| float(q.deleted)),
        counter("queue_released", "Reservations released by their consumer", |q: &QueueFigures| float(q.released)),
        counter("queue_timed_out", "Reservations that ran out: the message went back to the queue", |q: &QueueFigures| float(q.timed_out)),
        counter("queue_dead_lettered_messages", "Messages moved to the dead-letter queue", |q: &QueueFigures| float(q.dead_lettered)),
        counter("queue_expired_messages", "Messages removed because they expired", |q: &QueueFigures| float(q.expired)),
    ]
}

impl ServerCollector {
    /// Each queue's figures in name order, the ones past the cap summed.
    fn queue_figures(&self) -> (Vec<(String, QueueFigures)>, Option<QueueFigures>) {
        let now_ms = epoch_ms(SystemTime::now());
        let all = self.queues.metrics();
        let mut own = Vec::with_capacity(all.len().min(self.options.max_queue_series));
        let mut other: Option<QueueFigures> = None;
        for (i, (name, metrics)) in all.into_iter().enumerate() {
            let figures = metrics.read(now_ms);
            if i < self.options.max_queue_series {
                own.push((name, figures));
            } else {
                other
                    .get_or_insert_with(QueueFigures::default)
                    .add(&figures);
            }
        }
        (own, other)
    }

    fn encode_queues(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (own, other) = self.queue_figures();
        let series = own
            .iter()
            .map(|(name, figures)| (name.as_str(), figures))
            .chain(other.as_ref().map(|figures| (OTHER_QUEUES, figures)));
        let series: Vec<(&str, &QueueFigures)> = series.collect();
        for metric in per_queue() {
            let kind = if metric.counter {
                ConstCounter::new(0.0).metric_type()
            } else {
                ConstGauge::new(0.0).metric_type()
            };
            let mut family =
                encoder.encode_descriptor(metric.name, metric.help, metric.unit.as_ref(), kind)?;
            for (queue, figures) in &series {
                let labels = [("queue", *queue)];
                let value = (metric.read)(figures);
                if metric.counter {
                    ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                } else {
                    ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "queue_push_deliveries",
            "Push-queue deliveries to a subscriber, by outcome: delivered (2xx), accepted (202, acknowledged later), failed (retried)",
            None,
            ConstCounter::new(0.0).metric_type(),
        )?;
        for (queue, figures) in &series {
            for (outcome, value) in [
                ("delivered", figures.push_delivered),
                ("accepted", figures.push_accepted),
                ("failed", figures.push_failed),
            ] {
                let labels = [("queue", *queue), ("outcome", outcome)];
                ConstCounter::new(float(value)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The process figures, under the names every Prometheus client gives them
/// (registered outside the `ferromq_` prefix).
struct ProcessCollector {
    started_at: SystemTime,
}

impl std::fmt::Debug for ProcessCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessCollector").finish_non_exhaustive()
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let encoder = &mut encoder;
        let process = ProcessFigures::read();
        if let Some(cpu) = process.cpu_seconds {
            counter(
                encoder,
                "process_cpu",
                "User and system CPU time of the server process",
                Some(&Unit::Seconds),
                cpu,
            )?;
        }
        if let Some(rss) = process.resident_bytes {
            gauge(
                encoder,
                "process_resident_memory",
                "Resident memory of the server process",
                Some(&Unit::Bytes),
                float(rss),
            )?;
        }
        if let Some(fds) = process.open_fds {
            gauge(
                encoder,
                "process_open_fds",
                "Open file descriptors of the server process",
                None,
                float(fds),
            )?;
        }
        gauge(
            encoder,
            "process_start_time",
            "When the server process started, in seconds since the Unix epoch",
            Some(&Unit::Seconds),
            float(epoch_ms(self.started_at)) / 1000.0,
        )
    }
}

impl Collector for ServerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let info = ConstGauge::new(1);
        let mut build = encoder.encode_descriptor(
            "build_info",
            "The server's version (the value is always 1)",
            None,
            info.metric_type(),
        )?;
        info.encode(build.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        gauge(
            &mut encoder,
            "uptime",
            "Time since the server started",
            Some(&Unit::Seconds),
            self.started.elapsed().as_secs_f64(),
        )?;
        gauge(
            &mut encoder,
            "queues",
            "Queues that exist",
            None,
            float(u64::try_from(self.queues.len()).unwrap_or(u64::MAX)),
        )?;
        let store = self.queues.store();
        counter(
            &mut encoder,
            "commit_flushes",
            "Group-commit flushes (sled log write + fdatasync) done",
            None,
            float(store.flushes()),
        )?;
        let mut open_family = encoder.encode_descriptor(
            "connections_open",
            "Connections open now",
            None,
            ConstGauge::new(0).metric_type(),
        )?;
        for protocol in [Protocol::Binary, Protocol::Http] {
            let value = open(&self.accepted, &self.closed, protocol);
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
                .encode(open_family.encode_family(&[("protocol", protocol.label())])?)?;
        }
        gauge(
            &mut encoder,
            "total_stored",
            "Bytes of message bodies all queues hold (what --max-total-bytes counts)",
            Some(&Unit::Bytes),
            float(self.queues.admission().total_bytes()),
        )?;
        if let Some(dir) = &self.options.data_dir {
            gauge(
                &mut encoder,
                "data_dir_size",
                "Bytes of the files in the data directory",
                Some(&Unit::Bytes),
                float(dir_size(dir)),
            )?;
        }
        self.encode_queues(&mut encoder)
    }
}
