//! Requests to queue operations: validation, wire → domain conversion and dispatch.
//!
//! **Architecture invariant:** this is the only module where protobuf types and
//! queue-domain types meet. Every limit of semantics.md is checked here, before
//! anything reaches an actor, and every failure becomes an `Error{code, message}`.

use crate::error::QueueError;
use crate::proto::{self, request::Op, response};
use crate::queue::types::{
    check_range, DeadLetter, MessageState, MessageView, NewMessage, QueueName, QueueStats,
    SettingsPatch, MAX_BATCH, MAX_DELAY_MS, MAX_TIMEOUT_MS, MAX_WAIT_MS, MIN_TIMEOUT_MS,
};
use crate::registry::Registry;

/// What a request needs from the server.
pub struct Context {
    /// Every queue.
    pub registry: Registry,
    /// Largest body accepted.
    pub max_body: usize,
    /// Largest frame.
    pub max_frame: usize,
    /// When the server started.
    pub started: std::time::Instant,
}

/// Runs one request's operation and returns its result (an error is a result too).
pub async fn execute(ctx: &Context, op: Option<Op>) -> response::Result {
    let Some(op) = op else {
        return error(
            proto::ErrorCode::UnknownOperation,
            "the request has no operation this server knows (a newer client?)".into(),
        );
    };
    match run(ctx, op).await {
        Ok(result) => result,
        Err(err) => error(err.code(), err.to_string()),
    }
}

/// An error result.
pub fn error(code: proto::ErrorCode, message: String) -> response::Result {
    response::Result::Error(proto::Error {
        code: code.into(),
        message,
    })
}

/// The answer to Hello: the version this server speaks and its limits.
pub fn hello_ok(ctx: &Context) -> response::Result {
    response::Result::Hello(proto::HelloOk {
        version: proto::PROTOCOL_VERSION,
        server: concat!("ferromq/", env!("CARGO_PKG_VERSION")).into(),
        max_frame_bytes: u32::try_from(ctx.max_frame).unwrap_or(u32::MAX),
        max_body_bytes: u32::try_from(ctx.max_body).unwrap_or(u32::MAX),
    })
}

