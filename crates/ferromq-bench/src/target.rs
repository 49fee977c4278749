//! The load generator's drivers: the same four operations (connect, push, reserve,
//! delete) against ferromq, beanstalkd and Redis, so one workload definition drives
//! every server.
//!
//! - **ferromq**: the pipelined [`Client`]; reserve is a real lease, delete carries
//!   the reservation id, batches are one request.
//! - **beanstalkd** (text protocol): `put` / `reserve-with-timeout` / `delete`. A
//!   connection is bound to one tube (`use` + `watch` at connect); a batch is that
//!   many commands pipelined in one write (beanstalkd has no batch commands).
//! - **Redis** (RESP), the list-based reliable queue: `LPUSH q bodies...`, `BLMOVE q
//!   q:processing RIGHT LEFT` (then `LMOVE` for the rest of a batch), `LREM
//!   q:processing 1 body` to delete. Redis has no lease: nothing returns a message
//!   whose consumer died (a reaper would); the benchmark never needs one.
//!
//! Text protocols are pipelined: a connection task writes requests in order and
//! matches replies first in, first out.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use ferromq::client::{Client, ConnectOptions, ReserveOptions};

/// Which server a benchmark drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// ferromq's binary protocol.
    Ferromq,
    /// beanstalkd's text protocol.
    Beanstalkd,
    /// A Redis list-based reliable queue.
    Redis,
}

impl Kind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ferromq => "ferromq",
            Kind::Beanstalkd => "beanstalkd",
            Kind::Redis => "redis",
        }
    }
}

/// A driver failure.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The connection failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered with an error or something unexpected.
    #[error("{0}")]
    Server(String),
    /// The connection task stopped.
    #[error("the connection closed")]
    Closed,
}

impl From<ferromq::client::ClientError> for DriverError {
    fn from(err: ferromq::client::ClientError) -> Self {
        DriverError::Server(err.to_string())
    }
}

/// What deleting a reserved message needs.
#[derive(Debug, Clone)]
pub enum Handle {
    /// ferromq: message id and reservation id.
    Ferromq(u64, u64),
    /// beanstalkd: job id.
    Beanstalkd(u64),
    /// Redis: the body (LREM removes by value).
    Redis(Bytes),
}

/// A reserved message.
#[derive(Debug, Clone)]
pub struct Reserved {
    /// How to delete it.
    pub handle: Handle,
    /// Its body.
    pub body: Bytes,
}

/// How consumers finish a message (ferromq; issue 14's atomic hand-off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Finish {
    /// Delete it (a batch delete of what one reserve got).
    #[default]
    Delete,
    /// Hand it off: delete it and push one follow-up to `QUEUE.next`,
    /// atomically, one request per message.
    HandOff,
    /// What a client does without hand-off: push the follow-ups of what one
    /// reserve got to `QUEUE.next` in one request, then delete them in one
    /// (a crash in between duplicates them).
    PushThenDelete,
    /// The same, message by message (a push, then a delete, per message, all
    /// messages at once): as many requests as `HandOff` makes.
    PushThenDeleteEach,
}

/// The follow-up each message is finished with (`Finish`), and its queue.
const FOLLOW_UP: &[u8] = b"follow-up";

/// The queue a consumer of `queue` pushes its follow-ups to.
pub fn follow_up_queue(queue: &str) -> String {
    format!("{queue}.next")
}

/// ferromq features a run may use (issue 14), to measure what each costs.
#[derive(Debug, Default)]
pub struct Features {
    /// Pushes cycle through this many priorities, 8, 9, ... (wrapping to 0);
    /// 0 or 1: no priority is sent (the default, 8).
    pub priorities: u8,
    /// Reserves ask for `timeout = auto` (lease advice).
    pub auto_timeout: bool,
    /// Pushes cycle through this many dispatch keys (0: none).
    pub keys: u32,
    /// How consumers finish a message.
    pub finish: Finish,
    /// Messages pushed so far (the next one's priority and key).
    next: AtomicU64,
}

impl Features {
    /// The features of a run.
    pub fn new(priorities: u8, auto_timeout: bool, keys: u32, finish: Finish) -> Self {
        Features {
            priorities,
            auto_timeout,
            keys,
            finish,
            next: AtomicU64::new(0),
        }
    }

