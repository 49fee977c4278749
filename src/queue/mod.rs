//! Queues: one actor per queue owns its state and is its only writer.
//!
//! - [`handle::QueueHandle`] is the cloneable front: every operation is a message on
//!   the actor's bounded mailbox with a oneshot for the reply.
//! - [`actor`] holds the state machine of semantics.md (AVAILABLE, DELAYED, RESERVED)
//!   over an in-memory index, writes every change through [`crate::storage::QueueLog`],
//!   and drives all timed events from one [`deadlines::DeadlineIndex`] and one timer.
//! - [`types`] holds names, settings, limits and the views operations return.
//!
//! **Architecture invariant:** only a queue's actor task writes that queue's trees,
//! and nothing awaits while holding a lock.

pub mod actor;
pub mod deadlines;
pub mod handle;
pub mod types;

pub use handle::QueueHandle;
