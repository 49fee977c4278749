//! [`QueueState`]: one queue as a pure, deterministic state machine.
//!
//! It holds the queue's messages (without their bodies), their order, leases,
//! delays and expiry, the parked long polls and the counters, and implements every
//! rule of [semantics.md](../../docs/semantics.md). It does no I/O and reads no
//! clock: every operation takes the current time (`now`, ms of server time, see
//! `clock.rs`) as an argument, and what it needs from outside (fresh ids, the body
//! of a message already on disk, whether a long poll's client still waits) it asks
//! of an [`Env`] it is given. What must happen as a result, it returns:
//! - the answer, as the operation's return value;
//! - [`Event`]s for others (a parked reserve woken or timed out, dead letters to
//!   move), drained with [`QueueState::take_events`];
//! - the records to write, drained with [`QueueState::take_writes`];
//! - the next deadline to arm a timer for, [`QueueState::next_deadline`].
//!
//! Same inputs, same outputs: a replicated log could drive it unchanged. The actor
//! (`actor.rs`) is the driver in this server.
//!
//! # Order and state
//! Every message is in the [`MessageIndex`] (`index.rs`), which keeps untouched
//! messages as one bit each and hands out the AVAILABLE ones ordered by order key
//! (`order.rs`): the key's band is the message's priority (lower first); within
//! it, a push takes the band's centre + id (so pushes keep push order) and a
//! requeue (timeout or release) the centre - `requeues`, a count that only grows,
//! so the latest requeue is first in its priority. Which available message a
//! reserve takes is the first in that order, unless some message has a dispatch
//! key: then it is the fair choice among keys (`fair.rs`). Every timed event
//! (lease deadline, delay end, long-poll timeout, and one expiry per group at its
//! earliest message's expiration) is in one [`DeadlineIndex`];
//! [`QueueState::advance`] fires what is due. A message being moved to another
//! queue is MOVING: never handed out, invisible to every operation, counted in
//! `size` until the move completes or fails.
//!
//! # Delivery history
//! An attempt that ends with the message staying (release, lease end) is queued
//! as a [`HistoryUpdate`] for the actor to append to the message's stored history
//! (`history.rs`); the state machine keeps only which messages have one, and the
//! consumer and touches of named or touched reservations.
//!
//! # Time
//! The driver calls [`QueueState::advance`] with the current time before anything
//! else at that time, so every deadline at or before `now` has taken effect before
//! a request looks at the queue: deadlines are checked at request time. Events due
//! at the same millisecond take effect in this order: lease ends (in message-id
//! order), delay ends, expiries, long-poll timeouts.

mod hand_off;

pub use hand_off::resolve_hand_offs;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use bytes::Bytes;

use super::deadlines::DeadlineIndex;
use super::fair::UNKEYED;
use super::history::{self, Attempt, HistoryUpdate, Open, Outcome};
use super::index::MessageIndex;
use super::lease::ProcessingTimes;
use super::order::{front_key, is_push_key, priority_of, push_key};
use super::push::unwrap_body;
use super::staging::{Group, IdHasher, IdMap, LogWrite, Slot, Staging};
use super::types::{
    Lease, MessageInfo, MessageState, MessageView, NewMessage, Origin, QueueName, QueueSettings,
    QueueStats, Transfer, AUTO_TIMEOUT_MS, DEFAULT_PRIORITY, MAX_TIMEOUT_MS,
};
use super::waiters::{Waiter, WaiterId, Waiters};
use crate::error::QueueError;
use crate::storage::{MessageRecord, StateRecord};

/// A queue record whose only change is `total_pushed` is written at most this often.
const RECORD_EVERY_MS: u64 = 1000;

/// What the state machine asks of the world outside it.
pub trait Env {
    /// `n` consecutive fresh ids (server-wide, strictly increasing); the first.
    ///
    /// # Errors
    /// If none can be handed out (the store failed).
    fn allocate_ids(&mut self, n: u64) -> Result<u64, QueueError>;
    /// The body in slot `slot` of the written group `batch`; `None` if there is none.
    ///
    /// # Errors
    /// If the log cannot be read.
    fn read_body(&mut self, batch: u64, slot: u32) -> Result<Option<Bytes>, QueueError>;
    /// Whether the client of a parked reserve still waits for its answer.
    fn is_waiting(&self, waiter: WaiterId) -> bool;
    /// The stored delivery history of message `id` (`history.rs`), if any.
    ///
    /// # Errors
    /// If the log cannot be read.
    fn read_history(&mut self, id: u64) -> Result<Option<Vec<u8>>, QueueError>;
}

/// What a reserve asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ask {
    /// Most messages wanted (at least one is taken when available).
    pub n: usize,
    /// Lease length; `None` is the queue's default, [`AUTO_TIMEOUT_MS`] advice.
    pub timeout_ms: Option<u64>,
    /// Delete on reserve (at-most-once).
    pub delete: bool,
    /// Who reserves, for the delivery history; `None` when not named.
    pub consumer: Option<Arc<str>>,
}

/// The persisted description of a queue, as the state machine holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMeta {
    /// The queue's name.
    pub name: QueueName,
    /// When the queue was created.
    pub created_at_ms: u64,
    /// Its settings.
    pub settings: QueueSettings,
    /// Messages ever pushed.
    pub total_pushed: u64,
    /// The front end's blob.
    pub attachment: Bytes,
    /// Reserve-to-delete times (`lease.rs`), from the first such delete; written
    /// with the record like `total_pushed`.
    pub processing: Option<Box<ProcessingTimes>>,
}

pub use crate::metrics::Counters;

/// The answer to a reserve.
#[derive(Debug, PartialEq, Eq)]
pub enum Reserved {
    /// The messages reserved now (maybe none).
    Now(Vec<MessageView>),
    /// Nothing was available; the reserve waits as this waiter.
    Parked(WaiterId),
}

/// Something that must happen outside the state machine.
#[derive(Debug)]
pub enum Event {
    /// A parked reserve got its answer.
    Woken {
        /// Who.
        waiter: WaiterId,
        /// It asked for delete on reserve (its answer waits for the commit).
        delete: bool,
        /// The messages, or why there are none.
        result: Result<Vec<MessageView>, QueueError>,
    },
    /// A parked reserve's wait ended with no message (its time ran out, or its
    /// client went away).
    WaitEnded(WaiterId),
    /// Messages to move to the dead-letter queue `to`; they are MOVING here until
    /// [`QueueState::transfer_done`] is told how the move went.
    DeadLetters {
        /// The dead-letter queue.
        to: QueueName,
        /// The messages, with their bodies and reserved_count.
        messages: Vec<Transfer>,
    },
}

/// How a push delivery round ends for a message some subscriber still lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Back to the front of the queue, available again after `delay_ms`.
    Retry {
        /// The retries delay.
        delay_ms: u64,
    },
    /// Stays reserved under the same reservation for `for_ms` from now
    /// (subscribers that answered 202 acknowledge with it); then it is requeued.
    Hold {
        /// The length of the wait.
        for_ms: u64,
    },
}

/// What [`QueueState::take_writes`] returns.
#[derive(Debug, Default)]
pub struct Writes {
    /// The queue log's writes, in order.
    pub log: Vec<LogWrite>,
    /// The queue record must be written ([`QueueState::meta`]).
    pub record: bool,
}

