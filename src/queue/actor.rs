//! The queue actor: the only owner and writer of one queue's state.
//!
//! # State
//! Every message of the queue has an entry in `messages` (without its body, which
//! stays on disk). AVAILABLE messages are also in `available`, ordered by order key:
//! a push takes `ORDER_BASE + id` (so pushes keep push order), a requeue (timeout or
//! release) takes `next_front`, which only decreases, so the latest requeue is first.
//! Every timed event (lease deadline, delay end, long-poll timeout, and one expiry
//! per batch at its latest message's expiration) is in one [`DeadlineIndex`]; the
//! actor sleeps until its earliest entry. Reserve, peek and get also drop a message
//! whose own expiration has passed before its batch's timer fires.
//!
//! # Records
//! The messages a turn takes in go into one pending batch (sealed early at 512
//! messages or 64 KiB) and are written as one record at the end of the turn; each
//! message remembers its batch and slot, and `batches` counts the live messages per
//! batch. Deletes and state changes only mark their batch dirty; at the end of the
//! turn each dirty batch gets its state record rewritten once, or both its records
//! removed when its last message is gone (`storage/batch.rs`). Bodies are read from
//! the pending batch, the last batch read, or the store. `total_pushed` is written
//! at most once a second (and at shutdown): after a crash it can undercount.
//!
//! # Turns
//! The actor takes up to [`MAILBOX_BATCH`] commands from its mailbox at once (a
//! turn). It first fires every due timer (so an expired lease is back in the queue
//! before any command of the turn looks at it: deadlines are effectively checked at
//! request time), then runs the commands, serves long-poll waiters in arrival order,
//! and finally asks the store for one commit covering the turn's writes. Replies
//! that the durability contract covers carry that commit's ticket; the caller waits
//! for it, the actor never does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::deadlines::DeadlineIndex;
use super::handle::{Acked, Command, QueueHandle, Transfer};
use super::types::{
    now_ms, Lease, MessageState, MessageView, NewMessage, QueueName, QueueSettings, QueueStats,
};
use crate::error::QueueError;
use crate::storage::batch::encode_batch_state;
use crate::storage::{
    Batch, BatchBuilder, CommitTicket, LoadedMessage, MessageRecord, QueueLog, QueueRecord,
    StateRecord, Store,
};

/// Most commands handled in one turn.
pub const MAILBOX_BATCH: usize = 128;
/// Capacity of a queue's mailbox; senders wait when it is full (backpressure).
pub const MAILBOX_CAPACITY: usize = 1024;
/// Longest single timer sleep of an actor.
const MAX_SLEEP_MS: u64 = 24 * 3600 * 1000;
/// Order keys of pushed messages start here; requeued messages count down from below.
const ORDER_BASE: u64 = 1 << 63;
/// A queue record whose only change is `total_pushed` is written at most this often.
const RECORD_EVERY_MS: u64 = 1000;

/// A timed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The lease of this message ends.
    Lease(u64),
    /// The delay of this message ends.
    Delay(u64),
    /// The messages of this batch have expired (the latest expiry in the batch).
    ExpireBatch(u64),
    /// This long-poll waiter gives up.
    Waiter(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Available,
    Delayed {
        until_ms: u64,
    },
    Reserved {
        reservation_id: u64,
        until_ms: u64,
    },
    /// Being moved to another queue (dead letter, redrive): in no index, invisible
    /// to every operation, counted in `size` until the move completes or fails.
    Moving,
}

/// How an actor finds other queues (dead-letter and redrive targets). Implemented
/// by the registry through a weak reference.
pub(crate) trait Resolver: Send + Sync {
    /// The queue named `name`, created with default settings if missing.
    fn get_or_create(&self, name: &QueueName) -> Result<QueueHandle, QueueError>;
}

/// What the actor keeps in memory per message.
#[derive(Debug, Clone)]
struct Msg {
    order_key: u64,
    state: State,
    reserved_count: u32,
    pushed_at_ms: u64,
    expires_at_ms: u64,
    /// The reservation that most recently ran out, so that a late delete/touch/release
    /// with it is told RESERVATION_EXPIRED rather than RESERVATION_MISMATCH.
    expired_reservation_id: u64,
    /// The batch record holding the message, and its slot there.
    batch: u64,
    slot: u32,
}

/// Hashes batch keys (Fx-style multiply) for the batch table, which is touched on
/// every push, reserve and delete. Batch keys are ids the server assigns; no client
/// chooses what gets inserted, so an unkeyed hash cannot be flooded with
/// collisions here.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

const ID_HASH_K: u64 = 0x517c_c1b7_2722_0a95;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(ID_HASH_K);
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// What the actor keeps per batch record.
#[derive(Debug, Default)]
struct BatchInfo {
    /// Message id per slot (0 for a slot whose message was gone at load).
    ids: Vec<u64>,
    /// Messages of the batch still in the queue.
    live: usize,
    /// The latest expiry of its messages: when its `ExpireBatch` timer fires.
    expires_at_ms: u64,
}

impl Msg {
    fn state_record(&self) -> StateRecord {
        let (reservation_id, reserved_until_ms, available_at_ms) = match self.state {
            State::Available | State::Moving => (0, 0, 0),
            State::Delayed { until_ms } => (0, 0, until_ms),
            State::Reserved {
                reservation_id,
                until_ms,
            } => (reservation_id, until_ms, 0),
        };
        StateRecord {
            order_key: self.order_key,
            reserved_count: self.reserved_count,
            reservation_id,
            reserved_until_ms,
            available_at_ms,
        }
    }
}

/// A long-poll reserve waiting for messages.
struct Waiter {
    n: usize,
    timeout_ms: Option<u64>,
    delete: bool,
    deadline_ms: u64,
    reply: oneshot::Sender<Acked<Vec<MessageView>>>,
}

