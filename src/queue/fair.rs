//! Fair per-key dispatch: which key's message a reserve takes next.
//!
//! A message may carry a dispatch key (a tenant, a customer, an order id). The
//! messages without one count as one more key, the unkeyed one. A key is
//! **eligible** when it has an AVAILABLE message and fewer messages in flight
//! (RESERVED) than the queue's `key_max_in_flight` (0: no cap; the unkeyed one
//! is never capped). A reserve takes the first available message (by order key:
//! priority, then FIFO, requeues in front) of the eligible key **served least
//! recently**, keys never served (or not since a restart) first, by name (the
//! unkeyed one, named "", before all); that key is then served "now". So keys
//! take turns: with keys A, B, C waiting, reserves go A, B, C, A, ... however
//! many messages A has, and a cap of 1 hands out one message per key at a time,
//! in order (SQS FIFO message groups, with any cap).
//!
//! The eligible keys are one ordered set of (last served, name, id), so a
//! reserve costs O(log keys), as does every change that makes a key eligible or
//! not. Per key: its name (shared), its available messages as an ordered set of
//! (order key, id), its counts; a key with no message left is forgotten. The
//! order of peek and redrive is unchanged (order key over the whole queue): keys
//! decide only what a reserve takes.
//!
//! When no message has a key, none of this exists (`index.rs` keeps no
//! [`Keys`]) and a reserve costs what it did before keys.
//!
//! Pure: part of the state machine.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Longest dispatch key, in bytes.
pub const MAX_KEY: usize = 128;

/// The id of the unkeyed messages' key.
pub(super) const UNKEYED: u32 = 0;

/// One key's messages and turn.
#[derive(Debug)]
struct KeyState {
    name: Arc<str>,
    /// Its AVAILABLE messages as (order key, id).
    available: BTreeSet<(u64, u64)>,
    /// Its RESERVED messages.
    in_flight: u32,
    /// Its messages in the queue, any state.
    messages: u32,
    /// When it was last served (0: not yet).
    served: u64,
}

/// The keys of one queue; see the module docs.
#[derive(Debug, Default)]
pub(super) struct Keys {
    ids: HashMap<Arc<str>, u32>,
    states: HashMap<u32, KeyState>,
    next_id: u32,
    /// The eligible keys as (last served, name, id): the first is next.
    ring: BTreeSet<(u64, Arc<str>, u32)>,
    turn: u64,
    /// Most messages in flight per key (0: no cap).
    cap: u32,
    /// The unkeyed key's name (""), turn, and whether it is in the ring.
    unkeyed_name: Arc<str>,
    unkeyed_served: u64,
    unkeyed_eligible: bool,
    /// Every keyed AVAILABLE message, as (order key, id), for peek's order.
    available: BTreeSet<(u64, u64)>,
}

/// How a message counts for its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Standing {
    /// AVAILABLE with this order key.
    Available(u64),
    /// RESERVED.
    InFlight,
    /// DELAYED or MOVING.
    Other,
}

impl Keys {
    /// Keys with `cap` messages in flight at most per key.
    pub(super) fn new(cap: u32) -> Self {
        Keys {
            next_id: 1,
            cap,
            unkeyed_name: Arc::from(""),
            ..Keys::default()
        }
    }

