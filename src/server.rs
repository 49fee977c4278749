//! The TCP server: accept loop, one task per connection, pipelined requests.
//!
//! A connection's reader decodes frames and spawns one task per request, so a
//! long-poll reserve never holds back the requests behind it; each task sends its
//! response to the connection's writer, which coalesces everything that is ready
//! into one write. Responses therefore come back in completion order, matched by
//! request id. At most `max_in_flight` requests run per connection; past that the
//! reader stops reading (backpressure).
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

use futures_util::{SinkExt, StreamExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
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

/// Responses waiting for the writer of one connection.
const WRITE_QUEUE: usize = 1024;

/// A running server.
pub struct Server {
    ctx: Arc<Context>,
    local_addr: SocketAddr,
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
        });
        let local_addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let connections = TaskTracker::new();
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
            stop,
            connections,
            accept,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let mut backoff_ms = 1;
    loop {
        // Take the permit before accepting: past the limit, connections wait in the
        // kernel's backlog instead of being accepted and starved.
        let permit = tokio::select! {
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = stop.cancelled() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff_ms = 1;
                let _ = stream.set_nodelay(true);
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
            Err(err) => {
                // Usually EMFILE/ENFILE: wait for descriptors to come back.
                tracing::warn!(cause = %err, backoff_ms, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(1000);
            }
        }
    }
}

/// What the reader does after a frame.
enum Next {
    Continue,
    /// Send this error (request id 0 unless given) and close.
    Close(Response),
}

async fn serve_connection(
    stream: TcpStream,
    ctx: Arc<Context>,
    stop: CancellationToken,
    max_in_flight: usize,
) {
    let (read, write) = stream.into_split();
    let mut frames = FramedRead::new(read, ServerCodec::new(ctx.max_frame));
    let (responses, queued) = mpsc::channel(WRITE_QUEUE);
    let writer = tokio::spawn(write_responses(write, queued, ctx.max_frame));
    let mut in_flight = JoinSet::new();
    let mut closing = None;
    loop {
        if in_flight.len() >= max_in_flight {
            in_flight.join_next().await;
            continue;
        }
        let next = tokio::select! {
            frame = frames.next() => match frame {
                Some(Ok(request)) => on_request(request, &ctx, &responses, &mut in_flight),
                Some(Err(err)) => Next::Close(frame_error(&err)),
                None => break,
            },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => Next::Continue,
            () = stop.cancelled() => break,
        };
        if let Next::Close(response) = next {
            closing = Some(response);
            break;
        }
    }
    match closing {
        Some(response) => {
            // The stream is unusable: drop what is in flight and say why we close.
            in_flight.abort_all();
            let _ = responses.send(response).await;
        }
        None => while in_flight.join_next().await.is_some() {},
    }
    drop(responses);
    let _ = writer.await;
}

fn on_request(
    request: Request,
    ctx: &Arc<Context>,
    responses: &mpsc::Sender<Response>,
    in_flight: &mut JoinSet<()>,
) -> Next {
    let id = request.id;
    if let Some(Op::Hello(hello)) = &request.op {
        if hello.version != proto::PROTOCOL_VERSION {
            return Next::Close(Response {
                id,
                result: Some(command::error(
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "this server speaks protocol version {}, the client asked for {}",
                        proto::PROTOCOL_VERSION,
                        hello.version
                    ),
                )),
            });
        }
    }
    let ctx = Arc::clone(ctx);
    let responses = responses.clone();
    in_flight.spawn(async move {
        let result = command::execute(&ctx, request.op).await;
        let _ = responses
            .send(Response {
                id,
                result: Some(result),
            })
            .await;
    });
    Next::Continue
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

/// Writes responses as they come, one write for all that are ready.
async fn write_responses(
    write: OwnedWriteHalf,
    mut queued: mpsc::Receiver<Response>,
    max_frame: usize,
) {
    let mut sink = FramedWrite::new(write, ServerCodec::new(max_frame));
    while let Some(first) = queued.recv().await {
        let mut next = Some(first);
        while let Some(response) = next {
            if sink.feed(fit_frame(response, max_frame)).await.is_err() {
                return;
            }
            next = queued.try_recv().ok();
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
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
