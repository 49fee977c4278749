//! [`QueueHandle`]: the cloneable, typed front of a queue actor.
//!
//! Each method sends one [`Command`] over the actor's bounded mailbox and awaits the
//! reply. Writes that the durability contract covers (push, delete, release,
//! reserve with delete, clear, settings) come back with a [`CommitTicket`]; the
//! handle awaits it before returning, so a method returns only after the flush that
//! covers its write (under `--fsync always`). A closed mailbox means the queue was
//! deleted or the server is stopping.

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::types::{Lease, MessageView, NewMessage, QueueName, QueueStats, SettingsPatch};
use crate::error::QueueError;
use crate::storage::CommitTicket;

/// A reply that may have to wait for a flush before it is acknowledged.
pub(crate) type Acked<T> = Result<(T, CommitTicket), QueueError>;

/// A message moving from one queue to another (dead-lettering, redrive).
pub(crate) struct Transfer {
    pub(crate) id: u64,
    pub(crate) body: Bytes,
    pub(crate) reserved_count: u32,
}

/// One request to a queue actor.
pub(crate) enum Command {
    Push {
        messages: Vec<NewMessage>,
        reply: oneshot::Sender<Acked<Vec<u64>>>,
    },
    Reserve {
        n: usize,
        timeout_ms: Option<u64>,
        wait_ms: u64,
        delete: bool,
        reply: oneshot::Sender<Acked<Vec<MessageView>>>,
    },
    Delete {
        /// (message id, reservation id); all or nothing.
        entries: Vec<(u64, Option<u64>)>,
        reply: oneshot::Sender<Acked<usize>>,
    },
    Touch {
        id: u64,
        reservation_id: u64,
        timeout_ms: Option<u64>,
        reply: oneshot::Sender<Result<Lease, QueueError>>,
    },
    Release {
        id: u64,
        reservation_id: u64,
        delay_ms: u64,
        reply: oneshot::Sender<Acked<()>>,
    },
    Peek {
        n: usize,
        reply: oneshot::Sender<Result<Vec<MessageView>, QueueError>>,
    },
    Get {
        id: u64,
        reply: oneshot::Sender<Result<MessageView, QueueError>>,
    },
    Info {
        reply: oneshot::Sender<Result<QueueStats, QueueError>>,
    },
    Update {
        patch: SettingsPatch,
        reply: oneshot::Sender<Acked<QueueStats>>,
    },
    Clear {
        reply: oneshot::Sender<Acked<usize>>,
    },
    /// Removes the queue's storage and stops the actor.
    Destroy { reply: oneshot::Sender<Acked<()>> },
    /// Moves up to n available messages to another queue.
    Redrive {
        to: QueueName,
        n: usize,
        reply: oneshot::Sender<Result<usize, QueueError>>,
    },
    /// Takes in messages moved from another queue (sent with `try_send` by that
    /// queue's actor, so two actors never wait on each other).
    Adopt {
        messages: Vec<Transfer>,
        reply: oneshot::Sender<Acked<usize>>,
    },
    /// The outcome of a move this actor started: on success the messages are
    /// removed here, otherwise they become available again.
    TransferDone { ids: Vec<u64>, moved: bool },
}

/// Talks to one queue actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct QueueHandle {
    pub(crate) name: String,
    pub(crate) mailbox: mpsc::Sender<Command>,
    /// Cancelled when the server stops; tells "stopping" from "deleted".
    pub(crate) stopping: tokio_util::sync::CancellationToken,
}

