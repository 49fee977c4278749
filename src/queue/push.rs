//! Push-queue settings: a queue's type (pull, unicast, multicast), its subscribers,
//! retries and error queue, the changes a request may make to them, and the checks
//! (`docs/ironmq-v3-api.md` §2.1, §3.6, §6). Delivery itself is `crate::push`'s.
//!
//! A subscriber keeps a *slot* (0..64) for as long as it is configured under its
//! name: a message's record remembers which slots it was delivered to (the
//! `push_done` bitmask of its state), so a multicast retry goes only to the ones
//! still owed. A slot freed by a removed subscriber is given to the next new one;
//! a message delivered to the old subscriber before that is not delivered to the
//! new one under the same slot (a documented edge of reusing slots).

use bytes::Bytes;

use super::types::{check_range, QueueName};
use crate::error::QueueError;

/// Default `push.retries`: tries after the first.
pub const DEFAULT_RETRIES: u32 = 3;
/// Most `push.retries`.
pub const MAX_RETRIES: u32 = 100;
/// Default `push.retries_delay`, seconds.
pub const DEFAULT_RETRIES_DELAY_S: u64 = 60;
/// Shortest `push.retries_delay`, seconds.
pub const MIN_RETRIES_DELAY_S: u64 = 3;
/// Longest `push.retries_delay`, seconds: 1 day.
pub const MAX_RETRIES_DELAY_S: u64 = 86_400;
/// Most subscribers of one queue (a message's delivered set is a 64-bit mask).
pub const MAX_SUBSCRIBERS: usize = SLOTS as usize;
/// Slots 0..SLOTS.
const SLOTS: u8 = 64;
/// Longest subscriber name, bytes.
pub const MAX_SUBSCRIBER_NAME: usize = 128;
/// Longest subscriber URL, bytes.
pub const MAX_URL: usize = 2048;
/// Most headers of one subscriber.
pub const MAX_SUBSCRIBER_HEADERS: usize = 16;
/// Longest header name, bytes.
pub const MAX_HEADER_NAME: usize = 64;
/// Longest header value, bytes.
pub const MAX_HEADER_VALUE: usize = 1024;

/// The headers the server sets on every delivery; no subscriber or message may set
/// them (`Content-Type` and `User-Agent` may be overridden, so they are not here).
pub const IRON_HEADERS: [&str; 4] = [
    "iron-message-id",
    "iron-reservation-id",
    "iron-subscriber-name",
    "iron-subscriber-message-url",
];

/// Fixed when the queue is created; never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// Consumers reserve messages.
    Pull,
    /// The server delivers each message to one subscriber.
    Unicast,
    /// The server delivers each message to every subscriber.
    Multicast,
}

impl QueueKind {
    /// IronMQ's name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueKind::Pull => "pull",
            QueueKind::Unicast => "unicast",
            QueueKind::Multicast => "multicast",
        }
    }
}

/// Where a push queue delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// The slot its deliveries are recorded under (see the module docs).
    pub slot: u8,
    /// Unique within the queue.
    pub name: String,
    /// `http://` or `https://` URL the message is POSTed to.
    pub url: String,
    /// Headers sent with every delivery to it.
    pub headers: Vec<(String, String)>,
}

/// A push queue's settings, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSettings {
    /// Unicast or multicast.
    pub kind: QueueKind,
    /// At least one.
    pub subscribers: Vec<Subscriber>,
    /// Tries after the first before a message is given up.
    pub retries: u32,
    /// Seconds between tries.
    pub retries_delay_s: u64,
    /// Where a message given up goes, as a JSON report.
    pub error_queue: Option<QueueName>,
}

impl PushSettings {
    /// The mask of every subscriber's slot.
    pub fn all_slots(&self) -> u64 {
        self.subscribers
            .iter()
            .fold(0, |mask, s| mask | (1u64 << s.slot))
    }

    /// The subscriber named `name`.
    pub fn subscriber(&self, name: &str) -> Option<&Subscriber> {
        self.subscribers.iter().find(|s| s.name == name)
    }
}

/// A subscriber as a request gives it (no slot yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscriber {
    /// Its name (HTTP: the URL when none is given).
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Its headers.
    pub headers: Vec<(String, String)>,
}

/// A change to the subscriber list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribersChange {
    /// The list becomes exactly these.
    Replace(Vec<NewSubscriber>),
    /// These are added, or replace the one of the same name.
    Upsert(Vec<NewSubscriber>),
    /// The ones of these names are removed.
    Remove(Vec<String>),
}

/// A change to the push settings: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushPatch {
    /// A change to the subscribers.
    pub subscribers: Option<SubscribersChange>,
    /// New retries.
    pub retries: Option<u32>,
    /// New retries delay, seconds.
    pub retries_delay_s: Option<u64>,
    /// `Some(None)` turns the error queue off.
    pub error_queue: Option<Option<QueueName>>,
}

