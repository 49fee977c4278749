//! Recovery: a queue's [`QueueState`] rebuilt from its records when the server
//! starts (or, in the model tests, "restarts").
//!
//! Pure, like the state machine: [`meta_from_record`] checks a stored queue record,
//! [`Rebuild`] turns the messages a [`crate::storage::QueueLog`] loads, one at a
//! time, into the in-memory index. After a rebuild every acknowledged, undeleted
//! message is back, in order, with its reserved_count; a lease taken before the
//! restart runs to its deadline; parked long polls and the "this reservation
//! expired" memory are gone (a late request with an old reservation is told
//! RESERVATION_MISMATCH).

use super::lease::ProcessingTimes;
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashSet};

use bytes::Bytes;

use super::fair::UNKEYED;
use super::history::MAX_DELIVERY_HISTORY;
use super::index::MessageIndex;
use super::order::{push_key, requeue_depth};
use super::push::{
    PushSettings, QueueKind, Subscriber, MAX_RETRIES, MAX_RETRIES_DELAY_S, MAX_SUBSCRIBERS,
    MIN_RETRIES_DELAY_S,
};
use super::staging::{Group, IdMap};
use super::state::{delayed_or_available, Msg, QueueMeta, QueueState, Restored, State, Timer};
use super::types::{
    DeadLetter, Origin, QueueName, QueueSettings, MAX_EXPIRATION_S, MAX_KEY_MAX_IN_FLIGHT,
    MAX_MAX_RESERVATIONS, MAX_TIMEOUT_MS, MIN_EXPIRATION_S, MIN_TIMEOUT_MS,
};
use crate::error::QueueError;
use crate::storage::{DeadLetterRecord, LoadedMessage, PushRecord, QueueRecord, SubscriberRecord};

/// The queue layer's view of a stored queue record. Settings outside the ranges
/// the server accepts (a damaged or hand-edited record) are brought into range,
/// with a warning, rather than trusted: every later computation with them is then
/// in range.
///
/// # Errors
/// `Internal` if the queue's or its dead-letter queue's name is not a valid name.
pub fn meta_from_record(record: &QueueRecord) -> Result<QueueMeta, QueueError> {
    let name = QueueName::new(&record.name).map_err(|err| {
        QueueError::Internal(format!("queue record {} has a bad name: {err}", record.id))
    })?;
    let clamp = |field: &str, value: u64, min: u64, max: u64| {
        let clamped = value.clamp(min, max);
        if clamped != value {
            tracing::warn!(queue = %name, field, value, clamped, "stored setting out of range");
        }
        clamped
    };
    let dead_letter = match &record.dead_letter {
        None => None,
        Some(DeadLetterRecord {
            queue,
            max_reservations,
        }) => Some(DeadLetter {
            queue: QueueName::new(queue).map_err(|err| {
                QueueError::Internal(format!(
                    "queue record of {name} has a bad dead-letter queue: {err}"
                ))
            })?,
            max_reservations: u32::try_from(clamp(
                "max_reservations",
                u64::from(*max_reservations),
                1,
                u64::from(MAX_MAX_RESERVATIONS),
            ))
            .unwrap_or(MAX_MAX_RESERVATIONS),
        }),
    };
    let push = match &record.push {
        None => None,
        Some(push) => {
            let kind = match push.kind {
                1 => QueueKind::Unicast,
                2 => QueueKind::Multicast,
                other => {
                    return Err(QueueError::Internal(format!(
                        "queue record of {name} has the unknown push kind {other}"
                    )))
                }
            };
            let error_queue = match push.error_queue.as_str() {
                "" => None,
                queue => Some(QueueName::new(queue).map_err(|err| {
                    QueueError::Internal(format!(
                        "queue record of {name} has a bad error queue: {err}"
                    ))
                })?),
            };
            let subscribers = push
                .subscribers
                .iter()
                .filter(|s| usize::from(s.slot) < MAX_SUBSCRIBERS)
                .map(|s| Subscriber {
                    slot: s.slot,
                    name: s.name.clone(),
                    url: s.url.clone(),
                    headers: s.headers.clone(),
                })
                .collect();
            Some(PushSettings {
                kind,
                subscribers,
                retries: u32::try_from(clamp(
                    "push.retries",
                    u64::from(push.retries),
                    0,
                    u64::from(MAX_RETRIES),
                ))
                .unwrap_or(MAX_RETRIES),
                retries_delay_s: clamp(
                    "push.retries_delay_s",
                    push.retries_delay_s,
                    MIN_RETRIES_DELAY_S,
                    MAX_RETRIES_DELAY_S,
                ),
                error_queue,
            })
        }
    };
    let settings = QueueSettings {
        message_timeout_ms: clamp(
            "message_timeout_ms",
            record.message_timeout_ms,
            MIN_TIMEOUT_MS,
            MAX_TIMEOUT_MS,
        ),
        message_expiration_s: clamp(
            "message_expiration_s",
            record.message_expiration_s,
            MIN_EXPIRATION_S,
            MAX_EXPIRATION_S,
        ),
        dead_letter,
        push,
        delivery_history: record.delivery_history.min(MAX_DELIVERY_HISTORY),
        key_max_in_flight: record.key_max_in_flight.min(MAX_KEY_MAX_IN_FLIGHT),
    };
    let processing = processing_from_record(&name, &record.processing);
    Ok(QueueMeta {
        name,
        created_at_ms: record.created_at_ms,
        settings,
        total_pushed: record.total_pushed,
        attachment: Bytes::from(record.attachment.clone()),
        processing,
    })
}

