//! Group commit: one committer thread makes the store durable for many writers.
//!
//! A writer first writes to sled, then calls [`GroupCommit::request`], which returns
//! the number of the first flush that will *start* after the call (so it covers the
//! write), and awaits [`CommitTicket::wait`]. The committer thread loops: wait until
//! something is pending, take a new flush number, `db.flush()`, then publish the
//! number. Released sled 0.34.7's `flush` is not an fsync (`sync_file_range`, see
//! docs/sled-notes.md §0.1) and hands the write to its IO pool; the vendored sled is
//! patched (`vendor/sled/PATCHES.md`) so that it writes on the committer's thread and
//! ends with `fdatasync`: one wait for the disk per group commit. (Before the patch
//! the committer called `fdatasync` on a second handle to sled's `db` file after
//! the flush: two waits for the disk and a hand-off to sled's IO pool and back.)
//! Every write that arrived while the previous flush ran is covered by the next one:
//! one fsync for all queues and connections.
//!
//! It is an OS thread, not a tokio task, because `flush` and `fdatasync` block, and
//! never `flush_async` (it deadlocks in sled 0.34.7).
//!
//! If a flush or fsync fails the process aborts: after a failed fsync the state of
//! the page cache is undefined, and acknowledging anything more would be a lie.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::metrics::CommitMetrics;

use tokio::sync::watch;

use super::StorageError;

/// When acknowledgements wait for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    /// Acknowledge pushes, deletes and releases only after a covering fsync (default).
    Always,
    /// Fsync every this many milliseconds; acknowledgements do not wait, so up to
    /// this much acknowledged work can be lost in a crash.
    Interval(u64),
    /// Never fsync explicitly (sled still syncs in the background every 500 ms).
    Never,
}

impl std::str::FromStr for FsyncMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncMode::Always),
            "never" => Ok(FsyncMode::Never),
            _ => match s.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if (1..=60_000).contains(&ms) => Ok(FsyncMode::Interval(ms)),
                _ => Err(format!(
                    "invalid fsync mode {s:?}: use always, never or interval:MS (1..=60000)"
                )),
            },
        }
    }
}

impl std::fmt::Display for FsyncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsyncMode::Always => f.write_str("always"),
            FsyncMode::Never => f.write_str("never"),
            FsyncMode::Interval(ms) => write!(f, "interval:{ms}"),
        }
    }
}

/// What the committer flushes: sled's log and the file to fdatasync after it.
pub trait Flushable: Send + Sync + 'static {
    /// Makes every write so far durable.
    ///
    /// # Errors
    /// Any I/O failure; the caller aborts the process on it.
    fn flush_durably(&self) -> Result<(), StorageError>;
}

/// Shared between the committer thread and the writers.
struct Shared {
    state: Mutex<CommitState>,
    wake: Condvar,
    durable: watch::Sender<u64>,
    /// Each flush's size and time.
    metrics: CommitMetrics,
}

#[derive(Default)]
struct CommitState {
    /// A write is waiting for a flush that has not started.
    pending: bool,
    /// Number of the last flush that started.
    started: u64,
    /// Set on shutdown: do one last flush and exit.
    stop: bool,
    /// Flushes completed, for stats.
    flushes: u64,
    /// When the flush running now started (health: a stalled disk).
    flushing_since: Option<Instant>,
    /// Commit requests since the last flush started (metrics).
    requests: u64,
}

/// Handle to the committer; cheap to share behind an `Arc`.
pub struct GroupCommit {
    mode: FsyncMode,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What a writer awaits before acknowledging.
#[derive(Clone, Debug)]
pub struct CommitTicket {
    durable: Option<(watch::Receiver<u64>, u64)>,
}

impl CommitTicket {
    /// A ticket that is already satisfied (modes that do not wait).
    pub fn ready() -> Self {
        CommitTicket { durable: None }
    }