impl PushPatch {
    /// `base` (the current push settings, `None` for a new queue of `kind`) with
    /// this patch applied and checked, for the queue `name`.
    ///
    /// # Errors
    /// `InvalidArgument` naming the rule that failed.
    pub fn apply(
        &self,
        name: &QueueName,
        kind: QueueKind,
        base: Option<&PushSettings>,
    ) -> Result<PushSettings, QueueError> {
        let mut settings = base.cloned().unwrap_or(PushSettings {
            kind,
            subscribers: Vec::new(),
            retries: DEFAULT_RETRIES,
            retries_delay_s: DEFAULT_RETRIES_DELAY_S,
            error_queue: None,
        });
        if let Some(retries) = self.retries {
            check_range(
                "push.retries",
                u64::from(retries),
                0,
                u64::from(MAX_RETRIES),
            )?;
            settings.retries = retries;
        }
        if let Some(delay) = self.retries_delay_s {
            check_range(
                "push.retries_delay",
                delay,
                MIN_RETRIES_DELAY_S,
                MAX_RETRIES_DELAY_S,
            )?;
            settings.retries_delay_s = delay;
        }
        if let Some(error_queue) = &self.error_queue {
            if error_queue.as_ref() == Some(name) {
                return Err(QueueError::invalid(format!(
                    "queue {name} cannot be its own error queue"
                )));
            }
            settings.error_queue = error_queue.clone();
        }
        match &self.subscribers {
            None => {}
            Some(SubscribersChange::Replace(list)) => {
                let old = std::mem::take(&mut settings.subscribers);
                for new in list {
                    upsert(&mut settings.subscribers, &old, new)?;
                }
            }
            Some(SubscribersChange::Upsert(list)) => {
                let old = settings.subscribers.clone();
                for new in list {
                    upsert(&mut settings.subscribers, &old, new)?;
                }
            }
            Some(SubscribersChange::Remove(names)) => {
                for gone in names {
                    let before = settings.subscribers.len();
                    settings.subscribers.retain(|s| &s.name != gone);
                    if settings.subscribers.len() == before {
                        return Err(QueueError::invalid(format!(
                            "queue {name} has no subscriber named {gone:?}"
                        )));
                    }
                }
            }
        }
        if settings.subscribers.is_empty() {
            return Err(QueueError::invalid(format!(
                "push queue {name} needs at least one subscriber"
            )));
        }
        if settings.subscribers.len() > MAX_SUBSCRIBERS {
            return Err(QueueError::invalid(format!(
                "a push queue has at most {MAX_SUBSCRIBERS} subscribers"
            )));
        }
        Ok(settings)
    }
}

/// Adds `new` to `list` (or replaces the entry of its name), keeping the slot its
/// name had in `list` or in `old`, else taking the lowest free one.
fn upsert(
    list: &mut Vec<Subscriber>,
    old: &[Subscriber],
    new: &NewSubscriber,
) -> Result<(), QueueError> {
    check_subscriber(new)?;
    let entry = |slot| Subscriber {
        slot,
        name: new.name.clone(),
        url: new.url.clone(),
        headers: new.headers.clone(),
    };
    if let Some(at) = list.iter().position(|s| s.name == new.name) {
        list[at] = entry(list[at].slot);
        return Ok(());
    }
    let used = |slot: u8| list.iter().any(|s| s.slot == slot);
    let kept = old
        .iter()
        .find(|s| s.name == new.name)
        .map(|s| s.slot)
        .filter(|&slot| !used(slot));
    // A slot no old subscriber had first, so a subscriber re-added later in the
    // same request finds its own slot free.
    let slots = || 0..SLOTS;
    let slot = kept
        .or_else(|| slots().find(|&slot| !used(slot) && !old.iter().any(|s| s.slot == slot)))
        .or_else(|| slots().find(|&slot| !used(slot)))
        .ok_or_else(|| {
            QueueError::invalid(format!(
                "a push queue has at most {MAX_SUBSCRIBERS} subscribers"
            ))
        })?;
    list.push(entry(slot));
    Ok(())
}

/// A subscriber's name, URL and headers, checked.
fn check_subscriber(s: &NewSubscriber) -> Result<(), QueueError> {
    if s.name.is_empty() || s.name.len() > MAX_SUBSCRIBER_NAME {
        return Err(QueueError::invalid(format!(
            "a subscriber name must be 1..={MAX_SUBSCRIBER_NAME} bytes"
        )));
    }
    check_url(&s.url)?;
    if s.headers.len() > MAX_SUBSCRIBER_HEADERS {
        return Err(QueueError::invalid(format!(
            "subscriber {:?} has {} headers; at most {MAX_SUBSCRIBER_HEADERS} are allowed",
            s.name,
            s.headers.len()
        )));
    }
    for (header, value) in &s.headers {
        check_header(header, value)?;
    }
    Ok(())
}