    /// Whether pushes carry a priority or a key.
    fn tags_pushes(&self) -> bool {
        self.priorities > 1 || self.keys > 0
    }

    /// The next message's priority and key.
    fn tags(&self) -> (Option<u32>, String) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let priority = (self.priorities > 1)
            .then(|| u32::try_from((8 + n % u64::from(self.priorities)) % 16).unwrap_or(8));
        let key = if self.keys > 0 {
            format!("k{}", n % u64::from(self.keys))
        } else {
            String::new()
        };
        (priority, key)
    }
}

/// One connection to the server under test; clones share the connection.
#[derive(Clone)]
pub enum Driver {
    /// ferromq, with the features the run uses.
    Ferromq(Client, Arc<Features>),
    /// beanstalkd, bound to one tube.
    Beanstalkd(Pipeline),
    /// Redis.
    Redis(Pipeline),
}

impl Driver {
    /// Connects; beanstalkd connections are bound to tube `queue`; ferromq
    /// connections send the token in `FERROMQ_TOKEN` and the consumer name (for
    /// the delivery history) in `FERROMQ_CONSUMER`, if set, as the CLI does.
    ///
    /// # Errors
    /// If the connection or the tube set-up fails.
    pub async fn connect(kind: Kind, addr: &str, queue: &str) -> Result<Driver, DriverError> {
        match kind {
            Kind::Ferromq => {
                // A server with tokens: the same variable as the `ferromq` CLI's.
                let options = ConnectOptions {
                    token: std::env::var("FERROMQ_TOKEN").ok(),
                    consumer: std::env::var("FERROMQ_CONSUMER").ok(),
                    ..ConnectOptions::default()
                };
                Ok(Driver::Ferromq(
                    Client::connect_with(addr, &options).await?,
                    Arc::default(),
                ))
            }
            Kind::Beanstalkd => {
                let pipe = Pipeline::connect(addr, Protocol::Beanstalkd).await?;
                let setup = format!("use {queue}\r\nwatch {queue}\r\nignore default\r\n");
                let replies = pipe.call(Bytes::from(setup), 3).await?;
                for reply in replies {
                    match reply {
                        Reply::Line(line)
                            if line.starts_with("USING") || line.starts_with("WATCHING") => {}
                        other => return Err(unexpected("tube set-up", &other)),
                    }
                }
                Ok(Driver::Beanstalkd(pipe))
            }
            Kind::Redis => Ok(Driver::Redis(
                Pipeline::connect(addr, Protocol::Redis).await?,
            )),
        }
    }

    /// This connection with `features` (ferromq only; other servers have none).
    #[must_use]
    pub fn with_features(self, features: &Arc<Features>) -> Driver {
        match self {
            Driver::Ferromq(client, _) => Driver::Ferromq(client, Arc::clone(features)),
            other => other,
        }
    }

    /// Pushes `bodies` to `queue` and waits for the acknowledgement.
    ///
    /// # Errors
    /// On a connection or server error.
    pub async fn push(&self, queue: &str, bodies: Vec<Bytes>) -> Result<(), DriverError> {
        match self {
            Driver::Ferromq(client, features) if features.tags_pushes() => {
                let messages = bodies
                    .into_iter()
                    .map(|body| {
                        let (priority, key) = features.tags();
                        ferromq::proto::PushMessage {
                            body,
                            priority,
                            key,
                            ..ferromq::proto::PushMessage::default()
                        }
                    })
                    .collect();
                client.push_messages(queue, messages).await?;
            }
            Driver::Ferromq(client, _) => {
                client.push(queue, bodies).await?;
            }
            Driver::Beanstalkd(pipe) => {
                let mut out = BytesMut::new();
                for body in &bodies {
                    let _ = write!(Text(&mut out), "put 0 0 3600 {}\r\n", body.len());
                    out.extend_from_slice(body);
                    out.extend_from_slice(b"\r\n");
                }
                for reply in pipe.call(out.freeze(), bodies.len()).await? {
                    match reply {
                        Reply::Line(line) if line.starts_with("INSERTED") => {}
                        other => return Err(unexpected("put", &other)),
                    }
                }
            }
            Driver::Redis(pipe) => {
                let mut args: Vec<&[u8]> = vec![b"LPUSH", queue.as_bytes()];
                args.extend(bodies.iter().map(|b| &b[..]));
                match pipe.call(resp(&args), 1).await?.pop() {
                    Some(Reply::Int(_)) => {}
                    other => return Err(unexpected_opt("LPUSH", other)),
                }
            }
        }
        Ok(())
    }

