//! [`MessageIndex`]: one queue's messages in memory (without their bodies) and the
//! order in which the available ones are handed out; [`SlotIds`]: the ids of a
//! group's slots, kept as runs.
//!
//! A backlog is mostly messages nobody has touched since their push: available,
//! in push order, never reserved. Such a message is **compact**: it costs one bit
//! in its group's entry, and everything else about it (order key: its push key
//! in its group's priority band, `order.rs`; reserved_count 0, pushed at and expiring when the rest of its run was: a run is
//! consecutive ids in consecutive slots pushed at the same millisecond) is implied.
//! Every other message (reserved, delayed, released or requeued, moving, adopted
//! from another queue, reserved before) is **special**: a full [`Msg`] in
//! a B-tree keyed by id, and, when available, an entry in the ordered set of
//! available specials. Memory therefore grows with the groups (up to 512 messages
//! each), their runs (one per push request at most) and the in-flight messages, not with the
//! backlog: a million queued messages pushed in batches cost a few thousand group
//! entries.
//!
//! Compact entries are grouped by the batch record holding them and by priority
//! (a group's members share one). A message can become compact only when it
//! enters the queue (push, adopt, restart) in its push defaults and with an id
//! above every compact id before it; so compact ids increase with the groups'
//! order and within each group. Groups are listed by (priority, first id) too,
//! and as priority bands do not overlap, walking that list gives the compact
//! messages by order key: the available order is the merge of that stream with
//! the available specials (by order key).
//! A compact message that changes (reserved, released, moved) becomes special and
//! never compact again.
//!
//! A message with a dispatch key is always special, and its key's bookkeeping
//! (`fair.rs`) follows every change of it here; which message a reserve takes
//! ([`MessageIndex::next_to_reserve`]) is then the fair choice among keys. Without
//! keyed messages there is no such bookkeeping and the next is the first available.
//!
//! Nothing here does I/O or reads a clock: it is part of the pure state machine.

use std::collections::{BTreeMap, BTreeSet};
use std::iter::Peekable;

use std::sync::Arc;

use super::fair::{Keys, Standing, UNKEYED};
use super::order::{is_push_key, priority_of, push_key};
use super::state::{Msg, State};

/// The messages of one queue; see the module docs.
#[derive(Debug, Default)]
pub(super) struct MessageIndex {
    /// Messages not in compact form.
    special: BTreeMap<u64, Msg>,
    /// The AVAILABLE specials as (order key, id).
    special_available: BTreeSet<(u64, u64)>,
    /// Compact groups keyed by the id of their first member.
    compact: BTreeMap<u64, Compact>,
    /// The compact groups as (priority, first member's id): their order.
    compact_order: BTreeSet<(u8, u64)>,
    /// Compact messages (all available).
    compact_len: usize,
    /// The highest id ever made compact: a new compact id must be above it.
    compact_floor: Option<u64>,
    /// The dispatch keys, while some message has one.
    keys: Option<Box<Keys>>,
    /// Most messages in flight per key (0: no cap).
    key_cap: u32,
}

/// How `msg` counts for its key.
fn standing(msg: &Msg) -> Standing {
    match msg.state {
        State::Available => Standing::Available(msg.order_key),
        State::Reserved { .. } => Standing::InFlight,
        State::Delayed { .. } | State::Moving => Standing::Other,
    }
}

/// The compact members of one group.
#[derive(Debug)]
struct Compact {
    batch: u64,
    /// The members' priority.
    priority: u8,
    /// Members in id order, as runs of consecutive ids in consecutive slots pushed
    /// at the same time (a group gathers the pushes of one or more actor turns).
    runs: Vec<Run>,
    /// One bit per member: still in the queue and compact.
    present: Vec<u64>,
    members: u32,
    live: u32,
    /// No member below this one is present.
    first_live: u32,
}

/// Members `first_member..first_member + len` are ids `first_id..` in slots
/// `first_slot..`, pushed at `pushed_at_ms` and expiring at `expires_at_ms`.
#[derive(Debug, Clone, Copy)]
struct Run {
    first_id: u64,
    pushed_at_ms: u64,
    expires_at_ms: u64,
    first_slot: u32,
    first_member: u32,
    len: u32,
}

