//! Batch-record staging: how one queue's messages become few, large records.
//!
//! The messages that enter a queue together (one actor turn's pushes, or one
//! adopted transfer) form a **group**: one batch record on disk (`storage/batch.rs`)
//! holding their bodies and push records, plus one state record listing the
//! messages of the group that were deleted or whose state differs from the push
//! defaults. The open group is sealed early at 512 messages or 64 KiB of bodies.
//! A message's location is its group key and its slot in the group.
//!
//! [`Staging`] is the bookkeeping: the group table (the ids per slot and how many
//! are still in the queue), the groups not yet written, and the groups whose state
//! record must be rewritten. It does no I/O: [`Staging::take_writes`] turns what
//! changed since the last call into a list of [`LogWrite`]s, which the actor applies
//! to the queue's log at the end of a turn. A group's records are removed when its
//! last message leaves the queue, so space is reclaimed as messages go.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;

use super::history::HistoryUpdate;
use super::index::SlotIds;
use crate::storage::batch::encode_batch_state;
use crate::storage::{BatchBuilder, MessageRecord, StateRecord};

/// One write to a queue's log, in the order they must be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogWrite {
    /// Remove every record of the queue (applied before the writes after it).
    Clear,
    /// A new batch record (`BatchBuilder::encode`).
    Batch {
        /// The group key.
        key: u64,
        /// The encoded record.
        value: Vec<u8>,
    },
    /// The state record of a group (`encode_batch_state`).
    BatchState {
        /// The group key.
        key: u64,
        /// The encoded record.
        value: Vec<u8>,
    },
    /// Both records of a group whose messages are all gone.
    RemoveBatch {
        /// The group key.
        key: u64,
    },
    /// A change to the delivery history of message `id` (`history.rs`).
    History {
        /// The message.
        id: u64,
        /// The change.
        update: HistoryUpdate,
    },
}

/// What the state machine says about one slot of a group when its state record
/// is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    /// The message has left the queue (or the slot holds no message).
    Gone,
    /// The message is in the queue in its push-default state.
    Default,
    /// The message is in the queue with this state.
    Changed(StateRecord),
}

/// The bookkeeping of one group.
#[derive(Debug, Default)]
pub(super) struct Group {
    /// Message id per slot (0 for a slot whose message was gone at load).
    pub(super) ids: SlotIds,
    /// Messages of the group still in the queue.
    pub(super) live: usize,
    /// When the group's expiry timer is armed: the earliest expiry of its messages.
    pub(super) expiry_ms: Option<u64>,
    /// The bytes of every body the group's batch record holds (its deleted
    /// messages' too: the record stays until the last one goes).
    pub(super) bytes: u64,
}

/// Hashes group keys (Fx-style multiply) for the group table, which is touched on
/// every push, reserve and delete. Group keys are ids the server assigns; no client
/// chooses what gets inserted, so an unkeyed hash cannot be flooded with
/// collisions here.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct IdHasher(u64);

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

/// A map keyed by server-assigned ids.
pub(super) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// The record bookkeeping of one queue; see the module docs.
#[derive(Debug, Default)]
pub(super) struct Staging {
    groups: IdMap<Group>,
    /// The open group, gathering new messages.
    open: Option<(u64, BatchBuilder)>,
    /// Groups sealed since the last write, not yet written.
    sealed: Vec<(u64, BatchBuilder)>,
    /// Groups whose state record must be rewritten (or removed).
    dirty: BTreeSet<u64>,
    /// A clear is to be written before everything staged after it.
    clear: bool,
    /// The bytes of the bodies of every group still held (see [`Staging::bytes`]).
    bytes: u64,
    /// While set, every message staged is a hand-off's follow-up replacing this
    /// message (queue name, id), written with it (`hand_off.rs`).
    origin: Option<crate::storage::batch::Origin>,
}

impl Staging {
    /// Staging for a queue rebuilt from its records: its groups, and the groups
    /// found inconsistent on load whose state record must be rewritten.
    pub(super) fn restore(groups: IdMap<Group>, dirty: BTreeSet<u64>) -> Self {
        Staging {
            bytes: groups.values().map(|g| g.bytes).sum(),
            groups,
            dirty,
            ..Staging::default()
        }
    }

