//! The sled 0.34.7 implementation of [`Store`] and [`QueueLog`].
//!
//! One `sled::Db` per process holds a `queues` tree (queue id → [`QueueRecord`]), the id
//! high-water mark in the default tree, and two trees per queue: messages and
//! states (layout in `keys.rs`). Single-key inserts and removes only (property D in
//! `storage/mod.rs`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::commit::{Flushable, GroupCommit, SledFlush};
use super::keys;
use super::{
    CommitTicket, FsyncMode, LoadedMessage, MessageRecord, QueueLog, QueueRecord, StateRecord,
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

    /// Number of committer flushes so far (for stats).
    pub fn flushes(&self) -> u64 {
        self.commit.flushes()
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
        self.db.drop_tree(keys::messages_tree(queue_id))?;
        self.db.drop_tree(keys::states_tree(queue_id))?;
        Ok(())
    }

    fn open_log(&self, queue_id: u64) -> Result<Box<dyn QueueLog>, StorageError> {
        Ok(Box::new(SledQueueLog {
            messages: self.db.open_tree(keys::messages_tree(queue_id))?,
            states: self.db.open_tree(keys::states_tree(queue_id))?,
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

/// One queue's two trees.
struct SledQueueLog {
    messages: sled::Tree,
    states: sled::Tree,
}

impl QueueLog for SledQueueLog {
    fn append(&self, id: u64, record: &MessageRecord, body: &[u8]) -> Result<(), StorageError> {
        self.messages
            .insert(keys::id_key(id), keys::encode_message(record, body))?;
        Ok(())
    }

    fn put_state(&self, id: u64, state: &StateRecord) -> Result<(), StorageError> {
        self.states
            .insert(keys::id_key(id), &keys::encode_state(state)[..])?;
        Ok(())
    }

    fn remove(&self, id: u64) -> Result<(), StorageError> {
        self.messages.remove(keys::id_key(id))?;
        self.states.remove(keys::id_key(id))?;
        Ok(())
    }

    fn body(&self, id: u64) -> Result<Option<Bytes>, StorageError> {
        let Some(value) = self.messages.get(keys::id_key(id))? else {
            return Ok(None);
        };
        if keys::decode_message_header(&value).is_none() {
            return Err(StorageError::Corrupt(format!("message {id}")));
        }
        // Zero copy: the Bytes keeps sled's buffer alive.
        Ok(Some(
            Bytes::from_owner(value).slice(keys::MESSAGE_HEADER_LEN..),
        ))
    }

    fn load(&self) -> Result<Vec<LoadedMessage>, StorageError> {
        let mut out = Vec::new();
        let mut states = self.states.iter().peekable();
        for entry in self.messages.iter() {
            let (key, value) = entry?;
            let id = keys::decode_id_key(&key)
                .ok_or_else(|| StorageError::Corrupt("message key".into()))?;
            let record = keys::decode_message_header(&value)
                .ok_or_else(|| StorageError::Corrupt(format!("message {id}")))?;
            // Both trees are in id order: walk them together.
            let mut state = None;
            while let Some(Ok((state_key, _))) = states.peek() {
                let state_id = keys::decode_id_key(state_key)
                    .ok_or_else(|| StorageError::Corrupt("state key".into()))?;
                if state_id > id {
                    break;
                }
                let (_, state_value) = states
                    .next()
                    .transpose()?
                    .ok_or_else(|| StorageError::Corrupt("state iterator".into()))?;
                if state_id == id {
                    state =
                        Some(keys::decode_state(&state_value).ok_or_else(|| {
                            StorageError::Corrupt(format!("state of message {id}"))
                        })?);
                }
            }
            if let Some(Err(err)) = states.peek() {
                return Err(StorageError::Io(err.to_string()));
            }
            out.push(LoadedMessage { id, record, state });
        }
        Ok(out)
    }

    fn clear(&self) -> Result<(), StorageError> {
        self.messages.clear()?;
        self.states.clear()?;
        Ok(())
    }
}
