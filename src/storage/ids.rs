//! The id counter behind [`super::Store::allocate_ids`] (safety property B) and the
//! thread that keeps its durable high-water mark ahead of it.
//!
//! Ids below `durable` may be handed out: a high-water mark at least that large has
//! been written and made durable (flush + fdatasync). When fewer than half a block
//! ([`ID_BLOCK`]) of such ids is left, the allocator asks the keeper thread to write
//! and fsync a new mark one block further on, and goes on handing out ids meanwhile;
//! only if it runs out before the keeper is done (half a million ids within one
//! fsync) does an allocation wait. So no allocation does disk I/O on the caller's
//! thread, which is usually a tokio worker running a queue actor.
//!
//! At a clean shutdown the exact next id is written instead, so ids stay dense
//! across clean restarts; after a crash they jump by up to one block. (The first
//! message id of a fresh server is 2: queue ids come from the same counter, and the
//! first push creates queue 1.)

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::StorageError;

/// How far ahead of the counter the durable high-water mark is moved each time.
pub(super) const ID_BLOCK: u64 = 1 << 20;

/// Writes a high-water mark and makes it durable.
pub(super) type Persist = dyn Fn(u64) -> Result<(), StorageError> + Send + Sync;

/// The counter and its keeper thread.
pub(super) struct Ids {
    shared: Arc<Shared>,
    persist: Arc<Persist>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the keeper: an extension was asked for, or stop.
    work: Condvar,
    /// Wakes allocators waiting for the keeper.
    extended: Condvar,
}

struct State {
    /// The next id to hand out.
    next: u64,
    /// Ids below this are covered by a durable high-water mark.
    durable: u64,
    /// The keeper should make at least this much durable (0: nothing asked).
    wanted: u64,
    /// Attempts of the keeper started and finished so far.
    started: u64,
    finished: u64,
    /// How the last finished attempt failed, if it did.
    failed: Option<StorageError>,
    stop: bool,
}

