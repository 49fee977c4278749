//! Domain types of the queue layer: validated queue names, settings, the limits of
//! [semantics.md](../../docs/semantics.md), and the views of messages and queues
//! that operations return. Front ends convert their wire types to and from these;
//! the service layer (`service.rs`) checks requests against the limits here, so
//! every limit is defined once.

use std::sync::Arc;

use bytes::Bytes;

#[cfg(doc)]
use super::history::Outcome;
use super::history::{Attempt, DEFAULT_DELIVERY_HISTORY, MAX_DELIVERY_HISTORY};
use super::push::{PushPatch, PushSettings, QueueKind};
use crate::error::QueueError;

/// Most messages in one push, one reserve, one peek, one batch delete, one redrive
/// or one page of a queue list.
pub const MAX_BATCH: usize = 100;
/// Longest push or release delay: 7 days.
pub const MAX_DELAY_MS: u64 = 7 * 24 * 3600 * 1000;
/// Shortest lease (binary protocol precision).
pub const MIN_TIMEOUT_MS: u64 = 100;
/// Longest lease: 24 hours.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// A reserve's (or touch's) `timeout_ms` that asks for lease advice: the
/// queue's processing times decide (`lease.rs`). Never a lease itself (those
/// are at most [`MAX_TIMEOUT_MS`]); only the front ends make it, from an
/// explicit `auto`.
pub const AUTO_TIMEOUT_MS: u64 = u64::MAX;
/// Longest long-poll wait: 30 s.
pub const MAX_WAIT_MS: u64 = 30_000;
/// Default lease length (IronMQ's `timeout` default).
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// Default expiration: 7 days.
pub const DEFAULT_EXPIRATION_S: u64 = 7 * 24 * 3600;
/// Shortest allowed `message_expiration` (IronMQ's clients send small values).
pub const MIN_EXPIRATION_S: u64 = 1;
/// Longest allowed `message_expiration`: 30 days, as IronMQ v3.
pub const MAX_EXPIRATION_S: u64 = 30 * 24 * 3600;
/// Priorities run `0..=MAX_PRIORITY`, lower first (beanstalkd's way round).
pub const MAX_PRIORITY: u8 = 15;
/// A message's priority when its push names none: the middle, so there is room
/// both ways.
pub const DEFAULT_PRIORITY: u8 = 8;
/// The highest `key_max_in_flight` a queue may set.
pub const MAX_KEY_MAX_IN_FLIGHT: u32 = 10_000;
/// Longest queue name in bytes.
pub const MAX_QUEUE_NAME: usize = 128;
/// Most reservations a dead-letter setting may allow.
pub const MAX_MAX_RESERVATIONS: u32 = 1000;
/// `max_reservations` of a new dead-letter setting that names none (IronMQ's).
pub const DEFAULT_MAX_RESERVATIONS: u32 = 10;

/// A queue name: 1..=128 bytes of `[A-Za-z0-9._-]`, optionally qualified by a
/// project as `project/name` (both parts non-empty, same characters). Projects are
/// namespaces: `p1/jobs` and `p2/jobs` are two queues, and an unqualified `jobs` is a
/// third (the binary protocol's default namespace). The HTTP API always qualifies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueName(String);