    /// The id of key `name`, made if new (with no message yet: add one with
    /// [`Keys::enter`] at once, or it lingers until the next one leaves).
    pub(super) fn intern(&mut self, name: &Arc<str>) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        // Ids only wrap after 2^32 keys; even then, never one in use.
        let mut id = self.next_id;
        while id == UNKEYED || self.states.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next_id = id.wrapping_add(1);
        self.ids.insert(Arc::clone(name), id);
        self.states.insert(
            id,
            KeyState {
                name: Arc::clone(name),
                available: BTreeSet::new(),
                in_flight: 0,
                messages: 0,
                served: 0,
            },
        );
        id
    }

    /// The name of key `id`.
    pub(super) fn name(&self, id: u32) -> Option<&Arc<str>> {
        self.states.get(&id).map(|s| &s.name)
    }

    /// Keyed messages in the queue.
    pub(super) fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Keys with a message.
    pub(super) fn len(&self) -> usize {
        self.states.len()
    }

    /// Keyed AVAILABLE messages, as (order key, id) in order.
    pub(super) fn available(&self) -> &BTreeSet<(u64, u64)> {
        &self.available
    }

    /// Message `id` of key `key` enters the queue standing as `standing`.
    pub(super) fn enter(&mut self, key: u32, id: u64, standing: Standing) {
        let Some(state) = self.states.get_mut(&key) else {
            return;
        };
        state.messages += 1;
        self.stand(key, id, standing, 1);
        self.sync(key);
    }

    /// Message `id` of key `key` changes from `old` to `new`.
    pub(super) fn change(&mut self, key: u32, id: u64, old: Standing, new: Standing) {
        if old == new {
            return;
        }
        self.stand(key, id, old, -1);
        self.stand(key, id, new, 1);
        self.sync(key);
    }

    /// Message `id` of key `key`, standing as `standing`, leaves the queue.
    pub(super) fn leave(&mut self, key: u32, id: u64, standing: Standing) {
        self.stand(key, id, standing, -1);
        let Some(state) = self.states.get_mut(&key) else {
            return;
        };
        state.messages = state.messages.saturating_sub(1);
        if state.messages == 0 {
            let (served, name) = (state.served, Arc::clone(&state.name));
            self.ring.remove(&(served, Arc::clone(&name), key));
            self.states.remove(&key);
            self.ids.remove(&name);
        } else {
            self.sync(key);
        }
    }

    /// Counts `id` in (`delta` 1) or out (-1) of its key's standing.
    fn stand(&mut self, key: u32, id: u64, standing: Standing, delta: i8) {
        let Some(state) = self.states.get_mut(&key) else {
            return;
        };
        match (standing, delta > 0) {
            (Standing::Available(order), true) => {
                state.available.insert((order, id));
                self.available.insert((order, id));
            }
            (Standing::Available(order), false) => {
                state.available.remove(&(order, id));
                self.available.remove(&(order, id));
            }
            (Standing::InFlight, true) => state.in_flight += 1,
            (Standing::InFlight, false) => state.in_flight = state.in_flight.saturating_sub(1),
            (Standing::Other, _) => {}
        }
    }

    /// Puts key `key` in the ring or takes it out, as its eligibility says.
    fn sync(&mut self, key: u32) {
        let Some(state) = self.states.get(&key) else {
            return;
        };
        let eligible = !state.available.is_empty() && (self.cap == 0 || state.in_flight < self.cap);
        let entry = (state.served, Arc::clone(&state.name), key);
        if eligible {
            self.ring.insert(entry);
        } else {
            self.ring.remove(&entry);
        }
    }

    /// Whether the unkeyed messages have one available.
    pub(super) fn set_unkeyed_available(&mut self, available: bool) {
        if available == self.unkeyed_eligible {
            return;
        }
        self.unkeyed_eligible = available;
        let entry = (self.unkeyed_served, Arc::clone(&self.unkeyed_name), UNKEYED);
        if available {
            self.ring.insert(entry);
        } else {
            self.ring.remove(&entry);
        }
    }

    /// The key to serve next, and its first available message (`None` for the
    /// unkeyed key: the index knows its messages).
    pub(super) fn next(&self) -> Option<(u32, Option<(u64, u64)>)> {
        let (_, _, key) = self.ring.first()?;
        if *key == UNKEYED {
            return Some((UNKEYED, None));
        }
        let first = self.states.get(key)?.available.first().copied();
        Some((*key, first))
    }

    /// Key `key` was served now.
    pub(super) fn served(&mut self, key: u32) {
        self.turn += 1;
        let turn = self.turn;
        if key == UNKEYED {
            let name = Arc::clone(&self.unkeyed_name);
            let was = (self.unkeyed_served, Arc::clone(&name), UNKEYED);
            self.unkeyed_served = turn;
            if self.ring.remove(&was) {
                self.ring.insert((turn, name, UNKEYED));
            }
            return;
        }
        let Some(state) = self.states.get_mut(&key) else {
            return;
        };
        let was = (state.served, Arc::clone(&state.name), key);
        state.served = turn;
        if self.ring.remove(&was) {
            self.ring.insert((turn, Arc::clone(&state.name), key));
        }
    }

    /// A new cap (0: none); every key's eligibility follows.
    pub(super) fn set_cap(&mut self, cap: u32) {
        if cap == self.cap {
            return;
        }
        self.cap = cap;
        let keys: Vec<u32> = self.states.keys().copied().collect();
        for key in keys {
            self.sync(key);
        }
    }
}

