//! The fuzz targets (`src/fuzzing.rs`, run deep with `cargo +nightly fuzz run`,
//! see `fuzz/README.md`) on stable, bounded, in every test run: each target gets
//! its seed corpus and a few thousand mutations of it from a fixed-seed generator.
//! A panic anywhere fails the test with the input that caused it. The seeds are
//! also written to `fuzz/corpus/` by `FERROMQ_WRITE_CORPUS=1 cargo test --test
//! fuzz_smoke`.

use bytes::Bytes;
use ferromq::proto::{self, request::Op, Request};
use prost::Message as _;

/// A small, fixed-seed xorshift generator: the same inputs every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }
    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

/// One to eight random edits of `input`: byte flips, insertions, deletions,
/// duplicated chunks, truncation, interesting integers.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.insert(at, rng.byte()),
            2 if at < out.len() => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 if at < out.len() => {
                let end = (at + rng.below(32)).min(out.len());
                let chunk = out[at..end].to_vec();
                out.splice(at..at, chunk);
            }
            4 => out.truncate(at),
            _ => {
                let value = [0_u8, 0x7f, 0x80, 0xff][rng.below(4)];
                out.splice(at..at, std::iter::repeat_n(value, 1 + rng.below(9)));
            }
        }
    }
    out
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// One valid request of every operation, on queues in and out of the fuzzed
/// token's project `p`.
fn request_seeds() -> Vec<Vec<u8>> {
    let body = |s: &'static str| Bytes::from_static(s.as_bytes());
    let settings = Some(proto::QueueSettings {
        key_max_in_flight: None,
        message_timeout_ms: 30_000,
        message_expiration_s: 60,
        delivery_history: Some(3),
        dead_letter: Some(proto::DeadLetter {
            queue: "p/dead".into(),
            max_reservations: 2,
        }),
        push: None,
    });
    let push_settings = Some(proto::QueueSettings {
        push: Some(proto::PushSettings {
            r#type: proto::QueueType::Unicast.into(),
            subscribers: vec![proto::Subscriber {
                name: "s".into(),
                url: "http://127.0.0.1:9/s".into(),
                headers: vec![proto::Header {
                    name: "X-A".into(),
                    value: "b".into(),
                }],
            }],
            retries: Some(1),
            retries_delay_s: 3,
            error_queue: Some("p/err".into()),
            ..proto::PushSettings::default()
        }),
        ..proto::QueueSettings::default()
    });
    let ops = vec![
        Op::Hello(proto::Hello {
            consumer: String::new(),
            version: 1,
            client: "seed".into(),
            token: String::new(),
        }),
        Op::Push(proto::Push {
            queue: "p/jobs".into(),
            messages: vec![
                proto::PushMessage {
                    key: String::new(),
                    priority: None,
                    body: body("a"),
                    delay_ms: 0,
                    push_headers: Vec::new(),
                },
                proto::PushMessage {
                    key: String::new(),
                    priority: None,
                    body: body("later"),
                    delay_ms: 1000,
                    push_headers: vec![proto::Header {
                        name: "X-H".into(),
                        value: "v".into(),
                    }],
                },
            ],
        }),
        Op::Reserve(proto::Reserve {
            queue: "p/jobs".into(),
            n: 3,
            timeout_ms: 1000,
            wait_ms: 0,
            delete: false,
            auto_timeout: false,
        }),
        Op::Delete(proto::Delete {
            queue: "p/jobs".into(),
            message_id: 3,
            reservation_id: 4,
            subscriber_name: String::new(),
        }),
        Op::Delete(proto::Delete {
            queue: "p/hooks".into(),
            message_id: 3,
            reservation_id: 4,
            subscriber_name: "s".into(),
        }),
        Op::Health(proto::HealthRequest {}),
        Op::PushStatuses(proto::PushStatusesRequest {
            queue: "p/hooks".into(),
            message_id: 3,
        }),
        Op::CreateQueue(proto::CreateQueue {
            queue: "p/hooks".into(),
            settings: push_settings,
        }),
        Op::Touch(proto::Touch {
            queue: "p/jobs".into(),
            message_id: 3,
            reservation_id: 4,
            timeout_ms: 500,
        }),
        Op::Release(proto::Release {
            queue: "p/jobs".into(),
            message_id: 3,
            reservation_id: 4,
            delay_ms: 10,
        }),
        Op::Peek(proto::Peek {
            queue: "p/jobs".into(),
            n: 10,
        }),
        Op::Get(proto::GetMessage {
            queue: "p/jobs".into(),
            message_id: 2,
        }),
        Op::CreateQueue(proto::CreateQueue {
            queue: "p/work".into(),
            settings: settings.clone(),
        }),
        Op::UpdateQueue(proto::UpdateQueue {
            queue: "p/work".into(),
            settings,
        }),
        Op::QueueInfo(proto::QueueInfoRequest {
            queue: "p/jobs".into(),
        }),
        Op::ListQueues(proto::ListQueues {
            prefix: "p/".into(),
            cursor: String::new(),
            limit: 5,
        }),
        Op::ClearQueue(proto::ClearQueue {
            queue: "p/work".into(),
        }),
        Op::Redrive(proto::Redrive {
            queue: "p/dead".into(),
            to_queue: "q/jobs".into(),
            n: 10,
        }),
        Op::ServerStats(proto::ServerStatsRequest {}),
        Op::DeleteQueue(proto::DeleteQueue {
            queue: "p/work".into(),
        }),
    ];
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| {
            Request {
                id: u64::try_from(i).unwrap() + 1,
                op: Some(op),
            }
            .encode_to_vec()
        })
        .collect()
}

