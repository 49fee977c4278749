//! One binary-protocol request: wire → domain values, the service call, domain →
//! wire, and the choice of error code.
//!
//! **Architecture invariant:** this is where protobuf types and domain types meet
//! for the binary protocol, and where a [`QueueError`] becomes an `ErrorCode`.
//! Limits are not checked here but in the service layer, for both front ends; what
//! stays here are this wire's conventions: zero fields mean "unset" (0 ms of
//! timeout is the queue's default, a reservation id of 0 is none), and the
//! connection's [`Scope`]: every queue a request names (a redrive's target and a
//! dead-letter target included) is checked against it before anything is done,
//! and listings and server stats show only what it covers.

use std::sync::Arc;

use crate::auth::Scope;
use crate::error::QueueError;
use crate::proto::{self, request::Op, response, ErrorCode};
use crate::queue::handle::UpdateError;
use crate::queue::history::{Attempt, Outcome};
use crate::queue::push::{NewSubscriber, PushPatch, PushSettings, QueueKind, SubscribersChange};
use crate::queue::types::{
    priority, DeadLetterPatch, MessageState, MessageView, NewMessage, QueueName, QueueStats,
    SettingsPatch,
};
use crate::service::{FollowUps, Service};

/// Who sends a request: what the connection may reach, and its consumer name.
pub(crate) struct Caller<'a> {
    /// The queues the connection reaches.
    pub(crate) scope: &'a Scope,
    /// Hello's consumer name (delivery history), if any.
    pub(crate) consumer: Option<Arc<str>>,
}

/// Runs one request's operation and returns its result (an error is a result too).
pub(crate) async fn execute(
    service: &Service,
    caller: &Caller<'_>,
    max_frame: usize,
    op: Option<Op>,
) -> response::Result {
    let Some(op) = op else {
        return error(
            ErrorCode::UnknownOperation,
            "the request has no operation this server knows (a newer client?)".into(),
        );
    };
    match run(service, caller, max_frame, op).await {
        Ok(result) => result,
        Err(err) => error(code(&err), err.to_string()),
    }
}

/// The operation's index and name in metrics and logs (the name is the .proto's
/// field name; the index, below [`crate::telemetry::BINARY_OPS`], picks its
/// counters without a lookup).
pub(crate) fn op_label(op: Option<&Op>) -> (usize, &'static str) {
    match op {
        None => (0, "unknown"),
        Some(Op::Hello(_)) => (1, "hello"),
        Some(Op::Push(_)) => (2, "push"),
        Some(Op::Reserve(_)) => (3, "reserve"),
        Some(Op::Delete(_)) => (4, "delete"),
        Some(Op::DeleteBatch(_)) => (5, "delete_batch"),
        Some(Op::Touch(_)) => (6, "touch"),
        Some(Op::Release(_)) => (7, "release"),
        Some(Op::Peek(_)) => (8, "peek"),
        Some(Op::Get(_)) => (9, "get"),
        Some(Op::CreateQueue(_)) => (10, "create_queue"),
        Some(Op::UpdateQueue(_)) => (11, "update_queue"),
        Some(Op::QueueInfo(_)) => (12, "queue_info"),
        Some(Op::ListQueues(_)) => (13, "list_queues"),
        Some(Op::ClearQueue(_)) => (14, "clear_queue"),
        Some(Op::DeleteQueue(_)) => (15, "delete_queue"),
        Some(Op::Redrive(_)) => (16, "redrive"),
        Some(Op::ServerStats(_)) => (17, "server_stats"),
        Some(Op::PushStatuses(_)) => (18, "push_statuses"),
        Some(Op::Health(_)) => (19, "health"),
        Some(Op::ListQueueStats(_)) => (20, "list_queue_stats"),
        Some(Op::HandOff(_)) => (21, "hand_off"),
    }
}

