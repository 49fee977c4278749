//! Entry points for fuzzing: each takes arbitrary bytes and drives one of the
//! server's input paths with them, the way a hostile client could. None may panic,
//! hang or return a response the server could not send. The cargo-fuzz targets in
//! `fuzz/` call these (`cargo +nightly fuzz run frames`), and `tests/fuzz_smoke.rs`
//! runs them on stable over a seed corpus and a bounded number of generated inputs,
//! in CI.
//!
//! - [`frames`]: the frame decoder, fed in chunks of every size.
//! - [`request`]: a decoded `Request` run through the binary protocol's dispatch and
//!   the service layer, over an in-memory store, with a token limited to a project.
//! - [`http`]: an HTTP method, path and body run through the IronMQ API's routing,
//!   JSON mapping and the service layer, over an in-memory store.
//!
//! A long poll is cut off after 20 ms, as if its client had gone away. Not part of
//! the supported API (hidden from the docs).

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::auth::Scope;
use crate::codec::ServerCodec;
use crate::queue::clock::ManualClock;
use crate::queue::Registry;
use crate::service::Service;
use crate::storage::MemoryStore;

/// How long one input may run: long polls are cut off after it (as if their
/// client had gone), so the fuzzer does not wait 30 s on each.
const PATIENCE: std::time::Duration = std::time::Duration::from_millis(20);
/// Frame limit of the fuzzed paths: small, so that the limit is reached often.
const MAX_FRAME: usize = 64 * 1024;

/// One runtime and one service for every input of a process: queues created by
/// earlier inputs stay, so later ones meet existing state as a real server would.
fn harness() -> &'static (tokio::runtime::Runtime, Arc<Service>) {
    static HARNESS: OnceLock<(tokio::runtime::Runtime, Arc<Service>)> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime for fuzzing");
        let service = runtime.block_on(async {
            let registry = Registry::open(
                Arc::new(MemoryStore::default()),
                Arc::new(ManualClock::new(1_700_000_000_000)),
            )
            .await
            .expect("a registry over memory");
            Arc::new(Service::new(registry, 4096))
        });
        (runtime, service)
    })
}

/// Feeds `data` to the server's frame decoder, split at every offset the first
/// byte names, and checks each outcome: a decoded request, an error (after which
/// the server closes), or "need more".
pub fn frames(data: &[u8]) {
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut codec = ServerCodec::new(MAX_FRAME);
    let mut buf = BytesMut::new();
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_request)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = codec.decode_eof(&mut buf);
}

/// Decodes `data` as a `Request` and runs it as a connection of a token limited to
/// project `p` would; the response must fit in a frame once the server has fitted
/// it.
pub fn request(data: &[u8]) {
    use prost::Message as _;
    let Ok(request) = crate::proto::Request::decode(data) else {
        return;
    };
    let (runtime, service) = harness();
    let scope = Scope::Projects(vec!["p".into()]);
    let caller = crate::binary::dispatch::Caller {
        scope: &scope,
        consumer: None,
    };
    let run = crate::binary::dispatch::execute(service, &caller, MAX_FRAME, request.op);
    // A long poll would wait up to 30 s: cut it short as a client going away does.
    if let Ok(result) = runtime.block_on(async { tokio::time::timeout(PATIENCE, run).await }) {
        let response = crate::proto::Response {
            id: request.id,
            result: Some(result),
        };
        let _ = response.encoded_len();
    }
}

/// Runs `data` as an HTTP request of project `p`: the first byte picks the
/// method, the text up to the first newline is the path after
/// `/3/projects/p/`, the rest is the body.
pub fn http(data: &[u8]) {
    let (runtime, service) = harness();
    let method = match data.first().copied().unwrap_or(0) % 5 {
        0 => hyper::Method::GET,
        1 => hyper::Method::POST,
        2 => hyper::Method::PUT,
        3 => hyper::Method::PATCH,
        _ => hyper::Method::DELETE,
    };
    let rest = data.get(1..).unwrap_or_default();
    let (path, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let path = format!("/3/projects/p/{}", String::from_utf8_lossy(path));
    let route = crate::http::fuzz_route(
        Arc::clone(service),
        method,
        &path,
        bytes::Bytes::copy_from_slice(body),
    );
    let _ = runtime.block_on(async { tokio::time::timeout(PATIENCE, route).await });
}
