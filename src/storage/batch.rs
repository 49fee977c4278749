//! The batch record: many messages in one sled value, and its state record.
//!
//! A queue actor gathers the messages pushed (or adopted) in one turn into a
//! [`BatchBuilder`] and writes them as one record, so a push costs a share of one
//! sled insert instead of one insert per message. What happens to those messages
//! afterwards (reserved, requeued, deleted) is written as one small *state record*
//! per batch, rewritten at most once per turn while the batch is touched; when the
//! last message of a batch is gone, both records are removed.
//!
//! ```text
//! batch value:  [2] count:u32 entries[count] bodies
//!               [3] count:u32 entries[count] tags_len:u32 tags bodies
//!               [4] count:u32 entries[count] tags_len:u32 tags4 bodies
//!               entry = id:u64 pushed_at:u64 available_at:u64 expires_at:u64
//!                       offset:u32 len:u32      (offset into the bodies area)
//!               tags = (len:u8 key priority:u8)[count]
//!                       (len 0: no dispatch key, `queue/fair.rs`; the priority,
//!                       `queue/order.rs`: version 3 is written when a message of
//!                       the batch has a key or a priority other than 8)
//!               tags4 = (len:u8 key priority:u8 origin_len:u16 origin)[count]
//!                       origin = the message a hand-off's follow-up replaces:
//!                       its id:u64 and its queue's name in UTF-8
//!                       (origin_len 0: none); version 4 is written when a
//!                       message of the batch is a hand-off's follow-up
//!                       (`queue/state/hand_off.rs`)
//! state value:  [3] count:u32 deleted-bitmap[ceil(count/8)] n:u32 (slot:u32 StateRecord)[n]
//!               (version 2, still read, holds version-1 state records: no push_done)
//! ```
//!
//! All integers are big-endian. A slot is a message's index in its batch.

use bytes::Bytes;

use super::keys::{decode_state, encode_state, STATE_LEN, STATE_V1_LEN};
use super::{LoadedMessage, MessageRecord, StateRecord, StorageError};

const V2: u8 = 2;
/// The batch version with a dispatch key and a priority per message (written
/// only when some message of the batch has a key or a priority other than
/// [`DEFAULT_PRIORITY`]: other batches stay version 2).
const V3: u8 = 3;
/// The batch version with, besides version 3's tags, an origin per message (a
/// hand-off's follow-ups; written only when some message of the batch has one).
const V4: u8 = 4;
/// The priority of a message of a version-2 batch: the queue layer's default
/// (`queue::types::DEFAULT_PRIORITY`, which a test there checks against this).
pub const DEFAULT_PRIORITY: u8 = 8;
/// The batch-state version whose state records carry `push_done`.
const STATE_V3: u8 = 3;
const HEAD_LEN: usize = 1 + 4;
const ENTRY_LEN: usize = 8 * 4 + 4 + 4;

/// Most messages in one batch record.
pub const MAX_BATCH_MESSAGES: usize = 512;
/// A batch is sealed once its bodies reach this many bytes. sled stores values
/// above ~128 KiB as separate files, so batches stay well below that.
pub const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Messages gathered for one batch record.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    entries: Vec<(u64, MessageRecord, Bytes)>,
    /// The messages' dispatch keys and priorities, once one has a key or a
    /// priority other than the default (by slot).
    tags: Vec<(Option<std::sync::Arc<str>>, u8)>,
    body_bytes: usize,
    /// The messages' origins (a hand-off's follow-up: the queue name and id of
    /// the message it replaces), once one has one (by slot).
    origins: Vec<Option<Origin>>,
}

/// The message a hand-off's follow-up replaces: its queue's name and its id.
pub type Origin = (std::sync::Arc<str>, u64);

impl BatchBuilder {
    /// Adds a message (with its dispatch key, if any: at most 255 bytes, the
    /// queue layer allows 128, and its priority) and returns its slot.
    pub fn push(
        &mut self,
        id: u64,
        record: MessageRecord,
        body: Bytes,
        tags: (Option<std::sync::Arc<str>>, u8),
    ) -> u32 {
        self.push_with_origin(id, record, body, tags, None)
    }