/// An `http` or `https` URL with a host, at most [`MAX_URL`] bytes of visible ASCII.
///
/// # Errors
/// `InvalidArgument` saying what is wrong.
pub fn check_url(url: &str) -> Result<(), QueueError> {
    let bad = |why: &str| QueueError::invalid(format!("subscriber url {url:?}: {why}"));
    if url.len() > MAX_URL {
        return Err(bad(&format!("longer than {MAX_URL} bytes")));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "only visible ASCII characters are allowed (percent-encode the rest)",
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("the scheme must be http or https"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(bad("no host"));
    }
    Ok(())
}

/// A header a subscriber or a message may set: an HTTP token as its name (not one
/// of [`IRON_HEADERS`]) and a value of visible ASCII and spaces, within the sizes.
///
/// # Errors
/// `InvalidArgument` naming the header.
pub fn check_header(name: &str, value: &str) -> Result<(), QueueError> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || name.len() > MAX_HEADER_NAME || !name.bytes().all(token) {
        return Err(QueueError::invalid(format!(
            "header name {name:?} is not allowed: 1..={MAX_HEADER_NAME} bytes of A-Z a-z 0-9 \
             !#$%&'*+-.^_`|~"
        )));
    }
    if IRON_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(QueueError::invalid(format!(
            "header {name:?} is set by the server"
        )));
    }
    if value.is_empty()
        || value.len() > MAX_HEADER_VALUE
        || !value
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    {
        return Err(QueueError::invalid(format!(
            "header {name:?} needs a value of 1..={MAX_HEADER_VALUE} bytes of visible ASCII"
        )));
    }
    Ok(())
}

/// The first bytes of a stored push-queue body that carries push headers.
const ENVELOPE: &[u8; 5] = b"\0FQH\x01";

/// What a queue of `kind` stores for `messages`: push queues keep each message's
/// push headers (`headers[i]` for `messages[i]`) with its body, pull queues the
/// body alone.
pub fn stored(
    kind: QueueKind,
    messages: &[super::types::NewMessage],
    headers: &[Vec<(String, String)>],
) -> Vec<super::types::NewMessage> {
    if kind == QueueKind::Pull || headers.iter().all(Vec::is_empty) {
        return messages.to_vec();
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| super::types::NewMessage {
            body: wrap_body(headers.get(i).map_or(&[][..], Vec::as_slice), &m.body),
            delay_ms: m.delay_ms,
            priority: m.priority,
            key: m.key.clone(),
        })
        .collect()
}

/// A message's push headers with its body, as a push queue stores it: the body
/// unchanged when there are none, else [`ENVELOPE`], a u8 count, each header as
/// (u16 length, bytes) twice, then the body. Only push queues store envelopes
/// (the service wraps and unwraps; the queue's type never changes), so a pull
/// queue's bodies are never read as one.
pub fn wrap_body(headers: &[(String, String)], body: &Bytes) -> Bytes {
    if headers.is_empty() {
        return body.clone();
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    out.extend_from_slice(ENVELOPE);
    let count = u8::try_from(headers.len()).unwrap_or(u8::MAX);
    out.push(count);
    for (name, value) in headers.iter().take(usize::from(count)) {
        for text in [name, value] {
            let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&text.as_bytes()[..usize::from(len)]);
        }
    }
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// The push headers and body of a stored push-queue body ([`wrap_body`]); a body
/// that is not an envelope (pushed without headers, or moved in from another
/// queue) is the body, with no headers.
pub fn unwrap_body(stored: &Bytes) -> (Vec<(String, String)>, Bytes) {
    fn parse(stored: &Bytes) -> Option<(Vec<(String, String)>, Bytes)> {
        let rest = stored.strip_prefix(ENVELOPE.as_slice())?;
        let (&count, mut rest) = rest.split_first()?;
        let mut text = || -> Option<String> {
            let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
            let value = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_owned();
            rest = rest.get(2 + len..)?;
            Some(value)
        };
        let mut headers = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let name = text()?;
            let value = text()?;
            headers.push((name, value));
        }
        let offset = stored.len() - rest.len();
        Some((headers, stored.slice(offset..)))
    }
    parse(stored).unwrap_or_else(|| (Vec::new(), stored.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_round_trip_push_headers_and_leave_plain_bodies_alone() {
        let body = Bytes::from_static(b"\0FQH hello");
        let headers = vec![
            ("X-A".to_owned(), "1".to_owned()),
            ("X-B".to_owned(), "two".to_owned()),
        ];
        let stored = wrap_body(&headers, &body);
        assert_eq!(unwrap_body(&stored), (headers, body.clone()));
        assert_eq!(wrap_body(&[], &body), body);
        assert_eq!(unwrap_body(&body), (Vec::new(), body.clone()));
        let cut = stored.slice(..8);
        assert_eq!(
            unwrap_body(&cut),
            (Vec::new(), cut.clone()),
            "a damaged envelope is a body"
        );
    }
}