    /// Waits until the flush this ticket names has completed.
    ///
    /// # Errors
    /// [`StorageError::Closed`] if the committer stopped before that flush.
    pub async fn wait(self) -> Result<(), StorageError> {
        let Some((mut rx, need)) = self.durable else {
            return Ok(());
        };
        rx.wait_for(|done| *done >= need)
            .await
            .map(|_| ())
            .map_err(|_| StorageError::Closed)
    }
}

impl GroupCommit {
    /// Starts the committer for `target` in `mode`.
    ///
    /// # Errors
    /// If the thread cannot be spawned.
    pub fn start(mode: FsyncMode, target: Arc<dyn Flushable>) -> Result<Self, StorageError> {
        let (durable, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            state: Mutex::new(CommitState::default()),
            wake: Condvar::new(),
            durable,
            metrics: CommitMetrics::default(),
        });
        let thread = match mode {
            FsyncMode::Never => None,
            FsyncMode::Always => {
                let shared = Arc::clone(&shared);
                Some(spawn("ferromq-commit", move || {
                    run_grouped(&shared, target.as_ref())
                })?)
            }
            FsyncMode::Interval(ms) => {
                let shared = Arc::clone(&shared);
                Some(spawn("ferromq-commit", move || {
                    run_interval(&shared, target.as_ref(), Duration::from_millis(ms))
                })?)
            }
        };
        Ok(GroupCommit {
            mode,
            shared,
            thread: Mutex::new(thread),
        })
    }

    /// The mode this committer runs in.
    pub fn mode(&self) -> FsyncMode {
        self.mode
    }

    /// Asks for a flush that covers every write made before this call.
    pub fn request(&self) -> CommitTicket {
        if self.mode != FsyncMode::Always {
            return CommitTicket::ready();
        }
        let need = {
            let mut state = lock(&self.shared.state);
            state.pending = true;
            state.requests += 1;
            state.started + 1
        };
        self.shared.wake.notify_one();
        CommitTicket {
            durable: Some((self.shared.durable.subscribe(), need)),
        }
    }

    /// If a flush is running now, a ticket that resolves when it ends. A write made
    /// now needs the *next* flush anyway, so a writer may gather more writes until
    /// then at no cost in latency (see the queue actor's turn).
    pub fn running(&self) -> Option<CommitTicket> {
        if self.mode != FsyncMode::Always {
            return None;
        }
        let started = lock(&self.shared.state).started;
        let durable = self.shared.durable.subscribe();
        if *durable.borrow() >= started {
            return None;
        }
        Some(CommitTicket {
            durable: Some((durable, started)),
        })
    }

    /// Each flush's size and time.
    pub fn metrics(&self) -> &CommitMetrics {
        &self.shared.metrics
    }

    /// Number of flushes (with fdatasync) done so far.
    pub fn flushes(&self) -> u64 {
        lock(&self.shared.state).flushes
    }

    /// How long the flush running now has been running (zero if none is): a
    /// flush that does not end is a disk that does not answer.
    pub fn flushing_for(&self) -> Duration {
        lock(&self.shared.state)
            .flushing_since
            .map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Does a last flush and stops the thread. Idempotent.
    pub fn stop(&self) {
        {
            let mut state = lock(&self.shared.state);
            state.stop = true;
            state.pending = true;
        }
        self.shared.wake.notify_one();
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("committer thread panicked");
            }
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, StorageError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map_err(|err| StorageError::Io(format!("cannot start the committer thread: {err}")))
}

/// A poisoned lock only means another thread panicked while holding it; the state
/// (a few counters) is still meaningful, so keep going.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn flush_or_abort(target: &dyn Flushable) {
    if let Err(err) = target.flush_durably() {
        tracing::error!(cause = %err, "flush failed; aborting so that nothing unflushed is acknowledged");
        std::process::abort();
    }
}

/// A flush, measured and counted.
fn timed_flush(shared: &Shared, target: &dyn Flushable, requests: Option<u64>) {
    let started = Instant::now();
    flush_or_abort(target);
    shared.metrics.flushed(requests, started.elapsed());
    let mut state = lock(&shared.state);
    state.flushes += 1;
    state.flushing_since = None;
}

