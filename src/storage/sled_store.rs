//! The sled 0.34.7 implementation of [`Store`] and [`QueueLog`].
//!
//! One `sled::Db` per process holds a `queues` tree (queue id → [`QueueRecord`]), the id
//! high-water mark in the default tree, and two record trees shared by every queue:
//! batch records and their state records, each key prefixed by its queue's id
//! (layout 3, `keys.rs` and `batch.rs`). Single-key inserts and removes only
//! (property D in `storage/mod.rs`).
//!
//! Deleting a queue removes its record first, then its records one by one; a crash
//! in between leaves records of no queue, which the next open removes. Opening a
//! data directory of layout 2 (two trees per queue) copies its records into the
//! shared trees, makes the copies durable, then drops the old trees.
//!
//! # Format version
//! The default tree holds `format_version` ([`FORMAT_VERSION`]): the newest
//! record versions this binary writes. A directory of a newer format (written by a
//! newer ferromq) is refused at open, naming both versions, before anything is
//! written to it, so an older binary never damages what it cannot read. A
//! directory without the key (before versions were recorded) or of an older
//! format is read (older record versions are still decoded) and stamped with this
//! binary's version on its first flush.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::batch::decode_messages;
use super::commit::{Flushable, GroupCommit, SledFlush, COMMIT_SEQ_KEY};
use super::guard::{self, CommitSeq, GuardKeeper, GuardState};
use super::ids::Ids;
use super::keys;
use super::{
    Batch, BatchState, CommitTicket, FsyncMode, LoadedMessage, QueueLog, QueueRecord, StorageError,
    Store,
};

const NEXT_ID_KEY: &[u8] = b"next_id";
/// Key of the data directory's format version in the default tree.
const FORMAT_KEY: &[u8] = b"format_version";
/// The data format this binary writes: 7 = layout 3 with push queues,
/// processing times, delivery histories and hand-offs (queue records of version
/// 5, state records of version 2, batch records up to version 4, batch states of
/// version 3, the `histories` tree); 6 wrote no version-4 batch (a hand-off's
/// follow-ups, `batch.rs`), 5 and 4 had queue records of versions 4 and 3, all
/// still read. Directories without a recorded version are format 3 or older.
pub const FORMAT_VERSION: u64 = 7;

/// Options for [`SledStore::open`].
#[derive(Debug, Clone)]
pub struct SledConfig {
    /// The data directory (created if missing).
    pub path: PathBuf,
    /// sled's page-cache budget in bytes (RSS will be above it).
    pub cache_bytes: u64,
    /// When acknowledgements wait for fsync.
    pub fsync: FsyncMode,
    /// Open a store that is behind its guard file (acknowledged data lost) instead
    /// of refusing it: serve what is left, ids continuing after the guard's.
    pub recover: bool,
}

/// The store: a sled database, its committer and its id counter.
pub struct SledStore {
    db: sled::Db,
    queues: sled::Tree,
    /// Every queue's batch records, and their state records.
    batches: sled::Tree,
    states: sled::Tree,
    /// Every queue's delivery histories, keyed like the records.
    histories: sled::Tree,
    ids: Ids,
    commit: GroupCommit,
    guard: GuardKeeper,
}

/// Creates `dir` and any missing parents, each made durable: every directory
/// created is fsynced, and so is the one it was created in (a new directory's name
/// is an entry of its parent, lost in a power cut until the parent is fsynced).
fn create_dir_durably(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        // Made meanwhile by someone else: theirs to make durable, but it costs
        // nothing to do it here as well.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err),
    }
    guard::sync_dir(dir)?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    guard::sync_dir(parent)
}

