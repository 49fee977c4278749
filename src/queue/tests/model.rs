//! The property test of the state machine: random sequences of push, reserve
//! (with long polls and delete), delete, touch, release, peek, get, settings
//! changes, clear, moves in and out (dead letters, redrive, adopt), atomic
//! hand-offs into the queue itself cut at each step (complete, aborted, a crash
//! before and after the commit point), clients going away, record writes, clock
//! advances and restarts (the queue rebuilt from its own records, hand-offs
//! resolved as at a server start) run against [`QueueState`](super::super::state::QueueState) and against
//! [`Model`], a small reference model written from docs/semantics.md; every answer,
//! every event and every counter must agree, and the state machine's next deadline
//! must never be later than the model's next timed event.
//!
//! The model is deliberately naive: a map of messages, each with an order key, a
//! state and its deadlines; a list of parked reserves; time advanced by visiting
//! every timed event in order. Ids and reservation ids are not predicted: the
//! model checks that each one the state machine hands out is fresh and larger than
//! every earlier one (fencing), then uses it.
//!
//! `cargo test --lib model` runs 2,000 cases (a few seconds);
//! `FERROMQ_MODEL_CASES=100000 cargo test --release --lib model` runs more.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use proptest::prelude::*;

use std::sync::Arc;

use super::super::history::{Attempt, Outcome, DEFAULT_DELIVERY_HISTORY};
use super::super::lease::ProcessingTimes;
use super::super::state::{resolve_hand_offs, Event, Reserved, Settle};
use super::super::types::{
    DeadLetterPatch, MessageInfo, MessageState, MessageView, NewMessage, Origin, QueueName,
    SettingsPatch, Transfer, DEFAULT_PRIORITY, DEFAULT_TIMEOUT_MS, MAX_PRIORITY,
};
use super::super::types::{AUTO_TIMEOUT_MS, MAX_TIMEOUT_MS};
use super::super::waiters::WaiterId;
use super::Harness;
use crate::error::QueueError;

/// Which message an operation names: one the test has seen (by index, modulo how
/// many), or one that never existed.
#[derive(Debug, Clone, Copy)]
enum Pick {
    Known(usize),
    Unknown,
}

/// Which reservation id an operation gives.
#[derive(Debug, Clone, Copy)]
enum RidPick {
    /// None at all.
    Absent,
    /// The message's current one (0 if it has none).
    Current,
    /// The one that most recently ran out.
    Expired,
    /// One of its earlier ones.
    Old(usize),
    /// One never issued.
    Wrong,
}

#[derive(Debug, Clone)]
enum Op {
    /// Messages with these delays (0: none), priorities and keys (of a few).
    Push(Vec<(u64, u8, Option<u8>)>),
    Reserve {
        n: usize,
        timeout: Option<u64>,
        wait: u64,
        delete: bool,
        /// The consumer's name (delivery history), one of a few.
        consumer: Option<u8>,
    },
    Delete(Vec<(Pick, RidPick)>),
    Touch(Pick, RidPick, Option<u64>),
    Release(Pick, RidPick, u64),
    Peek(usize),
    Get(Pick),
    Advance(u64),
    Restart,
    Update {
        timeout: Option<u64>,
        expiration_s: Option<u64>,
        /// `Some(None)` removes the dead-letter setting.
        dead_letter: Option<Option<u32>>,
        /// Delivery attempts kept per message.
        delivery_history: Option<u32>,
        /// Most messages in flight per key.
        key_max_in_flight: Option<u32>,
    },
    Clear,
    Redrive(usize),
    /// Messages moved in from elsewhere, with these reserved counts, priorities,
    /// numbers of delivery attempts behind them and keys.
    Adopt(Vec<(u32, u8, u8, Option<u8>)>),
    /// The client of a parked reserve goes away.
    Cancel(usize),
    /// The actor writes its records (otherwise they gather across operations).
    Write,
    /// Push queues: a delivery round ends, these slots delivered: back to the
    /// front after a delay (`Ok`), or held under the same reservation (`Err`).
    Settle(Pick, RidPick, u64, Result<u64, u64>),
    /// Push queues: a subscriber acknowledges (slots done, slots required).
    Acknowledge(Pick, RidPick, u64, u64),
    /// An atomic hand-off of a message into this same queue, follow-ups of
    /// these priorities, run to `Cut` (`state/hand_off.rs`).
    HandOff(Pick, RidPick, Vec<u8>, Cut),
    /// A hand-off's first two steps (the message held, follow-ups of these
    /// priorities staged), its end left to a later `HoldEnd` (or a restart).
    HoldBegin(Pick, RidPick, Vec<u8>),
    /// The end of one of the hand-offs begun (by index): commit or abort.
    HoldEnd(usize, bool),
}

/// Where a hand-off ends.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Every step.
    Complete,
    /// A target refused: the staged follow-ups go, the message gets its state
    /// back.
    Abort,
    /// A crash with the follow-ups written and the deletion not.
    CrashBeforeCommit,
    /// A crash with the deletion written and the follow-ups not yet released.
    CrashAfterCommit,
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![9 => any::<usize>().prop_map(Pick::Known), 1 => Just(Pick::Unknown)]
}

fn rid_pick() -> impl Strategy<Value = RidPick> {
    prop_oneof![
        2 => Just(RidPick::Absent),
        6 => Just(RidPick::Current),
        1 => Just(RidPick::Expired),
        1 => any::<usize>().prop_map(RidPick::Old),
        1 => Just(RidPick::Wrong),
    ]
}

/// No key half the time, else one of three.
fn key() -> impl Strategy<Value = Option<u8>> {
    prop::option::of(0u8..3)
}

/// The name of key `k`.
fn key_name(k: Option<u8>) -> Option<Arc<str>> {
    k.map(|k| Arc::from(["a", "b", "c"][usize::from(k)]))
}

/// Mostly the default priority, some either side, now and then the extremes.
fn priority() -> impl Strategy<Value = u8> {
    prop_oneof![4 => Just(DEFAULT_PRIORITY), 2 => 7u8..=9, 1 => Just(0u8), 1 => Just(MAX_PRIORITY)]
}