impl Compact {
    fn new(id: u64, msg: &Msg) -> Self {
        Compact {
            batch: msg.batch,
            priority: priority_of(msg.order_key),
            runs: vec![Run {
                first_id: id,
                pushed_at_ms: msg.pushed_at_ms,
                expires_at_ms: msg.expires_at_ms,
                first_slot: msg.slot,
                first_member: 0,
                len: 1,
            }],
            present: vec![1],
            members: 1,
            live: 1,
            first_live: 0,
        }
    }

    /// Whether `msg` (id above every member's) can join this group.
    fn accepts(&self, msg: &Msg) -> bool {
        self.batch == msg.batch
            && self.priority == priority_of(msg.order_key)
            && self.members < u32::MAX
    }

    fn push(&mut self, id: u64, msg: &Msg) {
        let member = self.members;
        let slot = msg.slot;
        match self.runs.last_mut() {
            Some(run)
                if run.first_id.checked_add(u64::from(run.len)) == Some(id)
                    && run.first_slot.checked_add(run.len) == Some(slot)
                    && run.pushed_at_ms == msg.pushed_at_ms
                    && run.expires_at_ms == msg.expires_at_ms =>
            {
                run.len += 1;
            }
            _ => self.runs.push(Run {
                first_id: id,
                pushed_at_ms: msg.pushed_at_ms,
                expires_at_ms: msg.expires_at_ms,
                first_slot: slot,
                first_member: member,
                len: 1,
            }),
        }
        self.members += 1;
        let word = usize::try_from(member / 64).unwrap_or(usize::MAX);
        if word >= self.present.len() {
            self.present.push(0);
        }
        self.set(member, true);
        self.live += 1;
    }

    /// The member of `id` (present or not) and the message it implies.
    fn locate(&self, id: u64) -> Option<(u32, Msg)> {
        let index = self
            .runs
            .partition_point(|r| r.first_id <= id)
            .checked_sub(1)?;
        let run = self.runs.get(index)?;
        let offset = u32::try_from(id - run.first_id).ok()?;
        (offset < run.len).then(|| {
            let msg = Msg {
                order_key: push_key(self.priority, id),
                state: State::Available,
                reserved_count: 0,
                pushed_at_ms: run.pushed_at_ms,
                expires_at_ms: run.expires_at_ms,
                expired_reservation_id: 0,
                push_done: 0,
                batch: self.batch,
                slot: run.first_slot + offset,
                key: UNKEYED,
            };
            (run.first_member + offset, msg)
        })
    }

    fn is_present(&self, member: u32) -> bool {
        let word = usize::try_from(member / 64).unwrap_or(usize::MAX);
        self.present
            .get(word)
            .is_some_and(|w| w & (1 << (member % 64)) != 0)
    }

    fn set(&mut self, member: u32, on: bool) {
        let word = usize::try_from(member / 64).unwrap_or(usize::MAX);
        if let Some(w) = self.present.get_mut(word) {
            if on {
                *w |= 1 << (member % 64);
            } else {
                *w &= !(1 << (member % 64));
            }
        }
    }

    /// Takes member `member` out; returns whether it was present.
    fn take(&mut self, member: u32) -> bool {
        if !self.is_present(member) {
            return false;
        }
        self.set(member, false);
        self.live -= 1;
        while self.first_live < self.members && !self.is_present(self.first_live) {
            self.first_live += 1;
        }
        true
    }

    /// The present members as (order key, id), in order.
    fn keys(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ids().map(|id| (push_key(self.priority, id), id))
    }

    /// The present members' ids, in order.
    fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        let start = self.first_live;
        let from = self
            .runs
            .partition_point(|r| r.first_member + r.len <= start);
        self.runs
            .get(from..)
            .unwrap_or_default()
            .iter()
            .flat_map(move |run| {
                (start.saturating_sub(run.first_member)..run.len)
                    .filter(move |&offset| self.is_present(run.first_member + offset))
                    .map(move |offset| run.first_id + u64::from(offset))
            })
    }
}

/// Whether `msg` is in its push defaults (the state a compact message implies).
fn is_default(id: u64, msg: &Msg) -> bool {
    msg.state == State::Available
        && msg.key == UNKEYED
        && is_push_key(msg.order_key, id)
        && msg.reserved_count == 0
        && msg.expired_reservation_id == 0
}