impl SledStore {
    /// Opens (or creates) the store in `config.path`. This blocks (sled reads its
    /// log, the first id block is made durable): call it off the async runtime.
    ///
    /// # Errors
    /// If the directory cannot be created, another process holds it
    /// ([`StorageError::Locked`]), sled cannot open it, or it has lost data its
    /// guard file says was there (`guard.rs`; [`StorageError::Corrupt`] naming the
    /// path and what is missing) and `config.recover` is not set.
    pub fn open(config: &SledConfig) -> Result<Arc<Self>, StorageError> {
        create_dir_durably(&config.path).map_err(|err| {
            StorageError::Io(format!("cannot create {}: {err}", config.path.display()))
        })?;
        let guarded = match guard::read(&config.path) {
            Ok(guarded) => guarded,
            Err(err) if config.recover => {
                tracing::error!(cause = %err, "recovering: ignoring the damaged guard file");
                None
            }
            Err(err) => return Err(err),
        };
        let db = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_bytes)
            .flush_every_ms(Some(super::FLUSH_EVERY_MS))
            .open()
            .map_err(|err| open_error(err, &config.path))?;
        // sled creates `db`, `conf` and `blobs/` without making their names
        // durable: until this directory is fsynced a power cut can take them.
        guard::sync_dir(&config.path)
            .and_then(|()| match config.path.join("blobs") {
                blobs if blobs.is_dir() => guard::sync_dir(&blobs),
                _ => Ok(()),
            })
            .map_err(|err| {
                StorageError::Io(format!("cannot fsync {}: {err}", config.path.display()))
            })?;
        if db
            .tree_names()
            .iter()
            .any(|name| keys::is_layout1_tree(name))
        {
            return Err(StorageError::Corrupt(format!(
                "{} was written by an older ferromq (one record per message); \
                 this version reads only batch records: drain it with the old version \
                 or start with a new --data-dir",
                config.path.display()
            )));
        }
        let format = match db.get(FORMAT_KEY)? {
            Some(value) => u64::from_be_bytes(
                value
                    .as_ref()
                    .try_into()
                    .map_err(|_| StorageError::Corrupt("format_version".into()))?,
            ),
            None => 0,
        };
        if format > FORMAT_VERSION {
            return Err(StorageError::Corrupt(format!(
                "{} holds data format {format}, written by a newer ferromq; this one reads \
                 formats up to {FORMAT_VERSION}. Nothing was changed: run the newer version",
                config.path.display()
            )));
        }
        let queues = db.open_tree("queues")?;
        let batches = db.open_tree(keys::BATCHES_TREE)?;
        let states = db.open_tree(keys::STATES_TREE)?;
        let histories = db.open_tree(keys::HISTORIES_TREE)?;
        let stored_next = match db.get(NEXT_ID_KEY)? {
            Some(value) => Some(
                keys::decode_id_key(&value)
                    .ok_or_else(|| StorageError::Corrupt("next_id".into()))?,
            ),
            None => None,
        };
        let stored_seq = match db.get(COMMIT_SEQ_KEY)? {
            Some(value) => u64::from_be_bytes(
                value
                    .as_ref()
                    .try_into()
                    .map_err(|_| StorageError::Corrupt("commit_seq".into()))?,
            ),
            None => 0,
        };
        let (next, last_seq) = check_guard(
            &config.path,
            guarded,
            stored_next,
            stored_seq,
            config.recover,
        )?;
        let seq = Arc::new(CommitSeq::starting_after(last_seq));
        let flush = Arc::new(SledFlush {
            db: db.clone(),
            seq: Arc::clone(&seq),
        });
        migrate_layout2(&db, &batches, &states, flush.as_ref())?;
        sweep_orphans(&queues, &[&batches, &states, &histories])?;
        if format != FORMAT_VERSION {
            // Made durable by the first id block's flush, just below.
            db.insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes()[..])?;
        }
        let ids = {
            let db = db.clone();
            let flush = Arc::clone(&flush);
            Ids::start(
                next,
                Arc::new(move |mark| {
                    db.insert(NEXT_ID_KEY, &keys::id_key(mark)[..])?;
                    flush.flush_durably()
                }),
            )?
        };
        let commit = GroupCommit::start(config.fsync, flush)?;
        // The guard from now on: what is durable now (the first id block was just
        // flushed with a sequence number of its own).
        let written = GuardState {
            commit_seq: last_seq.max(guarded.map_or(0, |g| g.commit_seq)),
            ids_issued: next,
        };
        guard::write(&config.path, written)?;
        let guard = GuardKeeper::start(config.path.clone(), written, seq, ids.issued_fn())?;
        Ok(Arc::new(SledStore {
            db,
            queues,
            batches,
            states,
            histories,
            ids,
            commit,
            guard,
        }))
    }
}

