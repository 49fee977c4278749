//! Tests of the queue state machine without sockets, threads or clocks.
//!
//! [`Harness`] drives a [`QueueState`] the way the actor does (tell it the time,
//! run an operation, serve the parked reserves, write the turn's records), with a
//! [`ManualClock`]-style `now` it moves by hand, ids from a counter, and the
//! queue's records in a [`MemoryLog`], so a "restart" rebuilds the queue from its
//! own records exactly as the server does at start. `rules.rs` checks each rule of
//! docs/semantics.md; `model.rs` compares random operation sequences against a
//! small reference model.
//!
//! [`ManualClock`]: super::clock::ManualClock

mod hand_off;
mod model;
mod push;
mod rules;

use std::collections::BTreeSet;

use bytes::Bytes;

use super::actor::write_history;
use super::recovery::{meta_from_record, rebuild, record_from_meta};
use super::staging::LogWrite;
use super::state::{Ask, Env, Event, QueueMeta, QueueState, Reserved};
use super::types::{
    Lease, MessageView, NewMessage, QueueName, QueueSettings, QueueStats, SettingsPatch, Transfer,
};
use super::waiters::WaiterId;
use crate::error::QueueError;
use crate::storage::{MemoryLog, QueueLog};

/// The time the harness starts at (any fixed value: runs are deterministic).
pub(super) const START_MS: u64 = 1_700_000_000_000;

/// What the state machine reaches outside: a counter for ids, the memory log for
/// bodies, and which parked reserves' clients went away.
pub(super) struct TestIo {
    pub(super) next_id: u64,
    pub(super) log: MemoryLog,
    pub(super) gone: BTreeSet<WaiterId>,
}

impl Env for TestIo {
    fn allocate_ids(&mut self, n: u64) -> Result<u64, QueueError> {
        let first = self.next_id;
        self.next_id += n;
        Ok(first)
    }

    fn read_body(&mut self, batch: u64, slot: u32) -> Result<Option<Bytes>, QueueError> {
        let batch = self.log.batch(batch)?;
        Ok(batch.and_then(|b| b.body(usize::try_from(slot).unwrap_or(usize::MAX))))
    }

    fn is_waiting(&self, waiter: WaiterId) -> bool {
        !self.gone.contains(&waiter)
    }

    fn read_history(&mut self, id: u64) -> Result<Option<Vec<u8>>, QueueError> {
        Ok(self.log.history(id)?)
    }
}

/// One queue driven by hand; see the module docs.
pub(super) struct Harness {
    pub(super) state: QueueState,
    pub(super) io: TestIo,
    pub(super) now: u64,
    /// The queue record as last written.
    pub(super) record: QueueMeta,
    /// Events the state machine produced, in order, not yet looked at.
    pub(super) events: Vec<Event>,
}

pub(super) fn bodies(texts: &[&str]) -> Vec<NewMessage> {
    texts
        .iter()
        .map(|t| NewMessage {
            key: None,
            priority: crate::queue::types::DEFAULT_PRIORITY,
            body: Bytes::copy_from_slice(t.as_bytes()),
            delay_ms: 0,
        })
        .collect()
}

pub(super) fn text(m: &MessageView) -> &str {
    std::str::from_utf8(&m.body).unwrap_or("<binary>")
}

impl Harness {
    pub(super) fn new() -> Self {
        Self::with_settings(QueueSettings::default())
    }

    pub(super) fn with_settings(settings: QueueSettings) -> Self {
        Self::named("q", settings)
    }

    /// A queue named `name`.
    pub(super) fn named(name: &str, settings: QueueSettings) -> Self {
        let meta = QueueMeta {
            name: QueueName::new(name).expect("name"),
            created_at_ms: START_MS,
            settings,
            total_pushed: 0,
            attachment: Bytes::new(),
            processing: None,
        };
        Harness {
            state: QueueState::new(meta.clone()),
            io: TestIo {
                next_id: 1,
                log: MemoryLog::default(),
                gone: BTreeSet::new(),
            },
            now: START_MS,
            record: meta,
            events: Vec::new(),
        }
    }

    /// Ends a turn as the actor does: serve the parked reserves, collect events.
    pub(super) fn end_turn(&mut self) {
        self.state.serve_waiters(self.now, &mut self.io);
        self.events.extend(self.state.take_events());
    }

    /// Moves the clock to `now` (not backwards) and fires what is due, as a timer
    /// turn of the actor.
    pub(super) fn at(&mut self, now: u64) {
        assert!(now >= self.now, "the harness clock only moves forward");
        self.now = now;
        self.state.advance(now);
        self.events.extend(self.state.take_events());
        self.end_turn();
    }

    /// Moves the clock forward by `ms`.
    pub(super) fn advance(&mut self, ms: u64) {
        self.at(self.now + ms);
    }

    pub(super) fn op<T>(&mut self, run: impl FnOnce(&mut QueueState, u64, &mut TestIo) -> T) -> T {
        self.state.advance(self.now);
        let out = run(&mut self.state, self.now, &mut self.io);
        self.events.extend(self.state.take_events());
        self.end_turn();
        out
    }

    pub(super) fn push(&mut self, texts: &[&str]) -> Vec<u64> {
        let messages = bodies(texts);
        self.op(|s, now, io| s.push(now, io, messages))
            .expect("push")
    }

    pub(super) fn push_delayed(&mut self, text: &str, delay_ms: u64) -> u64 {
        let messages = vec![NewMessage {
            key: None,
            priority: crate::queue::types::DEFAULT_PRIORITY,
            body: Bytes::copy_from_slice(text.as_bytes()),
            delay_ms,
        }];
        self.op(|s, now, io| s.push(now, io, messages))
            .expect("push")[0]
    }

