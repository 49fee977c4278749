//! The TCP server: accept loop, one task per connection, pipelined requests.
//!
//! One task per connection decodes frames and runs each request as its own future
//! inside that task (a `FuturesUnordered`), so a long-poll reserve never holds back
//! the requests behind it, and no request costs a task spawn or a hop to a writer
//! task. Whenever a response is ready, the task writes it together with every other
//! ready response, with one flush (one `writev`). Responses therefore come back in
//! completion order, matched by request id. At most `max_in_flight` requests run per
//! connection; past that the task stops reading (backpressure), and while the
//! client does not read its responses, the task waits on the socket and reads
//! nothing more from it.
//!
//! A frame that cannot be decoded (oversize length prefix, garbage, truncated at
//! EOF) gets one `Error` response with request id 0, then the connection is closed.
//! Every other failure is an `Error` response and the connection stays open. A
//! connection's problems never reach another connection.
//!
//! # Shutdown
//! [`Server::shutdown`]: stop accepting; connections stop reading and finish their
//! in-flight requests; the queue actors stop (long polls are answered
//! UNAVAILABLE); the committer does its last flush; then it returns.

use std::net::SocketAddr;
use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::{CodecError, ServerCodec};
use crate::command::{self, Context};
use crate::config::Config;
use crate::proto::{self, request::Op, response, ErrorCode, Request, Response};
use crate::registry::Registry;
use crate::storage::{SledConfig, SledStore, StorageError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory could not be opened.
    #[error("cannot open the data directory: {0}")]
    Storage(#[from] StorageError),
    /// The queues could not be loaded.
    #[error("cannot load the queues: {0}")]
    Load(#[from] crate::error::QueueError),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// A running server.
pub struct Server {
    ctx: Arc<Context>,
    local_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    stop: CancellationToken,
    connections: TaskTracker,
    accept: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Opens the data directory, loads the queues and starts serving `listener`.
    ///
    /// # Errors
    /// If the configuration is invalid or the data directory cannot be opened.
    pub async fn start(listener: TcpListener, config: Config) -> Result<Server, ServerError> {
        config.validate().map_err(ServerError::Config)?;
        let store = SledStore::open(&SledConfig {
            path: config.data_dir.clone(),
            cache_bytes: config.cache_bytes,
            fsync: config.fsync,
        })?;
        let registry = Registry::open(store)?;
        let ctx = Arc::new(Context {
            registry,
            max_body: config.max_body,
            max_frame: config.max_frame,
            started: std::time::Instant::now(),
        });
        let local_addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let http_addr = match config.http_listen {
            Some(addr) => {
                let http = TcpListener::bind(addr).await?;
                let http_addr = http.local_addr()?;
                tokio::spawn(crate::http::serve(
                    http,
                    Arc::clone(&ctx),
                    config.http_auth.clone(),
                    config.max_connections,
                    stop.clone(),
                    connections.clone(),
                ));
                tracing::info!(%http_addr, "IronMQ v3 HTTP API listening");
                Some(http_addr)
            }
            None => None,
        };
        let accept = tokio::spawn(accept_loop(
            listener,
            Arc::clone(&ctx),
            config,
            stop.clone(),
            connections.clone(),
        ));
        tracing::info!(%local_addr, "ferromq listening");
        Ok(Server {
            ctx,
            local_addr,
            http_addr,
            stop,
            connections,
            accept,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the IronMQ HTTP API, if it was enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Stops the server in the order of the module docs and waits until the data
    /// directory is flushed and released.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.accept.await;
        self.ctx.registry.shutdown().await;
        self.connections.close();
        self.connections.wait().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<Context>,
    config: Config,
    stop: CancellationToken,
    connections: TaskTracker,
) {
    let mut acceptor = Acceptor::new(listener, config.max_connections);
    while let Some((stream, peer, permit)) = acceptor.next(&stop).await {
        let ctx = Arc::clone(&ctx);
        let stop = stop.clone();
        let max_in_flight = config.max_in_flight;
        connections.spawn(async move {
            tracing::debug!(%peer, "connection opened");
            serve_connection(stream, ctx, stop, max_in_flight).await;
            tracing::debug!(%peer, "connection closed");
            drop(permit);
        });
    }
}

/// Accepts connections, at most `max_connections` at once: the permit is taken
/// before accepting, so past the limit connections wait in the kernel's backlog
/// instead of being accepted and starved. Shared by the binary and HTTP listeners.
pub(crate) struct Acceptor {
    listener: TcpListener,
    limit: Arc<Semaphore>,
}

impl Acceptor {
    pub(crate) fn new(listener: TcpListener, max_connections: usize) -> Self {
        Acceptor {
            listener,
            limit: Arc::new(Semaphore::new(max_connections)),
        }
    }

    /// The next connection (with `TCP_NODELAY` set) and its permit; `None` once
    /// `stop` is cancelled. Accept errors (usually EMFILE/ENFILE) are logged and
    /// retried with a backoff of 1 ms doubling to 1 s.
    pub(crate) async fn next(
        &mut self,
        stop: &CancellationToken,
    ) -> Option<(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
        let mut backoff_ms = 1;
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&self.limit).acquire_owned() => permit.ok()?,
                () = stop.cancelled() => return None,
            };
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = stop.cancelled() => return None,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer, permit));
                }
                Err(err) => {
                    tracing::warn!(cause = %err, backoff_ms, "accept failed");
                    drop(permit);
                    tokio::time::sleep(std::time::Duration::from_millis(backoff_ms)).await;
                    backoff_ms = (backoff_ms * 2).min(1000);
                }
            }
        }
    }
}

