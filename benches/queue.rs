//! Criterion: the queue actor's push → reserve → delete round trip on a temporary
//! sled data directory (no TCP), the same round trip on the pure state machine
//! alone (no actor, no storage), the deadline index, and the batch record format.
//!
//! `cargo bench --bench queue`
//!
//! The actor runs with `--fsync never` here so the numbers are the actor's and
//! sled's CPU cost, not the disk's; the load generator measures durable throughput.

#![allow(
    missing_docs,
    reason = "criterion_group! defines an undocumented `pub fn`"
)]

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferromq::error::QueueError;
use ferromq::queue::clock::SystemClock;
use ferromq::queue::deadlines::DeadlineIndex;
use ferromq::queue::state::{Ask, Env, QueueMeta, QueueState, Reserved};
use ferromq::queue::types::{NewMessage, QueueName, QueueSettings};
use ferromq::queue::waiters::WaiterId;
use ferromq::queue::Registry;
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
        recover: false,
    })
    .expect("store");
    let registry = runtime.block_on(async {
        Registry::open(store, Arc::new(SystemClock::new()))
            .await
            .expect("registry")
    });
    let name = QueueName::new("bench").expect("name");
    let handle = runtime.block_on(async { registry.get_or_create(&name).await.expect("queue") });
    let body = Bytes::from(vec![b'x'; 100]);

    let mut group = c.benchmark_group("actor");
    for batch in [1usize, 100] {
        group.throughput(Throughput::Elements(
            u64::try_from(batch).unwrap_or(u64::MAX),
        ));
        group.bench_function(format!("push+reserve+delete x{batch}"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let messages = vec![
                        NewMessage {
                            key: None,
                            priority: ferromq::queue::types::DEFAULT_PRIORITY,
                            body: body.clone(),
                            delay_ms: 0,
                        };
                        batch
                    ];
                    handle.push(messages).await.expect("push");
                    let got = handle
                        .reserve(batch, None, 0, false, None)
                        .await
                        .expect("reserve");
                    let entries = got
                        .iter()
                        .map(|m| (m.info.id, Some(m.info.reservation_id)))
                        .collect();
                    handle.delete(entries).await.expect("delete");
                })
            });
        });
    }
    group.finish();
    runtime.block_on(registry.shutdown());
    drop(dir);
}

/// The world of the state machine bench: ids from a counter, no stored bodies.
struct Counter(u64);

impl Env for Counter {
    fn allocate_ids(&mut self, n: u64) -> Result<u64, QueueError> {
        let first = self.0;
        self.0 += n;
        Ok(first)
    }

    fn read_body(&mut self, _batch: u64, _slot: u32) -> Result<Option<Bytes>, QueueError> {
        Ok(None)
    }

    fn read_history(&mut self, _id: u64) -> Result<Option<Vec<u8>>, QueueError> {
        Ok(None)
    }

    fn is_waiting(&self, _waiter: WaiterId) -> bool {
        false
    }
}

/// The world of the fair-dispatch bench: ids from a counter, and every written
/// body reads back as the same bytes (as if from the log's cache).
struct Stored(Counter, Bytes);

impl Env for Stored {
    fn allocate_ids(&mut self, n: u64) -> Result<u64, QueueError> {
        self.0.allocate_ids(n)
    }

    fn read_body(&mut self, _batch: u64, _slot: u32) -> Result<Option<Bytes>, QueueError> {
        Ok(Some(self.1.clone()))
    }

    fn read_history(&mut self, _id: u64) -> Result<Option<Vec<u8>>, QueueError> {
        Ok(None)
    }

    fn is_waiting(&self, _waiter: WaiterId) -> bool {
        false
    }
}