    /// As [`BatchBuilder::push`], for a hand-off's follow-up replacing `origin`
    /// (a queue name of at most 65,527 bytes: the queue layer allows 128).
    pub fn push_with_origin(
        &mut self,
        id: u64,
        record: MessageRecord,
        body: Bytes,
        (key, priority): (Option<std::sync::Arc<str>>, u8),
        origin: Option<Origin>,
    ) -> u32 {
        let slot = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.body_bytes += body.len();
        self.entries.push((id, record, body));
        let before = self.entries.len() - 1;
        if origin.is_some() || !self.origins.is_empty() {
            self.origins.resize(before, None);
            self.origins.push(origin);
        }
        if key.is_some()
            || priority != DEFAULT_PRIORITY
            || !self.tags.is_empty()
            || !self.origins.is_empty()
        {
            self.tags.resize(before, (None, DEFAULT_PRIORITY));
            self.tags.push((key, priority));
        }
        slot
    }

    /// Whether another message should go into a new batch instead.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= MAX_BATCH_MESSAGES || self.body_bytes >= MAX_BATCH_BYTES
    }

    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The body in `slot` (shares the pushed buffer, no copy).
    pub fn body(&self, slot: u32) -> Option<Bytes> {
        let slot = usize::try_from(slot).ok()?;
        self.entries.get(slot).map(|(_, _, body)| body.clone())
    }

    /// The record value.
    pub fn encode(&self) -> Vec<u8> {
        let table = HEAD_LEN + ENTRY_LEN * self.entries.len();
        let mut out = Vec::with_capacity(table + self.body_bytes);
        let version = if !self.origins.is_empty() {
            V4
        } else if !self.tags.is_empty() {
            V3
        } else {
            V2
        };
        out.push(version);
        out.extend_from_slice(&len_u32(self.entries.len()).to_be_bytes());
        let mut offset = 0usize;
        for (id, rec, body) in &self.entries {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&rec.pushed_at_ms.to_be_bytes());
            out.extend_from_slice(&rec.available_at_ms.to_be_bytes());
            out.extend_from_slice(&rec.expires_at_ms.to_be_bytes());
            out.extend_from_slice(&len_u32(offset).to_be_bytes());
            out.extend_from_slice(&len_u32(body.len()).to_be_bytes());
            offset += body.len();
        }
        if version != V2 {
            let mut tags = Vec::new();
            for slot in 0..self.entries.len() {
                let (key, priority) = self
                    .tags
                    .get(slot)
                    .map_or(("", DEFAULT_PRIORITY), |(k, p)| {
                        (k.as_deref().unwrap_or(""), *p)
                    });
                let len = key.len().min(usize::from(u8::MAX));
                tags.push(u8::try_from(len).unwrap_or(u8::MAX));
                tags.extend_from_slice(&key.as_bytes()[..len]);
                tags.push(priority);
                if version == V4 {
                    match self.origins.get(slot).and_then(Option::as_ref) {
                        Some((queue, id)) => {
                            let name = &queue.as_bytes()[..queue.len().min(MAX_ORIGIN_NAME)];
                            let len = u16::try_from(8 + name.len()).unwrap_or(u16::MAX);
                            tags.extend_from_slice(&len.to_be_bytes());
                            tags.extend_from_slice(&id.to_be_bytes());
                            tags.extend_from_slice(name);
                        }
                        None => tags.extend_from_slice(&0u16.to_be_bytes()),
                    }
                }
            }
            out.extend_from_slice(&len_u32(tags.len()).to_be_bytes());
            out.extend_from_slice(&tags);
        }
        for (_, _, body) in &self.entries {
            out.extend_from_slice(body);
        }
        out
    }
}

/// The longest queue name an origin keeps (the queue layer allows 128 bytes).
const MAX_ORIGIN_NAME: usize = u16::MAX as usize - 8;