impl QueueName {
    /// Validates `name`.
    ///
    /// # Errors
    /// [`QueueError::InvalidArgument`] naming the rule that failed.
    pub fn new(name: &str) -> Result<Self, QueueError> {
        if name.is_empty() {
            return Err(QueueError::invalid("queue name is empty"));
        }
        if name.len() > MAX_QUEUE_NAME {
            return Err(QueueError::invalid(format!(
                "queue name is {} bytes, the limit is {MAX_QUEUE_NAME}",
                name.len()
            )));
        }
        let (project, local) = match name.split_once('/') {
            Some((project, local)) => (Some(project), local),
            None => (None, name),
        };
        for part in project.into_iter().chain([local]) {
            if part.is_empty() {
                return Err(QueueError::invalid(format!(
                    "queue name {name:?}: project and name around '/' must both be non-empty"
                )));
            }
            if let Some(bad) = part
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            {
                return Err(QueueError::invalid(format!(
                    "queue name {name:?} has the character {bad:?}; allowed are A-Z a-z 0-9 . _ - \
                     (and one '/' after a project id)"
                )));
            }
        }
        Ok(QueueName(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The project of a qualified name (`p1` of `p1/jobs`); `None` for a name of
    /// the default namespace.
    pub fn project(&self) -> Option<&str> {
        self.0.split_once('/').map(|(project, _)| project)
    }
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where messages reserved too often go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead-letter queue.
    pub queue: QueueName,
    /// A message whose reserved_count has reached this is moved on its next reserve.
    pub max_reservations: u32,
}

/// A queue's settings, always complete (defaults filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Default lease length of reserve and touch.
    pub message_timeout_ms: u64,
    /// Seconds from push until a message is removed, whatever its state.
    pub message_expiration_s: u64,
    /// The dead-letter setting, if any (pull queues only).
    pub dead_letter: Option<DeadLetter>,
    /// A push queue's settings; `None` for a pull queue. Set at creation only.
    pub push: Option<PushSettings>,
    /// Delivery attempts kept per message (`history.rs`), 0..=100; 0 keeps none.
    pub delivery_history: u32,
    /// Most messages of one dispatch key in flight at once (`fair.rs`),
    /// 0..=10000; 0: no cap.
    pub key_max_in_flight: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            message_timeout_ms: DEFAULT_TIMEOUT_MS,
            message_expiration_s: DEFAULT_EXPIRATION_S,
            dead_letter: None,
            push: None,
            delivery_history: DEFAULT_DELIVERY_HISTORY,
            key_max_in_flight: 0,
        }
    }
}

impl QueueSettings {
    /// The expiration in milliseconds (saturating: a value read from a damaged
    /// record must not overflow).
    pub fn expiration_ms(&self) -> u64 {
        self.message_expiration_s.saturating_mul(1000)
    }

    /// Pull, unicast or multicast.
    pub fn kind(&self) -> QueueKind {
        self.push.as_ref().map_or(QueueKind::Pull, |p| p.kind)
    }
}

/// A change to the dead-letter setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterPatch {
    /// No dead-letter queue any more.
    Remove,
    /// Set the queue and/or the limit; a part left `None` stays as it is (a new
    /// setting without a limit gets [`DEFAULT_MAX_RESERVATIONS`]).
    Set {
        /// The new dead-letter queue.
        queue: Option<QueueName>,
        /// The new limit.
        max_reservations: Option<u32>,
    },
}

/// A change to settings: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    /// New default lease length.
    pub message_timeout_ms: Option<u64>,
    /// New expiration, for messages pushed afterwards.
    pub message_expiration_s: Option<u64>,
    /// A change to the dead-letter setting.
    pub dead_letter: Option<DeadLetterPatch>,
    /// The queue's type: taken by a creation, and on an update only if it is the
    /// type the queue has (a type never changes).
    pub kind: Option<QueueKind>,
    /// A change to the push settings (push queues only).
    pub push: Option<PushPatch>,
    /// New number of delivery attempts kept per message.
    pub delivery_history: Option<u32>,
    /// New cap of messages in flight per dispatch key (0: none).
    pub key_max_in_flight: Option<u32>,
}

impl SettingsPatch {
    /// `base` with this patch applied, checked for the queue `name`.
    ///
    /// # Errors
    /// [`QueueError::InvalidArgument`] for a field out of range, a queue as its own
    /// dead-letter queue, or a new limit without a dead-letter queue to apply it to.
    pub fn apply(
        &self,
        name: &QueueName,
        base: &QueueSettings,
    ) -> Result<QueueSettings, QueueError> {
        self.apply_as(name, base, base.kind())
    }

    /// The settings of a new queue `name`: the defaults with this patch applied.
    /// The patch's `kind` decides the type; without one, a patch with push
    /// settings makes a multicast queue (IronMQ's default), else a pull queue.
    ///
    /// # Errors
    /// As [`SettingsPatch::apply`].
    pub fn create(&self, name: &QueueName) -> Result<QueueSettings, QueueError> {
        let kind = self.kind.unwrap_or(if self.push.is_some() {
            QueueKind::Multicast
        } else {
            QueueKind::Pull
        });
        self.apply_as(name, &QueueSettings::default(), kind)
    }

