//! The queue registry: name → [`QueueHandle`], and the creation and deletion of
//! queues.
//!
//! **Architecture invariant:** the registry's lock is a std `Mutex` held only for a
//! map lookup or insert and, on create, one sled insert; it is never held across an
//! `.await`. Callers clone the handle out and talk to the actor after unlocking.
//!
//! Actors reach the registry (to find a dead-letter or redrive target) through a
//! [`Resolver`] holding a weak reference, so the registry and its actors do not keep
//! each other alive.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::QueueError;
use crate::queue::actor::{self, Resolver};
use crate::queue::types::{now_ms, QueueName, QueueSettings};
use crate::queue::QueueHandle;
use crate::storage::{QueueRecord, Store};

/// Every queue of the server.
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    queues: Mutex<BTreeMap<String, QueueHandle>>,
    /// Tracks the actor tasks, so shutdown can wait for them.
    actors: TaskTracker,
    /// Cancelled on shutdown; every actor watches it.
    shutdown: CancellationToken,
}

/// What an actor uses to find other queues.
struct WeakRegistry(Weak<Inner>);

impl Resolver for WeakRegistry {
    fn get_or_create(&self, name: &QueueName) -> Result<QueueHandle, QueueError> {
        let inner = self
            .0
            .upgrade()
            .ok_or_else(|| QueueError::Unavailable("the server is shutting down".into()))?;
        inner.get_or_create(name)
    }
}

impl Registry {
    /// Loads every queue from the store and starts its actor.
    ///
    /// # Errors
    /// If the store cannot list its queues.
    pub fn open(store: Arc<dyn Store>) -> Result<Self, QueueError> {
        let inner = Arc::new(Inner {
            store: Arc::clone(&store),
            queues: Mutex::new(BTreeMap::new()),
            actors: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        });
        // A crash during a delete-then-recreate can leave two records of one name;
        // the newer (larger id) wins and the older is removed.
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
        {
            let mut queues = inner.lock();
            for (name, record) in newest {
                let handle = inner.spawn(record)?;
                queues.insert(name, handle);
            }
        }
        Ok(Registry { inner })
    }

    /// The queue named `name`.
    ///
    /// # Errors
    /// [`QueueError::QueueNotFound`].
    pub fn get(&self, name: &QueueName) -> Result<QueueHandle, QueueError> {
        self.inner
            .lock()
            .get(name.as_str())
            .cloned()
            .ok_or_else(|| QueueError::QueueNotFound(name.to_string()))
    }

    /// The queue named `name`, created with default settings if missing (push).
    ///
    /// # Errors
    /// On storage failure.
    pub fn get_or_create(&self, name: &QueueName) -> Result<QueueHandle, QueueError> {
        self.inner.get_or_create(name)
    }

    /// Creates a queue. The caller awaits a commit before acknowledging.
    ///
    /// # Errors
    /// [`QueueError::QueueExists`], or on storage failure.
    pub fn create(
        &self,
        name: &QueueName,
        settings: QueueSettings,
    ) -> Result<QueueHandle, QueueError> {
        let mut queues = self.inner.lock();
        if queues.contains_key(name.as_str()) {
            return Err(QueueError::QueueExists(name.to_string()));
        }
        self.inner.create_locked(&mut queues, name, settings)
    }

    /// Deletes a queue and its messages; returns once that is durable.
    ///
    /// # Errors
    /// [`QueueError::QueueNotFound`], or on storage failure.
    pub async fn delete(&self, name: &QueueName) -> Result<(), QueueError> {
        let handle = self
            .inner
            .lock()
            .remove(name.as_str())
            .ok_or_else(|| QueueError::QueueNotFound(name.to_string()))?;
        handle.destroy().await
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

    /// How many queues exist.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// Whether no queue exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The store (for commits that are not a queue's).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Stops every actor and waits for them; then flushes and closes the store.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.lock().clear();
        self.inner.actors.close();
        self.inner.actors.wait().await;
        self.inner.store.close();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, QueueHandle>> {
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get_or_create(self: &Arc<Self>, name: &QueueName) -> Result<QueueHandle, QueueError> {
        let mut queues = self.lock();
        if let Some(handle) = queues.get(name.as_str()) {
            return Ok(handle.clone());
        }
        self.create_locked(&mut queues, name, QueueSettings::default())
    }

    fn create_locked(
        self: &Arc<Self>,
        queues: &mut BTreeMap<String, QueueHandle>,
        name: &QueueName,
        settings: QueueSettings,
    ) -> Result<QueueHandle, QueueError> {
        if self.shutdown.is_cancelled() {
            return Err(QueueError::Unavailable(
                "the server is shutting down".into(),
            ));
        }
        let record = QueueRecord {
            id: self.store.allocate_ids(1)?,
            name: name.to_string(),
            created_at_ms: now_ms(),
            total_pushed: 0,
            settings,
        };
        self.store.put_queue(&record)?;
        let handle = self.spawn(record)?;
        queues.insert(name.to_string(), handle.clone());
        Ok(handle)
    }

    fn spawn(self: &Arc<Self>, record: QueueRecord) -> Result<QueueHandle, QueueError> {
        actor::spawn(
            record,
            Arc::clone(&self.store),
            Arc::new(WeakRegistry(Arc::downgrade(self))),
            &self.actors,
            self.shutdown.child_token(),
        )
    }
}
