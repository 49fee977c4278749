//! [`QueueHandle`]: the cloneable, typed front of a queue actor.
//!
//! Each method sends one [`ActorRequest`] over the actor's bounded mailbox and
//! awaits the reply. Writes that the durability contract covers (push, delete,
//! release, reserve with delete, clear, settings) come back with a
//! [`CommitTicket`]; the handle awaits it before returning, so a method returns only
//! after the flush that covers its write (under `--fsync always`). A closed mailbox
//! means the queue was deleted or the server is stopping.
//!
//! The mailbox is private to this module: everything else, the other actors'
//! transfer tasks included, talks to an actor through these methods.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::actor::{Acked, ActorRequest, Edit, HandOffStep, UpdateRequest};
use super::push::QueueKind;
use super::state::{Ask, Settle};
use super::types::{
    Lease, MessageView, NewMessage, Origin, QueueName, QueueStats, SettingsPatch, Transfer,
};
use crate::error::QueueError;
use crate::metrics::QueueMetrics;

/// Talks to one queue actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct QueueHandle {
    name: QueueName,
    /// The queue's type, fixed at its creation.
    kind: QueueKind,
    mailbox: mpsc::Sender<ActorRequest>,
    /// Cancelled when the server stops; tells "stopping" from "deleted".
    stopping: CancellationToken,
    /// What the actor publishes and the push engine counts.
    metrics: Arc<QueueMetrics>,
}

/// A handle that does not keep its actor's mailbox open (an actor's handle to
/// itself, held by its move tasks).
#[derive(Clone, Debug)]
pub(crate) struct WeakQueueHandle {
    name: QueueName,
    kind: QueueKind,
    mailbox: mpsc::WeakSender<ActorRequest>,
    stopping: CancellationToken,
    metrics: Arc<QueueMetrics>,
}

impl WeakQueueHandle {
    /// The handle, if the actor still runs.
    pub(crate) fn upgrade(&self) -> Option<QueueHandle> {
        Some(QueueHandle {
            name: self.name.clone(),
            kind: self.kind,
            mailbox: self.mailbox.upgrade()?,
            stopping: self.stopping.clone(),
            metrics: Arc::clone(&self.metrics),
        })
    }
}

/// Why a settings update did not happen.
#[derive(Debug)]
pub enum UpdateError<E> {
    /// The queue refused or failed.
    Queue(QueueError),
    /// The attachment edit refused the change; nothing was changed.
    Rejected(E),
}

impl<E> From<QueueError> for UpdateError<E> {
    fn from(err: QueueError) -> Self {
        UpdateError::Queue(err)
    }
}

impl QueueHandle {
    pub(super) fn new(
        name: QueueName,
        kind: QueueKind,
        mailbox: mpsc::Sender<ActorRequest>,
        stopping: CancellationToken,
        metrics: Arc<QueueMetrics>,
    ) -> Self {
        QueueHandle {
            name,
            kind,
            mailbox,
            stopping,
            metrics,
        }
    }

    /// The queue's metrics.
    pub fn metrics(&self) -> &Arc<QueueMetrics> {
        &self.metrics
    }

    pub(super) fn downgrade(&self) -> WeakQueueHandle {
        WeakQueueHandle {
            name: self.name.clone(),
            kind: self.kind,
            mailbox: self.mailbox.downgrade(),
            stopping: self.stopping.clone(),
            metrics: Arc::clone(&self.metrics),
        }
    }

    /// The queue's type (fixed when it was created).
    pub fn kind(&self) -> QueueKind {
        self.kind
    }