fn op() -> impl Strategy<Value = Op> {
    let delay = prop_oneof![3 => Just(0u64), 1 => 1u64..3_000];
    // `AUTO_TIMEOUT_MS`: lease advice from the processing times.
    let timeout = prop_oneof![
        1 => Just(None),
        3 => (100u64..3_000).prop_map(Some),
        1 => Just(Some(AUTO_TIMEOUT_MS)),
    ];
    prop_oneof![
        6 => prop::collection::vec((delay, priority(), key()), 1..=3).prop_map(Op::Push),
        6 => (1usize..=3, timeout.clone(), prop_oneof![3 => Just(0u64), 1 => 100u64..2_000], prop::bool::weighted(0.2), prop::option::of(0u8..3))
            .prop_map(|(n, timeout, wait, delete, consumer)| Op::Reserve { n, timeout, wait, delete, consumer }),
        3 => prop::collection::vec((pick(), rid_pick()), 1..=3).prop_map(Op::Delete),
        2 => (pick(), rid_pick(), timeout.clone()).prop_map(|(m, r, t)| Op::Touch(m, r, t)),
        3 => (pick(), rid_pick(), prop_oneof![2 => Just(0u64), 1 => 1u64..2_000])
            .prop_map(|(m, r, d)| Op::Release(m, r, d)),
        1 => (1usize..=4).prop_map(Op::Peek),
        1 => pick().prop_map(Op::Get),
        5 => prop_oneof![0u64..500, 500u64..4_000].prop_map(Op::Advance),
        1 => Just(Op::Restart),
        1 => (
            prop::option::of(100u64..3_000),
            prop::option::weighted(0.5, 1u64..=5),
            prop::option::weighted(0.5, prop::option::weighted(0.7, 1u32..=3)),
            prop::option::weighted(0.3, prop_oneof![Just(0u32), Just(1), Just(2), Just(10)]),
            prop::option::weighted(0.3, 0u32..=2),
        )
            .prop_map(|(timeout, expiration_s, dead_letter, delivery_history, key_max_in_flight)| Op::Update { timeout, expiration_s, dead_letter, delivery_history, key_max_in_flight }),
        1 => Just(Op::Clear),
        1 => (1usize..=3).prop_map(Op::Redrive),
        1 => prop::collection::vec((0u32..=3, priority(), 0u8..=3, key()), 1..=2).prop_map(Op::Adopt),
        1 => any::<usize>().prop_map(Op::Cancel),
        3 => Just(Op::Write),
        2 => (pick(), rid_pick(), 0u64..4, prop_oneof![(0u64..2_000).prop_map(Ok), (100u64..2_000).prop_map(Err)])
            .prop_map(|(m, r, done, then)| Op::Settle(m, r, done, then)),
        2 => (pick(), rid_pick(), 1u64..4, 1u64..4).prop_map(|(m, r, done, required)| Op::Acknowledge(m, r, done, required)),
        2 => (
            pick(),
            prop_oneof![4 => Just(RidPick::Current), 1 => rid_pick()],
            prop::collection::vec(priority(), 1..=2),
            prop_oneof![
                3 => Just(Cut::Complete),
                1 => Just(Cut::Abort),
                1 => Just(Cut::CrashBeforeCommit),
                1 => Just(Cut::CrashAfterCommit),
            ],
        )
            .prop_map(|(m, r, priorities, cut)| Op::HandOff(m, r, priorities, cut)),
        2 => (pick(), prop_oneof![4 => Just(RidPick::Current), 1 => rid_pick()], prop::collection::vec(priority(), 1..=2))
            .prop_map(|(m, r, priorities)| Op::HoldBegin(m, r, priorities)),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(i, commit)| Op::HoldEnd(i, commit)),
    ]
}

// ----- the reference model ----------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MState {
    Available,
    Delayed(u64),
    Reserved { rid: u64, until: u64 },
    Moving,
}

#[derive(Debug, Clone)]
struct MMsg {
    body: Bytes,
    state: MState,
    /// Queue order within a priority: pushes by id, requeues in front, the
    /// latest first.
    key: i128,
    /// Lower first, before `key`.
    priority: u8,
    reserved_count: u32,
    pushed_at: u64,
    expires_at: u64,
    /// The reservation that ran out most recently (forgotten by a restart).
    last_expired: Option<u64>,
    /// Every reservation it ever had.
    rids: Vec<u64>,
    /// Push queues: the subscriber slots it was delivered to.
    done: u64,
    /// When its current reservation began (a reserve; a touch keeps it); `None`
    /// when not reserved since the last restart.
    since: Option<u64>,
    /// Its delivery attempts, oldest first, the newest `keep` at each append.
    history: Vec<Attempt>,
    /// The current reservation's consumer and touches (forgotten by a restart).
    consumer: Option<Arc<str>>,
    touches: u32,
    /// Its dispatch key.
    dkey: Option<Arc<str>>,
    /// Held for a hand-off: RESERVED, but invisible, its lease and expiry
    /// waiting for the hand-off's end.
    held: bool,
}

/// A hand-off begun and not ended: the message held, and its staged
/// follow-ups (id, body, priority), pushed at `pushed_at`, expiring at
/// `expires_at`; `cleared` once a clear took them.
#[derive(Debug, Clone)]
struct Pending {
    origin: u64,
    follow_ups: Vec<(u64, Bytes, u8)>,
    pushed_at: u64,
    expires_at: u64,
    cleared: bool,
}

#[derive(Debug, Clone)]
struct MWaiter {
    id: WaiterId,
    n: usize,
    timeout: Option<u64>,
    delete: bool,
    consumer: Option<Arc<str>>,
    deadline: u64,
    gone: bool,
}

/// A dead letter as the model checks it: id, reserved_count, priority, body,
/// history, key.
type DeadLetter = (u64, u32, u8, Bytes, Vec<Attempt>, Option<Arc<str>>);

/// What the model says the state machine must report next.
#[derive(Debug)]
enum Expect {
    Woken {
        waiter: WaiterId,
        planned: Vec<MessageView>,
    },
    WaitEnded(WaiterId),
    DeadLetters(Vec<DeadLetter>),
}

#[derive(Debug, Default)]
struct Model {
    msgs: BTreeMap<u64, MMsg>,
    requeues: i128,
    waiters: VecDeque<MWaiter>,
    total_pushed: u64,
    timeout: u64,
    expiration_s: u64,
    dead_letter: Option<u32>,
    /// Every message id seen, for picking.
    known: Vec<u64>,
    max_id: u64,
    /// The largest reservation id issued, and the largest issued before the
    /// current operation began.
    max_rid: u64,
    rid_base: u64,
    rids_seen: std::collections::BTreeSet<u64>,
    expected: VecDeque<Expect>,
    /// Processing times (reserve to delete with the reservation), in order,
    /// across restarts.
    processed: Vec<u64>,
    /// Delivery attempts kept per message.
    keep: u32,
    /// Fair dispatch: when each key was last served ("" for the messages
    /// without a key), while some message has a key; the turn counter; the cap.
    served: BTreeMap<Arc<str>, u64>,
    turn: u64,
    cap: u32,
}

/// The newest `keep` of `attempts`.
fn newest(mut attempts: Vec<Attempt>, keep: u32) -> Vec<Attempt> {
    let keep = usize::try_from(keep).expect("small");
    attempts.split_off(attempts.len().saturating_sub(keep))
}

impl Model {
    fn new() -> Self {
        Model {
            timeout: DEFAULT_TIMEOUT_MS,
            expiration_s: 7 * 24 * 3600,
            keep: DEFAULT_DELIVERY_HISTORY,
            ..Model::default()
        }
    }