    /// Reserves up to `n` messages, waiting up to `wait_ms` for the first one.
    ///
    /// # Errors
    /// On a connection or server error.
    pub async fn reserve(
        &self,
        queue: &str,
        n: u32,
        lease_ms: u64,
        wait_ms: u64,
    ) -> Result<Vec<Reserved>, DriverError> {
        match self {
            Driver::Ferromq(client, features) => {
                let options = ReserveOptions {
                    n,
                    timeout_ms: lease_ms,
                    wait_ms,
                    delete: false,
                    auto_timeout: features.auto_timeout,
                };
                let messages = match client.reserve(queue, options).await {
                    Ok(messages) => messages,
                    // Only a push creates a queue: one no producer reached yet is empty.
                    Err(err) if err.code() == Some(ferromq::proto::ErrorCode::QueueNotFound) => {
                        Vec::new()
                    }
                    Err(err) => return Err(err.into()),
                };
                Ok(messages
                    .into_iter()
                    .map(|m| Reserved {
                        handle: Handle::Ferromq(m.id, m.reservation_id),
                        body: m.body,
                    })
                    .collect())
            }
            Driver::Beanstalkd(pipe) => {
                let mut out = BytesMut::new();
                let first_wait = wait_ms.div_ceil(1000);
                for i in 0..n {
                    let wait = if i == 0 { first_wait } else { 0 };
                    let _ = write!(Text(&mut out), "reserve-with-timeout {wait}\r\n");
                }
                let replies = pipe.call(out.freeze(), n as usize).await?;
                let mut got = Vec::new();
                for reply in replies {
                    match reply {
                        Reply::Job(id, body) => got.push(Reserved {
                            handle: Handle::Beanstalkd(id),
                            body,
                        }),
                        Reply::Line(line) if line == "TIMED_OUT" || line == "DEADLINE_SOON" => {}
                        other => return Err(unexpected("reserve", &other)),
                    }
                }
                Ok(got)
            }
            Driver::Redis(pipe) => {
                let processing = format!("{queue}:processing");
                let wait = format!("{}", wait_ms.div_ceil(1000));
                let mut out = BytesMut::new();
                let (q, p) = (queue.as_bytes(), processing.as_bytes());
                for i in 0..n {
                    if i == 0 && wait_ms > 0 {
                        out.extend_from_slice(&resp(&[
                            b"BLMOVE",
                            q,
                            p,
                            b"RIGHT",
                            b"LEFT",
                            wait.as_bytes(),
                        ]));
                    } else {
                        out.extend_from_slice(&resp(&[b"LMOVE", q, p, b"RIGHT", b"LEFT"]));
                    }
                }
                let replies = pipe.call(out.freeze(), n as usize).await?;
                let mut got = Vec::new();
                for reply in replies {
                    match reply {
                        Reply::Bulk(Some(body)) => got.push(Reserved {
                            handle: Handle::Redis(body.clone()),
                            body,
                        }),
                        Reply::Bulk(None) | Reply::Nil => {}
                        other => return Err(unexpected("LMOVE", &other)),
                    }
                }
                Ok(got)
            }
        }
    }