    /// Adds a new message to the open group, opening one (keyed `new_key()`) if
    /// there is none or it is full. Returns the message's (group, slot).
    ///
    /// # Errors
    /// Whatever `new_key` fails with.
    pub(super) fn stage<E>(
        &mut self,
        id: u64,
        record: MessageRecord,
        body: Bytes,
        tags: (Option<std::sync::Arc<str>>, u8),
        new_key: impl FnOnce() -> Result<u64, E>,
    ) -> Result<(u64, u32), E> {
        if self.open.as_ref().is_some_and(|(_, b)| b.is_full()) {
            self.sealed.extend(self.open.take());
        }
        let (key, builder) = match &mut self.open {
            Some(open) => open,
            open @ None => open.insert((new_key()?, BatchBuilder::default())),
        };
        let key = *key;
        let len = u64::try_from(body.len()).unwrap_or(u64::MAX);
        let slot = builder.push_with_origin(id, record, body, tags, self.origin.clone());
        let group = self.groups.entry(key).or_default();
        group.ids.push(id);
        group.live += 1;
        group.bytes = group.bytes.saturating_add(len);
        self.bytes = self.bytes.saturating_add(len);
        Ok((key, slot))
    }

    /// The messages staged from now until [`Staging::end_origin`] are a
    /// hand-off's follow-ups replacing message `id` of queue `queue`: each is
    /// written with that origin, in the open group like any other message.
    pub(super) fn begin_origin(&mut self, queue: std::sync::Arc<str>, id: u64) {
        self.origin = Some((queue, id));
    }

    /// Ends what [`Staging::begin_origin`] began.
    pub(super) fn end_origin(&mut self) {
        self.origin = None;
    }

    /// The bytes of the bodies the queue's groups hold: what its batch records
    /// keep on disk (and what the byte limits count). A group's bytes are given
    /// back when its last message leaves and its records are removed, at the end
    /// of that turn, so this is at least the bytes of the bodies in the queue.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The body in (`key`, `slot`) if that group is not written yet; `None` if the
    /// group is in the log (or gone).
    pub(super) fn unwritten_body(&self, key: u64, slot: u32) -> Option<Option<Bytes>> {
        self.open
            .iter()
            .chain(&self.sealed)
            .find(|(k, _)| *k == key)
            .map(|(_, builder)| builder.body(slot))
    }

    /// The bookkeeping of group `key`, to change.
    pub(super) fn group_mut(&mut self, key: u64) -> Option<&mut Group> {
        self.groups.get_mut(&key)
    }

    /// A message of group `key` changed state: rewrite the group's state record.
    pub(super) fn changed(&mut self, key: u64) {
        self.dirty.insert(key);
    }

    /// A message of group `key` left the queue.
    pub(super) fn removed(&mut self, key: u64) {
        if let Some(group) = self.groups.get_mut(&key) {
            group.live = group.live.saturating_sub(1);
            self.dirty.insert(key);
        }
    }

    /// Every message left the queue at once: forget every group.
    pub(super) fn clear(&mut self) {
        self.groups.clear();
        self.open = None;
        self.sealed.clear();
        self.dirty.clear();
        self.clear = true;
        self.bytes = 0;
    }

    /// Whether [`Staging::take_writes`] has something to write.
    pub(super) fn has_unwritten(&self) -> bool {
        self.clear || self.open.is_some() || !self.sealed.is_empty() || !self.dirty.is_empty()
    }

    /// Everything to write since the last call, in order: a clear, the new batch
    /// records, then the state records of the touched groups (or their removal).
    /// `slot` tells the state of each slot of a touched group. Groups left with no
    /// message are forgotten; their keys and armed expiries go to `forgotten`, so
    /// the caller can drop their timers.
    pub(super) fn take_writes(
        &mut self,
        slot: impl Fn(u64, u32, u64) -> Slot,
        forgotten: &mut Vec<(u64, Option<u64>)>,
    ) -> Vec<LogWrite> {
        let mut writes = Vec::new();
        if std::mem::take(&mut self.clear) {
            writes.push(LogWrite::Clear);
        }
        let open = self.open.take();
        let mut sealed = std::mem::take(&mut self.sealed);
        for (key, builder) in sealed.drain(..).chain(open) {
            if self.groups.get(&key).is_none_or(|g| g.live == 0) {
                // Every message went before the group was written (reserve with
                // delete, expiry): nothing to write, nothing to remove.
                self.forget(key, forgotten);
                self.dirty.remove(&key);
                continue;
            }
            writes.push(LogWrite::Batch {
                key,
                value: builder.encode(),
            });
        }
        // Keep the (empty) vector's capacity for the next turn.
        self.sealed = sealed;
        for key in std::mem::take(&mut self.dirty) {
            let Some(group) = self.groups.get(&key) else {
                continue;
            };
            if group.live == 0 {
                self.forget(key, forgotten);
                writes.push(LogWrite::RemoveBatch { key });
                continue;
            }
            let mut deleted = vec![false; group.ids.len()];
            let mut states = Vec::new();
            for (index, id) in group.ids.iter().enumerate() {
                let Ok(at) = u32::try_from(index) else {
                    break; // a group never holds more than 512 slots
                };
                match slot(key, at, id) {
                    Slot::Gone => deleted[index] = true,
                    Slot::Default => {}
                    Slot::Changed(state) => states.push((at, state)),
                }
            }
            writes.push(LogWrite::BatchState {
                key,
                value: encode_batch_state(group.ids.len(), |index| deleted[index], &states),
            });
        }
        // Give memory back after a large backlog has drained.
        if self.groups.capacity() > 1024 && self.groups.len() * 4 < self.groups.capacity() {
            self.groups.shrink_to(self.groups.len() * 2);
        }
        writes
    }

