//! Atomic hand-off, the state machine's part: a reserved message replaced by
//! follow-up messages in one or more queues, all or nothing.
//!
//! # The steps (driven by `queue/transfer.rs`, one queue actor each)
//! 1. **Hold.** The source checks the reservation ([`QueueState::hand_off_begin`])
//!    and holds the message: it stays RESERVED (counted, stored and capped per
//!    key as such) but is invisible to every request, its lease does not end and
//!    it does not expire while held.
//! 2. **Stage.** Each target stages its follow-ups
//!    ([`QueueState::stage_follow_ups`]), MOVING, into its batch records like
//!    pushes, each with its origin (the source queue and message id: batch
//!    version 4). The driver waits until they are durable.
//! 3. **Commit.** The source deletes the message ([`QueueState::hand_off_end`]
//!    with `commit`); the driver waits until that deletion is durable. **That
//!    write is the commit point.**
//! 4. **Release.** Each target makes its follow-ups available (or delayed)
//!    ([`QueueState::release_follow_ups`]). A hand-off that fails before step 3
//!    removes the staged follow-ups and gives the message its state back.
//!
//! # Recovery
//! Follow-ups on disk whose origin message is still in its queue belong to a
//! hand-off whose deletion never became durable: it did not commit. The registry
//! drops them when the server starts ([`resolve_hand_offs`]) and makes that durable
//! before any queue serves, so the same message cannot commit another hand-off
//! while the dropped copies are still on disk. Message ids are never reused: a
//! deleted origin never comes back. So after a crash at any moment there is the
//! old message (with the state its last durable record gives it: reserved or
//! available) and none of the follow-ups, or all of them and not the old message.
//!
//! The presence checked is the stored one: a follow-up of a hand-off that itself
//! was dropped never got reserved (it was never available), so it cannot be the
//! origin of a later hand-off, and no chain of hand-offs needs an order of checks.
//!
//! # Costs
//! A follow-up's origin stays in its batch record for as long as the follow-up
//! is stored (the record is written once), so every start checks each stored
//! follow-up's origin: one lookup in its source queue's index. In memory, a
//! follow-up is a full index entry until the next start (it entered MOVING, not
//! in its push defaults), and a held message one entry in `handing_off`. On the
//! mixed benchmark a hand-off costs about 1.35× a push and a delete of the same
//! messages, unbatched (BENCHMARKS.md, "Atomic hand-off").

use std::collections::HashMap;

use super::{QueueState, State, Timer};
use crate::error::QueueError;
use crate::queue::types::{NewMessage, Origin, QueueName};

use super::delayed_or_available;

impl QueueState {
    /// Step 1: holds message `id`, reserved under `reservation_id`, for a
    /// hand-off.
    ///
    /// # Errors
    /// As [`QueueState::delete`] with a reservation.
    pub fn hand_off_begin(
        &mut self,
        now: u64,
        id: u64,
        reservation_id: u64,
    ) -> Result<(), QueueError> {
        self.check_reservation(id, Some(reservation_id), now)?;
        if let Some(State::Reserved { until_ms, .. }) = self.index.get(id).map(|m| m.state) {
            self.timers.remove(until_ms, Timer::Lease(id));
        }
        self.handing_off.insert(id);
        Ok(())
    }

    /// Whether message `id` is held for a hand-off.
    pub(super) fn is_held(&self, id: u64) -> bool {
        !self.handing_off.is_empty() && self.handing_off.contains(&id)
    }

    /// Step 3 (`commit`): deletes held message `id`, a consumer's delete like any
    /// other; or, the hand-off failed, lets it go on under its reservation (one
    /// that ran out meanwhile ends now, as a lease end; a message whose expiry
    /// came meanwhile goes).
    ///
    /// # Errors
    /// `MessageNotFound` if the message is not held (the queue was cleared
    /// meanwhile).
    pub fn hand_off_end(&mut self, now: u64, id: u64, commit: bool) -> Result<(), QueueError> {
        if !self.handing_off.remove(&id) {
            return Err(QueueError::MessageNotFound(id));
        }
        let Some(msg) = self.index.get(id) else {
            return Err(QueueError::MessageNotFound(id));
        };
        if commit {
            self.record_processing(id, now);
            self.remove(id);
            self.counters.deleted += 1;
        } else if msg.expires_at_ms <= now {
            // Its expiry came while it was held (`expire_group` skips held ones).
            self.remove_expired(id);
        } else {
            match msg.state {
                // Its lease ran out while it was held: it ends now.
                State::Reserved { until_ms, .. } if until_ms <= now => self.requeue_expired(id),
                State::Reserved { until_ms, .. } => self.timers.insert(until_ms, Timer::Lease(id)),
                _ => {}
            }
            // Its group's expiry may have passed it by while it was held.
            self.arm_expiry(msg.batch, msg.expires_at_ms);
        }
        Ok(())
    }

