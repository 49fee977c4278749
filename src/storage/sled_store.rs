//! The sled 0.34.7 implementation of [`Store`] and [`QueueLog`].
//!
//! One `sled::Db` per process holds a `queues` tree (queue id → [`QueueRecord`]), the id
//! high-water mark in the default tree, and two trees per queue: batch records and
//! their state records (layout in `keys.rs` and `batch.rs`). Single-key inserts and
//! removes only (property D in `storage/mod.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::batch::decode_messages;
use super::commit::{Flushable, GroupCommit, SledFlush};
use super::ids::Ids;
use super::keys;
use super::{
    Batch, BatchState, CommitTicket, FsyncMode, LoadedMessage, QueueLog, QueueRecord, StorageError,
    Store,
};

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

/// The store: a sled database, its committer and its id counter.
pub struct SledStore {
    db: sled::Db,
    queues: sled::Tree,
    ids: Ids,
    commit: GroupCommit,
}

impl SledStore {
    /// Opens (or creates) the store in `config.path`. This blocks (sled reads its
    /// log, the first id block is made durable): call it off the async runtime.
    ///
    /// # Errors
    /// If the directory cannot be created, another process holds it
    /// ([`StorageError::Locked`]), or sled cannot open it.
    pub fn open(config: &SledConfig) -> Result<Arc<Self>, StorageError> {
        std::fs::create_dir_all(&config.path).map_err(|err| {
            StorageError::Io(format!("cannot create {}: {err}", config.path.display()))
        })?;
        let db = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_bytes)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|err| open_error(err, &config.path))?;
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
        let flush = Arc::new(SledFlush {
            db: db.clone(),
            log_file: open_log_file(&config.path)?,
        });
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
        Ok(Arc::new(SledStore {
            db,
            queues,
            ids,
            commit,
        }))
    }
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
    }
}

/// One queue's two trees: batch records and their state records.
struct SledQueueLog {
    batches: sled::Tree,
    states: sled::Tree,
}

impl QueueLog for SledQueueLog {
    fn put_batch(&self, key: u64, value: &[u8]) -> Result<(), StorageError> {
        self.batches.insert(keys::id_key(key), value)?;
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
            if decode_messages(key, &batch, &state, each)? == 0 {
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
