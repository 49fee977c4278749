//! The queue actor: the task that drives one queue's [`QueueState`] and is the only
//! writer of that queue's records.
//!
//! It is the loop around the state machine: it takes requests from its mailbox,
//! keeps one timer for the state's next deadline, applies the records a turn wrote
//! to the queue's log, asks the store for a commit, and sends the replies.
//!
//! # Turns
//! The actor takes up to [`MAILBOX_BATCH`] requests from its mailbox at once (a
//! turn). It first tells the state the time ([`QueueState::advance`], so an expired
//! lease is back in the queue before any request of the turn looks at it), then runs
//! the requests, serves long-poll waiters in arrival order, and finally applies the
//! turn's log writes and asks the store for one commit covering them. Replies that
//! the durability contract covers carry that commit's ticket; the caller waits for
//! it, the actor never does.
//!
//! While a flush is running, writes made now could only be covered by the next one;
//! so unless the turn must finish (the queue stops), the actor holds its writes and
//! replies until the running flush ends, gathering the turns in between into one
//! batch record and one state record per touched batch. No reply waits longer than
//! it would have: its flush could not have started earlier.
//!
//! # Blocking
//! Log writes are plain sled inserts and removes (memory, then sled's own I/O
//! threads) and run on the runtime worker; the flushes and fsyncs run on the
//! committer thread. What may block for long runs off the runtime: loading a
//! queue (in the registry) and deleting a queue's trees (below).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admission::Admission;
use super::clock::Clock;
use super::handle::{QueueHandle, WeakQueueHandle};
use super::history::HistoryUpdate;
use super::recovery::record_from_meta;
use super::staging::LogWrite;
use super::state::{Ask, Counters, Env, Event, QueueState, Reserved, Settle};
use super::transfer::Mover;
use super::types::{
    MessageView, NewMessage, Origin, QueueName, QueueStats, SettingsPatch, Transfer,
};
use super::waiters::WaiterId;
use crate::error::QueueError;
use crate::metrics::{QueueGauges, QueueMetrics};
use crate::storage::{Batch, CommitTicket, QueueLog, Store};

/// Most requests handled in one turn.
pub const MAILBOX_BATCH: usize = 128;
/// Capacity of a queue's mailbox; senders wait when it is full (backpressure).
pub const MAILBOX_CAPACITY: usize = 1024;

/// A reply that may have to wait for a flush before it is acknowledged.
pub(crate) type Acked<T> = Result<(T, CommitTicket), QueueError>;

/// A front end's edit of the attachment: the current one in, the new one out, or a
/// refusal that goes back to the front end as it is.
pub(super) type Edit = Box<dyn FnOnce(&[u8]) -> Result<bytes::Bytes, Refusal> + Send>;
/// An attachment edit's refusal, of the front end's own type.
pub(super) type Refusal = Box<dyn std::any::Any + Send>;

type Reply<T> = oneshot::Sender<T>;

/// One request in a queue actor's mailbox (built by [`QueueHandle`]).
pub(super) enum ActorRequest {
    Push {
        messages: Vec<NewMessage>,
        reply: Reply<Acked<Vec<u64>>>,
    },
    Reserve {
        ask: Ask,
        wait_ms: u64,
        reply: Reply<Acked<Vec<MessageView>>>,
    },
    Delete {
        /// (message id, reservation id); all or nothing.
        entries: Vec<(u64, Option<u64>)>,
        reply: Reply<Acked<usize>>,
    },
    Touch {
        id: u64,
        reservation_id: u64,
        timeout_ms: Option<u64>,
        reply: Reply<Result<super::types::Lease, QueueError>>,
    },
    Release {
        id: u64,
        reservation_id: u64,
        delay_ms: u64,
        reply: Reply<Acked<()>>,
    },
    /// Push queues: the end of a delivery round.
    Settle {
        id: u64,
        reservation_id: u64,
        done: u64,
        then: Settle,
        reply: Reply<Acked<()>>,
    },
    /// Push queues: subscribers acknowledged a delivery they answered 202.
    Acknowledge {
        id: u64,
        reservation_id: u64,
        done: u64,
        required: u64,
        reply: Reply<Acked<bool>>,
    },
    Peek {
        n: usize,
        reply: Reply<Result<Vec<MessageView>, QueueError>>,
    },
    Get {
        id: u64,
        reply: Reply<Result<MessageView, QueueError>>,
    },
    Info {
        reply: Reply<Result<QueueStats, QueueError>>,
    },
    /// Boxed: the largest request, rare, and every mailbox slot is as large as
    /// the largest variant.
    Update(Box<UpdateRequest>),
    Clear {
        reply: Reply<Acked<usize>>,
    },
    /// Removes the queue's storage and stops the actor.
    Destroy {
        reply: Reply<Acked<()>>,
    },
    /// Moves up to n available messages to another queue.
    Redrive {
        to: QueueName,
        n: usize,
        reply: Reply<Result<usize, QueueError>>,
    },
    /// Takes in messages moved from another queue.
    Adopt {
        messages: Vec<Transfer>,
        reply: Reply<Acked<usize>>,
    },
    /// The outcome of a move this actor started.
    TransferDone {
        ids: Vec<u64>,
        moved: bool,
    },
    /// A step of an atomic hand-off (`state/hand_off.rs`); boxed, like Update.
    HandOff(Box<HandOffStep>),
}

