//! Durability: run the real `ferromq` binary, push messages, SIGKILL it while pushes
//! are in flight, restart it on the same data directory and find every push that
//! was acknowledged.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferromq::client::ReserveOptions;
use ferromq::Client;

use common::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_push_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let client = Client::connect(server.addr.as_str()).await.unwrap();

    // 8 producers push batches of 5 until 400 batches are acknowledged; the kill
    // lands while the producers are still pushing.
    let acked: Arc<Mutex<Vec<(u64, Bytes)>>> = Arc::default();
    let (enough_tx, enough_rx) = tokio::sync::oneshot::channel();
    let enough_tx = Arc::new(Mutex::new(Some(enough_tx)));
    let mut producers = Vec::new();
    for p in 0..8u32 {
        let client = client.clone();
        let acked = Arc::clone(&acked);
        let enough_tx = Arc::clone(&enough_tx);
        producers.push(tokio::spawn(async move {
            for i in 0..1_000u32 {
                let bodies: Vec<Bytes> = (0..5)
                    .map(|k| Bytes::from(format!("p{p}-{i}-{k}")))
                    .collect();
                let Ok(ids) = client.push("durable", bodies.clone()).await else {
                    return; // the server is gone
                };
                let mut acked = acked.lock().unwrap();
                acked.extend(ids.into_iter().zip(bodies));
                if acked.len() >= 2_000 {
                    if let Some(tx) = enough_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                }
            }
        }));
    }
    enough_rx.await.expect("2000 acknowledged pushes");
    server.child.kill().expect("SIGKILL"); // std's kill() is SIGKILL on Unix
    server.child.wait().unwrap();
    drop(server);
    for producer in producers {
        producer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 2_000);

    let server = start(dir.path());
    let client = Client::connect(server.addr.as_str()).await.unwrap();
    let mut found = std::collections::HashMap::new();
    loop {
        let got = client
            .reserve(
                "durable",
                ReserveOptions {
                    n: 100,
                    delete: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        for m in got {
            found.insert(m.id, m.body);
        }
    }
    let missing: Vec<u64> = acked
        .iter()
        .filter(|(id, body)| found.get(id) != Some(body))
        .map(|(id, _)| *id)
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    let unique: HashSet<u64> = acked.iter().map(|(id, _)| *id).collect();
    assert_eq!(unique.len(), acked.len(), "no id was handed out twice");
}