/// The queue a request names (for the log of its error); `None` for the
/// operations on no queue.
pub(crate) fn queue_of(op: Option<&Op>) -> Option<String> {
    let queue = match op? {
        Op::Push(r) => &r.queue,
        Op::Reserve(r) => &r.queue,
        Op::Delete(r) => &r.queue,
        Op::DeleteBatch(r) => &r.queue,
        Op::Touch(r) => &r.queue,
        Op::Release(r) => &r.queue,
        Op::Peek(r) => &r.queue,
        Op::Get(r) => &r.queue,
        Op::CreateQueue(r) => &r.queue,
        Op::UpdateQueue(r) => &r.queue,
        Op::QueueInfo(r) => &r.queue,
        Op::ClearQueue(r) => &r.queue,
        Op::DeleteQueue(r) => &r.queue,
        Op::Redrive(r) => &r.queue,
        Op::PushStatuses(r) => &r.queue,
        Op::HandOff(r) => &r.queue,
        Op::Hello(_)
        | Op::ListQueues(_)
        | Op::ListQueueStats(_)
        | Op::ServerStats(_)
        | Op::Health(_) => return None,
    };
    Some(queue.clone())
}

/// The messages of a push (or a hand-off's target) from the wire, and their push
/// headers.
#[allow(clippy::type_complexity)]
fn new_messages(
    wire: Vec<proto::PushMessage>,
) -> Result<(Vec<NewMessage>, Vec<Vec<(String, String)>>), QueueError> {
    let mut headers = Vec::with_capacity(wire.len());
    let messages = wire
        .into_iter()
        .map(|m| {
            headers.push(pairs(m.push_headers));
            Ok(NewMessage {
                body: m.body,
                delay_ms: m.delay_ms,
                priority: priority(m.priority.map(u64::from))?,
                key: (!m.key.is_empty()).then(|| Arc::from(m.key.as_str())),
            })
        })
        .collect::<Result<_, QueueError>>()?;
    Ok((messages, headers))
}

/// The stable wire code of an error.
pub(crate) fn code(err: &QueueError) -> ErrorCode {
    match err {
        QueueError::InvalidArgument(_) => ErrorCode::InvalidArgument,
        QueueError::QueueNotFound(_) => ErrorCode::QueueNotFound,
        QueueError::QueueExists(_) => ErrorCode::QueueExists,
        QueueError::MessageNotFound(_) => ErrorCode::MessageNotFound,
        QueueError::ReservationExpired(_) => ErrorCode::ReservationExpired,
        QueueError::ReservationMismatch(_) => ErrorCode::ReservationMismatch,
        QueueError::BodyTooLarge { .. } => ErrorCode::BodyTooLarge,
        QueueError::PermissionDenied(_) => ErrorCode::PermissionDenied,
        QueueError::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
        QueueError::Unavailable(_) => ErrorCode::Unavailable,
        QueueError::Internal(_) => ErrorCode::Internal,
    }
}

/// An error result.
pub(crate) fn error(code: ErrorCode, message: String) -> response::Result {
    response::Result::Error(proto::Error {
        code: code.into(),
        message,
    })
}