/// Stored processing times: advice, so a record that does not read is dropped
/// with a warning rather than refusing the queue.
fn processing_from_record(name: &QueueName, stored: &[u8]) -> Option<Box<ProcessingTimes>> {
    if stored.is_empty() {
        return None;
    }
    let times = ProcessingTimes::decode(stored);
    if times.is_none() {
        tracing::warn!(queue = %name, "stored processing times do not read: starting them again");
    }
    times.filter(|t| t.samples() > 0).map(Box::new)
}

/// The stored record of a queue (`id` is the store's queue id).
pub fn record_from_meta(id: u64, meta: &QueueMeta) -> QueueRecord {
    let settings = &meta.settings;
    QueueRecord {
        id,
        name: meta.name.to_string(),
        created_at_ms: meta.created_at_ms,
        total_pushed: meta.total_pushed,
        message_timeout_ms: settings.message_timeout_ms,
        message_expiration_s: settings.message_expiration_s,
        dead_letter: settings.dead_letter.as_ref().map(|d| DeadLetterRecord {
            queue: d.queue.to_string(),
            max_reservations: d.max_reservations,
        }),
        push: settings.push.as_ref().map(|p| PushRecord {
            kind: match p.kind {
                QueueKind::Unicast => 1,
                // A pull kind never has push settings; store it as the default.
                QueueKind::Multicast | QueueKind::Pull => 2,
            },
            retries: p.retries,
            retries_delay_s: p.retries_delay_s,
            error_queue: p
                .error_queue
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            subscribers: p
                .subscribers
                .iter()
                .map(|s| SubscriberRecord {
                    slot: s.slot,
                    name: s.name.clone(),
                    url: s.url.clone(),
                    headers: s.headers.clone(),
                })
                .collect(),
        }),
        attachment: meta.attachment.to_vec(),
        processing: meta
            .processing
            .as_ref()
            .map(|times| times.encode())
            .unwrap_or_default(),
        delivery_history: settings.delivery_history,
        key_max_in_flight: settings.key_max_in_flight,
    }
}

/// Rebuilds a queue from the messages its log loaded, at `now` (see [`Rebuild`]).
pub fn rebuild(
    meta: QueueMeta,
    loaded: impl IntoIterator<Item = LoadedMessage>,
    histories: impl IntoIterator<Item = u64>,
    now: u64,
) -> QueueState {
    let mut rebuild = Rebuild::new(now);
    for message in loaded {
        rebuild.add(message);
    }
    rebuild.histories(histories);
    rebuild.finish(meta)
}

/// A queue being rebuilt from its records, one loaded message at a time, in the
/// order a [`crate::storage::QueueLog`] loads them (group by group in key order,
/// slots in order), so nothing per message is held on the way: a message in its
/// push defaults goes straight into its group's compact entry (`index.rs`).
///
/// A message found in two groups is a move into this queue and back, cut short by
/// a crash: the copy loaded first (in the earlier group) is kept and the other
/// group is marked for rewriting, so its slot is written as deleted (or the group
/// removed) at the first write.
pub struct Rebuild {
    now: u64,
    /// What the queue is restored from, filled as messages come.
    restored: Restored,
    /// Slots of each group, to pad its slot list to at the end.
    lengths: IdMap<u32>,
}