/// What the tags section says of one slot: dispatch key, priority, origin
/// (queue name, id).
pub type SlotTags<'a> = (Option<&'a str>, u8, Option<(&'a str, u64)>);

/// Bodies are limited far below 4 GiB (`Config::max_body` ≤ 16 MiB, batches ≤ 512
/// messages), so lengths always fit; saturate rather than wrap if that ever changed.
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A stored batch record, validated once; bodies are slices of it (no copy).
#[derive(Debug, Clone)]
pub struct Batch {
    value: Bytes,
    count: usize,
    /// Where the keys section starts (versions 3 and 4) and where the bodies do.
    keys_at: Option<usize>,
    /// Version 4: the tags carry origins.
    origins: bool,
    bodies_at: usize,
}

impl Batch {
    /// Checks a record value: version, table size and that every body lies inside.
    pub fn parse(value: Bytes) -> Option<Batch> {
        let version = *value.first()?;
        if !matches!(version, V2 | V3 | V4) {
            return None;
        }
        let count = usize::try_from(read_u32(&value, 1)?).ok()?;
        let table = HEAD_LEN.checked_add(count.checked_mul(ENTRY_LEN)?)?;
        if value.len() < table {
            return None;
        }
        let (keys_at, bodies_at) = if version == V2 {
            (None, table)
        } else {
            let keys_len = usize::try_from(read_u32(&value, table)?).ok()?;
            (
                Some(table + 4),
                table.checked_add(4)?.checked_add(keys_len)?,
            )
        };
        if value.len() < bodies_at {
            return None;
        }
        let bodies = value.len() - bodies_at;
        let batch = Batch {
            value,
            count,
            keys_at,
            origins: version == V4,
            bodies_at,
        };
        if keys_at.is_some() && batch.tags()?.len() != count {
            return None;
        }
        for slot in 0..count {
            let (offset, len) = batch.span(slot)?;
            if offset.checked_add(len)? > bodies {
                return None;
            }
        }
        Some(batch)
    }

    /// Messages in the batch (deleted ones included).
    pub fn count(&self) -> usize {
        self.count
    }

    /// The bytes of the bodies area: every body of the batch, deleted ones
    /// included (what [`BatchBuilder::push`] was given).
    pub fn body_bytes(&self) -> u64 {
        u64::try_from(self.value.len().saturating_sub(self.bodies_at)).unwrap_or(u64::MAX)
    }

    /// The dispatch key (`None`: no key), priority and origin (a hand-off's
    /// follow-up: the queue name and id of the message it replaces) of each
    /// slot, or `None` if the tags section does not read; empty for a version-2
    /// batch (no keys, every priority the default, no origins).
    pub fn tags(&self) -> Option<Vec<SlotTags<'_>>> {
        let Some(mut at) = self.keys_at else {
            return Some(Vec::new());
        };
        let v = &self.value;
        let mut tags = Vec::with_capacity(self.count);
        while at < self.bodies_at {
            let len = usize::from(*v.get(at)?);
            let bytes = v.get(at + 1..at + 1 + len)?;
            let key = if len == 0 {
                None
            } else {
                Some(std::str::from_utf8(bytes).ok()?)
            };
            let priority = *v.get(at + 1 + len)?;
            at += 2 + len;
            let mut origin = None;
            if self.origins {
                let origin_len =
                    usize::from(u16::from_be_bytes(v.get(at..at + 2)?.try_into().ok()?));
                at += 2;
                if origin_len > 0 {
                    let id = read_u64(v, at)?;
                    let name = std::str::from_utf8(v.get(at + 8..at + origin_len)?).ok()?;
                    origin = Some((name, id));
                    at += origin_len;
                }
            }
            tags.push((key, priority, origin));
        }
        (at == self.bodies_at).then_some(tags)
    }

    fn entry_at(&self, slot: usize) -> Option<usize> {
        (slot < self.count).then_some(HEAD_LEN + slot * ENTRY_LEN)
    }

    fn span(&self, slot: usize) -> Option<(usize, usize)> {
        let at = self.entry_at(slot)?;
        let offset = usize::try_from(read_u32(&self.value, at + 32)?).ok()?;
        let len = usize::try_from(read_u32(&self.value, at + 36)?).ok()?;
        Some((offset, len))
    }

    /// The id and push record in `slot`.
    pub fn entry(&self, slot: usize) -> Option<(u64, MessageRecord)> {
        let at = self.entry_at(slot)?;
        let v = &self.value;
        Some((
            read_u64(v, at)?,
            MessageRecord {
                pushed_at_ms: read_u64(v, at + 8)?,
                available_at_ms: read_u64(v, at + 16)?,
                expires_at_ms: read_u64(v, at + 24)?,
            },
        ))
    }

    /// The body in `slot`.
    pub fn body(&self, slot: usize) -> Option<Bytes> {
        let (offset, len) = self.span(slot)?;
        let start = self.bodies_at + offset;
        Some(self.value.slice(start..start + len))
    }
}