/// Compares what sled holds (`stored_next`: its id counter, `None` for a fresh
/// store; `stored_seq`: its last commit) with the guard file; returns the id to
/// count from and the last commit sequence number.
fn check_guard(
    path: &Path,
    guarded: Option<GuardState>,
    stored_next: Option<u64>,
    stored_seq: u64,
    recover: bool,
) -> Result<(u64, u64), StorageError> {
    let next = stored_next.unwrap_or(1);
    let Some(guarded) = guarded else {
        if stored_next.is_some() {
            tracing::warn!(
                path = %path.display(),
                "no guard file in a data directory with data (written by an older ferromq, \
                 or deleted): writing one now"
            );
        }
        return Ok((next, stored_seq));
    };
    let mut missing = Vec::new();
    if stored_seq < guarded.commit_seq {
        missing.push(format!(
            "its last commit is number {stored_seq}, but commit {} had been made durable",
            guarded.commit_seq
        ));
    }
    if next < guarded.ids_issued {
        missing.push(format!(
            "its id counter is at {next}, but ids up to {} had been handed out",
            guarded.ids_issued
        ));
    }
    if missing.is_empty() {
        return Ok((next, stored_seq));
    }
    let what = format!(
        "{}: the store is behind its guard file {} ({}): acknowledged data is missing \
         (a truncated or damaged `db` file, or deleted files)",
        path.display(),
        guard::GUARD_FILE,
        missing.join("; ")
    );
    if !recover {
        return Err(StorageError::Corrupt(format!(
            "{what}. Restore the directory from a backup, or start with \
             --recover-lost-data to serve what is left (ids then continue after {}, \
             so none is handed out twice)",
            guarded.ids_issued
        )));
    }
    tracing::error!("{what}; recovering as asked: serving what is left");
    Ok((
        next.max(guarded.ids_issued),
        stored_seq.max(guarded.commit_seq),
    ))
}

/// sled 0.34.7 reports a data directory locked by another process as an
/// `ErrorKind::Other` whose text is "could not acquire lock on ...: Os { code: 11,
/// .. }" (`config.rs`, the result of its `try_lock_exclusive`); say what it means.
fn open_error(err: sled::Error, path: &Path) -> StorageError {
    match &err {
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().starts_with("could not acquire lock") =>
        {
            StorageError::Locked(path.to_path_buf())
        }
        _ => StorageError::from(err),
    }
}

/// Copies the records of layout-2 trees (`b`/`t` ++ queue id) into the shared
/// trees, makes the copies durable, then drops the old trees. Copying is
/// idempotent, so a crash part way through is finished at the next open.
fn migrate_layout2(
    db: &sled::Db,
    batches: &sled::Tree,
    states: &sled::Tree,
    flush: &dyn Flushable,
) -> Result<(), StorageError> {
    let old: Vec<(sled::IVec, u64, bool)> = db
        .tree_names()
        .into_iter()
        .filter_map(|name| {
            let (queue_id, is_states) = keys::layout2_tree(&name)?;
            Some((name, queue_id, is_states))
        })
        .collect();
    if old.is_empty() {
        return Ok(());
    }
    let mut records = 0u64;
    for (name, queue_id, is_states) in &old {
        let target = if *is_states { states } else { batches };
        for entry in db.open_tree(name)?.iter() {
            let (key, value) = entry?;
            let batch = keys::decode_id_key(&key).ok_or_else(|| {
                StorageError::Corrupt(format!("layout-2 key in queue {queue_id}"))
            })?;
            target.insert(keys::record_key(*queue_id, batch), value)?;
            records += 1;
        }
    }
    flush.flush_durably()?;
    for (name, _, _) in &old {
        db.drop_tree(name)?;
    }
    tracing::info!(
        trees = old.len(),
        records,
        "migrated the data directory from one tree per queue to shared trees"
    );
    Ok(())
}

/// Removes the records of queues that have no queue record (a deletion cut short
/// by a crash). Visits one key per queue prefix, not every record.
fn sweep_orphans(queues: &sled::Tree, trees: &[&sled::Tree]) -> Result<(), StorageError> {
    let mut live = HashSet::new();
    for key in queues.iter().keys() {
        let key = key?;
        live.insert(
            keys::decode_id_key(&key)
                .ok_or_else(|| StorageError::Corrupt(format!("queue key {key:?}")))?,
        );
    }
    for &tree in trees {
        let mut from = 0u64;
        loop {
            let Some(entry) = tree.range(keys::id_key(from)..).keys().next() else {
                break;
            };
            let key = entry?;
            let (queue_id, _) = keys::decode_record_key(&key)
                .ok_or_else(|| StorageError::Corrupt(format!("record key {key:?}")))?;
            if !live.contains(&queue_id) {
                tracing::warn!(queue_id, "removing the records of a deleted queue");
                remove_prefix(tree, queue_id)?;
            }
            match queue_id.checked_add(1) {
                Some(next) => from = next,
                None => break,
            }
        }
    }
    Ok(())
}