    /// Forgets what the state machine forgets: every key's turn when no
    /// message has a key, and a key's turn when it has no message.
    fn forget_idle_keys(&mut self) {
        let keyed: std::collections::BTreeSet<Arc<str>> =
            self.msgs.values().filter_map(|m| m.dkey.clone()).collect();
        if keyed.is_empty() {
            self.served.clear();
        } else {
            self.served
                .retain(|name, _| name.is_empty() || keyed.contains(name));
        }
    }

    /// The message a reserve takes next (semantics: docs/protocol.md, "Fair
    /// dispatch by key"), and its key's name for [`Model::serve_key`].
    fn pick(&self) -> Option<(u64, Arc<str>)> {
        let available = self.available();
        if !self.msgs.values().any(|m| m.dkey.is_some()) {
            return available.first().map(|&id| (id, Arc::from("")));
        }
        let name_of = |m: &MMsg| m.dkey.clone().unwrap_or_else(|| Arc::from(""));
        let mut best: Option<(u64, Arc<str>, u64)> = None;
        for &id in &available {
            let name = name_of(&self.msgs[&id]);
            let in_flight = self
                .msgs
                .values()
                .filter(|m| name_of(m) == name && matches!(m.state, MState::Reserved { .. }))
                .count();
            let capped = !name.is_empty()
                && self.cap > 0
                && in_flight >= usize::try_from(self.cap).expect("small");
            if capped {
                continue;
            }
            let served = self.served.get(&name).copied().unwrap_or(0);
            // `available` is in order, so a key's first message comes first.
            if best
                .as_ref()
                .is_none_or(|(s, n, _)| (served, &name) < (*s, n))
            {
                best = Some((served, name, id));
            }
        }
        best.map(|(_, name, id)| (id, name))
    }

    /// Key `name` was served now (while some message has a key).
    fn serve_key(&mut self, name: Arc<str>) {
        if self.msgs.values().any(|m| m.dkey.is_some()) {
            self.turn += 1;
            self.served.insert(name, self.turn);
        }
    }

    /// The reservation of message `id` ends with `outcome` at `ended`, the
    /// message staying: an attempt in its history (when the queue keeps any).
    fn end_attempt(&mut self, id: u64, ended: u64, outcome: Outcome) {
        let keep = self.keep;
        let m = self.msgs.get_mut(&id).expect("message");
        let consumer = m.consumer.take();
        let touches = std::mem::take(&mut m.touches);
        let MState::Reserved { rid, .. } = m.state else {
            return;
        };
        if keep == 0 {
            return;
        }
        m.history.push(Attempt {
            reservation_id: rid,
            consumer: consumer.unwrap_or_else(|| Arc::from("")),
            reserved_at_ms: m.since.unwrap_or(0),
            ended_at_ms: ended,
            touches,
            outcome,
        });
        m.history = newest(std::mem::take(&mut m.history), keep);
    }

    /// The history `get` shows: the attempts, and the one under way.
    fn history_at(&self, id: u64, now: u64) -> Vec<Attempt> {
        let m = &self.msgs[&id];
        let mut history = m.history.clone();
        if let (MState::Reserved { rid, .. }, true) = (m.state, self.keep > 0) {
            history.push(Attempt {
                reservation_id: rid,
                consumer: m.consumer.clone().unwrap_or_else(|| Arc::from("")),
                reserved_at_ms: m.since.unwrap_or(0),
                ended_at_ms: now,
                touches: m.touches,
                outcome: Outcome::InProgress,
            });
        }
        history
    }

    /// The history a moving message takes along.
    fn history_to_move(
        &self,
        id: u64,
        dead_letter: Option<(u64, &Option<Arc<str>>)>,
    ) -> Vec<Attempt> {
        if self.keep == 0 {
            return Vec::new();
        }
        let mut history = self.msgs[&id].history.clone();
        if let Some((now, consumer)) = dead_letter {
            history.push(Attempt {
                reservation_id: 0,
                consumer: consumer.clone().unwrap_or_else(|| Arc::from("")),
                reserved_at_ms: now,
                ended_at_ms: now,
                touches: 0,
                outcome: Outcome::DeadLettered,
            });
        }
        newest(history, self.keep)
    }

    /// The lease for a reserve's or touch's `timeout`: with `AUTO_TIMEOUT_MS`,
    /// twice the p99 of every processing time so far (a histogram of them, the
    /// one `lease.rs` tests on its own) within 1 s..=24 h once there are 20,
    /// else the queue's timeout.
    fn lease(&self, timeout: Option<u64>) -> u64 {
        match timeout {
            None => self.timeout,
            Some(AUTO_TIMEOUT_MS) => {
                if self.processed.len() < 20 {
                    return self.timeout;
                }
                let mut times = ProcessingTimes::default();
                for &ms in &self.processed {
                    times.record(ms);
                }
                let p99 = times.quantile(0.99).expect("samples");
                (p99 * 2).clamp(1_000, MAX_TIMEOUT_MS)
            }
            Some(ms) => ms,
        }
    }

    fn available(&self) -> Vec<u64> {
        let mut list: Vec<(u8, i128, u64)> = self
            .msgs
            .iter()
            .filter(|(_, m)| m.state == MState::Available)
            .map(|(&id, m)| (m.priority, m.key, id))
            .collect();
        list.sort_unstable();
        list.into_iter().map(|(_, _, id)| id).collect()
    }

    fn info(&self, id: u64) -> Option<MessageView> {
        let m = self.msgs.get(&id).filter(|m| !m.held)?;
        let (state, reserved_until_ms, available_at_ms) = match m.state {
            MState::Available => (MessageState::Available, 0, 0),
            MState::Delayed(until) => (MessageState::Delayed, 0, until),
            MState::Reserved { until, .. } => (MessageState::Reserved, until, 0),
            MState::Moving => return None,
        };
        Some(MessageView {
            info: MessageInfo {
                id,
                reserved_count: m.reserved_count,
                reservation_id: 0,
                reserved_until_ms,
                pushed_at_ms: m.pushed_at,
                available_at_ms,
                expires_at_ms: m.expires_at,
                state,
                push_done: m.done,
                priority: m.priority,
            },
            body: m.body.clone(),
            history: Vec::new(),
            key: m.dkey.clone(),
        })
    }

    /// The earliest timed event: a lease or delay end, an expiry, a wait's end.
    fn next_event(&self) -> Option<u64> {
        let messages = self.msgs.values().filter(|m| !m.held).flat_map(|m| {
            let own = match m.state {
                MState::Delayed(until) | MState::Reserved { until, .. } => Some(until),
                MState::Available | MState::Moving => None,
            };
            own.into_iter().chain([m.expires_at])
        });
        messages
            .chain(self.waiters.iter().map(|w| w.deadline))
            .min()
    }

