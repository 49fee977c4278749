//! The service layer: the one API both front ends call, the binary protocol
//! (`binary/`) and the IronMQ HTTP API (`http/`).
//!
//! A front end turns its wire request into a call here with domain values (a
//! [`QueueName`], milliseconds, message ids); the service checks it against the
//! limits of semantics.md (defined once, in `queue/types.rs`, and checked only
//! here) and runs it on the registry and the queue actors. It answers with domain
//! values or a [`QueueError`]; each front end maps those to its own wire (error
//! codes at the binary edge, HTTP statuses at the HTTP edge). Conventions the two
//! wires share live here too: `n = 0` means 1, and a push to a queue that does not
//! exist (or was deleted while the push was on its way) creates it.
//!
//! Push queues: a queue created here with push settings is handed to the push
//! engine ([`crate::push`]), which delivers it; a message's push headers are checked
//! here and kept with its body on push queues only (`queue/push.rs`, `wrap_body`),
//! and every read a client makes shows the body without them; consumers cannot
//! reserve from a push queue; a subscriber's acknowledgement of a 202 is
//! [`Service::acknowledge`].

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::auth::Scope;
use crate::error::QueueError;
use crate::metrics::{Protocol, QueueFigures, Rates};
use crate::push::PushEngine;
pub use crate::push::SubscriberStatus;
use crate::queue::handle::UpdateError;
use crate::queue::push::{check_header, unwrap_body, QueueKind};
use crate::queue::types::{
    check_range, Lease, MessageView, NewMessage, QueueName, QueueStats, SettingsPatch, MAX_BATCH,
    MAX_DELAY_MS, MAX_PRIORITY, MAX_TIMEOUT_MS, MAX_WAIT_MS, MIN_TIMEOUT_MS,
};
use crate::queue::{QueueHandle, Registry};
use crate::storage::FsyncMode;
use crate::telemetry::{Metrics, MetricsOptions};

/// How often a push retries on a queue deleted under it before giving up.
const PUSH_ATTEMPTS: usize = 3;
/// Most push headers of one message (IronMQ's).
pub const MAX_PUSH_HEADERS: usize = 5;

/// Server-wide counters.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerStats {
    /// Milliseconds since the server started.
    pub uptime_ms: u64,
    /// Queues that exist now.
    pub queues: u64,
    /// Group-commit flushes since start.
    pub flushes: u64,
    /// The fsync mode.
    pub fsync: FsyncMode,
    /// Connections open now.
    pub connections: u64,
    /// The queues' figures summed (those the caller may see).
    pub totals: QueueFigures,
    /// Messages per second over the last 10 s (zero for a scope limited to
    /// projects).
    pub rates: Rates,
    /// Group commit: mean seconds and mean commit requests per flush.
    pub commit: Option<(f64, f64)>,
    /// Bytes of the data directory's files.
    pub data_dir_bytes: Option<u64>,
}

/// The window of the rates in [`ServerStats`]: 10 one-second samples.
pub const RATE_WINDOW: usize = 10;

/// A page of queue figures.
#[derive(Debug, Clone, PartialEq)]
pub struct FiguresPage {
    /// Each queue's name and figures, in name order.
    pub queues: Vec<(String, QueueFigures)>,
    /// The cursor of the next page; `None` on the last page.
    pub next: Option<String>,
}

/// A flush running longer than this makes the server not ready: its disk is not
/// answering, and every acknowledged write waits for it.
pub const READY_MAX_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether the server can take work (`/health/ready`, the binary `health`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Ready for requests.
    pub ready: bool,
    /// Why not, one sentence each; empty when ready.
    pub reasons: Vec<String>,
}

/// Most rows a table sorted by a figure pages through
/// ([`Service::queue_table_in`]).
pub const MAX_TABLE_WINDOW: usize = 100_000;

/// Names read from the registry at once by [`Service::queue_table_in`].
const TABLE_CHUNK: usize = 1000;

/// What a table of queues is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueSort {
    /// The name, in byte order.
    Name,
    /// Available + reserved + delayed.
    Size,
    /// Available messages.
    Available,
    /// Reserved messages.
    Reserved,
    /// Delayed messages.
    Delayed,
    /// The age of the oldest available message.
    Oldest,
    /// Bytes of stored bodies.
    Bytes,
    /// Pushed per second.
    PushRate,
    /// Deleted per second.
    DeleteRate,
}

impl QueueSort {
    /// Every sort, with its name on the wire.
    pub const ALL: [(&'static str, QueueSort); 9] = [
        ("name", QueueSort::Name),
        ("size", QueueSort::Size),
        ("available", QueueSort::Available),
        ("reserved", QueueSort::Reserved),
        ("delayed", QueueSort::Delayed),
        ("oldest", QueueSort::Oldest),
        ("bytes", QueueSort::Bytes),
        ("push_rate", QueueSort::PushRate),
        ("delete_rate", QueueSort::DeleteRate),
    ];

    /// The sort named `name` on the wire.
    pub fn parse(name: &str) -> Option<QueueSort> {
        Self::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, sort)| *sort)
    }
}

/// A table's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOrder {
    /// By what.
    pub sort: QueueSort,
    /// Largest (or last) first.
    pub descending: bool,
}

/// A row's sort key: the figure, negated for a descending order, so the best
/// rows are always the smallest keys.
#[derive(Debug, Clone, Copy)]
struct TableKey(f64);

