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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use super::handle::{QueueHandle, WeakQueueHandle};
use super::types::{QueueName, Transfer};
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
