//! The queue registry: name → [`QueueHandle`], and the creation, loading and
//! deletion of queues.
//!
//! **Architecture invariant:** the registry's lock is a std `Mutex` held only for a
//! map lookup, insert or removal: never across an `.await`, never across I/O.
//! Creating a queue (an id, its record, its two trees) runs in a tracked task on
//! tokio's blocking pool: the name is marked "being created" under the lock, and
//! whoever looks the name up meanwhile waits for that task without holding the
//! lock. The creation finishes even if the request that started it goes away.
//!
//! Actors reach the registry (to find a dead-letter or redrive target) through a
//! [`Directory`] holding a weak reference, so the registry and its actors do not
//! keep each other alive.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::actor::{self, ActorContext};
use super::admission::{
    Admission, HoldLimits, DEFAULT_MAX_QUEUE_BYTES, DEFAULT_MAX_TOTAL_BYTES, DEFAULT_MIN_FREE_DISK,
};
use super::clock::Clock;
use super::handle::QueueHandle;
use super::push::QueueKind;
use super::recovery::{meta_from_record, record_from_meta, Rebuild};
use super::state::{resolve_hand_offs, QueueMeta, QueueState};
use super::transfer::{Directory, FollowUps, Lookup, Mover};
use super::types::{QueueName, QueueSettings};
use crate::error::QueueError;
use crate::storage::{QueueLog, QueueRecord, StorageError, Store};

/// Every queue of the server. Clones share the same queues.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

type Creation = watch::Receiver<Option<Result<QueueHandle, QueueError>>>;

#[derive(Clone)]
enum Entry {
    Ready(QueueHandle),
    /// Being created; the receiver gets the outcome.
    Creating(Creation),
}

struct Inner {
    ctx: ActorContext,
    limits: QueueLimits,
    queues: Mutex<Queues>,
}

/// How many queues may exist (a queue being created counts), and what they may
/// hold ([`Admission`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// On the whole server.
    pub max_queues: usize,
    /// In one project (names `PROJECT/...`); unqualified names count only against
    /// `max_queues`.
    pub max_queues_per_project: usize,
    /// Messages in one queue (available, reserved and delayed): a push that would
    /// pass it is refused whole. Moves (dead letters, redrive) are not refused.
    pub max_messages_per_queue: usize,
    /// Bytes of bodies in one queue ([`super::state::QueueState::bytes`]): a push
    /// that would pass it is refused whole. Moves are not refused.
    pub max_bytes_per_queue: u64,
    /// Bytes of bodies in every queue together; as `max_bytes_per_queue`.
    pub max_total_bytes: u64,
    /// Free space to keep on the data directory's file system: below it pushes and
    /// queue creations are refused ([`Admission`]).
    pub min_free_disk: u64,
    /// Long polls parked at once on one queue; one more is refused.
    pub max_waiters_per_queue: usize,
}

/// Default cap on queues per server: 1,000,000 (at ~7.5 KB each while idle,
/// ~7 GiB: bound that with the memory you have).
pub const DEFAULT_MAX_QUEUES: usize = 1_000_000;
/// Default cap on queues per project: 100,000.
pub const DEFAULT_MAX_QUEUES_PER_PROJECT: usize = 100_000;
/// Default cap on messages in one queue: 100,000,000 (memory grows with a queue's
/// groups, ~100 B per 512 messages, so this bounds disk more than memory).
pub const DEFAULT_MAX_MESSAGES_PER_QUEUE: usize = 100_000_000;
/// Default cap on long polls parked on one queue: 10,000 (a few hundred bytes
/// each).
pub const DEFAULT_MAX_WAITERS_PER_QUEUE: usize = 10_000;

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_queues: DEFAULT_MAX_QUEUES,
            max_queues_per_project: DEFAULT_MAX_QUEUES_PER_PROJECT,
            max_messages_per_queue: DEFAULT_MAX_MESSAGES_PER_QUEUE,
            max_bytes_per_queue: DEFAULT_MAX_QUEUE_BYTES,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            min_free_disk: DEFAULT_MIN_FREE_DISK,
            max_waiters_per_queue: DEFAULT_MAX_WAITERS_PER_QUEUE,
        }
    }
}

