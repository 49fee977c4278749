//! The sled 0.34.7 implementation of [`Store`] and [`QueueLog`].
//!
//! One `sled::Db` per process holds a `queues` tree (queue id → [`QueueRecord`]), the id
//! high-water mark in the default tree, and two trees per queue: batch records and
//! their state records (layout in `keys.rs` and `batch.rs`). Single-key inserts and removes only (property D in
//! `storage/mod.rs`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::commit::{Flushable, GroupCommit, SledFlush};
use super::keys;
use super::{
    Batch, BatchBuilder, BatchState, CommitTicket, FsyncMode, LoadedMessage, QueueLog, QueueRecord,
    StorageError, Store,
};

/// How many ids one high-water-mark write covers. Crossing into a new block costs
/// one synchronous flush (about a millisecond), once per this many ids.
const ID_BLOCK: u64 = 1 << 20;
const NEXT_ID_KEY: &[u8] = b"next_id";

/// Options for [`SledStore::open`].
#[derive(Debug, Clone)]
pub struct SledConfig {
    /// The data directory (created if missing).
    pub path: PathBuf,
    /// sled's page-cache budget in bytes (RSS will be above it).
    pub cache_bytes: u64,
    /// When acknowledgements wait for fsync.
    pub fsync: FsyncMode,
}

/// The store: a sled database and its committer.
pub struct SledStore {
    db: sled::Db,
    queues: sled::Tree,
    ids: Mutex<IdBlock>,
    /// Flush + fdatasync, for the id high-water mark (outside the committer).
    flush: Arc<SledFlush>,
    commit: GroupCommit,
}

/// The id counter: ids below `limit` may be handed out without another write.
struct IdBlock {
    next: u64,
    limit: u64,
}

impl SledStore {
    /// Opens (or creates) the store in `config.path`.
    ///
    /// # Errors
    /// If the directory cannot be created or sled cannot open it (for example
    /// because another process holds it).
    pub fn open(config: &SledConfig) -> Result<Arc<Self>, StorageError> {
        std::fs::create_dir_all(&config.path).map_err(|err| {
            StorageError::Io(format!("cannot create {}: {err}", config.path.display()))
        })?;
        let db = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_bytes)
            .flush_every_ms(Some(500))
            .open()?;
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
        let queues = db.open_tree("queues")?;
        let next = match db.get(NEXT_ID_KEY)? {
            Some(value) => keys::decode_id_key(&value)
                .ok_or_else(|| StorageError::Corrupt("next_id".into()))?,
            None => 1,
        };
        let log_file = open_log_file(&config.path)?;
        let flush = Arc::new(SledFlush {
            db: db.clone(),
            log_file,
        });
        let commit = GroupCommit::start(config.fsync, flush.clone())?;
        Ok(Arc::new(SledStore {
            db,
            queues,
            ids: Mutex::new(IdBlock { next, limit: next }),
            flush,
            commit,
        }))
    }
}

fn open_log_file(dir: &Path) -> Result<std::fs::File, StorageError> {
    let path = dir.join("db");
    std::fs::File::open(&path)
        .map_err(|err| StorageError::Io(format!("cannot open {}: {err}", path.display())))
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
        self.queues.remove(keys::id_key(queue_id))?;
        self.db.drop_tree(keys::batches_tree(queue_id))?;
        self.db.drop_tree(keys::batch_states_tree(queue_id))?;
        Ok(())
    }

    fn open_log(&self, queue_id: u64) -> Result<Box<dyn QueueLog>, StorageError> {
        Ok(Box::new(SledQueueLog {
            batches: self.db.open_tree(keys::batches_tree(queue_id))?,
            states: self.db.open_tree(keys::batch_states_tree(queue_id))?,
        }))
    }

    fn allocate_ids(&self, n: u64) -> Result<u64, StorageError> {
        let mut ids = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = ids.next;
        let end = first + n;
        if end > ids.limit {
            // The new high-water mark must be durable before any id above the old
            // one leaves the server: reservation ids are not otherwise persisted
            // before they are handed out, and fencing tokens must never repeat.
            let limit = end + ID_BLOCK;
            self.db.insert(NEXT_ID_KEY, &keys::id_key(limit)[..])?;
            self.flush.flush_durably()?;
            ids.limit = limit;
        }
        ids.next = end;
        Ok(first)
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

    fn fsync_mode(&self) -> FsyncMode {
        self.commit.mode()
    }

    fn close(&self) {
        self.commit.stop();
        if let Err(err) = self.db.flush() {
            tracing::error!(cause = %err, "final flush failed");
        }
    }
}

