//! The push-queue delivery benchmark: how fast a ferromq server delivers a push
//! queue's messages to a local subscriber.
//!
//! It starts a subscriber (an HTTP/1.1 sink on 127.0.0.1 that answers 200 to
//! every POST and records when each message arrived), creates a push queue on the
//! server whose subscribers are that sink, pushes `--messages` messages (batches
//! of `--batch` over `--connections` pipelined connections, each body carrying its
//! push time), and waits until every message has been delivered to every
//! subscriber, or `--timeout`. It reports messages and deliveries per second from
//! the first push to the last delivery, and the push → delivery latency
//! percentiles. The server must allow the sink's address (`--push-allow
//! 127.0.0.1`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use ferromq::client::ConnectOptions;
use ferromq::proto;
use ferromq::Client;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::histogram;

/// Options of `ferromq-push-bench`.
#[derive(Debug, Clone, Args)]
pub struct PushBenchArgs {
    /// The server's binary-protocol address (its token in FERROMQ_TOKEN, if it
    /// needs one).
    #[arg(long, default_value = "127.0.0.1:7600")]
    pub addr: String,
    /// Messages to push.
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// unicast or multicast.
    #[arg(long, default_value = "unicast")]
    pub kind: String,
    /// Subscribers of the queue (all on the sink).
    #[arg(long, default_value_t = 1)]
    pub subscribers: u32,
    /// Messages per push request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Producer connections.
    #[arg(long, default_value_t = 2)]
    pub connections: usize,
    /// Body bytes (at least 24: the push time is in the body).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Give up after this long.
    #[arg(long, value_parser = ferromq::config::parse_duration_ms, default_value = "120s")]
    pub timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct PushBenchReport {
    messages: u64,
    deliveries: u64,
    expected: u64,
    elapsed: Duration,
    push_elapsed: Duration,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl PushBenchReport {
    /// The report as JSON.
    pub fn json(&self) -> Value {
        let secs = self.elapsed.as_secs_f64();
        json!({
            "messages": self.messages,
            "deliveries": self.deliveries,
            "expected_deliveries": self.expected,
            "elapsed_s": secs,
            "push_elapsed_s": self.push_elapsed.as_secs_f64(),
            "messages_per_s": self.messages as f64 / secs,
            "deliveries_per_s": self.deliveries as f64 / secs,
            "latency_ms": {"p50": self.p50_ms, "p99": self.p99_ms, "max": self.max_ms},
        })
    }

    /// The report as text.
    pub fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        format!(
            "delivered {} of {} deliveries ({} messages) in {:.2} s (pushes took {:.2} s): \
             {:.0} messages/s, {:.0} deliveries/s; push -> delivery p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
            self.deliveries,
            self.expected,
            self.messages,
            secs,
            self.push_elapsed.as_secs_f64(),
            self.messages as f64 / secs,
            self.deliveries as f64 / secs,
            self.p50_ms,
            self.p99_ms,
            self.max_ms
        )
    }
}

/// Runs the benchmark.
///
/// # Errors
/// If the sink cannot listen, the server cannot be reached or refuses a request.
pub async fn run(args: PushBenchArgs) -> Result<PushBenchReport, String> {
    let started = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("sink: {e}"))?;
    let sink = listener.local_addr().map_err(|e| e.to_string())?;
    let delivered = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(histogram()));
    let last = Arc::new(Mutex::new(started));
    {
        let (delivered, latencies, last) = (delivered.clone(), latencies.clone(), last.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (delivered, latencies, last) =
                    (delivered.clone(), latencies.clone(), last.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let (delivered, latencies, last) =
                                (delivered.clone(), latencies.clone(), last.clone());
                            async move {
                                let body = request
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let now = Instant::now();
                                if let Some(sent) = std::str::from_utf8(&body[..body.len().min(20)])
                                    .ok()
                                    .and_then(|t| t.trim().parse::<u64>().ok())
                                {
                                    let at = u64::try_from(now.duration_since(started).as_micros())
                                        .unwrap_or(u64::MAX);
                                    let _ = latencies
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner())
                                        .record(at.saturating_sub(sent).max(1));
                                }
                                delivered.fetch_add(1, Ordering::Relaxed);
                                *last.lock().unwrap_or_else(|e| e.into_inner()) = now;
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                    Bytes::new(),
                                )))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    }
    let options = ConnectOptions {
        token: std::env::var("FERROMQ_TOKEN").ok(),
        ..ConnectOptions::default()
    };
    let client = Client::connect_with(args.addr.as_str(), &options)
        .await
        .map_err(|e| format!("connect {}: {e}", args.addr))?;
    let queue = format!("push-bench-{}", std::process::id());
    let kind = match args.kind.as_str() {
        "multicast" => proto::QueueType::Multicast,
        "unicast" => proto::QueueType::Unicast,
        other => return Err(format!("--kind {other}: unicast or multicast")),
    };
    let settings = proto::QueueSettings {
        push: Some(proto::PushSettings {
            r#type: kind.into(),
            subscribers: (0..args.subscribers)
                .map(|i| proto::Subscriber {
                    name: format!("sink{i}"),
                    url: format!("http://{sink}/sink{i}"),
                    headers: Vec::new(),
                })
                .collect(),
            ..proto::PushSettings::default()
        }),
        ..proto::QueueSettings::default()
    };
    client
        .create_queue(&queue, settings)
        .await
        .map_err(|e| format!("create {queue}: {e}"))?;
    let expected = match kind {
        proto::QueueType::Multicast => args.messages * u64::from(args.subscribers),
        _ => args.messages,
    };
    let size = args.size.max(24);
    let next = Arc::new(AtomicU64::new(0));
    let mut producers: Vec<tokio::task::JoinHandle<Result<(), String>>> = Vec::new();
    for _ in 0..args.connections.max(1) {
        let client = Client::connect_with(args.addr.as_str(), &options)
            .await
            .map_err(|e| format!("connect {}: {e}", args.addr))?;
        let (queue, next) = (queue.clone(), next.clone());
        let (total, batch) = (args.messages, args.batch.clamp(1, 100));
        producers.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(batch as u64, Ordering::Relaxed);
                if first >= total {
                    return Ok(());
                }
                let n = (total - first).min(batch as u64);
                let now = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                let mut body = format!("{now:<20}").into_bytes();
                body.resize(size, b'x');
                let body = Bytes::from(body);
                client
                    .push(&queue, vec![body; usize::try_from(n).unwrap_or(1)])
                    .await
                    .map_err(|e| format!("push: {e}"))?;
            }
        }));
    }
    for producer in producers {
        producer.await.map_err(|e| e.to_string())??;
    }
    let push_elapsed = started.elapsed();
    let deadline = started + Duration::from_millis(args.timeout);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = last
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .duration_since(started);
    let _ = client.delete_queue(&queue).await;
    let latencies = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    Ok(PushBenchReport {
        messages: args.messages,
        deliveries: delivered.load(Ordering::Relaxed),
        expected,
        elapsed,
        push_elapsed,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        max_ms: latencies.max() as f64 / 1000.0,
    })
}