/// Checks a dispatch key: 1..=128 bytes of UTF-8 without control characters.
///
/// # Errors
/// A sentence saying what is wrong with it.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(format!(
            "a message key is 1..={MAX_KEY} bytes, this one {}",
            key.len()
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(format!("message key {key:?} has a control character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(keys: &mut Keys, n: usize) -> Vec<u32> {
        let mut out = Vec::new();
        for _ in 0..n {
            let Some((key, first)) = keys.next() else {
                break;
            };
            let (order_key, id) = first.expect("a keyed message");
            keys.change(key, id, Standing::Available(order_key), Standing::InFlight);
            keys.served(key);
            out.push(key);
        }
        out
    }

    #[test]
    fn should_take_turns_and_respect_the_cap() {
        let mut keys = Keys::new(0);
        let (a, b) = (keys.intern(&Arc::from("a")), keys.intern(&Arc::from("b")));
        for id in 1..=5 {
            keys.enter(a, id, Standing::Available(id));
        }
        keys.enter(b, 10, Standing::Available(10));
        keys.enter(b, 11, Standing::Available(11));
        assert_eq!(order(&mut keys, 5), [a, b, a, b, a]);
        // A cap of 1: nothing more of `a` while one is in flight.
        keys.set_cap(1);
        assert_eq!(keys.next(), None, "a and b both have one in flight");
        keys.leave(b, 10, Standing::InFlight);
        assert_eq!(keys.next(), None, "b has one in flight still");
        keys.leave(b, 11, Standing::InFlight);
        keys.leave(a, 1, Standing::InFlight);
        keys.leave(a, 2, Standing::InFlight);
        assert_eq!(
            order(&mut keys, 3),
            Vec::<u32>::new(),
            "a has one in flight still"
        );
        keys.leave(a, 3, Standing::InFlight);
        assert_eq!(order(&mut keys, 3), [a]);
        assert_eq!(keys.len(), 1, "b, with no message left, is forgotten");
        assert_eq!(keys.ids.len(), 1);
    }

    #[test]
    fn should_count_the_unkeyed_messages_as_one_key_served_in_turn() {
        let mut keys = Keys::new(0);
        let a = keys.intern(&Arc::from("a"));
        keys.enter(a, 1, Standing::Available(1));
        keys.enter(a, 2, Standing::Available(2));
        keys.set_unkeyed_available(true);
        // Never served: by name, and "" sorts first.
        assert_eq!(keys.next(), Some((UNKEYED, None)));
        keys.served(UNKEYED);
        assert_eq!(keys.next().map(|n| n.0), Some(a));
        keys.served(a);
        assert_eq!(keys.next(), Some((UNKEYED, None)));
        keys.set_unkeyed_available(false);
        assert_eq!(keys.next().map(|n| n.0), Some(a));
    }

    #[test]
    fn should_check_keys() {
        assert!(check_key("tenant-42/ü").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(129)).is_err());
        assert!(check_key("a\nb").is_err());
    }
}
