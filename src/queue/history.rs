//! Delivery history: the last K delivery attempts of a message, and their
//! stored form.
//!
//! An attempt is one reservation of a message, from the reserve that handed it
//! out to the moment it ended: who had it (the consumer's name, from Hello on
//! the binary protocol or the `X-Ferromq-Consumer` header on HTTP), when it was
//! reserved, how often it was touched, how it ended ([`Outcome`]) and when.
//!
//! What it costs, and when:
//! - An attempt that ends with the message deleted writes nothing: a message
//!   delivered once and deleted costs no history record, ever.
//! - An attempt that ends with the message staying (released, lease timed out)
//!   is appended to the message's history record (the newest K kept, K the
//!   queue's `delivery_history`, 0 for none), written with the turn's other
//!   records. Only the queue's actor writes it; the state machine asks for the
//!   append ([`HistoryUpdate::Append`]) and the actor reads, appends and writes
//!   (`actor.rs`), so the state machine neither holds nor reads histories
//!   except to answer a `get` or to move a message.
//! - In memory: the ids of the messages that have a record (a set), and for a
//!   reservation whose consumer is named or that was touched, that name and
//!   count until the attempt ends. Nothing else: histories stay on disk.
//! - A message moved to another queue (dead letter, redrive) takes its history
//!   with it; a dead-lettered one gets a last attempt with outcome
//!   [`Outcome::DeadLettered`], the reserve that met it over the limit, so the
//!   reason it died is where it is examined.
//! - After a restart, a reservation open at the crash is recorded without its
//!   consumer, touches and start (those live in memory only).
//!
//! ```text
//! value: [1] count:u16 (reservation_id:u64 reserved_at_ms:u64 ended_at_ms:u64
//!                       touches:u32 outcome:u8 consumer_len:u8 consumer)[count]
//! ```
//!
//! Pure: encoding, decoding and appending; part of the state machine.

use std::sync::Arc;

/// Attempts kept per message unless the queue says otherwise.
pub const DEFAULT_DELIVERY_HISTORY: u32 = 10;
/// The most attempts a queue may keep per message.
pub const MAX_DELIVERY_HISTORY: u32 = 100;
/// Longest consumer name, in bytes.
pub const MAX_CONSUMER_NAME: usize = 64;

const VERSION: u8 = 1;
const ENTRY_LEN: usize = 8 * 3 + 4 + 1 + 1;

/// How a delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still under way: the message is reserved (shown by `get`, never stored).
    /// There is no "deleted": a message deleted by its consumer is gone, and
    /// its history with it.
    InProgress,
    /// Given back by its consumer (release).
    Released,
    /// Its lease ran out.
    TimedOut,
    /// A reserve met it over its queue's `max_reservations` and moved it to the
    /// dead-letter queue.
    DeadLettered,
}

impl Outcome {
    fn code(self) -> u8 {
        match self {
            Outcome::InProgress => 1,
            Outcome::Released => 2,
            Outcome::TimedOut => 3,
            Outcome::DeadLettered => 4,
        }
    }

    fn from_code(code: u8) -> Option<Outcome> {
        Some(match code {
            1 => Outcome::InProgress,
            2 => Outcome::Released,
            3 => Outcome::TimedOut,
            4 => Outcome::DeadLettered,
            _ => return None,
        })
    }

    /// The name the front ends show.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::InProgress => "in_progress",
            Outcome::Released => "released",
            Outcome::TimedOut => "timed_out",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The reservation it ended under (a touch replaces it; 0 for a dead letter).
    pub reservation_id: u64,
    /// Who had it; empty when not known (not named, or reserved before a restart).
    pub consumer: Arc<str>,
    /// When it was reserved; 0 when not known (reserved before a restart).
    pub reserved_at_ms: u64,
    /// When it ended.
    pub ended_at_ms: u64,
    /// Touches during it.
    pub touches: u32,
    /// How it ended.
    pub outcome: Outcome,
}

impl Attempt {
    /// How long it lasted; 0 when its start is not known.
    pub fn duration_ms(&self) -> u64 {
        if self.reserved_at_ms == 0 {
            0
        } else {
            self.ended_at_ms.saturating_sub(self.reserved_at_ms)
        }
    }
}

/// What the consumer of an open reservation is known by, kept only when there
/// is something to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Open {
    pub(super) consumer: Option<Arc<str>>,
    pub(super) touches: u32,
}

/// A change to a message's history record, for the actor to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryUpdate {
    /// Remove the record (the message left the queue).
    Remove,
    /// Write this value (a moved message's history, encoded).
    Replace(Vec<u8>),
    /// Append these attempts to the stored record (or start one), keeping the
    /// newest `keep`.
    Append {
        /// The attempts, oldest first.
        attempts: Vec<Attempt>,
        /// How many to keep in all.
        keep: u32,
    },
}

impl HistoryUpdate {
    /// The record after this update, given the stored one.
    pub fn apply(&self, stored: Option<&[u8]>) -> Option<Vec<u8>> {
        match self {
            HistoryUpdate::Remove => None,
            HistoryUpdate::Replace(value) => Some(value.clone()),
            HistoryUpdate::Append { attempts, keep } => {
                let mut all = stored.and_then(decode).unwrap_or_default();
                all.extend(attempts.iter().cloned());
                Some(encode(newest(&all, *keep)))
            }
        }
    }
}