/// The state of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Available,
    Delayed {
        until_ms: u64,
    },
    Reserved {
        reservation_id: u64,
        until_ms: u64,
        /// From the start of the reservation (its reserve, not a later touch) to
        /// `until_ms`; [`LEASE_UNKNOWN`] when that start is not known (restored
        /// after a restart) or too long ago. Not persisted; it only feeds the
        /// processing times (`lease.rs`), and fits the enum's padding.
        lease_ms: u32,
    },
    /// Being moved to another queue (dead letter, redrive).
    Moving,
}

/// `lease_ms` of a reservation whose start is not known.
pub(super) const LEASE_UNKNOWN: u32 = u32::MAX;

/// The `lease_ms` of a reservation that started at `since_ms` and ends at
/// `until_ms` (`since_ms` `None`: unknown).
fn lease_since(since_ms: Option<u64>, until_ms: u64) -> u32 {
    since_ms
        .and_then(|since| u32::try_from(until_ms.checked_sub(since)?).ok())
        .filter(|&ms| ms != LEASE_UNKNOWN)
        .unwrap_or(LEASE_UNKNOWN)
}

/// What is known of one message in memory (`index.rs` keeps most of them implied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Msg {
    pub(super) order_key: u64,
    pub(super) state: State,
    pub(super) reserved_count: u32,
    pub(super) pushed_at_ms: u64,
    pub(super) expires_at_ms: u64,
    /// The reservation that most recently ran out, so that a late delete/touch/
    /// release with it is told RESERVATION_EXPIRED rather than RESERVATION_MISMATCH.
    /// Not persisted: after a restart such a request gets RESERVATION_MISMATCH.
    pub(super) expired_reservation_id: u64,
    /// Push queues: the subscriber slots it was delivered to (`push.rs`).
    pub(super) push_done: u64,
    /// The group holding the message, and its slot there.
    pub(super) batch: u64,
    pub(super) slot: u32,
    /// Its dispatch key's id in the index (`fair.rs`); `UNKEYED` for none.
    pub(super) key: u32,
}

impl Msg {
    fn state_record(&self) -> StateRecord {
        let (reservation_id, reserved_until_ms, available_at_ms) = match self.state {
            State::Available | State::Moving => (0, 0, 0),
            State::Delayed { until_ms } => (0, 0, until_ms),
            State::Reserved {
                reservation_id,
                until_ms,
                ..
            } => (reservation_id, until_ms, 0),
        };
        StateRecord {
            order_key: self.order_key,
            reserved_count: self.reserved_count,
            reservation_id,
            reserved_until_ms,
            available_at_ms,
            push_done: self.push_done,
        }
    }

    /// The slot's state for its group's state record.
    fn slot(&self, id: u64) -> Slot {
        let state = self.state_record();
        // The pushed priority is in the batch record: a push key of any band is
        // the default.
        let default = is_push_key(state.order_key, id)
            && state.reserved_count == 0
            && state.reservation_id == 0
            && state.available_at_ms == 0
            && state.push_done == 0;
        if default {
            Slot::Default
        } else {
            Slot::Changed(state)
        }
    }
}

/// A message entering the queue ([`QueueState::enter`]).
struct Entering {
    id: u64,
    record: MessageRecord,
    body: Bytes,
    priority: u8,
    key: Option<Arc<str>>,
    state: State,
    reserved_count: u32,
}

/// A timed event. The variant order is the order of events due at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// The lease of this message ends.
    Lease(u64),
    /// The delay of this message ends.
    Delay(u64),
    /// Messages of this group expire.
    Expire(u64),
    /// This long-poll waiter gives up.
    Waiter(WaiterId),
}

/// What recovery rebuilds a queue from (`recovery.rs`).
pub(super) struct Restored {
    /// The messages.
    pub(super) index: MessageIndex,
    pub(super) timers: Vec<(u64, Timer)>,
    pub(super) groups: IdMap<Group>,
    /// Groups whose state record must be rewritten.
    pub(super) dirty: BTreeSet<u64>,
    /// The deepest requeue among the messages (`order::requeue_depth`).
    pub(super) requeues: u64,
    /// Messages with a stored delivery history.
    pub(super) histories: HashSet<u64, BuildHasherDefault<IdHasher>>,
    /// Stored histories of messages that are gone, to remove.
    pub(super) stale_histories: Vec<u64>,
    /// Hand-off follow-ups, with the message each replaces (`hand_off.rs`).
    pub(super) origins: Vec<(u64, Origin)>,
    pub(super) reserved: usize,
    pub(super) delayed: usize,
}

/// One queue's state; see the module docs.
#[derive(Debug)]
pub struct QueueState {
    meta: QueueMeta,
    /// Every message, and the order of the available ones.
    index: MessageIndex,
    timers: DeadlineIndex<Timer>,
    waiters: Waiters,
    staging: Staging,
    /// Requeues so far (at least the deepest one held): the next one goes in
    /// front of them, in its priority's band.
    requeues: u64,
    reserved: usize,
    delayed: usize,
    events: Vec<Event>,
    /// Settings or attachment changed: write the queue record at the next write.
    meta_dirty: bool,
    /// total_pushed or the processing times changed since the record was last
    /// written (written at most once a second, and when the queue stops).
    record_changed: bool,
    record_written_ms: u64,
    /// Most long polls parked at once; one more is refused (a server limit, set
    /// by the actor from the configuration: an input like any other).
    max_waiters: usize,
    counters: Counters,
    /// Open reservations whose consumer is named or that were touched
    /// (`history.rs`); nothing for the others.
    open: IdMap<Open>,
    /// Messages with a delivery history record (written or about to be).
    histories: HashSet<u64, BuildHasherDefault<IdHasher>>,
    /// Delivery-history changes not yet written, one per message.
    history_writes: BTreeMap<u64, HistoryUpdate>,
    /// Messages held for a hand-off (`hand_off.rs`): still RESERVED (so counted,
    /// stored and capped as such), without a lease timer, invisible.
    handing_off: HashSet<u64, BuildHasherDefault<IdHasher>>,
    /// Hand-off follow-ups staged here and not yet released, by the message they
    /// replace: (id, end of its push delay).
    staged: HashMap<Origin, Vec<(u64, u64)>>,
    /// Recovery: follow-ups (id, origin) still to check ([`resolve_hand_offs`]).
    origins: Vec<(u64, Origin)>,
}

impl QueueState {
    /// An empty queue.
    pub fn new(meta: QueueMeta) -> Self {
        let mut index = MessageIndex::default();
        index.set_key_cap(meta.settings.key_max_in_flight);
        QueueState {
            meta,
            index,
            timers: DeadlineIndex::default(),
            waiters: Waiters::default(),
            staging: Staging::default(),
            requeues: 0,
            reserved: 0,
            delayed: 0,
            events: Vec::new(),
            meta_dirty: false,
            record_changed: false,
            record_written_ms: 0,
            max_waiters: usize::MAX,
            counters: Counters::default(),
            open: IdMap::default(),
            histories: HashSet::default(),
            history_writes: BTreeMap::new(),
            handing_off: HashSet::default(),
            staged: HashMap::new(),
            origins: Vec::new(),
        }
    }

