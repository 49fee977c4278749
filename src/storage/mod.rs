//! Storage: what a queue actor persists, behind two small traits, and their sled
//! implementation.
//!
//! The queue actors only see [`Store`] (queues, id allocation, commits) and
//! [`QueueLog`] (one queue's messages). Nothing above this module knows about sled,
//! so the layout can change (issue 3 plans fewer, larger records) without touching
//! the actors.
//!
//! # Safety properties
//! - **A. An acknowledged push is on disk.** Messages are inserted, then the writer
//!   waits for a [`CommitTicket`] from [`Store::commit`]; the committer's flush
//!   starts after the insert returned and ends with `fdatasync` (see `commit.rs`).
//! - **B. Ids are never reused.** Ids come from one counter whose high-water mark is
//!   written to sled and flushed (fdatasync) *before* any id below it is handed out,
//!   so after any crash the counter restarts above every id ever issued.
//! - **C. Recovery restores order.** A message's order key is derived from its id
//!   unless a state record (written on reserve, release and requeue) says otherwise;
//!   the actor sorts by order key when it loads.
//! - **D. No global lock.** No `apply_batch` or transaction is ever used: in sled
//!   0.34.7 the first one switches every sled call in the process to a global lock.

pub mod commit;
pub mod keys;
mod sled_store;

use bytes::Bytes;

pub use commit::{CommitTicket, FsyncMode};
pub use sled_store::{SledConfig, SledStore};

use crate::queue::types::QueueSettings;

/// A storage failure. The message says what failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StorageError {
    /// sled or the file system failed.
    #[error("storage I/O: {0}")]
    Io(String),
    /// The disk is full.
    #[error("the disk is full: {0}")]
    Full(String),
    /// A stored value could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The committer has stopped (the server is shutting down).
    #[error("the store is closed")]
    Closed,
}

impl From<sled::Error> for StorageError {
    fn from(err: sled::Error) -> Self {
        match &err {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
                StorageError::Full(err.to_string())
            }
            _ => StorageError::Io(err.to_string()),
        }
    }
}

/// The persisted description of a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecord {
    /// Internal id, never reused; names the queue's trees.
    pub id: u64,
    /// The queue's name.
    pub name: String,
    /// When the queue was created.
    pub created_at_ms: u64,
    /// Messages ever pushed.
    pub total_pushed: u64,
    /// The queue's settings.
    pub settings: QueueSettings,
}

/// The immutable part of a message, written once at push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRecord {
    /// When it was pushed.
    pub pushed_at_ms: u64,
    /// End of the push delay, 0 if none.
    pub available_at_ms: u64,
    /// When it expires.
    pub expires_at_ms: u64,
}

/// The mutable part of a message, written when it differs from the push defaults
/// (after a reserve, touch, release or requeue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateRecord {
    /// Position in the queue (smaller is earlier).
    pub order_key: u64,
    /// Times reserved.
    pub reserved_count: u32,
    /// Current reservation id, 0 if not reserved.
    pub reservation_id: u64,
    /// Lease deadline (wall clock), 0 if not reserved.
    pub reserved_until_ms: u64,
    /// End of a release delay, 0 if none.
    pub available_at_ms: u64,
}

/// A message as loaded at startup (without its body, which stays on disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedMessage {
    /// The message id.
    pub id: u64,
    /// Its push record.
    pub record: MessageRecord,
    /// Its state record, if one was written.
    pub state: Option<StateRecord>,
}

/// One queue's messages. Only that queue's actor calls these.
pub trait QueueLog: Send + Sync {
    /// Stores a new message.
    ///
    /// # Errors
    /// On I/O failure.
    fn append(&self, id: u64, record: &MessageRecord, body: &[u8]) -> Result<(), StorageError>;
    /// Stores the state of a message.
    ///
    /// # Errors
    /// On I/O failure.
    fn put_state(&self, id: u64, state: &StateRecord) -> Result<(), StorageError>;
    /// Removes a message and its state.
    ///
    /// # Errors
    /// On I/O failure.
    fn remove(&self, id: u64) -> Result<(), StorageError>;
    /// The body of a message, `None` if it is not stored.
    ///
    /// # Errors
    /// On I/O failure or a corrupt record.
    fn body(&self, id: u64) -> Result<Option<Bytes>, StorageError>;
    /// Every stored message, in id order.
    ///
    /// # Errors
    /// On I/O failure or a corrupt record.
    fn load(&self) -> Result<Vec<LoadedMessage>, StorageError>;
    /// Removes every message.
    ///
    /// # Errors
    /// On I/O failure.
    fn clear(&self) -> Result<(), StorageError>;
}

/// The whole store: queues, ids and durability.
pub trait Store: Send + Sync {
    /// Every queue, in name order.
    ///
    /// # Errors
    /// On I/O failure or a corrupt record.
    fn queues(&self) -> Result<Vec<QueueRecord>, StorageError>;
    /// Writes (creates or updates) a queue's record.
    ///
    /// # Errors
    /// On I/O failure.
    fn put_queue(&self, record: &QueueRecord) -> Result<(), StorageError>;
    /// Removes a queue's record and all its messages. Records are keyed by queue
    /// id, so this never touches a newer queue of the same name.
    ///
    /// # Errors
    /// On I/O failure.
    fn delete_queue(&self, queue_id: u64) -> Result<(), StorageError>;
    /// Opens the message log of a queue.
    ///
    /// # Errors
    /// On I/O failure.
    fn open_log(&self, queue_id: u64) -> Result<Box<dyn QueueLog>, StorageError>;
    /// Allocates `n` consecutive fresh ids and returns the first. Ids serve as
    /// message ids, queue ids and reservation ids; all strictly increase.
    ///
    /// # Errors
    /// On I/O failure persisting the high-water mark.
    fn allocate_ids(&self, n: u64) -> Result<u64, StorageError>;
    /// A ticket for a flush covering every write made before this call.
    fn commit(&self) -> CommitTicket;
    /// The fsync mode.
    fn fsync_mode(&self) -> FsyncMode;
    /// Flushes everything and stops the committer.
    fn close(&self);
}
