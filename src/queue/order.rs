//! Order keys: where an AVAILABLE message stands in its queue, priority included.
//!
//! A message's place is one `u64`, its order key; reserve takes the smallest. The
//! key space is cut into [`PRIORITIES`] bands, one per priority (0 first, 15 last),
//! each [`BAND`] wide and centred on [`center`]`(priority)`:
//!
//! ```text
//! key = center(p) + id        a push (FIFO within the band: ids only grow)
//! key = center(p) - k         a requeue (lease end, release); k only grows, so
//!                             the latest requeue is first within its band
//! center(p) = 2^62 + p * 2^59, so center(DEFAULT_PRIORITY = 8) = 2^63
//! ```
//!
//! The default band's keys are exactly the keys of a queue without priorities
//! (`ORDER_BASE + id`, `ORDER_BASE - k`), so data written before priorities reads
//! unchanged and a queue that never uses them costs nothing more. In memory the
//! priority is nothing but the band of the key; on disk it is written once, with
//! the message in its batch record (`storage/batch.rs`, version 3), and a state
//! record holds a key of the same band after a requeue. Priority therefore costs
//! nothing per operation: the available order is the one ordered set it always
//! was.
//!
//! Ids stay below 2^58 (the server hands out far fewer in its lifetime: 2^58 is
//! nine thousand years at a million a second), and so do requeues; both are
//! clamped to their half band rather than let spill into the next.
//!
//! Pure arithmetic, part of the state machine.

use super::types::{DEFAULT_PRIORITY, MAX_PRIORITY};

/// The centre of the default priority's band: the base of every order key
/// written before priorities (pushes above it, requeues below).
pub(super) const ORDER_BASE: u64 = 1 << 63;

/// Number of priorities: `0..=MAX_PRIORITY`.
pub const PRIORITIES: u8 = MAX_PRIORITY + 1;
/// Width of a priority's band of keys.
const BAND: u64 = 1 << 59;
/// Half a band: the most ids (above the centre) or requeues (below it) a band holds.
const HALF: u64 = BAND / 2;
/// The centre of band 0: the default's centre is [`ORDER_BASE`].
const CENTER_0: u64 = ORDER_BASE - DEFAULT_PRIORITY as u64 * BAND;
/// Where band 0 starts.
const FIRST: u64 = CENTER_0 - HALF;

/// The centre of priority `priority`'s band (the key of a push with id 0).
pub(super) fn center(priority: u8) -> u64 {
    CENTER_0 + u64::from(priority.min(MAX_PRIORITY)) * BAND
}

/// The key of a message pushed (or adopted) with `priority` and id `id`.
pub(super) fn push_key(priority: u8, id: u64) -> u64 {
    center(priority) + id.min(HALF - 1)
}

/// The key of the `requeue`-th requeue (1, 2, ...) into `priority`'s band.
pub(super) fn front_key(priority: u8, requeue: u64) -> u64 {
    center(priority) - requeue.clamp(1, HALF)
}

/// The priority of a key (its band); keys outside every band (only a damaged
/// record could hold one) count as the nearest band.
pub(super) fn priority_of(key: u64) -> u8 {
    let band = key.saturating_sub(FIRST) / BAND;
    u8::try_from(band).map_or(MAX_PRIORITY, |band| band.min(MAX_PRIORITY))
}

/// How many requeues deep a key is: `k` of a requeue's key, 0 for a push's.
pub(super) fn requeue_depth(key: u64) -> u64 {
    center(priority_of(key)).saturating_sub(key)
}

/// Whether `key` is the key of a push with id `id` (in any band).
pub(super) fn is_push_key(key: u64, id: u64) -> bool {
    push_key(priority_of(key), id) == key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_agree_with_storage_on_the_default_priority() {
        assert_eq!(DEFAULT_PRIORITY, crate::storage::batch::DEFAULT_PRIORITY);
    }

    #[test]
    fn should_keep_the_keys_of_a_queue_without_priorities() {
        assert_eq!(center(DEFAULT_PRIORITY), ORDER_BASE);
        assert_eq!(push_key(DEFAULT_PRIORITY, 42), ORDER_BASE + 42);
        assert_eq!(front_key(DEFAULT_PRIORITY, 1), ORDER_BASE - 1);
        assert_eq!(priority_of(ORDER_BASE - 1_000_000), DEFAULT_PRIORITY);
        assert_eq!(requeue_depth(ORDER_BASE - 7), 7);
        assert_eq!(requeue_depth(ORDER_BASE + 7), 0);
    }

    #[test]
    fn should_order_by_priority_then_requeues_latest_first_then_pushes_by_id() {
        let mut keys = Vec::new();
        for priority in (0..PRIORITIES).rev() {
            keys.push((push_key(priority, HALF - 1), (priority, 3)));
            keys.push((push_key(priority, 1), (priority, 2)));
            keys.push((front_key(priority, 1), (priority, 1)));
            keys.push((front_key(priority, HALF), (priority, 0)));
        }
        keys.sort_unstable();
        let order: Vec<(u8, u8)> = keys.iter().map(|&(_, rank)| rank).collect();
        let expected: Vec<(u8, u8)> = (0..PRIORITIES)
            .flat_map(|p| (0..4).map(move |r| (p, r)))
            .collect();
        assert_eq!(order, expected);
        for &(key, (priority, _)) in &keys {
            assert_eq!(priority_of(key), priority);
        }
    }

    #[test]
    fn should_clamp_rather_than_spill_into_another_band() {
        assert_eq!(priority_of(push_key(3, u64::MAX)), 3);
        assert_eq!(priority_of(front_key(3, u64::MAX)), 3);
        assert_eq!(priority_of(front_key(0, u64::MAX)), 0);
        assert_eq!(priority_of(push_key(MAX_PRIORITY, u64::MAX)), MAX_PRIORITY);
        assert_eq!(priority_of(0), 0);
        assert_eq!(priority_of(u64::MAX), MAX_PRIORITY);
        assert!(is_push_key(push_key(5, 9), 9));
        assert!(!is_push_key(front_key(5, 9), 9));
    }
}
