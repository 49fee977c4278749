//! Accepting TCP connections with a cap, shared by both front ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Accepts connections, at most `max_connections` at once: the permit is taken
/// before accepting, so past the limit connections wait in the kernel's backlog
/// instead of being accepted and starved.
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
    ) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
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
                    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                    backoff_ms = (backoff_ms * 2).min(1000);
                }
            }
        }
    }
}
