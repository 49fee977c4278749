//! Key and value layout on disk (layout 3; queue values of version 5).
//!
//! Every integer in a key is big-endian, so sled's byte order is numeric order and a
//! scan comes out in id order. Values are fixed-layout records with a leading
//! version byte, so the layout can grow without guessing.
//!
//! ```text
//! tree "queues":   key = queue id (u64 BE)                      value = QueueRecord (51 bytes)
//!                                                                 ++ name ++ dead-letter name
//!                                                                 ++ push settings ++ processing times
//!                                                                 ++ attachment
//! default tree:    key = b"next_id"                             value = u64 BE high-water mark
//! tree "batches":  key = queue id (u64 BE) ++ batch key (u64 BE)  value = batch of messages (batch.rs)
//! tree "states":   key = queue id (u64 BE) ++ batch key (u64 BE)  value = batch state (batch.rs)
//! tree "histories": key = queue id (u64 BE) ++ message id (u64 BE) value = delivery history
//!                                                                 (queue/history.rs)
//! ```
//!
//! Every queue shares the two record trees, its records under its id as a prefix,
//! so creating a queue creates no tree. (sled keeps the list of its trees in one
//! meta page, rewritten whole whenever a tree is created; with two trees per queue,
//! layout 2, each creation cost O(queues), and past ~4,000 queues the page outgrew
//! sled's inline limit and every creation wrote a new blob file.) A batch key is the
//! id of the first message of the batch (or a fresh id), so a queue's batches load
//! in push order.
//!
//! Layout 2 (trees `b`/`t` ++ queue id) is migrated into layout 3 when a data
//! directory is opened; layout 1 (one record per message in trees `m`/`s`) is not
//! read, and opening a data directory written with it fails with a clear error.

use super::{DeadLetterRecord, PushRecord, QueueRecord, StateRecord, SubscriberRecord};

/// Layout version written as the first byte of every value.
const V1: u8 = 1;

/// Bytes of an encoded [`StateRecord`] (version 2: with `push_done`).
pub const STATE_LEN: usize = 1 + 8 + 4 + 8 * 4;
/// Bytes of a version-1 [`StateRecord`] (before push queues; still read).
pub const STATE_V1_LEN: usize = 1 + 8 + 4 + 8 * 3;
/// The version byte of a state value with `push_done`.
const STATE_V2: u8 = 2;
const QUEUE_LEN: usize = 1 + 8 * 6 + 2;

/// The tree of every queue's batch records.
pub const BATCHES_TREE: &[u8] = b"batches";
/// The tree of every queue's batch state records.
pub const STATES_TREE: &[u8] = b"states";
/// The tree of every queue's delivery histories (`queue/history.rs`).
pub const HISTORIES_TREE: &[u8] = b"histories";

/// The 8-byte big-endian key of an id.
pub fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// The id of a key written by [`id_key`].
pub fn decode_id_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// The key of batch `batch` of queue `queue_id` in the record trees.
pub fn record_key(queue_id: u64, batch: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&queue_id.to_be_bytes());
    key[8..].copy_from_slice(&batch.to_be_bytes());
    key
}

/// (queue id, batch key) of a key written by [`record_key`].
pub fn decode_record_key(key: &[u8]) -> Option<(u64, u64)> {
    let key: &[u8; 16] = key.try_into().ok()?;
    Some((
        u64::from_be_bytes(key[..8].try_into().ok()?),
        u64::from_be_bytes(key[8..].try_into().ok()?),
    ))
}

/// The queue id of a layout-2 record tree (`b`/`t` ++ queue id), and whether it
/// holds state records.
pub fn layout2_tree(name: &[u8]) -> Option<(u64, bool)> {
    match name {
        [kind @ (b'b' | b't'), id @ ..] if id.len() == 8 => {
            Some((decode_id_key(id)?, *kind == b't'))
        }
        _ => None,
    }
}

/// The name of a layout-2 record tree of queue `queue_id` (tests write them).
pub fn layout2_tree_name(queue_id: u64, states: bool) -> [u8; 9] {
    let mut name = [0u8; 9];
    name[0] = if states { b't' } else { b'b' };
    name[1..].copy_from_slice(&queue_id.to_be_bytes());
    name
}

/// Whether a tree name is a per-message tree of layout 1 (`m`/`s` ++ queue id).
pub fn is_layout1_tree(name: &[u8]) -> bool {
    name.len() == 9 && matches!(name[0], b'm' | b's')
}

