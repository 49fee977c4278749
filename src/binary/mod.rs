//! The binary protocol front end: the accept loop, one task per connection, and
//! pipelined requests (the wire is `proto/ferromq/v1/ferromq.proto`, framed by
//! [`crate::codec`]; what each request does is [`dispatch`]).
//!
//! One task per connection decodes frames and runs each request as its own future
//! inside that task (a `FuturesUnordered`), so a long-poll reserve never holds back
//! the requests behind it, and no request costs a task spawn or a hop to a writer
//! task. Whenever a response is ready, the task writes it together with every other
//! ready response, with one flush (one `writev`). Responses therefore come back in
//! completion order, matched by request id. At most `max_in_flight` requests, and
//! `max_connection_bytes` of them, run per connection; past that the task stops
//! reading (backpressure), and while the
//! client does not read its responses, the task waits on the socket and reads
//! nothing more from it.
//!
//! A frame that cannot be decoded (oversize length prefix, garbage, truncated at
//! EOF) gets one `Error` response with request id 0, then the connection is closed.
//! Every other failure is an `Error` response and the connection stays open. A
//! connection's problems never reach another connection.
//!
//! Past `--max-connections`, a new connection gets one `RESOURCE_EXHAUSTED` error
//! frame (request id 0) and is closed ([`crate::net`]). A connection with no request
//! in flight and no complete request for `--idle-timeout` gets one `UNAVAILABLE`
//! error frame (id 0) and is closed; a frame trickling in byte by byte does not
//! count as a request.
//!
//! At shutdown a connection stops reading, finishes what is in flight (long polls
//! are answered UNAVAILABLE), then answers UNAVAILABLE to every request it finds
//! already received but unread, and closes: a request that reached the server is
//! never left without an answer.
//!
//! # Authentication
//! On a server with tokens ([`crate::auth`]) a connection starts unauthenticated:
//! its first request must be a `Hello` whose `token` the server knows. Any other
//! request first, or a Hello without a valid token, gets one `UNAUTHENTICATED`
//! error and the connection is closed. A Hello is checked when it is read, before
//! the requests behind it, so a client may pipeline its first requests after its
//! Hello. (A `Health` request is answered before authentication: it says nothing
//! about queues.) The token's [`Scope`] then applies to every request of the connection
//! (a later Hello with another valid token replaces it). Without auth
//! (`--auth none`) every connection has every queue in scope and Hello's token is
//! ignored.

pub mod dispatch;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use prometheus_client::metrics::counter::Counter;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Auth, Scope};
use crate::codec::{CodecError, ServerCodec};
use crate::metrics::Protocol;
use crate::net::Acceptor;
use crate::proto::{self, request::Op, response, ErrorCode, Request, Response};
use crate::service::Service;
use crate::tls::{ReadHalf, ServerTls, WriteHalf};

/// The limits of the binary front end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest frame in either direction.
    pub(crate) max_frame: usize,
    /// Most connections at once.
    pub(crate) max_connections: usize,
    /// Most requests running at once on one connection.
    pub(crate) max_in_flight: usize,
    /// Most bytes of requests running at once on one connection (one request is
    /// always let in, so a single frame up to `max_frame` is never refused).
    pub(crate) max_connection_bytes: usize,
    /// A connection with nothing in flight and no request for this long is closed
    /// (`None`: never).
    pub(crate) idle_timeout: Option<Duration>,
}

/// Accepts connections on `listener` until `stop` is cancelled; every connection
/// task is tracked by `connections`.
/// With `tls`, every connection is TLS ([`crate::tls`]).
pub(crate) async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    auth: Arc<Auth>,
    tls: Option<Arc<ServerTls>>,
    limits: Limits,
    stop: CancellationToken,
    connections: TaskTracker,
) {
    let refusal = refusal_frame(limits.max_connections);
    let metrics = service.metrics();
    let (received, sent) = metrics.byte_counters(Protocol::Binary);
    let mut acceptor = Acceptor::new(
        listener,
        limits.max_connections,
        refusal,
        tls,
        &connections,
        metrics.connection_counters(Protocol::Binary),
    );
    while let Some((incoming, permit)) = acceptor.next(&stop).await {
        let service = Arc::clone(&service);
        let auth = Arc::clone(&auth);
        let stop = stop.clone();
        let peer = incoming.peer;
        let (received, sent) = (received.clone(), sent.clone());
        connections.spawn(async move {
            let session = Session {
                scope: auth.scope(None).map(Arc::new),
                consumer: None,
                auth,
                peer,
                received,
                sent,
            };
            if let Some(conn) = incoming.open(&stop).await {
                let (read, write) = conn.split();
                serve_connection(read, write, service, session, stop, limits).await;
            }
            drop(permit);
        });
    }
}

