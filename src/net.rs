//! Accepting TCP connections with a cap, shared by both front ends.
//!
//! Past the cap a connection is still accepted, answered with one refusal in its
//! front end's own terms (an error frame, an HTTP 503) and closed, so that a client
//! at the limit, a health check included, learns at once why it is not served
//! instead of waiting in the kernel's listen backlog. Refusals in progress are
//! capped too ([`MAX_REFUSING`]); past that a connection is closed without a word.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most refused connections being answered at once.
pub(crate) const MAX_REFUSING: usize = 256;
/// How long a refused connection is given to read its refusal and close.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// What [`Acceptor::next`] hands out.
pub(crate) enum Accepted {
    /// A connection under the cap, with the permit it holds while it lives.
    Admitted(TcpStream, SocketAddr, OwnedSemaphorePermit),
    /// A connection over the cap: refuse it ([`Acceptor::refuse`]).
    Refused(TcpStream, SocketAddr),
}

/// Accepts connections and admits at most `max_connections` at once.
pub(crate) struct Acceptor {
    listener: TcpListener,
    limit: Arc<Semaphore>,
    max_connections: usize,
    refusing: Arc<Semaphore>,
}

impl Acceptor {
    pub(crate) fn new(listener: TcpListener, max_connections: usize) -> Self {
        Acceptor {
            listener,
            limit: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
        }
    }

    /// The cap this acceptor admits.
    pub(crate) fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The next connection (with `TCP_NODELAY` set), admitted or refused; `None`
    /// once `stop` is cancelled. Accept errors (usually EMFILE/ENFILE) are logged
    /// and retried with a backoff of 1 ms doubling to 1 s.
    pub(crate) async fn next(&mut self, stop: &CancellationToken) -> Option<Accepted> {
        let mut backoff_ms = 1;
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = stop.cancelled() => return None,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some(match Arc::clone(&self.limit).try_acquire_owned() {
                        Ok(permit) => Accepted::Admitted(stream, peer, permit),
                        Err(_) => Accepted::Refused(stream, peer),
                    });
                }
                Err(err) => {
                    tracing::warn!(cause = %err, backoff_ms, "accept failed");
                    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                    backoff_ms = (backoff_ms * 2).min(1000);
                }
            }
        }
    }

    /// Writes `refusal` to `stream` and closes it, in a task of `tasks` that gives
    /// the client [`REFUSAL_TIME`] to read it (closing at once with unread input
    /// would reset the connection and could destroy the answer); with
    /// [`MAX_REFUSING`] refusals already running, closes it at once.
    pub(crate) fn refuse(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        refusal: bytes::Bytes,
        tasks: &TaskTracker,
    ) {
        tracing::debug!(%peer, limit = self.max_connections, "connection refused: at the limit");
        let Ok(permit) = Arc::clone(&self.refusing).try_acquire_owned() else {
            return;
        };
        tasks.spawn(async move {
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