/// The steps of an atomic hand-off, in the order the driver (`transfer.rs`)
/// sends them.
pub(super) enum HandOffStep {
    /// 1. Hold the source message.
    Begin {
        id: u64,
        reservation_id: u64,
        reply: Reply<Result<(), QueueError>>,
    },
    /// 2. Stage follow-ups here (acknowledged once durable).
    Stage {
        origin: Origin,
        messages: Vec<NewMessage>,
        reply: Reply<Acked<Vec<u64>>>,
    },
    /// 3. Delete the source message (acknowledged once durable: the commit
    ///    point), or give it its state back.
    End {
        id: u64,
        commit: bool,
        reply: Reply<Acked<()>>,
    },
    /// 4. Release (or remove) the follow-ups staged here.
    Release { origin: Origin, commit: bool },
}

impl ActorRequest {
    /// Answers the request with `err` without running it.
    fn refuse(self, err: QueueError) {
        match self {
            ActorRequest::Push { reply, .. } => drop(reply.send(Err(err))),
            ActorRequest::Reserve { reply, .. } => drop(reply.send(Err(err))),
            ActorRequest::Delete { reply, .. } | ActorRequest::Clear { reply } => {
                drop(reply.send(Err(err)));
            }
            ActorRequest::Touch { reply, .. } => drop(reply.send(Err(err))),
            ActorRequest::Release { reply, .. } | ActorRequest::Settle { reply, .. } => {
                drop(reply.send(Err(err)));
            }
            ActorRequest::Acknowledge { reply, .. } => drop(reply.send(Err(err))),
            ActorRequest::Peek { reply, .. } => drop(reply.send(Err(err))),
            ActorRequest::Get { reply, .. } => drop(reply.send(Err(err))),
            ActorRequest::Info { reply } => drop(reply.send(Err(err))),
            ActorRequest::Update(update) => drop(update.reply.send(Err(err))),
            ActorRequest::Destroy { reply } => drop(reply.send(Err(err))),
            ActorRequest::Redrive { reply, .. } => drop(reply.send(Err(err))),
            ActorRequest::Adopt { reply, .. } => drop(reply.send(Err(err))),
            ActorRequest::TransferDone { .. } => {}
            ActorRequest::HandOff(step) => match *step {
                HandOffStep::Begin { reply, .. } => drop(reply.send(Err(err))),
                HandOffStep::Stage { reply, .. } => drop(reply.send(Err(err))),
                HandOffStep::End { reply, .. } => drop(reply.send(Err(err))),
                HandOffStep::Release { .. } => {}
            },
        }
    }
}

/// A settings change and an optional attachment edit, applied together.
pub(super) struct UpdateRequest {
    pub(super) patch: SettingsPatch,
    pub(super) edit: Option<Edit>,
    pub(super) reply: Reply<Acked<Result<QueueStats, Refusal>>>,
}

/// What every actor of a server shares.
#[derive(Clone)]
pub(crate) struct ActorContext {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) mover: Mover,
    pub(crate) tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    /// The limits a push is admitted against, and the bytes every queue holds
    /// (each actor reports its own after every turn). Admission happens here,
    /// before the state machine, so the log only ever holds accepted pushes.
    pub(crate) admission: Arc<Admission>,
    /// Most long polls parked on one queue ([`QueueState::set_max_waiters`]).
    pub(crate) max_waiters: usize,
}