fn run_grouped(shared: &Shared, target: &dyn Flushable) {
    loop {
        let (epoch, stop, requests) = {
            let mut state = lock(&shared.state);
            while !state.pending {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            state.pending = false;
            state.started += 1;
            state.flushing_since = Some(Instant::now());
            let requests = std::mem::take(&mut state.requests);
            (state.started, state.stop, requests)
        };
        timed_flush(shared, target, Some(requests));
        shared.durable.send_replace(epoch);
        if stop {
            return;
        }
    }
}

fn run_interval(shared: &Shared, target: &dyn Flushable, every: Duration) {
    let mut next = Instant::now() + every;
    loop {
        let stop = {
            let mut state = lock(&shared.state);
            while !state.stop {
                let now = Instant::now();
                if now >= next {
                    break;
                }
                state = shared
                    .wake
                    .wait_timeout(state, next - now)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            state.flushing_since = Some(Instant::now());
            state.stop
        };
        timed_flush(shared, target, None);
        if stop {
            return;
        }
        next = Instant::now() + every;
    }
}

/// Flushes sled: with the vendored patch (`vendor/sled/PATCHES.md`) sled's flush
/// writes the log on this thread and fdatasyncs it, one wait for the disk. Each
/// flush first writes the next commit sequence number (`guard.rs`), so that the
/// guard file can tell later whether sled still holds what it made durable.
pub(super) struct SledFlush {
    /// The database whose log is flushed.
    pub(super) db: sled::Db,
    /// The commit sequence numbers.
    pub(super) seq: Arc<super::guard::CommitSeq>,
}

/// sled key of the last commit sequence number written.
pub(super) const COMMIT_SEQ_KEY: &[u8] = b"commit_seq";

impl Flushable for SledFlush {
    fn flush_durably(&self) -> Result<(), StorageError> {
        let seq = self.seq.take();
        self.db.insert(COMMIT_SEQ_KEY, &seq.to_be_bytes()[..])?;
        self.db.flush()?;
        self.seq.made_durable(seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Counting(AtomicU64);

    impl Flushable for Counting {
        fn flush_durably(&self) -> Result<(), StorageError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    /// A flush that waits for its test to let it finish.
    struct Stalled(std::sync::Mutex<std::sync::mpsc::Receiver<()>>);

    impl Flushable for Stalled {
        fn flush_durably(&self) -> Result<(), StorageError> {
            let _ = lock(&self.0).recv();
            Ok(())
        }
    }

    #[tokio::test]
    async fn should_report_how_long_the_running_flush_has_run() {
        let (release, stalled) = std::sync::mpsc::channel();
        let target = Arc::new(Stalled(std::sync::Mutex::new(stalled)));
        let commit = GroupCommit::start(FsyncMode::Always, target).unwrap();
        assert_eq!(commit.flushing_for(), Duration::ZERO, "no flush yet");
        let ticket = commit.request();
        // The flush has started once `running` names it.
        while commit.running().is_none() {
            tokio::task::yield_now().await;
        }
        let before = commit.flushing_for();
        std::thread::sleep(Duration::from_millis(20)); // time passing is the point
        assert!(commit.flushing_for() >= before + Duration::from_millis(20));
        release.send(()).unwrap();
        ticket.wait().await.unwrap();
        assert_eq!(commit.flushing_for(), Duration::ZERO, "the flush ended");
        drop(release);
    }

    #[test]
    fn should_parse_fsync_modes() {
        assert_eq!("always".parse(), Ok(FsyncMode::Always));
        assert_eq!("never".parse(), Ok(FsyncMode::Never));
        assert_eq!("interval:25".parse(), Ok(FsyncMode::Interval(25)));
        assert!("interval:0".parse::<FsyncMode>().is_err());
        assert!("sometimes".parse::<FsyncMode>().is_err());
    }

    #[tokio::test]
    async fn should_release_waiters_after_a_flush_that_started_after_them() {
        let target = Arc::new(Counting(AtomicU64::new(0)));
        let commit = GroupCommit::start(FsyncMode::Always, target.clone()).unwrap();
        let tickets: Vec<_> = (0..50).map(|_| commit.request()).collect();
        for ticket in tickets {
            ticket.wait().await.unwrap();
        }
        let flushes = target.0.load(Ordering::SeqCst);
        assert!((1..=50).contains(&flushes), "{flushes}");
        commit.stop();
    }

    #[tokio::test]
    async fn should_not_wait_in_modes_that_do_not_wait() {
        let target = Arc::new(Counting(AtomicU64::new(0)));
        let commit = GroupCommit::start(FsyncMode::Never, target.clone()).unwrap();
        commit.request().wait().await.unwrap();
        assert_eq!(target.0.load(Ordering::SeqCst), 0);
    }
}