impl QueueHandle {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, QueueError>>) -> Command,
    ) -> Result<T, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.mailbox.send(make(tx)).await.map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    async fn call_acked<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Acked<T>>) -> Command,
    ) -> Result<T, QueueError> {
        let (value, ticket) = self.call(make).await?;
        ticket.wait().await.map_err(QueueError::from)?;
        Ok(value)
    }

    fn gone(&self) -> QueueError {
        if self.stopping.is_cancelled() {
            QueueError::Unavailable("the server is shutting down".into())
        } else {
            QueueError::QueueNotFound(self.name.clone())
        }
    }

    /// True when the actor has stopped (queue deleted or server stopping).
    pub fn is_closed(&self) -> bool {
        self.mailbox.is_closed()
    }

    /// Pushes messages (already validated); returns their ids once durable.
    ///
    /// # Errors
    /// `QueueNotFound` if the queue was deleted meanwhile; `Internal` on storage failure.
    pub async fn push(&self, messages: Vec<NewMessage>) -> Result<Vec<u64>, QueueError> {
        self.call_acked(|reply| Command::Push { messages, reply })
            .await
    }

    /// Reserves up to `n` messages, waiting up to `wait_ms` for the first.
    ///
    /// # Errors
    /// `QueueNotFound`, `Internal`.
    pub async fn reserve(
        &self,
        n: usize,
        timeout_ms: Option<u64>,
        wait_ms: u64,
        delete: bool,
    ) -> Result<Vec<MessageView>, QueueError> {
        self.call_acked(|reply| Command::Reserve {
            n,
            timeout_ms,
            wait_ms,
            delete,
            reply,
        })
        .await
    }

    /// Deletes messages, all or nothing; returns how many.
    ///
    /// # Errors
    /// `MessageNotFound`, `ReservationExpired`, `ReservationMismatch` for the first
    /// failing entry (then nothing is deleted).
    pub async fn delete(&self, entries: Vec<(u64, Option<u64>)>) -> Result<usize, QueueError> {
        self.call_acked(|reply| Command::Delete { entries, reply })
            .await
    }

    /// Extends a reservation under a new reservation id.
    ///
    /// # Errors
    /// As [`QueueHandle::delete`].
    pub async fn touch(
        &self,
        id: u64,
        reservation_id: u64,
        timeout_ms: Option<u64>,
    ) -> Result<Lease, QueueError> {
        self.call(|reply| Command::Touch {
            id,
            reservation_id,
            timeout_ms,
            reply,
        })
        .await
    }

    /// Gives a reserved message back to the front of the queue after `delay_ms`.
    ///
    /// # Errors
    /// As [`QueueHandle::delete`].
    pub async fn release(
        &self,
        id: u64,
        reservation_id: u64,
        delay_ms: u64,
    ) -> Result<(), QueueError> {
        self.call_acked(|reply| Command::Release {
            id,
            reservation_id,
            delay_ms,
            reply,
        })
        .await
    }

    /// Up to `n` available messages, without changing anything.
    ///
    /// # Errors
    /// `QueueNotFound`, `Internal`.
    pub async fn peek(&self, n: usize) -> Result<Vec<MessageView>, QueueError> {
        self.call(|reply| Command::Peek { n, reply }).await
    }

    /// One message by id.
    ///
    /// # Errors
    /// `MessageNotFound`, `QueueNotFound`.
    pub async fn get(&self, id: u64) -> Result<MessageView, QueueError> {
        self.call(|reply| Command::Get { id, reply }).await
    }

    /// The queue's counters and settings.
    ///
    /// # Errors
    /// `QueueNotFound`.
    pub async fn info(&self) -> Result<QueueStats, QueueError> {
        self.call(|reply| Command::Info { reply }).await
    }

    /// Changes settings (already validated).
    ///
    /// # Errors
    /// `QueueNotFound`, `Internal`.
    pub async fn update(&self, patch: SettingsPatch) -> Result<QueueStats, QueueError> {
        self.call_acked(|reply| Command::Update { patch, reply })
            .await
    }

    /// Removes every message; returns how many.
    ///
    /// # Errors
    /// `QueueNotFound`, `Internal`.
    pub async fn clear(&self) -> Result<usize, QueueError> {
        self.call_acked(|reply| Command::Clear { reply }).await
    }

    /// Moves up to `n` available messages to the queue `to`, resetting their
    /// reserved_count; returns how many once they are durable there.
    ///
    /// # Errors
    /// `QueueNotFound`, `ResourceExhausted` if the target's mailbox is full.
    pub async fn redrive(&self, to: QueueName, n: usize) -> Result<usize, QueueError> {
        self.call(|reply| Command::Redrive { to, n, reply }).await
    }

    /// Removes the queue's storage and stops its actor.
    ///
    /// # Errors
    /// `QueueNotFound`, `Internal`.
    pub(crate) async fn destroy(&self) -> Result<(), QueueError> {
        self.call_acked(|reply| Command::Destroy { reply }).await
    }
}