impl MessageIndex {
    /// Messages held.
    pub(super) fn len(&self) -> usize {
        self.special.len() + self.compact_len
    }

    /// Available messages.
    pub(super) fn available_len(&self) -> usize {
        self.special_available.len()
            + self.compact_len
            + self.keys.as_ref().map_or(0, |k| k.available().len())
    }

    /// The id of dispatch key `name`, for a message about to be inserted with it.
    pub(super) fn intern_key(&mut self, name: &Arc<str>) -> u32 {
        let cap = self.key_cap;
        self.keys
            .get_or_insert_with(|| Box::new(Keys::new(cap)))
            .intern(name)
    }

    /// The name of dispatch key `key`.
    pub(super) fn key_name(&self, key: u32) -> Option<Arc<str>> {
        self.keys.as_ref()?.name(key).cloned()
    }

    /// Dispatch keys with a message in the queue.
    pub(super) fn key_count(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.len())
    }

    /// Sets the most messages in flight per key (0: no cap).
    pub(super) fn set_key_cap(&mut self, cap: u32) {
        self.key_cap = cap;
        if let Some(keys) = &mut self.keys {
            keys.set_cap(cap);
        }
    }

    /// The message a reserve takes next, as (order key, id): the first
    /// available one, or with keyed messages the fair choice (`fair.rs`).
    pub(super) fn next_to_reserve(&self) -> Option<(u64, u64)> {
        let Some(keys) = &self.keys else {
            return self.first_available();
        };
        match keys.next()? {
            (UNKEYED, _) => self.first_unkeyed(),
            (_, first) => first,
        }
    }

    /// A reserve took message `id`: its key was served now.
    pub(super) fn served(&mut self, id: u64) {
        if self.keys.is_none() {
            return;
        }
        let key = self.get(id).map_or(UNKEYED, |m| m.key);
        if let Some(keys) = &mut self.keys {
            keys.served(key);
        }
    }

    /// The first available message without a key.
    fn first_unkeyed(&self) -> Option<(u64, u64)> {
        Available {
            special: Merge::new(self.special_available.iter(), None.into_iter().flatten())
                .peekable(),
            compact: self.compact_stream().peekable(),
        }
        .next()
    }

    /// Tells the keys whether an unkeyed message is available.
    fn sync_unkeyed(&mut self) {
        let unkeyed = self.special_available.len() + self.compact_len > 0;
        if let Some(keys) = &mut self.keys {
            keys.set_unkeyed_available(unkeyed);
        }
    }

    /// Forgets the keys when no message has one.
    fn drop_idle_keys(&mut self) {
        if self.keys.as_ref().is_some_and(|k| k.is_empty()) {
            self.keys = None;
        }
    }

    /// Message `id`, if it is here.
    pub(super) fn get(&self, id: u64) -> Option<Msg> {
        if let Some(msg) = self.special.get(&id) {
            return Some(*msg);
        }
        let (_, group) = self.compact.range(..=id).next_back()?;
        let (member, msg) = group.locate(id)?;
        group.is_present(member).then_some(msg)
    }

    /// Whether message `id` is here.
    pub(super) fn contains(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    /// Adds a message that is not here (a keyed one after [`MessageIndex::intern_key`]).
    pub(super) fn insert(&mut self, id: u64, msg: Msg) {
        if !self.insert_compact(id, &msg) {
            self.insert_special(id, msg);
        }
        self.sync_unkeyed();
    }

    /// Replaces message `id` (which is here) with `msg`.
    pub(super) fn update(&mut self, id: u64, msg: Msg) {
        if let Some(old) = self.special.get_mut(&id) {
            let before = *old;
            *old = msg;
            if msg.key != UNKEYED {
                if let Some(keys) = &mut self.keys {
                    keys.change(msg.key, id, standing(&before), standing(&msg));
                }
                return;
            }
            if before.state == State::Available {
                self.special_available.remove(&(before.order_key, id));
            }
            if msg.state == State::Available {
                self.special_available.insert((msg.order_key, id));
            }
            self.sync_unkeyed();
            return;
        }
        match self.get(id) {
            Some(current) if current == msg => {}
            Some(_) => {
                self.remove_compact(id);
                self.insert_special(id, msg);
                self.sync_unkeyed();
            }
            None => {}
        }
    }

    /// Removes message `id`; returns it.
    pub(super) fn remove(&mut self, id: u64) -> Option<Msg> {
        if let Some(msg) = self.special.remove(&id) {
            if msg.key != UNKEYED {
                if let Some(keys) = &mut self.keys {
                    keys.leave(msg.key, id, standing(&msg));
                }
                self.drop_idle_keys();
            } else if msg.state == State::Available {
                self.special_available.remove(&(msg.order_key, id));
            }
            self.sync_unkeyed();
            return Some(msg);
        }
        let removed = self.remove_compact(id);
        self.sync_unkeyed();
        removed
    }

    /// Forgets every message (new compact ids must still be above the old ones).
    pub(super) fn clear(&mut self) {
        self.special.clear();
        self.special_available.clear();
        self.compact.clear();
        self.compact_order.clear();
        self.compact_len = 0;
        self.keys = None;
    }

    /// The available messages as (order key, id), in the order reserve takes them.
    pub(super) fn available(&self) -> Available<'_, impl Iterator<Item = (u64, u64)> + '_> {
        let keyed = self.keys.as_ref().map(|k| k.available().iter());
        Available {
            special: Merge::new(self.special_available.iter(), keyed.into_iter().flatten())
                .peekable(),
            compact: self.compact_stream().peekable(),
        }
    }

    /// The compact messages as (order key, id), in order.
    fn compact_stream(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.compact_order
            .iter()
            .filter_map(|(_, first)| self.compact.get(first))
            .flat_map(Compact::keys)
    }

    /// The first available message as (order key, id).
    pub(super) fn first_available(&self) -> Option<(u64, u64)> {
        self.available().next()
    }

    fn insert_special(&mut self, id: u64, msg: Msg) {
        if msg.key != UNKEYED {
            if let Some(keys) = &mut self.keys {
                keys.enter(msg.key, id, standing(&msg));
            }
        } else if msg.state == State::Available {
            self.special_available.insert((msg.order_key, id));
        }
        self.special.insert(id, msg);
    }

    fn insert_compact(&mut self, id: u64, msg: &Msg) -> bool {
        if !is_default(id, msg) || self.compact_floor.is_some_and(|floor| id <= floor) {
            return false;
        }
        match self.compact.last_entry() {
            Some(mut last) if last.get().accepts(msg) => last.get_mut().push(id, msg),
            Some(last) if last.get().batch == msg.batch && last.get().members == u32::MAX => {
                return false;
            }
            _ => {
                let group = Compact::new(id, msg);
                self.compact_order.insert((group.priority, id));
                self.compact.insert(id, group);
            }
        }
        self.compact_floor = Some(id);
        self.compact_len += 1;
        true
    }

    fn remove_compact(&mut self, id: u64) -> Option<Msg> {
        let mut entry = self.compact.range_mut(..=id).next_back()?;
        let first = *entry.0;
        let group = &mut entry.1;
        let (member, msg) = group.locate(id)?;
        if !group.take(member) {
            return None;
        }
        if group.live == 0 {
            let priority = group.priority;
            self.compact.remove(&first);
            self.compact_order.remove(&(priority, first));
        }
        self.compact_len -= 1;
        Some(msg)
    }
}