    /// Everything due at `t`, in the order of the page: leases end (deadline, then message-id
    /// order, each to the front), delays end, messages expire, waits end.
    fn fire(&mut self, t: u64) {
        // In deadline order, then by id (a restart can find leases of
        // several deadlines overdue: those of messages held meanwhile).
        let mut ending: Vec<(u64, u64)> = self
            .msgs
            .iter()
            .filter_map(|(&id, m)| match m.state {
                MState::Reserved { until, .. } if until <= t && !m.held => Some((until, id)),
                _ => None,
            })
            .collect();
        ending.sort_unstable();
        for (_, id) in ending {
            self.lease_end(id);
        }
        for m in self.msgs.values_mut() {
            if matches!(m.state, MState::Delayed(until) if until <= t) {
                m.state = MState::Available;
            }
        }
        self.msgs.retain(|_, m| m.held || m.expires_at > t);
        let mut ended: Vec<&MWaiter> = self.waiters.iter().filter(|w| w.deadline <= t).collect();
        ended.sort_by_key(|w| (w.deadline, w.id));
        let ended: Vec<WaiterId> = ended.into_iter().map(|w| w.id).collect();
        for id in ended {
            self.waiters.retain(|w| w.id != id);
            self.expected.push_back(Expect::WaitEnded(id));
        }
    }

    /// The lease of reserved message `id` ends: to the front, available.
    fn lease_end(&mut self, id: u64) {
        if let MState::Reserved { until, .. } = self.msgs[&id].state {
            self.end_attempt(id, until, Outcome::TimedOut);
        }
        self.requeues += 1;
        let key = -self.requeues;
        let m = self.msgs.get_mut(&id).expect("message");
        if let MState::Reserved { rid, .. } = m.state {
            m.last_expired = Some(rid);
        }
        m.state = MState::Available;
        m.key = key;
    }

    /// Takes up to `n` available messages; the dead-lettered ones go to `expected`.
    fn take(
        &mut self,
        now: u64,
        (n, timeout, delete): (usize, Option<u64>, bool),
        consumer: &Option<Arc<str>>,
    ) -> Vec<MessageView> {
        let until = now.saturating_add(self.lease(timeout));
        let keep = self.keep;
        let mut out = Vec::new();
        let mut dead = Vec::new();
        while out.len() < n {
            let Some((id, name)) = self.pick() else {
                break;
            };
            if self
                .dead_letter
                .is_some_and(|max| self.msgs[&id].reserved_count >= max)
            {
                let history = self.history_to_move(id, Some((now, consumer)));
                let m = self.msgs.get_mut(&id).expect("message");
                m.state = MState::Moving;
                dead.push((
                    id,
                    m.reserved_count,
                    m.priority,
                    m.body.clone(),
                    history,
                    m.dkey.clone(),
                ));
                continue;
            }
            self.serve_key(name);
            let m = self.msgs.get_mut(&id).expect("message");
            m.reserved_count += 1;
            m.last_expired = None;
            let mut view = MessageView {
                info: MessageInfo {
                    id,
                    reserved_count: m.reserved_count,
                    reservation_id: 0,
                    reserved_until_ms: 0,
                    pushed_at_ms: m.pushed_at,
                    available_at_ms: 0,
                    expires_at_ms: m.expires_at,
                    state: MessageState::Deleted,
                    push_done: m.done,
                    priority: m.priority,
                },
                body: m.body.clone(),
                history: Vec::new(),
                key: m.dkey.clone(),
            };
            if delete {
                self.msgs.remove(&id);
            } else {
                // The reservation id is the state machine's to choose: filled in
                // when its answer is compared.
                m.state = MState::Reserved { rid: 0, until };
                m.since = Some(now);
                m.consumer = if keep > 0 { consumer.clone() } else { None };
                m.touches = 0;
                view.info.state = MessageState::Reserved;
                view.info.reserved_until_ms = until;
            }
            out.push(view);
        }
        if !dead.is_empty() {
            self.expected.push_back(Expect::DeadLetters(dead));
        }
        out
    }

    /// Serves the parked reserves, oldest first, while messages are available.
    fn serve(&mut self, now: u64) {
        while self.pick().is_some() {
            let Some(waiter) = self.waiters.front().cloned() else {
                return;
            };
            if waiter.gone {
                self.waiters.pop_front();
                self.expected.push_back(Expect::WaitEnded(waiter.id));
                continue;
            }
            let planned = self.take(
                now,
                (waiter.n, waiter.timeout, waiter.delete),
                &waiter.consumer,
            );
            if planned.is_empty() {
                return; // only dead letters: it keeps waiting
            }
            self.waiters.pop_front();
            self.expected.push_back(Expect::Woken {
                waiter: waiter.id,
                planned,
            });
        }
    }

    /// The answer to delete/touch/release checks of (id, reservation id) at `now`.
    fn check(&self, id: u64, rid: Option<u64>, now: u64) -> Result<(), QueueError> {
        let m = self
            .msgs
            .get(&id)
            .filter(|m| m.state != MState::Moving && !m.held)
            .ok_or(QueueError::MessageNotFound(id))?;
        match (m.state, rid) {
            (
                MState::Reserved {
                    rid: current,
                    until,
                },
                Some(given),
            ) if given == current => {
                if now >= until {
                    Err(QueueError::ReservationExpired(id))
                } else {
                    Ok(())
                }
            }
            (MState::Reserved { .. }, _) => Err(QueueError::ReservationMismatch(id)),
            (_, Some(given)) if Some(given) == m.last_expired => {
                Err(QueueError::ReservationExpired(id))
            }
            (_, Some(_)) => Err(QueueError::ReservationMismatch(id)),
            (_, None) => Ok(()),
        }
    }

    /// A fresh reservation id from the state machine: never seen before, and larger
    /// than every one issued before this operation (a fencing token).
    fn accept_rid(&mut self, id: u64, rid: u64) {
        assert!(
            rid > self.rid_base,
            "reservation id {rid} is not above {}",
            self.rid_base
        );
        assert!(
            self.rids_seen.insert(rid),
            "reservation id {rid} issued twice"
        );
        self.max_rid = self.max_rid.max(rid);
        let m = self.msgs.get_mut(&id).expect("message");
        if let MState::Reserved { rid: slot, .. } = &mut m.state {
            *slot = rid;
        }
        m.rids.push(rid);
    }

    fn add(
        &mut self,
        id: u64,
        body: Bytes,
        state: MState,
        (reserved_count, priority): (u32, u8),
        now: u64,
    ) {
        assert!(
            id > self.max_id || !self.known.contains(&id),
            "id {id} reused"
        );
        self.max_id = self.max_id.max(id);
        self.known.push(id);
        self.total_pushed += 1;
        self.msgs.insert(
            id,
            MMsg {
                body,
                state,
                key: i128::from(id),
                priority,
                reserved_count,
                pushed_at: now,
                expires_at: now.saturating_add(self.expiration_s.saturating_mul(1000)),
                last_expired: None,
                rids: Vec::new(),
                done: 0,
                since: None,
                history: Vec::new(),
                consumer: None,
                touches: 0,
                dkey: None,
                held: false,
            },
        );
    }
}