/// A reply held until the end of the turn, when the turn's writes are done and the
/// commit ticket is known (or a write failed).
type Deferred = Box<dyn FnOnce(Result<CommitTicket, QueueError>) + Send>;

/// One queue's state; see the module docs.
pub(crate) struct QueueActor {
    record: QueueRecord,
    store: Arc<dyn Store>,
    log: Box<dyn QueueLog>,
    resolver: Arc<dyn Resolver>,
    /// This actor's own mailbox, weakly: tasks it spawns report back through it.
    me: mpsc::WeakSender<Command>,
    messages: BTreeMap<u64, Msg>,
    /// AVAILABLE messages as (order key, id).
    available: BTreeSet<(u64, u64)>,
    timers: DeadlineIndex<Timer>,
    /// Long-poll waiters in arrival order.
    waiters: BTreeMap<u64, Waiter>,
    next_waiter: u64,
    next_front: u64,
    reserved: usize,
    delayed: usize,
    /// The settings changed this turn: write the queue record now.
    record_dirty: bool,
    /// total_pushed changed since the record was last written.
    pushed_dirty: bool,
    record_written_ms: u64,
    /// Batch records with messages in the queue (or written this turn).
    batches: IdMap<BatchInfo>,
    /// The batch gathering this turn's new messages, not yet written.
    pending: Option<(u64, BatchBuilder)>,
    /// Batches whose state record must be rewritten (or removed) at turn end.
    dirty: BTreeSet<u64>,
    /// The batch record read last (reserves read the same batch many times).
    cached: Option<(u64, Batch)>,
    /// A write of this turn failed: its held replies get this error.
    turn_error: Option<QueueError>,
    /// Something was written this turn.
    wrote: bool,
    deferred: Vec<Deferred>,
    destroyed: bool,
}