/// Reads the big-endian u64 at `at`.
fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// A state value.
pub fn encode_state(st: &StateRecord) -> [u8; STATE_LEN] {
    let mut out = [0u8; STATE_LEN];
    out[0] = STATE_V2;
    out[1..9].copy_from_slice(&st.order_key.to_be_bytes());
    out[9..13].copy_from_slice(&st.reserved_count.to_be_bytes());
    out[13..21].copy_from_slice(&st.reservation_id.to_be_bytes());
    out[21..29].copy_from_slice(&st.reserved_until_ms.to_be_bytes());
    out[29..37].copy_from_slice(&st.available_at_ms.to_be_bytes());
    out[37..45].copy_from_slice(&st.push_done.to_be_bytes());
    out
}

/// Decodes a state value of either version.
pub fn decode_state(value: &[u8]) -> Option<StateRecord> {
    let push_done = match (value.first(), value.len()) {
        (Some(&V1), STATE_V1_LEN) => 0,
        (Some(&STATE_V2), STATE_LEN) => read_u64(value, 37)?,
        _ => return None,
    };
    Some(StateRecord {
        push_done,
        order_key: read_u64(value, 1)?,
        reserved_count: read_u32(value, 9)?,
        reservation_id: read_u64(value, 13)?,
        reserved_until_ms: read_u64(value, 21)?,
        available_at_ms: read_u64(value, 29)?,
    })
}

/// Layout 2 of a queue value adds a length before the dead-letter name and the
/// attachment after it; layout 1 values (no attachment) are still read.
const QUEUE_V2: u8 = 2;
/// Layout 3 adds the push settings (u32 length first) before the attachment.
const QUEUE_V3: u8 = 3;
/// Layout 4 adds the processing times (u32 length first, 0 for none) after the
/// push settings.
const QUEUE_V4: u8 = 4;
/// Layout 5 adds `delivery_history` and `key_max_in_flight` (u32 each) after
/// the processing times; earlier layouts read as the defaults, 10 and 0.
const QUEUE_V5: u8 = 5;
/// `delivery_history` of a queue stored before it existed.
const DEFAULT_DELIVERY_HISTORY: u32 = 10;

/// A queue value: fixed fields, the name, the dead-letter queue name (u16 length
/// first), the push settings (u32 length first, 0 for a pull queue), the
/// processing times (u32 length first, 0 for none), `delivery_history` and
/// `key_max_in_flight` (u32 each), then the attachment to the end of the value. (Layout-2 values written before the
/// attachment existed hold the HTTP API's alerts there, in the JSON form that
/// front end still reads.)
///
/// ```text
/// push settings: kind:u8 retries:u32 retries_delay_s:u64 error_queue:str16
///                count:u16 (slot:u8 name:str16 url:str16 headers:u16 (str16 str16)[headers])[count]
/// ```
/// where `str16` is a u16 length and that many bytes of UTF-8.
pub fn encode_queue(rec: &QueueRecord) -> Vec<u8> {
    let dead_letter = rec.dead_letter.as_ref();
    let dead_letter_name = dead_letter.map_or("", |d| d.queue.as_str());
    let mut out = Vec::with_capacity(
        QUEUE_LEN + rec.name.len() + 2 + dead_letter_name.len() + rec.attachment.len(),
    );
    out.push(QUEUE_V5);
    let fields = [
        rec.id,
        rec.created_at_ms,
        rec.total_pushed,
        rec.message_timeout_ms,
        rec.message_expiration_s,
        dead_letter.map_or(0, |d| u64::from(d.max_reservations)),
    ];
    for field in fields {
        out.extend_from_slice(&field.to_be_bytes());
    }
    // Names are at most 128 bytes (the queue layer checks them), so lengths fit in a
    // u16; saturate rather than wrap if that ever changed.
    let name_len = u16::try_from(rec.name.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&name_len.to_be_bytes());
    out.extend_from_slice(rec.name.as_bytes());
    let dead_letter_len = u16::try_from(dead_letter_name.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&dead_letter_len.to_be_bytes());
    out.extend_from_slice(dead_letter_name.as_bytes());
    let push = rec.push.as_ref().map(encode_push).unwrap_or_default();
    let push_len = u32::try_from(push.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&push_len.to_be_bytes());
    out.extend_from_slice(&push);
    let processing_len = u32::try_from(rec.processing.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&processing_len.to_be_bytes());
    out.extend_from_slice(&rec.processing);
    out.extend_from_slice(&rec.delivery_history.to_be_bytes());
    out.extend_from_slice(&rec.key_max_in_flight.to_be_bytes());
    out.extend_from_slice(&rec.attachment);
    out
}

/// A string with its u16 length first (the queue layer bounds every string far
/// below 64 KiB; a longer one is cut, never wrapped).
fn put_str16(out: &mut Vec<u8>, text: &str) {
    let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&text.as_bytes()[..usize::from(len)]);
}