async fn run(
    service: &Service,
    caller: &Caller<'_>,
    max_frame: usize,
    op: Op,
) -> Result<response::Result, QueueError> {
    let scope = caller.scope;
    // A queue name from the wire, valid and in the connection's scope.
    let named = |text: &str| -> Result<QueueName, QueueError> {
        let name = QueueName::new(text)?;
        scope.check(&name)?;
        Ok(name)
    };
    Ok(match op {
        Op::Hello(_) => response::Result::Hello(proto::HelloOk {
            version: proto::PROTOCOL_VERSION,
            server: concat!("ferromq/", env!("CARGO_PKG_VERSION")).into(),
            max_frame_bytes: u32::try_from(max_frame).unwrap_or(u32::MAX),
            max_body_bytes: u32::try_from(service.max_body()).unwrap_or(u32::MAX),
        }),
        Op::Push(push) => {
            let name = named(&push.queue)?;
            let (messages, headers) = new_messages(push.messages)?;
            response::Result::Push(proto::PushOk {
                ids: service.push_with_headers(&name, messages, headers).await?,
            })
        }
        Op::HandOff(hand_off) => {
            let name = named(&hand_off.queue)?;
            let targets = hand_off
                .targets
                .into_iter()
                .map(|target| {
                    let queue = named(&target.queue)?;
                    let (messages, headers) = new_messages(target.messages)?;
                    Ok(FollowUps {
                        queue,
                        messages,
                        headers,
                    })
                })
                .collect::<Result<Vec<_>, QueueError>>()?;
            let ids = service
                .hand_off(&name, hand_off.message_id, hand_off.reservation_id, targets)
                .await?;
            response::Result::HandedOff(proto::HandedOff {
                targets: ids.into_iter().map(|ids| proto::PushOk { ids }).collect(),
            })
        }
        Op::Reserve(reserve) => {
            let name = named(&reserve.queue)?;
            let messages = service
                .reserve(
                    &name,
                    u64::from(reserve.n),
                    if reserve.auto_timeout {
                        Some(crate::queue::types::AUTO_TIMEOUT_MS)
                    } else {
                        nonzero(reserve.timeout_ms)
                    },
                    reserve.wait_ms,
                    reserve.delete,
                    caller.consumer.clone(),
                )
                .await?;
            messages_result(messages)
        }
        Op::Delete(delete) => {
            let name = named(&delete.queue)?;
            if delete.subscriber_name.is_empty() {
                let entry = (delete.message_id, nonzero(delete.reservation_id));
                deleted(service.delete(&name, vec![entry]).await?)
            } else {
                let done = service
                    .acknowledge(
                        &name,
                        delete.message_id,
                        delete.reservation_id,
                        &delete.subscriber_name,
                    )
                    .await?;
                deleted(usize::from(done))
            }
        }
        Op::DeleteBatch(batch) => {
            let name = named(&batch.queue)?;
            let entries = batch
                .entries
                .iter()
                .map(|e| (e.message_id, nonzero(e.reservation_id)))
                .collect();
            deleted(service.delete(&name, entries).await?)
        }
        Op::Touch(touch) => {
            let name = named(&touch.queue)?;
            let lease = service
                .touch(
                    &name,
                    touch.message_id,
                    touch.reservation_id,
                    nonzero(touch.timeout_ms),
                )
                .await?;
            response::Result::Touched(proto::Touched {
                reservation_id: lease.reservation_id,
                reserved_until_ms: lease.reserved_until_ms,
            })
        }
        Op::Release(release) => {
            let name = named(&release.queue)?;
            service
                .release(
                    &name,
                    release.message_id,
                    release.reservation_id,
                    release.delay_ms,
                )
                .await?;
            response::Result::Ok(proto::Empty {})
        }
        Op::Peek(peek) => {
            let name = named(&peek.queue)?;
            messages_result(service.peek(&name, u64::from(peek.n)).await?)
        }
        Op::Get(get) => {
            let name = named(&get.queue)?;
            response::Result::Message(message_to_proto(service.get(&name, get.message_id).await?))
        }
        Op::CreateQueue(create) => {
            let name = named(&create.queue)?;
            let patch = settings_patch(create.settings.as_ref(), Purpose::Create, scope)?;
            queue_info(flatten(
                service.create_queue(&name, &patch, None::<NoEdit>).await,
            )?)
        }
        Op::UpdateQueue(update) => {
            let name = named(&update.queue)?;
            let patch = settings_patch(update.settings.as_ref(), Purpose::Update, scope)?;
            queue_info(flatten(
                service.update_queue(&name, patch, None::<NoEdit>).await,
            )?)
        }
        Op::QueueInfo(info) => {
            let name = named(&info.queue)?;
            queue_info(service.info(&name).await?)
        }
        Op::ListQueues(list) => {
            let page =
                service.list_queues_in(scope, &list.prefix, &list.cursor, u64::from(list.limit))?;
            response::Result::QueueList(proto::QueueList {
                names: page.names,
                next_cursor: page.next.unwrap_or_default(),
            })
        }
        Op::ClearQueue(clear) => {
            let name = named(&clear.queue)?;
            deleted(service.clear(&name).await?)
        }
        Op::Redrive(redrive) => {
            let name = named(&redrive.queue)?;
            let to = named(&redrive.to_queue)?;
            let count = service.redrive(&name, &to, u64::from(redrive.n)).await?;
            response::Result::Moved(proto::Moved {
                count: u32::try_from(count).unwrap_or(u32::MAX),
            })
        }
        Op::ServerStats(_) => {
            let stats = service.server_stats_in(scope);
            let (flush_s, requests_per_flush) = stats.commit.unwrap_or_default();
            let t = &stats.totals;
            response::Result::ServerStats(proto::ServerStats {
                uptime_ms: stats.uptime_ms,
                queues: stats.queues,
                flushes: stats.flushes,
                fsync: stats.fsync.to_string(),
                version: env!("CARGO_PKG_VERSION").into(),
                connections: stats.connections,
                messages: t.available + t.reserved + t.delayed,
                stored_bytes: t.bytes,
                pushed_total: t.pushed,
                reserved_total: t.reservations,
                deleted_total: t.deleted,
                pushed_per_s: stats.rates.pushed,
                reserved_per_s: stats.rates.reserved,
                deleted_per_s: stats.rates.deleted,
                flush_ms_mean: flush_s * 1000.0,
                requests_per_flush_mean: requests_per_flush,
                data_dir_bytes: stats.data_dir_bytes.unwrap_or(0),
            })
        }
        Op::ListQueueStats(list) => {
            let page = service.queue_figures_in(
                scope,
                &list.prefix,
                &list.cursor,
                u64::from(list.limit),
            )?;
            response::Result::QueueStats(proto::QueueStatsList {
                queues: page
                    .queues
                    .into_iter()
                    .map(|(name, q)| proto::QueueFigures {
                        name,
                        available: q.available,
                        reserved: q.reserved,
                        delayed: q.delayed,
                        stored_bytes: q.bytes,
                        oldest_age_ms: q.oldest_age_ms,
                        pushed_total: q.pushed,
                        reserved_total: q.reservations,
                        deleted_total: q.deleted,
                        released_total: q.released,
                        timed_out_total: q.timed_out,
                        dead_lettered_total: q.dead_lettered,
                        expired_total: q.expired,
                    })
                    .collect(),
                next_cursor: page.next.unwrap_or_default(),
            })
        }
        Op::PushStatuses(request) => {
            let name = named(&request.queue)?;
            let statuses = service.push_statuses(&name, request.message_id).await?;
            response::Result::PushStatuses(proto::PushStatuses {
                subscribers: statuses
                    .into_iter()
                    .map(|s| proto::PushStatus {
                        name: s.name,
                        url: s.url,
                        status_code: u32::from(s.status_code),
                        status: s.status.to_owned(),
                        tries: s.tries,
                        retries_remaining: s.retries_remaining,
                        last_try_at_ms: s.last_try_at_ms,
                        msg: s.msg,
                    })
                    .collect(),
            })
        }
        Op::Health(_) => {
            let health = service.health();
            response::Result::Health(proto::HealthStatus {
                ready: health.ready,
                reasons: health.reasons,
            })
        }
        Op::DeleteQueue(delete) => {
            let name = named(&delete.queue)?;
            service.delete_queue(&name).await?;
            response::Result::Ok(proto::Empty {})
        }
    })
}