impl Ids {
    /// A counter starting at `next`, whose first block is made durable now (on the
    /// caller's thread, which opens the store).
    ///
    /// # Errors
    /// If the first high-water mark cannot be written, or the thread not started.
    pub(super) fn start(next: u64, persist: Arc<Persist>) -> Result<Self, StorageError> {
        let durable = next.saturating_add(ID_BLOCK);
        persist(durable)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next,
                durable,
                wanted: 0,
                started: 0,
                finished: 0,
                failed: None,
                stop: false,
            }),
            work: Condvar::new(),
            extended: Condvar::new(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            let persist = Arc::clone(&persist);
            std::thread::Builder::new()
                .name("ferromq-ids".into())
                .spawn(move || keep(&shared, persist.as_ref()))
                .map_err(|err| StorageError::Io(format!("cannot start the id thread: {err}")))?
        };
        Ok(Ids {
            shared,
            persist,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A function telling how far the counter has come (ids below it were handed
    /// out), for the guard file.
    pub(super) fn issued_fn(&self) -> Box<dyn Fn() -> u64 + Send + Sync> {
        let shared = Arc::clone(&self.shared);
        Box::new(move || lock(&shared.state).next)
    }

    /// `n` consecutive fresh ids; returns the first.
    ///
    /// # Errors
    /// If the high-water mark cannot be made durable.
    pub(super) fn allocate(&self, n: u64) -> Result<u64, StorageError> {
        let mut state = lock(&self.shared.state);
        loop {
            if state.stop {
                return Err(StorageError::Closed);
            }
            let end = state
                .next
                .checked_add(n)
                .ok_or_else(|| StorageError::Corrupt("the id counter is exhausted".into()))?;
            if end <= state.durable {
                let first = state.next;
                state.next = end;
                if state.durable - end < ID_BLOCK / 2 && state.wanted < end {
                    state.wanted = end;
                    self.shared.work.notify_one();
                }
                return Ok(first);
            }
            // Out of durable ids: wait for an attempt of the keeper that starts
            // after this request (so it covers `end`), and take its outcome.
            let asked = state.started;
            if state.wanted < end {
                state.wanted = end;
                self.shared.work.notify_one();
            }
            while state.finished <= asked && !state.stop {
                state = self
                    .shared
                    .extended
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if end > state.durable && !state.stop {
                return Err(state.failed.clone().unwrap_or_else(|| {
                    StorageError::Io("the id high-water mark was not extended".into())
                }));
            }
        }
    }

    /// Stops the keeper and writes the exact next id (not flushed: the caller's
    /// final flush covers it). Idempotent.
    pub(super) fn stop(&self) -> Result<(), StorageError> {
        let next = {
            let mut state = lock(&self.shared.state);
            if state.stop {
                return Ok(());
            }
            state.stop = true;
            state.next
        };
        self.shared.work.notify_one();
        self.shared.extended.notify_all();
        if let Some(thread) = lock(&self.thread).take() {
            if thread.join().is_err() {
                tracing::error!("id thread panicked");
            }
        }
        (self.persist)(next)
    }
}

impl Drop for Ids {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            tracing::error!(cause = %err, "cannot write the id counter");
        }
    }
}

fn keep(shared: &Shared, persist: &Persist) {
    loop {
        let target = {
            let mut state = lock(&shared.state);
            while !state.stop && state.wanted == 0 {
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if state.stop {
                return;
            }
            let target = state.wanted.max(state.next).saturating_add(ID_BLOCK);
            state.wanted = 0;
            state.started += 1;
            target
        };
        let result = persist(target);
        let mut state = lock(&shared.state);
        state.finished = state.started;
        match result {
            Ok(()) => {
                state.durable = state.durable.max(target);
                state.failed = None;
            }
            Err(err) => {
                tracing::error!(cause = %err, "cannot persist the id high-water mark");
                state.failed = Some(err);
            }
        }
        drop(state);
        shared.extended.notify_all();
    }
}

/// A poisoned lock only means another thread panicked while holding it; the
/// counters are still meaningful.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording() -> (Arc<Persist>, Arc<Mutex<Vec<u64>>>) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&written);
        let persist: Arc<Persist> = Arc::new(move |mark| {
            log.lock().unwrap().push(mark);
            Ok(())
        });
        (persist, written)
    }

    #[test]
    fn should_hand_out_increasing_ids_and_keep_the_mark_ahead() {
        let (persist, written) = recording();
        let ids = Ids::start(10, persist).unwrap();
        assert_eq!(ids.allocate(5).unwrap(), 10);
        assert_eq!(ids.allocate(1).unwrap(), 15);
        // Go past the first block: crossing its second half asks for a new mark,
        // and the allocation beyond it waits for that mark.
        let mut last = 16;
        for _ in 0..=(ID_BLOCK / 100) {
            let first = ids.allocate(100).unwrap();
            assert_eq!(first, last);
            last = first + 100;
        }
        ids.stop().unwrap();
        let written = written.lock().unwrap().clone();
        assert_eq!(
            written[0],
            10 + ID_BLOCK,
            "the first block is durable at start"
        );
        assert!(
            written.len() >= 3,
            "extended at least once, then the exact next id: {written:?}"
        );
        assert_eq!(
            *written.last().unwrap(),
            last,
            "a clean stop writes the exact next id"
        );
        for mark in &written[1..written.len() - 1] {
            assert!(
                *mark > last - 100,
                "every extension covered the ids handed out before it"
            );
        }
    }

    #[test]
    fn should_report_a_failed_extension_to_the_allocation_that_needs_it() {
        let fail = Arc::new(Mutex::new(false));
        let flag = Arc::clone(&fail);
        let persist: Arc<Persist> = Arc::new(move |_| {
            if *flag.lock().unwrap() {
                Err(StorageError::Io("disk gone".into()))
            } else {
                Ok(())
            }
        });
        let ids = Ids::start(1, persist).unwrap();
        *fail.lock().unwrap() = true;
        let mut outcome = Ok(0);
        for _ in 0..=(ID_BLOCK / 100) {
            outcome = ids.allocate(100);
            if outcome.is_err() {
                break;
            }
        }
        assert_eq!(outcome, Err(StorageError::Io("disk gone".into())));
        *fail.lock().unwrap() = false;
        assert!(
            ids.allocate(100).is_ok(),
            "a later allocation asks again and succeeds"
        );
    }
}