/// Two ordered streams of (order key, id) as one.
pub(super) struct Merge<A: Iterator, B: Iterator> {
    a: Peekable<A>,
    b: Peekable<B>,
}

impl<'a, A, B> Merge<A, B>
where
    A: Iterator<Item = &'a (u64, u64)>,
    B: Iterator<Item = &'a (u64, u64)>,
{
    fn new(a: A, b: B) -> Self {
        Merge {
            a: a.peekable(),
            b: b.peekable(),
        }
    }
}

impl<'a, A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = &'a (u64, u64)>,
    B: Iterator<Item = &'a (u64, u64)>,
{
    type Item = &'a (u64, u64);

    fn next(&mut self) -> Option<&'a (u64, u64)> {
        match (self.a.peek(), self.b.peek()) {
            (Some(a), Some(b)) if b < a => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

/// The special AVAILABLE messages of both kinds, unkeyed and keyed, in order.
type Specials<'a> = Merge<
    std::collections::btree_set::Iter<'a, (u64, u64)>,
    std::iter::Flatten<std::option::IntoIter<std::collections::btree_set::Iter<'a, (u64, u64)>>>,
>;

/// The available messages in order: the merge of the available specials (by order
/// key) with the compact ones (by order key too: by priority, then id).
pub(super) struct Available<'a, C: Iterator<Item = (u64, u64)>> {
    special: Peekable<Specials<'a>>,
    compact: Peekable<C>,
}

impl<C: Iterator<Item = (u64, u64)>> Iterator for Available<'_, C> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let compact = self.compact.peek().copied();
        match (self.special.peek(), compact) {
            (Some(&&special), Some(compact)) if special < compact => {
                self.special.next();
                Some(special)
            }
            (_, Some(compact)) => {
                self.compact.next();
                Some(compact)
            }
            (Some(&&special), None) => {
                self.special.next();
                Some(special)
            }
            (None, None) => None,
        }
    }
}

