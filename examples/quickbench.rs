//! A quick push → reserve → delete throughput check against a running server.
//!
//! ```text
//! cargo run --release --example quickbench -- [ADDR] [MESSAGES] [CONNECTIONS] [DEPTH] [BATCH]
//! cargo run --release --example quickbench -- 127.0.0.1:7600 100000 4 32 1
//! ```
//!
//! CONNECTIONS producer connections and as many consumer connections each keep DEPTH
//! requests in flight: producers push BATCH messages of 100 bytes per call, consumers
//! reserve up to BATCH and delete them in one batch delete. It prints messages per
//! second from the first push to the last delete. It is bounded by MESSAGES and by a
//! 120 s deadline. The full load generator (latency histograms, rates, peers, plots)
//! is `ferromq bench`; this example shows the client API driving a server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferromq::client::ReserveOptions;
use ferromq::Client;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let addr = arg(0, "127.0.0.1:7600");
    let total: u64 = arg(1, "100000").parse()?;
    let connections: usize = arg(2, "4").parse()?;
    let depth: usize = arg(3, "32").parse()?;
    let batch: u32 = arg(4, "1").parse()?;
    let queue = format!("quickbench-{}", std::process::id());
    let deadline = Instant::now() + Duration::from_secs(120);

    let pushed = Arc::new(AtomicU64::new(0));
    let deleted = Arc::new(AtomicU64::new(0));
    let body = Bytes::from(vec![b'x'; 100]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let producer = Client::connect(addr.as_str()).await?;
        let consumer = Client::connect(addr.as_str()).await?;
        for _ in 0..depth {
            let (client, name, pushed, body) = (
                producer.clone(),
                queue.clone(),
                pushed.clone(),
                body.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let n = u64::from(batch);
                    if pushed.fetch_add(n, Ordering::Relaxed) >= total {
                        break;
                    }
                    let bodies = vec![body.clone(); usize::try_from(batch).unwrap_or(1)];
                    client.push(&name, bodies).await.expect("push");
                }
            }));
            let (client, name, deleted) = (consumer.clone(), queue.clone(), deleted.clone());
            tasks.push(tokio::spawn(async move {
                let options = ReserveOptions {
                    n: batch,
                    timeout_ms: 60_000,
                    wait_ms: 1_000,
                    delete: false,
                    auto_timeout: false,
                };
                while deleted.load(Ordering::Relaxed) < total && Instant::now() < deadline {
                    let got = match client.reserve(&name, options).await {
                        Ok(got) => got,
                        Err(err)
                            if err.code() == Some(ferromq::proto::ErrorCode::QueueNotFound) =>
                        {
                            tokio::task::yield_now().await;
                            continue;
                        }
                        Err(err) => panic!("reserve: {err}"),
                    };
                    if got.is_empty() {
                        continue;
                    }
                    let n = u64::try_from(got.len()).unwrap_or(u64::MAX);
                    let entries = got.iter().map(|m| (m.id, Some(m.reservation_id))).collect();
                    client.delete_batch(&name, entries).await.expect("delete");
                    deleted.fetch_add(n, Ordering::Relaxed);
                }
            }));
        }
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let done = deleted.load(Ordering::Relaxed);
    println!(
        "{done} messages pushed, reserved and deleted in {elapsed:.2} s: {:.0} msg/s \
         ({connections}+{connections} connections, depth {depth}, batch {batch}, 100 B bodies)",
        rate(done, elapsed)
    );
    let cleanup = Client::connect(addr.as_str()).await?;
    cleanup.delete_queue(&queue).await.ok();
    Ok(())
}

/// Messages per second, as a float for printing.
#[allow(
    clippy::cast_precision_loss,
    reason = "a count far below 2^52 becomes a float for a report"
)]
fn rate(done: u64, secs: f64) -> f64 {
    done as f64 / secs
}