    /// Deletes reserved messages.
    ///
    /// # Errors
    /// On a connection or server error, or if a message was not deleted.
    pub async fn delete(&self, queue: &str, handles: Vec<Handle>) -> Result<(), DriverError> {
        match self {
            Driver::Ferromq(client, features)
                if matches!(
                    features.finish,
                    Finish::HandOff | Finish::PushThenDeleteEach
                ) =>
            {
                let (next, atomic) = (follow_up_queue(queue), features.finish == Finish::HandOff);
                let mut calls = tokio::task::JoinSet::new();
                for handle in handles {
                    let Handle::Ferromq(id, reservation) = handle else {
                        continue;
                    };
                    let (client, queue, next) = (client.clone(), queue.to_owned(), next.clone());
                    calls.spawn(async move {
                        let body = Bytes::from_static(FOLLOW_UP);
                        if atomic {
                            let follow_up = ferromq::proto::FollowUps {
                                queue: next,
                                messages: vec![ferromq::proto::PushMessage {
                                    body,
                                    ..ferromq::proto::PushMessage::default()
                                }],
                            };
                            client
                                .hand_off(&queue, id, reservation, vec![follow_up])
                                .await
                                .map(drop)
                        } else {
                            client.push(&next, vec![body]).await?;
                            client.delete(&queue, id, Some(reservation)).await
                        }
                    });
                }
                while let Some(done) = calls.join_next().await {
                    done.map_err(|_| DriverError::Closed)??;
                }
            }
            Driver::Ferromq(client, features) => {
                if features.finish == Finish::PushThenDelete {
                    let bodies = vec![Bytes::from_static(FOLLOW_UP); handles.len()];
                    client.push(&follow_up_queue(queue), bodies).await?;
                }
                let entries: Vec<(u64, Option<u64>)> = handles
                    .iter()
                    .filter_map(|h| match h {
                        Handle::Ferromq(id, reservation) => Some((*id, Some(*reservation))),
                        _ => None,
                    })
                    .collect();
                match entries.as_slice() {
                    [] => {}
                    [(id, reservation)] => client.delete(queue, *id, *reservation).await?,
                    _ => {
                        client.delete_batch(queue, entries).await?;
                    }
                }
            }
            Driver::Beanstalkd(pipe) => {
                let mut out = BytesMut::new();
                for handle in &handles {
                    if let Handle::Beanstalkd(id) = handle {
                        let _ = write!(Text(&mut out), "delete {id}\r\n");
                    }
                }
                for reply in pipe.call(out.freeze(), handles.len()).await? {
                    match reply {
                        Reply::Line(line) if line == "DELETED" => {}
                        other => return Err(unexpected("delete", &other)),
                    }
                }
            }
            Driver::Redis(pipe) => {
                let processing = format!("{queue}:processing");
                let mut out = BytesMut::new();
                for handle in &handles {
                    if let Handle::Redis(body) = handle {
                        out.extend_from_slice(&resp(&[b"LREM", processing.as_bytes(), b"1", body]));
                    }
                }
                for reply in pipe.call(out.freeze(), handles.len()).await? {
                    match reply {
                        Reply::Int(1) => {}
                        other => return Err(unexpected("LREM", &other)),
                    }
                }
            }
        }
        Ok(())
    }

    /// ferromq's group-commit flush count (`None` for other servers).
    ///
    /// # Errors
    /// On a connection or server error.
    pub async fn flushes(&self) -> Result<Option<u64>, DriverError> {
        match self {
            Driver::Ferromq(client, _) => Ok(Some(client.server_stats().await?.flushes)),
            Driver::Beanstalkd(_) | Driver::Redis(_) => Ok(None),
        }
    }

    /// Removes the benchmark's queues where the protocol allows it (ferromq, Redis;
    /// beanstalkd tubes vanish when empty and unwatched).
    ///
    /// # Errors
    /// On a connection or server error.
    pub async fn remove_queue(&self, queue: &str) -> Result<(), DriverError> {
        match self {
            Driver::Ferromq(client, _) => match client.delete_queue(queue).await {
                Ok(()) => Ok(()),
                Err(err) if err.code() == Some(ferromq::proto::ErrorCode::QueueNotFound) => Ok(()),
                Err(err) => Err(err.into()),
            },
            Driver::Beanstalkd(_) => Ok(()),
            Driver::Redis(pipe) => {
                let processing = format!("{queue}:processing");
                pipe.call(resp(&[b"DEL", queue.as_bytes(), processing.as_bytes()]), 1)
                    .await?;
                Ok(())
            }
        }
    }
}

fn unexpected(what: &str, reply: &Reply) -> DriverError {
    DriverError::Server(format!("unexpected reply to {what}: {reply:?}"))
}

