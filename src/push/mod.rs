//! The push engine: delivers the messages of push queues (unicast, multicast) to
//! their subscribers over HTTP (`docs/ironmq-v3-api.md` §6).
//!
//! # Delivery is a lease
//! Each push queue has one task. It reserves the queue's messages through the
//! queue's handle like any consumer, with a lease covering the answer timeout of
//! every subscriber a round may try, and ends each round through the actor:
//! - every subscriber owed the message answered 2xx (multicast), or one did
//!   (unicast): the message is **deleted**;
//! - a subscriber answered 202: the message is **held** under the same
//!   reservation for the queue's `message_timeout` (`QueueState::settle`), for the
//!   subscriber to acknowledge with DELETE `reservation_id` + `subscriber_name`;
//!   unacknowledged, the hold ends like a lease and the message is tried again;
//! - a subscriber failed (another status, no connection, no answer within
//!   `--push-timeout`): the message goes back to the front of the queue, hidden for
//!   `retries_delay`, with the subscribers that did get it recorded in its state
//!   record (`push_done`), so a multicast retry goes only to the others;
//! - after `retries` retries the message is given up: a JSON report goes to the
//!   `error_queue` (created as a pull queue if needed), then it is deleted.
//!
//! A try is a reservation: the message's `reserved_count` is the round number,
//! kept in its state record, so a restart in the middle of a retry schedule goes
//! on with the retries left, and a crash in the middle of a delivery means the
//! lease runs out and the message is delivered again (at least once, never lost).
//! A round that never reached its subscribers (a crash) counts as a try.
//!
//! # Bounds
//! At most `--push-queue-concurrency` deliveries of one queue and
//! `--push-concurrency` of the whole server are in flight; a queue's task reserves
//! only what it has room for, so messages wait in the queue (on disk), not in
//! memory, and one slow subscriber holds at most its queue's share. A queue with
//! nothing deliverable parks one long poll (no busy loop: failed messages are
//! hidden for their retries delay). Subscriber addresses go through the SSRF
//! [`policy`]; connections are reused per host ([`client`]). Redirects are not
//! followed: a 3xx is a failure, like any status outside 2xx.
//!
//! An idle push queue costs ~2.6 KB of memory more than a pull queue (its task and
//! its parked long poll; BENCHMARKS.md, "Push queues"): one task per queue is simple
//! and isolates the queues, and stays cheap into the tens of thousands of queues.
//!
//! # Statuses
//! The last answer of each subscriber for each message in delivery is kept in
//! memory (at most [`MAX_STATUSES`] messages, dropped when the message is gone);
//! what survives a restart is what the state record holds (tries, delivered set).

pub mod client;
pub mod policy;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::QueueError;
use crate::metrics::Delivery;
use crate::queue::push::{unwrap_body, PushSettings, QueueKind, Subscriber};
use crate::queue::state::Settle;
use crate::queue::types::{
    MessageView, NewMessage, QueueName, MAX_BATCH, MAX_TIMEOUT_MS, MAX_WAIT_MS,
};
use crate::queue::{QueueHandle, Registry};
use client::{Answer, PushClient};
use policy::Policy;

/// Most messages whose per-subscriber answers are kept for push statuses.
pub const MAX_STATUSES: usize = 100_000;
/// Default `--push-timeout`: IronMQ's 10 s for a subscriber's answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--push-concurrency`.
pub const DEFAULT_MAX_DELIVERIES: usize = 256;
/// Default `--push-queue-concurrency`.
pub const DEFAULT_MAX_DELIVERIES_PER_QUEUE: usize = 32;
/// Added to a delivery lease beyond the answer timeouts it covers.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// The User-Agent of deliveries (IronMQ's; a subscriber may check it).
pub const USER_AGENT: &str = "IronMQ Pusherd";
/// The Content-Type of deliveries unless a subscriber or message sets one.
pub const CONTENT_TYPE: &str = "text/plain; encoding=utf-8";