fn encode_push(push: &PushRecord) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(push.kind);
    out.extend_from_slice(&push.retries.to_be_bytes());
    out.extend_from_slice(&push.retries_delay_s.to_be_bytes());
    put_str16(&mut out, &push.error_queue);
    let count = u16::try_from(push.subscribers.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for s in push.subscribers.iter().take(usize::from(count)) {
        out.push(s.slot);
        put_str16(&mut out, &s.name);
        put_str16(&mut out, &s.url);
        let headers = u16::try_from(s.headers.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&headers.to_be_bytes());
        for (name, value) in s.headers.iter().take(usize::from(headers)) {
            put_str16(&mut out, name);
            put_str16(&mut out, value);
        }
    }
    out
}

/// Reads from the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn str16(&mut self) -> Option<String> {
        let len = usize::from(self.u16()?);
        Some(std::str::from_utf8(self.take(len)?).ok()?.to_owned())
    }
}

fn decode_push(value: &[u8]) -> Option<PushRecord> {
    let mut r = Reader(value);
    let kind = r.u8()?;
    let retries = r.u32()?;
    let retries_delay_s = r.u64()?;
    let error_queue = r.str16()?;
    let count = r.u16()?;
    let mut subscribers = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let slot = r.u8()?;
        let name = r.str16()?;
        let url = r.str16()?;
        let n = r.u16()?;
        let mut headers = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            headers.push((r.str16()?, r.str16()?));
        }
        subscribers.push(SubscriberRecord {
            slot,
            name,
            url,
            headers,
        });
    }
    r.0.is_empty().then_some(PushRecord {
        kind,
        retries,
        retries_delay_s,
        error_queue,
        subscribers,
    })
}

