//! Accepting TCP connections with a cap, shared by both front ends.
//!
//! Past the cap a connection is still accepted, answered with one refusal in its
//! front end's own terms (an error frame, an HTTP 503) and closed, so that a client
//! at the limit, a health check included, learns at once why it is not served
//! instead of waiting in the kernel's listen backlog. Refusals in progress are
//! capped too ([`MAX_REFUSING`]); past that a connection is closed without a word.
//! On a TLS port there is no refusal to write (answering would cost a handshake
//! per refused connection): the connection is closed at once; an admitted one is
//! opened with a handshake in its own task ([`Incoming::open`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::telemetry::ConnectionCounters;
use crate::tls::{Conn, ServerTls};

/// Most refused connections being answered at once.
pub(crate) const MAX_REFUSING: usize = 256;
/// How long a refused connection is given to read its refusal and close.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// An admitted connection, not opened yet: on a TLS port its handshake is still
/// to be done, in the connection's own task.
pub(crate) struct Incoming {
    stream: TcpStream,
    /// Who connected.
    pub(crate) peer: SocketAddr,
    tls: Option<TlsAcceptor>,
}

impl Incoming {
    /// The connection, plain or after its TLS handshake; `None` if the handshake
    /// did not complete (`tls.rs`).
    pub(crate) async fn open(self, stop: &CancellationToken) -> Option<Conn> {
        crate::tls::open(self.tls, self.stream, self.peer, stop).await
    }
}

/// An admitted connection's place under the cap, held by its task until it ends:
/// its admission and its end are counted and logged (at debug) here, once for
/// both front ends.
pub(crate) struct Admitted {
    _permit: OwnedSemaphorePermit,
    counters: ConnectionCounters,
    peer: SocketAddr,
}

impl Admitted {
    fn new(permit: OwnedSemaphorePermit, counters: ConnectionCounters, peer: SocketAddr) -> Self {
        counters.opened.inc();
        tracing::debug!(%peer, protocol = counters.protocol.label(), "connection opened");
        Admitted {
            _permit: permit,
            counters,
            peer,
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.counters.closed.inc();
        let protocol = self.counters.protocol.label();
        tracing::debug!(peer = %self.peer, protocol, "connection closed");
    }
}

/// Accepts connections and admits at most `max_connections` at once; the others
/// get `refusal` (the front end's own words) and are closed, in tasks of `tasks`.
pub(crate) struct Acceptor {
    listener: TcpListener,
    limit: Arc<Semaphore>,
    max_connections: usize,
    /// `None`: close over-cap connections without a word (TLS ports).
    refusal: Option<bytes::Bytes>,
    /// The port's TLS, if it has any.
    tls: Option<Arc<ServerTls>>,
    refusing: Arc<Semaphore>,
    tasks: TaskTracker,
    /// Counts (and logs) admissions, ends and refusals.
    counters: ConnectionCounters,
}

impl Acceptor {
    /// `refusal` is the front end's answer to a connection over the cap; on a port
    /// with `tls` it is not sent.
    pub(crate) fn new(
        listener: TcpListener,
        max_connections: usize,
        refusal: bytes::Bytes,
        tls: Option<Arc<ServerTls>>,
        tasks: &TaskTracker,
        counters: ConnectionCounters,
    ) -> Self {
        Acceptor {
            listener,
            limit: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            refusal: tls.is_none().then_some(refusal),
            tls,
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            tasks: tasks.clone(),
            counters,
        }
    }

    /// The next admitted connection (with `TCP_NODELAY` set) and its permit,
    /// refusing those over the cap on the way; `None` once `stop` is cancelled.
    /// Accept errors (usually EMFILE/ENFILE) are logged and retried with a backoff
    /// of 1 ms doubling to 1 s.
    pub(crate) async fn next(&mut self, stop: &CancellationToken) -> Option<(Incoming, Admitted)> {
        let mut backoff_ms = 1;
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = stop.cancelled() => return None,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    match Arc::clone(&self.limit).try_acquire_owned() {
                        Ok(permit) => {
                            let tls = self.tls.as_ref().map(|tls| tls.acceptor());
                            let admitted = Admitted::new(permit, self.counters.clone(), peer);
                            return Some((Incoming { stream, peer, tls }, admitted));
                        }
                        Err(_) => self.refuse(stream, peer),
                    }
                }
                Err(err) => {
                    tracing::warn!(cause = %err, backoff_ms, "accept failed");
                    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                    backoff_ms = (backoff_ms * 2).min(1000);
                }
            }
        }
    }

    /// Writes the refusal to `stream` and closes it, in a task that gives the
    /// client [`REFUSAL_TIME`] to read it (closing at once with unread input would
    /// reset the connection and could destroy the answer); with [`MAX_REFUSING`]
    /// refusals already running, closes it at once.
    fn refuse(&self, mut stream: TcpStream, peer: SocketAddr) {
        tracing::debug!(%peer, limit = self.max_connections, "connection refused: at the limit");
        self.counters.refused.inc();
        let Some(refusal) = self.refusal.clone() else {
            return;
        };
        let Ok(permit) = Arc::clone(&self.refusing).try_acquire_owned() else {
            return;
        };
        self.tasks.spawn(async move {
            let _ = tokio::time::timeout(REFUSAL_TIME, async {
                stream.write_all(&refusal).await?;
                stream.shutdown().await?;
                // Read (and drop) what the client sent until it closes.
                let mut sink = [0_u8; 1024];
                while stream.read(&mut sink).await? > 0 {}
                Ok::<_, std::io::Error>(())
            })
            .await;
            drop(permit);
        });
    }
}