/// What the state machine reaches through [`Env`]: the store's ids, the queue's
/// log (with the batch record read last, as reserves read one batch many times),
/// and the reply channels of parked reserves.
struct Io {
    store: Arc<dyn Store>,
    log: Box<dyn QueueLog>,
    cached: Option<(u64, Batch)>,
    parked: HashMap<WaiterId, Reply<Acked<Vec<MessageView>>>>,
}

impl Env for Io {
    fn allocate_ids(&mut self, n: u64) -> Result<u64, QueueError> {
        Ok(self.store.allocate_ids(n)?)
    }

    fn read_body(&mut self, batch: u64, slot: u32) -> Result<Option<bytes::Bytes>, QueueError> {
        let slot = usize::try_from(slot).unwrap_or(usize::MAX);
        // Batch records are written once and their keys never reused, so a cached
        // copy is never stale.
        if let Some((key, cached)) = &self.cached {
            if *key == batch {
                return Ok(cached.body(slot));
            }
        }
        let Some(record) = self.log.batch(batch)? else {
            return Ok(None);
        };
        let body = record.body(slot);
        self.cached = Some((batch, record));
        Ok(body)
    }

    fn is_waiting(&self, waiter: WaiterId) -> bool {
        self.parked
            .get(&waiter)
            .is_some_and(|reply| !reply.is_closed())
    }

    fn read_history(&mut self, id: u64) -> Result<Option<Vec<u8>>, QueueError> {
        Ok(self.log.history(id)?)
    }
}

/// A reply held until the end of the turn, when the turn's writes are done and the
/// commit ticket is known (or a write failed).
type Deferred = Box<dyn FnOnce(Result<CommitTicket, QueueError>) + Send>;

struct Actor {
    /// The store's id of the queue (names its trees and record).
    id: u64,
    state: QueueState,
    io: Io,
    ctx: ActorContext,
    me: WeakQueueHandle,
    /// A write of this turn failed: its held replies get this error.
    turn_error: Option<QueueError>,
    /// Something was written this turn.
    wrote: bool,
    deferred: Vec<Deferred>,
    /// The reply of a Destroy that stopped the turn.
    destroy: Option<Reply<Acked<()>>>,
    /// The queue's bytes as last reported to [`Admission::account`].
    reported_bytes: u64,
    /// Where the state's figures are published after each turn.
    metrics: Arc<QueueMetrics>,
    /// What was published last.
    published: Option<(QueueGauges, Counters)>,
}

/// The gauges of `state` for the metrics.
fn gauges(state: &QueueState) -> QueueGauges {
    let (available, reserved, delayed) = state.counts();
    QueueGauges {
        available,
        reserved,
        delayed,
        bytes: state.bytes(),
        head_pushed_at_ms: state.head_pushed_at_ms(),
    }
}