/// A request being served on a connection.
type InFlight = Pin<Box<dyn Future<Output = Response> + Send>>;

async fn serve_connection(
    stream: TcpStream,
    ctx: Arc<Context>,
    stop: CancellationToken,
    max_in_flight: usize,
) {
    let (read, write) = stream.into_split();
    let mut frames = FramedRead::new(read, ServerCodec::new(ctx.max_frame));
    let mut sink = FramedWrite::new(write, ServerCodec::new(ctx.max_frame));
    let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    let mut closing = None;
    loop {
        tokio::select! {
            Some(response) = in_flight.next(), if !in_flight.is_empty() => {
                if write_ready(&mut sink, response, &mut in_flight, ctx.max_frame).await.is_err() {
                    return;
                }
            }
            frame = frames.next(), if in_flight.len() < max_in_flight => match frame {
                Some(Ok(request)) => match on_request(request, &ctx) {
                    Ok(serving) => in_flight.push(serving),
                    Err(response) => {
                        closing = Some(*response);
                        break;
                    }
                },
                Some(Err(err)) => {
                    closing = Some(frame_error(&err));
                    break;
                }
                None => break,
            },
            () = stop.cancelled() => break,
        }
    }
    match closing {
        Some(response) => {
            // The stream is unusable: drop what is in flight and say why we close.
            drop(in_flight);
            let _ = sink.send(response).await;
        }
        None => {
            while let Some(response) = in_flight.next().await {
                if write_ready(&mut sink, response, &mut in_flight, ctx.max_frame)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = sink.close().await;
}

/// Writes `first` and every other response that is ready, with one flush.
async fn write_ready(
    sink: &mut FramedWrite<OwnedWriteHalf, ServerCodec>,
    first: Response,
    in_flight: &mut FuturesUnordered<InFlight>,
    max_frame: usize,
) -> Result<(), CodecError> {
    sink.feed(fit_frame(first, max_frame)).await?;
    while let Some(Some(response)) = in_flight.next().now_or_never() {
        sink.feed(fit_frame(response, max_frame)).await?;
    }
    sink.flush().await
}

/// Starts serving one request, or says why the connection must close.
fn on_request(request: Request, ctx: &Arc<Context>) -> Result<InFlight, Box<Response>> {
    let id = request.id;
    if let Some(Op::Hello(hello)) = &request.op {
        if hello.version != proto::PROTOCOL_VERSION {
            return Err(Box::new(Response {
                id,
                result: Some(command::error(
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "this server speaks protocol version {}, the client asked for {}",
                        proto::PROTOCOL_VERSION,
                        hello.version
                    ),
                )),
            }));
        }
    }
    let ctx = Arc::clone(ctx);
    Ok(Box::pin(async move {
        let result = command::execute(&ctx, request.op).await;
        Response {
            id,
            result: Some(result),
        }
    }))
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
        result: Some(command::error(code, message)),
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