/// The binary protocol never edits a queue's attachment (that blob is the HTTP
/// API's).
type NoEdit = fn(&[u8]) -> Result<bytes::Bytes, QueueError>;

/// Without an attachment edit, nothing can refuse an update but the queue.
fn flatten(result: Result<QueueStats, UpdateError<QueueError>>) -> Result<QueueStats, QueueError> {
    result.map_err(|err| match err {
        UpdateError::Queue(err) | UpdateError::Rejected(err) => err,
    })
}

fn nonzero(value: u64) -> Option<u64> {
    (value != 0).then_some(value)
}

/// Which request the settings come with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Create,
    Update,
}

/// Settings from the wire: zero fields are unset (the default in CreateQueue,
/// unchanged in UpdateQueue). A `dead_letter` in CreateQueue needs both its fields
/// (an empty queue means none); in UpdateQueue an empty queue and a zero limit
/// remove the setting, and otherwise its empty or zero part stays as it is. A
/// dead-letter target must be in the connection's scope.
fn settings_patch(
    settings: Option<&proto::QueueSettings>,
    purpose: Purpose,
    scope: &Scope,
) -> Result<SettingsPatch, QueueError> {
    let Some(s) = settings else {
        return Ok(SettingsPatch::default());
    };
    let dead_letter = match &s.dead_letter {
        None => None,
        Some(d)
            if d.queue.is_empty() && (purpose == Purpose::Create || d.max_reservations == 0) =>
        {
            Some(DeadLetterPatch::Remove)
        }
        Some(d) => Some(DeadLetterPatch::Set {
            queue: if d.queue.is_empty() {
                None
            } else {
                let target = QueueName::new(&d.queue)?;
                scope.check(&target)?;
                Some(target)
            },
            max_reservations: match purpose {
                // Checked against 1..=1000 like any other value.
                Purpose::Create => Some(d.max_reservations),
                Purpose::Update => (d.max_reservations != 0).then_some(d.max_reservations),
            },
        }),
    };
    let (kind, push) = match &s.push {
        None => (None, None),
        Some(p) => (Some(p.r#type()), Some(push_patch(p, purpose, scope)?)),
    };
    let kind = match kind {
        None | Some(proto::QueueType::Unspecified) => None,
        Some(proto::QueueType::Pull) => Some(QueueKind::Pull),
        Some(proto::QueueType::Unicast) => Some(QueueKind::Unicast),
        Some(proto::QueueType::Multicast) => Some(QueueKind::Multicast),
    };
    // A type of pull with no other push setting is no push change.
    let push = push.filter(|p| *p != PushPatch::default() || kind != Some(QueueKind::Pull));
    Ok(SettingsPatch {
        message_timeout_ms: nonzero(s.message_timeout_ms),
        message_expiration_s: nonzero(s.message_expiration_s),
        dead_letter,
        kind,
        push,
        delivery_history: s.delivery_history,
        key_max_in_flight: s.key_max_in_flight,
    })
}

/// Headers from the wire.
fn pairs(headers: Vec<proto::Header>) -> Vec<(String, String)> {
    headers.into_iter().map(|h| (h.name, h.value)).collect()
}

/// Subscribers from the wire; a subscriber without a name is named by its URL.
fn subscribers(list: &[proto::Subscriber]) -> Vec<NewSubscriber> {
    list.iter()
        .map(|s| NewSubscriber {
            name: if s.name.is_empty() {
                s.url.clone()
            } else {
                s.name.clone()
            },
            url: s.url.clone(),
            headers: pairs(s.headers.clone()),
        })
        .collect()
}

/// The push part of settings from the wire (see the .proto's PushSettings). An
/// error queue must be in the connection's scope.
fn push_patch(
    p: &proto::PushSettings,
    purpose: Purpose,
    scope: &Scope,
) -> Result<PushPatch, QueueError> {
    let changes = [
        !p.subscribers.is_empty(),
        !p.add_subscribers.is_empty(),
        !p.remove_subscribers.is_empty(),
    ];
    if changes.iter().filter(|&&c| c).count() > 1 {
        return Err(QueueError::invalid(
            "give at most one of subscribers, add_subscribers and remove_subscribers",
        ));
    }
    if purpose == Purpose::Create && (changes[1] || changes[2]) {
        return Err(QueueError::invalid(
            "a new queue takes subscribers, not add_subscribers or remove_subscribers",
        ));
    }
    let subscribers_change = if changes[0] {
        Some(SubscribersChange::Replace(subscribers(&p.subscribers)))
    } else if changes[1] {
        Some(SubscribersChange::Upsert(subscribers(&p.add_subscribers)))
    } else if changes[2] {
        Some(SubscribersChange::Remove(p.remove_subscribers.clone()))
    } else {
        None
    };
    let error_queue = match p.error_queue.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(queue) => {
            let queue = QueueName::new(queue)?;
            scope.check(&queue)?;
            Some(Some(queue))
        }
    };
    Ok(PushPatch {
        subscribers: subscribers_change,
        retries: p.retries,
        retries_delay_s: nonzero(p.retries_delay_s),
        error_queue,
    })
}

/// A queue's push settings on the wire.
fn push_to_proto(push: &PushSettings) -> proto::PushSettings {
    let header = |(name, value): &(String, String)| proto::Header {
        name: name.clone(),
        value: value.clone(),
    };
    proto::PushSettings {
        r#type: match push.kind {
            QueueKind::Pull => proto::QueueType::Pull,
            QueueKind::Unicast => proto::QueueType::Unicast,
            QueueKind::Multicast => proto::QueueType::Multicast,
        }
        .into(),
        subscribers: push
            .subscribers
            .iter()
            .map(|s| proto::Subscriber {
                name: s.name.clone(),
                url: s.url.clone(),
                headers: s.headers.iter().map(header).collect(),
            })
            .collect(),
        retries: Some(push.retries),
        retries_delay_s: push.retries_delay_s,
        error_queue: Some(
            push.error_queue
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
        ),
        add_subscribers: Vec::new(),
        remove_subscribers: Vec::new(),
    }
}

