//! Admission of new messages: whether a push may add what it carries. It owns the
//! limits on what queues may hold (messages and bytes per queue, bytes of every
//! queue together) and the server's view of the data directory's free space, and
//! the one running total they need (bytes held by all queues).
//!
//! Each queue's actor asks [`Admission::admit_push`] before its state machine sees a
//! push, so the log only ever holds accepted pushes, and reports what its queue
//! holds after every turn ([`Admission::account`]). A refusal is
//! `ResourceExhausted` (`RESOURCE_EXHAUSTED`, HTTP 503 with `Retry-After`): the
//! client may retry once consumers caught up or space was freed. What is refused:
//! pushes and the creation of queues. What is never refused: reserves, deletes,
//! releases, touches, reads, and moves between queues (dead letters, redrive), so a
//! backlog can always be drained and a dead letter is never bounced.
//!
//! The total is the sum of the actors' reports, each up to date at the end of its
//! turn: pushes to different queues in the same instant may together pass
//! `max_total_bytes` by at most one turn's pushes per queue. The byte figures are
//! those of [`super::state::QueueState::bytes`]: the bodies of the batches a queue
//! still keeps on disk.
//!
//! # Disk space
//! sled 0.34.7 does not recover from a full disk (the hardening issue measured a
//! server that hung or aborted once a write failed with `ENOSPC`), so ferromq never
//! lets it get there through its own writes: the server reads the data
//! directory's free space every [`DISK_CHECK_EVERY`] ([`Admission::set_disk_free`],
//! from `server.rs`) and refuses pushes and queue creations while it is below
//! `--min-free-disk`. The space kept free is what deletes, releases and sled's own
//! segment rewrites write meanwhile; when space comes back (a file removed, the
//! volume grown) pushes are admitted again at the next check, with nothing to
//! restart. Only another process filling the disk past that reserve can still
//! bring sled to `ENOSPC`; then the server aborts (README, Durability) rather than
//! acknowledge anything it could not write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::types::QueueName;
use crate::error::QueueError;

/// How often the server reads the data directory's free space.
pub const DISK_CHECK_EVERY: Duration = Duration::from_millis(250);

/// Default cap on the bytes of one queue's bodies: 1 TiB, so in practice only the
/// disk bounds a queue unless the operator says otherwise.
pub const DEFAULT_MAX_QUEUE_BYTES: u64 = 1 << 40;
/// Default cap on the bytes of every queue's bodies together: unbounded (the disk,
/// through `--min-free-disk`, is the bound).
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = u64::MAX;
/// Default free space kept on the data directory's file system: 64 MiB (a
/// hundred of sled's 512 KiB segments). Pushes are refused below it; deletes and
/// sled's own rewrites use what is left.
pub const DEFAULT_MIN_FREE_DISK: u64 = 64 * 1024 * 1024;

/// The limits on what queues may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldLimits {
    /// Messages in one queue.
    pub max_messages_per_queue: usize,
    /// Bytes of bodies in one queue.
    pub max_bytes_per_queue: u64,
    /// Bytes of bodies in every queue together.
    pub max_total_bytes: u64,
    /// Free space to keep on the data directory's file system.
    pub min_free_disk: u64,
}

/// What admission needs to know; see the module docs.
#[derive(Debug)]
pub struct Admission {
    limits: HoldLimits,
    /// Bytes held by every queue, as last reported by their actors.
    total_bytes: AtomicU64,
    /// Free space on the data directory's file system at the last check
    /// (`u64::MAX` until the first).
    disk_free: AtomicU64,
}

impl Admission {
    /// Admission under `limits`, with nothing held yet.
    pub fn new(limits: HoldLimits) -> Self {
        Admission {
            limits,
            total_bytes: AtomicU64::new(0),
            disk_free: AtomicU64::new(u64::MAX),
        }
    }

    /// Records the data directory's free space (read by the server's watcher).
    pub fn set_disk_free(&self, bytes: u64) {
        self.disk_free.store(bytes, Ordering::Relaxed);
    }