/// The round trip on the state machine alone, with the turn's records produced
/// (and dropped) after each: what the actor adds on top is the mailbox, sled and
/// the commit.
fn state_machine(c: &mut Criterion) {
    let mut group = c.benchmark_group("state_machine");
    let body = Bytes::from(vec![b'x'; 100]);
    for batch in [1usize, 100] {
        let mut state = QueueState::new(QueueMeta {
            name: QueueName::new("bench").expect("name"),
            created_at_ms: 0,
            settings: QueueSettings::default(),
            total_pushed: 0,
            attachment: Bytes::new(),
            processing: None,
        });
        let mut env = Counter(1);
        let mut now = 1_000;
        group.throughput(Throughput::Elements(
            u64::try_from(batch).unwrap_or(u64::MAX),
        ));
        group.bench_function(format!("push+reserve+delete x{batch}"), |b| {
            b.iter(|| {
                now += 1;
                let messages = vec![
                    NewMessage {
                        key: None,
                        priority: ferromq::queue::types::DEFAULT_PRIORITY,
                        body: body.clone(),
                        delay_ms: 0,
                    };
                    batch
                ];
                state.push(now, &mut env, messages).expect("push");
                let ask = Ask {
                    n: batch,
                    ..Ask::default()
                };
                let Ok(Reserved::Now(got)) = state.reserve(now, &mut env, ask, 0) else {
                    panic!("reserve")
                };
                let entries: Vec<_> = got
                    .iter()
                    .map(|m| (m.info.id, Some(m.info.reservation_id)))
                    .collect();
                state.delete(now, &entries).expect("delete");
                state.take_writes(now, false)
            });
        });
    }
    group.finish();
}

/// Fair dispatch by key (issue 14): a reserve picks the least recently served
/// key among those with an available message, O(log keys). Each round reserves
/// one message (of the next key in turn), deletes it and pushes a replacement
/// to that key, so the number of keys stays put; with no keys it is the plain
/// queue, for comparison. A cap of 1 per key is set, so every round also takes
/// a key out of the ring and puts it back.
fn fair_dispatch(c: &mut Criterion) {
    let mut group = c.benchmark_group("fair_dispatch");
    let body = Bytes::from(vec![b'x'; 100]);
    for keys in [0usize, 1_000, 100_000] {
        let settings = QueueSettings {
            key_max_in_flight: u32::from(keys > 0),
            ..QueueSettings::default()
        };
        let mut state = QueueState::new(QueueMeta {
            name: QueueName::new("bench").expect("name"),
            created_at_ms: 0,
            settings,
            total_pushed: 0,
            attachment: Bytes::new(),
            processing: None,
        });
        let mut env = Stored(Counter(1), body.clone());
        let now = 1_000;
        let names: Vec<std::sync::Arc<str>> = (0..keys.max(1))
            .map(|k| std::sync::Arc::from(format!("tenant-{k}")))
            .collect();
        let message = |k: usize| NewMessage {
            key: (keys > 0).then(|| std::sync::Arc::clone(&names[k])),
            priority: ferromq::queue::types::DEFAULT_PRIORITY,
            body: body.clone(),
            delay_ms: 0,
        };
        // Two messages per key waiting (one per key for the plain queue, times 2).
        for chunk in (0..keys.max(1) * 2).collect::<Vec<_>>().chunks(100) {
            let messages = chunk.iter().map(|&i| message(i % keys.max(1))).collect();
            state.push(now, &mut env, messages).expect("push");
        }
        state.take_writes(now, false);
        let mut next_key = 0;
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("reserve+delete+push with {keys} keys"), |b| {
            b.iter(|| {
                let Ok(Reserved::Now(got)) = state.reserve(
                    now,
                    &mut env,
                    Ask {
                        n: 1,
                        ..Ask::default()
                    },
                    0,
                ) else {
                    panic!("reserve")
                };
                let m = &got[0];
                state
                    .delete(now, &[(m.info.id, Some(m.info.reservation_id))])
                    .expect("delete");
                next_key = (next_key + 1) % keys.max(1);
                // The key's index is in its name (a search would cost O(keys)).
                let k = m.key.as_ref().map_or(next_key, |name| {
                    name.strip_prefix("tenant-")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0)
                });
                state.push(now, &mut env, vec![message(k)]).expect("push");
                state.take_writes(now, false)
            });
        });
    }
    group.finish();
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
        builder.push(id, record, body.clone(), (None, 8));
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

criterion_group!(
    benches,
    actor,
    state_machine,
    fair_dispatch,
    deadlines,
    batches
);
criterion_main!(benches);