/// Starts the actor of queue `id` with `state` (new or rebuilt) and returns its
/// handle.
pub(super) fn spawn(
    id: u64,
    state: QueueState,
    log: Box<dyn QueueLog>,
    ctx: &ActorContext,
) -> QueueHandle {
    let mut state = state;
    state.set_max_waiters(ctx.max_waiters);
    let reported_bytes = state.bytes();
    ctx.admission.account(0, reported_bytes);
    let (tx, rx) = mpsc::channel(MAILBOX_CAPACITY);
    let metrics = Arc::new(QueueMetrics::default());
    metrics.publish(&gauges(&state), state.counters(), ctx.clock.now_ms());
    let handle = QueueHandle::new(
        state.meta().name.clone(),
        state.settings().kind(),
        tx,
        ctx.shutdown.clone(),
        Arc::clone(&metrics),
    );
    let actor = Actor {
        id,
        state,
        io: Io {
            store: Arc::clone(&ctx.store),
            log,
            cached: None,
            parked: HashMap::new(),
        },
        ctx: ctx.clone(),
        me: handle.downgrade(),
        turn_error: None,
        wrote: false,
        deferred: Vec::new(),
        destroy: None,
        reported_bytes,
        metrics,
        published: None,
    };
    ctx.tasks.spawn(actor.run(rx));
    handle
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

impl Actor {
    async fn run(mut self, mut mailbox: mpsc::Receiver<ActorRequest>) {
        let shutdown = self.ctx.shutdown.clone();
        // Grows with the turns' batches (up to MAILBOX_BATCH) and shrinks after a
        // burst, so an idle queue holds next to nothing.
        let mut requests = Vec::new();
        // The running flush this actor's unwritten work is waiting for, if any.
        let mut held: Option<CommitTicket> = None;
        // One timer for the state's next deadline; re-armed only when a deadline
        // comes earlier than the one it is armed for (firing early is harmless).
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<u64> = None;
        loop {
            let mut force = false;
            tokio::select! {
                received = mailbox.recv_many(&mut requests, MAILBOX_BATCH) => {
                    if received == 0 {
                        break;
                    }
                    let now = self.ctx.clock.now_ms();
                    self.state.advance(now);
                    self.dispatch_events();
                    for request in requests.drain(..) {
                        if self.destroy.is_some() {
                            request.refuse(QueueError::QueueNotFound(self.state.meta().name.to_string()));
                        } else {
                            self.handle(request, now);
                        }
                    }
                    if requests.capacity() > 8 && received * 4 < requests.capacity() {
                        requests.shrink_to(received * 2);
                    }
                }
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    self.state.advance(self.ctx.clock.now_ms());
                    self.dispatch_events();
                }
                () = wait_for_flush(held.clone()), if held.is_some() => {
                    force = true;
                }
                () = shutdown.cancelled() => break,
            }
            self.finish_turn(&mut held, force, false);
            self.report_bytes();
            self.publish_metrics();
            if self.destroy.is_some() {
                break;
            }
            if let Some(next) = self.state.next_deadline() {
                if armed.is_none_or(|at| next < at) {
                    timer.as_mut().reset(self.ctx.clock.instant_at(next));
                    armed = Some(next);
                }
            }
        }
        // Queue destroyed, mailbox closed or server stopping: finish what was done,
        // answer what is still queued, then tell the waiters.
        self.finish_turn(&mut held, true, true);
        // The queue's bytes no longer count (destroyed, or the server stops).
        self.ctx.admission.account(self.reported_bytes, 0);
        mailbox.close();
        let name = self.state.meta().name.to_string();
        let gone = if self.destroy.is_some() {
            QueueError::QueueNotFound(name)
        } else {
            QueueError::Unavailable("the server is shutting down".into())
        };
        while let Ok(request) = mailbox.try_recv() {
            request.refuse(gone.clone());
        }
        for waiter in self.state.drain_waiters() {
            if let Some(reply) = self.io.parked.remove(&waiter) {
                let _ = reply.send(Err(gone.clone()));
            }
        }
        if let Some(reply) = self.destroy.take() {
            let store = Arc::clone(&self.ctx.store);
            let id = self.id;
            // sled drops the trees' pages: off the runtime's workers.
            let result = tokio::task::spawn_blocking(move || store.delete_queue(id))
                .await
                .map_err(|err| QueueError::Internal(format!("queue deletion stopped: {err}")))
                .and_then(|deleted| deleted.map_err(QueueError::from));
            let _ = reply.send(result.map(|()| ((), self.ctx.store.commit())));
        }
    }

    fn handle(&mut self, request: ActorRequest, now: u64) {
        let state = &mut self.state;
        let io = &mut self.io;
        match request {
            ActorRequest::Push { messages, reply } => {
                let result = admit(&self.ctx.admission, state, &messages)
                    .and_then(|()| state.push(now, io, messages));
                self.reply_acked(reply, result);
            }
            ActorRequest::Reserve {
                ask,
                wait_ms,
                reply,
            } => match state.reserve(now, io, ask.clone(), wait_ms) {
                Ok(Reserved::Parked(waiter)) => {
                    io.parked.insert(waiter, reply);
                }
                Ok(Reserved::Now(messages)) => self.send_reserved(reply, ask.delete, Ok(messages)),
                Err(err) => drop(reply.send(Err(err))),
            },
            ActorRequest::Delete { entries, reply } => {
                let result = state.delete(now, &entries);
                self.reply_acked(reply, result);
            }
            ActorRequest::Touch {
                id,
                reservation_id,
                timeout_ms,
                reply,
            } => drop(reply.send(state.touch(now, io, id, reservation_id, timeout_ms))),
            ActorRequest::Release {
                id,
                reservation_id,
                delay_ms,
                reply,
            } => {
                let result = state.release(now, id, reservation_id, delay_ms);
                self.reply_acked(reply, result);
            }
            ActorRequest::Settle {
                id,
                reservation_id,
                done,
                then,
                reply,
            } => {
                let result = state.settle(now, id, reservation_id, done, then);
                self.reply_acked(reply, result);
            }
            ActorRequest::Acknowledge {
                id,
                reservation_id,
                done,
                required,
                reply,
            } => {
                let result = state.acknowledge(now, id, reservation_id, done, required);
                self.reply_acked(reply, result);
            }
            ActorRequest::Peek { n, reply } => drop(reply.send(state.peek(now, io, n))),
            ActorRequest::Get { id, reply } => drop(reply.send(state.get(now, io, id))),
            ActorRequest::Info { reply } => drop(reply.send(Ok(state.stats()))),
            ActorRequest::Update(request) => {
                let UpdateRequest { patch, edit, reply } = *request;
                let result = update(state, &patch, edit);
                self.reply_acked(reply, result);
            }
            ActorRequest::Clear { reply } => {
                let count = state.clear();
                self.reply_acked(reply, Ok(count));
            }
            ActorRequest::Redrive { to, n, reply } => match state.redrive(io, &to, n) {
                Ok(messages) if messages.is_empty() => drop(reply.send(Ok(0))),
                Ok(messages) => self
                    .ctx
                    .mover
                    .start(self.me.clone(), to, messages, Some(reply)),
                Err(err) => drop(reply.send(Err(err))),
            },
            ActorRequest::Adopt { messages, reply } => {
                let result = state.adopt(now, io, messages);
                self.reply_acked(reply, result);
            }
            ActorRequest::TransferDone { ids, moved } => state.transfer_done(&ids, moved),
            ActorRequest::HandOff(step) => self.hand_off(*step, now),
            ActorRequest::Destroy { reply } => self.destroy = Some(reply),
        }
        self.dispatch_events();
    }

    /// Runs one step of a hand-off.
    fn hand_off(&mut self, step: HandOffStep, now: u64) {
        let state = &mut self.state;
        match step {
            HandOffStep::Begin {
                id,
                reservation_id,
                reply,
            } => drop(reply.send(state.hand_off_begin(now, id, reservation_id))),
            HandOffStep::Stage {
                origin,
                messages,
                reply,
            } => {
                let result = admit(&self.ctx.admission, state, &messages)
                    .and_then(|()| state.stage_follow_ups(now, &mut self.io, &origin, messages));
                self.reply_acked(reply, result);
            }
            HandOffStep::End { id, commit, reply } => {
                let result = state.hand_off_end(now, id, commit);
                self.reply_acked(reply, result);
            }
            HandOffStep::Release { origin, commit } => {
                state.release_follow_ups(now, &origin, commit);
            }
        }
    }

    /// Publishes the state's figures to the metrics, if they changed.
    fn publish_metrics(&mut self) {
        let now = (gauges(&self.state), *self.state.counters());
        if self.published != Some(now) {
            self.metrics
                .publish(&now.0, &now.1, self.ctx.clock.now_ms());
            self.published = Some(now);
        }
    }

    /// Tells admission what the queue holds now, if that changed.
    fn report_bytes(&mut self) {
        let bytes = self.state.bytes();
        if bytes != self.reported_bytes {
            self.ctx.admission.account(self.reported_bytes, bytes);
            self.reported_bytes = bytes;
        }
    }

    /// Delivers what the state machine said must happen for others.
    fn dispatch_events(&mut self) {
        for event in self.state.take_events() {
            match event {
                Event::Woken {
                    waiter,
                    delete,
                    result,
                } => {
                    if let Some(reply) = self.io.parked.remove(&waiter) {
                        self.send_reserved(reply, delete, result);
                    }
                }
                Event::WaitEnded(waiter) => {
                    if let Some(reply) = self.io.parked.remove(&waiter) {
                        let _ = reply.send(Ok((Vec::new(), CommitTicket::ready())));
                    }
                }
                Event::DeadLetters { to, messages } => {
                    self.ctx.mover.start(self.me.clone(), to, messages, None);
                }
            }
        }
    }

    fn send_reserved(
        &mut self,
        reply: Reply<Acked<Vec<MessageView>>>,
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

    /// Sends an error at once, or holds a success until the turn's commit ticket.
    fn reply_acked<T: Send + 'static>(
        &mut self,
        reply: Reply<Acked<T>>,
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

    /// Ends a turn: serve waiters, write the turn's records, commit, send held
    /// replies. See the module docs for `held` and `force`; `finally` (the actor
    /// stops) also writes a throttled queue record.
    fn finish_turn(&mut self, held: &mut Option<CommitTicket>, force: bool, finally: bool) {
        let now = self.ctx.clock.now_ms();
        let destroyed = self.destroy.is_some();
        if !destroyed {
            self.state.serve_waiters(now, &mut self.io);
            self.dispatch_events();
        }
        let unwritten = self.state.has_unwritten() || !self.deferred.is_empty();
        if !force && !destroyed && unwritten {
            if held.is_some() {
                return;
            }
            if let Some(running) = self.ctx.store.flush_running() {
                *held = Some(running);
                return;
            }
        }
        *held = None;
        if !destroyed {
            let writes = self.state.take_writes(now, finally);
            self.apply(writes.log);
            if writes.record {
                self.wrote = true;
                let record = record_from_meta(self.id, self.state.meta());
                if let Err(err) = self.ctx.store.put_queue(&record) {
                    tracing::error!(queue = %record.name, cause = %err, "cannot write the queue record");
                    self.turn_error = Some(err.into());
                }
            }
        }
        if !self.wrote && self.deferred.is_empty() {
            return;
        }
        self.wrote = false;
        if self.deferred.is_empty() {
            // Nothing of this turn is acknowledged on durability (a plain reserve's
            // count and lease, a lease ending, a delay ending; a failed write was
            // logged): its writes ride on the next commit anyone asks for, or on
            // sled's background flush at most `storage::FLUSH_EVERY_MS` later,
            // instead of costing an fsync of their own.
            self.turn_error = None;
            return;
        }
        let outcome = match self.turn_error.take() {
            Some(err) => Err(err),
            None => Ok(self.ctx.store.commit()),
        };
        for reply in self.deferred.drain(..) {
            reply(outcome.clone());
        }
    }

    /// Applies a turn's log writes in order. A batch record that cannot be written
    /// takes its messages out of the queue again (their pushes fail with the turn).
    fn apply(&mut self, writes: Vec<LogWrite>) {
        for write in writes {
            self.wrote = true;
            let key = match &write {
                LogWrite::Batch { key, .. } => Some(*key),
                _ => None,
            };
            let result = apply_write(&*self.io.log, &write);
            if let Err(err) = result {
                tracing::error!(queue = %self.state.meta().name, cause = %err, "a write failed");
                if let Some(key) = key {
                    self.state.batch_lost(key);
                }
                self.turn_error = Some(err.into());
            }
        }
    }
}

/// Whether `messages` may enter `state`'s queue ([`Admission::admit_push`]).
fn admit(
    admission: &Admission,
    state: &QueueState,
    messages: &[NewMessage],
) -> Result<(), QueueError> {
    let bytes = messages.iter().map(|m| m.body.len()).sum::<usize>();
    admission.admit_push(
        &state.meta().name,
        state.message_count(),
        state.bytes(),
        messages.len(),
        u64::try_from(bytes).unwrap_or(u64::MAX),
    )
}

/// Applies one log write to `log`.
pub(super) fn apply_write(
    log: &dyn QueueLog,
    write: &LogWrite,
) -> Result<(), crate::storage::StorageError> {
    match write {
        LogWrite::Clear => log.clear(),
        LogWrite::Batch { key, value } => log.put_batch(*key, value),
        LogWrite::BatchState { key, value } => log.put_batch_state(*key, value),
        LogWrite::RemoveBatch { key } => log.remove_batch(*key),
        LogWrite::History { id, update } => write_history(log, *id, update),
    }
}

/// Writes a change to message `id`'s delivery history (an append reads the
/// stored one first: only this actor writes it).
pub(super) fn write_history(
    log: &dyn QueueLog,
    id: u64,
    update: &HistoryUpdate,
) -> Result<(), crate::storage::StorageError> {
    let stored = match update {
        HistoryUpdate::Append { .. } => log.history(id)?,
        HistoryUpdate::Remove | HistoryUpdate::Replace(_) => None,
    };
    match update.apply(stored.as_deref()) {
        Some(value) => log.put_history(id, &value),
        None => log.remove_history(id),
    }
}

/// Applies a settings patch and an attachment edit together, or neither.
fn update(
    state: &mut QueueState,
    patch: &SettingsPatch,
    edit: Option<Edit>,
) -> Result<Result<QueueStats, Refusal>, QueueError> {
    let settings = patch.apply(&state.meta().name, state.settings())?;
    let attachment = match edit {
        Some(edit) => match edit(&state.meta().attachment) {
            Ok(attachment) => Some(attachment),
            Err(refusal) => return Ok(Err(refusal)),
        },
        None => None,
    };
    state.set_settings(settings);
    if let Some(attachment) = attachment {
        state.set_attachment(attachment);
    }
    Ok(Ok(state.stats()))
}