// ----- running both side by side -------------------------------------------------------

struct Run {
    h: Harness,
    model: Model,
    /// How moves turn out, used in turn.
    outcomes: Vec<bool>,
    next_outcome: usize,
    pushed: u64,
    /// Hand-offs begun and not ended (`Op::HoldBegin`).
    pending: Vec<Pending>,
}

impl Run {
    fn outcome(&mut self) -> bool {
        let moved = self.outcomes[self.next_outcome % self.outcomes.len()];
        self.next_outcome += 1;
        moved
    }

    fn pick(&self, pick: Pick) -> u64 {
        match pick {
            Pick::Known(i) if !self.model.known.is_empty() => {
                self.model.known[i % self.model.known.len()]
            }
            _ => u64::MAX - 1,
        }
    }

    fn rid(&self, id: u64, pick: RidPick) -> Option<u64> {
        let m = self.model.msgs.get(&id);
        match pick {
            RidPick::Absent => None,
            RidPick::Current => Some(match m.map(|m| m.state) {
                Some(MState::Reserved { rid, .. }) => rid,
                _ => 0,
            }),
            RidPick::Expired => Some(m.and_then(|m| m.last_expired).unwrap_or(1)),
            RidPick::Old(i) => m
                .filter(|m| !m.rids.is_empty())
                .map(|m| m.rids[i % m.rids.len()])
                .or(Some(2)),
            RidPick::Wrong => Some(u64::MAX),
        }
    }

    fn compare_messages(&mut self, planned: Vec<MessageView>, real: &[MessageView], what: &str) {
        assert_eq!(real.len(), planned.len(), "{what}: {real:?} vs {planned:?}");
        for (real, planned) in real.iter().zip(planned) {
            let mut expected = planned;
            if expected.info.state == MessageState::Reserved && real.info.reservation_id != 0 {
                self.model
                    .accept_rid(real.info.id, real.info.reservation_id);
                expected.info.reservation_id = real.info.reservation_id;
            }
            assert_eq!(*real, expected, "{what}");
        }
    }

    /// Matches every event the state machine produced with what the model
    /// expects, completing moves as they come (which may produce more).
    fn settle(&mut self) {
        loop {
            let events = self.h.take_events();
            if events.is_empty() {
                break;
            }
            let mut moves = Vec::new();
            for event in events {
                let expected = self.model.expected.pop_front();
                match (event, expected) {
                    (
                        Event::Woken { waiter, result, .. },
                        Some(Expect::Woken { waiter: w, planned }),
                    ) => {
                        assert_eq!(waiter, w, "the oldest waiter is served first");
                        let real = result.expect("a woken reserve succeeds");
                        self.compare_messages(planned, &real, "woken reserve");
                    }
                    (Event::WaitEnded(waiter), Some(Expect::WaitEnded(w))) => {
                        assert_eq!(waiter, w, "wait ends");
                    }
                    (Event::DeadLetters { to, messages }, Some(Expect::DeadLetters(expected))) => {
                        assert_eq!(to.as_str(), "q.dead");
                        let real: Vec<DeadLetter> = messages
                            .iter()
                            .map(|m| {
                                (
                                    m.id,
                                    m.reserved_count,
                                    m.priority,
                                    m.body.clone(),
                                    m.history.clone(),
                                    m.key.clone(),
                                )
                            })
                            .collect();
                        assert_eq!(real, expected, "dead letters");
                        moves.push(messages.iter().map(|m| m.id).collect::<Vec<_>>());
                    }
                    (event, expected) => panic!("event {event:?}, model expected {expected:?}"),
                }
            }
            for ids in moves {
                self.finish_move(&ids);
            }
        }
        assert!(
            self.model.expected.is_empty(),
            "missing events: {:?}",
            self.model.expected
        );
    }

    fn finish_move(&mut self, ids: &[u64]) {
        let moved = self.outcome();
        self.h.transfer_done(ids, moved);
        for id in ids {
            if moved {
                self.model.msgs.remove(id);
            } else if let Some(m) = self.model.msgs.get_mut(id) {
                m.state = MState::Available;
            }
        }
        self.model.serve(self.h.now);
    }

    /// Moves both to `target`, visiting every timed event on the way, as a timely
    /// actor would.
    fn advance_to(&mut self, target: u64) {
        while let Some(t) = self.model.next_event().filter(|&t| t <= target) {
            let t = t.max(self.h.now);
            self.h.at(t);
            self.model.fire(t);
            self.model.serve(t);
            self.settle();
        }
        self.h.at(target);
        self.model.fire(target);
        self.model.serve(target);
        self.settle();
    }

    /// Follow-ups staged by hand-offs under way, still there: the state
    /// machine counts them in its size (MOVING).
    fn staged_follow_ups(&self) -> usize {
        let now = self.h.now;
        self.pending
            .iter()
            .filter(|p| !p.cleared && p.expires_at > now)
            .map(|p| p.follow_ups.len())
            .sum()
    }

    fn check_counters(&self) {
        let stats = self.h.stats();
        let m = &self.model;
        let count = |f: fn(&MState) -> bool| m.msgs.values().filter(|msg| f(&msg.state)).count();
        let expected = (
            m.msgs.len() + self.staged_follow_ups(),
            count(|s| *s == MState::Available),
            count(|s| matches!(s, MState::Reserved { .. })),
            count(|s| matches!(s, MState::Delayed(_))),
            m.total_pushed,
            m.waiters.len(),
        );
        let as_usize = |n: u64| usize::try_from(n).expect("small");
        let real = (
            as_usize(stats.size),
            as_usize(stats.available),
            as_usize(stats.reserved),
            as_usize(stats.delayed),
            stats.total_pushed,
            as_usize(stats.waiting),
        );
        assert_eq!(
            real, expected,
            "(size, available, reserved, delayed, total_pushed, waiting)"
        );
        // Processing times: one sample per delete with its reservation of a
        // message reserved since the last restart, all kept across restarts
        // (the record is written as the queue stops); each quantile is the bucket
        // edge of the exact nearest-rank value: at or above it, within a quarter.
        let processed = &m.processed;
        match stats.processing {
            None => assert!(
                processed.is_empty(),
                "no processing times, {processed:?} expected"
            ),
            Some(summary) => {
                assert_eq!(
                    usize::try_from(summary.samples).expect("small"),
                    processed.len()
                );
                let mut sorted = processed.clone();
                sorted.sort_unstable();
                for (percent, got) in [(50, summary.p50_ms), (99, summary.p99_ms)] {
                    let rank = (percent * sorted.len()).div_ceil(100).max(1);
                    let exact = sorted[rank - 1];
                    assert!(
                        got >= exact && got <= exact + exact / 4 + 1,
                        "p{percent}: {got} for {exact} of {sorted:?}"
                    );
                }
            }
        }
        if let Some(event) = m.next_event() {
            let armed = self.h.state.next_deadline();
            assert!(
                armed.is_some_and(|d| d <= event),
                "the next event is at {event}, the timer would be armed for {armed:?}"
            );
        }
    }