/// The push engine's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushConfig {
    /// Allow rules (`policy.rs`).
    pub allow: Vec<String>,
    /// Deny rules added to the defaults.
    pub deny: Vec<String>,
    /// Deliveries in flight on the whole server.
    pub max_deliveries: usize,
    /// Deliveries in flight for one queue.
    pub max_deliveries_per_queue: usize,
    /// How long a subscriber has to answer.
    pub timeout: Duration,
    /// The base of `Iron-Subscriber-Message-Url` (scheme, host and port of the
    /// HTTP API as subscribers reach it); `None`: the HTTP listener's address.
    pub public_url: Option<String>,
    /// More roots for `https` subscribers (PEM), besides the system's.
    pub ca_cert: Option<std::path::PathBuf>,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            allow: Vec::new(),
            deny: Vec::new(),
            max_deliveries: DEFAULT_MAX_DELIVERIES,
            max_deliveries_per_queue: DEFAULT_MAX_DELIVERIES_PER_QUEUE,
            timeout: DEFAULT_TIMEOUT,
            public_url: None,
            ca_cert: None,
        }
    }
}

impl PushConfig {
    /// Checks the rules and numbers.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        Policy::new(&self.allow, &self.deny)?;
        if self.max_deliveries == 0 || self.max_deliveries_per_queue == 0 {
            return Err(
                "--push-concurrency and --push-queue-concurrency must be at least 1".into(),
            );
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(3600) {
            return Err("--push-timeout must be within 1 ms..=1 h".into());
        }
        Ok(())
    }
}

/// One subscriber's status for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberStatus {
    /// The subscriber.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Its last HTTP status, 0 if none yet (or no answer).
    pub status_code: u16,
    /// `queued`, `delivered`, `reserved` (answered 202, waiting for the
    /// acknowledgement), `retrying` or `error`.
    pub status: &'static str,
    /// Tries so far.
    pub tries: u32,
    /// Tries left.
    pub retries_remaining: u32,
    /// When it was last tried (ms since the Unix epoch), 0 if never.
    pub last_try_at_ms: u64,
    /// The start of its last answer, or what went wrong.
    pub msg: String,
}

/// The push engine of a server.
pub struct PushEngine {
    registry: Registry,
    client: PushClient,
    config: PushConfig,
    public_url: String,
    total: Arc<Semaphore>,
    statuses: Mutex<HashMap<(QueueName, u64), Vec<SubscriberStatus>>>,
    /// Queues with a running delivery task.
    running: Mutex<HashSet<QueueName>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// How one subscriber's try went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Accepted,
    Failed,
}

impl Outcome {
    fn of(answer: &Answer) -> Outcome {
        match answer.status {
            202 => Outcome::Accepted,
            200..=299 => Outcome::Delivered,
            _ => Outcome::Failed,
        }
    }
}

impl PushEngine {
    /// An engine over `registry`'s queues; `http_url` is the HTTP API's base URL
    /// if it listens.
    ///
    /// # Errors
    /// If the configuration is not valid or `--push-ca-cert` cannot be read.
    pub fn new(
        registry: Registry,
        config: PushConfig,
        http_url: Option<String>,
    ) -> Result<Arc<PushEngine>, String> {
        config.validate()?;
        let policy = Arc::new(Policy::new(&config.allow, &config.deny)?);
        // The roots are read at the first https delivery; a bad file is said now.
        if let Some(path) = &config.ca_cert {
            crate::tls::read_certs(path).map_err(|err| format!("--push-ca-cert: {err}"))?;
        }
        let tasks = TaskTracker::new();
        let public_url = config
            .public_url
            .clone()
            .or(http_url)
            .unwrap_or_else(|| "http://127.0.0.1".to_owned());
        Ok(Arc::new(PushEngine {
            registry,
            client: PushClient::new(policy, config.ca_cert.clone(), tasks.clone()),
            total: Arc::new(Semaphore::new(config.max_deliveries)),
            public_url: public_url.trim_end_matches('/').to_owned(),
            config,
            statuses: Mutex::new(HashMap::new()),
            running: Mutex::new(HashSet::new()),
            stop: CancellationToken::new(),
            tasks,
        }))
    }

