//! Criterion: the queue actor's push → reserve → delete round trip on a temporary
//! sled data directory (no TCP), the deadline index, and the batch record format.
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
use ferromq::storage::{Batch, BatchBuilder, FsyncMode, MessageRecord, SledConfig, SledStore};

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

/// Timeout-requeue is one insert (at reserve) and one pop (when due) in the
/// deadline index: O(log n), so the cost per lease should barely move from 10 k to
/// 1 M leases outstanding.
fn deadlines(c: &mut Criterion) {
    let mut group = c.benchmark_group("deadline_index");
    for size in [10_000u64, 1_000_000] {
        let mut index = DeadlineIndex::default();
        for id in 0..size {
            index.insert(id * 7 % 1_000_003, id);
        }
        let mut next = size;
        group.bench_function(format!("insert+pop_due with {size} entries"), |b| {
            b.iter(|| {
                index.insert(next * 7 % 1_000_003 + 2_000_000, next);
                next += 1;
                index.pop_due(u64::MAX).expect("an entry")
            });
        });
    }
    group.finish();
}

/// The batch record: what a turn's pushes cost to encode, and a reserve to read.
fn batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_record");
    let body = Bytes::from(vec![b'x'; 100]);
    let record = MessageRecord {
        pushed_at_ms: 1,
        available_at_ms: 0,
        expires_at_ms: 2,
    };
    let mut builder = BatchBuilder::default();
    for id in 0..100 {
        builder.push(id, record, body.clone());
    }
    group.throughput(Throughput::Elements(100));
    group.bench_function("encode 100 x 100 B", |b| b.iter(|| builder.encode()));
    let value = Bytes::from(builder.encode());
    group.bench_function("parse + read 100 bodies", |b| {
        b.iter(|| {
            let batch = Batch::parse(value.clone()).expect("valid");
            (0..batch.count())
                .filter_map(|slot| batch.body(slot))
                .map(|body| body.len())
                .sum::<usize>()
        });
    });
    group.finish();
}

criterion_group!(benches, actor, deadlines, batches);
criterion_main!(benches);
