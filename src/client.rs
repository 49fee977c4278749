//! An async, pipelined client for the binary protocol.
//!
//! One [`Client`] is one TCP connection. It is `Clone` and every method takes
//! `&self`, so many tasks can issue requests at once: each request gets a fresh id,
//! a writer task coalesces queued requests into one write, and a reader task routes
//! each response to its caller by id, in whatever order the server answers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ferromq::client::ClientError> {
//! use ferromq::client::{Client, ReserveOptions};
//! let client = Client::connect("127.0.0.1:7600").await?;
//! let ids = client.push("jobs", vec!["hello".into()]).await?;
//! let got = client.reserve("jobs", ReserveOptions::default()).await?;
//! for message in got {
//!     client.delete("jobs", message.id, Some(message.reservation_id)).await?;
//! }
//! # let _ = ids;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::codec::{ClientCodec, CodecError, DEFAULT_MAX_FRAME};
use crate::proto::{self, request::Op, response, ErrorCode, Request};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{code:?}: {message}")]
    Server {
        /// The stable error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The connection could not be made or was lost.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The connection closed before the response arrived.
    #[error("the connection is closed")]
    Closed,
    /// The server sent something this client does not understand.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The server's error code, if the server answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Callers waiting for a response, by request id. A response without a result
/// (a server bug, or a newer server's result this client cannot decode) is
/// delivered as `None`.
type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Option<response::Result>>>>>>;

/// A connection to a ferromq server. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    outgoing: mpsc::Sender<Request>,
    /// Callers waiting for a response, by request id; `None` once the connection
    /// is gone.
    pending: Pending,
    next_id: Arc<AtomicU64>,
}

/// How to connect: [`Client::connect_with`].
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// The token for a server that requires one (sent in Hello).
    pub token: Option<String>,
    /// Largest frame accepted from the server (0: [`DEFAULT_MAX_FRAME`]).
    pub max_frame: usize,
    /// Speak TLS ([`crate::tls::client_config`]); plaintext when `None`.
    pub tls: Option<ClientTls>,
    /// Send no Hello: on a server with tokens only `health` is answered then.
    pub skip_hello: bool,
    /// The consumer name sent in Hello, recorded in the delivery history of the
    /// messages this connection reserves.
    pub consumer: Option<String>,
}

/// TLS towards a server: whom to trust, and the name its certificate must carry.
#[derive(Clone)]
pub struct ClientTls {
    /// The roots and settings ([`crate::tls::client_config`]).
    pub config: Arc<rustls::ClientConfig>,
    /// The server's host name or IP address, as its certificate names it.
    pub server_name: String,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("max_frame", &self.max_frame)
            .field("tls", &self.tls.as_ref().map(|tls| &tls.server_name))
            .field("skip_hello", &self.skip_hello)
            .field("consumer", &self.consumer)
            .finish()
    }
}

/// The host part of `HOST:PORT` (`[::1]:7600` gives `::1`), for TLS's server name.
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Options of [`Client::reserve`]; the defaults are the server's.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReserveOptions {
    /// Messages wanted, 1..=100 (0 means 1).
    pub n: u32,
    /// Lease length in ms (0: the queue's default).
    pub timeout_ms: u64,
    /// Long-poll wait in ms, 0..=30000.
    pub wait_ms: u64,
    /// Delete on reserve (at-most-once).
    pub delete: bool,
    /// Lease advice: the queue's processing times decide the lease
    /// (`timeout_ms` is ignored).
    pub auto_timeout: bool,
}