    pub(super) fn try_reserve(
        &mut self,
        n: usize,
        timeout_ms: Option<u64>,
        wait_ms: u64,
        delete: bool,
    ) -> Result<Reserved, QueueError> {
        self.try_reserve_as(n, timeout_ms, wait_ms, delete, None)
    }

    /// As [`Harness::try_reserve`], by consumer `consumer` (delivery history).
    pub(super) fn try_reserve_as(
        &mut self,
        n: usize,
        timeout_ms: Option<u64>,
        wait_ms: u64,
        delete: bool,
        consumer: Option<&str>,
    ) -> Result<Reserved, QueueError> {
        let ask = Ask {
            n,
            timeout_ms,
            delete,
            consumer: consumer.map(std::sync::Arc::from),
        };
        self.op(|s, now, io| s.reserve(now, io, ask, wait_ms))
    }

    /// Reserves without waiting; the messages.
    pub(super) fn reserve(&mut self, n: usize, timeout_ms: Option<u64>) -> Vec<MessageView> {
        match self.try_reserve(n, timeout_ms, 0, false).expect("reserve") {
            Reserved::Now(messages) => messages,
            Reserved::Parked(_) => unreachable!("a reserve without wait never parks"),
        }
    }

    /// Parks a long poll; its id.
    pub(super) fn wait(&mut self, n: usize, wait_ms: u64) -> WaiterId {
        match self.try_reserve(n, None, wait_ms, false).expect("reserve") {
            Reserved::Parked(waiter) => waiter,
            Reserved::Now(messages) => panic!("expected to park, got {messages:?}"),
        }
    }

    pub(super) fn delete(&mut self, entries: &[(u64, Option<u64>)]) -> Result<usize, QueueError> {
        self.op(|s, now, _| s.delete(now, entries))
    }

    pub(super) fn touch(
        &mut self,
        id: u64,
        reservation_id: u64,
        timeout_ms: Option<u64>,
    ) -> Result<Lease, QueueError> {
        self.op(|s, now, io| s.touch(now, io, id, reservation_id, timeout_ms))
    }

    pub(super) fn release(
        &mut self,
        id: u64,
        reservation_id: u64,
        delay_ms: u64,
    ) -> Result<(), QueueError> {
        self.op(|s, now, _| s.release(now, id, reservation_id, delay_ms))
    }

    pub(super) fn peek(&mut self, n: usize) -> Vec<MessageView> {
        self.op(|s, now, io| s.peek(now, io, n)).expect("peek")
    }

    pub(super) fn peek_ids(&mut self, n: usize) -> Vec<u64> {
        self.peek(n).iter().map(|m| m.info.id).collect()
    }

    pub(super) fn get(&mut self, id: u64) -> Result<MessageView, QueueError> {
        self.op(|s, now, io| s.get(now, io, id))
    }

    pub(super) fn stats(&self) -> QueueStats {
        self.state.stats()
    }

    pub(super) fn update(&mut self, patch: &SettingsPatch) -> Result<(), QueueError> {
        let settings = patch.apply(&self.state.meta().name, self.state.settings())?;
        // A turn of the actor: parked reserves a new cap lets through are served.
        self.op(|s, _, _| s.set_settings(settings));
        Ok(())
    }

    pub(super) fn clear(&mut self) -> usize {
        self.op(|s, _, _| s.clear())
    }

    pub(super) fn redrive(&mut self, n: usize) -> Vec<Transfer> {
        let to = QueueName::new("elsewhere").expect("name");
        self.op(|s, _, io| s.redrive(io, &to, n)).expect("redrive")
    }

    pub(super) fn adopt(&mut self, messages: Vec<Transfer>) -> usize {
        self.op(|s, now, io| s.adopt(now, io, messages))
            .expect("adopt")
    }

    pub(super) fn transfer_done(&mut self, ids: &[u64], moved: bool) {
        self.op(|s, _, _| s.transfer_done(ids, moved));
    }

    /// Takes the events produced so far.
    pub(super) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Writes the records of everything so far into the memory log, as the actor
    /// does at the end of a turn (`finally`: as it stops).
    pub(super) fn write(&mut self, finally: bool) -> Vec<LogWrite> {
        let writes = self.state.take_writes(self.now, finally);
        for write in &writes.log {
            let result = match write {
                LogWrite::Clear => self.io.log.clear(),
                LogWrite::Batch { key, value } => self.io.log.put_batch(*key, value),
                LogWrite::BatchState { key, value } => self.io.log.put_batch_state(*key, value),
                LogWrite::RemoveBatch { key } => self.io.log.remove_batch(*key),
                LogWrite::History { id, update } => write_history(&self.io.log, *id, update),
            };
            result.expect("memory log write");
        }
        if writes.record {
            self.record = self.state.meta().clone();
        }
        writes.log
    }

    /// Stops the queue (records written, parked reserves answered "unavailable",
    /// as at shutdown) and rebuilds it from its records, as a server start does.
    /// Returns the parked reserves that were dropped.
    pub(super) fn restart(&mut self) -> Vec<WaiterId> {
        self.write(true);
        let bytes = self.state.bytes();
        let dropped = self.state.drain_waiters();
        let mut loaded = Vec::new();
        self.io
            .log
            .load(&mut |m| loaded.push(m))
            .expect("load the memory log");
        // Through the stored form, as the server reads it.
        let meta = meta_from_record(&record_from_meta(7, &self.record)).expect("record");
        let histories = self.io.log.history_ids().expect("history ids");
        self.state = rebuild(meta, loaded, histories, self.now);
        assert_eq!(
            self.state.bytes(),
            bytes,
            "the bytes a queue holds are those of its stored batches, before and after a restart"
        );
        self.io.gone.clear();
        dropped
    }
}