/// Starts the actor of `record` and returns its handle. The actor loads the queue's
/// messages from the store before it serves its first command.
pub(crate) fn spawn(
    record: QueueRecord,
    store: Arc<dyn Store>,
    resolver: Arc<dyn Resolver>,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<QueueHandle, QueueError> {
    let log = store.open_log(record.id)?;
    let (tx, rx) = mpsc::channel(MAILBOX_CAPACITY);
    let me = tx.downgrade();
    let handle = QueueHandle {
        name: record.name.clone(),
        mailbox: tx,
        stopping: shutdown.clone(),
    };
    let actor = QueueActor {
        me,
        record,
        store,
        log,
        resolver,
        messages: BTreeMap::new(),
        available: BTreeSet::new(),
        timers: DeadlineIndex::default(),
        waiters: BTreeMap::new(),
        next_waiter: 0,
        next_front: ORDER_BASE - 1,
        reserved: 0,
        delayed: 0,
        record_dirty: false,
        pushed_dirty: false,
        record_written_ms: 0,
        batches: IdMap::default(),
        pending: None,
        dirty: BTreeSet::new(),
        cached: None,
        turn_error: None,
        wrote: false,
        deferred: Vec::new(),
        destroyed: false,
    };
    tracker.spawn(actor.run(rx, shutdown));
    Ok(handle)
}

/// Resolves when the flush `ticket` names has ended (or the store closed).
async fn wait_for_flush(ticket: Option<CommitTicket>) {
    match ticket {
        Some(ticket) => {
            let _ = ticket.wait().await;
        }
        None => std::future::pending().await,
    }
}

/// Resolves when `deadline_ms` (wall clock) is reached; never if `None`.
async fn sleep_until_ms(deadline_ms: Option<u64>) {
    match deadline_ms {
        Some(deadline) => {
            // +1 ms: tokio's timer rounds, and waking early would only loop again.
            // At most a day: a far deadline (say, from a damaged record) must not
            // overflow `Instant`; waking early just recomputes the sleep.
            let wait = (deadline.saturating_sub(now_ms()) + 1).min(MAX_SLEEP_MS);
            tokio::time::sleep_until(Instant::now() + Duration::from_millis(wait)).await;
        }
        None => std::future::pending().await,
    }
}

impl QueueActor {
    async fn run(
        mut self,
        mut mailbox: mpsc::Receiver<Command>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        if let Err(err) = self.load() {
            tracing::error!(queue = %self.record.name, cause = %err, "cannot load queue; it will refuse every request");
            mailbox.close();
            return;
        }
        let mut batch = Vec::with_capacity(MAILBOX_BATCH);
        // The running flush this actor's unwritten work is waiting for, if any.
        let mut held: Option<CommitTicket> = None;
        loop {
            let mut force = false;
            tokio::select! {
                received = mailbox.recv_many(&mut batch, MAILBOX_BATCH) => {
                    if received == 0 {
                        break;
                    }
                    let now = now_ms();
                    self.fire_due(now);
                    for command in batch.drain(..) {
                        if self.destroyed {
                            break; // dropped: the caller sees QueueNotFound
                        }
                        self.handle(command, now);
                    }
                    batch.clear();
                }
                () = sleep_until_ms(self.timers.next()) => {
                    self.fire_due(now_ms());
                }
                () = wait_for_flush(held.clone()), if held.is_some() => {
                    force = true;
                }
                () = shutdown.cancelled() => {
                    break;
                }
            }
            self.finish_turn(now_ms(), &mut held, force);
            if self.destroyed {
                break;
            }
        }
        // Mailbox closed, queue destroyed or server stopping: finish what was done,
        // then tell the waiters.
        self.finish_turn(now_ms(), &mut held, true);
        if self.pushed_dirty && !self.destroyed {
            if let Err(err) = self.store.put_queue(&self.record) {
                tracing::error!(queue = %self.record.name, cause = %err, "cannot write the queue record");
            }
        }
        let err = if self.destroyed {
            QueueError::QueueNotFound(self.record.name.clone())
        } else {
            QueueError::Unavailable("the server is shutting down".into())
        };
        for (_, waiter) in std::mem::take(&mut self.waiters) {
            let _ = waiter.reply.send(Err(err.clone()));
        }
    }

    /// Rebuilds the in-memory state from the store.
    fn load(&mut self) -> Result<(), QueueError> {
        let now = now_ms();
        let mut loaded = Vec::new();
        self.log.load(&mut |message| loaded.push(message))?;
        // A message in two batches is a move into this queue and back, cut short by
        // a crash: keep the copy in the earlier batch (the sort is stable) and mark
        // the other one's batch dirty, so its slot is written as deleted (or the
        // batch removed) at the end of the first turn.
        loaded.sort_by_key(|m| m.id);
        let mut previous = None;
        // Indexes are built in bulk (sorted vectors into B-trees): a million
        // messages load in a fraction of a second.
        let mut messages = Vec::with_capacity(loaded.len());
        let mut available = Vec::with_capacity(loaded.len());
        let mut timers = Vec::new();
        for LoadedMessage {
            id,
            record,
            state,
            batch,
            slot,
            batch_len,
        } in loaded
        {
            let info = self.batches.entry(batch).or_insert_with(|| BatchInfo {
                ids: vec![0; usize::try_from(batch_len).unwrap_or(0)],
                live: 0,
                expires_at_ms: 0,
            });
            if previous.replace(id) == Some(id) {
                self.dirty.insert(batch);
                continue;
            }
            if let Some(entry) = usize::try_from(slot).ok().and_then(|s| info.ids.get_mut(s)) {
                *entry = id;
            }
            info.live += 1;
            info.expires_at_ms = info.expires_at_ms.max(record.expires_at_ms);
            let (order_key, reserved_count, state) = match state {
                Some(st) if st.reservation_id != 0 => (
                    st.order_key,
                    st.reserved_count,
                    State::Reserved {
                        reservation_id: st.reservation_id,
                        until_ms: st.reserved_until_ms,
                    },
                ),
                Some(st) => (
                    st.order_key,
                    st.reserved_count,
                    delayed_or_available(st.available_at_ms, now),
                ),
                None => (
                    ORDER_BASE + id,
                    0,
                    delayed_or_available(record.available_at_ms, now),
                ),
            };
            let msg = Msg {
                order_key,
                state,
                reserved_count,
                pushed_at_ms: record.pushed_at_ms,
                expires_at_ms: record.expires_at_ms,
                expired_reservation_id: 0,
                batch,
                slot,
            };
            self.next_front = self.next_front.min(order_key.saturating_sub(1));
            match state {
                State::Available => available.push((order_key, id)),
                State::Delayed { until_ms } => {
                    self.delayed += 1;
                    timers.push((until_ms, Timer::Delay(id)));
                }
                State::Reserved { until_ms, .. } => {
                    self.reserved += 1;
                    timers.push((until_ms, Timer::Lease(id)));
                }
                State::Moving => {}
            }
            messages.push((id, msg));
        }
        timers.extend(
            self.batches
                .iter()
                .map(|(&key, info)| (info.expires_at_ms, Timer::ExpireBatch(key))),
        );
        self.messages = messages.into_iter().collect();
        self.available = available.into_iter().collect();
        self.timers = DeadlineIndex::from_entries(timers);
        Ok(())
    }

    /// Adds a message to the in-memory indexes according to its state.
    fn insert(&mut self, id: u64, msg: Msg) {
        let state = msg.state;
        self.messages.insert(id, msg);
        self.attach(id, state);
    }

    /// Takes a message out of the state-specific indexes (it stays in `messages`).
    fn detach(&mut self, id: u64) {
        let Some(msg) = self.messages.get(&id) else {
            return;
        };
        match msg.state {
            State::Available => {
                self.available.remove(&(msg.order_key, id));
            }
            State::Delayed { until_ms } => {
                self.delayed -= 1;
                self.timers.remove(until_ms, Timer::Delay(id));
            }
            State::Reserved { until_ms, .. } => {
                self.reserved -= 1;
                self.timers.remove(until_ms, Timer::Lease(id));
            }
            State::Moving => {}
        }
    }

    /// Sets a message's state (it must be new or detached) and indexes it.
    fn attach(&mut self, id: u64, state: State) {
        let Some(msg) = self.messages.get_mut(&id) else {
            return;
        };
        msg.state = state;
        let order_key = msg.order_key;
        match state {
            State::Available => {
                self.available.insert((order_key, id));
            }
            State::Delayed { until_ms } => {
                self.delayed += 1;
                self.timers.insert(until_ms, Timer::Delay(id));
            }
            State::Reserved { until_ms, .. } => {
                self.reserved += 1;
                self.timers.insert(until_ms, Timer::Lease(id));
            }
            State::Moving => {}
        }
    }

    /// Removes a message from memory; its batch's state record is rewritten (or the
    /// batch removed) at the end of the turn.
    fn remove(&mut self, id: u64) {
        self.detach(id);
        if let Some(msg) = self.messages.remove(&id) {
            if let Some(info) = self.batches.get_mut(&msg.batch) {
                info.live = info.live.saturating_sub(1);
            }
            self.dirty.insert(msg.batch);
        }
    }

    /// Marks a message's state for writing at the end of the turn.
    fn persist_state(&mut self, id: u64) {
        if let Some(msg) = self.messages.get(&id) {
            self.dirty.insert(msg.batch);
        }
    }

    /// Adds a new message to the turn's pending batch and returns (batch, slot).
    /// `batch_key` names a new batch if one must be started: the message's own id
    /// for a push (fresh, so unique and in push order), a fresh id for an adopt.
    fn stage(
        &mut self,
        id: u64,
        record: MessageRecord,
        body: Bytes,
        batch_key: impl FnOnce(&mut Self) -> Result<u64, QueueError>,
    ) -> Result<(u64, u32), QueueError> {
        if self.pending.as_ref().is_some_and(|(_, b)| b.is_full()) {
            self.seal_pending()?;
        }
        if self.pending.is_none() {
            let key = batch_key(self)?;
            self.pending = Some((key, BatchBuilder::default()));
        }
        let Some((key, builder)) = self.pending.as_mut() else {
            return Err(QueueError::Internal("no pending batch".into()));
        };
        let key = *key;
        let slot = builder.push(id, record, body);
        let info = self.batches.entry(key).or_default();
        info.ids.push(id);
        info.live += 1;
        if record.expires_at_ms > info.expires_at_ms {
            if info.expires_at_ms != 0 {
                self.timers
                    .remove(info.expires_at_ms, Timer::ExpireBatch(key));
            }
            info.expires_at_ms = record.expires_at_ms;
            self.timers
                .insert(record.expires_at_ms, Timer::ExpireBatch(key));
        }
        Ok((key, slot))
    }

    /// Writes the pending batch. If the write fails, its messages leave the queue
    /// again (their pushes fail with the turn).
    fn seal_pending(&mut self) -> Result<(), QueueError> {
        let Some((key, builder)) = self.pending.take() else {
            return Ok(());
        };
        let live = self.batches.get(&key).map_or(0, |info| info.live);
        if live == 0 {
            // Every message went in the same turn (reserve with delete, expiry):
            // nothing to write, nothing to remove.
            self.forget_batch(key);
            self.dirty.remove(&key);
            return Ok(());
        }
        self.wrote = true;
        if let Err(err) = self.log.put_batch(key, &builder) {
            let err = QueueError::from(err);
            let ids = self
                .batches
                .remove(&key)
                .map(|info| info.ids)
                .unwrap_or_default();
            for id in ids {
                self.remove(id);
            }
            self.dirty.remove(&key);
            self.turn_error = Some(err.clone());
            return Err(err);
        }
        Ok(())
    }

    /// Writes the state record of every batch touched this turn, or removes the
    /// batches whose last message went.
    fn write_dirty(&mut self) {
        for key in std::mem::take(&mut self.dirty) {
            let Some(info) = self.batches.get(&key) else {
                continue;
            };
            let result = if info.live == 0 {
                self.forget_batch(key);
                self.log.remove_batch(key)
            } else {
                let slot_msg = |slot: usize| {
                    let id = info.ids.get(slot).copied().unwrap_or(0);
                    self.messages
                        .get(&id)
                        .filter(|m| m.batch == key && usize::try_from(m.slot) == Ok(slot))
                };
                let states: Vec<(u32, StateRecord)> = (0..info.ids.len())
                    .filter_map(|slot| {
                        let msg = slot_msg(slot)?;
                        let state = msg.state_record();
                        let default = ORDER_BASE.checked_add(info.ids[slot])
                            == Some(state.order_key)
                            && state.reserved_count == 0
                            && state.reservation_id == 0
                            && state.available_at_ms == 0;
                        (!default).then_some((msg.slot, state))
                    })
                    .collect();
                let value =
                    encode_batch_state(info.ids.len(), |slot| slot_msg(slot).is_none(), &states);
                self.log.put_batch_state(key, &value)
            };
            self.wrote = true;
            if let Err(err) = result {
                tracing::error!(queue = %self.record.name, batch = key, cause = %err, "cannot write a batch state");
                self.turn_error = Some(err.into());
            }
        }
    }

    /// The body of message `id`: from the pending batch, the cached batch or the store.
    fn body(&mut self, id: u64) -> Result<Option<Bytes>, QueueError> {
        let Some(msg) = self.messages.get(&id) else {
            return Ok(None);
        };
        let (key, slot) = (msg.batch, msg.slot);
        if let Some((pending_key, builder)) = &self.pending {
            if *pending_key == key {
                return Ok(builder.body(slot));
            }
        }
        let slot = usize::try_from(slot).unwrap_or(usize::MAX);
        if let Some((cached_key, batch)) = &self.cached {
            if *cached_key == key {
                return Ok(batch.body(slot));
            }
        }
        let Some(batch) = self.log.batch(key)? else {
            return Ok(None);
        };
        let body = batch.body(slot);
        self.cached = Some((key, batch));
        Ok(body)
    }

    /// Drops the in-memory entry of a batch that has no message left (and its
    /// expiry timer, and the cached copy).
    fn forget_batch(&mut self, key: u64) {
        if let Some(info) = self.batches.remove(&key) {
            self.timers
                .remove(info.expires_at_ms, Timer::ExpireBatch(key));
        }
        if self.cached.as_ref().is_some_and(|(k, _)| *k == key) {
            self.cached = None;
        }
    }

    /// The expiry timer of a batch fired: remove its expired messages (whatever
    /// their state), and re-arm for any that expire later (adopted messages).
    fn expire_batch(&mut self, key: u64, now: u64) {
        let Some(info) = self.batches.get(&key) else {
            return;
        };
        let mut expired = Vec::new();
        let mut later = 0;
        for id in &info.ids {
            match self.messages.get(id).filter(|m| m.batch == key) {
                Some(msg) if msg.expires_at_ms <= now => expired.push(*id),
                Some(msg) => later = later.max(msg.expires_at_ms),
                None => {}
            }
        }
        for id in expired {
            self.remove(id);
        }
        if let Some(info) = self.batches.get_mut(&key) {
            info.expires_at_ms = later;
            if later > 0 {
                self.timers.insert(later, Timer::ExpireBatch(key));
            }
        }
    }

    /// Whether message `id` has expired at `now` (its batch's timer may not have
    /// fired yet: a batch expires at its latest message's time).
    fn expired(&self, id: u64, now: u64) -> bool {
        self.messages
            .get(&id)
            .is_some_and(|m| m.expires_at_ms <= now)
    }

    fn take_front_key(&mut self) -> u64 {
        let key = self.next_front;
        self.next_front -= 1;
        key
    }

    /// Fires every timer that is due at `now`.
    fn fire_due(&mut self, now: u64) {
        while let Some((_, timer)) = self.timers.pop_due(now) {
            let result = match timer {
                Timer::Lease(id) => self.requeue_expired(id),
                Timer::Delay(id) => {
                    let delayed = self.messages.get(&id).map(|m| m.state);
                    if let Some(State::Delayed { .. }) = delayed {
                        // The timer entry is already gone; fix the counter, then attach.
                        self.delayed -= 1;
                        self.attach(id, State::Available);
                    }
                    Ok(())
                }
                Timer::ExpireBatch(key) => {
                    self.expire_batch(key, now);
                    Ok(())
                }
                Timer::Waiter(waiter_id) => {
                    if let Some(waiter) = self.waiters.remove(&waiter_id) {
                        let _ = waiter.reply.send(Ok((Vec::new(), CommitTicket::ready())));
                    }
                    Ok(())
                }
            };
            if let Err(err) = result {
                tracing::error!(queue = %self.record.name, cause = %err, "timer event failed");
            }
        }
    }

    /// A lease ran out: the message goes back to the front of the queue.
    fn requeue_expired(&mut self, id: u64) -> Result<(), QueueError> {
        let Some(State::Reserved { reservation_id, .. }) = self.messages.get(&id).map(|m| m.state)
        else {
            return Ok(());
        };
        // The Lease timer entry has been popped already: only the counter is left.
        self.reserved -= 1;
        let front = self.take_front_key();
        if let Some(msg) = self.messages.get_mut(&id) {
            msg.expired_reservation_id = reservation_id;
            msg.order_key = front;
        }
        self.attach(id, State::Available);
        self.persist_state(id);
        Ok(())
    }

    fn handle(&mut self, command: Command, now: u64) {
        match command {
            Command::Push { messages, reply } => {
                let result = self.push(messages, now);
                self.reply_acked(reply, result);
            }
            Command::Reserve {
                n,
                timeout_ms,
                wait_ms,
                delete,
                reply,
            } => self.reserve(n, timeout_ms, wait_ms, delete, reply, now),
            Command::Delete { entries, reply } => {
                let result = self.delete(&entries, now);
                self.reply_acked(reply, result);
            }
            Command::Touch {
                id,
                reservation_id,
                timeout_ms,
                reply,
            } => {
                let _ = reply.send(self.touch(id, reservation_id, timeout_ms, now));
            }
            Command::Release {
                id,
                reservation_id,
                delay_ms,
                reply,
            } => {
                let result = self.release(id, reservation_id, delay_ms, now);
                self.reply_acked(reply, result);
            }
            Command::Peek { n, reply } => {
                let _ = reply.send(self.peek(n, now));
            }
            Command::Get { id, reply } => {
                let _ = reply.send(self.get(id, now));
            }
            Command::Info { reply } => {
                let _ = reply.send(Ok(self.stats()));
            }
            Command::Update { patch, reply } => {
                self.record.settings = patch.apply(&self.record.settings);
                self.record_dirty = true;
                let stats = self.stats();
                self.reply_acked(reply, Ok(stats));
            }
            Command::Clear { reply } => {
                let result = self.clear();
                self.reply_acked(reply, result);
            }
            Command::Redrive { to, n, reply } => self.redrive(&to, n, reply),
            Command::Adopt { messages, reply } => {
                let result = self.adopt(messages, now);
                self.reply_acked(reply, result);
            }
            Command::TransferDone { ids, moved } => self.transfer_done(&ids, moved),
            Command::Destroy { reply } => {
                let result = self
                    .store
                    .delete_queue(self.record.id)
                    .map_err(QueueError::from);
                self.wrote = true;
                self.destroyed = true;
                self.record_dirty = false;
                self.reply_acked(reply, result);
            }
        }
    }

    /// Sends an error at once, or holds a success until the turn's commit ticket.
    fn reply_acked<T: Send + 'static>(
        &mut self,
        reply: oneshot::Sender<Acked<T>>,
        result: Result<T, QueueError>,
    ) {
        match result {
            Ok(value) => self.deferred.push(Box::new(move |ticket| {
                let _ = reply.send(ticket.map(|ticket| (value, ticket)));
            })),
            Err(err) => {
                let _ = reply.send(Err(err));
            }
        }
    }

    fn settings(&self) -> &QueueSettings {
        &self.record.settings
    }

    fn push(&mut self, messages: Vec<NewMessage>, now: u64) -> Result<Vec<u64>, QueueError> {
        let count = u64::try_from(messages.len()).unwrap_or(u64::MAX);
        let first = self.store.allocate_ids(count)?;
        let expires_at_ms = now.saturating_add(self.settings().message_expiration_s * 1000);
        let mut ids = Vec::with_capacity(messages.len());
        for (id, message) in (first..).zip(messages) {
            let available_at_ms = if message.delay_ms > 0 {
                now + message.delay_ms
            } else {
                0
            };
            let record = MessageRecord {
                pushed_at_ms: now,
                available_at_ms,
                expires_at_ms,
            };
            let (batch, slot) = self.stage(id, record, message.body, |_| Ok(id))?;
            self.record.total_pushed += 1;
            self.pushed_dirty = true;
            self.insert(
                id,
                Msg {
                    order_key: ORDER_BASE + id,
                    state: delayed_or_available(available_at_ms, now),
                    reserved_count: 0,
                    pushed_at_ms: now,
                    expires_at_ms,
                    expired_reservation_id: 0,
                    batch,
                    slot,
                },
            );
            ids.push(id);
        }
        Ok(ids)
    }

    fn reserve(
        &mut self,
        n: usize,
        timeout_ms: Option<u64>,
        wait_ms: u64,
        delete: bool,
        reply: oneshot::Sender<Acked<Vec<MessageView>>>,
        now: u64,
    ) {
        // Older waiters come first.
        self.serve_waiters(now);
        match self.take_available(n, timeout_ms, delete, now) {
            Ok(messages) if messages.is_empty() && wait_ms > 0 => {
                let waiter_id = self.next_waiter;
                self.next_waiter += 1;
                let deadline_ms = now + wait_ms;
                self.timers.insert(deadline_ms, Timer::Waiter(waiter_id));
                self.waiters.insert(
                    waiter_id,
                    Waiter {
                        n,
                        timeout_ms,
                        delete,
                        deadline_ms,
                        reply,
                    },
                );
            }
            result => self.send_reserved(reply, delete, result),
        }
    }

    fn send_reserved(
        &mut self,
        reply: oneshot::Sender<Acked<Vec<MessageView>>>,
        delete: bool,
        result: Result<Vec<MessageView>, QueueError>,
    ) {
        if delete {
            // At-most-once: the removal must be durable before the messages leave.
            self.reply_acked(reply, result);
        } else {
            let _ = reply.send(result.map(|messages| (messages, CommitTicket::ready())));
        }
    }

    /// Serves waiting long polls, oldest first, while messages are available.
    fn serve_waiters(&mut self, now: u64) {
        while !self.available.is_empty() {
            let Some((waiter_id, waiter)) = self.waiters.pop_first() else {
                return;
            };
            self.timers
                .remove(waiter.deadline_ms, Timer::Waiter(waiter_id));
            if waiter.reply.is_closed() {
                continue; // the client went away
            }
            let result = self.take_available(waiter.n, waiter.timeout_ms, waiter.delete, now);
            self.send_reserved(waiter.reply, waiter.delete, result);
        }
    }

    /// Reserves (or with `delete`, removes) up to `n` available messages in order.
    /// A message that has reached the dead-letter limit is moved to the dead-letter
    /// queue instead, and the scan goes on.
    fn take_available(
        &mut self,
        n: usize,
        timeout_ms: Option<u64>,
        delete: bool,
        now: u64,
    ) -> Result<Vec<MessageView>, QueueError> {
        if self.available.is_empty() {
            return Ok(Vec::new());
        }
        let until_ms = now + timeout_ms.unwrap_or(self.settings().message_timeout_ms);
        let dead_letter = self.settings().dead_letter.clone();
        let most = n.min(self.available.len());
        // One id allocation for the whole reserve (ids skipped by dead-lettering are
        // simply never used).
        let mut reservation_ids = if delete {
            0..0
        } else {
            let first = self
                .store
                .allocate_ids(u64::try_from(most).unwrap_or(u64::MAX))?;
            first..first + u64::try_from(most).unwrap_or(u64::MAX)
        };
        let mut out = Vec::with_capacity(most);
        let mut dead = Vec::new();
        let mut result = Ok(());
        while out.len() < n {
            let Some(&(order_key, id)) = self.available.first() else {
                break;
            };
            // One lookup for both the expiry check and the dead-letter count.
            let Some((expires_at_ms, reserved_count)) = self
                .messages
                .get(&id)
                .map(|m| (m.expires_at_ms, m.reserved_count))
            else {
                // An index entry without its message: drop it rather than loop on it.
                self.available.remove(&(order_key, id));
                continue;
            };
            if expires_at_ms <= now {
                self.remove(id);
                continue;
            }
            let body = match self.body(id) {
                Ok(Some(body)) => body,
                Ok(None) => {
                    tracing::error!(queue = %self.record.name, id, "message body missing; dropping the index entry");
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
                    dead.push(Transfer {
                        id,
                        body,
                        reserved_count,
                    });
                    continue;
                }
            }
            // Each reserve consumes one available message, so there is an id for it.
            let reservation_id = reservation_ids.next().unwrap_or(0);
            match self.reserve_one(id, body, reservation_id, until_ms) {
                Ok(view) => out.push(view),
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
        }
        if let Some(limit) = dead_letter.filter(|_| !dead.is_empty()) {
            self.transfer(dead, &limit.queue, None);
        }
        match result {
            Err(err) if out.is_empty() => Err(err),
            Err(err) => {
                tracing::error!(queue = %self.record.name, cause = %err, "reserve stopped early");
                Ok(out)
            }
            Ok(()) => Ok(out),
        }
    }

    /// Reserves one available message whose body has been read, under
    /// `reservation_id`; with reservation id 0 (reserve with delete) removes it.
    fn reserve_one(
        &mut self,
        id: u64,
        body: bytes::Bytes,
        reservation_id: u64,
        until_ms: u64,
    ) -> Result<MessageView, QueueError> {
        let delete = reservation_id == 0;
        self.detach(id);
        let msg = self
            .messages
            .get_mut(&id)
            .ok_or(QueueError::MessageNotFound(id))?;
        msg.reserved_count += 1;
        msg.expired_reservation_id = 0;
        let mut view = MessageView {
            id,
            body,
            reserved_count: msg.reserved_count,
            reservation_id: 0,
            reserved_until_ms: 0,
            pushed_at_ms: msg.pushed_at_ms,
            available_at_ms: 0,
            expires_at_ms: msg.expires_at_ms,
            state: MessageState::Reserved,
        };
        if delete {
            self.remove(id);
        } else {
            view.reservation_id = reservation_id;
            view.reserved_until_ms = until_ms;
            self.attach(
                id,
                State::Reserved {
                    reservation_id,
                    until_ms,
                },
            );
            self.persist_state(id);
        }
        Ok(view)
    }

    /// Redrive: moves up to `n` available messages to `to`, with reserved_count 0.
    fn redrive(
        &mut self,
        to: &QueueName,
        n: usize,
        reply: oneshot::Sender<Result<usize, QueueError>>,
    ) {
        // Not just validation: moving into itself would adopt nothing (the ids are
        // already here) and then remove the messages as "moved".
        if to.as_str() == self.record.name {
            let _ = reply.send(Err(QueueError::invalid(
                "cannot redrive a queue into itself",
            )));
            return;
        }
        let candidates: Vec<u64> = self.available.iter().take(n).map(|&(_, id)| id).collect();
        let mut messages = Vec::with_capacity(candidates.len());
        for id in candidates {
            match self.body(id) {
                Ok(Some(body)) => {
                    self.detach(id);
                    self.attach(id, State::Moving);
                    messages.push(Transfer {
                        id,
                        body,
                        reserved_count: 0,
                    });
                }
                Ok(None) => {}
                Err(err) => {
                    let ids: Vec<u64> = messages.iter().map(|m: &Transfer| m.id).collect();
                    self.transfer_done(&ids, false);
                    let _ = reply.send(Err(err));
                    return;
                }
            }
        }
        if messages.is_empty() {
            let _ = reply.send(Ok(0));
            return;
        }
        self.transfer(messages, to, Some(reply));
    }

    /// Hands messages (already in the Moving state) to the queue `to` without
    /// waiting for it: the target's mailbox is offered the batch with `try_send`
    /// (so two actors never wait on each other), and a small task waits for the
    /// target's durable acknowledgement and reports back with `TransferDone`.
    /// A crash in between can leave a message in both queues (never in neither).
    fn transfer(
        &mut self,
        messages: Vec<Transfer>,
        to: &QueueName,
        reply: Option<oneshot::Sender<Result<usize, QueueError>>>,
    ) {
        let ids: Vec<u64> = messages.iter().map(|m| m.id).collect();
        let (tx, rx) = oneshot::channel();
        let offered = self.resolver.get_or_create(to).and_then(|target| {
            target
                .mailbox
                .try_send(Command::Adopt {
                    messages,
                    reply: tx,
                })
                .map_err(|_| {
                    QueueError::ResourceExhausted(format!(
                        "queue {to} is too busy to take messages; try again"
                    ))
                })
        });
        if let Err(err) = offered {
            tracing::warn!(queue = %self.record.name, to = %to, cause = %err, "cannot move messages");
            self.transfer_done(&ids, false);
            if let Some(reply) = reply {
                let _ = reply.send(Err(err));
            }
            return;
        }
        let me = self.me.clone();
        tokio::spawn(async move {
            let result = match rx.await {
                Ok(Ok((count, ticket))) => ticket
                    .wait()
                    .await
                    .map(|()| count)
                    .map_err(QueueError::from),
                Ok(Err(err)) => Err(err),
                Err(_) => Err(QueueError::Unavailable("the target queue stopped".into())),
            };
            if let Some(me) = me.upgrade() {
                let moved = result.is_ok();
                let _ = me.send(Command::TransferDone { ids, moved }).await;
            }
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        });
    }

    /// Finishes a move: removes the moved messages, or makes them available again.
    fn transfer_done(&mut self, ids: &[u64], moved: bool) {
        for &id in ids {
            if self.messages.get(&id).map(|m| m.state) != Some(State::Moving) {
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
    /// reserved_count; their expiration restarts from this queue's setting.
    fn adopt(&mut self, messages: Vec<Transfer>, now: u64) -> Result<usize, QueueError> {
        let expires_at_ms = now.saturating_add(self.settings().message_expiration_s * 1000);
        let mut count = 0;
        for message in messages {
            if self.messages.contains_key(&message.id) {
                continue; // a repeated move of the same message
            }
            let record = MessageRecord {
                pushed_at_ms: now,
                available_at_ms: 0,
                expires_at_ms,
            };
            let (batch, slot) = self.stage(message.id, record, message.body, |actor| {
                Ok(actor.store.allocate_ids(1)?)
            })?;
            self.insert(
                message.id,
                Msg {
                    order_key: ORDER_BASE + message.id,
                    state: State::Available,
                    reserved_count: message.reserved_count,
                    pushed_at_ms: now,
                    expires_at_ms,
                    expired_reservation_id: 0,
                    batch,
                    slot,
                },
            );
            if message.reserved_count > 0 {
                self.persist_state(message.id);
            }
            self.record.total_pushed += 1;
            self.pushed_dirty = true;
            count += 1;
        }
        Ok(count)
    }

    /// Checks that `reservation_id` may act on message `id` now.
    fn check_reservation(
        &self,
        id: u64,
        reservation_id: Option<u64>,
        now: u64,
    ) -> Result<(), QueueError> {
        let msg = self
            .messages
            .get(&id)
            .filter(|m| m.state != State::Moving)
            .ok_or(QueueError::MessageNotFound(id))?;
        match (msg.state, reservation_id) {
            (
                State::Reserved {
                    reservation_id: current,
                    until_ms,
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
            (_, Some(given)) if given == msg.expired_reservation_id => {
                Err(QueueError::ReservationExpired(id))
            }
            (_, Some(_)) => Err(QueueError::ReservationMismatch(id)),
            (_, None) => Ok(()),
        }
    }

    fn delete(&mut self, entries: &[(u64, Option<u64>)], now: u64) -> Result<usize, QueueError> {
        let mut seen = std::collections::HashSet::with_capacity(entries.len());
        for &(id, reservation_id) in entries {
            if !seen.insert(id) {
                return Err(QueueError::invalid(format!(
                    "message id {id} appears twice in one delete"
                )));
            }
            self.check_reservation(id, reservation_id, now)?;
        }
        for &(id, _) in entries {
            self.remove(id);
        }
        Ok(entries.len())
    }

    fn touch(
        &mut self,
        id: u64,
        reservation_id: u64,
        timeout_ms: Option<u64>,
        now: u64,
    ) -> Result<Lease, QueueError> {
        self.check_reservation(id, Some(reservation_id), now)?;
        let new_reservation = self.store.allocate_ids(1)?;
        let until_ms = now + timeout_ms.unwrap_or(self.settings().message_timeout_ms);
        self.detach(id);
        self.attach(
            id,
            State::Reserved {
                reservation_id: new_reservation,
                until_ms,
            },
        );
        self.persist_state(id);
        Ok(Lease {
            reservation_id: new_reservation,
            reserved_until_ms: until_ms,
        })
    }

    fn release(
        &mut self,
        id: u64,
        reservation_id: u64,
        delay_ms: u64,
        now: u64,
    ) -> Result<(), QueueError> {
        self.check_reservation(id, Some(reservation_id), now)?;
        self.detach(id);
        let front = self.take_front_key();
        if let Some(msg) = self.messages.get_mut(&id) {
            msg.order_key = front;
        }
        let state = if delay_ms > 0 {
            State::Delayed {
                until_ms: now + delay_ms,
            }
        } else {
            State::Available
        };
        self.attach(id, state);
        self.persist_state(id);
        Ok(())
    }

    fn view(&self, id: u64, body: bytes::Bytes) -> Option<MessageView> {
        let msg = self.messages.get(&id)?;
        let (state, reserved_until_ms, available_at_ms) = match msg.state {
            State::Moving => return None,
            State::Available => (MessageState::Available, 0, 0),
            State::Delayed { until_ms } => (MessageState::Delayed, 0, until_ms),
            State::Reserved { until_ms, .. } => (MessageState::Reserved, until_ms, 0),
        };
        Some(MessageView {
            id,
            body,
            reserved_count: msg.reserved_count,
            reservation_id: 0,
            reserved_until_ms,
            pushed_at_ms: msg.pushed_at_ms,
            available_at_ms,
            expires_at_ms: msg.expires_at_ms,
            state,
        })
    }

    fn peek(&mut self, n: usize, now: u64) -> Result<Vec<MessageView>, QueueError> {
        let mut ids = Vec::with_capacity(n.min(self.available.len()));
        let mut expired = Vec::new();
        for &(_, id) in &self.available {
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
            self.remove(id);
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(body) = self.body(id)? {
                out.extend(self.view(id, body));
            }
        }
        Ok(out)
    }

    fn get(&mut self, id: u64, now: u64) -> Result<MessageView, QueueError> {
        if self.expired(id, now) {
            self.remove(id);
            return Err(QueueError::MessageNotFound(id));
        }
        if self
            .messages
            .get(&id)
            .is_none_or(|m| m.state == State::Moving)
        {
            return Err(QueueError::MessageNotFound(id));
        }
        let body = self.body(id)?.ok_or(QueueError::MessageNotFound(id))?;
        self.view(id, body).ok_or(QueueError::MessageNotFound(id))
    }

    fn stats(&self) -> QueueStats {
        let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        QueueStats {
            name: self.record.name.clone(),
            size: as_u64(self.messages.len()),
            available: as_u64(self.available.len()),
            reserved: as_u64(self.reserved),
            delayed: as_u64(self.delayed),
            total_pushed: self.record.total_pushed,
            settings: self.record.settings.clone(),
            created_at_ms: self.record.created_at_ms,
            waiting: as_u64(self.waiters.len()),
        }
    }

    fn clear(&mut self) -> Result<usize, QueueError> {
        let count = self.messages.len();
        self.wrote = true;
        self.log.clear()?;
        self.batches.clear();
        self.pending = None;
        self.dirty.clear();
        self.cached = None;
        self.messages.clear();
        self.available.clear();
        self.timers
            .retain(|timer| matches!(timer, Timer::Waiter(_)));
        self.reserved = 0;
        self.delayed = 0;
        Ok(count)
    }

    /// Ends a turn: serve waiters, persist the record, commit, send held replies.
    ///
    /// While a flush is running, a write made now could only be covered by the
    /// next one: so unless `force`, the turn's writes and held replies wait (in
    /// `held`) until the running flush ends, gathering the turns in between into one
    /// batch record and one state record per batch. No reply waits longer than it
    /// would have: its flush could not start earlier.
    fn finish_turn(&mut self, now: u64, held: &mut Option<CommitTicket>, force: bool) {
        if !self.destroyed {
            self.serve_waiters(now);
        }
        let unwritten = self.pending.is_some()
            || !self.dirty.is_empty()
            || !self.deferred.is_empty()
            || self.record_dirty;
        if !force && !self.destroyed && unwritten {
            if held.is_some() {
                return;
            }
            if let Some(running) = self.store.flush_running() {
                *held = Some(running);
                return;
            }
        }
        *held = None;
        if self.destroyed {
            self.pending = None;
            self.dirty.clear();
        } else {
            // A failed seal has recorded its error in `turn_error`.
            let _ = self.seal_pending();
            self.write_dirty();
        }
        let record_due = self.pushed_dirty
            && now.saturating_sub(self.record_written_ms) >= RECORD_EVERY_MS
            && !self.destroyed;
        if self.record_dirty || record_due {
            self.record_dirty = false;
            self.pushed_dirty = false;
            self.record_written_ms = now;
            self.wrote = true;
            if let Err(err) = self.store.put_queue(&self.record) {
                tracing::error!(queue = %self.record.name, cause = %err, "cannot write the queue record");
                self.turn_error = Some(err.into());
            }
        }
        // Give memory back after a large backlog has drained.
        if self.batches.capacity() > 1024 && self.batches.len() * 4 < self.batches.capacity() {
            self.batches.shrink_to(self.batches.len() * 2);
        }
        if !self.wrote && self.deferred.is_empty() {
            return;
        }
        self.wrote = false;
        let outcome = match self.turn_error.take() {
            Some(err) => Err(err),
            None => Ok(self.store.commit()),
        };
        for reply in self.deferred.drain(..) {
            reply(outcome.clone());
        }
    }
}

fn delayed_or_available(available_at_ms: u64, now: u64) -> State {
    if available_at_ms > now {
        State::Delayed {
            until_ms: available_at_ms,
        }
    } else {
        State::Available
    }
}