async fn run(ctx: &Context, op: Op) -> Result<response::Result, QueueError> {
    let registry = &ctx.registry;
    Ok(match op {
        Op::Hello(_) => hello_ok(ctx),
        Op::Push(push) => {
            let name = QueueName::new(&push.queue)?;
            let messages = new_messages(push.messages, ctx.max_body)?;
            response::Result::Push(proto::PushOk {
                ids: push_to(registry, &name, messages).await?,
            })
        }
        Op::Reserve(reserve) => {
            let name = QueueName::new(&reserve.queue)?;
            let n = batch_size("n", reserve.n)?;
            let timeout_ms = lease_timeout(reserve.timeout_ms)?;
            check_range("wait_ms", reserve.wait_ms, 0, MAX_WAIT_MS)?;
            let messages = registry
                .get(&name)?
                .reserve(n, timeout_ms, reserve.wait_ms, reserve.delete)
                .await?;
            messages_result(messages)
        }
        Op::Delete(delete) => {
            let name = QueueName::new(&delete.queue)?;
            let entry = (delete.message_id, nonzero(delete.reservation_id));
            let count = registry.get(&name)?.delete(vec![entry]).await?;
            deleted(count)
        }
        Op::DeleteBatch(batch) => {
            let name = QueueName::new(&batch.queue)?;
            if batch.entries.is_empty() || batch.entries.len() > MAX_BATCH {
                return Err(QueueError::invalid(format!(
                    "delete_batch has {} entries; 1..={MAX_BATCH} are allowed",
                    batch.entries.len()
                )));
            }
            let entries = batch
                .entries
                .iter()
                .map(|e| (e.message_id, nonzero(e.reservation_id)))
                .collect();
            let count = registry.get(&name)?.delete(entries).await?;
            deleted(count)
        }
        Op::Touch(touch) => {
            let name = QueueName::new(&touch.queue)?;
            let timeout_ms = lease_timeout(touch.timeout_ms)?;
            let lease = registry
                .get(&name)?
                .touch(touch.message_id, touch.reservation_id, timeout_ms)
                .await?;
            response::Result::Touched(proto::Touched {
                reservation_id: lease.reservation_id,
                reserved_until_ms: lease.reserved_until_ms,
            })
        }
        Op::Release(release) => {
            let name = QueueName::new(&release.queue)?;
            check_range("delay_ms", release.delay_ms, 0, MAX_DELAY_MS)?;
            registry
                .get(&name)?
                .release(release.message_id, release.reservation_id, release.delay_ms)
                .await?;
            response::Result::Ok(proto::Empty {})
        }
        Op::Peek(peek) => {
            let name = QueueName::new(&peek.queue)?;
            let n = batch_size("n", peek.n)?;
            messages_result(registry.get(&name)?.peek(n).await?)
        }
        Op::Get(get) => {
            let name = QueueName::new(&get.queue)?;
            let message = registry.get(&name)?.get(get.message_id).await?;
            response::Result::Message(message_to_proto(message))
        }
        Op::CreateQueue(create) => {
            let name = QueueName::new(&create.queue)?;
            let patch = settings_patch(create.settings.as_ref())?;
            patch.validate_for(&name)?;
            let handle = registry.create(&name, patch.apply(&Default::default()))?;
            registry.store().commit().wait().await?;
            queue_info(handle.info().await?)
        }
        Op::UpdateQueue(update) => {
            let name = QueueName::new(&update.queue)?;
            let patch = settings_patch(update.settings.as_ref())?;
            patch.validate_for(&name)?;
            queue_info(registry.get(&name)?.update(patch).await?)
        }
        Op::QueueInfo(info) => {
            let name = QueueName::new(&info.queue)?;
            queue_info(registry.get(&name)?.info().await?)
        }
        Op::ListQueues(list) => {
            let limit = match list.limit {
                0 => MAX_BATCH,
                n => batch_size("limit", n)?,
            };
            let (names, next) = registry.list(&list.prefix, &list.cursor, limit);
            response::Result::QueueList(proto::QueueList {
                names,
                next_cursor: next.unwrap_or_default(),
            })
        }
        Op::ClearQueue(clear) => {
            let name = QueueName::new(&clear.queue)?;
            deleted(registry.get(&name)?.clear().await?)
        }
        Op::Redrive(redrive) => {
            let name = QueueName::new(&redrive.queue)?;
            let to = QueueName::new(&redrive.to_queue)?;
            let n = batch_size("n", redrive.n)?;
            let count = registry.get(&name)?.redrive(to, n).await?;
            response::Result::Moved(proto::Moved {
                count: u32::try_from(count).unwrap_or(u32::MAX),
            })
        }
        Op::ServerStats(_) => {
            let store = registry.store();
            response::Result::ServerStats(proto::ServerStats {
                uptime_ms: u64::try_from(ctx.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                queues: u64::try_from(registry.len()).unwrap_or(u64::MAX),
                flushes: store.flushes(),
                fsync: store.fsync_mode().to_string(),
            })
        }
        Op::DeleteQueue(delete) => {
            let name = QueueName::new(&delete.queue)?;
            registry.delete(&name).await?;
            response::Result::Ok(proto::Empty {})
        }
    })
}

/// Pushes to `name`, creating it if needed. If the queue is deleted between the
/// lookup and the push, the push goes to a newly created queue of that name.
pub async fn push_to(
    registry: &Registry,
    name: &QueueName,
    messages: Vec<NewMessage>,
) -> Result<Vec<u64>, QueueError> {
    let handle = registry.get_or_create(name)?;
    match handle.push(messages.clone()).await {
        Err(QueueError::QueueNotFound(_)) if handle.is_closed() => {
            registry.get_or_create(name)?.push(messages).await
        }
        other => other,
    }
}

/// Validates pushed messages: count, body sizes and delays.
fn new_messages(
    messages: Vec<proto::PushMessage>,
    max_body: usize,
) -> Result<Vec<NewMessage>, QueueError> {
    if messages.is_empty() || messages.len() > MAX_BATCH {
        return Err(QueueError::invalid(format!(
            "push has {} messages; 1..={MAX_BATCH} are allowed",
            messages.len()
        )));
    }
    messages
        .into_iter()
        .map(|m| {
            if m.body.len() > max_body {
                return Err(QueueError::BodyTooLarge {
                    len: m.body.len(),
                    max: max_body,
                });
            }
            check_range("delay_ms", m.delay_ms, 0, MAX_DELAY_MS)?;
            Ok(NewMessage {
                body: m.body,
                delay_ms: m.delay_ms,
            })
        })
        .collect()
}

/// `n` of reserve/peek/list: 0 means 1 (the protobuf default), else 1..=100.
fn batch_size(field: &str, n: u32) -> Result<usize, QueueError> {
    let n = u64::from(n.max(1));
    check_range(field, n, 1, MAX_BATCH as u64)?;
    usize::try_from(n).map_err(|_| QueueError::invalid(format!("{field} is too large")))
}

/// A lease length: 0 means the queue's default, else 100 ms..=24 h.
fn lease_timeout(timeout_ms: u64) -> Result<Option<u64>, QueueError> {
    if timeout_ms == 0 {
        return Ok(None);
    }
    check_range("timeout_ms", timeout_ms, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS)?;
    Ok(Some(timeout_ms))
}

fn nonzero(value: u64) -> Option<u64> {
    (value != 0).then_some(value)
}

/// Settings from the wire: zero fields are unset; a dead_letter with an empty queue
/// name removes the setting. The caller validates the patch for its queue.
fn settings_patch(settings: Option<&proto::QueueSettings>) -> Result<SettingsPatch, QueueError> {
    let Some(s) = settings else {
        return Ok(SettingsPatch::default());
    };
    let dead_letter = match &s.dead_letter {
        None => None,
        Some(d) if d.queue.is_empty() => Some(None),
        Some(d) => Some(Some(DeadLetter {
            queue: QueueName::new(&d.queue)?,
            max_reservations: d.max_reservations,
        })),
    };
    let patch = SettingsPatch {
        message_timeout_ms: nonzero(s.message_timeout_ms),
        message_expiration_s: nonzero(s.message_expiration_s),
        dead_letter,
        alerts: None,
    };
    Ok(patch)
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

/// A message view on the wire.
pub fn message_to_proto(m: MessageView) -> proto::Message {
    let state = match m.state {
        MessageState::Available => proto::MessageState::Available,
        MessageState::Delayed => proto::MessageState::Delayed,
        MessageState::Reserved => proto::MessageState::Reserved,
    };
    proto::Message {
        id: m.id,
        body: m.body,
        reserved_count: m.reserved_count,
        reservation_id: m.reservation_id,
        reserved_until_ms: m.reserved_until_ms,
        pushed_at_ms: m.pushed_at_ms,
        available_at_ms: m.available_at_ms,
        expires_at_ms: m.expires_at_ms,
        state: state.into(),
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
        }),
        created_at_ms: stats.created_at_ms,
        waiting: stats.waiting,
    })
}