/// The name → entry map and the count of entries per project, changed together.
/// Reads go through `Deref`; every change through [`Queues::insert`] and
/// [`Queues::remove`], which keep the counts.
#[derive(Default)]
struct Queues {
    map: BTreeMap<String, Entry>,
    per_project: HashMap<String, usize>,
}

impl std::ops::Deref for Queues {
    type Target = BTreeMap<String, Entry>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

fn project_of(name: &str) -> Option<&str> {
    name.split_once('/').map(|(project, _)| project)
}

impl Queues {
    fn insert(&mut self, name: String, entry: Entry) {
        let project = project_of(&name).map(str::to_owned);
        if self.map.insert(name, entry).is_none() {
            if let Some(project) = project {
                *self.per_project.entry(project).or_default() += 1;
            }
        }
    }

    fn remove(&mut self, name: &str) -> Option<Entry> {
        let removed = self.map.remove(name)?;
        if let Some(project) = project_of(name) {
            if let Some(count) = self.per_project.get_mut(project) {
                *count -= 1;
                if *count == 0 {
                    self.per_project.remove(project);
                }
            }
        }
        Some(removed)
    }

    fn clear(&mut self) {
        self.map.clear();
        self.per_project.clear();
    }

    /// Whether one more queue named `name` stays within `limits`.
    fn admit(&self, name: &QueueName, limits: &QueueLimits) -> Result<(), QueueError> {
        if self.map.len() >= limits.max_queues {
            return Err(QueueError::ResourceExhausted(format!(
                "the server holds its limit of {} queues (--max-queues); delete one first",
                limits.max_queues
            )));
        }
        if let Some(project) = name.project() {
            if self.per_project.get(project).copied().unwrap_or(0) >= limits.max_queues_per_project
            {
                return Err(QueueError::ResourceExhausted(format!(
                    "project {project:?} holds its limit of {} queues \
                     (--max-queues-per-project); delete one first",
                    limits.max_queues_per_project
                )));
            }
        }
        Ok(())
    }
}

/// What an actor's move uses to find other queues.
struct WeakRegistry(Weak<Inner>);

impl Directory for WeakRegistry {
    fn get_or_create(&self, name: QueueName) -> Lookup {
        let inner = self.0.upgrade();
        Box::pin(async move {
            let inner = inner
                .ok_or_else(|| QueueError::Unavailable("the server is shutting down".into()))?;
            inner.get_or_create(&name).await
        })
    }
}

impl Registry {
    /// Loads every queue from the store (off the runtime's workers) and starts its
    /// actor.
    ///
    /// # Errors
    /// If the store cannot list its queues, a queue record is not valid, or a
    /// queue's messages cannot be loaded: the server must not start with part of
    /// its data missing.
    pub async fn open(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Result<Self, QueueError> {
        Self::open_with(store, clock, QueueLimits::default()).await
    }

    /// As [`Registry::open`], with `limits` on the queues that may be created (the
    /// queues already stored are loaded whatever their number).
    ///
    /// # Errors
    /// As [`Registry::open`].
    pub async fn open_with(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        limits: QueueLimits,
    ) -> Result<Self, QueueError> {
        let tasks = TaskTracker::new();
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| Inner {
            ctx: ActorContext {
                store: Arc::clone(&store),
                clock: Arc::clone(&clock),
                mover: Mover {
                    directory: Arc::new(WeakRegistry(weak.clone())),
                    tasks: tasks.clone(),
                },
                tasks,
                shutdown: CancellationToken::new(),
                admission: Arc::new(Admission::new(HoldLimits {
                    max_messages_per_queue: limits.max_messages_per_queue,
                    max_bytes_per_queue: limits.max_bytes_per_queue,
                    max_total_bytes: limits.max_total_bytes,
                    min_free_disk: limits.min_free_disk,
                })),
                max_waiters: limits.max_waiters_per_queue,
            },
            limits,
            queues: Mutex::new(Queues::default()),
        });
        let now = clock.now_ms();
        let loading = Arc::clone(&store);
        let (loaded, discarded) = tokio::task::spawn_blocking(move || {
            let mut loaded = load_all(loading.as_ref(), now)?;
            let discarded = resolve_loaded(&mut loaded, loading.as_ref(), now)?;
            Ok::<_, QueueError>((loaded, discarded))
        })
        .await
        .map_err(|err| QueueError::Internal(format!("loading stopped: {err}")))??;
        if discarded {
            // Durable before any queue serves: see `resolve_hand_offs`.
            store.commit().wait().await?;
        }
        {
            let mut queues = inner.lock();
            for LoadedQueue { id, state, log } in loaded {
                let name = state.meta().name.to_string();
                let handle = actor::spawn(id, state, log, &inner.ctx);
                queues.insert(name, Entry::Ready(handle));
            }
        }
        Ok(Registry { inner })
    }

