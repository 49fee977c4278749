//! Queues: one actor per queue owns its state and is its only writer.
//!
//! Read in this order:
//! - [`types`]: names, settings, limits and the views operations return.
//! - [`state::QueueState`]: the pure, deterministic state machine of one queue
//!   (semantics.md), with its parts: [`index`] (the messages in memory, most of
//!   them one bit each), [`order`] (order keys: priority bands, FIFO within
//!   them, requeues to the front), [`lease`] (processing times), [`history`]
//!   (delivery attempts), [`fair`] (which key's message a reserve takes),
//!   [`waiters`]
//!   (parked long polls), [`staging`] (how messages become batch records),
//!   [`deadlines`] (the timer index) and [`recovery`] (rebuilding a queue from
//!   its records).
//! - [`clock`]: the one source of time; the state machine takes `now` as an argument.
//! - [`actor`]: the loop that drives a state machine: mailbox, timer, a turn's
//!   writes, replies. [`handle::QueueHandle`] is its typed, cloneable front.
//! - [`admission`]: the limits on what queues hold (messages, bytes, disk space),
//!   checked by each actor before a push reaches its state machine.
//! - [`transfer`]: moving messages between queues (dead letters, redrive) without
//!   actors waiting on each other.
//! - [`registry::Registry`]: queue name → handle; creating, loading and deleting
//!   queues.
//!
//! **Architecture invariant:** only a queue's actor task writes that queue's
//! records, and the state machine it drives does no I/O and reads no clock.

pub mod actor;
pub mod admission;
pub mod clock;
pub mod deadlines;
pub mod fair;
pub mod handle;
pub mod history;
pub mod index;
pub mod lease;
pub mod order;
pub mod push;
pub mod recovery;
pub mod registry;
pub mod staging;
pub mod state;
pub mod transfer;
pub mod types;
pub mod waiters;

#[cfg(test)]
mod tests;

pub use handle::QueueHandle;
pub use registry::{QueueLimits, Registry};
