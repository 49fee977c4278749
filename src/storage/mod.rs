//! Storage: what a queue actor persists, behind two small traits, and their sled
//! implementation.
//!
//! The queue layer only sees [`Store`] (queue records, id allocation, commits) and
//! [`QueueLog`] (one queue's batch records). This module owns its own record types
//! ([`QueueRecord`], [`MessageRecord`], [`StateRecord`]) and imports nothing from the
//! queue layer: the queue layer converts to and from them, so the layout can change
//! without touching the queue semantics, and the semantics without touching the layout.
//!
//! # Safety properties
//! - **A. An acknowledged push is on disk.** Messages are inserted, then the writer
//!   waits for a [`CommitTicket`] from [`Store::commit`]; the committer's flush
//!   starts after the insert returned and ends with `fdatasync` (see `commit.rs`).
//! - **B. Ids are never reused.** Ids come from one counter whose high-water mark is
//!   written to sled and made durable (flush + fdatasync) *before* any id below it is
//!   handed out, so after any crash the counter restarts above every id ever issued
//!   (see `ids.rs`).
//! - **C. Recovery restores order.** A message's order key is derived from its id
//!   unless its batch's state record (rewritten when a message of the batch is
//!   reserved, released, requeued or deleted) says otherwise; the queue layer sorts by
//!   order key when it loads.
//! - **D. No global lock.** No `apply_batch` or transaction is ever used: in sled
//!   0.34.7 the first one switches every sled call in the process to a global lock.
//! - **E. Few, large records.** The messages a queue actor takes in during one turn
//!   are one batch record; deletes and state changes are one state record per
//!   touched batch per turn; a batch's records go when its last message does. A
//!   message costs a share of a few sled operations instead of four of its own.

pub mod batch;
pub mod commit;
mod guard;
mod ids;
pub mod keys;
pub mod memory;
mod sled_store;

/// How often sled's background thread writes and fsyncs its log, in milliseconds:
/// the longest a write no reply waited for (a reserve's count and lease, a lease or
/// delay ending) stays in memory only, unless a commit someone asked for covers it
/// sooner.
pub const FLUSH_EVERY_MS: u64 = 500;

pub use batch::{Batch, BatchBuilder, BatchState};
pub use commit::{CommitTicket, FsyncMode};
pub use memory::{MemoryLog, MemoryStore};
pub use sled_store::{SledConfig, SledStore, FORMAT_VERSION};

use std::path::PathBuf;

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
    /// Another process holds the data directory's lock.
    #[error(
        "the data directory {} is locked: another ferromq server is using it \
         (stop that server, or start this one with another --data-dir)",
        .0.display()
    )]
    Locked(PathBuf),
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

/// The persisted description of a queue. Values are stored as they were written;
/// the queue layer checks them when it loads a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecord {
    /// Internal id, never reused; names the queue's trees.
    pub id: u64,
    /// The queue's name.
    pub name: String,
    /// When the queue was created (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// Messages ever pushed.
    pub total_pushed: u64,
    /// Default lease length.
    pub message_timeout_ms: u64,
    /// Seconds from push until a message is removed.
    pub message_expiration_s: u64,
    /// The dead-letter setting, if any.
    pub dead_letter: Option<DeadLetterRecord>,
    /// A push queue's settings; `None` for a pull queue.
    pub push: Option<PushRecord>,
    /// An opaque blob a front end keeps with the queue (the HTTP API's alerts). The
    /// store never looks inside.
    pub attachment: Vec<u8>,
    /// The queue's processing times in their stored form (`queue/lease.rs`), empty
    /// for none. The store never looks inside.
    pub processing: Vec<u8>,
    /// Delivery attempts kept per message (`queue/history.rs`).
    pub delivery_history: u32,
    /// Most messages in flight per dispatch key (`queue/fair.rs`), 0: no cap.
    pub key_max_in_flight: u32,
}

/// The dead-letter setting of a [`QueueRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// Name of the dead-letter queue.
    pub queue: String,
    /// Reservations before a message moves there.
    pub max_reservations: u32,
}

/// The push settings of a [`QueueRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRecord {
    /// 1 unicast, 2 multicast.
    pub kind: u8,
    /// Tries after the first.
    pub retries: u32,
    /// Seconds between tries.
    pub retries_delay_s: u64,
    /// The error queue's name, empty for none.
    pub error_queue: String,
    /// The subscribers.
    pub subscribers: Vec<SubscriberRecord>,
}

/// One subscriber of a [`PushRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberRecord {
    /// Its slot in the messages' delivered masks.
    pub slot: u8,
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Its headers.
    pub headers: Vec<(String, String)>,
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
    /// Lease deadline (ms since the Unix epoch), 0 if not reserved.
    pub reserved_until_ms: u64,
    /// End of a release delay, 0 if none.
    pub available_at_ms: u64,
    /// Push queues: the subscriber slots the message was delivered to.
    pub push_done: u64,
}