fn unexpected_opt(what: &str, reply: Option<Reply>) -> DriverError {
    match reply {
        Some(reply) => unexpected(what, &reply),
        None => DriverError::Server(format!("no reply to {what}")),
    }
}

/// `fmt::Write` into a `BytesMut`.
struct Text<'a>(&'a mut BytesMut);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A RESP array of bulk strings.
fn resp(args: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::new();
    let _ = write!(Text(&mut out), "*{}\r\n", args.len());
    for arg in args {
        let _ = write!(Text(&mut out), "${}\r\n", arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out.freeze()
}

/// Which text protocol a [`Pipeline`] parses.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    /// beanstalkd.
    Beanstalkd,
    /// Redis RESP2.
    Redis,
}

/// One parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A status line (beanstalkd) or simple string (Redis).
    Line(String),
    /// beanstalkd `RESERVED id bytes` with the job body.
    Job(u64, Bytes),
    /// Redis integer.
    Int(i64),
    /// Redis bulk string (`None` for the null bulk string).
    Bulk(Option<Bytes>),
    /// Redis null array.
    Nil,
    /// Redis array.
    Array(Vec<Reply>),
    /// Redis error.
    Error(String),
}

struct Job {
    bytes: Bytes,
    replies: usize,
    reply: oneshot::Sender<Result<Vec<Reply>, DriverError>>,
}

/// A pipelined text-protocol connection: requests are written in order, replies
/// matched in order.
#[derive(Clone)]
pub struct Pipeline {
    jobs: mpsc::Sender<Job>,
}

impl Pipeline {
    /// Connects and starts the connection task.
    ///
    /// # Errors
    /// If the connection fails.
    pub async fn connect(addr: &str, protocol: Protocol) -> Result<Pipeline, DriverError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (jobs, rx) = mpsc::channel(1024);
        tokio::spawn(drive(stream, protocol, rx));
        Ok(Pipeline { jobs })
    }

    /// Sends `bytes` and waits for `replies` replies.
    ///
    /// # Errors
    /// If the connection fails or closes first.
    pub async fn call(&self, bytes: Bytes, replies: usize) -> Result<Vec<Reply>, DriverError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job {
                bytes,
                replies,
                reply,
            })
            .await
            .map_err(|_| DriverError::Closed)?;
        rx.await.map_err(|_| DriverError::Closed)?
    }
}

/// A request waiting for its replies: how many, those so far, where they go.
type Waiting = (
    usize,
    Vec<Reply>,
    oneshot::Sender<Result<Vec<Reply>, DriverError>>,
);

/// The connection task: writes queued requests (all that are ready in one write)
/// and hands out replies first in, first out.
async fn drive(stream: TcpStream, protocol: Protocol, mut jobs: mpsc::Receiver<Job>) {
    let (mut read, mut write) = stream.into_split();
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::new();
    let mut ready = Vec::new();
    let mut open = true;
    let failure = loop {
        tokio::select! {
            received = jobs.recv_many(&mut ready, 256), if open => {
                if received == 0 {
                    open = false;
                    if waiting.is_empty() {
                        return;
                    }
                    continue;
                }
                for job in ready.drain(..) {
                    out.extend_from_slice(&job.bytes);
                    waiting.push_back((job.replies, Vec::with_capacity(job.replies), job.reply));
                }
                if let Err(err) = write.write_all(&out).await {
                    break DriverError::Io(err);
                }
                out.clear();
            }
            read_result = read.read_buf(&mut buf) => {
                match read_result {
                    Ok(0) => break DriverError::Closed,
                    Ok(_) => {}
                    Err(err) => break DriverError::Io(err),
                }
                loop {
                    let parsed = match protocol {
                        Protocol::Beanstalkd => parse_beanstalkd(&buf),
                        Protocol::Redis => parse_resp(&buf),
                    };
                    let Some((reply, used)) = parsed else { break };
                    buf.advance(used);
                    let Some(front) = waiting.front_mut() else {
                        return; // a reply nobody asked for: drop the connection
                    };
                    front.1.push(reply);
                    if front.1.len() >= front.0 {
                        if let Some((_, replies, tx)) = waiting.pop_front() {
                            let _ = tx.send(Ok(replies));
                        }
                    }
                }
                if !open && waiting.is_empty() {
                    return;
                }
            }
        }
    };
    let message = failure.to_string();
    for (_, _, tx) in waiting {
        let _ = tx.send(Err(DriverError::Server(message.clone())));
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + from)
}