    /// Starts delivering every push queue that exists.
    pub fn start(self: &Arc<Self>) {
        for handle in self.registry.push_queues() {
            self.watch(handle);
        }
    }

    /// Starts delivering a push queue (nothing for a pull queue, or one already
    /// delivered).
    pub fn watch(self: &Arc<Self>, handle: QueueHandle) {
        if handle.kind() == QueueKind::Pull || self.stop.is_cancelled() {
            return;
        }
        if !lock(&self.running).insert(handle.name().clone()) {
            return;
        }
        let engine = Arc::clone(self);
        self.tasks
            .spawn(async move { engine.run_queue(handle).await });
    }

    /// Stops every delivery (in-flight ones are dropped: their leases run out
    /// and the messages are delivered again after the restart) and waits.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.client.close();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// The push statuses of message `id` of `queue` (a push queue): one per
    /// current subscriber. `view` is the message now, `settings` the queue's.
    pub fn statuses(
        &self,
        queue: &QueueName,
        view: &MessageView,
        settings: &PushSettings,
    ) -> Vec<SubscriberStatus> {
        let known = lock(&self.statuses)
            .get(&(queue.clone(), view.info.id))
            .cloned()
            .unwrap_or_default();
        let tries_total = settings.retries.saturating_add(1);
        settings
            .subscribers
            .iter()
            .map(|s| {
                let done = view.info.push_done & (1u64 << s.slot) != 0;
                let mut status = known
                    .iter()
                    .find(|k| k.name == s.name)
                    .cloned()
                    .unwrap_or_else(|| SubscriberStatus {
                        name: s.name.clone(),
                        url: s.url.clone(),
                        status_code: 0,
                        status: if view.info.reserved_count == 0 {
                            "queued"
                        } else {
                            "retrying"
                        },
                        tries: view.info.reserved_count,
                        retries_remaining: 0,
                        last_try_at_ms: 0,
                        msg: String::new(),
                    });
                if done {
                    status.status = "delivered";
                }
                status.url.clone_from(&s.url);
                status.retries_remaining = if done {
                    0
                } else {
                    tries_total.saturating_sub(view.info.reserved_count)
                };
                status
            })
            .collect()
    }

    /// Records that `subscriber` acknowledged message `id` of `queue`.
    pub fn acknowledged(&self, queue: &QueueName, id: u64, subscriber: &str, deleted: bool) {
        let mut statuses = lock(&self.statuses);
        let key = (queue.clone(), id);
        if deleted {
            statuses.remove(&key);
        } else if let Some(list) = statuses.get_mut(&key) {
            for s in list.iter_mut().filter(|s| s.name == subscriber) {
                s.status = "delivered";
            }
        }
    }

    fn record(&self, queue: &QueueName, id: u64, status: SubscriberStatus) {
        let mut statuses = lock(&self.statuses);
        let key = (queue.clone(), id);
        if !statuses.contains_key(&key) && statuses.len() >= MAX_STATUSES {
            return;
        }
        let list = statuses.entry(key).or_default();
        match list.iter_mut().find(|s| s.name == status.name) {
            Some(old) => *old = status,
            None => list.push(status),
        }
    }

    fn forget(&self, queue: &QueueName, id: u64) {
        lock(&self.statuses).remove(&(queue.clone(), id));
    }