    /// Bytes held by every queue together.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes.load(Ordering::Relaxed)
    }

    /// A queue's actor says its queue went from holding `before` bytes to `after`.
    pub fn account(&self, before: u64, after: u64) {
        if after > before {
            self.total_bytes
                .fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            // Never below zero: every byte subtracted was added by the same actor.
            let _ = self
                .total_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |total| {
                    Some(total.saturating_sub(before - after))
                });
        }
    }

    /// Whether writing may grow the data directory: refused while the disk is
    /// below `min_free_disk`.
    ///
    /// # Errors
    /// `ResourceExhausted`, saying how much is free and the limit.
    pub fn admit_growth(&self) -> Result<(), QueueError> {
        let free = self.disk_free.load(Ordering::Relaxed);
        if free < self.limits.min_free_disk {
            return Err(QueueError::ResourceExhausted(format!(
                "the data directory's disk has {} free, below --min-free-disk {}: \
                 pushes and new queues are refused until space is freed",
                mib(free),
                mib(self.limits.min_free_disk)
            )));
        }
        Ok(())
    }

    /// Whether queue `name`, holding `held` messages and `held_bytes` bytes, may
    /// take `messages` more messages of `bytes` bytes.
    ///
    /// # Errors
    /// `ResourceExhausted` naming the limit that would be passed.
    pub fn admit_push(
        &self,
        name: &QueueName,
        held: usize,
        held_bytes: u64,
        messages: usize,
        bytes: u64,
    ) -> Result<(), QueueError> {
        let limits = &self.limits;
        if held.saturating_add(messages) > limits.max_messages_per_queue {
            return Err(QueueError::ResourceExhausted(format!(
                "queue {name} holds {held} messages; {messages} more would pass its limit of {} \
                 (--max-queue-messages): retry after consumers catch up",
                limits.max_messages_per_queue
            )));
        }
        if held_bytes.saturating_add(bytes) > limits.max_bytes_per_queue {
            return Err(QueueError::ResourceExhausted(format!(
                "queue {name} holds {held_bytes} bytes of messages; {bytes} more would pass its \
                 limit of {} (--max-queue-bytes): retry after consumers catch up",
                limits.max_bytes_per_queue
            )));
        }
        let total = self.total_bytes();
        if total.saturating_add(bytes) > limits.max_total_bytes {
            return Err(QueueError::ResourceExhausted(format!(
                "the server's queues hold {total} bytes of messages; {bytes} more would pass \
                 the limit of {} (--max-total-bytes): retry after consumers catch up",
                limits.max_total_bytes
            )));
        }
        self.admit_growth()?;
        // Until the next reading, count what this push will write against the
        // free space (twice its bodies: the log record, and sled's rewrite of it
        // when its segment is cleaned), so a fast producer cannot run far past the
        // reserve between two readings.
        let _ = self
            .disk_free
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |free| {
                Some(free.saturating_sub(bytes.saturating_mul(2)))
            });
        Ok(())
    }
}

fn mib(bytes: u64) -> String {
    if bytes == u64::MAX {
        return "unknown".into();
    }
    let tenths = bytes.saturating_mul(10) / (1024 * 1024);
    format!("{}.{} MiB", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission() -> Admission {
        Admission::new(HoldLimits {
            max_messages_per_queue: 10,
            max_bytes_per_queue: 1000,
            max_total_bytes: 1500,
            min_free_disk: 100,
        })
    }

    #[test]
    fn should_refuse_a_push_past_each_limit_at_its_edge() {
        let a = admission();
        let q = QueueName::new("q").unwrap();
        assert!(a.admit_push(&q, 9, 0, 1, 0).is_ok());
        assert!(a.admit_push(&q, 9, 0, 2, 0).is_err(), "messages");
        assert!(a.admit_push(&q, 0, 900, 1, 100).is_ok());
        let err = a.admit_push(&q, 0, 900, 1, 101).unwrap_err();
        assert!(err.to_string().contains("--max-queue-bytes"), "{err}");
        a.account(0, 1400);
        assert!(a.admit_push(&q, 0, 0, 1, 100).is_ok());
        let err = a.admit_push(&q, 0, 0, 1, 101).unwrap_err();
        assert!(err.to_string().contains("--max-total-bytes"), "{err}");
        a.account(1400, 0);
        assert_eq!(a.total_bytes(), 0);
        a.account(10, 0);
        assert_eq!(a.total_bytes(), 0, "never below zero");
    }

    #[test]
    fn should_refuse_growth_while_the_disk_is_below_the_reserve() {
        let a = admission();
        let q = QueueName::new("q").unwrap();
        assert!(a.admit_growth().is_ok(), "no reading yet");
        a.set_disk_free(99);
        let err = a.admit_push(&q, 0, 0, 1, 1).unwrap_err();
        assert!(matches!(err, QueueError::ResourceExhausted(_)));
        assert!(err.to_string().contains("--min-free-disk"), "{err}");
        a.set_disk_free(110);
        assert!(a.admit_push(&q, 0, 0, 1, 6).is_ok(), "space came back");
        assert!(
            a.admit_push(&q, 0, 0, 1, 1).is_err(),
            "the 12 bytes the last push will write are counted until the next reading"
        );
    }
}