/// The newest `keep` of `attempts`.
pub fn newest(attempts: &[Attempt], keep: u32) -> &[Attempt] {
    let keep = usize::try_from(keep).unwrap_or(usize::MAX);
    &attempts[attempts.len().saturating_sub(keep)..]
}

/// The stored form of `attempts`.
pub fn encode(attempts: &[Attempt]) -> Vec<u8> {
    let count = attempts.len().min(usize::from(u16::MAX));
    let mut out = Vec::with_capacity(3 + count * (ENTRY_LEN + 16));
    out.push(VERSION);
    out.extend_from_slice(&u16::try_from(count).unwrap_or(u16::MAX).to_be_bytes());
    for a in &attempts[..count] {
        out.extend_from_slice(&a.reservation_id.to_be_bytes());
        out.extend_from_slice(&a.reserved_at_ms.to_be_bytes());
        out.extend_from_slice(&a.ended_at_ms.to_be_bytes());
        out.extend_from_slice(&a.touches.to_be_bytes());
        out.push(a.outcome.code());
        let name = consumer_prefix(&a.consumer);
        out.push(u8::try_from(name.len()).unwrap_or(0));
        out.extend_from_slice(name.as_bytes());
    }
    out
}

/// The longest prefix of `name` within [`MAX_CONSUMER_NAME`] bytes that ends on
/// a character boundary (names are checked at the front ends; this only guards
/// the encoding).
fn consumer_prefix(name: &str) -> &str {
    let mut end = name.len().min(MAX_CONSUMER_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Reads a stored history; `None` if it does not read.
pub fn decode(value: &[u8]) -> Option<Vec<Attempt>> {
    let (&version, rest) = value.split_first()?;
    if version != VERSION {
        return None;
    }
    let count = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?);
    let mut at = rest.get(2..)?;
    let mut out = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let fixed = at.get(..ENTRY_LEN)?;
        let u64_at = |i: usize| -> Option<u64> {
            Some(u64::from_be_bytes(fixed.get(i..i + 8)?.try_into().ok()?))
        };
        let touches = u32::from_be_bytes(fixed.get(24..28)?.try_into().ok()?);
        let outcome = Outcome::from_code(fixed[28])?;
        let name_len = usize::from(fixed[29]);
        let name = std::str::from_utf8(at.get(ENTRY_LEN..ENTRY_LEN + name_len)?).ok()?;
        out.push(Attempt {
            reservation_id: u64_at(0)?,
            reserved_at_ms: u64_at(8)?,
            ended_at_ms: u64_at(16)?,
            touches,
            outcome,
            consumer: Arc::from(name),
        });
        at = at.get(ENTRY_LEN + name_len..)?;
    }
    at.is_empty().then_some(out)
}

/// Checks a consumer name: 1..=64 bytes of visible ASCII.
///
/// # Errors
/// A sentence saying what is wrong with it.
pub fn check_consumer(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_CONSUMER_NAME {
        return Err(format!(
            "a consumer name is 1..={MAX_CONSUMER_NAME} bytes, this one {}",
            name.len()
        ));
    }
    if let Some(bad) = name.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "consumer name {name:?} has the character {bad:?}; allowed is visible ASCII"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(n: u64, outcome: Outcome, consumer: &str) -> Attempt {
        Attempt {
            reservation_id: n,
            consumer: Arc::from(consumer),
            reserved_at_ms: 1000 * n,
            ended_at_ms: 1000 * n + 250,
            touches: u32::try_from(n).unwrap(),
            outcome,
        }
    }

    #[test]
    fn should_round_trip_and_refuse_damaged_values() {
        let attempts = vec![
            attempt(1, Outcome::TimedOut, "worker-1"),
            attempt(2, Outcome::Released, ""),
            attempt(3, Outcome::DeadLettered, "é-named"),
        ];
        let value = encode(&attempts);
        assert_eq!(decode(&value), Some(attempts));
        assert_eq!(decode(&value[..value.len() - 1]), None);
        let mut bad = value.clone();
        bad[0] = 9;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&[VERSION, 0, 0]), Some(Vec::new()));
        assert_eq!(attempt(2, Outcome::Released, "").duration_ms(), 250);
        let unknown_start = Attempt {
            reserved_at_ms: 0,
            ..attempt(2, Outcome::Released, "")
        };
        assert_eq!(unknown_start.duration_ms(), 0);
    }

    #[test]
    fn should_append_and_keep_the_newest() {
        let first = HistoryUpdate::Append {
            attempts: vec![attempt(1, Outcome::TimedOut, "a")],
            keep: 2,
        }
        .apply(None)
        .unwrap();
        let more = HistoryUpdate::Append {
            attempts: vec![
                attempt(2, Outcome::Released, "b"),
                attempt(3, Outcome::TimedOut, "c"),
            ],
            keep: 2,
        }
        .apply(Some(&first))
        .unwrap();
        let kept: Vec<u64> = decode(&more)
            .unwrap()
            .iter()
            .map(|a| a.reservation_id)
            .collect();
        assert_eq!(kept, [2, 3]);
        assert_eq!(HistoryUpdate::Remove.apply(Some(&more)), None);
    }

    #[test]
    fn should_check_consumer_names() {
        assert!(check_consumer("billing-worker.7").is_ok());
        assert!(check_consumer("").is_err());
        assert!(check_consumer(&"x".repeat(65)).is_err());
        assert!(check_consumer("two words").is_err());
        assert!(check_consumer("tab\t").is_err());
        assert_eq!(consumer_prefix(&"é".repeat(40)).len(), 64);
    }
}