    /// Step 2: stages `messages` (already validated) as the follow-ups replacing
    /// `origin`, invisible until [`QueueState::release_follow_ups`]; returns their
    /// ids. A second staging for the same origin (a retried request) adds to it.
    ///
    /// # Errors
    /// If no ids can be allocated.
    pub fn stage_follow_ups(
        &mut self,
        now: u64,
        env: &mut dyn super::Env,
        origin: &Origin,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>, QueueError> {
        let count = u64::try_from(messages.len()).unwrap_or(u64::MAX);
        let first = env.allocate_ids(count)?;
        let expires_at_ms = now.saturating_add(self.settings().expiration_ms());
        self.staging
            .begin_origin(std::sync::Arc::from(origin.queue.as_str()), origin.id);
        let mut ids = Vec::with_capacity(messages.len());
        let mut result = Ok(());
        for (id, message) in (first..).zip(messages) {
            match self.add_new(now, id, message, expires_at_ms, true) {
                Ok(available_at_ms) => ids.push((id, available_at_ms)),
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
        }
        self.staging.end_origin();
        let out = ids.iter().map(|&(id, _)| id).collect();
        self.staged.entry(origin.clone()).or_default().extend(ids);
        if let Err(err) = result {
            self.release_follow_ups(now, origin, false);
            return Err(err);
        }
        Ok(out)
    }

    /// Step 4 (`commit`): makes the follow-ups staged for `origin` available (or
    /// delayed, as pushed), counted as pushed now; or, the hand-off failed,
    /// removes them. (Follow-ups that a crash cut before this step and recovery
    /// kept are not counted: `total_pushed` may undercount after a crash.)
    pub fn release_follow_ups(&mut self, now: u64, origin: &Origin, commit: bool) {
        let Some(ids) = self.staged.remove(origin) else {
            return;
        };
        for (id, available_at_ms) in ids {
            if self.index.get(id).map(|m| m.state) != Some(State::Moving) {
                continue; // expired or cleared meanwhile
            }
            if commit {
                self.attach(id, delayed_or_available(available_at_ms, now));
                self.count_pushed();
            } else {
                self.remove(id);
            }
        }
    }

    /// Recovery: message `id` is a follow-up of a hand-off that did not
    /// commit: it leaves, written as deleted at the next write.
    fn discard(&mut self, id: u64) {
        self.remove(id);
    }
}

/// Recovery, across every queue just rebuilt: drops the follow-ups of each
/// hand-off that did not commit, those whose origin message is still in its
/// queue. Every check is made before anything is dropped, on what the queues
/// loaded. Returns the indexes of the queues that dropped something: their
/// writes (`take_writes`) must be durable before any queue serves (module docs).
pub fn resolve_hand_offs(queues: &mut [&mut QueueState]) -> Vec<usize> {
    if queues.iter().all(|q| q.origins.is_empty()) {
        return Vec::new();
    }
    let by_name: HashMap<QueueName, usize> = queues
        .iter()
        .enumerate()
        .map(|(at, queue)| (queue.meta.name.clone(), at))
        .collect();
    let mut discard = Vec::new();
    for at in 0..queues.len() {
        for (id, origin) in std::mem::take(&mut queues[at].origins) {
            let present = by_name
                .get(&origin.queue)
                .is_some_and(|&source| queues[source].index.contains(origin.id));
            if present {
                discard.push((at, id, origin));
            }
        }
    }
    let mut touched: Vec<usize> = Vec::new();
    for (at, id, origin) in discard {
        tracing::info!(queue = %queues[at].meta.name, id, origin_queue = %origin.queue,
            origin_id = origin.id, "dropping a follow-up of a hand-off that did not commit");
        queues[at].discard(id);
        if !touched.contains(&at) {
            touched.push(at);
        }
    }
    touched
}