    /// Replaces message `id` of the queue `source` leads to, reserved under
    /// `reservation_id`, by follow-ups in the `targets` queues (created if
    /// missing), all or nothing (`state/hand_off.rs`); returns their ids, per
    /// target.
    ///
    /// # Errors
    /// As [`Mover::hand_off`].
    pub async fn hand_off(
        &self,
        source: QueueHandle,
        id: u64,
        reservation_id: u64,
        targets: Vec<FollowUps>,
    ) -> Result<Vec<Vec<u64>>, QueueError> {
        self.inner
            .ctx
            .mover
            .hand_off(source, id, reservation_id, targets)
            .await
    }

    /// The queue named `name` (waiting if it is being created).
    ///
    /// # Errors
    /// [`QueueError::QueueNotFound`].
    pub async fn get(&self, name: &QueueName) -> Result<QueueHandle, QueueError> {
        let creation = match self.inner.lock().get(name.as_str()) {
            Some(Entry::Ready(handle)) => return Ok(handle.clone()),
            Some(Entry::Creating(creation)) => creation.clone(),
            None => return Err(QueueError::QueueNotFound(name.to_string())),
        };
        match settle(creation).await {
            Ok(handle) => Ok(handle),
            Err(QueueError::Unavailable(why)) => Err(QueueError::Unavailable(why)),
            Err(_) => Err(QueueError::QueueNotFound(name.to_string())),
        }
    }

    /// The queue named `name`, created with default settings if missing (push).
    ///
    /// # Errors
    /// On storage failure, or while the server stops.
    pub async fn get_or_create(&self, name: &QueueName) -> Result<QueueHandle, QueueError> {
        self.inner.get_or_create(name).await
    }

    /// Creates a queue with `settings` and `attachment`; returns once its record is
    /// durable.
    ///
    /// # Errors
    /// [`QueueError::QueueExists`], `ResourceExhausted` at the [`QueueLimits`], or on
    /// storage failure.
    pub async fn create(
        &self,
        name: &QueueName,
        settings: QueueSettings,
        attachment: Bytes,
    ) -> Result<QueueHandle, QueueError> {
        let creation = {
            let mut queues = self.inner.lock();
            if queues.contains_key(name.as_str()) {
                return Err(QueueError::QueueExists(name.to_string()));
            }
            self.inner
                .start_creation(&mut queues, name, settings, attachment)?
        };
        let handle = settle(creation).await?;
        self.inner.ctx.store.commit().wait().await?;
        Ok(handle)
    }

    /// Deletes a queue and its messages; returns once that is durable.
    ///
    /// # Errors
    /// [`QueueError::QueueNotFound`], or on storage failure.
    pub async fn delete(&self, name: &QueueName) -> Result<(), QueueError> {
        loop {
            let found = {
                let mut queues = self.inner.lock();
                match queues.remove(name.as_str()) {
                    None => return Err(QueueError::QueueNotFound(name.to_string())),
                    Some(Entry::Ready(handle)) => Ok(handle),
                    Some(Entry::Creating(creation)) => {
                        // Not ours to remove yet: wait for the creation, then delete.
                        queues.insert(name.to_string(), Entry::Creating(creation.clone()));
                        Err(creation)
                    }
                }
            };
            match found {
                Ok(handle) => return handle.destroy().await,
                Err(creation) => {
                    let _ = settle(creation).await;
                }
            }
        }
    }