    fn apply_as(
        &self,
        name: &QueueName,
        base: &QueueSettings,
        kind: QueueKind,
    ) -> Result<QueueSettings, QueueError> {
        if self.kind.is_some_and(|k| k != kind) {
            return Err(QueueError::invalid(format!(
                "queue {name} is a {} queue: a queue's type cannot be changed",
                kind.as_str()
            )));
        }
        let push = match (kind, &self.push) {
            (QueueKind::Pull, None) => None,
            (QueueKind::Pull, Some(_)) => {
                return Err(QueueError::invalid(format!(
                    "queue {name} is a pull queue: push settings and subscribers are for \
                     push queues (a queue's type cannot be changed)"
                )))
            }
            (kind, patch) => Some(patch.clone().unwrap_or_default().apply(
                name,
                kind,
                base.push.as_ref(),
            )?),
        };
        if let Some(t) = self.message_timeout_ms {
            check_range("message_timeout_ms", t, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS)?;
        }
        if let Some(cap) = self.key_max_in_flight {
            check_range(
                "key_max_in_flight",
                u64::from(cap),
                0,
                u64::from(MAX_KEY_MAX_IN_FLIGHT),
            )?;
        }
        if let Some(k) = self.delivery_history {
            check_range(
                "delivery_history",
                u64::from(k),
                0,
                u64::from(MAX_DELIVERY_HISTORY),
            )?;
        }
        if let Some(e) = self.message_expiration_s {
            check_range(
                "message_expiration_s",
                e,
                MIN_EXPIRATION_S,
                MAX_EXPIRATION_S,
            )?;
        }
        let dead_letter = match &self.dead_letter {
            None => base.dead_letter.clone(),
            Some(DeadLetterPatch::Remove) => None,
            Some(DeadLetterPatch::Set {
                queue,
                max_reservations,
            }) => {
                let current = base.dead_letter.as_ref();
                let Some(queue) = queue.clone().or_else(|| current.map(|d| d.queue.clone())) else {
                    return Err(QueueError::invalid(format!(
                        "queue {name} has no dead-letter queue to change max_reservations of; \
                         name one"
                    )));
                };
                let max_reservations = max_reservations
                    .or(current.map(|d| d.max_reservations))
                    .unwrap_or(DEFAULT_MAX_RESERVATIONS);
                check_range(
                    "dead_letter.max_reservations",
                    u64::from(max_reservations),
                    1,
                    u64::from(MAX_MAX_RESERVATIONS),
                )?;
                if queue == *name {
                    return Err(QueueError::invalid(format!(
                        "queue {name} cannot be its own dead-letter queue"
                    )));
                }
                Some(DeadLetter {
                    queue,
                    max_reservations,
                })
            }
        };
        if push.is_some() && dead_letter.is_some() {
            return Err(QueueError::invalid(format!(
                "queue {name} is a push queue: dead-letter settings are for pull queues \
                 (a push queue gives up messages to its error_queue)"
            )));
        }
        Ok(QueueSettings {
            message_timeout_ms: self.message_timeout_ms.unwrap_or(base.message_timeout_ms),
            message_expiration_s: self
                .message_expiration_s
                .unwrap_or(base.message_expiration_s),
            dead_letter,
            push,
            delivery_history: self.delivery_history.unwrap_or(base.delivery_history),
            key_max_in_flight: self.key_max_in_flight.unwrap_or(base.key_max_in_flight),
        })
    }
}

/// Fails with a clear message unless `min <= value <= max`.
///
/// # Errors
/// [`QueueError::InvalidArgument`] naming the field and its range.
pub fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), QueueError> {
    if value < min || value > max {
        return Err(QueueError::invalid(format!(
            "{field} = {value} is out of range {min}..={max}"
        )));
    }
    Ok(())
}

/// A priority as a front end received it, checked: 0..=[`MAX_PRIORITY`];
/// `None` is [`DEFAULT_PRIORITY`].
///
/// # Errors
/// [`QueueError::InvalidArgument`] naming the range.
pub fn priority(value: Option<u64>) -> Result<u8, QueueError> {
    let Some(value) = value else {
        return Ok(DEFAULT_PRIORITY);
    };
    check_range("priority", value, 0, u64::from(MAX_PRIORITY))?;
    Ok(u8::try_from(value).unwrap_or(MAX_PRIORITY))
}