impl TableKey {
    #[allow(clippy::cast_precision_loss)] // an order, not arithmetic: 2^53 messages is far off
    fn new(order: TableOrder, figures: &QueueFigures, rates: Rates) -> Self {
        let value = match order.sort {
            QueueSort::Name => 0.0,
            QueueSort::Size => (figures.available + figures.reserved + figures.delayed) as f64,
            QueueSort::Available => figures.available as f64,
            QueueSort::Reserved => figures.reserved as f64,
            QueueSort::Delayed => figures.delayed as f64,
            QueueSort::Oldest => figures.oldest_age_ms as f64,
            QueueSort::Bytes => figures.bytes as f64,
            QueueSort::PushRate => rates.pushed,
            QueueSort::DeleteRate => rates.deleted,
        };
        TableKey(if order.descending { -value } else { value })
    }
}

impl PartialEq for TableKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for TableKey {}
impl PartialOrd for TableKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TableKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// One row of a table of queues.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    /// The queue's name.
    pub name: String,
    /// Its figures.
    pub figures: QueueFigures,
    /// Its rates over the last 2 s or more ([`crate::metrics::QueueMetrics::rates`]).
    pub rates: Rates,
}

/// A page of a table of queues.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueTable {
    /// The page's rows, in the table's order.
    pub rows: Vec<TableRow>,
    /// How many queues the table has (all pages).
    pub total: usize,
}

/// A page of queue names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePage {
    /// The names, in byte order.
    pub names: Vec<String>,
    /// The cursor of the next page; `None` on the last page.
    pub next: Option<String>,
}

/// The operations of the server, over its queues.
pub struct Service {
    registry: Registry,
    max_body: usize,
    started: Instant,
    /// Delivers push queues; `None` in tests of the service alone.
    push: Option<Arc<PushEngine>>,
    /// Set when the server starts to stop: not ready any more.
    stopping: std::sync::atomic::AtomicBool,
    /// What both front ends record, and `/metrics` shows.
    metrics: Metrics,
}

impl Service {
    /// The service over `registry`, refusing bodies over `max_body` bytes.
    pub fn new(registry: Registry, max_body: usize) -> Self {
        Service {
            max_body,
            started: Instant::now(),
            push: None,
            stopping: std::sync::atomic::AtomicBool::new(false),
            metrics: Metrics::new(registry.clone(), MetricsOptions::default()),
            registry,
        }
    }

