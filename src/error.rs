//! The errors of the queue layer.
//!
//! [`QueueError`] is what a queue operation can fail with, whichever front end
//! asked. Expected outcomes that are not failures (an empty queue, a long poll that
//! timed out) are plain values, not errors. Each front end maps these to its own
//! wire: stable error codes at the binary protocol's edge (`binary/dispatch.rs`),
//! HTTP statuses at the HTTP API's (`http/error.rs`).

use crate::storage::StorageError;

/// A failed queue operation.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    /// A field is missing or out of range, or a queue name is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The queue does not exist (only push creates queues).
    #[error("queue not found: {0}")]
    QueueNotFound(String),
    /// create_queue for a name that is taken.
    #[error("queue already exists: {0}")]
    QueueExists(String),
    /// No message with this id in the queue.
    #[error("message {0} not found")]
    MessageNotFound(u64),
    /// The reservation's deadline has passed (`now >= deadline`).
    #[error("reservation of message {0} has expired")]
    ReservationExpired(u64),
    /// Wrong or superseded reservation id, or a reserved message deleted without one.
    #[error("reservation id does not match the current reservation of message {0}")]
    ReservationMismatch(u64),
    /// A body over the server's body limit.
    #[error("body of {len} bytes is over the limit of {max} bytes")]
    BodyTooLarge {
        /// Size of the offending body.
        len: usize,
        /// The server's limit.
        max: usize,
    },
    /// The client's token does not cover this queue's project.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A server limit was reached.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// The server (or this queue's actor) is shutting down.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The store failed; the message says how.
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueueError {
    /// Shorthand for an [`QueueError::InvalidArgument`] with a formatted reason.
    pub fn invalid(reason: impl Into<String>) -> Self {
        QueueError::InvalidArgument(reason.into())
    }
}

impl From<StorageError> for QueueError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Full(_) => QueueError::ResourceExhausted(err.to_string()),
            StorageError::Closed => QueueError::Unavailable(err.to_string()),
            StorageError::Io(_) | StorageError::Corrupt(_) | StorageError::Locked(_) => {
                QueueError::Internal(err.to_string())
            }
        }
    }
}
