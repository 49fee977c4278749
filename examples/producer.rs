//! A producer: pushes messages in batches, with an optional delay.
//!
//! Run a server (`cargo run --release -- serve`), then:
//!
//! ```text
//! cargo run --example producer -- [ADDR] [QUEUE] [COUNT]
//! cargo run --example producer -- 127.0.0.1:7600 jobs 1000
//! ```
//!
//! Every push returns only after the server has the messages on disk (with the
//! default `--fsync always`), so a message whose id was printed survives a crash.

use bytes::Bytes;
use ferromq::proto::PushMessage;
use ferromq::Client;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7600".into());
    let queue = args.next().unwrap_or_else(|| "jobs".into());
    let count: usize = args.next().map_or(Ok(100), |n| n.parse())?;

    let client = Client::connect(addr.as_str()).await?;
    let mut pushed = 0;
    while pushed < count {
        // Up to 100 messages per call: one round trip and one fsync for all of them.
        let batch: Vec<PushMessage> = (pushed..count.min(pushed + 100))
            .map(|i| PushMessage {
                key: String::new(),
                priority: None,
                body: Bytes::from(format!("job {i}")),
                delay_ms: 0,
                push_headers: Vec::new(),
            })
            .collect();
        let ids = client.push_messages(&queue, batch).await?;
        pushed += ids.len();
        println!("pushed {} (last id {:?})", ids.len(), ids.last());
    }
    let info = client.info(&queue).await?;
    println!(
        "{queue}: size={} total_pushed={}",
        info.size, info.total_pushed
    );
    Ok(())
}