fn frame_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = request_seeds().iter().map(|r| frame(r)).collect();
    seeds.push(request_seeds().iter().flat_map(|r| frame(r)).collect());
    seeds.push(vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    seeds.push(vec![0, 0, 0, 0]);
    seeds
}

fn http_seeds() -> Vec<Vec<u8>> {
    let seed = |method: u8, path: &str, body: &str| {
        let mut out = vec![method];
        out.extend_from_slice(path.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(body.as_bytes());
        out
    };
    vec![
        seed(0, "queues?per_page=5&prefix=j", ""),
        seed(
            1,
            "queues/jobs/messages",
            r#"{"messages":[{"body":"x","delay":0},{"body":"y","push_headers":{"a":"b"}}]}"#,
        ),
        seed(
            1,
            "queues/jobs/reservations",
            r#"{"n":3,"timeout":30,"wait":0,"delete":false}"#,
        ),
        seed(0, "queues/jobs/messages?n=2", ""),
        seed(0, "queues/jobs/messages/2", ""),
        seed(4, "queues/jobs/messages/2", r#"{"reservation_id":"5"}"#),
        seed(
            4,
            "queues/jobs/messages",
            r#"{"ids":[{"id":"2","reservation_id":"5"},{"id":"3"}]}"#,
        ),
        seed(
            1,
            "queues/jobs/messages/2/touch",
            r#"{"reservation_id":"5","timeout":10}"#,
        ),
        seed(
            1,
            "queues/jobs/messages/2/release",
            r#"{"reservation_id":"5","delay":3}"#,
        ),
        seed(
            2,
            "queues/work",
            r#"{"queue":{"message_timeout":60,"message_expiration":3600,"dead_letter":{"queue_name":"dead","max_reservations":3}}}"#,
        ),
        seed(
            3,
            "queues/work",
            r#"{"queue":{"message_timeout":30,"alerts":[{"type":"fixed","trigger":10,"queue":"a"}]}}"#,
        ),
        seed(0, "queues/work", ""),
        seed(1, "queues/work/clear", "{}"),
        seed(1, "queues/jobs/webhook", "raw body"),
        seed(4, "queues/work/alerts", r#"{"alerts":[{"id":"1"}]}"#),
        seed(4, "queues/work", ""),
    ]
}

fn run(name: &str, target: fn(&[u8]), seeds: &[Vec<u8>], mutations: usize) {
    if std::env::var_os("FERROMQ_WRITE_CORPUS").is_some() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).unwrap();
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for seed in seeds {
        check(name, target, seed);
    }
    for _ in 0..mutations {
        let seed = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed);
        check(name, target, &input);
    }
}

fn check(name: &str, target: fn(&[u8]), input: &[u8]) {
    if std::panic::catch_unwind(|| target(input)).is_err() {
        panic!("fuzz target {name} panicked on input {input:?}");
    }
}

#[test]
fn the_frame_decoder_survives_mutated_frames() {
    run("frames", ferromq::fuzzing::frames, &frame_seeds(), 100_000);
}

#[test]
fn binary_requests_survive_mutation() {
    run(
        "request",
        ferromq::fuzzing::request,
        &request_seeds(),
        30_000,
    );
}

#[test]
fn http_requests_survive_mutation() {
    run("http", ferromq::fuzzing::http, &http_seeds(), 30_000);
}
