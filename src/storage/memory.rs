//! [`MemoryLog`] and [`MemoryStore`]: a [`QueueLog`] and a [`Store`] held in
//! memory, with the same record layout as the sled ones (batches are encoded and
//! decoded by `batch.rs`). Tests use them to write a queue's records and rebuild
//! the queue from them ("restart"), and to run the registry and actors, without a
//! disk. Nothing is durable: every commit ticket is ready at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::batch::decode_messages;
use super::{
    Batch, BatchState, CommitTicket, FsyncMode, LoadedMessage, QueueLog, QueueRecord, StorageError,
    Store,
};

/// One queue's batch records and state records, in memory.
#[derive(Debug, Default)]
pub struct MemoryLog {
    records: Mutex<Records>,
}

#[derive(Debug, Default)]
struct Records {
    batches: BTreeMap<u64, Bytes>,
    states: BTreeMap<u64, Vec<u8>>,
    histories: BTreeMap<u64, Vec<u8>>,
}

impl MemoryLog {
    fn records(&self) -> MutexGuard<'_, Records> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Number of batch records held (for tests that check space is reclaimed).
    pub fn batch_count(&self) -> usize {
        self.records().batches.len()
    }
}

impl QueueLog for MemoryLog {
    fn put_batch(&self, key: u64, value: &[u8]) -> Result<(), StorageError> {
        self.records()
            .batches
            .insert(key, Bytes::copy_from_slice(value));
        Ok(())
    }

    fn put_batch_state(&self, key: u64, state: &[u8]) -> Result<(), StorageError> {
        self.records().states.insert(key, state.to_vec());
        Ok(())
    }

    fn remove_batch(&self, key: u64) -> Result<(), StorageError> {
        let mut records = self.records();
        records.batches.remove(&key);
        records.states.remove(&key);
        Ok(())
    }

    fn batch(&self, key: u64) -> Result<Option<Batch>, StorageError> {
        let Some(value) = self.records().batches.get(&key).cloned() else {
            return Ok(None);
        };
        Batch::parse(value)
            .map(Some)
            .ok_or_else(|| StorageError::Corrupt(format!("batch {key}")))
    }

    fn load(&self, each: &mut dyn FnMut(LoadedMessage)) -> Result<(), StorageError> {
        let mut records = self.records();
        let mut empty = Vec::new();
        for (&key, value) in &records.batches {
            let batch = Batch::parse(value.clone())
                .ok_or_else(|| StorageError::Corrupt(format!("batch {key}")))?;
            let state = match records.states.get(&key) {
                Some(value) => BatchState::decode(value)
                    .ok_or_else(|| StorageError::Corrupt(format!("state of batch {key}")))?,
                None => BatchState::default(),
            };
            if decode_messages(key, &batch, &state, each)? == 0 {
                empty.push(key);
            }
        }
        for key in empty {
            records.batches.remove(&key);
            records.states.remove(&key);
        }
        Ok(())
    }

    fn clear(&self) -> Result<(), StorageError> {
        let mut records = self.records();
        records.batches.clear();
        records.states.clear();
        records.histories.clear();
        Ok(())
    }

    fn history(&self, id: u64) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.records().histories.get(&id).cloned())
    }

    fn put_history(&self, id: u64, value: &[u8]) -> Result<(), StorageError> {
        self.records().histories.insert(id, value.to_vec());
        Ok(())
    }

    fn remove_history(&self, id: u64) -> Result<(), StorageError> {
        self.records().histories.remove(&id);
        Ok(())
    }

    fn history_ids(&self) -> Result<Vec<u64>, StorageError> {
        Ok(self.records().histories.keys().copied().collect())
    }
}

/// A whole store in memory: queue records, one [`MemoryLog`] per queue, an id
/// counter, and no durability (`--fsync never` semantics).
#[derive(Debug)]
pub struct MemoryStore {
    queues: Mutex<BTreeMap<u64, (QueueRecord, Arc<MemoryLog>)>>,
    next_id: AtomicU64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            queues: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
        }
    }
}

impl MemoryStore {
    fn queues(&self) -> MutexGuard<'_, BTreeMap<u64, (QueueRecord, Arc<MemoryLog>)>> {
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A queue's log shared between the store and its actor.
struct SharedLog(Arc<MemoryLog>);

impl QueueLog for SharedLog {
    fn put_batch(&self, key: u64, value: &[u8]) -> Result<(), StorageError> {
        self.0.put_batch(key, value)
    }

    fn put_batch_state(&self, key: u64, state: &[u8]) -> Result<(), StorageError> {
        self.0.put_batch_state(key, state)
    }

    fn remove_batch(&self, key: u64) -> Result<(), StorageError> {
        self.0.remove_batch(key)
    }

    fn batch(&self, key: u64) -> Result<Option<Batch>, StorageError> {
        self.0.batch(key)
    }

    fn load(&self, each: &mut dyn FnMut(LoadedMessage)) -> Result<(), StorageError> {
        self.0.load(each)
    }

    fn clear(&self) -> Result<(), StorageError> {
        self.0.clear()
    }

    fn history(&self, id: u64) -> Result<Option<Vec<u8>>, StorageError> {
        self.0.history(id)
    }

    fn put_history(&self, id: u64, value: &[u8]) -> Result<(), StorageError> {
        self.0.put_history(id, value)
    }

    fn remove_history(&self, id: u64) -> Result<(), StorageError> {
        self.0.remove_history(id)
    }

    fn history_ids(&self) -> Result<Vec<u64>, StorageError> {
        self.0.history_ids()
    }
}

impl Store for MemoryStore {
    fn queues(&self) -> Result<Vec<QueueRecord>, StorageError> {
        Ok(self
            .queues()
            .values()
            .map(|(record, _)| record.clone())
            .collect())
    }

    fn put_queue(&self, record: &QueueRecord) -> Result<(), StorageError> {
        let mut queues = self.queues();
        let log = queues
            .get(&record.id)
            .map_or_else(Arc::default, |(_, log)| Arc::clone(log));
        queues.insert(record.id, (record.clone(), log));
        Ok(())
    }

    fn delete_queue(&self, queue_id: u64) -> Result<(), StorageError> {
        self.queues().remove(&queue_id);
        Ok(())
    }

    fn open_log(&self, queue_id: u64) -> Result<Box<dyn QueueLog>, StorageError> {
        let queues = self.queues();
        let log = queues
            .get(&queue_id)
            .map(|(_, log)| Arc::clone(log))
            .ok_or_else(|| StorageError::Io(format!("no queue {queue_id}")))?;
        Ok(Box::new(SharedLog(log)))
    }

    fn allocate_ids(&self, n: u64) -> Result<u64, StorageError> {
        Ok(self.next_id.fetch_add(n, Ordering::SeqCst))
    }

    fn commit(&self) -> CommitTicket {
        CommitTicket::ready()
    }

    fn flush_running(&self) -> Option<CommitTicket> {
        None
    }

    fn fsync_mode(&self) -> FsyncMode {
        FsyncMode::Never
    }

    fn flushes(&self) -> u64 {
        0
    }

    fn flushing_for(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    fn close(&self) {}
}