    /// A restart, as the server starts: every queue rebuilt from its records,
    /// then the hand-offs that did not commit resolved (`resolve_hand_offs`).
    fn restart(&mut self) {
        let mut dropped = self.h.restart();
        dropped.sort_unstable();
        let mut expected: Vec<WaiterId> = self.model.waiters.drain(..).map(|w| w.id).collect();
        expected.sort_unstable();
        assert_eq!(dropped, expected, "parked reserves end with the server");
        for m in self.model.msgs.values_mut() {
            assert_ne!(
                m.state,
                MState::Moving,
                "moves finish within an operation here"
            );
            m.last_expired = None;
            m.since = None;
            m.consumer = None;
            m.touches = 0;
            // A hand-off under way ends with the server: its message is back
            // under its reservation (below, its follow-ups are dropped).
            m.held = false;
        }
        self.pending.clear();
        // Turns are kept in memory only.
        self.model.served.clear();
        // The processing times are kept with the queue's record, which a
        // stop writes: they survive; the reservations' starts do not.
        let touched = resolve_hand_offs(&mut [&mut self.h.state]);
        if !touched.is_empty() {
            self.h.write(false);
        }
        // A lease or an expiry that came while a message was held is due now:
        // a timer turn at the same time.
        let now = self.h.now;
        self.h.at(now);
        self.model.fire(now);
    }

    fn origin(&self, id: u64) -> Origin {
        Origin {
            queue: self.h.state.meta().name.clone(),
            id,
        }
    }

    /// A hand-off's first two steps on message `m` into this queue: the
    /// message held, follow-ups of `priorities` staged. `None` if the state
    /// machine refused the hold (as the model says it must).
    fn begin_and_stage(&mut self, m: Pick, r: RidPick, priorities: &[u8]) -> Option<Pending> {
        let now = self.h.now;
        let id = self.pick(m);
        let rid = self.rid(id, r).unwrap_or(0);
        let expected = self.model.check(id, Some(rid), now);
        let real = self.h.op(|s, now, _| s.hand_off_begin(now, id, rid));
        assert_eq!(real, expected, "hand-off begin");
        real.ok()?;
        self.model.msgs.get_mut(&id).expect("message").held = true;
        let origin = self.origin(id);
        let follow_ups: Vec<NewMessage> = priorities
            .iter()
            .map(|&priority| {
                self.pushed += 1;
                NewMessage {
                    body: Bytes::from(format!("h{}", self.pushed)),
                    delay_ms: 0,
                    priority,
                    key: None,
                }
            })
            .collect();
        let bodies: Vec<Bytes> = follow_ups.iter().map(|m| m.body.clone()).collect();
        let ids = self
            .h
            .op(|s, now, io| s.stage_follow_ups(now, io, &origin, follow_ups))
            .expect("stage");
        // Staged: invisible, and the message held, whatever comes next.
        assert_eq!(self.h.get(id), Err(QueueError::MessageNotFound(id)), "held");
        for &staged in &ids {
            assert_eq!(
                self.h.get(staged),
                Err(QueueError::MessageNotFound(staged)),
                "staged"
            );
        }
        Some(Pending {
            origin: id,
            follow_ups: ids
                .into_iter()
                .zip(bodies)
                .zip(priorities.iter().copied())
                .map(|((id, body), priority)| (id, body, priority))
                .collect(),
            pushed_at: now,
            expires_at: now.saturating_add(self.model.expiration_s.saturating_mul(1000)),
            cleared: false,
        })
    }

    /// The model's side of a commit: the held message is deleted (if a clear
    /// did not take it). The deletion is a turn of its own, whose end serves
    /// the parked reserves (a key it frees may let one through).
    fn model_delete_held(&mut self, pending: &Pending) {
        let now = self.h.now;
        if let Some(removed) = self.model.msgs.remove(&pending.origin).filter(|m| m.held) {
            if let Some(since) = removed.since {
                self.model.processed.push(now - since);
            }
        }
        self.model.serve(now);
        self.settle();
    }

    /// The model's side of a release: the follow-ups still there become
    /// available.
    fn model_release(&mut self, pending: &Pending) {
        let now = self.h.now;
        if pending.cleared || pending.expires_at <= now {
            return;
        }
        for (id, body, priority) in &pending.follow_ups {
            self.model.add(
                *id,
                body.clone(),
                MState::Available,
                (0, *priority),
                pending.pushed_at,
            );
            self.model.msgs.get_mut(id).expect("added").expires_at = pending.expires_at;
        }
    }

    /// A hand-off's steps 3 and 4, as the driver runs them: `commit`, or abort.
    fn end(&mut self, pending: &Pending, commit: bool) {
        let now = self.h.now;
        let id = pending.origin;
        let origin = self.origin(id);
        let held = self.model.msgs.get(&id).is_some_and(|m| m.held);
        let expected = if held {
            Ok(())
        } else {
            Err(QueueError::MessageNotFound(id))
        };
        if commit {
            let real = self.h.op(|s, now, _| s.hand_off_end(now, id, true));
            assert_eq!(real, expected, "hand-off end");
            // Gone either way (deleted, or cleared away): the follow-ups stand.
            self.model_delete_held(pending);
            self.model_release(pending);
            self.h
                .op(|s, now, _| s.release_follow_ups(now, &origin, true));
            return;
        }
        self.h
            .op(|s, now, _| s.release_follow_ups(now, &origin, false));
        let real = self.h.op(|s, now, _| s.hand_off_end(now, id, false));
        assert_eq!(real, expected, "hand-off abort");
        if held {
            let m = self.model.msgs.get_mut(&id).expect("held");
            m.held = false;
            if m.expires_at <= now {
                self.model.msgs.remove(&id);
            } else if matches!(m.state, MState::Reserved { until, .. } if until <= now) {
                self.model.lease_end(id);
            }
        }
    }