/// The decoded state record of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchState {
    deleted: Vec<u8>,
    /// Messages whose state differs from the push defaults.
    pub states: Vec<(u32, StateRecord)>,
}

impl BatchState {
    /// Whether the message in `slot` was deleted.
    pub fn is_deleted(&self, slot: usize) -> bool {
        self.deleted
            .get(slot / 8)
            .is_some_and(|byte| byte & (1 << (slot % 8)) != 0)
    }

    /// Decodes a state value.
    pub fn decode(value: &[u8]) -> Option<BatchState> {
        let state_len = match value.first() {
            Some(&V2) => STATE_V1_LEN,
            Some(&STATE_V3) => STATE_LEN,
            _ => return None,
        };
        let count = usize::try_from(read_u32(value, 1)?).ok()?;
        let bitmap_end = HEAD_LEN + count.div_ceil(8);
        let deleted = value.get(HEAD_LEN..bitmap_end)?.to_vec();
        let n = usize::try_from(read_u32(value, bitmap_end)?).ok()?;
        let mut at = bitmap_end + 4;
        if value.len() != at.checked_add(n.checked_mul(4 + state_len)?)? {
            return None;
        }
        let mut states = Vec::with_capacity(n);
        for _ in 0..n {
            let slot = read_u32(value, at)?;
            let state = decode_state(value.get(at + 4..at + 4 + state_len)?)?;
            states.push((slot, state));
            at += 4 + state_len;
        }
        Some(BatchState { deleted, states })
    }
}

/// Encodes the state record of a batch of `count` slots: `deleted(slot)` says which
/// messages are gone, `states` lists the others whose state is not the default.
pub fn encode_batch_state(
    count: usize,
    deleted: impl Fn(usize) -> bool,
    states: &[(u32, StateRecord)],
) -> Vec<u8> {
    let bitmap_len = count.div_ceil(8);
    let mut out = Vec::with_capacity(HEAD_LEN + bitmap_len + 4 + states.len() * (4 + STATE_LEN));
    out.push(STATE_V3);
    out.extend_from_slice(&len_u32(count).to_be_bytes());
    let mut bitmap = vec![0u8; bitmap_len];
    for slot in (0..count).filter(|&slot| deleted(slot)) {
        bitmap[slot / 8] |= 1 << (slot % 8);
    }
    out.extend_from_slice(&bitmap);
    out.extend_from_slice(&len_u32(states.len()).to_be_bytes());
    for (slot, state) in states {
        out.extend_from_slice(&slot.to_be_bytes());
        out.extend_from_slice(&encode_state(state));
    }
    out
}