    /// Caps the long polls parked at once; a reserve that would park one more is
    /// refused with `ResourceExhausted`.
    pub fn set_max_waiters(&mut self, max: usize) {
        self.max_waiters = max;
    }

    /// A queue rebuilt by recovery.
    pub(super) fn restore(meta: QueueMeta, restored: Restored) -> Self {
        let Restored {
            index,
            timers,
            groups,
            dirty,
            requeues,
            reserved,
            delayed,
            histories,
            stale_histories,
            origins,
        } = restored;
        let mut index = index;
        index.set_key_cap(meta.settings.key_max_in_flight);
        QueueState {
            histories,
            history_writes: stale_histories
                .into_iter()
                .map(|id| (id, HistoryUpdate::Remove))
                .collect(),
            index,
            timers: DeadlineIndex::from_entries(timers),
            staging: Staging::restore(groups, dirty),
            requeues,
            reserved,
            delayed,
            origins,
            ..QueueState::new(meta)
        }
    }

    /// The queue's persisted description.
    pub fn meta(&self) -> &QueueMeta {
        &self.meta
    }

    /// The queue's settings.
    pub fn settings(&self) -> &QueueSettings {
        &self.meta.settings
    }

    /// The earliest deadline to arm a timer for.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.next()
    }

    /// What happened for others since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Fires every timed event due at `now`: leases end (the message goes back to
    /// the front), delays end, messages expire, long polls time out.
    pub fn advance(&mut self, now: u64) {
        while let Some((_, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Lease(id) => self.requeue_expired(id),
                Timer::Delay(id) => {
                    if let Some(State::Delayed { .. }) = self.index.get(id).map(|m| m.state) {
                        self.detach(id);
                        self.attach(id, State::Available);
                    }
                }
                Timer::Expire(key) => self.expire_group(key, now),
                Timer::Waiter(waiter) => {
                    if self.waiters.remove(waiter).is_some() {
                        self.events.push(Event::WaitEnded(waiter));
                    }
                }
            }
        }
    }

    /// Pushes messages (already validated); returns their ids.
    ///
    /// # Errors
    /// If no ids can be allocated.
    pub fn push(
        &mut self,
        now: u64,
        env: &mut dyn Env,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>, QueueError> {
        let count = u64::try_from(messages.len()).unwrap_or(u64::MAX);
        let first = env.allocate_ids(count)?;
        let expires_at_ms = now.saturating_add(self.settings().expiration_ms());
        let mut ids = Vec::with_capacity(messages.len());
        for (id, message) in (first..).zip(messages) {
            self.add_new(now, id, message, expires_at_ms, false)?;
            self.count_pushed();
            ids.push(id);
        }
        Ok(ids)
    }

    /// Stages new message `id` in the open group and adds it to the queue, in
    /// the state its push delay gives it, or MOVING (`moving`: a hand-off's
    /// follow-up, `hand_off.rs`). Returns the end of its push delay (0: none).
    ///
    /// # Errors
    /// Whatever staging fails with (it allocates no id: the group takes `id`'s).
    fn add_new(
        &mut self,
        now: u64,
        id: u64,
        message: NewMessage,
        expires_at_ms: u64,
        moving: bool,
    ) -> Result<u64, QueueError> {
        let available_at_ms = if message.delay_ms > 0 {
            now.saturating_add(message.delay_ms)
        } else {
            0
        };
        let state = if moving {
            State::Moving
        } else {
            delayed_or_available(available_at_ms, now)
        };
        self.enter(
            Entering {
                id,
                record: MessageRecord {
                    pushed_at_ms: now,
                    available_at_ms,
                    expires_at_ms,
                },
                body: message.body,
                priority: message.priority,
                key: message.key,
                state,
                reserved_count: 0,
            },
            || Ok(id),
        )?;
        Ok(available_at_ms)
    }

    /// Stages a message entering the queue (a push, an adoption, a hand-off's
    /// follow-up) in the open group (`new_key` names a group it opens), and
    /// adds it to the index in its first state, its expiry armed.
    ///
    /// # Errors
    /// Whatever `new_key` fails with.
    fn enter(
        &mut self,
        m: Entering,
        new_key: impl FnOnce() -> Result<u64, QueueError>,
    ) -> Result<(), QueueError> {
        let expires_at_ms = m.record.expires_at_ms;
        let (batch, slot) =
            self.staging
                .stage(m.id, m.record, m.body, (m.key.clone(), m.priority), new_key)?;
        let key = m.key.as_ref().map_or(UNKEYED, |k| self.index.intern_key(k));
        self.arm_expiry(batch, expires_at_ms);
        self.insert(
            m.id,
            Msg {
                key,
                order_key: push_key(m.priority, m.id),
                state: m.state,
                reserved_count: m.reserved_count,
                pushed_at_ms: m.record.pushed_at_ms,
                expires_at_ms,
                expired_reservation_id: 0,
                push_done: 0,
                batch,
                slot,
            },
        );
        Ok(())
    }

    /// Reserves (or with `delete`, removes) up to `n` available messages in order,
    /// after serving older parked reserves. If none is available and `wait_ms > 0`,
    /// the reserve is parked until a message comes or the wait ends.
    ///
    /// # Errors
    /// If no ids can be allocated or no body read.
    pub fn reserve(
        &mut self,
        now: u64,
        env: &mut dyn Env,
        ask: Ask,
        wait_ms: u64,
    ) -> Result<Reserved, QueueError> {
        self.serve_waiters(now, env);
        let messages = self.take_available(now, env, &ask)?;
        if messages.is_empty() && wait_ms > 0 {
            if self.waiters.len() >= self.max_waiters {
                return Err(QueueError::ResourceExhausted(format!(
                    "queue {} has {} long polls waiting, its limit (--max-waiters); \
                     retry later or reserve without wait",
                    self.meta.name, self.max_waiters
                )));
            }
            let deadline_ms = now.saturating_add(wait_ms);
            let waiter = self.waiters.park(Waiter { ask, deadline_ms });
            self.timers.insert(deadline_ms, Timer::Waiter(waiter));
            return Ok(Reserved::Parked(waiter));
        }
        Ok(Reserved::Now(messages))
    }

    /// Serves parked reserves, oldest first, while messages are available. A
    /// waiter that gets nothing (every available message was dead-lettered) stays
    /// parked.
    pub fn serve_waiters(&mut self, now: u64, env: &mut dyn Env) {
        // Available is not enough: a capped key's messages cannot be reserved.
        while !self.waiters.is_empty() && self.index.next_to_reserve().is_some() {
            let Some((waiter, parked)) = self.waiters.pop_oldest() else {
                return;
            };
            if !env.is_waiting(waiter) {
                // The client went away: its wait is over (nothing to answer, but
                // the driver forgets its reply channel).
                self.timers
                    .remove(parked.deadline_ms, Timer::Waiter(waiter));
                self.events.push(Event::WaitEnded(waiter));
                continue;
            }
            match self.take_available(now, env, &parked.ask) {
                Ok(messages) if messages.is_empty() => {
                    self.waiters.put_back(waiter, parked);
                    return;
                }
                result => {
                    self.timers
                        .remove(parked.deadline_ms, Timer::Waiter(waiter));
                    self.events.push(Event::Woken {
                        waiter,
                        delete: parked.ask.delete,
                        result,
                    });
                }
            }
        }
    }

    /// The parked reserves, removed (the queue stops).
    pub fn drain_waiters(&mut self) -> Vec<WaiterId> {
        self.waiters.drain().collect()
    }

    /// Deletes messages, all or nothing; returns how many.
    ///
    /// # Errors
    /// The first failing entry's: `MessageNotFound`, `ReservationExpired`,
    /// `ReservationMismatch`, or `InvalidArgument` for an id given twice.
    pub fn delete(
        &mut self,
        now: u64,
        entries: &[(u64, Option<u64>)],
    ) -> Result<usize, QueueError> {
        let mut seen = BTreeSet::new();
        for &(id, reservation_id) in entries {
            if !seen.insert(id) {
                return Err(QueueError::invalid(format!(
                    "message id {id} appears twice in one delete"
                )));
            }
            self.check_reservation(id, reservation_id, now)?;
        }
        for &(id, reservation_id) in entries {
            if reservation_id.is_some() {
                self.record_processing(id, now);
            }
            self.remove(id);
        }
        self.counters.deleted += u64::try_from(entries.len()).unwrap_or(u64::MAX);
        Ok(entries.len())
    }

    /// The lease a reserve or touch gets for `timeout_ms`: the queue's
    /// `message_timeout` for `None`, the advice of its processing times for
    /// [`AUTO_TIMEOUT_MS`] (the default until there are enough samples).
    fn lease_ms(&self, timeout_ms: Option<u64>) -> u64 {
        let default = self.settings().message_timeout_ms;
        match timeout_ms {
            None => default,
            Some(AUTO_TIMEOUT_MS) => self
                .meta
                .processing
                .as_ref()
                .and_then(|p| p.advised_lease_ms(MAX_TIMEOUT_MS))
                .unwrap_or(default),
            Some(ms) => ms,
        }
    }

    /// Reserved message `id` is finished by its consumer at `now`: a processing
    /// time (`lease.rs`), if its reservation's start is known.
    fn record_processing(&mut self, id: u64, now: u64) {
        if let Some(since_ms) = self.reserved_since(id) {
            self.meta
                .processing
                .get_or_insert_with(Box::default)
                .record(now.saturating_sub(since_ms));
            self.record_changed = true;
        }
    }

    /// When the reservation of message `id` started, if it is reserved and that
    /// is known.
    fn reserved_since(&self, id: u64) -> Option<u64> {
        match self.index.get(id)?.state {
            State::Reserved {
                until_ms, lease_ms, ..
            } if lease_ms != LEASE_UNKNOWN => until_ms.checked_sub(u64::from(lease_ms)),
            _ => None,
        }
    }

    /// Extends a reservation under a new reservation id, `timeout_ms` (or the
    /// queue's default) from now.
    ///
    /// # Errors
    /// As [`QueueState::delete`], or if no id can be allocated.
    pub fn touch(
        &mut self,
        now: u64,
        env: &mut dyn Env,
        id: u64,
        reservation_id: u64,
        timeout_ms: Option<u64>,
    ) -> Result<Lease, QueueError> {
        self.check_reservation(id, Some(reservation_id), now)?;
        let new_reservation = env.allocate_ids(1)?;
        let until_ms = now.saturating_add(self.lease_ms(timeout_ms));
        let since_ms = self.reserved_since(id);
        if self.meta.settings.delivery_history > 0 {
            let open = self.open.entry(id).or_default();
            open.touches = open.touches.saturating_add(1);
        }
        self.detach(id);
        self.attach(
            id,
            State::Reserved {
                reservation_id: new_reservation,
                until_ms,
                lease_ms: lease_since(since_ms, until_ms),
            },
        );
        self.persist_state(id);
        Ok(Lease {
            reservation_id: new_reservation,
            reserved_until_ms: until_ms,
        })
    }

    /// Gives a reserved message back to the front of the queue, after `delay_ms`.
    ///
    /// # Errors
    /// As [`QueueState::delete`].
    pub fn release(
        &mut self,
        now: u64,
        id: u64,
        reservation_id: u64,
        delay_ms: u64,
    ) -> Result<(), QueueError> {
        self.check_reservation(id, Some(reservation_id), now)?;
        self.end_attempt(id, now, Outcome::Released);
        self.give_back(now, id, delay_ms);
        self.counters.released += 1;
        Ok(())
    }

    /// Push queues: records that the subscribers of the slots in `done` have
    /// message `id`, then ends the delivery round under reservation
    /// `reservation_id` as `then` says.
    ///
    /// # Errors
    /// As [`QueueState::delete`].
    pub fn settle(
        &mut self,
        now: u64,
        id: u64,
        reservation_id: u64,
        done: u64,
        then: Settle,
    ) -> Result<(), QueueError> {
        self.check_reservation(id, Some(reservation_id), now)?;
        self.modify(id, |msg| msg.push_done |= done);
        match then {
            Settle::Retry { delay_ms } => self.give_back(now, id, delay_ms),
            Settle::Hold { for_ms } => {
                let since_ms = self.reserved_since(id);
                let until_ms = now.saturating_add(for_ms);
                self.detach(id);
                self.attach(
                    id,
                    State::Reserved {
                        reservation_id,
                        until_ms,
                        lease_ms: lease_since(since_ms, until_ms),
                    },
                );
                self.persist_state(id);
            }
        }
        Ok(())
    }

    /// Push queues: the subscribers of the slots in `done` acknowledged message
    /// `id` (delivered with reservation `reservation_id`, answered 202). Once every
    /// slot of `required` is done the message is deleted: returns whether it was.
    ///
    /// # Errors
    /// As [`QueueState::delete`].
    pub fn acknowledge(
        &mut self,
        now: u64,
        id: u64,
        reservation_id: u64,
        done: u64,
        required: u64,
    ) -> Result<bool, QueueError> {
        self.check_reservation(id, Some(reservation_id), now)?;
        let mut complete = false;
        self.modify(id, |msg| {
            msg.push_done |= done;
            complete = msg.push_done & required == required;
        });
        if complete {
            self.remove(id);
            self.counters.deleted += 1;
        } else {
            self.persist_state(id);
        }
        Ok(complete)
    }

    /// A reserved message back to the front, available after `delay_ms`.
    fn give_back(&mut self, now: u64, id: u64, delay_ms: u64) {
        if !self.open.is_empty() {
            self.open.remove(&id);
        }
        self.detach(id);
        self.move_to_front(id);
        let state = if delay_ms > 0 {
            State::Delayed {
                until_ms: now.saturating_add(delay_ms),
            }
        } else {
            State::Available
        };
        self.attach(id, state);
        self.persist_state(id);
    }

    /// Up to `n` available messages in order, unchanged.
    ///
    /// # Errors
    /// If a body cannot be read.
    pub fn peek(
        &mut self,
        now: u64,
        env: &mut dyn Env,
        n: usize,
    ) -> Result<Vec<MessageView>, QueueError> {
        let mut ids = Vec::with_capacity(n.min(self.index.available_len()));
        let mut expired = Vec::new();
        for (_, id) in self.index.available() {
            if ids.len() >= n {
                break;
            }
            if self.expired(id, now) {
                expired.push(id);
            } else {
                ids.push(id);
            }
        }
        for id in expired {
            self.remove_expired(id);
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let (Some(body), Some(info)) = (self.body(env, id)?, self.info(id)) {
                let mut view = MessageView::new(info, body);
                view.key = self.key_of(id);
                out.push(view);
            }
        }
        Ok(out)
    }

    /// One message by id, in any state.
    ///
    /// # Errors
    /// `MessageNotFound`, or if its body cannot be read.
    pub fn get(&mut self, now: u64, env: &mut dyn Env, id: u64) -> Result<MessageView, QueueError> {
        if self.expired(id, now) {
            self.remove_expired(id);
            return Err(QueueError::MessageNotFound(id));
        }
        let info = self.info(id).ok_or(QueueError::MessageNotFound(id))?;
        let body = self.body(env, id)?.ok_or(QueueError::MessageNotFound(id))?;
        let mut view = MessageView::new(info, body);
        view.key = self.key_of(id);
        view.history = self.history_of(env, id)?;
        if let Some(open) = self.open_attempt(id, now) {
            view.history.push(open);
        }
        Ok(view)
    }

    /// The delivery history of message `id`: stored, plus what is not written yet.
    ///
    /// # Errors
    /// If the log cannot be read.
    fn history_of(&self, env: &mut dyn Env, id: u64) -> Result<Vec<Attempt>, QueueError> {
        if !self.histories.contains(&id) {
            return Ok(Vec::new());
        }
        let pending = self.history_writes.get(&id);
        let stored = match pending {
            Some(HistoryUpdate::Remove) => return Ok(Vec::new()),
            Some(HistoryUpdate::Replace(value)) => Some(value.clone()),
            Some(HistoryUpdate::Append { .. }) | None => env.read_history(id)?,
        };
        let value = match pending {
            Some(update @ HistoryUpdate::Append { .. }) => update.apply(stored.as_deref()),
            _ => stored,
        };
        let attempts = value.as_deref().and_then(history::decode);
        if value.is_some() && attempts.is_none() {
            tracing::warn!(queue = %self.meta.name, id, "a stored delivery history does not read");
        }
        Ok(attempts.unwrap_or_default())
    }

    /// The attempt under way on message `id`, as `get` shows it.
    fn open_attempt(&self, id: u64, now: u64) -> Option<Attempt> {
        let msg = self.index.get(id)?;
        let State::Reserved { reservation_id, .. } = msg.state else {
            return None;
        };
        let open = self.open.get(&id);
        Some(Attempt {
            reservation_id,
            consumer: open
                .and_then(|o| o.consumer.clone())
                .unwrap_or_else(|| Arc::from("")),
            reserved_at_ms: self.reserved_since(id).unwrap_or(0),
            ended_at_ms: now,
            touches: open.map_or(0, |o| o.touches),
            outcome: Outcome::InProgress,
        })
        .filter(|_| self.meta.settings.delivery_history > 0)
    }

    /// The reservation of message `id` ends with `outcome` at `ended_at_ms`, the
    /// message staying in the queue: the attempt goes into its history.
    fn end_attempt(&mut self, id: u64, ended_at_ms: u64, outcome: Outcome) {
        let open = if self.open.is_empty() {
            None
        } else {
            self.open.remove(&id)
        };
        let keep = self.meta.settings.delivery_history;
        // Push queues report their deliveries as push statuses instead.
        if keep == 0 || self.meta.settings.push.is_some() {
            return;
        }
        let Some(State::Reserved { reservation_id, .. }) = self.index.get(id).map(|m| m.state)
        else {
            return;
        };
        let open = open.unwrap_or_default();
        let attempt = Attempt {
            reservation_id,
            consumer: open.consumer.unwrap_or_else(|| Arc::from("")),
            reserved_at_ms: self.reserved_since(id).unwrap_or(0),
            ended_at_ms,
            touches: open.touches,
            outcome,
        };
        self.histories.insert(id);
        self.update_history(
            id,
            HistoryUpdate::Append {
                attempts: vec![attempt],
                keep,
            },
        );
    }

    /// What the delivery histories hold in memory: open attempts kept, and
    /// messages marked as having a stored history.
    #[cfg(test)]
    pub(super) fn history_footprint(&self) -> (usize, usize) {
        (self.open.len(), self.histories.len())
    }

    /// Adds `update` to the history changes of message `id` waiting to be written.
    fn update_history(&mut self, id: u64, update: HistoryUpdate) {
        let merged = match (self.history_writes.remove(&id), update) {
            (
                Some(HistoryUpdate::Append { mut attempts, .. }),
                HistoryUpdate::Append {
                    attempts: more,
                    keep,
                },
            ) => {
                attempts.extend(more);
                HistoryUpdate::Append { attempts, keep }
            }
            (Some(HistoryUpdate::Replace(value)), append @ HistoryUpdate::Append { .. }) => {
                HistoryUpdate::Replace(append.apply(Some(&value)).unwrap_or_default())
            }
            (Some(HistoryUpdate::Remove), append @ HistoryUpdate::Append { .. }) => {
                HistoryUpdate::Replace(append.apply(None).unwrap_or_default())
            }
            (_, update) => update,
        };
        self.history_writes.insert(id, merged);
    }

    /// The history a message takes along when it moves: its own, and for a dead
    /// letter the attempt that found it over the limit.
    fn history_to_move(
        &self,
        env: &mut dyn Env,
        id: u64,
        dead_letter: Option<(u64, &Ask)>,
    ) -> Vec<Attempt> {
        let keep = self.meta.settings.delivery_history;
        if keep == 0 {
            return Vec::new();
        }
        let mut attempts = self.history_of(env, id).unwrap_or_else(|err| {
            tracing::warn!(queue = %self.meta.name, id, cause = %err, "a delivery history cannot be read; the message moves without it");
            Vec::new()
        });
        if let Some((now, ask)) = dead_letter {
            attempts.push(Attempt {
                reservation_id: 0,
                consumer: ask.consumer.clone().unwrap_or_else(|| Arc::from("")),
                reserved_at_ms: now,
                ended_at_ms: now,
                touches: 0,
                outcome: Outcome::DeadLettered,
            });
        }
        let start = attempts
            .len()
            .saturating_sub(usize::try_from(keep).unwrap_or(usize::MAX));
        attempts.split_off(start)
    }

    /// AVAILABLE, RESERVED and DELAYED messages.
    pub fn counts(&self) -> (u64, u64, u64) {
        let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        (
            as_u64(self.index.available_len()),
            as_u64(self.reserved),
            as_u64(self.delayed),
        )
    }

    /// What happened to the queue's messages so far ([`Counters`]).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// When the message at the head of the queue (the next one a reserve gets)
    /// was pushed; `None` when nothing is available. Its age is the metrics'
    /// "oldest message age".
    pub fn head_pushed_at_ms(&self) -> Option<u64> {
        let (_, id) = self.index.first_available()?;
        self.index.get(id).map(|msg| msg.pushed_at_ms)
    }

    /// Messages held: available, reserved and delayed.
    pub fn message_count(&self) -> usize {
        self.index.len()
    }

    /// The queue's counters and settings.
    pub fn stats(&self) -> QueueStats {
        let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        QueueStats {
            name: self.meta.name.to_string(),
            size: as_u64(self.index.len()),
            available: as_u64(self.index.available_len()),
            reserved: as_u64(self.reserved),
            delayed: as_u64(self.delayed),
            total_pushed: self.meta.total_pushed,
            settings: self.meta.settings.clone(),
            created_at_ms: self.meta.created_at_ms,
            waiting: as_u64(self.waiters.len()),
            bytes: self.bytes(),
            attachment: self.meta.attachment.clone(),
            processing: self
                .meta
                .processing
                .as_ref()
                .and_then(|p| p.summary(MAX_TIMEOUT_MS)),
            keys: as_u64(self.index.key_count()),
        }
    }

    /// The bytes of the bodies this queue's batch records hold: every body of a
    /// group that still has a message in the queue (a group is freed with its last
    /// message, when that turn's writes are taken). The byte limits count this:
    /// it is what the queue keeps on disk, and at least its live bodies' bytes.
    pub fn bytes(&self) -> u64 {
        self.staging.bytes()
    }

    /// Replaces the settings (checked by [`super::types::SettingsPatch::apply`]; a new
    /// expiration applies to messages pushed afterwards).
    pub fn set_settings(&mut self, settings: QueueSettings) {
        self.index.set_key_cap(settings.key_max_in_flight);
        self.meta.settings = settings;
        self.meta_dirty = true;
    }

    /// Replaces the front end's blob.
    pub fn set_attachment(&mut self, attachment: Bytes) {
        self.meta.attachment = attachment;
        self.meta_dirty = true;
    }

    /// Removes every message (parked reserves stay); returns how many.
    pub fn clear(&mut self) -> usize {
        let count = self.index.len();
        self.staging.clear();
        self.index.clear();
        // The log's clear removes the stored histories too.
        self.open.clear();
        self.histories.clear();
        self.history_writes.clear();
        self.handing_off.clear();
        self.staged.clear();
        self.timers
            .retain(|timer| matches!(timer, Timer::Waiter(_)));
        self.reserved = 0;
        self.delayed = 0;
        count
    }

    /// Starts moving up to `n` available messages to `to`, with reserved_count 0:
    /// they are MOVING until [`QueueState::transfer_done`].
    ///
    /// # Errors
    /// `InvalidArgument` for a redrive into this queue; a body read failure (then
    /// nothing moves).
    pub fn redrive(
        &mut self,
        env: &mut dyn Env,
        to: &QueueName,
        n: usize,
    ) -> Result<Vec<Transfer>, QueueError> {
        // Not just validation: moving into itself would adopt nothing (the ids are
        // already here) and then remove the messages as "moved".
        if *to == self.meta.name {
            return Err(QueueError::invalid("cannot redrive a queue into itself"));
        }
        let candidates: Vec<u64> = self.index.available().take(n).map(|(_, id)| id).collect();
        let mut moving = Vec::with_capacity(candidates.len());
        for id in candidates {
            match self.body(env, id) {
                Ok(Some(body)) => {
                    // A push queue's stored body may carry the message's push
                    // headers; the message leaves with its body only.
                    let body = if self.meta.settings.push.is_some() {
                        unwrap_body(&body).1
                    } else {
                        body
                    };
                    self.detach(id);
                    self.attach(id, State::Moving);
                    let priority = self
                        .index
                        .get(id)
                        .map_or(DEFAULT_PRIORITY, |m| priority_of(m.order_key));
                    let history = self.history_to_move(env, id, None);
                    let key = self.key_of(id);
                    moving.push(Transfer {
                        id,
                        body,
                        reserved_count: 0,
                        priority,
                        history,
                        key,
                    });
                }
                Ok(None) => {}
                Err(err) => {
                    let ids: Vec<u64> = moving.iter().map(|m| m.id).collect();
                    self.transfer_done(&ids, false);
                    return Err(err);
                }
            }
        }
        Ok(moving)
    }

    /// Finishes a move: removes the moved messages, or makes them available again
    /// at their old place.
    pub fn transfer_done(&mut self, ids: &[u64], moved: bool) {
        for &id in ids {
            if self.index.get(id).map(|m| m.state) != Some(State::Moving) {
                continue; // deleted, expired or cleared meanwhile
            }
            if moved {
                self.remove(id);
            } else {
                self.attach(id, State::Available);
            }
        }
    }

    /// Takes in messages moved from another queue, keeping their ids, bodies and
    /// reserved_count; their expiration restarts from this queue's setting. An id
    /// already here (a repeated move) is skipped. Returns how many were taken.
    ///
    /// # Errors
    /// If no group key can be allocated.
    pub fn adopt(
        &mut self,
        now: u64,
        env: &mut dyn Env,
        messages: Vec<Transfer>,
    ) -> Result<usize, QueueError> {
        let expires_at_ms = now.saturating_add(self.settings().expiration_ms());
        let mut count = 0;
        for message in messages {
            if self.index.contains(message.id) {
                continue;
            }
            self.enter(
                Entering {
                    id: message.id,
                    record: MessageRecord {
                        pushed_at_ms: now,
                        available_at_ms: 0,
                        expires_at_ms,
                    },
                    body: message.body,
                    priority: message.priority,
                    key: message.key,
                    state: State::Available,
                    reserved_count: message.reserved_count,
                },
                || env.allocate_ids(1),
            )?;
            if message.reserved_count > 0 {
                self.persist_state(message.id);
            }
            let keep = self.meta.settings.delivery_history;
            if keep > 0 && !message.history.is_empty() {
                self.histories.insert(message.id);
                self.update_history(
                    message.id,
                    HistoryUpdate::Replace(history::encode(history::newest(
                        &message.history,
                        keep,
                    ))),
                );
            }
            self.count_pushed();
            count += 1;
        }
        Ok(count)
    }

    /// Whether [`QueueState::take_writes`] has records to write now (a throttled
    /// `total_pushed` alone does not count).
    pub fn has_unwritten(&self) -> bool {
        self.meta_dirty || self.staging.has_unwritten() || !self.history_writes.is_empty()
    }

    /// The records to write for everything that changed since the last call. With
    /// `finally` (the queue stops) the queue record is written if anything in it
    /// changed; otherwise a change of `total_pushed` alone is written at most once
    /// a second, so after a crash `total_pushed` can undercount.
    pub fn take_writes(&mut self, now: u64, finally: bool) -> Writes {
        let mut forgotten = Vec::new();
        let index = &self.index;
        let log = self.staging.take_writes(
            |key, slot, id| {
                index
                    .get(id)
                    .filter(|m| m.batch == key && m.slot == slot)
                    .map_or(Slot::Gone, |m| m.slot(id))
            },
            &mut forgotten,
        );
        for (key, expiry) in forgotten {
            if let Some(expiry) = expiry {
                self.timers.remove(expiry, Timer::Expire(key));
            }
        }
        let mut log = log;
        log.extend(
            std::mem::take(&mut self.history_writes)
                .into_iter()
                .map(|(id, update)| LogWrite::History { id, update }),
        );
        let record = self.meta_dirty
            || (self.record_changed
                && (finally || now.saturating_sub(self.record_written_ms) >= RECORD_EVERY_MS));
        if record {
            self.meta_dirty = false;
            self.record_changed = false;
            self.record_written_ms = now;
        }
        Writes { log, record }
    }

    /// The batch record of group `key` could not be written: its messages leave the
    /// queue again (their pushes fail).
    pub fn batch_lost(&mut self, key: u64) {
        let Some(group) = self.staging.lost(key) else {
            return;
        };
        if let Some(expiry) = group.expiry_ms {
            self.timers.remove(expiry, Timer::Expire(key));
        }
        for id in group.ids.iter() {
            if self.index.get(id).is_some_and(|m| m.batch == key) {
                self.remove(id);
            }
        }
    }

    // ----- internals -------------------------------------------------------------

    /// Reserves (or with `delete`, removes) up to `n` available messages in order.
    /// A message that has reached the dead-letter limit is moved to the dead-letter
    /// queue instead, and the scan goes on.
    fn take_available(
        &mut self,
        now: u64,
        env: &mut dyn Env,
        ask: &Ask,
    ) -> Result<Vec<MessageView>, QueueError> {
        let (n, delete) = (ask.n, ask.delete);
        if self.index.available_len() == 0 {
            return Ok(Vec::new());
        }
        let until_ms = now.saturating_add(self.lease_ms(ask.timeout_ms));
        let dead_letter = self.settings().dead_letter.clone();
        let most = n.min(self.index.available_len());
        // One id allocation for the whole reserve (ids skipped by dead-lettering are
        // simply never used).
        let mut reservation_ids = if delete {
            0..0
        } else {
            let most = u64::try_from(most).unwrap_or(u64::MAX);
            let first = env.allocate_ids(most)?;
            first..first.saturating_add(most)
        };
        let mut out = Vec::with_capacity(most);
        let mut dead = Vec::new();
        let mut result = Ok(());
        while out.len() < n {
            let Some((_, id)) = self.index.next_to_reserve() else {
                break;
            };
            // One lookup for both the expiry check and the dead-letter count.
            let Some((expires_at_ms, reserved_count, order_key)) = self
                .index
                .get(id)
                .map(|m| (m.expires_at_ms, m.reserved_count, m.order_key))
            else {
                break; // the index hands out only messages it holds
            };
            if expires_at_ms <= now {
                self.remove_expired(id);
                continue;
            }
            let body = match self.body(env, id) {
                Ok(Some(body)) => body,
                Ok(None) => {
                    tracing::error!(queue = %self.meta.name, id, "message body missing; dropping the message");
                    self.remove(id);
                    continue;
                }
                Err(err) => {
                    result = Err(err);
                    break;
                }
            };
            if let Some(limit) = &dead_letter {
                if reserved_count >= limit.max_reservations {
                    self.detach(id);
                    self.attach(id, State::Moving);
                    let history = self.history_to_move(env, id, Some((now, ask)));
                    let key = self.key_of(id);
                    dead.push(Transfer {
                        id,
                        body,
                        reserved_count,
                        priority: priority_of(order_key),
                        history,
                        key,
                    });
                    continue;
                }
            }
            // Each reserve consumes one available message, so there is an id for it.
            let reservation_id = reservation_ids.next().unwrap_or(0);
            self.index.served(id);
            out.extend(self.reserve_one(id, body, reservation_id, (now, until_ms), delete));
            if !delete && self.meta.settings.delivery_history > 0 {
                if let Some(consumer) = &ask.consumer {
                    self.open.insert(
                        id,
                        Open {
                            consumer: Some(Arc::clone(consumer)),
                            touches: 0,
                        },
                    );
                }
            }
        }
        if let Some(limit) = dead_letter.filter(|_| !dead.is_empty()) {
            self.counters.dead_lettered += u64::try_from(dead.len()).unwrap_or(u64::MAX);
            self.events.push(Event::DeadLetters {
                to: limit.queue,
                messages: dead,
            });
        }
        match result {
            Err(err) if out.is_empty() => Err(err),
            Err(err) => {
                tracing::error!(queue = %self.meta.name, cause = %err, "reserve stopped early");
                Ok(out)
            }
            Ok(()) => Ok(out),
        }
    }

    /// Reserves one available message whose body has been read, under
    /// `reservation_id` from `lease.0` to `lease.1`; with `delete` removes it
    /// instead.
    fn reserve_one(
        &mut self,
        id: u64,
        body: Bytes,
        reservation_id: u64,
        (now, until_ms): (u64, u64),
        delete: bool,
    ) -> Option<MessageView> {
        self.detach(id);
        let mut msg = self.index.get(id)?;
        let key = if msg.key == UNKEYED {
            None
        } else {
            self.index.key_name(msg.key)
        };
        msg.reserved_count = msg.reserved_count.saturating_add(1);
        msg.expired_reservation_id = 0;
        let mut info = MessageInfo {
            id,
            reserved_count: msg.reserved_count,
            reservation_id: 0,
            reserved_until_ms: 0,
            pushed_at_ms: msg.pushed_at_ms,
            available_at_ms: 0,
            expires_at_ms: msg.expires_at_ms,
            state: MessageState::Deleted,
            push_done: msg.push_done,
            priority: priority_of(msg.order_key),
        };
        self.counters.reserved += 1;
        if delete {
            self.remove(id);
            self.counters.deleted += 1;
        } else {
            info.reservation_id = reservation_id;
            info.reserved_until_ms = until_ms;
            info.state = MessageState::Reserved;
            msg.state = State::Reserved {
                reservation_id,
                until_ms,
                lease_ms: lease_since(Some(now), until_ms),
            };
            // One change of the index: a compact message becomes special here.
            self.index.update(id, msg);
            self.count_in(msg.state, id);
            self.persist_state(id);
        }
        let mut view = MessageView::new(info, body);
        view.key = key;
        Some(view)
    }

    /// The dispatch key of message `id`, if it has one.
    fn key_of(&self, id: u64) -> Option<Arc<str>> {
        let key = self.index.get(id)?.key;
        if key == UNKEYED {
            return None;
        }
        self.index.key_name(key)
    }

    /// Checks that `reservation_id` may act on message `id` now.
    fn check_reservation(
        &self,
        id: u64,
        reservation_id: Option<u64>,
        now: u64,
    ) -> Result<(), QueueError> {
        let msg = self
            .index
            .get(id)
            .filter(|m| m.state != State::Moving && !self.is_held(id))
            .ok_or(QueueError::MessageNotFound(id))?;
        match (msg.state, reservation_id) {
            (
                State::Reserved {
                    reservation_id: current,
                    until_ms,
                    ..
                },
                Some(given),
            ) if given == current => {
                if now >= until_ms {
                    Err(QueueError::ReservationExpired(id))
                } else {
                    Ok(())
                }
            }
            (State::Reserved { .. }, _) => Err(QueueError::ReservationMismatch(id)),
            // 0 is "none": never an expired reservation.
            (_, Some(given)) if given != 0 && given == msg.expired_reservation_id => {
                Err(QueueError::ReservationExpired(id))
            }
            (_, Some(_)) => Err(QueueError::ReservationMismatch(id)),
            (_, None) => Ok(()),
        }
    }

    /// The view of message `id` without its body; `None` if it is not visible.
    fn info(&self, id: u64) -> Option<MessageInfo> {
        let msg = self.index.get(id).filter(|_| !self.is_held(id))?;
        let (state, reserved_until_ms, available_at_ms) = match msg.state {
            State::Moving => return None,
            State::Available => (MessageState::Available, 0, 0),
            State::Delayed { until_ms } => (MessageState::Delayed, 0, until_ms),
            State::Reserved { until_ms, .. } => (MessageState::Reserved, until_ms, 0),
        };
        Some(MessageInfo {
            id,
            push_done: msg.push_done,
            reserved_count: msg.reserved_count,
            reservation_id: 0,
            reserved_until_ms,
            pushed_at_ms: msg.pushed_at_ms,
            available_at_ms,
            expires_at_ms: msg.expires_at_ms,
            state,
            priority: priority_of(msg.order_key),
        })
    }

    /// The body of message `id`: from a group not written yet, or through `env`.
    fn body(&self, env: &mut dyn Env, id: u64) -> Result<Option<Bytes>, QueueError> {
        let Some(msg) = self.index.get(id) else {
            return Ok(None);
        };
        match self.staging.unwritten_body(msg.batch, msg.slot) {
            Some(body) => Ok(body),
            None => env.read_body(msg.batch, msg.slot),
        }
    }

    /// Adds a message, counted and timed according to its state.
    fn insert(&mut self, id: u64, msg: Msg) {
        let state = msg.state;
        self.index.insert(id, msg);
        self.count_in(state, id);
    }

    /// Changes message `id` in the index.
    fn modify(&mut self, id: u64, change: impl FnOnce(&mut Msg)) {
        if let Some(mut msg) = self.index.get(id) {
            change(&mut msg);
            self.index.update(id, msg);
        }
    }

    /// Takes a message's state out of the counters and timers (the index still
    /// holds it in that state until [`QueueState::attach`] or
    /// [`QueueState::remove`]). The counters change here and in
    /// [`QueueState::count_in`] only.
    fn detach(&mut self, id: u64) {
        let Some(msg) = self.index.get(id) else {
            return;
        };
        match msg.state {
            State::Available | State::Moving => {}
            State::Delayed { until_ms } => {
                decrement(&mut self.delayed);
                self.timers.remove(until_ms, Timer::Delay(id));
            }
            State::Reserved { until_ms, .. } => {
                decrement(&mut self.reserved);
                self.timers.remove(until_ms, Timer::Lease(id));
            }
        }
    }

    /// Sets a detached message's state, in the index, the counters and the timers.
    fn attach(&mut self, id: u64, state: State) {
        let Some(mut msg) = self.index.get(id) else {
            return;
        };
        msg.state = state;
        self.index.update(id, msg);
        self.count_in(state, id);
    }

    /// Counts and times message `id` in `state`.
    fn count_in(&mut self, state: State, id: u64) {
        match state {
            State::Available | State::Moving => {}
            State::Delayed { until_ms } => {
                self.delayed += 1;
                self.timers.insert(until_ms, Timer::Delay(id));
            }
            State::Reserved { until_ms, .. } => {
                self.reserved += 1;
                self.timers.insert(until_ms, Timer::Lease(id));
            }
        }
    }

    /// Removes a message; its group's state record is rewritten (or the group's
    /// records removed) at the next write.
    fn remove(&mut self, id: u64) {
        self.detach(id);
        if let Some(msg) = self.index.remove(id) {
            self.staging.removed(msg.batch);
        }
        if !self.open.is_empty() {
            self.open.remove(&id);
        }
        if !self.histories.is_empty() && self.histories.remove(&id) {
            self.update_history(id, HistoryUpdate::Remove);
        }
    }

    /// Marks a message's state for writing.
    fn persist_state(&mut self, id: u64) {
        if let Some(msg) = self.index.get(id) {
            self.staging.changed(msg.batch);
        }
    }

    /// Removes message `id`, which has expired.
    fn remove_expired(&mut self, id: u64) {
        self.remove(id);
        self.counters.expired += 1;
    }

    fn count_pushed(&mut self) {
        self.counters.pushed += 1;
        self.meta.total_pushed = self.meta.total_pushed.saturating_add(1);
        self.record_changed = true;
    }

    /// Arms group `key`'s expiry timer for `expires_at_ms` if that is earlier than
    /// what it is armed for.
    fn arm_expiry(&mut self, key: u64, expires_at_ms: u64) {
        let Some(group) = self.staging.group_mut(key) else {
            return;
        };
        match group.expiry_ms {
            Some(armed) if armed <= expires_at_ms => {}
            armed => {
                if let Some(armed) = armed {
                    self.timers.remove(armed, Timer::Expire(key));
                }
                group.expiry_ms = Some(expires_at_ms);
                self.timers.insert(expires_at_ms, Timer::Expire(key));
            }
        }
    }

    /// Group `key`'s expiry timer fired: remove its expired messages (whatever their
    /// state), and re-arm for the earliest of the others.
    fn expire_group(&mut self, key: u64, now: u64) {
        let handing_off = &self.handing_off;
        let Some(group) = self.staging.group_mut(key) else {
            return;
        };
        group.expiry_ms = None;
        let mut expired = Vec::new();
        let mut next: Option<u64> = None;
        for id in group.ids.iter() {
            match self.index.get(id).filter(|m| m.batch == key) {
                // A message held for a hand-off stays until it ends (`hand_off.rs`).
                Some(_) if !handing_off.is_empty() && handing_off.contains(&id) => {}
                Some(msg) if msg.expires_at_ms <= now => expired.push(id),
                Some(msg) => {
                    next = Some(next.map_or(msg.expires_at_ms, |n| n.min(msg.expires_at_ms)))
                }
                None => {}
            }
        }
        for id in expired {
            self.remove_expired(id);
        }
        if let Some(next) = next {
            self.arm_expiry(key, next);
        }
    }

    /// Whether message `id` has expired at `now` (one held for a hand-off
    /// expires when the hand-off ends, if it does not commit).
    fn expired(&self, id: u64, now: u64) -> bool {
        self.index.get(id).is_some_and(|m| m.expires_at_ms <= now) && !self.is_held(id)
    }

    /// Gives message `id` the front place of its priority.
    fn move_to_front(&mut self, id: u64) {
        self.requeues = self.requeues.saturating_add(1);
        let requeue = self.requeues;
        self.modify(id, |msg| {
            msg.order_key = front_key(priority_of(msg.order_key), requeue);
        });
    }

    /// A lease ran out: the message goes back to the front of the queue.
    fn requeue_expired(&mut self, id: u64) {
        let Some(State::Reserved {
            reservation_id,
            until_ms,
            ..
        }) = self.index.get(id).map(|m| m.state)
        else {
            return;
        };
        self.end_attempt(id, until_ms, Outcome::TimedOut);
        self.detach(id);
        self.move_to_front(id);
        self.modify(id, |msg| msg.expired_reservation_id = reservation_id);
        self.attach(id, State::Available);
        self.persist_state(id);
        self.counters.timed_out += 1;
    }
}

/// AVAILABLE, or DELAYED until `available_at_ms` if that is after `now`.
pub(super) fn delayed_or_available(available_at_ms: u64, now: u64) -> State {
    if available_at_ms > now {
        State::Delayed {
            until_ms: available_at_ms,
        }
    } else {
        State::Available
    }
}

/// Counts one down. The counters are kept by `attach`/`detach` only, so this never
/// goes below zero; if a bug ever made it, the counter stays at zero (and debug
/// builds, where the model tests run, stop).
fn decrement(counter: &mut usize) {
    match counter.checked_sub(1) {
        Some(less) => *counter = less,
        None => {
            debug_assert!(false, "a queue counter went below zero");
            tracing::error!("a queue counter went below zero");
        }
    }
}