/// The message id of each slot of a group (0 for a slot with no message), kept as
/// runs of consecutive ids: a group pushed in batches costs a few words, not 8
/// bytes a slot.
#[derive(Debug, Default, Clone)]
pub(super) struct SlotIds {
    /// (first id, length); a first id of 0 is a run of empty slots.
    runs: Vec<(u64, u32)>,
    len: usize,
}

impl SlotIds {
    /// Slots.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Appends a slot holding `id` (0: none).
    pub(super) fn push(&mut self, id: u64) {
        self.len += 1;
        if let Some((first, len)) = self.runs.last_mut() {
            let next = if *first == 0 {
                Some(0)
            } else {
                first.checked_add(u64::from(*len))
            };
            if next == Some(id) && *len < u32::MAX {
                *len += 1;
                return;
            }
        }
        self.runs.push((id, 1));
    }

    /// Sets slot `slot` to `id`, appending empty slots up to it if needed.
    pub(super) fn set(&mut self, slot: usize, id: u64) {
        while self.len < slot {
            self.push(0);
        }
        if slot == self.len {
            self.push(id);
            return;
        }
        // Out of order (no log loads that way): rebuild the runs.
        let mut ids: Vec<u64> = self.iter().collect();
        if let Some(entry) = ids.get_mut(slot) {
            *entry = id;
        }
        *self = SlotIds::default();
        for id in ids {
            self.push(id);
        }
    }

    /// Appends empty slots up to `len` slots.
    pub(super) fn pad_to(&mut self, len: usize) {
        while self.len < len {
            self.push(0);
        }
    }

    /// The id of each slot, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.runs.iter().flat_map(|&(first, len)| {
            (0..u64::from(len)).map(move |offset| if first == 0 { 0 } else { first + offset })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::order::ORDER_BASE;
    use super::*;

    fn pushed(batch: u64, slot: u32, id: u64) -> Msg {
        Msg {
            key: crate::queue::fair::UNKEYED,
            order_key: ORDER_BASE + id,
            state: State::Available,
            reserved_count: 0,
            pushed_at_ms: 5,
            expires_at_ms: 100,
            expired_reservation_id: 0,
            push_done: 0,
            batch,
            slot,
        }
    }

    #[test]
    fn should_keep_pushed_messages_compact_and_hand_them_out_in_id_order() {
        let mut index = MessageIndex::default();
        for (slot, id) in [(0, 10), (1, 11), (2, 12), (3, 20)] {
            index.insert(id, pushed(10, slot, id));
        }
        index.insert(30, pushed(30, 0, 30));
        assert!(index.special.is_empty(), "all compact");
        assert_eq!(index.compact.len(), 2, "one entry per group");
        assert_eq!(index.compact[&10].runs.len(), 2, "10..=12 and 20");
        assert_eq!(index.get(20), Some(pushed(10, 3, 20)));
        assert_eq!(index.get(13), None);
        let order: Vec<u64> = index.available().map(|(_, id)| id).collect();
        assert_eq!(order, [10, 11, 12, 20, 30]);
        assert_eq!((index.len(), index.available_len()), (5, 5));
    }