/// One message to push.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The payload; never interpreted.
    pub body: Bytes,
    /// 0..=[`MAX_DELAY_MS`]: the message is DELAYED until then.
    pub delay_ms: u64,
    /// 0..=[`MAX_PRIORITY`], lower first; [`DEFAULT_PRIORITY`] unless asked.
    pub priority: u8,
    /// Its dispatch key (`fair.rs`), if any: checked by the service layer.
    pub key: Option<Arc<str>>,
}

/// The state of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    /// Can be reserved.
    Available,
    /// Pushed or released with a delay that has not passed yet.
    Delayed,
    /// Leased to a consumer.
    Reserved,
    /// Handed out by a reserve with `delete`: the message is gone.
    Deleted,
}

/// A message as an operation returns it, without its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageInfo {
    /// Unique on this server, never reused.
    pub id: u64,
    /// Times reserved, including the current reservation.
    pub reserved_count: u32,
    /// The fencing token; only in reserve responses, else 0.
    pub reservation_id: u64,
    /// The lease deadline when RESERVED, else 0.
    pub reserved_until_ms: u64,
    /// When it was pushed.
    pub pushed_at_ms: u64,
    /// When a DELAYED message becomes AVAILABLE, else 0.
    pub available_at_ms: u64,
    /// When it expires.
    pub expires_at_ms: u64,
    /// Its state at the time of the response.
    pub state: MessageState,
    /// Push queues: the subscriber slots it was delivered to (`push.rs`).
    pub push_done: u64,
    /// Its priority, 0..=[`MAX_PRIORITY`] (lower first).
    pub priority: u8,
}

/// A message with its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    /// Everything but the body.
    pub info: MessageInfo,
    /// The payload.
    pub body: Bytes,
    /// Its delivery attempts, oldest first (`history.rs`); only `get` fills
    /// it in, with the attempt under way last ([`Outcome::InProgress`]).
    pub history: Vec<Attempt>,
    /// Its dispatch key, if any.
    pub key: Option<Arc<str>>,
}

impl MessageView {
    /// A view without history or key.
    pub fn new(info: MessageInfo, body: Bytes) -> Self {
        MessageView {
            info,
            body,
            history: Vec::new(),
            key: None,
        }
    }
}

/// The counters and settings of a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// The queue's name.
    pub name: String,
    /// available + delayed + reserved.
    pub size: u64,
    /// AVAILABLE messages.
    pub available: u64,
    /// RESERVED messages.
    pub reserved: u64,
    /// DELAYED messages.
    pub delayed: u64,
    /// Messages ever pushed; only grows while the queue exists.
    pub total_pushed: u64,
    /// Current settings.
    pub settings: QueueSettings,
    /// When the queue was created.
    pub created_at_ms: u64,
    /// Long-poll reserves waiting for a message.
    pub waiting: u64,
    /// Bytes of bodies the queue's stored batches hold (what the byte limits
    /// count; see `QueueState::bytes`).
    pub bytes: u64,
    /// The blob a front end keeps with the queue (the HTTP API's alerts).
    pub attachment: Bytes,
    /// How long consumers held its messages, reserve to delete (`lease.rs`);
    /// `None` before the first such delete.
    pub processing: Option<super::lease::ProcessingSummary>,
    /// Dispatch keys with a message in the queue (`fair.rs`).
    pub keys: u64,
}

/// A new lease from touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The new fencing token; the previous one is no longer valid.
    pub reservation_id: u64,
    /// The new deadline.
    pub reserved_until_ms: u64,
}

/// A message moving from one queue to another (dead-lettering, redrive).
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Its id, kept in the target queue.
    pub id: u64,
    /// Its body.
    pub body: Bytes,
    /// Its reserved_count in the target queue (kept for dead letters, 0 for redrive).
    pub reserved_count: u32,
    /// Its priority, kept in the target queue.
    pub priority: u8,
    /// Its delivery history, kept in the target queue (`history.rs`).
    pub history: Vec<Attempt>,
    /// Its dispatch key, kept in the target queue.
    pub key: Option<Arc<str>>,
}

