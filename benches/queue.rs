//! Criterion: the queue actor's push → reserve → delete round trip on a temporary
//! sled data directory (no TCP), and the deadline index.
//!
//! `cargo bench --bench queue`
//!
//! The actor runs with `--fsync never` here so the numbers are the actor's and
//! sled's CPU cost, not the disk's; the load generator measures durable throughput.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferromq::queue::deadlines::DeadlineIndex;
use ferromq::queue::types::{NewMessage, QueueName};
use ferromq::registry::Registry;
use ferromq::storage::{FsyncMode, SledConfig, SledStore};

fn actor(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(&SledConfig {
        path: dir.path().to_path_buf(),
        cache_bytes: 64 << 20,
        fsync: FsyncMode::Never,
    })
    .expect("store");
    let registry = runtime.block_on(async { Registry::open(store).expect("registry") });
    let name = QueueName::new("bench").expect("name");
    let handle = runtime.block_on(async { registry.get_or_create(&name).expect("queue") });
    let body = Bytes::from(vec![b'x'; 100]);

    let mut group = c.benchmark_group("actor");
    for batch in [1usize, 100] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("push+reserve+delete x{batch}"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let messages = vec![
                        NewMessage {
                            body: body.clone(),
                            delay_ms: 0,
                        };
                        batch
                    ];
                    handle.push(messages).await.expect("push");
                    let got = handle
                        .reserve(batch, None, 0, false)
                        .await
                        .expect("reserve");
                    let entries = got.iter().map(|m| (m.id, Some(m.reservation_id))).collect();
                    handle.delete(entries).await.expect("delete");
                })
            });
        });
    }
    group.finish();
    runtime.block_on(registry.shutdown());
    drop(dir);
}

fn deadlines(c: &mut Criterion) {
    let mut group = c.benchmark_group("deadline_index");
    let mut index = DeadlineIndex::default();
    for id in 0..1_000_000u64 {
        index.insert(id * 7 % 1_000_003, id);
    }
    let mut next = 1_000_000u64;
    group.bench_function("insert+pop_due with 1M entries", |b| {
        b.iter(|| {
            index.insert(next * 7 % 1_000_003 + 2_000_000, next);
            next += 1;
            index.pop_due(u64::MAX).expect("an entry")
        });
    });
    group.finish();
}

criterion_group!(benches, actor, deadlines);
criterion_main!(benches);