    /// The delivery loop of one push queue, until it is deleted or the server
    /// stops.
    async fn run_queue(self: Arc<Self>, mut handle: QueueHandle) {
        let name = handle.name().clone();
        let per_queue = Arc::new(Semaphore::new(self.config.max_deliveries_per_queue));
        let mut in_flight = JoinSet::new();
        loop {
            let result = tokio::select! {
                () = self.stop.cancelled() => break,
                result = self.round(&handle, &per_queue, &mut in_flight) => result,
            };
            match result {
                Ok(()) => {}
                Err(QueueError::QueueNotFound(_)) => {
                    // Deleted; a push queue made anew under the name goes on here.
                    match self.registry.get(&name).await {
                        Ok(fresh) if fresh.kind() != QueueKind::Pull => handle = fresh,
                        _ => break,
                    }
                }
                Err(QueueError::Unavailable(_)) => break,
                Err(err) => {
                    tracing::warn!(queue = %name, error = %err, "push delivery: reserve failed");
                    tokio::select! {
                        () = self.stop.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
            while in_flight.try_join_next().is_some() {}
        }
        in_flight.abort_all();
        lock(&self.running).remove(&name);
        lock(&self.statuses).retain(|(queue, _), _| *queue != name);
        // A queue made anew under the name while this task was ending.
        if !self.stop.is_cancelled() {
            if let Ok(fresh) = self.registry.get(&name).await {
                self.watch(fresh);
            }
        }
    }

    /// Reserves what the queue has room for and starts delivering it.
    async fn round(
        self: &Arc<Self>,
        handle: &QueueHandle,
        per_queue: &Arc<Semaphore>,
        in_flight: &mut JoinSet<()>,
    ) -> Result<(), QueueError> {
        // Room in the queue's share first (waits while it is full).
        let first = Arc::clone(per_queue)
            .acquire_owned()
            .await
            .map_err(|_| QueueError::Unavailable("stopping".into()))?;
        let mut queue_permits = vec![first];
        while queue_permits.len() < MAX_BATCH {
            match Arc::clone(per_queue).try_acquire_owned() {
                Ok(permit) => queue_permits.push(permit),
                Err(_) => break,
            }
        }
        let mut stats = handle.info().await?;
        let Some(settings) = stats.settings.push.clone() else {
            return Err(QueueError::QueueNotFound(handle.name().to_string()));
        };
        let mut settings = Arc::new(settings);
        let lease = longest_lease(self.config.timeout * sequential_tries(&settings) + LEASE_MARGIN);
        // Server-wide room: what is free now, without waiting.
        let mut total_permits = Vec::new();
        while total_permits.len() < queue_permits.len() {
            match Arc::clone(&self.total).try_acquire_owned() {
                Ok(permit) => total_permits.push(permit),
                Err(_) => break,
            }
        }
        let mut messages = Vec::new();
        let (mut reserved_at, mut granted) = (Instant::now(), lease);
        if !total_permits.is_empty() {
            messages = handle
                .reserve(total_permits.len(), Some(ms(lease)), 0, false, None)
                .await?;
        }
        if messages.is_empty() {
            // Nothing ready (or no server-wide room): park one long poll holding
            // no server-wide permit, then wait for one for the message it brings.
            drop(total_permits);
            queue_permits.truncate(1);
            // Twice the lease: the message may wait for a server-wide permit.
            granted = longest_lease(lease * 2);
            messages = handle
                .reserve(1, Some(ms(granted)), MAX_WAIT_MS, false, None)
                .await?;
            reserved_at = Instant::now();
            if messages.is_empty() {
                return Ok(());
            }
            let permit = Arc::clone(&self.total)
                .acquire_owned()
                .await
                .map_err(|_| QueueError::Unavailable("stopping".into()))?;
            total_permits = vec![permit];
            // The settings may have changed during the wait.
            stats = handle.info().await?;
            if let Some(fresh) = stats.settings.push.clone() {
                settings = Arc::new(fresh);
            }
        }
        for (message, (queue_permit, total_permit)) in messages
            .into_iter()
            .zip(queue_permits.into_iter().zip(total_permits))
        {
            let engine = Arc::clone(self);
            let handle = handle.clone();
            let settings = Arc::clone(&settings);
            let hold_ms = stats.settings.message_timeout_ms;
            in_flight.spawn(async move {
                let permits = (queue_permit, total_permit);
                engine
                    .deliver(&handle, &settings, message, hold_ms, reserved_at, granted)
                    .await;
                drop(permits);
            });
        }
        Ok(())
    }

    /// One round of one message: try the subscribers it is owed to, then end the
    /// round through the actor (module docs).
    async fn deliver(
        &self,
        handle: &QueueHandle,
        settings: &PushSettings,
        mut message: MessageView,
        hold_ms: u64,
        reserved_at: Instant,
        lease: Duration,
    ) {
        let queue = handle.name();
        let id = message.info.id;
        // A message that waited long for a server-wide permit gets a fresh lease
        // (a new reservation id) before anything is sent with the old one.
        let needed = self.config.timeout * sequential_tries(settings);
        if reserved_at.elapsed() + needed + LEASE_MARGIN / 2 > lease {
            match handle
                .touch(
                    id,
                    message.info.reservation_id,
                    Some(ms(longest_lease(needed + LEASE_MARGIN))),
                )
                .await
            {
                Ok(fresh) => message.info.reservation_id = fresh.reservation_id,
                Err(_) => return,
            }
        }
        let rid = message.info.reservation_id;
        let round = message.info.reserved_count;
        let (push_headers, body) = unwrap_body(&message.body);
        let owed: Vec<&Subscriber> = settings
            .subscribers
            .iter()
            .filter(|s| message.info.push_done & (1u64 << s.slot) == 0)
            .collect();
        let mut delivered = 0u64;
        let mut accepted = Vec::new();
        let mut failed = Vec::new();
        let mut try_one = |s: &Subscriber, answer: Answer| {
            let outcome = Outcome::of(&answer);
            match outcome {
                Outcome::Delivered => delivered |= 1u64 << s.slot,
                Outcome::Accepted => accepted.push(s.slot),
                Outcome::Failed => failed.push((s.clone(), answer.clone())),
            }
            handle.metrics().delivery(match outcome {
                Outcome::Delivered => Delivery::Delivered,
                Outcome::Accepted => Delivery::Accepted,
                Outcome::Failed => Delivery::Failed,
            });
            let status = match outcome {
                Outcome::Delivered => "delivered",
                Outcome::Accepted => "reserved",
                Outcome::Failed => "retrying",
            };
            let remaining = settings.retries.saturating_add(1).saturating_sub(round);
            self.record(queue, id, tried(s, answer, status, round, remaining));
        };
        match settings.kind {
            QueueKind::Unicast => {
                // Subscribers in turn from one chosen by the id, so a queue's
                // messages spread over them; the next at once on failure.
                let n = owed.len().max(1);
                let start = usize::try_from(id % n as u64).unwrap_or(0);
                for s in owed.iter().cycle().skip(start).take(owed.len()) {
                    let answer = self.post(queue, s, &push_headers, &body, id, rid).await;
                    let outcome = Outcome::of(&answer);
                    try_one(s, answer);
                    if outcome != Outcome::Failed {
                        break;
                    }
                }
            }
            QueueKind::Multicast | QueueKind::Pull => {
                let answers = futures_util::future::join_all(
                    owed.iter()
                        .map(|s| self.post(queue, s, &push_headers, &body, id, rid)),
                )
                .await;
                for (s, answer) in owed.iter().zip(answers) {
                    try_one(s, answer);
                }
            }
        }
        let complete = match settings.kind {
            QueueKind::Unicast => delivered != 0 || owed.is_empty(),
            _ => failed.is_empty() && accepted.is_empty(),
        };
        let result = if complete {
            self.forget(queue, id);
            handle.delete(vec![(id, Some(rid))]).await.map(drop)
        } else if !accepted.is_empty() {
            handle
                .settle(id, rid, delivered, Settle::Hold { for_ms: hold_ms })
                .await
        } else if round > settings.retries {
            self.give_up(handle, settings, &message, &push_headers, &body, &failed)
                .await
        } else {
            handle
                .settle(
                    id,
                    rid,
                    delivered,
                    Settle::Retry {
                        delay_ms: settings.retries_delay_s.saturating_mul(1000),
                    },
                )
                .await
        };
        if let Err(err) = result {
            // A lease that ran out (the message is delivered again) or a queue
            // deleted meanwhile: nothing is lost either way.
            tracing::debug!(queue = %queue, id, error = %err, "push delivery: round not ended");
        }
    }

    /// Retries ran out: the report to the error queue (if there is one), then the
    /// message is deleted.
    async fn give_up(
        &self,
        handle: &QueueHandle,
        settings: &PushSettings,
        message: &MessageView,
        push_headers: &[(String, String)],
        body: &Bytes,
        failed: &[(Subscriber, Answer)],
    ) -> Result<(), QueueError> {
        let queue = handle.name();
        let id = message.info.id;
        for (s, answer) in failed {
            let round = message.info.reserved_count;
            self.record(queue, id, tried(s, answer.clone(), "error", round, 0));
        }
        if let Some(error_queue) = &settings.error_queue {
            let headers: serde_json::Map<String, serde_json::Value> = push_headers
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            let subscribers: Vec<serde_json::Value> = failed
                .iter()
                .map(|(s, answer)| {
                    json!({"name": s.name, "url": s.url, "code": answer.status, "msg": answer.msg})
                })
                .collect();
            let report = json!({
                "source_msg_id": id.to_string(),
                "body": String::from_utf8_lossy(body),
                "headers": headers,
                "subscribers": subscribers,
            });
            let target = self.registry.get_or_create(error_queue).await?;
            target
                .push(vec![NewMessage {
                    body: Bytes::from(report.to_string()),
                    delay_ms: 0,
                    priority: message.info.priority,
                    key: None,
                }])
                .await?;
        }
        tracing::info!(queue = %queue, id, "push delivery: retries ran out, message given up");
        handle
            .delete(vec![(id, Some(message.info.reservation_id))])
            .await?;
        self.forget(queue, id);
        Ok(())
    }

    /// POSTs message `id` to subscriber `s`.
    async fn post(
        &self,
        queue: &QueueName,
        s: &Subscriber,
        push_headers: &[(String, String)],
        body: &Bytes,
        id: u64,
        rid: u64,
    ) -> Answer {
        let mut headers: Vec<(&str, String)> = vec![
            ("User-Agent", USER_AGENT.to_owned()),
            ("Content-Type", CONTENT_TYPE.to_owned()),
        ];
        // Subscriber headers, then the message's, override the first two.
        for (name, value) in s.headers.iter().chain(push_headers) {
            headers.retain(|(old, _)| !old.eq_ignore_ascii_case(name));
            headers.push((name.as_str(), value.clone()));
        }
        headers.push(("Iron-Message-Id", id.to_string()));
        headers.push(("Iron-Reservation-Id", rid.to_string()));
        headers.push(("Iron-Subscriber-Name", s.name.clone()));
        headers.push(("Iron-Subscriber-Message-Url", self.message_url(queue, id)));
        self.client
            .post(&s.url, &headers, body.clone(), self.config.timeout)
            .await
    }

    /// The URL a subscriber DELETEs to acknowledge message `id` of `queue`: the
    /// IronMQ v3 message URL (names of the binary protocol's default namespace,
    /// which the HTTP API does not reach, get it under the project `_`).
    fn message_url(&self, queue: &QueueName, id: u64) -> String {
        let (project, local) = queue
            .as_str()
            .split_once('/')
            .unwrap_or(("_", queue.as_str()));
        format!(
            "{}/3/projects/{project}/queues/{local}/messages/{id}",
            self.public_url
        )
    }
}

/// The status of subscriber `s` after a try that got `answer`.
fn tried(
    s: &Subscriber,
    answer: Answer,
    status: &'static str,
    tries: u32,
    retries_remaining: u32,
) -> SubscriberStatus {
    SubscriberStatus {
        name: s.name.clone(),
        url: s.url.clone(),
        status_code: answer.status,
        status,
        tries,
        retries_remaining,
        last_try_at_ms: unix_ms(),
        msg: answer.msg,
    }
}

/// A lease no longer than the longest a reserve or touch may ask for.
fn longest_lease(lease: Duration) -> Duration {
    lease.min(Duration::from_millis(MAX_TIMEOUT_MS))
}

/// How many subscribers one round may try one after the other.
fn sequential_tries(settings: &PushSettings) -> u32 {
    match settings.kind {
        QueueKind::Unicast => u32::try_from(settings.subscribers.len()).unwrap_or(u32::MAX),
        _ => 1,
    }
}