/// The message a hand-off's follow-ups replace (`state/hand_off.rs`): its queue
/// and id. Message ids are never reused, so once that message is gone from that
/// queue it never comes back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// The queue it is in.
    pub queue: QueueName,
    /// Its id.
    pub id: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> QueueName {
        QueueName::new(text).unwrap()
    }

    #[test]
    fn should_accept_names_of_the_allowed_alphabet() {
        assert!(QueueName::new("jobs.high_prio-2").is_ok());
        assert!(QueueName::new(&"a".repeat(128)).is_ok());
        assert!(QueueName::new("000000000000000000000001/jobs").is_ok());
    }

    #[test]
    fn should_reject_empty_long_and_odd_names() {
        assert!(QueueName::new("").is_err());
        assert!(QueueName::new(&"a".repeat(129)).is_err());
        assert!(QueueName::new("a//b").is_err());
        assert!(QueueName::new("a/b/c").is_err());
        assert!(QueueName::new("/b").is_err());
        assert!(QueueName::new("a/").is_err());
        assert!(QueueName::new("a b").is_err());
        assert!(QueueName::new("é").is_err());
    }

    #[test]
    fn should_apply_only_the_fields_a_patch_sets() {
        let patch = SettingsPatch {
            message_timeout_ms: Some(5_000),
            ..SettingsPatch::default()
        };
        let s = patch.apply(&name("q"), &QueueSettings::default()).unwrap();
        assert_eq!(s.message_timeout_ms, 5_000);
        assert_eq!(s.message_expiration_s, DEFAULT_EXPIRATION_S);
    }

    #[test]
    fn should_reject_settings_out_of_range() {
        let patch = SettingsPatch {
            message_timeout_ms: Some(99),
            ..SettingsPatch::default()
        };
        assert!(patch.apply(&name("q"), &QueueSettings::default()).is_err());
    }

    #[test]
    fn should_refuse_a_queue_as_its_own_dead_letter_queue() {
        let jobs = name("jobs");
        let dead_letter = |queue: &str, max| SettingsPatch {
            dead_letter: Some(DeadLetterPatch::Set {
                queue: Some(name(queue)),
                max_reservations: Some(max),
            }),
            ..SettingsPatch::default()
        };
        let base = QueueSettings::default();
        assert!(dead_letter("jobs", 3).apply(&jobs, &base).is_err());
        assert!(dead_letter("dlq", 0).apply(&jobs, &base).is_err());
        assert!(dead_letter("dlq", 1001).apply(&jobs, &base).is_err());
        assert!(dead_letter("dlq", 1000).apply(&jobs, &base).is_ok());
    }

    #[test]
    fn should_change_one_part_of_the_dead_letter_setting_and_keep_the_other() {
        let jobs = name("jobs");
        let base = SettingsPatch {
            dead_letter: Some(DeadLetterPatch::Set {
                queue: Some(name("dlq")),
                max_reservations: Some(3),
            }),
            ..SettingsPatch::default()
        }
        .apply(&jobs, &QueueSettings::default())
        .unwrap();
        let only_limit = SettingsPatch {
            dead_letter: Some(DeadLetterPatch::Set {
                queue: None,
                max_reservations: Some(7),
            }),
            ..SettingsPatch::default()
        };
        let changed = only_limit.apply(&jobs, &base).unwrap().dead_letter.unwrap();
        assert_eq!(
            (changed.queue.as_str(), changed.max_reservations),
            ("dlq", 7)
        );
        let only_queue = SettingsPatch {
            dead_letter: Some(DeadLetterPatch::Set {
                queue: Some(name("other")),
                max_reservations: None,
            }),
            ..SettingsPatch::default()
        };
        let moved = only_queue.apply(&jobs, &base).unwrap().dead_letter.unwrap();
        assert_eq!((moved.queue.as_str(), moved.max_reservations), ("other", 3));
        let fresh = only_queue
            .apply(&jobs, &QueueSettings::default())
            .unwrap()
            .dead_letter
            .unwrap();
        assert_eq!(fresh.max_reservations, DEFAULT_MAX_RESERVATIONS);
        assert!(
            only_limit.apply(&jobs, &QueueSettings::default()).is_err(),
            "a limit with no dead-letter queue to apply it to"
        );
    }
}