    /// The queue's name.
    pub fn name(&self) -> &QueueName {
        &self.name
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, QueueError>>) -> ActorRequest,
    ) -> Result<T, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.mailbox.send(make(tx)).await.map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    async fn call_acked<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Acked<T>>) -> ActorRequest,
    ) -> Result<T, QueueError> {
        let (value, ticket) = self.call(make).await?;
        ticket.wait().await.map_err(QueueError::from)?;
        Ok(value)
    }

    fn gone(&self) -> QueueError {
        if self.stopping.is_cancelled() {
            QueueError::Unavailable("the server is shutting down".into())
        } else {
            QueueError::QueueNotFound(self.name.to_string())
        }
    }

    /// True when the actor has stopped (queue deleted or server stopping).
    pub fn is_closed(&self) -> bool {
        self.mailbox.is_closed()
    }

    /// Pushes messages (already validated); returns their ids once durable.
    ///
    /// # Errors
    /// `QueueNotFound` if the queue was deleted meanwhile (a push never gets it
    /// otherwise); `Internal` on storage failure.
    pub async fn push(&self, messages: Vec<NewMessage>) -> Result<Vec<u64>, QueueError> {
        self.call_acked(|reply| ActorRequest::Push { messages, reply })
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
        consumer: Option<Arc<str>>,
    ) -> Result<Vec<MessageView>, QueueError> {
        let ask = Ask {
            n,
            timeout_ms,
            delete,
            consumer,
        };
        self.call_acked(|reply| ActorRequest::Reserve {
            ask,
            wait_ms,
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
        self.call_acked(|reply| ActorRequest::Delete { entries, reply })
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
        self.call(|reply| ActorRequest::Touch {
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
        self.call_acked(|reply| ActorRequest::Release {
            id,
            reservation_id,
            delay_ms,
            reply,
        })
        .await
    }

    /// Push queues: ends a delivery round of message `id` (see
    /// `QueueState::settle`); returns once durable.
    ///
    /// # Errors
    /// As [`QueueHandle::delete`].
    pub async fn settle(
        &self,
        id: u64,
        reservation_id: u64,
        done: u64,
        then: Settle,
    ) -> Result<(), QueueError> {
        self.call_acked(|reply| ActorRequest::Settle {
            id,
            reservation_id,
            done,
            then,
            reply,
        })
        .await
    }

    /// Push queues: subscribers acknowledged message `id` (see
    /// `QueueState::acknowledge`); returns whether it was deleted, once durable.
    ///
    /// # Errors
    /// As [`QueueHandle::delete`].
    pub async fn acknowledge(
        &self,
        id: u64,
        reservation_id: u64,
        done: u64,
        required: u64,
    ) -> Result<bool, QueueError> {
        self.call_acked(|reply| ActorRequest::Acknowledge {
            id,
            reservation_id,
            done,
            required,
            reply,
        })
        .await
    }

    /// Up to `n` available messages, without changing anything.
    ///
    /// # Errors
    /// `QueueNotFound`, `Internal`.
    pub async fn peek(&self, n: usize) -> Result<Vec<MessageView>, QueueError> {
        self.call(|reply| ActorRequest::Peek { n, reply }).await
    }

    /// One message by id.
    ///
    /// # Errors
    /// `MessageNotFound`, `QueueNotFound`.
    pub async fn get(&self, id: u64) -> Result<MessageView, QueueError> {
        self.call(|reply| ActorRequest::Get { id, reply }).await
    }

    /// The queue's counters and settings.
    ///
    /// # Errors
    /// `QueueNotFound`.
    pub async fn info(&self) -> Result<QueueStats, QueueError> {
        self.call(|reply| ActorRequest::Info { reply }).await
    }

    /// Changes settings and, with `edit`, the attachment, in one step of the actor:
    /// `edit` gets the current attachment and returns the new one, or refuses (then
    /// nothing changes). Returns once durable.
    ///
    /// # Errors
    /// [`UpdateError::Queue`] (`QueueNotFound`, `InvalidArgument`, `Internal`), or
    /// [`UpdateError::Rejected`] with `edit`'s refusal.
    pub async fn update<E, F>(
        &self,
        patch: SettingsPatch,
        edit: Option<F>,
    ) -> Result<QueueStats, UpdateError<E>>
    where
        E: Send + 'static,
        F: FnOnce(&[u8]) -> Result<Bytes, E> + Send + 'static,
    {
        let edit: Option<Edit> = edit.map(|edit| -> Edit {
            Box::new(move |current: &[u8]| {
                edit(current).map_err(|refusal| Box::new(refusal) as Box<dyn Any + Send>)
            })
        });
        let outcome = self
            .call_acked(|reply| {
                ActorRequest::Update(Box::new(UpdateRequest { patch, edit, reply }))
            })
            .await?;
        outcome.map_err(|refusal| match refusal.downcast::<E>() {
            Ok(refusal) => UpdateError::Rejected(*refusal),
            Err(_) => UpdateError::Queue(QueueError::Internal(
                "an attachment edit refused with a foreign type".into(),
            )),
        })
    }

    /// Removes every message; returns how many.
    ///
    /// # Errors
    /// `QueueNotFound`, `Internal`.
    pub async fn clear(&self) -> Result<usize, QueueError> {
        self.call_acked(|reply| ActorRequest::Clear { reply }).await
    }

    /// Moves up to `n` available messages to the queue `to`, resetting their
    /// reserved_count; returns how many once they are durable there.
    ///
    /// # Errors
    /// `QueueNotFound`, `InvalidArgument` (into itself), `Internal`.
    pub async fn redrive(&self, to: QueueName, n: usize) -> Result<usize, QueueError> {
        self.call(|reply| ActorRequest::Redrive { to, n, reply })
            .await
    }

    /// Takes in messages moved from another queue; returns how many once durable.
    pub(crate) async fn adopt(&self, messages: Vec<Transfer>) -> Result<usize, QueueError> {
        self.call_acked(|reply| ActorRequest::Adopt { messages, reply })
            .await
    }

    /// Tells the actor how a move it started went (fire and forget: if the actor
    /// has stopped, there is nobody to tell).
    pub(crate) async fn transfer_done(&self, ids: Vec<u64>, moved: bool) {
        let _ = self
            .mailbox
            .send(ActorRequest::TransferDone { ids, moved })
            .await;
    }

    /// Hand-off step 1: holds message `id`, reserved under `reservation_id`.
    pub(crate) async fn hand_off_begin(
        &self,
        id: u64,
        reservation_id: u64,
    ) -> Result<(), QueueError> {
        self.call(|reply| {
            ActorRequest::HandOff(Box::new(HandOffStep::Begin {
                id,
                reservation_id,
                reply,
            }))
        })
        .await
    }

    /// Hand-off step 2: stages follow-ups replacing `origin`; returns their ids
    /// once durable.
    pub(crate) async fn stage_follow_ups(
        &self,
        origin: Origin,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>, QueueError> {
        self.call_acked(|reply| {
            ActorRequest::HandOff(Box::new(HandOffStep::Stage {
                origin,
                messages,
                reply,
            }))
        })
        .await
    }

    /// Hand-off step 3: deletes held message `id` (`commit`), returning once that
    /// is durable, or gives it its state back.
    pub(crate) async fn hand_off_end(&self, id: u64, commit: bool) -> Result<(), QueueError> {
        self.call_acked(|reply| {
            ActorRequest::HandOff(Box::new(HandOffStep::End { id, commit, reply }))
        })
        .await
    }

    /// Hand-off step 4: releases (`commit`) or removes the follow-ups staged for
    /// `origin` (fire and forget: a stopped actor leaves them to recovery).
    pub(crate) async fn release_follow_ups(&self, origin: Origin, commit: bool) {
        let _ = self
            .mailbox
            .send(ActorRequest::HandOff(Box::new(HandOffStep::Release {
                origin,
                commit,
            })))
            .await;
    }

    /// Removes the queue's storage and stops its actor.
    ///
    /// # Errors
    /// `QueueNotFound`, `Internal`.
    pub(crate) async fn destroy(&self) -> Result<(), QueueError> {
        self.call_acked(|reply| ActorRequest::Destroy { reply })
            .await
    }
}