    #[test]
    fn should_make_a_changed_message_special_and_merge_it_back_by_order_key() {
        let mut index = MessageIndex::default();
        for id in 1..=4 {
            index.insert(id, pushed(1, u32::try_from(id - 1).unwrap(), id));
        }
        // Message 3 reserved, then released to the front.
        let mut msg = index.get(3).unwrap();
        msg.state = State::Reserved {
            reservation_id: 9,
            until_ms: 50,
            lease_ms: 50,
        };
        msg.reserved_count = 1;
        index.update(3, msg);
        assert_eq!(index.available_len(), 3);
        let order: Vec<u64> = index.available().map(|(_, id)| id).collect();
        assert_eq!(order, [1, 2, 4]);
        msg.state = State::Available;
        msg.order_key = ORDER_BASE - 1;
        index.update(3, msg);
        let order: Vec<u64> = index.available().map(|(_, id)| id).collect();
        assert_eq!(order, [3, 1, 2, 4]);
        assert_eq!(index.remove(3), Some(msg));
        assert_eq!(index.remove(1).map(|m| m.slot), Some(0));
        assert_eq!(index.first_available(), Some((ORDER_BASE + 2, 2)));
        assert_eq!(index.remove(1), None, "gone already");
        index.remove(2);
        index.remove(4);
        assert!(index.compact.is_empty(), "an emptied group is dropped");
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn should_keep_an_old_or_different_message_special() {
        let mut index = MessageIndex::default();
        index.insert(50, pushed(50, 0, 50));
        // An adopted message with an older id; one pushed later into the same
        // group starts a run of its own.
        index.insert(7, pushed(50, 1, 7));
        let mut later = pushed(50, 2, 60);
        later.pushed_at_ms = 6;
        index.insert(60, later);
        assert_eq!(index.special.len(), 1);
        assert_eq!(index.compact[&50].runs.len(), 2);
        assert_eq!(index.get(60), Some(later));
        let order: Vec<u64> = index.available().map(|(_, id)| id).collect();
        assert_eq!(order, [7, 50, 60], "by order key across both kinds");
        index.clear();
        index.insert(40, pushed(70, 0, 40));
        assert_eq!(
            index.special.len(),
            1,
            "ids stay above the old compact ones"
        );
    }

    #[test]
    fn should_keep_messages_of_any_priority_compact_and_order_them_by_band() {
        let mut index = MessageIndex::default();
        let with = |priority: u8, batch: u64, slot: u32, id: u64| Msg {
            order_key: push_key(priority, id),
            ..pushed(batch, slot, id)
        };
        // One batch holding three priorities, then a second batch.
        for (slot, (priority, id)) in [(8, 1), (8, 2), (3, 3), (3, 4), (12, 5), (3, 6)]
            .into_iter()
            .enumerate()
        {
            index.insert(id, with(priority, 1, u32::try_from(slot).unwrap(), id));
        }
        index.insert(7, with(3, 7, 0, 7));
        assert!(index.special.is_empty(), "all compact");
        assert_eq!(
            index.compact.len(),
            5,
            "a group per change of priority or batch"
        );
        let order: Vec<u64> = index.available().map(|(_, id)| id).collect();
        assert_eq!(order, [3, 4, 6, 7, 1, 2, 5]);
        assert_eq!(index.get(6), Some(with(3, 1, 5, 6)));
        // A requeued one goes to the front of its band.
        let mut msg = index.get(5).unwrap();
        msg.order_key = super::super::order::front_key(12, 1);
        index.update(5, msg);
        index.remove(4);
        let order: Vec<u64> = index.available().map(|(_, id)| id).collect();
        assert_eq!(order, [3, 6, 7, 1, 2, 5]);
        for id in [1, 2, 3, 6, 7] {
            index.remove(id);
        }
        assert!(index.compact.is_empty() && index.compact_order.is_empty());
    }

    #[test]
    fn should_keep_slot_ids_as_runs() {
        let mut ids = SlotIds::default();
        for id in [5, 6, 7, 0, 0, 9] {
            ids.push(id);
        }
        assert_eq!(ids.runs.len(), 3);
        ids.set(8, 12);
        ids.pad_to(10);
        ids.set(3, 8);
        assert_eq!(
            ids.iter().collect::<Vec<_>>(),
            [5, 6, 7, 8, 0, 9, 0, 0, 12, 0]
        );
        assert_eq!(ids.len(), 10);
    }
}
