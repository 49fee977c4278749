//! A worker: reserve, process, delete; touch during long work; release on failure.
//!
//! Run a server and a producer, then:
//!
//! ```text
//! cargo run --example worker -- [ADDR] [QUEUE]
//! ```
//!
//! The loop long-polls (up to 20 s) so an idle worker costs one request per 20 s.
//! Jobs whose body contains "slow" take longer than the lease and are touched
//! halfway; jobs whose body contains "fail" are released with a delay, so another
//! attempt comes later (and `reserved_count` tells how many attempts there were).
//! The worker stops after a long poll comes back empty.

use std::time::Duration;

use ferromq::client::{ClientError, ReserveOptions};
use ferromq::proto::Message;
use ferromq::Client;

/// Lease length asked for each job.
const LEASE_MS: u64 = 30_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7600".into());
    let queue = args.next().unwrap_or_else(|| "jobs".into());
    let client = Client::connect(addr.as_str()).await?;

    loop {
        let options = ReserveOptions {
            n: 10,
            timeout_ms: LEASE_MS,
            wait_ms: 20_000,
            delete: false,
            auto_timeout: false,
        };
        let messages = match client.reserve(&queue, options).await {
            Ok(messages) => messages,
            Err(err) if err.code() == Some(ferromq::proto::ErrorCode::QueueNotFound) => {
                println!("queue {queue} does not exist yet");
                return Ok(());
            }
            Err(err) => return Err(err.into()),
        };
        if messages.is_empty() {
            println!("no work for 20 s; stopping");
            return Ok(());
        }
        for message in messages {
            handle(&client, &queue, message).await?;
        }
    }
}

async fn handle(client: &Client, queue: &str, message: Message) -> Result<(), ClientError> {
    let body = String::from_utf8_lossy(&message.body).into_owned();
    let mut reservation_id = message.reservation_id;
    if body.contains("fail") {
        // Give it back; it returns to the front of the queue after 5 s.
        println!(
            "job {} failed (attempt {}), releasing",
            message.id, message.reserved_count
        );
        return client
            .release(queue, message.id, reservation_id, 5_000)
            .await;
    }
    if body.contains("slow") {
        // Long work: renew the lease before it runs out. The reservation id changes;
        // the old one is no longer accepted (a fencing token).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let touched = client
            .touch(queue, message.id, reservation_id, LEASE_MS)
            .await?;
        reservation_id = touched.reservation_id;
    }
    println!("done: {} {body}", message.id);
    client.delete(queue, message.id, Some(reservation_id)).await
}
