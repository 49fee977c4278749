//! Criterion: frame encode and decode of representative requests.
//!
//! `cargo bench --bench codec`

#![allow(
    missing_docs,
    reason = "criterion_group! defines an undocumented `pub fn`"
)]

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferromq::codec::{ClientCodec, ServerCodec};
use ferromq::proto::{request::Op, Push, PushMessage, Request};
use tokio_util::codec::{Decoder, Encoder};

fn push_request(messages: usize, body_len: usize) -> Request {
    let body = Bytes::from(vec![b'x'; body_len]);
    Request {
        id: 42,
        op: Some(Op::Push(Push {
            queue: "bench".into(),
            messages: (0..messages)
                .map(|_| PushMessage {
                    key: String::new(),
                    priority: None,
                    body: body.clone(),
                    delay_ms: 0,
                    push_headers: Vec::new(),
                })
                .collect(),
        })),
    }
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for (messages, body_len) in [(1, 100), (100, 100), (1, 65_536)] {
        let request = push_request(messages, body_len);
        let mut encoded = BytesMut::new();
        ClientCodec::new(16 << 20)
            .encode(request.clone(), &mut encoded)
            .expect("encode");
        group.throughput(Throughput::Elements(
            u64::try_from(messages).unwrap_or(u64::MAX),
        ));
        group.bench_function(format!("encode push {messages}x{body_len}B"), |b| {
            let mut codec = ClientCodec::new(16 << 20);
            let mut buf = BytesMut::with_capacity(encoded.len());
            b.iter_batched(
                || request.clone(),
                |request| {
                    buf.clear();
                    codec.encode(request, &mut buf).expect("encode");
                },
                BatchSize::SmallInput,
            );
        });
        group.bench_function(format!("decode push {messages}x{body_len}B"), |b| {
            let mut codec = ServerCodec::new(16 << 20);
            b.iter_batched(
                || encoded.clone(),
                |mut buf| codec.decode(&mut buf).expect("decode").expect("a frame"),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