/// Removes every record of queue `queue_id` from `tree`.
fn remove_prefix(tree: &sled::Tree, queue_id: u64) -> Result<(), StorageError> {
    for key in tree.scan_prefix(keys::id_key(queue_id)).keys() {
        tree.remove(key?)?;
    }
    Ok(())
}

impl Store for SledStore {
    fn queues(&self) -> Result<Vec<QueueRecord>, StorageError> {
        let mut out = Vec::new();
        for entry in self.queues.iter() {
            let (key, value) = entry?;
            let record = keys::decode_queue(&value)
                .ok_or_else(|| StorageError::Corrupt(format!("queue record {key:?}")))?;
            out.push(record);
        }
        Ok(out)
    }

    fn put_queue(&self, record: &QueueRecord) -> Result<(), StorageError> {
        self.queues
            .insert(keys::id_key(record.id), keys::encode_queue(record))?;
        Ok(())
    }

    fn delete_queue(&self, queue_id: u64) -> Result<(), StorageError> {
        // The record first: records without it are removed at the next open.
        self.queues.remove(keys::id_key(queue_id))?;
        remove_prefix(&self.batches, queue_id)?;
        remove_prefix(&self.states, queue_id)?;
        remove_prefix(&self.histories, queue_id)
    }

    fn open_log(&self, queue_id: u64) -> Result<Box<dyn QueueLog>, StorageError> {
        Ok(Box::new(SledQueueLog {
            queue_id,
            batches: self.batches.clone(),
            states: self.states.clone(),
            histories: self.histories.clone(),
        }))
    }

    fn allocate_ids(&self, n: u64) -> Result<u64, StorageError> {
        self.ids.allocate(n)
    }

    fn commit(&self) -> CommitTicket {
        self.commit.request()
    }

    fn flush_running(&self) -> Option<CommitTicket> {
        self.commit.running()
    }

    fn flushes(&self) -> u64 {
        self.commit.flushes()
    }

    fn flushing_for(&self) -> std::time::Duration {
        self.commit.flushing_for()
    }

    fn commit_metrics(&self) -> Option<crate::metrics::CommitMetrics> {
        Some(self.commit.metrics().clone())
    }

    fn fsync_mode(&self) -> FsyncMode {
        self.commit.mode()
    }

    fn close(&self) {
        self.commit.stop();
        if let Err(err) = self.ids.stop() {
            tracing::error!(cause = %err, "cannot write the id counter");
        }
        if let Err(err) = self.db.flush() {
            tracing::error!(cause = %err, "final flush failed");
        }
        self.guard.stop();
    }
}

/// One queue's records in the shared trees.
struct SledQueueLog {
    queue_id: u64,
    batches: sled::Tree,
    states: sled::Tree,
    histories: sled::Tree,
}

impl SledQueueLog {
    fn key(&self, batch: u64) -> [u8; 16] {
        keys::record_key(self.queue_id, batch)
    }
}

impl QueueLog for SledQueueLog {
    fn put_batch(&self, key: u64, value: &[u8]) -> Result<(), StorageError> {
        self.batches.insert(self.key(key), value)?;
        Ok(())
    }

    fn put_batch_state(&self, key: u64, state: &[u8]) -> Result<(), StorageError> {
        self.states.insert(self.key(key), state)?;
        Ok(())
    }

    fn remove_batch(&self, key: u64) -> Result<(), StorageError> {
        self.batches.remove(self.key(key))?;
        self.states.remove(self.key(key))?;
        Ok(())
    }

    fn batch(&self, key: u64) -> Result<Option<Batch>, StorageError> {
        let Some(value) = self.batches.get(self.key(key))? else {
            return Ok(None);
        };
        // Zero copy: the Bytes keeps sled's buffer alive.
        Batch::parse(Bytes::from_owner(value))
            .map(Some)
            .ok_or_else(|| StorageError::Corrupt(format!("batch {key}")))
    }

