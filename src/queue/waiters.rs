//! Long-poll waiters of one queue, in arrival order: the reserves that found no
//! message and asked to wait for one.
//!
//! This is the state machine's half of a long poll, and holds no channel: a waiter
//! is an id, what it asked for and when its wait ends. The actor keeps the reply
//! channel of each waiter id, and tells the state machine whether the client is
//! still there when the waiter's turn comes (`Env::is_waiting`).

use std::collections::BTreeMap;

use super::state::Ask;

/// Names one parked reserve; ids increase in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaiterId(u64);

/// What a parked reserve asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Waiter {
    /// The reserve.
    pub(super) ask: Ask,
    /// When the wait ends (server time).
    pub(super) deadline_ms: u64,
}

/// The parked reserves of a queue.
#[derive(Debug, Default)]
pub(super) struct Waiters {
    parked: BTreeMap<WaiterId, Waiter>,
    next: u64,
}

impl Waiters {
    /// Parks `waiter` behind every waiter parked before it.
    pub(super) fn park(&mut self, waiter: Waiter) -> WaiterId {
        let id = WaiterId(self.next);
        self.next += 1;
        self.parked.insert(id, waiter);
        id
    }

    /// Takes the oldest waiter out.
    pub(super) fn pop_oldest(&mut self) -> Option<(WaiterId, Waiter)> {
        self.parked.pop_first()
    }

    /// Puts a waiter taken by [`Waiters::pop_oldest`] back in its place.
    pub(super) fn put_back(&mut self, id: WaiterId, waiter: Waiter) {
        self.parked.insert(id, waiter);
    }

    /// Removes a waiter (its wait ended); `None` if it was not parked.
    pub(super) fn remove(&mut self, id: WaiterId) -> Option<Waiter> {
        self.parked.remove(&id)
    }

    /// Waiters parked now.
    pub(super) fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }

    /// Parked reserves.
    pub(super) fn len(&self) -> usize {
        self.parked.len()
    }

    /// Removes every waiter (the queue's state is rebuilt, or it stops).
    pub(super) fn drain(&mut self) -> impl Iterator<Item = WaiterId> + '_ {
        std::mem::take(&mut self.parked).into_keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(deadline_ms: u64) -> Waiter {
        Waiter {
            ask: Ask::default(),
            deadline_ms,
        }
    }

    #[test]
    fn should_hand_out_waiters_in_arrival_order() {
        let mut waiters = Waiters::default();
        let first = waiters.park(waiter(30));
        let second = waiters.park(waiter(10));
        let third = waiters.park(waiter(20));
        assert!(waiters.remove(second).is_some());
        assert_eq!(waiters.len(), 2);
        let (oldest, parked) = waiters.pop_oldest().unwrap();
        assert_eq!((oldest, parked.deadline_ms), (first, 30));
        waiters.put_back(oldest, parked);
        assert_eq!(waiters.pop_oldest().unwrap().0, first, "put back in front");
        assert_eq!(waiters.pop_oldest().unwrap().0, third);
        assert!(waiters.pop_oldest().is_none());
    }
}