impl Rebuild {
    /// An empty rebuild at `now`.
    pub fn new(now: u64) -> Self {
        Rebuild {
            now,
            restored: Restored {
                index: MessageIndex::default(),
                timers: Vec::new(),
                groups: IdMap::default(),
                dirty: BTreeSet::new(),
                requeues: 0,
                reserved: 0,
                delayed: 0,
                histories: HashSet::default(),
                stale_histories: Vec::new(),
                origins: Vec::new(),
            },
            lengths: IdMap::default(),
        }
    }

    /// Takes in the ids of the stored delivery histories (`history.rs`), after
    /// the messages: a history whose message is gone (a crash between the two
    /// writes) is removed at the first write.
    pub fn histories(&mut self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            if self.restored.index.contains(id) {
                self.restored.histories.insert(id);
            } else {
                self.restored.stale_histories.push(id);
            }
        }
    }

    /// Takes in one loaded message.
    pub fn add(&mut self, loaded: LoadedMessage) {
        let LoadedMessage {
            id,
            record,
            key,
            priority,
            state,
            batch,
            slot,
            batch_len,
            batch_bytes,
            origin,
        } = loaded;
        let restored = &mut self.restored;
        let group = match restored.groups.entry(batch) {
            Entry::Occupied(group) => group.into_mut(),
            Entry::Vacant(group) => {
                self.lengths.insert(batch, batch_len);

                group.insert(Group {
                    bytes: batch_bytes,
                    ..Group::default()
                })
            }
        };
        if restored.index.contains(id) {
            // The slot stays empty: written as deleted at the first write.
            restored.dirty.insert(batch);
            return;
        }
        // A hand-off's follow-up: the registry checks its origin
        // (`state/hand_off.rs`). A name that does not read cannot be a queue's:
        // the origin is gone.
        if let Some((queue, origin)) = origin {
            if let Ok(queue) = QueueName::new(&queue) {
                restored.origins.push((id, Origin { queue, id: origin }));
            }
        }
        group
            .ids
            .set(usize::try_from(slot).unwrap_or(usize::MAX), id);
        group.live += 1;
        group.expiry_ms = Some(
            group
                .expiry_ms
                .map_or(record.expires_at_ms, |e| e.min(record.expires_at_ms)),
        );
        let push_done = state.map_or(0, |st| st.push_done);
        let (order_key, reserved_count, state) = match state {
            Some(st) if st.reservation_id != 0 => (
                st.order_key,
                st.reserved_count,
                State::Reserved {
                    reservation_id: st.reservation_id,
                    until_ms: st.reserved_until_ms,
                    lease_ms: super::state::LEASE_UNKNOWN,
                },
            ),
            Some(st) => (
                st.order_key,
                st.reserved_count,
                delayed_or_available(st.available_at_ms, self.now),
            ),
            None => (
                push_key(priority, id),
                0,
                delayed_or_available(record.available_at_ms, self.now),
            ),
        };
        restored.requeues = restored.requeues.max(requeue_depth(order_key));
        match state {
            State::Available | State::Moving => {}
            State::Delayed { until_ms } => {
                restored.delayed += 1;
                restored.timers.push((until_ms, Timer::Delay(id)));
            }
            State::Reserved { until_ms, .. } => {
                restored.reserved += 1;
                restored.timers.push((until_ms, Timer::Lease(id)));
            }
        }
        let key = key.map_or(UNKEYED, |k| restored.index.intern_key(&k));
        restored.index.insert(
            id,
            Msg {
                key,
                order_key,
                state,
                reserved_count,
                pushed_at_ms: record.pushed_at_ms,
                expires_at_ms: record.expires_at_ms,
                expired_reservation_id: 0,
                push_done,
                batch,
                slot,
            },
        );
    }

    /// The rebuilt queue.
    pub fn finish(self, meta: QueueMeta) -> QueueState {
        let Rebuild {
            mut restored,
            lengths,
            ..
        } = self;
        for (key, group) in &mut restored.groups {
            if let Some(&len) = lengths.get(key) {
                group.ids.pad_to(usize::try_from(len).unwrap_or(0));
            }
        }
        let expiries = restored
            .groups
            .iter()
            .filter_map(|(&key, group)| Some((group.expiry_ms?, Timer::Expire(key))));
        restored.timers.extend(expiries);
        QueueState::restore(meta, restored)
    }
}