/// The one frame a connection over `--max-connections` gets before it is closed:
/// RESOURCE_EXHAUSTED with request id 0.
fn refusal_frame(max_connections: usize) -> bytes::Bytes {
    let response = Response {
        id: 0,
        result: Some(dispatch::error(
            ErrorCode::ResourceExhausted,
            format!(
                "too many connections: this server serves at most {max_connections}; retry later"
            ),
        )),
    };
    let body = response.encode_to_vec();
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    frame.extend_from_slice(&body);
    frame.into()
}

/// A request being served on a connection.
/// A request being served on a connection; it ends with its response and the
/// size of the request, which the connection holds until then.
type InFlight = Pin<Box<dyn Future<Output = (Response, usize)> + Send>>;

/// Who is on the other end of a connection.
struct Session {
    auth: Arc<Auth>,
    /// What the connection may reach; `None` until a Hello with a valid token.
    scope: Option<Arc<Scope>>,
    /// Hello's consumer name, for the delivery histories of what it reserves.
    consumer: Option<Arc<str>>,
    peer: std::net::SocketAddr,
    /// Bytes of frames read and written (metrics; shared by every connection).
    received: Counter,
    sent: Counter,
}

async fn serve_connection(
    read: ReadHalf,
    write: WriteHalf,
    service: Arc<Service>,
    mut session: Session,
    stop: CancellationToken,
    limits: Limits,
) {
    let mut frames = FramedRead::new(read, ServerCodec::new(limits.max_frame));
    let mut sink = FramedWrite::new(write, ServerCodec::new(limits.max_frame));
    let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    // Bytes of the requests in flight (their frames' lengths): past
    // `max_connection_bytes` the connection stops reading, as past
    // `max_in_flight` requests (one request is always let in).
    let mut held_bytes: usize = 0;
    let mut closing = None;
    let mut stopping = false;
    // One registration with the token for the connection's life, not one per loop
    // turn (creating and dropping the wait cost ~2 % of the CPU with 1,000
    // connections at depth 1).
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    // Idle = nothing in flight, and no complete request read and no response
    // written for `idle_timeout`. The timer is not moved per request: when it
    // fires early it is re-armed from the last activity.
    let mut last_activity = tokio::time::Instant::now();
    let idle = tokio::time::sleep(limits.idle_timeout.unwrap_or(Duration::MAX / 4));
    tokio::pin!(idle);
    loop {
        tokio::select! {
            () = &mut idle, if limits.idle_timeout.is_some() && in_flight.is_empty() => {
                let timeout = limits.idle_timeout.unwrap_or_default();
                let due = last_activity + timeout;
                if tokio::time::Instant::now() >= due {
                    tracing::debug!(peer = %session.peer, "closing an idle connection");
                    closing = Some(Response {
                        id: 0,
                        result: Some(dispatch::error(
                            ErrorCode::Unavailable,
                            format!("closing the connection: idle for {} ms (--idle-timeout)", timeout.as_millis()),
                        )),
                    });
                    break;
                }
                idle.as_mut().reset(due);
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                match write_ready(&mut sink, done, &mut in_flight, limits.max_frame).await {
                    Ok(freed) => held_bytes = held_bytes.saturating_sub(freed),
                    Err(_) => return,
                }
                last_activity = tokio::time::Instant::now();
            }
            frame = frames.next(), if in_flight.len() < limits.max_in_flight
                && (held_bytes < limits.max_connection_bytes || in_flight.is_empty()) => match frame {
                Some(Ok(request)) => {
                    last_activity = tokio::time::Instant::now();
                    let frame_len = frames.decoder().last_frame_len();
                    session.received.inc_by(u64::try_from(frame_len).map_or(u64::MAX, |n| n + 4));
                    let size = frames.decoder().last_frame_len().saturating_add(
                        response_weight(request.op.as_ref(), service.max_body(), &limits),
                    );
                    match on_request(request, size, &service, &mut session, limits.max_frame) {
                        Ok(serving) => {
                            held_bytes = held_bytes.saturating_add(size);
                            in_flight.push(serving);
                        }
                        Err(response) => {
                            closing = Some(*response);
                            break;
                        }
                    }
                }
                Some(Err(err)) => {
                    closing = Some(frame_error(&err));
                    break;
                }
                None => break,
            },
            () = &mut cancelled => {
                stopping = true;
                break;
            }
        }
    }
    match closing {
        Some(response) => {
            // The stream is unusable: drop what is in flight and say why we close.
            drop(in_flight);
            let _ = sink.send(response).await;
        }
        None => {
            while let Some(done) = in_flight.next().await {
                if write_ready(&mut sink, done, &mut in_flight, limits.max_frame)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if stopping && refuse_unread(&mut frames, &mut sink).await.is_err() {
                return;
            }
        }
    }
    let _ = sink.close().await;
}

/// At shutdown: every request the client has sent that is already here but was
/// not read (pipelined behind the ones in flight) gets UNAVAILABLE, so the client
/// knows it was not run. Bounded by what the socket holds now (and by a count, so
/// a client that keeps writing cannot hold the shutdown up).
async fn refuse_unread(
    frames: &mut FramedRead<ReadHalf, ServerCodec>,
    sink: &mut FramedWrite<WriteHalf, ServerCodec>,
) -> Result<(), CodecError> {
    const MOST: usize = 100_000;
    let mut refused = 0;
    while let Some(Some(Ok(request))) = frames.next().now_or_never() {
        sink.feed(Response {
            id: request.id,
            result: Some(dispatch::error(
                ErrorCode::Unavailable,
                "the server is shutting down; this request was not run".into(),
            )),
        })
        .await?;
        refused += 1;
        if refused == MOST {
            break;
        }
    }
    if refused > 0 {
        tracing::debug!(refused, "answered unread requests at shutdown");
    }
    sink.flush().await
}

/// Writes `first` and every other response that is ready, with one flush;
/// returns the bytes of the requests they answered.
async fn write_ready(
    sink: &mut FramedWrite<WriteHalf, ServerCodec>,
    first: (Response, usize),
    in_flight: &mut FuturesUnordered<InFlight>,
    max_frame: usize,
) -> Result<usize, CodecError> {
    let (response, mut freed) = first;
    sink.feed(fit_frame(response, max_frame)).await?;
    while let Some(Some((response, size))) = in_flight.next().now_or_never() {
        freed = freed.saturating_add(size);
        sink.feed(fit_frame(response, max_frame)).await?;
    }
    sink.flush().await?;
    Ok(freed)
}

/// Starts serving one request, read from a frame of `size` bytes, or says why the
/// connection must close.
fn on_request(
    request: Request,
    size: usize,
    service: &Arc<Service>,
    session: &mut Session,
    max_frame: usize,
) -> Result<InFlight, Box<Response>> {
    let id = request.id;
    let refuse = |code: ErrorCode, message: String| {
        Err(Box::new(Response {
            id,
            result: Some(dispatch::error(code, message)),
        }))
    };
    if let Some(Op::Hello(hello)) = &request.op {
        if hello.version != proto::PROTOCOL_VERSION {
            return refuse(
                ErrorCode::UnsupportedVersion,
                format!(
                    "this server speaks protocol version {}, the client asked for {}",
                    proto::PROTOCOL_VERSION,
                    hello.version
                ),
            );
        }
        if !hello.consumer.is_empty() {
            if let Err(reason) = crate::queue::history::check_consumer(&hello.consumer) {
                return refuse(ErrorCode::InvalidArgument, reason);
            }
        }
        if !session.auth.disabled {
            let token = (!hello.token.is_empty()).then_some(hello.token.as_str());
            match session.auth.scope(token) {
                Some(scope) => session.scope = Some(Arc::new(scope)),
                None => {
                    tracing::info!(peer = %session.peer, "authentication failed");
                    let message = if token.is_none() {
                        "this server needs a token: send it in Hello.token"
                    } else {
                        "the token is not valid"
                    };
                    return refuse(ErrorCode::Unauthenticated, message.into());
                }
            }
        }
    }
    // Health says nothing about queues: answered before authentication.
    let scope = match (&request.op, session.scope.clone()) {
        (_, Some(scope)) => Some(scope),
        (Some(Op::Health(_)), None) => Some(Arc::new(Scope::Projects(Vec::new()))),
        (_, None) => None,
    };
    let Some(scope) = scope else {
        return refuse(
            ErrorCode::Unauthenticated,
            "this server needs a token: the first request must be a Hello with one".into(),
        );
    };
    if let Some(Op::Hello(hello)) = &request.op {
        session.consumer = (!hello.consumer.is_empty()).then(|| Arc::from(hello.consumer.as_str()));
    }
    let consumer = session.consumer.clone();
    let service = Arc::clone(service);
    let sent = session.sent.clone();
    let peer = session.peer;
    let serving: InFlight = Box::pin(async move {
        let started = Instant::now();
        let (op_index, op) = dispatch::op_label(request.op.as_ref());
        // Kept only in case the request fails, for its log line.
        let queue = dispatch::queue_of(request.op.as_ref());
        let caller = dispatch::Caller {
            scope: &scope,
            consumer,
        };
        let result = dispatch::execute(&service, &caller, max_frame, request.op).await;
        let code = match &result {
            response::Result::Error(err) => {
                let code = ErrorCode::try_from(err.code).unwrap_or(ErrorCode::Internal);
                log_error(id, op, queue.as_deref(), code, &err.message, peer);
                (
                    usize::try_from(err.code).unwrap_or(usize::MAX),
                    code.as_str_name(),
                )
            }
            _ => (0, "OK"),
        };
        service
            .metrics()
            .binary_request((op_index, op), code, started.elapsed());
        let response = Response {
            id,
            result: Some(result),
        };
        // The frame: its length prefix and the encoded response.
        sent.inc_by(u64::try_from(response.encoded_len()).map_or(u64::MAX, |n| n + 4));
        (response, size)
    });
    Ok(serving)
}

/// One line for a failed request, with its request id and queue: at warn for
/// the server's own failures (INTERNAL, UNAVAILABLE), at debug for a refusal the
/// client caused (it has the answer; the server has nothing to fix).
fn log_error(
    id: u64,
    op: &str,
    queue: Option<&str>,
    code: ErrorCode,
    message: &str,
    peer: std::net::SocketAddr,
) {
    let code = code.as_str_name();
    let queue = queue.unwrap_or("");
    if matches!(code, "INTERNAL" | "UNAVAILABLE") {
        tracing::warn!(request_id = id, op, queue, code, %peer, "request failed: {message}");
    } else {
        tracing::debug!(request_id = id, op, queue, code, %peer, "request refused: {message}");
    }
}

/// What a request is charged beyond its own frame for the response it may bring:
/// the bodies of the messages it asks for, at most a frame, and at most a
/// sixteenth of `--max-connection-bytes`. It is charged to the connection's byte
/// budget with the request, from when it is read until its response is written,
/// so what a client makes the server hold in responses it does not read is
/// bounded: at most 17 such requests at once, each answered within a frame (without
/// it, 1,024 reserves of 100 messages of 64 KiB could hold 6.5 GB). The sixteenth
/// keeps batching consumers pipelined: charged in full, a reserve of 100 with the
/// default 64 KiB bodies left two in flight, and the batched mixed benchmark fell
/// from ~200k to ~117k msg/s (BENCHMARKS.md, the hardening issue).
fn response_weight(op: Option<&Op>, max_body: usize, limits: &Limits) -> usize {
    let n = match op {
        Some(Op::Reserve(reserve)) => reserve.n,
        Some(Op::Peek(peek)) => peek.n,
        Some(Op::Get(_)) => 1,
        _ => return 0,
    };
    let n = usize::try_from(n.clamp(1, 100)).unwrap_or(100);
    n.saturating_mul(max_body)
        .min(limits.max_frame)
        .min(limits.max_connection_bytes / 16)
}

/// The response to a frame that could not be decoded.
fn frame_error(err: &CodecError) -> Response {
    let (code, message) = match err {
        CodecError::FrameTooLarge { .. } => (ErrorCode::FrameTooLarge, err.to_string()),
        CodecError::Malformed(_) => (ErrorCode::MalformedFrame, err.to_string()),
        CodecError::Io(io) => (
            ErrorCode::MalformedFrame,
            format!("cannot read a frame: {io}"),
        ),
    };
    tracing::debug!(cause = %err, "closing connection after a bad frame");
    Response {
        id: 0,
        result: Some(dispatch::error(code, message)),
    }
}

/// A response too large for one frame (e.g. 100 reserved bodies of the maximum
/// size) becomes a RESOURCE_EXHAUSTED error; the reserved messages are requeued
/// when their leases run out.
fn fit_frame(response: Response, max_frame: usize) -> Response {
    use prost::Message as _;
    let len = response.encoded_len();
    if len <= max_frame {
        return response;
    }
    Response {
        id: response.id,
        result: Some(response::Result::Error(proto::Error {
            code: ErrorCode::ResourceExhausted.into(),
            message: format!(
                "the response is {len} bytes, over the frame limit of {max_frame}; ask for fewer messages"
            ),
        })),
    }
}
