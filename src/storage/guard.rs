//! The data directory's guard file: a record, kept outside sled and fsynced on its
//! own, of how far the store had come, so that a store that lost acknowledged data
//! is noticed when it is opened instead of served as if nothing were missing.
//!
//! sled opens a truncated or partly overwritten `db` file, or a directory whose `db`
//! was deleted, without an error: its log simply ends earlier (measured in the
//! hardening issue: 2,500 of 5,000 acknowledged messages served without a word, and
//! ids handed out again). The guard holds two numbers that only grow:
//! - `commit_seq`: every group commit writes the next sequence number into sled
//!   before it flushes ([`CommitSeq`]); the guard holds one that a flush had made
//!   durable;
//! - `ids_issued`: the id counter's position; ids below it were handed out.
//!
//! A keeper thread rewrites the guard (a temporary file, fsync, rename, fsync of the
//! directory) about once a second when either number moved, and once more at a clean
//! close. At open, a sled store whose sequence or id counter is behind the guard has
//! lost data written before the guard's last write: the open is refused, naming the
//! path and what is missing, unless the operator asks to recover. Recovery serves
//! what is left and moves the id counter past the guard's, so ids never repeat.
//! What the guard cannot see: a loss of only the last second's commits (the guard
//! had not recorded them yet), which is what a crash of the machine with a lying
//! disk looks like, not a damaged file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::StorageError;

/// The guard's file name inside the data directory.
pub(super) const GUARD_FILE: &str = "ferromq.guard";
/// How often the keeper looks whether the guard should be rewritten.
const EVERY: Duration = Duration::from_secs(1);
const MAGIC: &str = "ferromq-guard 1";

/// What the guard records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct GuardState {
    /// A commit sequence number sled had made durable.
    pub(super) commit_seq: u64,
    /// Ids below this had been handed out.
    pub(super) ids_issued: u64,
}

/// The sequence numbers of group commits: the next one to write, and the highest
/// one a finished flush made durable.
#[derive(Debug, Default)]
pub(super) struct CommitSeq {
    next: AtomicU64,
    durable: AtomicU64,
}

impl CommitSeq {
    /// Continues after `last`, the highest sequence number the store holds.
    pub(super) fn starting_after(last: u64) -> Self {
        CommitSeq {
            next: AtomicU64::new(last.saturating_add(1)),
            durable: AtomicU64::new(last),
        }
    }

    /// The number the next flush writes.
    pub(super) fn take(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// `seq` is durable.
    pub(super) fn made_durable(&self, seq: u64) {
        self.durable.fetch_max(seq, Ordering::Release);
    }

    fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }
}

/// Reads the guard of `dir`; `None` if there is none.
///
/// # Errors
/// If it exists but cannot be read or is not a guard file.
pub(super) fn read(dir: &Path) -> Result<Option<GuardState>, StorageError> {
    let path = dir.join(GUARD_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(StorageError::Io(format!(
                "cannot read {}: {err}",
                path.display()
            )))
        }
    };
    parse(&text).map(Some).ok_or_else(|| {
        StorageError::Corrupt(format!(
            "{} is damaged (not a ferromq guard file); if the data directory is \
             otherwise intact, start with --recover-lost-data to rewrite it",
            path.display()
        ))
    })
}

fn parse(text: &str) -> Option<GuardState> {
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let mut field = |name: &str| -> Option<u64> {
        lines
            .next()?
            .strip_prefix(name)?
            .strip_prefix('=')?
            .parse()
            .ok()
    };
    let commit_seq = field("commit_seq")?;
    let ids_issued = field("ids_issued")?;
    let check = field("check")?;
    (check == checksum(commit_seq, ids_issued)).then_some(GuardState {
        commit_seq,
        ids_issued,
    })
}

