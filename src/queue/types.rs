//! Domain types of the queue layer: validated queue names, settings, the limits of
//! semantics.md, and the views of messages and queues that operations return.
//! Wire types are converted to and from these in `command.rs` only.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::error::QueueError;

/// Most messages in one push, one reserve, one peek or one batch delete.
pub const MAX_BATCH: usize = 100;
/// Longest push or release delay: 7 days.
pub const MAX_DELAY_MS: u64 = 7 * 24 * 3600 * 1000;
/// Shortest lease (binary protocol precision).
pub const MIN_TIMEOUT_MS: u64 = 100;
/// Longest lease: 24 hours.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
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
/// Longest queue name in bytes.
pub const MAX_QUEUE_NAME: usize = 128;

/// Milliseconds since the Unix epoch, the clock of every persisted time.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

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
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Most reservations a dead-letter setting may allow.
pub const MAX_MAX_RESERVATIONS: u32 = 1000;

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
    /// The dead-letter setting, if any.
    pub dead_letter: Option<DeadLetter>,
    /// IronMQ queue alerts: stored and shown, not fired (see `http.rs`).
    pub alerts: Vec<Alert>,
}

/// Most alerts per queue.
pub const MAX_ALERTS: usize = 5;

/// An IronMQ queue alert (a legacy feature of the HTTP API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Server-assigned id.
    pub id: String,
    /// `fixed` or `progressive`.
    pub progressive: bool,
    /// Queue size that triggers it, > 0.
    pub trigger: u64,
    /// `asc` (size rising) or `desc`.
    pub descending: bool,
    /// Name of the queue the alert would post to (in the same project).
    pub queue: String,
    /// Seconds between two firings.
    pub snooze: u64,
}

impl Alert {
    /// Whether two alerts are the same rule (IronMQ refuses such a duplicate).
    pub fn same_rule(&self, other: &Alert) -> bool {
        self.progressive == other.progressive
            && self.descending == other.descending
            && self.trigger == other.trigger
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            message_timeout_ms: DEFAULT_TIMEOUT_MS,
            message_expiration_s: DEFAULT_EXPIRATION_S,
            dead_letter: None,
            alerts: Vec::new(),
        }
    }
}

/// A change to settings: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    /// New default lease length.
    pub message_timeout_ms: Option<u64>,
    /// New expiration, for messages pushed afterwards.
    pub message_expiration_s: Option<u64>,
    /// `Some(None)` removes the dead-letter setting.
    pub dead_letter: Option<Option<DeadLetter>>,
    /// The new, complete list of alerts.
    pub alerts: Option<Vec<Alert>>,
}

impl SettingsPatch {
    /// Checks the ranges of the fields that are set.
    ///
    /// # Errors
    /// [`QueueError::InvalidArgument`] for a field out of range.
    pub fn validate(&self) -> Result<(), QueueError> {
        if let Some(t) = self.message_timeout_ms {
            check_range("message_timeout_ms", t, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS)?;
        }
        if let Some(e) = self.message_expiration_s {
            check_range(
                "message_expiration_s",
                e,
                MIN_EXPIRATION_S,
                MAX_EXPIRATION_S,
            )?;
        }
        if let Some(Some(dead_letter)) = &self.dead_letter {
            check_range(
                "dead_letter.max_reservations",
                u64::from(dead_letter.max_reservations),
                1,
                u64::from(MAX_MAX_RESERVATIONS),
            )?;
        }
        if let Some(alerts) = &self.alerts {
            if alerts.len() > MAX_ALERTS {
                return Err(QueueError::invalid(format!(
                    "{} alerts; at most {MAX_ALERTS} per queue",
                    alerts.len()
                )));
            }
        }
        Ok(())
    }

    /// Checks the patch for the queue `name` (a queue cannot be its own dead-letter
    /// queue).
    ///
    /// # Errors
    /// [`QueueError::InvalidArgument`].
    pub fn validate_for(&self, name: &QueueName) -> Result<(), QueueError> {
        self.validate()?;
        if let Some(Some(dead_letter)) = &self.dead_letter {
            if dead_letter.queue == *name {
                return Err(QueueError::invalid(format!(
                    "queue {name} cannot be its own dead-letter queue"
                )));
            }
        }
        Ok(())
    }

    /// `base` with this patch applied.
    pub fn apply(&self, base: &QueueSettings) -> QueueSettings {
        QueueSettings {
            message_timeout_ms: self.message_timeout_ms.unwrap_or(base.message_timeout_ms),
            message_expiration_s: self
                .message_expiration_s
                .unwrap_or(base.message_expiration_s),
            dead_letter: self
                .dead_letter
                .clone()
                .unwrap_or_else(|| base.dead_letter.clone()),
            alerts: self.alerts.clone().unwrap_or_else(|| base.alerts.clone()),
        }
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

/// One message to push.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The payload; never interpreted.
    pub body: Bytes,
    /// 0..=[`MAX_DELAY_MS`]: the message is DELAYED until then.
    pub delay_ms: u64,
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
}

/// A message as an operation returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    /// Unique on this server, never reused.
    pub id: u64,
    /// The payload.
    pub body: Bytes,
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
}

/// A new lease from touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The new fencing token; the previous one is no longer valid.
    pub reservation_id: u64,
    /// The new deadline.
    pub reserved_until_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let s = patch.apply(&QueueSettings::default());
        assert_eq!(s.message_timeout_ms, 5_000);
        assert_eq!(s.message_expiration_s, DEFAULT_EXPIRATION_S);
    }

    #[test]
    fn should_reject_settings_out_of_range() {
        let patch = SettingsPatch {
            message_timeout_ms: Some(99),
            ..SettingsPatch::default()
        };
        assert!(patch.validate().is_err());
    }

    #[test]
    fn should_refuse_a_queue_as_its_own_dead_letter_queue() {
        let name = QueueName::new("jobs").unwrap();
        let dead_letter = |queue: &str, max| SettingsPatch {
            dead_letter: Some(Some(DeadLetter {
                queue: QueueName::new(queue).unwrap(),
                max_reservations: max,
            })),
            ..SettingsPatch::default()
        };
        assert!(dead_letter("jobs", 3).validate_for(&name).is_err());
        assert!(dead_letter("dlq", 0).validate_for(&name).is_err());
        assert!(dead_letter("dlq", 1001).validate_for(&name).is_err());
        assert!(dead_letter("dlq", 1000).validate_for(&name).is_ok());
    }
}