    /// Up to `limit` queue names that start with `prefix` and sort after `cursor`,
    /// and the cursor of the next page (`None` on the last page).
    pub fn list(&self, prefix: &str, cursor: &str, limit: usize) -> (Vec<String>, Option<String>) {
        let queues = self.inner.lock();
        let start = if cursor.is_empty() || cursor < prefix {
            std::ops::Bound::Included(prefix.to_owned())
        } else {
            std::ops::Bound::Excluded(cursor.to_owned())
        };
        let mut names: Vec<String> = queues
            .range::<String, _>((start, std::ops::Bound::Unbounded))
            .filter(|(_, entry)| matches!(entry, Entry::Ready(_)))
            .map(|(name, _)| name)
            .take_while(|name| name.starts_with(prefix))
            .take(limit + 1)
            .cloned()
            .collect();
        let next = if names.len() > limit {
            names.truncate(limit);
            names.last().cloned()
        } else {
            None
        };
        (names, next)
    }

    /// The handles of every push queue (the push engine starts on them).
    pub fn push_queues(&self) -> Vec<QueueHandle> {
        self.inner
            .lock()
            .values()
            .filter_map(|entry| match entry {
                Entry::Ready(handle) if handle.kind() != QueueKind::Pull => Some(handle.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every queue's name and metrics, in name order (a scrape reads them: the
    /// lock is held for the copy only).
    pub fn metrics(&self) -> Vec<(String, Arc<crate::metrics::QueueMetrics>)> {
        self.inner
            .lock()
            .iter()
            .filter_map(|(name, entry)| match entry {
                Entry::Ready(handle) => Some((name.clone(), Arc::clone(handle.metrics()))),
                Entry::Creating(_) => None,
            })
            .collect()
    }

    /// Calls `f` with every queue's metrics (under the lock: `f` must be quick;
    /// the rates' sampler sums them this way every second).
    pub fn each_metrics(&self, mut f: impl FnMut(&crate::metrics::QueueMetrics)) {
        for entry in self.inner.lock().values() {
            if let Entry::Ready(handle) = entry {
                f(handle.metrics());
            }
        }
    }

    /// The metrics of the queues named (those that exist), in the order given.
    pub fn metrics_of(&self, names: &[String]) -> Vec<(String, Arc<crate::metrics::QueueMetrics>)> {
        let queues = self.inner.lock();
        names
            .iter()
            .filter_map(|name| match queues.get(name) {
                Some(Entry::Ready(handle)) => Some((name.clone(), Arc::clone(handle.metrics()))),
                _ => None,
            })
            .collect()
    }

    /// How many queues exist (those being created included).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .values()
            .filter(|entry| matches!(entry, Entry::Ready(_)))
            .count()
    }

    /// How many queues have names starting with `prefix`.
    pub fn count_prefixed(&self, prefix: &str) -> usize {
        self.inner
            .lock()
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(name, _)| name.starts_with(prefix))
            .filter(|(_, entry)| matches!(entry, Entry::Ready(_)))
            .count()
    }

    /// Whether no queue exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The time on the queues' clock, ms since the epoch (what their actors
    /// stamp and measure with; a manual clock in tests).
    pub fn now_ms(&self) -> u64 {
        self.inner.ctx.clock.now_ms()
    }

    /// The store (for ids and commits that are not a queue's, and its counters).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.ctx.store
    }

    /// What pushes are admitted against (the server feeds it the disk's free space).
    pub fn admission(&self) -> &Arc<Admission> {
        &self.inner.ctx.admission
    }

    /// Stops every actor and every task they started, waits for them, then flushes
    /// and closes the store (off the runtime's workers).
    pub async fn shutdown(&self) {
        self.inner.ctx.shutdown.cancel();
        self.inner.lock().clear();
        let tasks = &self.inner.ctx.tasks;
        tasks.close();
        tasks.wait().await;
        let store = Arc::clone(&self.inner.ctx.store);
        if let Err(err) = tokio::task::spawn_blocking(move || store.close()).await {
            tracing::error!(cause = %err, "closing the store stopped");
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn get_or_create(self: &Arc<Self>, name: &QueueName) -> Result<QueueHandle, QueueError> {
        let creation = {
            let mut queues = self.lock();
            match queues.get(name.as_str()) {
                Some(Entry::Ready(handle)) => return Ok(handle.clone()),
                Some(Entry::Creating(creation)) => creation.clone(),
                None => {
                    self.start_creation(&mut queues, name, QueueSettings::default(), Bytes::new())?
                }
            }
        };
        settle(creation).await
    }

    /// Marks `name` as being created and starts the task that creates it. Called
    /// with the lock held; does no I/O itself.
    fn start_creation(
        self: &Arc<Self>,
        queues: &mut Queues,
        name: &QueueName,
        settings: QueueSettings,
        attachment: Bytes,
    ) -> Result<Creation, QueueError> {
        queues.admit(name, &self.limits)?;
        self.ctx.admission.admit_growth()?;
        let (done, creation) = watch::channel(None);
        queues.insert(name.to_string(), Entry::Creating(creation.clone()));
        let inner = Arc::clone(self);
        let name = name.clone();
        self.ctx.tasks.spawn(async move {
            let result = inner.create_now(&name, settings, attachment).await;
            {
                let mut queues = inner.lock();
                match &result {
                    Ok(handle) => {
                        queues.insert(name.to_string(), Entry::Ready(handle.clone()));
                    }
                    Err(_) => {
                        queues.remove(name.as_str());
                    }
                }
            }
            done.send_replace(Some(result));
        });
        Ok(creation)
    }

    /// Allocates the queue's id, writes its record and opens its log on the
    /// blocking pool, then starts its actor.
    async fn create_now(
        &self,
        name: &QueueName,
        settings: QueueSettings,
        attachment: Bytes,
    ) -> Result<QueueHandle, QueueError> {
        if self.ctx.shutdown.is_cancelled() {
            return Err(QueueError::Unavailable(
                "the server is shutting down".into(),
            ));
        }
        let meta = QueueMeta {
            name: name.clone(),
            created_at_ms: self.ctx.clock.now_ms(),
            settings,
            total_pushed: 0,
            attachment,
            processing: None,
        };
        let store = Arc::clone(&self.ctx.store);
        let record_meta = meta.clone();
        let (id, log) = tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
            let id = store.allocate_ids(1)?;
            store.put_queue(&record_from_meta(id, &record_meta))?;
            Ok((id, store.open_log(id)?))
        })
        .await
        .map_err(|err| QueueError::Internal(format!("queue creation stopped: {err}")))??;
        Ok(actor::spawn(id, QueueState::new(meta), log, &self.ctx))
    }
}

/// The outcome of a creation.
async fn settle(mut creation: Creation) -> Result<QueueHandle, QueueError> {
    match creation.wait_for(Option::is_some).await {
        Ok(outcome) => outcome
            .clone()
            .unwrap_or_else(|| Err(QueueError::Internal("creation without an outcome".into()))),
        Err(_) => Err(QueueError::Unavailable(
            "the server is shutting down".into(),
        )),
    }
}

/// A queue read from the store, ready for its actor.
struct LoadedQueue {
    id: u64,
    state: QueueState,
    log: Box<dyn QueueLog>,
}

/// Drops the follow-ups of every hand-off that did not commit
/// ([`resolve_hand_offs`]) and writes the removals; the caller makes them durable
/// before any queue serves. Returns whether anything was dropped.
fn resolve_loaded(
    loaded: &mut [LoadedQueue],
    store: &dyn Store,
    now: u64,
) -> Result<bool, QueueError> {
    let mut states: Vec<&mut QueueState> = loaded.iter_mut().map(|q| &mut q.state).collect();
    let touched = resolve_hand_offs(&mut states);
    for &at in &touched {
        let queue = &mut loaded[at];
        let writes = queue.state.take_writes(now, false);
        for write in &writes.log {
            actor::apply_write(&*queue.log, write).map_err(|err| {
                QueueError::Internal(format!(
                    "cannot drop the follow-ups of a hand-off in {}: {err}",
                    queue.state.meta().name
                ))
            })?;
        }
        if writes.record {
            store.put_queue(&record_from_meta(queue.id, queue.state.meta()))?;
        }
    }
    Ok(!touched.is_empty())
}

/// Reads every queue and its messages from the store. A crash during a
/// delete-then-recreate can leave two records of one name; the newer (larger id)
/// wins and the older is removed.
fn load_all(store: &dyn Store, now: u64) -> Result<Vec<LoadedQueue>, QueueError> {
    let mut newest: HashMap<String, QueueRecord> = HashMap::new();
    for record in store.queues()? {
        let older = match newest.remove(&record.name) {
            Some(other) if other.id > record.id => {
                newest.insert(other.name.clone(), other);
                Some(record)
            }
            other => {
                newest.insert(record.name.clone(), record);
                other
            }
        };
        if let Some(older) = older {
            store.delete_queue(older.id)?;
        }
    }
    let mut loaded = Vec::with_capacity(newest.len());
    for record in newest.into_values() {
        let meta = meta_from_record(&record)?;
        let log = store.open_log(record.id)?;
        let mut rebuild = Rebuild::new(now);
        log.load(&mut |message| rebuild.add(message))
            .and_then(|()| log.history_ids())
            .map(|ids| rebuild.histories(ids))
            .map_err(|err| {
                QueueError::Internal(format!("cannot load queue {}: {err}", meta.name))
            })?;
        loaded.push(LoadedQueue {
            id: record.id,
            state: rebuild.finish(meta),
            log,
        });
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::queue::clock::ManualClock;
    use crate::queue::types::NewMessage;
    use crate::storage::{CommitTicket, FsyncMode, MemoryStore};

    /// A store whose `put_queue` of queue `b` waits (at most 10 s) while its gate
    /// is closed, like a sled write stuck behind a slow disk.
    #[derive(Default)]
    struct Gated {
        inner: MemoryStore,
        closed: Mutex<bool>,
        opened: Condvar,
        entered: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    }

    impl Gated {
        fn close(&self) -> tokio::sync::oneshot::Receiver<()> {
            *self.closed.lock().unwrap() = true;
            let (tx, rx) = tokio::sync::oneshot::channel();
            *self.entered.lock().unwrap() = Some(tx);
            rx
        }

        fn open(&self) {
            *self.closed.lock().unwrap() = false;
            self.opened.notify_all();
        }
    }

    impl Store for Gated {
        fn queues(&self) -> Result<Vec<QueueRecord>, StorageError> {
            self.inner.queues()
        }
        fn put_queue(&self, record: &QueueRecord) -> Result<(), StorageError> {
            if record.name != "b" {
                return self.inner.put_queue(record);
            }
            if let Some(entered) = self.entered.lock().unwrap().take() {
                let _ = entered.send(());
            }
            let closed = self.closed.lock().unwrap();
            let _ = self
                .opened
                .wait_timeout_while(closed, Duration::from_secs(10), |closed| *closed)
                .unwrap();
            self.inner.put_queue(record)
        }
        fn delete_queue(&self, queue_id: u64) -> Result<(), StorageError> {
            self.inner.delete_queue(queue_id)
        }
        fn open_log(&self, queue_id: u64) -> Result<Box<dyn QueueLog>, StorageError> {
            self.inner.open_log(queue_id)
        }
        fn allocate_ids(&self, n: u64) -> Result<u64, StorageError> {
            self.inner.allocate_ids(n)
        }
        fn commit(&self) -> CommitTicket {
            self.inner.commit()
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

    fn name(text: &str) -> QueueName {
        QueueName::new(text).unwrap()
    }

    /// One runtime worker: if a creation blocked it, or held the registry's lock
    /// across its store I/O, nothing else could run until the gate timed out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_queue_creation_stuck_in_the_store_holds_up_no_other_queue() {
        let store = Arc::new(Gated::default());
        let registry = Arc::new(
            Registry::open(store.clone(), Arc::new(ManualClock::new(1_000)))
                .await
                .unwrap(),
        );
        let a = registry.get_or_create(&name("a")).await.unwrap();
        let entered = store.close();
        let creating = {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move { registry.get_or_create(&name("b")).await })
        };
        entered.await.expect("the creation of b reached the store");

        let started = Instant::now();
        let again = registry.get(&name("a")).await.unwrap();
        let pushed = again
            .push(vec![NewMessage {
                key: None,
                priority: crate::queue::types::DEFAULT_PRIORITY,
                body: bytes::Bytes::from_static(b"x"),
                delay_ms: 0,
            }])
            .await
            .unwrap();
        assert_eq!(pushed.len(), 1);
        assert_eq!(
            registry.list("", "", 10).0,
            ["a"],
            "b is not listed until it exists"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "queue a waited for the creation of b: {:?}",
            started.elapsed()
        );
        assert_eq!(a.info().await.unwrap().size, 1);

        store.open();
        creating
            .await
            .unwrap()
            .expect("b is created once the store answers");
        assert_eq!(registry.list("", "", 10).0, ["a", "b"]);
        registry.shutdown().await;
    }
}
