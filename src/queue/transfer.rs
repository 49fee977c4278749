//! Moving messages between queues: dead letters and redrive.
//!
//! The source queue's actor starts a move after its state machine made the
//! messages MOVING (invisible there). The move runs as a task of its own, so no
//! actor ever waits for another: it finds the target queue (creating it with
//! default settings if needed), hands it the messages through the target's
//! [`QueueHandle`], waits until the target's commit made them durable, and reports
//! the outcome back to the source through the source's handle; the source then
//! removes the messages, or, if the move failed, makes them available again at
//! their old place. A crash in between can leave a message in both queues, never
//! in neither. Every move task is tracked and ends at shutdown (the target and the
//! source stop answering, and the task gives up).
//!
//! An atomic hand-off ([`Mover::hand_off`]) is driven from here too, as a task of
//! its own so that a client going away cannot stop it half way; its steps, and
//! why a crash at any moment leaves the old message or all its follow-ups, never
//! both and never neither, are in `state/hand_off.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use super::handle::{QueueHandle, WeakQueueHandle};
use super::push::stored;
use super::types::{NewMessage, Origin, QueueName, Transfer};
use crate::error::QueueError;

/// A boxed future of a queue lookup.
pub(crate) type Lookup = Pin<Box<dyn Future<Output = Result<QueueHandle, QueueError>> + Send>>;

/// How a move finds its target queue. Implemented by the registry through a weak
/// reference, so the registry and its actors do not keep each other alive.
pub(crate) trait Directory: Send + Sync {
    /// The queue named `name`, created with default settings if missing.
    fn get_or_create(&self, name: QueueName) -> Lookup;
}

/// What an actor needs to start moves.
#[derive(Clone)]
pub(crate) struct Mover {
    pub(crate) directory: Arc<dyn Directory>,
    pub(crate) tasks: TaskTracker,
}

impl Mover {
    /// Moves `messages` (MOVING in `source`) to the queue `to`; `reply`, if given,
    /// gets how many the target took once they are durable there.
    pub(super) fn start(
        &self,
        source: WeakQueueHandle,
        to: QueueName,
        messages: Vec<Transfer>,
        reply: Option<oneshot::Sender<Result<usize, QueueError>>>,
    ) {
        let directory = Arc::clone(&self.directory);
        self.tasks.spawn(async move {
            let ids: Vec<u64> = messages.iter().map(|m| m.id).collect();
            let result = match directory.get_or_create(to.clone()).await {
                Ok(target) => target.adopt(messages).await,
                Err(err) => Err(err),
            };
            if let Err(err) = &result {
                tracing::warn!(to = %to, cause = %err, "cannot move messages; they stay where they were");
            }
            if let Some(source) = source.upgrade() {
                source.transfer_done(ids, result.is_ok()).await;
            }
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        });
    }
}

/// One target of a hand-off: the queue (created if missing) and its follow-ups.
#[derive(Debug, Clone)]
pub struct FollowUps {
    /// The queue.
    pub queue: QueueName,
    /// 1..=100 messages, checked as a push's (by the service).
    pub messages: Vec<NewMessage>,
    /// Their push headers (`headers[i]` for `messages[i]`), kept if the queue
    /// is a push queue (`push::stored`).
    pub headers: Vec<Vec<(String, String)>>,
}

impl Mover {
    /// Replaces message `id` of `source`, reserved under `reservation_id`, by the
    /// follow-ups of `targets`, all or nothing; returns the follow-ups' ids, per
    /// target. Runs to its end as a task of its own, whatever the caller does.
    ///
    /// # Errors
    /// The source's refusal of the reservation (`MessageNotFound`,
    /// `ReservationExpired`, `ReservationMismatch`; nothing changed), a target's
    /// refusal (nothing changed), or a storage failure at the commit point (then
    /// the follow-ups stay invisible and the next start decides, as after a crash).
    pub(crate) async fn hand_off(
        &self,
        source: QueueHandle,
        id: u64,
        reservation_id: u64,
        targets: Vec<FollowUps>,
    ) -> Result<Vec<Vec<u64>>, QueueError> {
        let directory = Arc::clone(&self.directory);
        let (tx, rx) = oneshot::channel();
        self.tasks.spawn(async move {
            let result = run_hand_off(&*directory, &source, id, reservation_id, targets).await;
            let _ = tx.send(result);
        });
        rx.await
            .map_err(|_| QueueError::Unavailable("the server is shutting down".into()))?
    }
}

/// The steps of a hand-off (`state/hand_off.rs`).
async fn run_hand_off(
    directory: &dyn Directory,
    source: &QueueHandle,
    id: u64,
    reservation_id: u64,
    targets: Vec<FollowUps>,
) -> Result<Vec<Vec<u64>>, QueueError> {
    source.hand_off_begin(id, reservation_id).await?;
    let origin = Origin {
        queue: source.name().clone(),
        id,
    };
    let mut staged: Vec<QueueHandle> = Vec::with_capacity(targets.len());
    let mut ids = Vec::with_capacity(targets.len());
    for target in targets {
        let handle = match directory.get_or_create(target.queue).await {
            Ok(handle) => handle,
            Err(err) => return abort(source, &staged, &origin, err).await,
        };
        let messages = stored(handle.kind(), &target.messages, &target.headers);
        match handle.stage_follow_ups(origin.clone(), messages).await {
            Ok(new) => ids.push(new),
            Err(err) => {
                // Whatever it staged before failing goes too.
                staged.push(handle);
                return abort(source, &staged, &origin, err).await;
            }
        }
        staged.push(handle);
    }
    match source.hand_off_end(id, true).await {
        // The deletion is durable: committed. A message cleared away or a
        // queue deleted meanwhile is gone too: the follow-ups stand.
        Ok(()) | Err(QueueError::MessageNotFound(_) | QueueError::QueueNotFound(_)) => {
            for handle in &staged {
                handle.release_follow_ups(origin.clone(), true).await;
            }
            Ok(ids)
        }
        Err(err) => {
            tracing::error!(queue = %origin.queue, id, cause = %err,
                "hand-off: the deletion may not be durable; the next start decides");
            Err(err)
        }
    }
}

/// A hand-off failed before its commit point: the follow-ups staged go, the
/// message gets its state back.
async fn abort(
    source: &QueueHandle,
    staged: &[QueueHandle],
    origin: &Origin,
    err: QueueError,
) -> Result<Vec<Vec<u64>>, QueueError> {
    for handle in staged {
        handle.release_follow_ups(origin.clone(), false).await;
    }
    if let Err(end) = source.hand_off_end(origin.id, false).await {
        tracing::warn!(queue = %origin.queue, id = origin.id, cause = %end,
            "hand-off abort: the message could not be given back");
    }
    Err(err)
}
