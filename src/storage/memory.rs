//! [`MemoryLog`]: a [`QueueLog`] held in memory, with the same record layout as
//! the sled one (batches are encoded and decoded by `batch.rs`). The queue state
//! machine's tests use it to write a queue's records and rebuild the queue from
//! them ("restart") without a disk.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

use super::batch::decode_messages;
use super::{Batch, BatchState, LoadedMessage, QueueLog, StorageError};

/// One queue's batch records and state records, in memory.
#[derive(Debug, Default)]
pub struct MemoryLog {
    records: Mutex<Records>,
}

#[derive(Debug, Default)]
struct Records {
    batches: BTreeMap<u64, Bytes>,
    states: BTreeMap<u64, Vec<u8>>,
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
        Ok(())
    }
}