    /// This service, with its metrics exposed as `options` say.
    #[must_use]
    pub fn with_metrics(mut self, options: MetricsOptions) -> Self {
        self.metrics = Metrics::new(self.registry.clone(), options);
        self
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The server has begun to stop: [`Service::health`] says not ready.
    pub fn set_stopping(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the server can take work: the data directory is loaded (a
    /// service exists only after that), it is not stopping, and its committer is
    /// not stuck in a flush for longer than [`READY_MAX_FLUSH`].
    pub fn health(&self) -> Health {
        let mut reasons = Vec::new();
        if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            reasons.push("the server is stopping".to_owned());
        }
        let flushing = self.registry.store().flushing_for();
        if flushing > READY_MAX_FLUSH {
            reasons.push(format!(
                "a flush of the data directory has run for {} ms: the disk is not answering",
                flushing.as_millis()
            ));
        }
        Health {
            ready: reasons.is_empty(),
            reasons,
        }
    }

    /// This service, with push queues delivered by `engine` (queues it creates
    /// are handed to it).
    #[must_use]
    pub fn with_push(mut self, engine: Arc<PushEngine>) -> Self {
        self.push = Some(engine);
        self
    }

    /// Stops push deliveries (before the queues stop).
    pub async fn stop_push(&self) {
        if let Some(push) = &self.push {
            push.shutdown().await;
        }
    }

    /// The largest body accepted.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Pushes 1..=100 messages to `queue`, creating it if needed; returns their ids
    /// once they are durable. If the queue is deleted between the lookup and the
    /// push, the push goes to a newly created queue of that name.
    ///
    /// # Errors
    /// `InvalidArgument` (count, delay), `BodyTooLarge`, storage failures.
    pub async fn push(
        &self,
        queue: &QueueName,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>, QueueError> {
        self.push_with_headers(queue, messages, Vec::new()).await
    }

    /// As [`Service::push`], with each message's push headers (`headers[i]` for
    /// `messages[i]`; missing entries are none), checked here and kept for push
    /// queues' deliveries (a pull queue has no use for them and stores none).
    ///
    /// # Errors
    /// As [`Service::push`]; `InvalidArgument` for a push header against the rules.
    pub async fn push_with_headers(
        &self,
        queue: &QueueName,
        messages: Vec<NewMessage>,
        headers: Vec<Vec<(String, String)>>,
    ) -> Result<Vec<u64>, QueueError> {
        self.check_push(&messages, &headers)?;
        let handle = self.registry.get_or_create(queue).await?;
        self.push_from(handle, queue, messages, &headers).await
    }

    /// Checks a push's messages and headers (see [`Service::push_with_headers`]).
    fn check_push(
        &self,
        messages: &[NewMessage],
        headers: &[Vec<(String, String)>],
    ) -> Result<(), QueueError> {
        check_count("push", "messages", messages.len())?;
        for list in headers {
            if list.len() > MAX_PUSH_HEADERS {
                return Err(QueueError::invalid(format!(
                    "a message has {} push headers; at most {MAX_PUSH_HEADERS} are allowed",
                    list.len()
                )));
            }
            for (name, value) in list {
                check_header(name, value)?;
            }
        }
        for message in messages {
            if message.body.len() > self.max_body {
                return Err(QueueError::BodyTooLarge {
                    len: message.body.len(),
                    max: self.max_body,
                });
            }
            check_range("delay_ms", message.delay_ms, 0, MAX_DELAY_MS)?;
            check_range(
                "priority",
                u64::from(message.priority),
                0,
                u64::from(MAX_PRIORITY),
            )?;
            if let Some(key) = &message.key {
                crate::queue::fair::check_key(key).map_err(QueueError::invalid)?;
            }
        }
        Ok(())
    }

    /// Atomic hand-off: deletes message `id` of `queue`, reserved under
    /// `reservation_id`, and pushes each target's follow-ups to its queue
    /// (created if missing), all or nothing (`queue/state/hand_off.rs`). Returns
    /// the follow-ups' ids per target once the whole hand-off is durable.
    ///
    /// # Errors
    /// `InvalidArgument` (no or too many targets, a push queue as the source, a
    /// follow-up as [`Service::push_with_headers`] refuses it), `BodyTooLarge`,
    /// `QueueNotFound` for the source, the reservation errors of
    /// [`Service::delete`], a target's refusal (`ResourceExhausted`), storage
    /// failures. On any error before the commit nothing changed.
    pub async fn hand_off(
        &self,
        queue: &QueueName,
        id: u64,
        reservation_id: u64,
        targets: Vec<FollowUps>,
    ) -> Result<Vec<Vec<u64>>, QueueError> {
        check_range(
            "targets",
            u64::try_from(targets.len()).unwrap_or(u64::MAX),
            1,
            MAX_HAND_OFF_TARGETS,
        )?;
        if reservation_id == 0 {
            return Err(QueueError::invalid(
                "a hand-off needs the message's reservation_id: only a reserved message \
                 can be handed off",
            ));
        }
        for target in &targets {
            self.check_push(&target.messages, &target.headers)?;
        }
        let source = self.queue(queue).await?;
        if source.kind() != QueueKind::Pull {
            return Err(QueueError::invalid(format!(
                "queue {queue} is a push queue: its reservations belong to its deliveries, \
                 they cannot be handed off"
            )));
        }
        self.registry
            .hand_off(source, id, reservation_id, targets)
            .await
    }

    /// Pushes through `handle`, the queue `queue` as last looked up. A push is
    /// refused QUEUE_NOT_FOUND only by a queue deleted before the push got there
    /// (in the same actor turn as the deletion, or after it): then the queue is
    /// looked up (and so created) anew, a few times at most.
    async fn push_from(
        &self,
        mut handle: QueueHandle,
        queue: &QueueName,
        messages: Vec<NewMessage>,
        headers: &[Vec<(String, String)>],
    ) -> Result<Vec<u64>, QueueError> {
        for _ in 1..PUSH_ATTEMPTS {
            match handle.push(stored(&handle, &messages, headers)).await {
                Err(QueueError::QueueNotFound(_)) => {
                    handle = self.registry.get_or_create(queue).await?;
                }
                other => return other,
            }
        }
        handle.push(stored(&handle, &messages, headers)).await
    }

    /// Reserves up to `n` (0 means 1) available messages, leased for `timeout_ms`
    /// (`None`: the queue's default), waiting up to `wait_ms` for the first.
    ///
    /// # Errors
    /// `InvalidArgument`, `QueueNotFound`.
    pub async fn reserve(
        &self,
        queue: &QueueName,
        n: u64,
        timeout_ms: Option<u64>,
        wait_ms: u64,
        delete: bool,
        consumer: Option<Arc<str>>,
    ) -> Result<Vec<MessageView>, QueueError> {
        let n = batch_size("n", n)?;
        check_lease(timeout_ms)?;
        check_range("wait_ms", wait_ms, 0, MAX_WAIT_MS)?;
        let handle = self.queue(queue).await?;
        if handle.kind() != QueueKind::Pull {
            return Err(QueueError::invalid(format!(
                "queue {queue} is a {} push queue: the server delivers its messages to its \
                 subscribers, they cannot be reserved",
                handle.kind().as_str()
            )));
        }
        handle
            .reserve(n, timeout_ms, wait_ms, delete, consumer)
            .await
    }

    /// Deletes 1..=100 messages, each with its reservation id if it is reserved;
    /// all or nothing. Returns how many.
    ///
    /// # Errors
    /// `InvalidArgument`, `QueueNotFound`, and the first failing entry's
    /// `MessageNotFound`, `ReservationExpired` or `ReservationMismatch`.
    pub async fn delete(
        &self,
        queue: &QueueName,
        entries: Vec<(u64, Option<u64>)>,
    ) -> Result<usize, QueueError> {
        check_count("delete", "entries", entries.len())?;
        self.queue(queue).await?.delete(entries).await
    }

    /// Extends a reservation by `timeout_ms` from now (`None`: the queue's default).
    ///
    /// # Errors
    /// As [`Service::delete`].
    pub async fn touch(
        &self,
        queue: &QueueName,
        id: u64,
        reservation_id: u64,
        timeout_ms: Option<u64>,
    ) -> Result<Lease, QueueError> {
        check_lease(timeout_ms)?;
        self.queue(queue)
            .await?
            .touch(id, reservation_id, timeout_ms)
            .await
    }

    /// Gives a reserved message back to the front of its queue after `delay_ms`.
    ///
    /// # Errors
    /// As [`Service::delete`].
    pub async fn release(
        &self,
        queue: &QueueName,
        id: u64,
        reservation_id: u64,
        delay_ms: u64,
    ) -> Result<(), QueueError> {
        check_range("delay_ms", delay_ms, 0, MAX_DELAY_MS)?;
        self.queue(queue)
            .await?
            .release(id, reservation_id, delay_ms)
            .await
    }

    /// Up to `n` (0 means 1) available messages, unchanged.
    ///
    /// # Errors
    /// `InvalidArgument`, `QueueNotFound`.
    pub async fn peek(&self, queue: &QueueName, n: u64) -> Result<Vec<MessageView>, QueueError> {
        let n = batch_size("n", n)?;
        let handle = self.queue(queue).await?;
        let messages = handle.peek(n).await?;
        Ok(messages.into_iter().map(|m| shown(&handle, m)).collect())
    }

    /// One message by id.
    ///
    /// # Errors
    /// `QueueNotFound`, `MessageNotFound`.
    pub async fn get(&self, queue: &QueueName, id: u64) -> Result<MessageView, QueueError> {
        let handle = self.queue(queue).await?;
        let message = handle.get(id).await?;
        Ok(shown(&handle, message))
    }

    /// Push queues: subscriber `subscriber` acknowledges message `id`, delivered to
    /// it with reservation `reservation_id` and answered 202. The message is
    /// deleted once every subscriber has it (multicast) or at once (unicast);
    /// returns whether it was.
    ///
    /// # Errors
    /// `QueueNotFound`, `MessageNotFound`, `ReservationExpired`,
    /// `ReservationMismatch`; `InvalidArgument` on a pull queue or for a name
    /// that is not a subscriber of the queue.
    pub async fn acknowledge(
        &self,
        queue: &QueueName,
        id: u64,
        reservation_id: u64,
        subscriber: &str,
    ) -> Result<bool, QueueError> {
        let handle = self.queue(queue).await?;
        let settings = handle.info().await?.settings;
        let push = settings.push.as_ref().ok_or_else(|| {
            QueueError::invalid(format!(
                "queue {queue} is a pull queue: subscriber_name is for push queues"
            ))
        })?;
        let Some(s) = push.subscriber(subscriber) else {
            return Err(QueueError::invalid(format!(
                "queue {queue} has no subscriber named {subscriber:?}"
            )));
        };
        let slot = 1u64 << s.slot;
        let required = match push.kind {
            QueueKind::Unicast => slot,
            _ => push.all_slots(),
        };
        let deleted = handle
            .acknowledge(id, reservation_id, slot, required)
            .await?;
        if let Some(engine) = &self.push {
            engine.acknowledged(queue, id, subscriber, deleted);
        }
        Ok(deleted)
    }

    /// Push queues: the status of message `id` with each subscriber.
    ///
    /// # Errors
    /// `QueueNotFound`, `MessageNotFound`; `InvalidArgument` on a pull queue.
    pub async fn push_statuses(
        &self,
        queue: &QueueName,
        id: u64,
    ) -> Result<Vec<SubscriberStatus>, QueueError> {
        let handle = self.queue(queue).await?;
        let settings = handle.info().await?.settings;
        let Some(push) = settings.push else {
            return Err(QueueError::invalid(format!(
                "queue {queue} is a pull queue: push statuses are for push queues"
            )));
        };
        let message = handle.get(id).await?;
        Ok(match &self.push {
            Some(engine) => engine.statuses(queue, &message, &push),
            None => Vec::new(),
        })
    }

    /// A queue's counters and settings.
    ///
    /// # Errors
    /// `QueueNotFound`.
    pub async fn info(&self, queue: &QueueName) -> Result<QueueStats, QueueError> {
        self.queue(queue).await?.info().await
    }

    /// Creates a queue with the defaults changed by `patch` and the attachment
    /// `edit` makes of an empty one; returns once it is durable.
    ///
    /// # Errors
    /// `QueueExists`, `InvalidArgument`, or `edit`'s refusal.
    pub async fn create_queue<E>(
        &self,
        queue: &QueueName,
        patch: &SettingsPatch,
        edit: Option<impl FnOnce(&[u8]) -> Result<Bytes, E>>,
    ) -> Result<QueueStats, UpdateError<E>> {
        let settings = patch.create(queue)?;
        let attachment = match edit {
            Some(edit) => edit(&[]).map_err(UpdateError::Rejected)?,
            None => Bytes::new(),
        };
        let handle = self.registry.create(queue, settings, attachment).await?;
        if let Some(engine) = &self.push {
            engine.watch(handle.clone());
        }
        Ok(handle.info().await?)
    }

    /// Changes a queue's settings and, with `edit`, its attachment, in one step of
    /// its actor (no read-modify-write across two calls). Returns once durable.
    ///
    /// # Errors
    /// `QueueNotFound`, `InvalidArgument`, or `edit`'s refusal (then nothing changed).
    pub async fn update_queue<E, F>(
        &self,
        queue: &QueueName,
        patch: SettingsPatch,
        edit: Option<F>,
    ) -> Result<QueueStats, UpdateError<E>>
    where
        E: Send + 'static,
        F: FnOnce(&[u8]) -> Result<Bytes, E> + Send + 'static,
    {
        self.queue(queue).await?.update(patch, edit).await
    }

    /// Creates a queue, or updates it if it exists, keeping its messages (IronMQ's
    /// PUT). `edit` runs on the current attachment (an empty one for a new queue).
    ///
    /// # Errors
    /// As [`Service::create_queue`] and [`Service::update_queue`].
    pub async fn put_queue<E, F>(
        &self,
        queue: &QueueName,
        patch: SettingsPatch,
        edit: Option<F>,
    ) -> Result<QueueStats, UpdateError<E>>
    where
        E: Send + 'static,
        F: Fn(&[u8]) -> Result<Bytes, E> + Send + 'static,
    {
        match self.create_queue(queue, &patch, edit.as_ref()).await {
            Err(UpdateError::Queue(QueueError::QueueExists(_))) => {
                self.update_queue(queue, patch, edit).await
            }
            other => other,
        }
    }

    /// Up to `limit` (0 means 100) queue names starting with `prefix`, after
    /// `cursor`.
    ///
    /// # Errors
    /// `InvalidArgument` for a limit over 100.
    pub fn list_queues(
        &self,
        prefix: &str,
        cursor: &str,
        limit: u64,
    ) -> Result<QueuePage, QueueError> {
        let limit = page_limit(limit)?;
        let (names, next) = self.registry.list(prefix, cursor, limit);
        Ok(QueuePage { names, next })
    }

    /// As [`Service::list_queues`], showing only the queues `scope` covers: for a
    /// token limited to projects, the names under each project's `project/`
    /// prefix, in name order across them, paged by the same cursor.
    ///
    /// # Errors
    /// As [`Service::list_queues`].
    pub fn list_queues_in(
        &self,
        scope: &Scope,
        prefix: &str,
        cursor: &str,
        limit: u64,
    ) -> Result<QueuePage, QueueError> {
        let limit = page_limit(limit)?;
        Ok(self.scoped_names(scope, prefix, cursor, limit))
    }

    /// [`Service::list_queues_in`] without its page limit.
    fn scoped_names(&self, scope: &Scope, prefix: &str, cursor: &str, limit: usize) -> QueuePage {
        let Scope::Projects(projects) = scope else {
            let (names, next) = self.registry.list(prefix, cursor, limit);
            return QueuePage { names, next };
        };
        let mut names: Vec<String> = Vec::new();
        // The scope's projects are sorted by their prefix, so their ranges come in
        // name order and do not overlap.
        for project in projects {
            let namespace = format!("{project}/");
            let range = if prefix.starts_with(&namespace) {
                prefix.to_owned()
            } else if namespace.starts_with(prefix) {
                namespace
            } else {
                continue;
            };
            if names.len() == limit {
                // Full: is there anything after it?
                if !self.registry.list(&range, cursor, 1).0.is_empty() {
                    return QueuePage {
                        next: names.last().cloned(),
                        names,
                    };
                }
                continue;
            }
            let (found, more) = self.registry.list(&range, cursor, limit - names.len());
            names.extend(found);
            if more.is_some() {
                return QueuePage {
                    next: names.last().cloned(),
                    names,
                };
            }
        }
        QueuePage { names, next: None }
    }

    /// Removes every message of a queue; returns how many.
    ///
    /// # Errors
    /// `QueueNotFound`.
    pub async fn clear(&self, queue: &QueueName) -> Result<usize, QueueError> {
        self.queue(queue).await?.clear().await
    }

    /// Moves up to `n` (0 means 1) available messages from `queue` to `to`
    /// (created if missing), resetting their reserved_count; returns how many once
    /// they are durable there.
    ///
    /// # Errors
    /// `InvalidArgument`, `QueueNotFound`.
    pub async fn redrive(
        &self,
        queue: &QueueName,
        to: &QueueName,
        n: u64,
    ) -> Result<usize, QueueError> {
        let n = batch_size("n", n)?;
        self.queue(queue).await?.redrive(to.clone(), n).await
    }

    /// Deletes a queue and its messages; returns once that is durable.
    ///
    /// # Errors
    /// `QueueNotFound`.
    pub async fn delete_queue(&self, queue: &QueueName) -> Result<(), QueueError> {
        self.registry.delete(queue).await
    }

    /// Server-wide counters.
    pub fn server_stats(&self) -> ServerStats {
        self.server_stats_in(&Scope::All)
    }

    /// Server-wide counters as `scope` may see them: the queues counted are the
    /// ones it covers.
    pub fn server_stats_in(&self, scope: &Scope) -> ServerStats {
        let store = self.registry.store();
        let queues = match scope {
            Scope::All => self.registry.len(),
            Scope::Projects(projects) => projects
                .iter()
                .map(|project| self.registry.count_prefixed(&format!("{project}/")))
                .sum(),
        };
        let (totals, rates) = match scope {
            Scope::All => (self.metrics.totals(), self.metrics.rates(RATE_WINDOW)),
            Scope::Projects(_) => {
                let mut totals = QueueFigures::default();
                let mut cursor = String::new();
                while let Ok(page) = self.queue_figures_in(scope, "", &cursor, 0) {
                    for (_, figures) in &page.queues {
                        totals.add(figures);
                    }
                    match page.next {
                        Some(next) => cursor = next,
                        None => break,
                    }
                }
                (totals, Rates::default())
            }
        };
        ServerStats {
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            queues: u64::try_from(queues).unwrap_or(u64::MAX),
            flushes: store.flushes(),
            fsync: store.fsync_mode(),
            connections: self.metrics.open_connections(Protocol::Binary)
                + self.metrics.open_connections(Protocol::Http),
            totals,
            rates,
            commit: self.metrics.commit_averages(),
            data_dir_bytes: self.metrics.data_dir_bytes(),
        }
    }

    /// The figures of up to `limit` queues `scope` covers, as
    /// [`Service::list_queues_in`] pages them, from what their actors last
    /// published.
    ///
    /// # Errors
    /// As [`Service::list_queues`].
    pub fn queue_figures_in(
        &self,
        scope: &Scope,
        prefix: &str,
        cursor: &str,
        limit: u64,
    ) -> Result<FiguresPage, QueueError> {
        let page = self.list_queues_in(scope, prefix, cursor, limit)?;
        let now_ms = crate::metrics::now_ms();
        let queues = self
            .registry
            .metrics_of(&page.names)
            .into_iter()
            .map(|(name, metrics)| (name, metrics.read(now_ms)))
            .collect();
        Ok(FiguresPage {
            queues,
            next: page.next,
        })
    }

    /// One page of the table of the queues `scope` covers whose names start
    /// with `prefix`, ordered by `sort` (ties by name), rows `offset..offset +
    /// limit` (`limit` 1..=100), with how many queues match. Read from what the
    /// actors last published, without asking them.
    ///
    /// Bounded work and memory whatever the number of queues: the names are
    /// walked in chunks (the registry's lock is held for one chunk at a time);
    /// by name, rows before `offset` are only counted; by a figure, the best
    /// `offset + limit` are kept in a heap, so `offset + limit` is at most
    /// [`MAX_TABLE_WINDOW`] then (narrow with a prefix to go further).
    ///
    /// # Errors
    /// `InvalidArgument` for a limit over 100 or a window past
    /// [`MAX_TABLE_WINDOW`].
    pub fn queue_table_in(
        &self,
        scope: &Scope,
        prefix: &str,
        order: TableOrder,
        offset: usize,
        limit: u64,
    ) -> Result<QueueTable, QueueError> {
        let limit = batch_size("limit", limit)?;
        let window = offset.saturating_add(limit);
        if order.sort != QueueSort::Name && window > MAX_TABLE_WINDOW {
            return Err(QueueError::invalid(format!(
                "sorted by a figure, only the first {MAX_TABLE_WINDOW} queues are paged: narrow with a prefix"
            )));
        }
        let now_ms = self.registry.now_ms();
        let mut total = 0usize;
        // By name: the rows in order. By a figure: a max-heap of the best
        // `window` (key, name), the worst on top.
        let mut by_name: Vec<String> = Vec::new();
        let mut best: std::collections::BinaryHeap<(TableKey, String)> =
            std::collections::BinaryHeap::new();
        let mut cursor = String::new();
        loop {
            let page = self.scoped_names(scope, prefix, &cursor, TABLE_CHUNK);
            if order.sort == QueueSort::Name {
                for name in &page.names {
                    if total >= offset && by_name.len() < limit {
                        by_name.push(name.clone());
                    }
                    total += 1;
                }
            } else {
                for (name, metrics) in self.registry.metrics_of(&page.names) {
                    total += 1;
                    let key = TableKey::new(order, &metrics.read(now_ms), metrics.rates(now_ms));
                    best.push((key, name));
                    if best.len() > window {
                        best.pop();
                    }
                }
            }
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        let names: Vec<String> = if order.sort == QueueSort::Name {
            if order.descending {
                // Descending by name: the mirror page, counted from the end.
                return self.queue_table_in_reverse(scope, prefix, offset, limit, total);
            }
            by_name
        } else {
            best.into_sorted_vec()
                .into_iter()
                .skip(offset)
                .map(|(_, name)| name)
                .collect()
        };
        Ok(self.table_rows(names, total, now_ms))
    }

    /// A page by name, descending: rows `offset..offset + limit` from the end
    /// are rows `total - offset - limit..total - offset` from the start.
    fn queue_table_in_reverse(
        &self,
        scope: &Scope,
        prefix: &str,
        offset: usize,
        limit: usize,
        total: usize,
    ) -> Result<QueueTable, QueueError> {
        let end = total.saturating_sub(offset);
        let start = end.saturating_sub(limit);
        let ascending = TableOrder {
            sort: QueueSort::Name,
            descending: false,
        };
        let len = u64::try_from(end - start).unwrap_or(1);
        if len == 0 {
            return Ok(QueueTable {
                rows: Vec::new(),
                total,
            });
        }
        let mut table = self.queue_table_in(scope, prefix, ascending, start, len)?;
        table.rows.reverse();
        Ok(table)
    }

    fn table_rows(&self, names: Vec<String>, total: usize, now_ms: u64) -> QueueTable {
        let rows = self
            .registry
            .metrics_of(&names)
            .into_iter()
            .map(|(name, metrics)| TableRow {
                figures: metrics.read(now_ms),
                rates: metrics.rates(now_ms),
                name,
            })
            .collect();
        QueueTable { rows, total }
    }

    /// One queue's figures and rates as its actor last published them.
    ///
    /// # Errors
    /// `QueueNotFound`.
    pub async fn queue_row(&self, queue: &QueueName) -> Result<TableRow, QueueError> {
        let handle = self.queue(queue).await?;
        let now_ms = self.registry.now_ms();
        Ok(TableRow {
            name: queue.to_string(),
            figures: handle.metrics().read(now_ms),
            rates: handle.metrics().rates(now_ms),
        })
    }

    /// `n` fresh ids, unique on this server (a front end's own names, e.g. alert ids).
    ///
    /// # Errors
    /// On storage failure.
    pub fn fresh_ids(&self, n: u64) -> Result<u64, QueueError> {
        Ok(self.registry.store().allocate_ids(n)?)
    }

    /// Stops every queue and closes the store.
    pub async fn shutdown(&self) {
        self.registry.shutdown().await;
    }

    async fn queue(&self, queue: &QueueName) -> Result<QueueHandle, QueueError> {
        self.registry.get(queue).await
    }
}

/// Most targets of one hand-off.
pub const MAX_HAND_OFF_TARGETS: u64 = 16;

pub use crate::queue::transfer::FollowUps;

/// What a queue stores for `messages` (`queue::push::stored`).
fn stored(
    handle: &QueueHandle,
    messages: &[NewMessage],
    headers: &[Vec<(String, String)>],
) -> Vec<NewMessage> {
    crate::queue::push::stored(handle.kind(), messages, headers)
}

/// A message as a client sees it: a push queue's body without its push headers.
fn shown(handle: &QueueHandle, mut message: MessageView) -> MessageView {
    if handle.kind() != QueueKind::Pull {
        message.body = unwrap_body(&message.body).1;
    }
    message
}

/// 1..=100 items.
fn check_count(op: &str, what: &str, len: usize) -> Result<(), QueueError> {
    if len == 0 || len > MAX_BATCH {
        return Err(QueueError::invalid(format!(
            "{op} has {len} {what}; 1..={MAX_BATCH} are allowed"
        )));
    }
    Ok(())
}

/// `n` of reserve, peek, redrive and list: 0 means 1, else 1..=100.
/// A listing's page size: 0 means the largest, [`MAX_BATCH`].
fn page_limit(limit: u64) -> Result<usize, QueueError> {
    match limit {
        0 => Ok(MAX_BATCH),
        n => batch_size("limit", n),
    }
}

fn batch_size(field: &str, n: u64) -> Result<usize, QueueError> {
    let n = n.max(1);
    check_range(field, n, 1, MAX_BATCH as u64)?;
    usize::try_from(n).map_err(|_| QueueError::invalid(format!("{field} is too large")))
}

/// A lease length, if one is given: 100 ms..=24 h, or lease advice
/// ([`crate::queue::types::AUTO_TIMEOUT_MS`]).
fn check_lease(timeout_ms: Option<u64>) -> Result<(), QueueError> {
    match timeout_ms {
        Some(crate::queue::types::AUTO_TIMEOUT_MS) | None => Ok(()),
        Some(ms) => check_range("timeout_ms", ms, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::queue::clock::ManualClock;
    use crate::storage::MemoryStore;

    async fn service() -> Service {
        let registry = Registry::open(
            Arc::new(MemoryStore::default()),
            Arc::new(ManualClock::new(1)),
        )
        .await
        .unwrap();
        Service::new(registry, 1024)
    }

    fn message(text: &'static str) -> Vec<NewMessage> {
        vec![NewMessage {
            key: None,
            priority: crate::queue::types::DEFAULT_PRIORITY,
            body: Bytes::from_static(text.as_bytes()),
            delay_ms: 0,
        }]
    }

    fn invalid<T: std::fmt::Debug>(result: Result<T, QueueError>) -> bool {
        matches!(result, Err(QueueError::InvalidArgument(_)))
    }

    /// The dashboard's table over more queues than one registry chunk: every
    /// order pages through every queue once, in order, with the right total; a
    /// project scope sees only its queues; a figure's window is bounded.
    #[tokio::test]
    async fn the_queue_table_pages_every_queue_once_in_each_order() {
        let service = service().await;
        // 2,300 queues in two projects (chunks of 1,000), queue i holding i % 7
        // messages.
        let mut names = Vec::new();
        for i in 0..2300u32 {
            let project = if i % 2 == 0 { "even" } else { "odd" };
            let name = QueueName::new(&format!("{project}/q{i:05}")).unwrap();
            service
                .create_queue(
                    &name,
                    &SettingsPatch::default(),
                    None::<fn(&[u8]) -> Result<Bytes, ()>>,
                )
                .await
                .unwrap();
            for _ in 0..i % 7 {
                service.push(&name, message("x")).await.unwrap();
            }
            names.push((name.to_string(), u64::from(i % 7)));
        }
        let walk = |order: TableOrder, scope: Scope, prefix: &'static str| {
            let mut rows = Vec::new();
            let mut offset = 0;
            loop {
                let page = service
                    .queue_table_in(&scope, prefix, order, offset, 100)
                    .unwrap();
                assert!(page.rows.len() <= 100);
                offset += page.rows.len();
                let done = page.rows.is_empty();
                rows.extend(page.rows.into_iter().map(|r| (r.name, r.figures.available)));
                if done {
                    return (rows, page.total);
                }
            }
        };
        let by = |sort, descending| TableOrder { sort, descending };
        let (rows, total) = walk(by(QueueSort::Name, false), Scope::All, "");
        assert_eq!(total, 2300);
        let mut expected = names.clone();
        expected.sort();
        assert_eq!(rows, expected);
        let (rows, _) = walk(by(QueueSort::Name, true), Scope::All, "");
        expected.reverse();
        assert_eq!(rows, expected);
        // By size, largest first, ties by name.
        let (rows, total) = walk(by(QueueSort::Size, true), Scope::All, "");
        assert_eq!(total, 2300);
        let mut expected = names.clone();
        expected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!(rows, expected);
        let (rows, _) = walk(by(QueueSort::Available, false), Scope::All, "");
        assert_eq!(rows.first().map(|r| r.1), Some(0));
        assert_eq!(rows.last().map(|r| r.1), Some(6));
        // A project token sees its project only, a prefix narrows.
        let odd = Scope::Projects(vec!["odd".into()]);
        let (rows, total) = walk(by(QueueSort::Size, true), odd.clone(), "");
        assert_eq!(total, 1150);
        assert!(rows.iter().all(|(name, _)| name.starts_with("odd/")));
        let (rows, total) = walk(by(QueueSort::Name, false), odd, "even/");
        assert_eq!((rows.len(), total), (0, 0));
        let (rows, total) = walk(by(QueueSort::Name, false), Scope::All, "even/q0000");
        assert_eq!(total, 5);
        assert_eq!(rows.len(), 5);
        // Sorted by a figure, the window is bounded; by name it is not.
        assert!(invalid(service.queue_table_in(
            &Scope::All,
            "",
            by(QueueSort::Size, true),
            MAX_TABLE_WINDOW,
            1
        )));
        let far = service
            .queue_table_in(
                &Scope::All,
                "",
                by(QueueSort::Name, false),
                MAX_TABLE_WINDOW,
                1,
            )
            .unwrap();
        assert_eq!((far.rows.len(), far.total), (0, 2300));
        assert!(invalid(service.queue_table_in(
            &Scope::All,
            "",
            by(QueueSort::Name, false),
            0,
            101
        )));
    }

    /// The limits of docs/semantics.md, each at its edge: in range passes, one
    /// beyond fails with INVALID_ARGUMENT (BODY_TOO_LARGE for bodies).
    #[tokio::test]
    async fn every_limit_is_checked_at_its_edge() {
        let service = service().await;
        let q = QueueName::new("q").unwrap();
        let many = |n: usize| vec![message("x").remove(0); n];
        assert!(invalid(service.push(&q, Vec::new()).await));
        assert!(invalid(service.push(&q, many(MAX_BATCH + 1)).await));
        assert_eq!(
            service.push(&q, many(MAX_BATCH)).await.unwrap().len(),
            MAX_BATCH
        );
        let big = vec![NewMessage {
            key: None,
            priority: crate::queue::types::DEFAULT_PRIORITY,
            body: Bytes::from(vec![0u8; 1025]),
            delay_ms: 0,
        }];
        assert!(matches!(
            service.push(&q, big).await,
            Err(QueueError::BodyTooLarge {
                len: 1025,
                max: 1024
            })
        ));
        let late = |delay_ms| {
            vec![NewMessage {
                key: None,
                priority: crate::queue::types::DEFAULT_PRIORITY,
                body: Bytes::new(),
                delay_ms,
            }]
        };
        assert!(service.push(&q, late(MAX_DELAY_MS)).await.is_ok());
        assert!(invalid(service.push(&q, late(MAX_DELAY_MS + 1)).await));

        assert!(invalid(
            service.reserve(&q, 101, None, 0, false, None).await
        ));
        assert!(invalid(
            service
                .reserve(&q, 1, Some(MIN_TIMEOUT_MS - 1), 0, false, None)
                .await
        ));
        assert!(invalid(
            service
                .reserve(&q, 1, Some(MAX_TIMEOUT_MS + 1), 0, false, None)
                .await
        ));
        assert!(invalid(
            service
                .reserve(&q, 1, None, MAX_WAIT_MS + 1, false, None)
                .await
        ));
        let got = service
            .reserve(&q, 0, Some(MAX_TIMEOUT_MS), 0, false, None)
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "n = 0 means 1");
        let (id, rid) = (got[0].info.id, got[0].info.reservation_id);
        assert!(invalid(
            service.touch(&q, id, rid, Some(MIN_TIMEOUT_MS - 1)).await
        ));
        assert!(invalid(
            service.release(&q, id, rid, MAX_DELAY_MS + 1).await
        ));
        assert!(invalid(service.delete(&q, Vec::new()).await));
        assert!(invalid(
            service.delete(&q, vec![(id, None); MAX_BATCH + 1]).await
        ));
        assert!(invalid(service.peek(&q, 101).await));
        assert!(invalid(service.list_queues("", "", 101)));
        assert_eq!(
            service.list_queues("", "", 0).unwrap().names,
            ["q"],
            "0 means 100"
        );
        let to = QueueName::new("r").unwrap();
        assert!(invalid(service.redrive(&q, &to, 101).await));
    }

    #[tokio::test]
    async fn a_stopping_server_is_live_but_not_ready() {
        let service = service().await;
        assert_eq!(
            service.health(),
            Health {
                ready: true,
                reasons: Vec::new()
            }
        );
        service.set_stopping();
        let health = service.health();
        assert!(!health.ready);
        assert_eq!(health.reasons, ["the server is stopping"]);
    }

    #[tokio::test]
    async fn a_push_that_meets_a_deleted_queue_goes_to_the_queue_created_anew() {
        let service = service().await;
        let q = QueueName::new("q").unwrap();
        service.push(&q, message("old")).await.unwrap();
        let stale = service.registry.get(&q).await.unwrap();
        service.delete_queue(&q).await.unwrap();
        let ids = service
            .push_from(stale, &q, message("new"), &[])
            .await
            .expect("the push re-creates the queue");
        let stats = service.info(&q).await.unwrap();
        assert_eq!((stats.size, stats.total_pushed), (1, 1), "a fresh queue");
        let got = service.peek(&q, 1).await.unwrap();
        assert_eq!((got[0].info.id, &got[0].body[..]), (ids[0], &b"new"[..]));
    }

    #[tokio::test]
    async fn requests_in_the_same_turn_as_a_deletion_are_answered_queue_not_found() {
        let service = service().await;
        let q = QueueName::new("q").unwrap();
        service.push(&q, message("x")).await.unwrap();
        let stale = service.registry.get(&q).await.unwrap();
        // On this one-thread runtime both requests are in the actor's mailbox
        // before it runs: the deletion first, then a push and an info.
        let (deleted, pushed, info) = tokio::join!(
            service.delete_queue(&q),
            stale.push(message("late")),
            stale.info()
        );
        deleted.unwrap();
        assert_eq!(pushed, Err(QueueError::QueueNotFound("q".into())));
        assert_eq!(
            info.map(|s| s.size),
            Err(QueueError::QueueNotFound("q".into()))
        );
        assert_eq!(
            service.info(&q).await.map(|s| s.size),
            Err(QueueError::QueueNotFound("q".into()))
        );
    }
}