fn deleted(count: usize) -> response::Result {
    response::Result::Deleted(proto::Deleted {
        count: u32::try_from(count).unwrap_or(u32::MAX),
    })
}

fn messages_result(messages: Vec<MessageView>) -> response::Result {
    response::Result::Messages(proto::Messages {
        messages: messages.into_iter().map(message_to_proto).collect(),
    })
}

/// A message on the wire.
fn message_to_proto(m: MessageView) -> proto::Message {
    let info = m.info;
    let state = match info.state {
        MessageState::Available => proto::MessageState::Available,
        MessageState::Delayed => proto::MessageState::Delayed,
        MessageState::Reserved => proto::MessageState::Reserved,
        MessageState::Deleted => proto::MessageState::Deleted,
    };
    proto::Message {
        id: info.id,
        body: m.body,
        reserved_count: info.reserved_count,
        reservation_id: info.reservation_id,
        reserved_until_ms: info.reserved_until_ms,
        pushed_at_ms: info.pushed_at_ms,
        available_at_ms: info.available_at_ms,
        expires_at_ms: info.expires_at_ms,
        state: state.into(),
        priority: u32::from(info.priority),
        history: m.history.iter().map(attempt_to_proto).collect(),
        key: m.key.as_deref().unwrap_or_default().to_owned(),
    }
}