impl Client {
    /// Connects and exchanges Hello.
    ///
    /// # Errors
    /// If the connection fails or the server does not speak our version.
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        Self::connect_with(addr, &ConnectOptions::default()).await
    }

    /// Connects, accepting frames up to `max_frame` bytes from the server.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn connect_with_max_frame(
        addr: impl ToSocketAddrs,
        max_frame: usize,
    ) -> Result<Client, ClientError> {
        let options = ConnectOptions {
            max_frame,
            ..ConnectOptions::default()
        };
        Self::connect_with(addr, &options).await
    }

    /// Connects with `options` and exchanges Hello (with the token, if any),
    /// unless `options.skip_hello`.
    ///
    /// # Errors
    /// As [`Client::connect`]; `UNAUTHENTICATED` if the server wants another token.
    pub async fn connect_with(
        addr: impl ToSocketAddrs,
        options: &ConnectOptions,
    ) -> Result<Client, ClientError> {
        let max_frame = match options.max_frame {
            0 => DEFAULT_MAX_FRAME,
            n => n,
        };
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (outgoing, queued) = mpsc::channel(1024);
        let (read, write): (Reader, Writer) = match &options.tls {
            None => {
                let (read, write) = stream.into_split();
                (Box::new(read), Box::new(write))
            }
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(tls.server_name.clone())
                    .map_err(|err| {
                        ClientError::Protocol(format!(
                            "{:?} is not a TLS server name: {err}",
                            tls.server_name
                        ))
                    })?;
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config))
                    .connect(name, stream)
                    .await?;
                let (read, write) = tokio::io::split(stream);
                (Box::new(read), Box::new(write))
            }
        };
        spawn_io(read, write, max_frame, queued, Arc::clone(&pending));
        let client = Client {
            outgoing,
            pending,
            next_id: Arc::new(AtomicU64::new(1)),
        };
        if !options.skip_hello {
            client
                .hello_as(
                    options.token.as_deref().unwrap_or(""),
                    options.consumer.as_deref().unwrap_or(""),
                )
                .await?;
        }
        Ok(client)
    }

    /// Sends one operation and waits for its result. Server errors become
    /// [`ClientError::Server`].
    ///
    /// # Errors
    /// Server errors, and a lost connection.
    pub async fn call(&self, op: Op) -> Result<response::Result, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(map) = pending.as_mut() else {
                return Err(ClientError::Closed);
            };
            map.insert(id, tx);
        }
        if self
            .outgoing
            .send(Request { id, op: Some(op) })
            .await
            .is_err()
        {
            self.forget(id);
            return Err(ClientError::Closed);
        }
        match rx.await.map_err(|_| ClientError::Closed)? {
            None => Err(ClientError::Protocol(format!(
                "the response to request {id} has no result"
            ))),
            Some(response::Result::Error(err)) => Err(ClientError::Server {
                code: ErrorCode::try_from(err.code).unwrap_or(ErrorCode::Unspecified),
                message: err.message,
            }),
            Some(result) => Ok(result),
        }
    }

    fn forget(&self, id: u64) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(map) = pending.as_mut() {
            map.remove(&id);
        }
    }

    /// Exchanges Hello; returns the server's answer.
    ///
    /// # Errors
    /// `UNSUPPORTED_VERSION` and connection errors.
    pub async fn hello(&self) -> Result<proto::HelloOk, ClientError> {
        self.hello_with_token("").await
    }

    /// Exchanges Hello with `token` (empty: none); a valid one sets what this
    /// connection may reach.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` (the server closes the connection), `UNSUPPORTED_VERSION`
    /// and connection errors.
    pub async fn hello_with_token(&self, token: &str) -> Result<proto::HelloOk, ClientError> {
        self.hello_as(token, "").await
    }

    /// Exchanges Hello with `token` and the consumer name `consumer` (each empty:
    /// none).
    ///
    /// # Errors
    /// As [`Client::hello_with_token`]; `INVALID_ARGUMENT` for a consumer name
    /// that is not 1..=64 bytes of visible ASCII.
    pub async fn hello_as(
        &self,
        token: &str,
        consumer: &str,
    ) -> Result<proto::HelloOk, ClientError> {
        let op = Op::Hello(proto::Hello {
            version: proto::PROTOCOL_VERSION,
            client: concat!("ferromq-client/", env!("CARGO_PKG_VERSION")).into(),
            token: token.to_owned(),
            consumer: consumer.to_owned(),
        });
        match self.call(op).await? {
            response::Result::Hello(ok) => Ok(ok),
            other => Err(unexpected(&other)),
        }
    }

    /// Pushes bodies without delay; returns their ids once the server has them on
    /// disk (under `--fsync always`).
    ///
    /// # Errors
    /// Server errors (`INVALID_ARGUMENT`, `BODY_TOO_LARGE`, ...), connection errors.
    pub async fn push(&self, queue: &str, bodies: Vec<Bytes>) -> Result<Vec<u64>, ClientError> {
        let messages = bodies
            .into_iter()
            .map(|body| proto::PushMessage {
                body,
                ..proto::PushMessage::default()
            })
            .collect();
        self.push_messages(queue, messages).await
    }

    /// Pushes messages with their own delays.
    ///
    /// # Errors
    /// As [`Client::push`].
    pub async fn push_messages(
        &self,
        queue: &str,
        messages: Vec<proto::PushMessage>,
    ) -> Result<Vec<u64>, ClientError> {
        let op = Op::Push(proto::Push {
            queue: queue.into(),
            messages,
        });
        match self.call(op).await? {
            response::Result::Push(ok) => Ok(ok.ids),
            other => Err(unexpected(&other)),
        }
    }

    /// Reserves messages.
    ///
    /// # Errors
    /// `QUEUE_NOT_FOUND`, `INVALID_ARGUMENT`, connection errors.
    pub async fn reserve(
        &self,
        queue: &str,
        options: ReserveOptions,
    ) -> Result<Vec<proto::Message>, ClientError> {
        let op = Op::Reserve(proto::Reserve {
            queue: queue.into(),
            n: options.n,
            timeout_ms: options.timeout_ms,
            wait_ms: options.wait_ms,
            delete: options.delete,
            auto_timeout: options.auto_timeout,
        });
        self.messages(op).await
    }

    /// Deletes one message (with its reservation id if it is reserved).
    ///
    /// # Errors
    /// `MESSAGE_NOT_FOUND`, `RESERVATION_EXPIRED`, `RESERVATION_MISMATCH`, ...
    pub async fn delete(
        &self,
        queue: &str,
        message_id: u64,
        reservation_id: Option<u64>,
    ) -> Result<(), ClientError> {
        let op = Op::Delete(proto::Delete {
            queue: queue.into(),
            message_id,
            reservation_id: reservation_id.unwrap_or(0),
            subscriber_name: String::new(),
        });
        self.count(op).await.map(|_| ())
    }

    /// Push queues: subscriber `subscriber` acknowledges a delivery of message
    /// `message_id` it answered with 202 (`reservation_id` is the delivery's
    /// Iron-Reservation-Id). Returns whether the message is now deleted (every
    /// subscriber has it, or the queue is unicast).
    ///
    /// # Errors
    /// As [`Client::delete`]; `INVALID_ARGUMENT` on a pull queue or for an unknown
    /// subscriber.
    pub async fn acknowledge(
        &self,
        queue: &str,
        message_id: u64,
        reservation_id: u64,
        subscriber: &str,
    ) -> Result<bool, ClientError> {
        let op = Op::Delete(proto::Delete {
            queue: queue.into(),
            message_id,
            reservation_id,
            subscriber_name: subscriber.into(),
        });
        self.count(op).await.map(|count| count > 0)
    }

    /// Whether the server is ready, and why not (allowed before authentication).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn health(&self) -> Result<proto::HealthStatus, ClientError> {
        match self.call(Op::Health(proto::HealthRequest {})).await? {
            response::Result::Health(status) => Ok(status),
            other => Err(unexpected(&other)),
        }
    }

    /// Push queues: the delivery status of a message with each subscriber.
    ///
    /// # Errors
    /// `QUEUE_NOT_FOUND`, `MESSAGE_NOT_FOUND`, `INVALID_ARGUMENT` on a pull queue.
    pub async fn push_statuses(
        &self,
        queue: &str,
        message_id: u64,
    ) -> Result<Vec<proto::PushStatus>, ClientError> {
        let op = Op::PushStatuses(proto::PushStatusesRequest {
            queue: queue.into(),
            message_id,
        });
        match self.call(op).await? {
            response::Result::PushStatuses(list) => Ok(list.subscribers),
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes many messages, all or nothing; returns how many.
    ///
    /// # Errors
    /// As [`Client::delete`], for the first failing entry.
    pub async fn delete_batch(
        &self,
        queue: &str,
        entries: Vec<(u64, Option<u64>)>,
    ) -> Result<u32, ClientError> {
        let op = Op::DeleteBatch(proto::DeleteBatch {
            queue: queue.into(),
            entries: entries
                .into_iter()
                .map(|(message_id, reservation_id)| proto::DeleteEntry {
                    message_id,
                    reservation_id: reservation_id.unwrap_or(0),
                })
                .collect(),
        });
        self.count(op).await
    }

    /// Extends a lease; returns the new reservation.
    ///
    /// # Errors
    /// As [`Client::delete`].
    pub async fn touch(
        &self,
        queue: &str,
        message_id: u64,
        reservation_id: u64,
        timeout_ms: u64,
    ) -> Result<proto::Touched, ClientError> {
        let op = Op::Touch(proto::Touch {
            queue: queue.into(),
            message_id,
            reservation_id,
            timeout_ms,
        });
        match self.call(op).await? {
            response::Result::Touched(touched) => Ok(touched),
            other => Err(unexpected(&other)),
        }
    }

    /// Gives a reserved message back to the front of the queue after `delay_ms`.
    ///
    /// # Errors
    /// As [`Client::delete`].
    pub async fn release(
        &self,
        queue: &str,
        message_id: u64,
        reservation_id: u64,
        delay_ms: u64,
    ) -> Result<(), ClientError> {
        let op = Op::Release(proto::Release {
            queue: queue.into(),
            message_id,
            reservation_id,
            delay_ms,
        });
        self.empty(op).await
    }

    /// Up to `n` available messages, unchanged.
    ///
    /// # Errors
    /// `QUEUE_NOT_FOUND`, ...
    pub async fn peek(&self, queue: &str, n: u32) -> Result<Vec<proto::Message>, ClientError> {
        self.messages(Op::Peek(proto::Peek {
            queue: queue.into(),
            n,
        }))
        .await
    }

    /// One message by id.
    ///
    /// # Errors
    /// `MESSAGE_NOT_FOUND`, `QUEUE_NOT_FOUND`.
    pub async fn get(&self, queue: &str, message_id: u64) -> Result<proto::Message, ClientError> {
        let op = Op::Get(proto::GetMessage {
            queue: queue.into(),
            message_id,
        });
        match self.call(op).await? {
            response::Result::Message(message) => Ok(message),
            other => Err(unexpected(&other)),
        }
    }

    /// Creates a queue (zero settings fields mean the defaults).
    ///
    /// # Errors
    /// `QUEUE_EXISTS`, `INVALID_ARGUMENT`.
    pub async fn create_queue(
        &self,
        queue: &str,
        settings: proto::QueueSettings,
    ) -> Result<proto::QueueInfo, ClientError> {
        self.info_op(Op::CreateQueue(proto::CreateQueue {
            queue: queue.into(),
            settings: Some(settings),
        }))
        .await
    }

    /// Changes settings (zero fields stay as they are).
    ///
    /// # Errors
    /// `QUEUE_NOT_FOUND`, `INVALID_ARGUMENT`.
    pub async fn update_queue(
        &self,
        queue: &str,
        settings: proto::QueueSettings,
    ) -> Result<proto::QueueInfo, ClientError> {
        self.info_op(Op::UpdateQueue(proto::UpdateQueue {
            queue: queue.into(),
            settings: Some(settings),
        }))
        .await
    }

    /// A queue's counters and settings.
    ///
    /// # Errors
    /// `QUEUE_NOT_FOUND`.
    pub async fn info(&self, queue: &str) -> Result<proto::QueueInfo, ClientError> {
        self.info_op(Op::QueueInfo(proto::QueueInfoRequest {
            queue: queue.into(),
        }))
        .await
    }

    /// One page of queue names.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a limit over 100.
    pub async fn list_queues(
        &self,
        prefix: &str,
        cursor: &str,
        limit: u32,
    ) -> Result<proto::QueueList, ClientError> {
        let op = Op::ListQueues(proto::ListQueues {
            prefix: prefix.into(),
            cursor: cursor.into(),
            limit,
        });
        match self.call(op).await? {
            response::Result::QueueList(list) => Ok(list),
            other => Err(unexpected(&other)),
        }
    }

    /// The figures of up to `limit` queues whose names start with `prefix`, after
    /// `cursor` (`top`, dashboards).
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a limit over 100, connection errors.
    pub async fn list_queue_stats(
        &self,
        prefix: &str,
        cursor: &str,
        limit: u32,
    ) -> Result<proto::QueueStatsList, ClientError> {
        let op = Op::ListQueueStats(proto::ListQueueStats {
            prefix: prefix.into(),
            cursor: cursor.into(),
            limit,
        });
        match self.call(op).await? {
            response::Result::QueueStats(list) => Ok(list),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes every message of a queue; returns how many.
    ///
    /// # Errors
    /// `QUEUE_NOT_FOUND`.
    pub async fn clear_queue(&self, queue: &str) -> Result<u32, ClientError> {
        self.count(Op::ClearQueue(proto::ClearQueue {
            queue: queue.into(),
        }))
        .await
    }

    /// Moves up to `n` available messages from `queue` to `to_queue` (reserved_count
    /// reset to 0); returns how many, once they are durable in `to_queue`.
    ///
    /// # Errors
    /// `QUEUE_NOT_FOUND` for `queue`, `INVALID_ARGUMENT`.
    pub async fn redrive(&self, queue: &str, to_queue: &str, n: u32) -> Result<u32, ClientError> {
        let op = Op::Redrive(proto::Redrive {
            queue: queue.into(),
            to_queue: to_queue.into(),
            n,
        });
        match self.call(op).await? {
            response::Result::Moved(moved) => Ok(moved.count),
            other => Err(unexpected(&other)),
        }
    }

    /// Atomic hand-off: deletes message `message_id` of `queue`, reserved under
    /// `reservation_id`, and pushes each target's follow-ups, all or nothing;
    /// returns the follow-ups' ids per target, once the whole hand-off is
    /// durable.
    ///
    /// # Errors
    /// The errors of a delete with a reservation, `INVALID_ARGUMENT` (a
    /// follow-up a push would refuse, no target, a push queue as `queue`),
    /// `BODY_TOO_LARGE`, `RESOURCE_EXHAUSTED` (a target is full); then nothing
    /// changed.
    pub async fn hand_off(
        &self,
        queue: &str,
        message_id: u64,
        reservation_id: u64,
        targets: Vec<proto::FollowUps>,
    ) -> Result<Vec<Vec<u64>>, ClientError> {
        let op = Op::HandOff(proto::HandOff {
            queue: queue.into(),
            message_id,
            reservation_id,
            targets,
        });
        match self.call(op).await? {
            response::Result::HandedOff(done) => {
                Ok(done.targets.into_iter().map(|t| t.ids).collect())
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes a queue and its messages.
    ///
    /// # Errors
    /// `QUEUE_NOT_FOUND`.
    pub async fn delete_queue(&self, queue: &str) -> Result<(), ClientError> {
        self.empty(Op::DeleteQueue(proto::DeleteQueue {
            queue: queue.into(),
        }))
        .await
    }

    /// Server-wide counters (uptime, queues, group-commit flushes, fsync mode).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn server_stats(&self) -> Result<proto::ServerStats, ClientError> {
        match self
            .call(Op::ServerStats(proto::ServerStatsRequest {}))
            .await?
        {
            response::Result::ServerStats(stats) => Ok(stats),
            other => Err(unexpected(&other)),
        }
    }

    async fn messages(&self, op: Op) -> Result<Vec<proto::Message>, ClientError> {
        match self.call(op).await? {
            response::Result::Messages(list) => Ok(list.messages),
            other => Err(unexpected(&other)),
        }
    }

    async fn count(&self, op: Op) -> Result<u32, ClientError> {
        match self.call(op).await? {
            response::Result::Deleted(deleted) => Ok(deleted.count),
            other => Err(unexpected(&other)),
        }
    }

    async fn empty(&self, op: Op) -> Result<(), ClientError> {
        match self.call(op).await? {
            response::Result::Ok(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn info_op(&self, op: Op) -> Result<proto::QueueInfo, ClientError> {
        match self.call(op).await? {
            response::Result::QueueInfo(info) => Ok(info),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(result: &response::Result) -> ClientError {
    ClientError::Protocol(format!("unexpected response {result:?}"))
}

/// A connection's reading half, plain or TLS (one type, so the reader is compiled
/// once; a virtual call per read is nothing next to the system call).
type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
/// A connection's writing half, plain or TLS.
type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// Starts the connection's writer and reader tasks.
fn spawn_io(
    read: Reader,
    write: Writer,
    max_frame: usize,
    queued: mpsc::Receiver<Request>,
    pending: Pending,
) {
    tokio::spawn(write_requests(
        FramedWrite::new(write, ClientCodec::new(max_frame)),
        queued,
    ));
    tokio::spawn(read_responses(
        FramedRead::new(read, ClientCodec::new(max_frame)),
        pending,
    ));
}

async fn write_requests(
    mut sink: FramedWrite<Writer, ClientCodec>,
    mut queued: mpsc::Receiver<Request>,
) {
    while let Some(first) = queued.recv().await {
        let mut next = Some(first);
        while let Some(request) = next {
            if let Err(err) = sink.feed(request).await {
                tracing::debug!(cause = %err, "client write failed");
                return;
            }
            next = queued.try_recv().ok();
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    // Every handle is gone: end the connection's sending side, so the server sees
    // the client leave (a plain write half does this when dropped; a TLS one only
    // when shut down, which also sends TLS's close_notify).
    let _ = sink.close().await;
}

async fn read_responses(mut frames: FramedRead<Reader, ClientCodec>, pending: Pending) {
    loop {
        let response = match frames.next().await {
            Some(Ok(response)) => response,
            Some(Err(CodecError::Io(_))) | None => break,
            Some(Err(err)) => {
                tracing::warn!(cause = %err, "undecodable response; closing the connection");
                break;
            }
        };
        let waiter = pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
            .and_then(|map| map.remove(&response.id));
        match (waiter, response.result) {
            (Some(waiter), result) => {
                let _ = waiter.send(result);
            }
            // id 0: the server is about to close the connection (a bad frame, or
            // the connection limit): every waiting call fails with that error.
            (None, Some(response::Result::Error(err))) if response.id == 0 => {
                tracing::debug!(code = err.code, message = %err.message, "connection-level error from the server");
                let waiters = pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                for (_, waiter) in waiters.into_iter().flatten() {
                    let _ = waiter.send(Some(response::Result::Error(err.clone())));
                }
                break;
            }
            (None, _) => {
                tracing::debug!(id = response.id, "a response nobody waits for");
            }
        }
    }
    // Dropping the senders fails every waiting call with Closed.
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
}