    /// An atomic hand-off of message `m` into this queue, run to `cut`.
    fn hand_off(&mut self, m: Pick, r: RidPick, priorities: &[u8], cut: Cut) {
        let Some(pending) = self.begin_and_stage(m, r, priorities) else {
            return;
        };
        match cut {
            Cut::Complete => self.end(&pending, true),
            Cut::Abort => self.end(&pending, false),
            Cut::CrashBeforeCommit => self.restart(),
            Cut::CrashAfterCommit => {
                let id = pending.origin;
                self.h
                    .op(|s, now, _| s.hand_off_end(now, id, true))
                    .expect("end");
                self.model_delete_held(&pending);
                self.model_release(&pending);
                // Follow-ups count as pushed when released: those a restart
                // keeps were not (total_pushed may undercount after a crash).
                self.model.total_pushed -= u64::try_from(pending.follow_ups.len()).expect("small");
                self.restart();
            }
        }
    }

    fn apply(&mut self, op: Op) {
        let now = self.h.now;
        self.model.rid_base = self.model.max_rid;
        match op {
            Op::Push(pushes) => {
                let messages: Vec<NewMessage> = pushes
                    .iter()
                    .map(|&(delay_ms, priority, key)| {
                        self.pushed += 1;
                        NewMessage {
                            body: Bytes::from(format!("m{}", self.pushed)),
                            delay_ms,
                            priority,
                            key: key_name(key),
                        }
                    })
                    .collect();
                let bodies: Vec<Bytes> = messages.iter().map(|m| m.body.clone()).collect();
                let ids = self
                    .h
                    .op(|s, now, io| s.push(now, io, messages))
                    .expect("push");
                assert_eq!(ids.len(), pushes.len());
                for ((id, body), (delay, priority, key)) in ids.into_iter().zip(bodies).zip(pushes)
                {
                    let state = if delay > 0 {
                        MState::Delayed(now + delay)
                    } else {
                        MState::Available
                    };
                    self.model.add(id, body, state, (0, priority), now);
                    self.model.msgs.get_mut(&id).expect("pushed").dkey = key_name(key);
                }
            }
            Op::Reserve {
                n,
                timeout,
                wait,
                delete,
                consumer,
            } => {
                let consumer: Option<Arc<str>> = consumer.map(|c| Arc::from(format!("c{c}")));
                self.model.serve(now);
                let planned = self.model.take(now, (n, timeout, delete), &consumer);
                let real = self
                    .h
                    .try_reserve_as(n, timeout, wait, delete, consumer.as_deref())
                    .expect("reserve");
                match real {
                    Reserved::Parked(waiter) => {
                        assert!(planned.is_empty() && wait > 0, "parked with {planned:?}");
                        self.model.waiters.push_back(MWaiter {
                            id: waiter,
                            n,
                            timeout,
                            delete,
                            consumer,
                            deadline: now + wait,
                            gone: false,
                        });
                    }
                    Reserved::Now(messages) => {
                        assert!(!(planned.is_empty() && wait > 0), "should have parked");
                        self.compare_messages(planned, &messages, "reserve");
                    }
                }
            }
            Op::Delete(entries) => {
                let entries: Vec<(u64, Option<u64>)> = entries
                    .into_iter()
                    .map(|(m, r)| {
                        let id = self.pick(m);
                        (id, self.rid(id, r))
                    })
                    .collect();
                // Entries are checked in order; the first failing one is the answer
                // (an id given twice fails as the second time it appears).
                let mut seen = std::collections::BTreeSet::new();
                let mut expected = Ok(entries.len());
                for &(id, rid) in &entries {
                    if !seen.insert(id) {
                        expected = Err(None);
                        break;
                    }
                    if let Err(err) = self.model.check(id, rid, now) {
                        expected = Err(Some(err));
                        break;
                    }
                }
                let real = self.h.delete(&entries);
                match (&real, expected) {
                    (Ok(count), Ok(expected)) => {
                        assert_eq!(*count, expected);
                        for (id, rid) in &entries {
                            let removed = self.model.msgs.remove(id).expect("message");
                            if let (Some(_), Some(since)) = (rid, removed.since) {
                                self.model.processed.push(now - since);
                            }
                        }
                    }
                    (Err(QueueError::InvalidArgument(_)), Err(None)) => {}
                    (Err(err), Err(Some(expected))) => assert_eq!(*err, expected, "delete"),
                    (real, expected) => {
                        panic!("delete {entries:?}: {real:?}, expected {expected:?}")
                    }
                }
            }
            Op::Touch(m, r, timeout) => {
                let id = self.pick(m);
                let rid = self.rid(id, r).unwrap_or(0);
                let expected = self.model.check(id, Some(rid), now);
                let real = self.h.touch(id, rid, timeout);
                match (real, expected) {
                    (Ok(lease), Ok(())) => {
                        let until = now + self.model.lease(timeout);
                        assert_eq!(lease.reserved_until_ms, until);
                        let keep = self.model.keep;
                        let msg = self.model.msgs.get_mut(&id).expect("message");
                        msg.state = MState::Reserved { rid: 0, until };
                        if keep > 0 {
                            msg.touches += 1;
                        }
                        self.model.accept_rid(id, lease.reservation_id);
                    }
                    (real, expected) => assert_eq!(real.map(drop), expected, "touch"),
                }
            }
            Op::Release(m, r, delay) => {
                let id = self.pick(m);
                let rid = self.rid(id, r).unwrap_or(0);
                let expected = self.model.check(id, Some(rid), now);
                let real = self.h.release(id, rid, delay);
                assert_eq!(real, expected, "release");
                if expected.is_ok() {
                    self.model.end_attempt(id, now, Outcome::Released);
                    self.model.requeues += 1;
                    let key = -self.model.requeues;
                    let msg = self.model.msgs.get_mut(&id).expect("message");
                    msg.key = key;
                    msg.state = if delay > 0 {
                        MState::Delayed(now + delay)
                    } else {
                        MState::Available
                    };
                }
            }
            Op::Settle(m, r, done, then) => {
                let id = self.pick(m);
                let rid = self.rid(id, r).unwrap_or(0);
                let expected = self.model.check(id, Some(rid), now);
                let settle = match then {
                    Ok(delay_ms) => Settle::Retry { delay_ms },
                    Err(for_ms) => Settle::Hold { for_ms },
                };
                let real = self.h.op(|s, now, _| s.settle(now, id, rid, done, settle));
                assert_eq!(real, expected, "settle");
                if expected.is_ok() {
                    let state = match then {
                        Ok(delay) => {
                            self.model.requeues += 1;
                            let key = -self.model.requeues;
                            self.model.msgs.get_mut(&id).expect("message").key = key;
                            if delay > 0 {
                                MState::Delayed(now + delay)
                            } else {
                                MState::Available
                            }
                        }
                        Err(for_ms) => MState::Reserved {
                            rid,
                            until: now + for_ms,
                        },
                    };
                    let msg = self.model.msgs.get_mut(&id).expect("message");
                    if then.is_ok() {
                        // Back to the queue without an attempt in the history
                        // (push deliveries have push statuses instead).
                        msg.consumer = None;
                        msg.touches = 0;
                    }
                    msg.state = state;
                    msg.done |= done;
                }
            }
            Op::Acknowledge(m, r, done, required) => {
                let id = self.pick(m);
                let rid = self.rid(id, r).unwrap_or(0);
                let expected = self.model.check(id, Some(rid), now).map(|()| {
                    let msg = &self.model.msgs[&id];
                    (msg.done | done) & required == required
                });
                let real = self
                    .h
                    .op(|s, now, _| s.acknowledge(now, id, rid, done, required));
                assert_eq!(real, expected, "acknowledge");
                match expected {
                    Ok(true) => {
                        self.model.msgs.remove(&id);
                    }
                    Ok(false) => self.model.msgs.get_mut(&id).expect("message").done |= done,
                    Err(_) => {}
                }
            }
            Op::Peek(n) => {
                let expected: Vec<MessageView> = self
                    .model
                    .available()
                    .into_iter()
                    .take(n)
                    .filter_map(|id| self.model.info(id))
                    .collect();
                assert_eq!(self.h.peek(n), expected, "peek");
            }
            Op::Get(m) => {
                let id = self.pick(m);
                let expected = self
                    .model
                    .info(id)
                    .map(|mut view| {
                        view.history = self.model.history_at(id, now);
                        view
                    })
                    .ok_or(QueueError::MessageNotFound(id));
                assert_eq!(self.h.get(id), expected, "get");
            }
            Op::Advance(ms) => self.advance_to(now + ms),
            Op::HandOff(m, r, priorities, cut) => self.hand_off(m, r, &priorities, cut),
            Op::HoldBegin(m, r, priorities) => {
                if let Some(pending) = self.begin_and_stage(m, r, &priorities) {
                    self.pending.push(pending);
                }
            }
            Op::HoldEnd(i, commit) => {
                if !self.pending.is_empty() {
                    let pending = self.pending.remove(i % self.pending.len());
                    self.end(&pending, commit);
                }
            }
            Op::Restart => self.restart(),
            Op::Update {
                timeout,
                expiration_s,
                dead_letter,
                delivery_history,
                key_max_in_flight,
            } => {
                let patch = SettingsPatch {
                    message_timeout_ms: timeout,
                    message_expiration_s: expiration_s,
                    dead_letter: dead_letter.map(|d| match d {
                        None => DeadLetterPatch::Remove,
                        Some(max) => DeadLetterPatch::Set {
                            queue: Some(QueueName::new("q.dead").expect("name")),
                            max_reservations: Some(max),
                        },
                    }),
                    delivery_history,
                    key_max_in_flight,
                    ..SettingsPatch::default()
                };
                if let Some(cap) = key_max_in_flight {
                    self.model.cap = cap;
                }
                if let Some(k) = delivery_history {
                    self.model.keep = k;
                }
                self.h.update(&patch).expect("update");
                if let Some(t) = timeout {
                    self.model.timeout = t;
                }
                if let Some(e) = expiration_s {
                    self.model.expiration_s = e;
                }
                if let Some(d) = dead_letter {
                    self.model.dead_letter = d;
                }
            }
            Op::Clear => {
                let staged = self.staged_follow_ups();
                assert_eq!(self.h.clear(), self.model.msgs.len() + staged, "clear");
                for pending in &mut self.pending {
                    pending.cleared = true;
                }
                self.model.msgs.clear();
                self.model.served.clear();
            }
            Op::Redrive(n) => {
                let moving = self.h.redrive(n);
                let expected: Vec<u64> = self.model.available().into_iter().take(n).collect();
                let real: Vec<u64> = moving.iter().map(|m| m.id).collect();
                assert_eq!(real, expected, "redrive");
                for m in &moving {
                    let history = self.model.history_to_move(m.id, None);
                    let msg = self.model.msgs.get_mut(&m.id).expect("message");
                    assert_eq!(
                        (m.reserved_count, m.priority, &m.body, &m.history, &m.key),
                        (0, msg.priority, &msg.body, &history, &msg.dkey)
                    );
                    msg.state = MState::Moving;
                }
                if !real.is_empty() {
                    self.finish_move(&real);
                }
            }
            Op::Adopt(adopted) => {
                let transfers: Vec<Transfer> = adopted
                    .iter()
                    .map(|&(reserved_count, priority, attempts, key)| {
                        let id = self.h.io.next_id;
                        self.h.io.next_id += 1;
                        let history = (0..u64::from(attempts))
                            .map(|i| Attempt {
                                reservation_id: id * 10 + i,
                                consumer: Arc::from("elsewhere"),
                                reserved_at_ms: now - 10,
                                ended_at_ms: now - 5,
                                touches: 1,
                                outcome: Outcome::TimedOut,
                            })
                            .collect();
                        Transfer {
                            id,
                            body: Bytes::from(format!("adopted {id}")),
                            reserved_count,
                            priority,
                            history,
                            key: key_name(key),
                        }
                    })
                    .collect();
                assert_eq!(self.h.adopt(transfers.clone()), transfers.len());
                for t in transfers {
                    self.model.add(
                        t.id,
                        t.body,
                        MState::Available,
                        (t.reserved_count, t.priority),
                        now,
                    );
                    let keep = self.model.keep;
                    let adopted = self.model.msgs.get_mut(&t.id).expect("adopted");
                    adopted.dkey = t.key;
                    adopted.history = if keep > 0 {
                        newest(t.history, keep)
                    } else {
                        Vec::new()
                    };
                }
            }
            Op::Cancel(i) => {
                let live: Vec<usize> = (0..self.model.waiters.len())
                    .filter(|&k| !self.model.waiters[k].gone)
                    .collect();
                if let Some(&k) = live.get(i % live.len().max(1)) {
                    let waiter = &mut self.model.waiters[k];
                    waiter.gone = true;
                    self.h.io.gone.insert(waiter.id);
                }
            }
            Op::Write => {
                self.h.write(false);
            }
        }
        self.model.serve(self.h.now);
        self.settle();
        self.check_counters();
        // What the state machine forgets as messages leave, the model forgets
        // before the next operation can add any.
        self.model.forget_idle_keys();
    }
}

fn cases() -> u32 {
    std::env::var("FERROMQ_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 10_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_state_machine_agrees_with_the_model(
        ops in prop::collection::vec(op(), 1..80),
        outcomes in prop::collection::vec(any::<bool>(), 1..6),
    ) {
        // A move that always fails would bounce a dead letter between the queue and
        // a waiting reserve forever: some move succeeds in every cycle.
        let mut outcomes = outcomes;
        outcomes.push(true);
        let mut run = Run {
            h: Harness::new(),
            model: Model::new(),
            outcomes,
            next_outcome: 0,
            pushed: 0,
            pending: Vec::new(),
        };
        for op in ops {
            run.apply(op);
        }
        // Whatever happened, a restart loses nothing the model still holds.
        run.apply(Op::Restart);
        run.apply(Op::Peek(4));
    }
}