/// A delivery attempt on the wire.
fn attempt_to_proto(a: &Attempt) -> proto::DeliveryAttempt {
    let outcome = match a.outcome {
        Outcome::InProgress => proto::DeliveryOutcome::InProgress,
        Outcome::Released => proto::DeliveryOutcome::Released,
        Outcome::TimedOut => proto::DeliveryOutcome::TimedOut,
        Outcome::DeadLettered => proto::DeliveryOutcome::DeadLettered,
    };
    proto::DeliveryAttempt {
        reservation_id: a.reservation_id,
        consumer: a.consumer.to_string(),
        reserved_at_ms: a.reserved_at_ms,
        ended_at_ms: a.ended_at_ms,
        duration_ms: a.duration_ms(),
        touches: a.touches,
        outcome: outcome.into(),
    }
}

fn queue_info(stats: QueueStats) -> response::Result {
    response::Result::QueueInfo(proto::QueueInfo {
        name: stats.name,
        size: stats.size,
        available: stats.available,
        reserved: stats.reserved,
        delayed: stats.delayed,
        total_pushed: stats.total_pushed,
        settings: Some(proto::QueueSettings {
            message_timeout_ms: stats.settings.message_timeout_ms,
            message_expiration_s: stats.settings.message_expiration_s,
            dead_letter: stats.settings.dead_letter.map(|d| proto::DeadLetter {
                queue: d.queue.to_string(),
                max_reservations: d.max_reservations,
            }),
            push: stats.settings.push.as_ref().map(push_to_proto),
            delivery_history: Some(stats.settings.delivery_history),
            key_max_in_flight: Some(stats.settings.key_max_in_flight),
        }),
        created_at_ms: stats.created_at_ms,
        waiting: stats.waiting,
        bytes: stats.bytes,
        processing_samples: stats.processing.map_or(0, |p| p.samples),
        processing_p50_ms: stats.processing.map_or(0, |p| p.p50_ms),
        processing_p99_ms: stats.processing.map_or(0, |p| p.p99_ms),
        advised_timeout_ms: stats.processing.and_then(|p| p.advised_ms).unwrap_or(0),
        keys: stats.keys,
    })
}