/// One queue's two trees: batch records and their state records.
struct SledQueueLog {
    batches: sled::Tree,
    states: sled::Tree,
}

impl QueueLog for SledQueueLog {
    fn put_batch(&self, key: u64, batch: &BatchBuilder) -> Result<(), StorageError> {
        self.batches.insert(keys::id_key(key), batch.encode())?;
        Ok(())
    }

    fn put_batch_state(&self, key: u64, state: &[u8]) -> Result<(), StorageError> {
        self.states.insert(keys::id_key(key), state)?;
        Ok(())
    }

    fn remove_batch(&self, key: u64) -> Result<(), StorageError> {
        self.batches.remove(keys::id_key(key))?;
        self.states.remove(keys::id_key(key))?;
        Ok(())
    }

    fn batch(&self, key: u64) -> Result<Option<Batch>, StorageError> {
        let Some(value) = self.batches.get(keys::id_key(key))? else {
            return Ok(None);
        };
        // Zero copy: the Bytes keeps sled's buffer alive.
        Batch::parse(Bytes::from_owner(value))
            .map(Some)
            .ok_or_else(|| StorageError::Corrupt(format!("batch {key}")))
    }

    fn load(&self, each: &mut dyn FnMut(LoadedMessage)) -> Result<(), StorageError> {
        for entry in self.batches.iter() {
            let (key_bytes, value) = entry?;
            let key = keys::decode_id_key(&key_bytes)
                .ok_or_else(|| StorageError::Corrupt("batch key".into()))?;
            let batch = Batch::parse(Bytes::from_owner(value))
                .ok_or_else(|| StorageError::Corrupt(format!("batch {key}")))?;
            let state = match self.states.get(&key_bytes)? {
                Some(value) => BatchState::decode(&value)
                    .ok_or_else(|| StorageError::Corrupt(format!("state of batch {key}")))?,
                None => BatchState::default(),
            };
            let batch_len = u32::try_from(batch.count())
                .map_err(|_| StorageError::Corrupt(format!("batch {key} is too long")))?;
            let mut live = 0;
            let mut states = state.states.iter().peekable();
            for slot in 0..batch.count() {
                let slot32 = u32::try_from(slot).unwrap_or(u32::MAX);
                let mut own_state = None;
                // States are written in slot order.
                while let Some((state_slot, st)) = states.peek() {
                    if *state_slot > slot32 {
                        break;
                    }
                    if *state_slot == slot32 {
                        own_state = Some(*st);
                    }
                    states.next();
                }
                if state.is_deleted(slot) {
                    continue;
                }
                let (id, record) = batch
                    .entry(slot)
                    .ok_or_else(|| StorageError::Corrupt(format!("batch {key}")))?;
                live += 1;
                each(LoadedMessage {
                    id,
                    record,
                    state: own_state,
                    batch: key,
                    slot: slot32,
                    batch_len,
                });
            }
            if live == 0 {
                // Every message went before the removal was written (crash).
                self.remove_batch(key)?;
            }
        }
        Ok(())
    }

    fn clear(&self) -> Result<(), StorageError> {
        self.batches.clear()?;
        self.states.clear()?;
        Ok(())
    }
}