/// Not cryptographic: it tells a torn or edited file from a written one.
fn checksum(commit_seq: u64, ids_issued: u64) -> u64 {
    (commit_seq ^ ids_issued.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15)
        .wrapping_mul(0xff51_afd7_ed55_8ccd)
}

/// Writes `state` as the guard of `dir` durably: temporary file, fsync, rename,
/// fsync of the directory.
///
/// # Errors
/// On any I/O failure (the previous guard then stays as it was).
pub(super) fn write(dir: &Path, state: GuardState) -> Result<(), StorageError> {
    let io = |what: &str, err: std::io::Error| {
        StorageError::Io(format!("guard file in {}: {what}: {err}", dir.display()))
    };
    let tmp = dir.join(format!("{GUARD_FILE}.tmp"));
    let text = format!(
        "{MAGIC}\ncommit_seq={}\nids_issued={}\ncheck={}\n",
        state.commit_seq,
        state.ids_issued,
        checksum(state.commit_seq, state.ids_issued)
    );
    let mut file = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("fsync", e))?;
    drop(file);
    std::fs::rename(&tmp, dir.join(GUARD_FILE)).map_err(|e| io("rename", e))?;
    sync_dir(dir).map_err(|e| io("fsync of the directory", e))
}

/// fsyncs the directory `dir` (its entries: a new or renamed file's name).
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The thread that rewrites the guard when the store moved on.
pub(super) struct GuardKeeper {
    shared: Arc<KeeperShared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct KeeperShared {
    dir: PathBuf,
    seq: Arc<CommitSeq>,
    issued: Box<dyn Fn() -> u64 + Send + Sync>,
    written: Mutex<GuardState>,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl KeeperShared {
    /// Writes the guard if the store moved past what it says.
    fn refresh(&self) {
        let now = GuardState {
            commit_seq: self.seq.durable(),
            ids_issued: (self.issued)(),
        };
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now.commit_seq <= written.commit_seq && now.ids_issued <= written.ids_issued {
            return;
        }
        let next = GuardState {
            commit_seq: now.commit_seq.max(written.commit_seq),
            ids_issued: now.ids_issued.max(written.ids_issued),
        };
        match write(&self.dir, next) {
            Ok(()) => *written = next,
            Err(err) => tracing::error!(cause = %err, "cannot update the guard file"),
        }
    }
}

impl GuardKeeper {
    /// Starts the keeper; `written` is what the guard holds now.
    ///
    /// # Errors
    /// If the thread cannot be started.
    pub(super) fn start(
        dir: PathBuf,
        written: GuardState,
        seq: Arc<CommitSeq>,
        issued: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Result<Self, StorageError> {
        let shared = Arc::new(KeeperShared {
            dir,
            seq,
            issued,
            written: Mutex::new(written),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("ferromq-guard".into())
                .spawn(move || loop {
                    {
                        let stop = shared
                            .stop
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        let (stop, _) = shared
                            .wake
                            .wait_timeout_while(stop, EVERY, |stop| !*stop)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        if *stop {
                            return;
                        }
                    }
                    shared.refresh();
                })
                .map_err(|err| StorageError::Io(format!("cannot start the guard thread: {err}")))?
        };
        Ok(GuardKeeper {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread and writes the guard once more (call after the store's
    /// final flush). Idempotent.
    pub(super) fn stop(&self) {
        *self
            .shared
            .stop
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.shared.wake.notify_all();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("guard thread panicked");
            }
            self.shared.refresh();
        }
    }
}

impl Drop for GuardKeeper {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_read_back_what_it_wrote_and_refuse_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let state = GuardState {
            commit_seq: 42,
            ids_issued: 1_048_577,
        };
        write(dir.path(), state).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(state));
        let path = dir.path().join(GUARD_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("commit_seq=42", "commit_seq=41")).unwrap();
        assert!(matches!(read(dir.path()), Err(StorageError::Corrupt(_))));
        std::fs::write(&path, "").unwrap();
        assert!(read(dir.path()).is_err());
    }
}