    fn load(&self, each: &mut dyn FnMut(LoadedMessage)) -> Result<(), StorageError> {
        for entry in self.batches.scan_prefix(keys::id_key(self.queue_id)) {
            let (key_bytes, value) = entry?;
            let (_, key) = keys::decode_record_key(&key_bytes)
                .ok_or_else(|| StorageError::Corrupt("batch key".into()))?;
            let batch = Batch::parse(Bytes::from_owner(value))
                .ok_or_else(|| StorageError::Corrupt(format!("batch {key}")))?;
            let state = match self.states.get(&key_bytes)? {
                Some(value) => BatchState::decode(&value)
                    .ok_or_else(|| StorageError::Corrupt(format!("state of batch {key}")))?,
                None => BatchState::default(),
            };
            if decode_messages(key, &batch, &state, each)? == 0 {
                // Every message went before the removal was written (crash).
                self.remove_batch(key)?;
            }
        }
        Ok(())
    }

    fn clear(&self) -> Result<(), StorageError> {
        remove_prefix(&self.batches, self.queue_id)?;
        remove_prefix(&self.states, self.queue_id)?;
        remove_prefix(&self.histories, self.queue_id)
    }

    fn history(&self, id: u64) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.histories.get(self.key(id))?.map(|v| v.to_vec()))
    }

    fn put_history(&self, id: u64, value: &[u8]) -> Result<(), StorageError> {
        self.histories.insert(self.key(id), value)?;
        Ok(())
    }

    fn remove_history(&self, id: u64) -> Result<(), StorageError> {
        self.histories.remove(self.key(id))?;
        Ok(())
    }

    fn history_ids(&self) -> Result<Vec<u64>, StorageError> {
        let mut ids = Vec::new();
        for key in self
            .histories
            .scan_prefix(keys::id_key(self.queue_id))
            .keys()
        {
            let key = key?;
            let (_, id) = keys::decode_record_key(&key)
                .ok_or_else(|| StorageError::Corrupt("history key".into()))?;
            ids.push(id);
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> SledConfig {
        SledConfig {
            path: dir.to_path_buf(),
            cache_bytes: 8 << 20,
            fsync: FsyncMode::Never,
            recover: false,
        }
    }

    fn record(id: u64, name: &str) -> QueueRecord {
        QueueRecord {
            key_max_in_flight: 0,
            delivery_history: 10,
            id,
            name: name.into(),
            created_at_ms: 0,
            total_pushed: 0,
            message_timeout_ms: 1_000,
            message_expiration_s: 60,
            dead_letter: None,
            push: None,
            attachment: Vec::new(),
            processing: Vec::new(),
        }
    }

    #[test]
    fn should_keep_each_queues_records_apart_and_delete_only_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&config(dir.path())).unwrap();
        for (id, name) in [(1, "a"), (2, "b")] {
            store.put_queue(&record(id, name)).unwrap();
            let log = store.open_log(id).unwrap();
            log.put_batch(10, b"not parsed here").unwrap();
            log.put_batch_state(10, b"x").unwrap();
        }
        store.delete_queue(1).unwrap();
        assert_eq!(store.batches.scan_prefix(keys::id_key(1)).count(), 0);
        assert_eq!(store.states.scan_prefix(keys::id_key(1)).count(), 0);
        assert_eq!(store.batches.scan_prefix(keys::id_key(2)).count(), 1);
        let names: Vec<String> = store
            .queues()
            .unwrap()
            .into_iter()
            .map(|q| q.name)
            .collect();
        assert_eq!(names, ["b"]);
        // Creating queues creates no tree.
        let trees = store.db.tree_names().len();
        store.put_queue(&record(3, "c")).unwrap();
        store.open_log(3).unwrap().put_batch(1, b"y").unwrap();
        assert_eq!(store.db.tree_names().len(), trees);
        store.close();
    }

    #[test]
    fn should_remove_at_open_the_records_a_cut_short_deletion_left() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(&config(dir.path())).unwrap();
            store.put_queue(&record(1, "kept")).unwrap();
            store.open_log(1).unwrap().put_batch(5, b"kept").unwrap();
            // A deletion that removed the record, then crashed.
            store.open_log(2).unwrap().put_batch(5, b"orphan").unwrap();
            store
                .open_log(2)
                .unwrap()
                .put_batch_state(5, b"orphan")
                .unwrap();
            store.close();
        }
        let store = SledStore::open(&config(dir.path())).unwrap();
        assert_eq!(store.batches.scan_prefix(keys::id_key(2)).count(), 0);
        assert_eq!(store.states.scan_prefix(keys::id_key(2)).count(), 0);
        assert_eq!(store.batches.scan_prefix(keys::id_key(1)).count(), 1);
        store.close();
    }
}