/// Calls `each` for every undeleted message of the batch stored under `key`, with
/// its state record (if any); returns how many there were. Every [`super::QueueLog`]
/// loads through this, so the record layout is read in one place.
///
/// # Errors
/// [`StorageError::Corrupt`] if the batch holds more than `u32::MAX` slots or a slot
/// cannot be read.
pub fn decode_messages(
    key: u64,
    batch: &Batch,
    state: &BatchState,
    each: &mut dyn FnMut(LoadedMessage),
) -> Result<usize, StorageError> {
    let batch_len = u32::try_from(batch.count())
        .map_err(|_| StorageError::Corrupt(format!("batch {key} is too long")))?;
    let mut live = 0;
    let tags = batch
        .tags()
        .ok_or_else(|| StorageError::Corrupt(format!("tags of batch {key}")))?;

    // States are written in slot order.
    let mut states = state.states.iter().peekable();
    for slot in 0..batch_len {
        let mut own_state = None;
        while let Some((state_slot, st)) = states.peek() {
            if *state_slot > slot {
                break;
            }
            if *state_slot == slot {
                own_state = Some(*st);
            }
            states.next();
        }
        let index = usize::try_from(slot).unwrap_or(usize::MAX);
        if state.is_deleted(index) {
            continue;
        }
        let (id, record) = batch
            .entry(index)
            .ok_or_else(|| StorageError::Corrupt(format!("batch {key}")))?;
        live += 1;
        each(LoadedMessage {
            id,
            record,
            key: tags
                .get(index)
                .and_then(|(k, _, _)| *k)
                .map(std::sync::Arc::from),
            priority: tags.get(index).map_or(DEFAULT_PRIORITY, |(_, p, _)| *p),
            state: own_state,
            batch: key,
            slot,
            batch_len,
            batch_bytes: batch.body_bytes(),
            origin: tags
                .get(index)
                .and_then(|(_, _, o)| *o)
                .map(|(queue, id)| (std::sync::Arc::<str>::from(queue), id)),
        });
    }
    Ok(live)
}

fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64) -> MessageRecord {
        MessageRecord {
            pushed_at_ms: n,
            available_at_ms: n + 1,
            expires_at_ms: n + 2,
        }
    }

    #[test]
    fn should_keep_keys_and_priorities_only_in_batches_that_have_them() {
        let mut plain = BatchBuilder::default();
        plain.push(
            1,
            record(1),
            Bytes::from_static(b"a"),
            (None, DEFAULT_PRIORITY),
        );
        assert_eq!(plain.encode()[0], V2, "nothing to tag: version 2");
        let mut tagged = BatchBuilder::default();
        tagged.push(
            1,
            record(1),
            Bytes::from_static(b"a"),
            (None, DEFAULT_PRIORITY),
        );
        tagged.push(
            2,
            record(2),
            Bytes::from_static(b"bb"),
            (Some("tenant-é".into()), 8),
        );
        tagged.push(3, record(3), Bytes::from_static(b"ccc"), (None, 0));
        let value = tagged.encode();
        assert_eq!(value[0], V3);
        let batch = Batch::parse(Bytes::from(value.clone())).unwrap();
        assert_eq!(
            batch.tags().unwrap(),
            [
                (None, 8, None),
                (Some("tenant-é"), 8, None),
                (None, 0, None)
            ]
        );
        assert_eq!(batch.body(2).unwrap(), Bytes::from_static(b"ccc"));
        assert_eq!(batch.body_bytes(), 6);
        let mut loaded = Vec::new();
        decode_messages(7, &batch, &BatchState::default(), &mut |m| {
            loaded.push((m.id, m.key, m.priority));
        })
        .unwrap();
        assert_eq!(
            loaded,
            [(1, None, 8), (2, Some("tenant-é".into()), 8), (3, None, 0)]
        );
        // A tags section that does not add up is refused.
        let mut damaged = value;
        let table = HEAD_LEN + 3 * ENTRY_LEN;
        damaged[table + 3] += 1;
        assert!(Batch::parse(Bytes::from(damaged)).is_none());
    }

    #[test]
    fn should_keep_origins_only_in_batches_that_have_them_and_per_message() {
        let mut batch = BatchBuilder::default();
        batch.push(1, record(1), Bytes::from_static(b"pushed"), (None, 8));
        batch.push_with_origin(
            2,
            record(2),
            Bytes::from_static(b"follow-up"),
            (Some("k".into()), 3),
            Some(("p/orders".into(), 77)),
        );
        batch.push(3, record(3), Bytes::from_static(b"pushed too"), (None, 8));
        let value = batch.encode();
        assert_eq!(value[0], V4, "an origin: version 4");
        let parsed = Batch::parse(Bytes::from(value.clone())).unwrap();
        assert_eq!(
            parsed.tags().unwrap(),
            [
                (None, 8, None),
                (Some("k"), 3, Some(("p/orders", 77))),
                (None, 8, None)
            ]
        );
        assert_eq!(parsed.body(1).unwrap(), Bytes::from_static(b"follow-up"));
        let mut loaded = Vec::new();
        decode_messages(9, &parsed, &BatchState::default(), &mut |m| {
            loaded.push((m.id, m.origin));
        })
        .unwrap();
        assert_eq!(
            loaded,
            [(1, None), (2, Some(("p/orders".into(), 77))), (3, None)]
        );
        // An origin whose length runs past the tags is refused.
        let mut damaged = value;
        let origin_len_at = HEAD_LEN + 3 * ENTRY_LEN + 4 + 2 + 2 + 1 + 1;
        damaged[origin_len_at + 1] += 40;
        assert!(Batch::parse(Bytes::from(damaged)).is_none());
    }

    #[test]
    fn should_round_trip_a_batch_without_copying_bodies() {
        let mut builder = BatchBuilder::default();
        assert_eq!(
            builder.push(10, record(1), Bytes::from_static(b"first"), (None, 8)),
            0
        );
        assert_eq!(builder.push(12, record(2), Bytes::new(), (None, 8)), 1);
        assert_eq!(
            builder.push(13, record(3), Bytes::from_static(b"third"), (None, 8)),
            2
        );
        assert_eq!(builder.body(2).as_deref(), Some(&b"third"[..]));
        let value = Bytes::from(builder.encode());
        let batch = Batch::parse(value.clone()).expect("valid batch");
        assert_eq!(batch.count(), 3);
        assert_eq!(batch.entry(1), Some((12, record(2))));
        assert_eq!(batch.body(0).as_deref(), Some(&b"first"[..]));
        assert_eq!(batch.body(1).as_deref(), Some(&b""[..]));
        let third = batch.body(2).expect("third body");
        assert_eq!(&third[..], b"third");
        // The body points into the record value.
        let inside = value.as_ptr() as usize..value.as_ptr() as usize + value.len();
        assert!(inside.contains(&(third.as_ptr() as usize)));
        assert_eq!(batch.entry(3), None);
    }

    #[test]
    fn should_reject_damaged_batches() {
        let mut builder = BatchBuilder::default();
        builder.push(1, record(1), Bytes::from_static(b"body"), (None, 8));
        let value = builder.encode();
        assert!(Batch::parse(Bytes::from(value[..value.len() - 1].to_vec())).is_none());
        assert!(Batch::parse(Bytes::from_static(b"\x02\xff\xff\xff\xff")).is_none());
        assert!(Batch::parse(Bytes::from_static(b"\x01")).is_none());
    }

    #[test]
    fn should_seal_batches_by_count_and_bytes() {
        let mut builder = BatchBuilder::default();
        builder.push(
            1,
            record(1),
            Bytes::from(vec![0u8; MAX_BATCH_BYTES]),
            (None, 8),
        );
        assert!(builder.is_full());
        let mut builder = BatchBuilder::default();
        for id in 0..MAX_BATCH_MESSAGES as u64 {
            assert!(!builder.is_full());
            builder.push(id, record(id), Bytes::from_static(b"x"), (None, 8));
        }
        assert!(builder.is_full());
    }

    #[test]
    fn should_round_trip_batch_states() {
        let state = StateRecord {
            order_key: 5,
            reserved_count: 2,
            reservation_id: 77,
            reserved_until_ms: 1000,
            available_at_ms: 0,
            push_done: 0b101,
        };
        let value = encode_batch_state(10, |slot| slot == 0 || slot == 9, &[(3, state)]);
        let decoded = BatchState::decode(&value).expect("valid state");
        let deleted: Vec<usize> = (0..10).filter(|&s| decoded.is_deleted(s)).collect();
        assert_eq!(deleted, vec![0, 9]);
        assert_eq!(decoded.states, vec![(3, state)]);
        assert!(BatchState::decode(&value[..value.len() - 1]).is_none());
    }
}