/// One beanstalkd reply and the bytes it used, `None` if incomplete.
fn parse_beanstalkd(buf: &[u8]) -> Option<(Reply, usize)> {
    let end = find_crlf(buf, 0)?;
    let line = String::from_utf8_lossy(&buf[..end]).into_owned();
    if let Some(rest) = line.strip_prefix("RESERVED ") {
        let mut parts = rest.split(' ');
        let id = parts.next()?.parse().ok()?;
        let len: usize = parts.next()?.parse().ok()?;
        let start = end + 2;
        if buf.len() < start + len + 2 {
            return None;
        }
        let body = Bytes::copy_from_slice(&buf[start..start + len]);
        return Some((Reply::Job(id, body), start + len + 2));
    }
    Some((Reply::Line(line), end + 2))
}

/// One RESP2 reply and the bytes it used, `None` if incomplete.
fn parse_resp(buf: &[u8]) -> Option<(Reply, usize)> {
    let end = find_crlf(buf, 0)?;
    let line = std::str::from_utf8(buf.get(1..end)?).ok()?;
    let next = end + 2;
    match buf.first()? {
        b'+' => Some((Reply::Line(line.to_owned()), next)),
        b'-' => Some((Reply::Error(line.to_owned()), next)),
        b':' => Some((Reply::Int(line.parse().ok()?), next)),
        b'$' => {
            let len: i64 = line.parse().ok()?;
            if len < 0 {
                return Some((Reply::Bulk(None), next));
            }
            let len = usize::try_from(len).ok()?;
            if buf.len() < next + len + 2 {
                return None;
            }
            let body = Bytes::copy_from_slice(&buf[next..next + len]);
            Some((Reply::Bulk(Some(body)), next + len + 2))
        }
        b'*' => {
            let count: i64 = line.parse().ok()?;
            if count < 0 {
                return Some((Reply::Nil, next));
            }
            let mut at = next;
            let mut items = Vec::new();
            for _ in 0..count {
                let (item, used) = parse_resp(buf.get(at..)?)?;
                items.push(item);
                at += used;
            }
            Some((Reply::Array(items), at))
        }
        // Not RESP: surface it as an error reply rather than stalling.
        _ => Some((Reply::Error(format!("unparseable reply {line:?}")), next)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_parse_beanstalkd_replies_only_when_complete() {
        assert_eq!(parse_beanstalkd(b"INSERTED 5"), None);
        assert_eq!(
            parse_beanstalkd(b"INSERTED 5\r\nDELETED\r\n"),
            Some((Reply::Line("INSERTED 5".into()), 12))
        );
        assert_eq!(parse_beanstalkd(b"RESERVED 7 3\r\nab"), None);
        assert_eq!(
            parse_beanstalkd(b"RESERVED 7 3\r\nabc\r\n"),
            Some((Reply::Job(7, Bytes::from_static(b"abc")), 19))
        );
    }

    #[test]
    fn should_parse_resp_replies_only_when_complete() {
        assert_eq!(parse_resp(b":12\r\n"), Some((Reply::Int(12), 5)));
        assert_eq!(parse_resp(b"$3\r\nab"), None);
        assert_eq!(
            parse_resp(b"$3\r\nabc\r\n"),
            Some((Reply::Bulk(Some(Bytes::from_static(b"abc"))), 9))
        );
        assert_eq!(parse_resp(b"$-1\r\n"), Some((Reply::Bulk(None), 5)));
        assert_eq!(parse_resp(b"*-1\r\n"), Some((Reply::Nil, 5)));
        assert_eq!(
            parse_resp(b"*2\r\n:1\r\n+OK\r\n"),
            Some((
                Reply::Array(vec![Reply::Int(1), Reply::Line("OK".into())]),
                13
            ))
        );
        assert_eq!(
            parse_resp(b"-ERR no\r\n"),
            Some((Reply::Error("ERR no".into()), 9))
        );
        assert_eq!(
            &resp(&[b"GET", b"k"])[..],
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }
}