/// A message as loaded at startup (without its body, which stays on disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedMessage {
    /// The message id.
    pub id: u64,
    /// Its push record.
    pub record: MessageRecord,
    /// Its dispatch key, if it has one.
    pub key: Option<std::sync::Arc<str>>,
    /// Its priority as pushed (`batch::DEFAULT_PRIORITY` in a batch without tags).
    pub priority: u8,
    /// Its state, if it differs from the push defaults.
    pub state: Option<StateRecord>,
    /// The key of the batch record holding it.
    pub batch: u64,
    /// Its slot in that batch.
    pub slot: u32,
    /// Slots in that batch (deleted ones included).
    pub batch_len: u32,
    /// The bytes of that batch's bodies (deleted ones included).
    pub batch_bytes: u64,
    /// For a hand-off's follow-ups, the message they replace: (queue name, id)
    /// (`queue/state/hand_off.rs`).
    pub origin: Option<(std::sync::Arc<str>, u64)>,
}

/// One queue's messages, stored as batch records (see `batch.rs`). Only that
/// queue's actor calls these.
pub trait QueueLog: Send + Sync {
    /// Stores a new batch record (from [`BatchBuilder::encode`]) under `key`.
    ///
    /// # Errors
    /// On I/O failure.
    fn put_batch(&self, key: u64, value: &[u8]) -> Result<(), StorageError>;
    /// Stores the state record of batch `key` (from [`batch::encode_batch_state`]).
    ///
    /// # Errors
    /// On I/O failure.
    fn put_batch_state(&self, key: u64, state: &[u8]) -> Result<(), StorageError>;
    /// Removes batch `key` and its state record.
    ///
    /// # Errors
    /// On I/O failure.
    fn remove_batch(&self, key: u64) -> Result<(), StorageError>;
    /// The batch stored under `key`, `None` if there is none.
    ///
    /// # Errors
    /// On I/O failure or a corrupt record.
    fn batch(&self, key: u64) -> Result<Option<Batch>, StorageError>;
    /// Calls `each` for every stored, undeleted message, batch by batch in key
    /// order. Batches whose messages are all deleted are removed on the way.
    ///
    /// # Errors
    /// On I/O failure or a corrupt record.
    fn load(&self, each: &mut dyn FnMut(LoadedMessage)) -> Result<(), StorageError>;
    /// Removes every message (and every delivery history).
    ///
    /// # Errors
    /// On I/O failure.
    fn clear(&self) -> Result<(), StorageError>;
    /// The delivery history of message `id` (`queue/history.rs`), if it has one.
    ///
    /// # Errors
    /// On I/O failure.
    fn history(&self, id: u64) -> Result<Option<Vec<u8>>, StorageError>;
    /// Stores the delivery history of message `id`.
    ///
    /// # Errors
    /// On I/O failure.
    fn put_history(&self, id: u64, value: &[u8]) -> Result<(), StorageError>;
    /// Removes the delivery history of message `id`.
    ///
    /// # Errors
    /// On I/O failure.
    fn remove_history(&self, id: u64) -> Result<(), StorageError>;
    /// The ids of the messages with a delivery history, in id order.
    ///
    /// # Errors
    /// On I/O failure.
    fn history_ids(&self) -> Result<Vec<u64>, StorageError>;
}

/// The whole store: queues, ids and durability.
pub trait Store: Send + Sync {
    /// Every queue, in id order.
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
    /// Opens (creating if needed) the message log of a queue.
    ///
    /// # Errors
    /// On I/O failure.
    fn open_log(&self, queue_id: u64) -> Result<Box<dyn QueueLog>, StorageError>;
    /// Allocates `n` consecutive fresh ids and returns the first. Ids serve as
    /// message ids, queue ids and reservation ids; all strictly increase. Does not
    /// block in the common case (property B is kept ahead by a background thread).
    ///
    /// # Errors
    /// On I/O failure persisting the high-water mark.
    fn allocate_ids(&self, n: u64) -> Result<u64, StorageError>;
    /// A ticket for a flush covering every write made before this call.
    fn commit(&self) -> CommitTicket;
    /// A ticket for the flush running now, if one is (see [`commit::GroupCommit::running`]).
    fn flush_running(&self) -> Option<CommitTicket>;
    /// The fsync mode.
    fn fsync_mode(&self) -> FsyncMode;
    /// Group-commit flushes (flush + fdatasync) done so far.
    fn flushes(&self) -> u64;
    /// How long the flush running now has run (zero if none): readiness.
    fn flushing_for(&self) -> std::time::Duration;
    /// The committer's measurements (metrics); `None` for a store without one.
    fn commit_metrics(&self) -> Option<crate::metrics::CommitMetrics> {
        None
    }
    /// Flushes everything and stops the committer and the id keeper.
    fn close(&self);
}