/// Decodes a queue value. The values are returned as stored: range checks are the
/// queue layer's.
pub fn decode_queue(value: &[u8]) -> Option<QueueRecord> {
    let version = *value.first()?;
    if !matches!(version, V1 | QUEUE_V2 | QUEUE_V3 | QUEUE_V4 | QUEUE_V5) || value.len() < QUEUE_LEN
    {
        return None;
    }
    let name_len = usize::from(u16::from_be_bytes(
        value.get(QUEUE_LEN - 2..QUEUE_LEN)?.try_into().ok()?,
    ));
    let name = std::str::from_utf8(value.get(QUEUE_LEN..QUEUE_LEN + name_len)?).ok()?;
    let rest = &value[QUEUE_LEN + name_len..];
    let (dead_letter_name, mut attachment) = if version == V1 {
        (std::str::from_utf8(rest).ok()?, &[][..])
    } else {
        let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
        let dead_letter_name = std::str::from_utf8(rest.get(2..2 + len)?).ok()?;
        (dead_letter_name, rest.get(2 + len..)?)
    };
    let mut push = None;
    let mut processing = Vec::new();
    let mut delivery_history = DEFAULT_DELIVERY_HISTORY;
    let mut key_max_in_flight = 0;
    if version >= QUEUE_V3 {
        let mut r = Reader(attachment);
        let len = usize::try_from(r.u32()?).ok()?;
        let section = r.take(len)?;
        if len > 0 {
            push = Some(decode_push(section)?);
        }
        if version >= QUEUE_V4 {
            let len = usize::try_from(r.u32()?).ok()?;
            processing = r.take(len)?.to_vec();
        }
        if version >= QUEUE_V5 {
            delivery_history = r.u32()?;
            key_max_in_flight = r.u32()?;
        }
        attachment = r.0;
    }
    let max_reservations = u32::try_from(read_u64(value, 41)?).ok()?;
    let dead_letter = (!dead_letter_name.is_empty()).then(|| DeadLetterRecord {
        queue: dead_letter_name.to_owned(),
        max_reservations,
    });
    Some(QueueRecord {
        id: read_u64(value, 1)?,
        name: name.to_owned(),
        created_at_ms: read_u64(value, 9)?,
        total_pushed: read_u64(value, 17)?,
        message_timeout_ms: read_u64(value, 25)?,
        message_expiration_s: read_u64(value, 33)?,
        dead_letter,
        push,
        attachment: attachment.to_vec(),
        processing,
        delivery_history,
        key_max_in_flight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_order_keys_numerically() {
        let ids = [0u64, 1, 255, 256, 65_535, 1 << 40, u64::MAX - 1, u64::MAX];
        for pair in ids.windows(2) {
            assert!(id_key(pair[0]) < id_key(pair[1]), "{pair:?}");
        }
        for id in ids {
            assert_eq!(decode_id_key(&id_key(id)), Some(id));
        }
        assert!(
            record_key(1, u64::MAX) < record_key(2, 0),
            "a queue's records are contiguous"
        );
        assert!(record_key(7, 1) < record_key(7, 256));
        assert_eq!(decode_record_key(&record_key(7, 9)), Some((7, 9)));
        assert_eq!(layout2_tree(&layout2_tree_name(5, true)), Some((5, true)));
        assert_eq!(layout2_tree(&layout2_tree_name(5, false)), Some((5, false)));
        assert_eq!(layout2_tree(b"batches"), None);
        assert!(is_layout1_tree(b"m\0\0\0\0\0\0\0\x01") && !is_layout1_tree(b"queues"));
    }

    #[test]
    fn should_round_trip_states_and_queues() {
        let st = StateRecord {
            order_key: 7,
            reserved_count: 3,
            reservation_id: 99,
            reserved_until_ms: 1234,
            available_at_ms: 5,
            push_done: 1 << 63,
        };
        assert_eq!(decode_state(&encode_state(&st)), Some(st));
        // A version-1 state (before push queues) reads with nothing delivered.
        let mut v1 = encode_state(&st)[..STATE_V1_LEN].to_vec();
        v1[0] = V1;
        assert_eq!(decode_state(&v1), Some(StateRecord { push_done: 0, ..st }));
        let q = QueueRecord {
            key_max_in_flight: 0,
            delivery_history: 10,
            id: 42,
            name: "jobs".into(),
            created_at_ms: 10,
            total_pushed: 11,
            message_timeout_ms: 12,
            message_expiration_s: 13,
            dead_letter: None,
            push: None,
            attachment: Vec::new(),
            processing: Vec::new(),
        };
        assert_eq!(decode_queue(&encode_queue(&q)), Some(q.clone()));
        let with_push = QueueRecord {
            push: Some(PushRecord {
                kind: 1,
                retries: 7,
                retries_delay_s: 30,
                error_queue: "p/errors".into(),
                subscribers: vec![SubscriberRecord {
                    slot: 3,
                    name: "s1".into(),
                    url: "http://127.0.0.1:1/x".into(),
                    headers: vec![("X-A".into(), "b".into())],
                }],
            }),
            attachment: b"[]".to_vec(),
            ..q.clone()
        };
        assert_eq!(
            decode_queue(&encode_queue(&with_push)),
            Some(with_push.clone())
        );
        let with_dead_letter = QueueRecord {
            dead_letter: Some(DeadLetterRecord {
                queue: "jobs.dead".into(),
                max_reservations: 5,
            }),
            ..q.clone()
        };
        assert_eq!(
            decode_queue(&encode_queue(&with_dead_letter)),
            Some(with_dead_letter.clone())
        );
        let with_attachment = QueueRecord {
            attachment: br#"[{"id":"a1"}]"#.to_vec(),
            ..with_dead_letter
        };
        assert_eq!(
            decode_queue(&encode_queue(&with_attachment)),
            Some(with_attachment)
        );
        assert_eq!(decode_queue(b"\x02junk"), None);
        assert_eq!(decode_queue(b"\x03"), None);
        let with_processing = QueueRecord {
            processing: vec![1, 5, 0, 0, 0, 9],
            ..with_push.clone()
        };
        assert_eq!(
            decode_queue(&encode_queue(&with_processing)),
            Some(with_processing)
        );
        let keeping_3 = QueueRecord {
            delivery_history: 3,
            key_max_in_flight: 2,
            ..with_push.clone()
        };
        assert_eq!(
            decode_queue(&encode_queue(&keeping_3)),
            Some(keeping_3.clone())
        );
        // A layout-4 value (before delivery_history) reads with the default 10.
        let mut v4 = encode_queue(&keeping_3);
        let at = v4.len() - keeping_3.attachment.len() - 8;
        v4.drain(at..at + 8);
        v4[0] = QUEUE_V4;
        assert_eq!(decode_queue(&v4), Some(with_push.clone()));
        // A layout-3 value (before processing times) reads with none: layout 4
        // without the processing section's length.
        let mut v3 = encode_queue(&with_push);
        let at = v3.len() - with_push.attachment.len() - 12;
        v3.drain(at..at + 12);
        v3[0] = QUEUE_V3;
        assert_eq!(decode_queue(&v3), Some(with_push));
    }

    #[test]
    fn should_still_read_layout1_queue_records() {
        // Layout 1: fixed fields, name, then the dead-letter name to the end.
        let mut v1 = vec![0u8; QUEUE_LEN];
        v1[0] = V1;
        for (i, field) in [7u64, 1, 2, 30_000, 60, 3].iter().enumerate() {
            v1[1 + i * 8..9 + i * 8].copy_from_slice(&field.to_be_bytes());
        }
        v1[QUEUE_LEN - 2..].copy_from_slice(&4u16.to_be_bytes());
        v1.extend_from_slice(b"jobsjobs.dead");
        let rec = decode_queue(&v1).expect("layout 1 decodes");
        assert_eq!((rec.id, rec.name.as_str()), (7, "jobs"));
        let dead_letter = rec.dead_letter.expect("dead letter");
        assert_eq!(
            (dead_letter.queue.as_str(), dead_letter.max_reservations),
            ("jobs.dead", 3)
        );
        assert!(rec.attachment.is_empty());
    }
}