    /// The batch record of group `key` could not be written: forget the group and
    /// return it, so that its messages can leave the queue again.
    pub(super) fn lost(&mut self, key: u64) -> Option<Group> {
        self.dirty.remove(&key);
        let group = self.groups.remove(&key)?;
        self.bytes = self.bytes.saturating_sub(group.bytes);
        Some(group)
    }

    fn forget(&mut self, key: u64, forgotten: &mut Vec<(u64, Option<u64>)>) {
        if let Some(group) = self.groups.remove(&key) {
            self.bytes = self.bytes.saturating_sub(group.bytes);
            forgotten.push((key, group.expiry_ms));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::{Batch, BatchState};

    fn record() -> MessageRecord {
        MessageRecord {
            pushed_at_ms: 1,
            available_at_ms: 0,
            expires_at_ms: 2,
        }
    }

    fn stage(staging: &mut Staging, id: u64) -> (u64, u32) {
        staging
            .stage(id, record(), Bytes::from(id.to_string()), (None, 8), || {
                Ok::<_, ()>(id)
            })
            .unwrap()
    }

    #[test]
    fn should_write_one_batch_per_group_then_state_records_then_the_removal() {
        let mut staging = Staging::default();
        assert_eq!(stage(&mut staging, 10), (10, 0));
        assert_eq!(stage(&mut staging, 11), (10, 1));
        assert_eq!(
            staging.unwritten_body(10, 1),
            Some(Some(Bytes::from_static(b"11")))
        );
        let mut forgotten = Vec::new();
        let writes = staging.take_writes(|_, _, _| Slot::Default, &mut forgotten);
        let [LogWrite::Batch { key: 10, value }] = writes.as_slice() else {
            panic!("one batch record: {writes:?}")
        };
        let batch = Batch::parse(Bytes::from(value.clone())).unwrap();
        assert_eq!(batch.count(), 2);
        assert_eq!(
            staging.unwritten_body(10, 1),
            None,
            "written: read it from the log"
        );

        staging.removed(10);
        let writes = staging.take_writes(
            |_, slot, _| if slot == 0 { Slot::Gone } else { Slot::Default },
            &mut forgotten,
        );
        let [LogWrite::BatchState { key: 10, value }] = writes.as_slice() else {
            panic!("one state record: {writes:?}")
        };
        let state = BatchState::decode(value).unwrap();
        assert!(state.is_deleted(0) && !state.is_deleted(1));

        staging.removed(10);
        let writes = staging.take_writes(|_, _, _| Slot::Gone, &mut forgotten);
        assert_eq!(writes, [LogWrite::RemoveBatch { key: 10 }]);
        assert_eq!(forgotten, [(10, None)]);
        assert!(!staging.has_unwritten());
    }

    #[test]
    fn should_write_nothing_for_a_group_that_emptied_before_it_was_written() {
        let mut staging = Staging::default();
        stage(&mut staging, 5);
        staging.removed(5);
        let mut forgotten = Vec::new();
        assert!(staging
            .take_writes(|_, _, _| Slot::Gone, &mut forgotten)
            .is_empty());
        assert_eq!(forgotten, [(5, None)]);
    }

    #[test]
    fn should_seal_a_full_group_and_open_the_next() {
        let mut staging = Staging::default();
        for id in 1..=513u64 {
            stage(&mut staging, id);
        }
        assert_eq!(
            stage(&mut staging, 514).0,
            513,
            "the 513th message opened group 513"
        );
        let writes = staging.take_writes(|_, _, _| Slot::Default, &mut Vec::new());
        let keys: Vec<u64> = writes
            .iter()
            .map(|w| match w {
                LogWrite::Batch { key, .. } => *key,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(keys, [1, 513]);
    }

    #[test]
    fn should_write_a_clear_before_what_came_after_it() {
        let mut staging = Staging::default();
        stage(&mut staging, 1);
        staging.clear();
        stage(&mut staging, 2);
        let writes = staging.take_writes(|_, _, _| Slot::Default, &mut Vec::new());
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0], LogWrite::Clear);
        assert!(matches!(writes[1], LogWrite::Batch { key: 2, .. }));
    }
}
