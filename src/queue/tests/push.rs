//! Push queues in the state machine: a delivery round's end (`settle`), the
//! acknowledgement of a 202 (`acknowledge`), the delivered set kept across a
//! restart, and the rules of push settings (`queue/push.rs`).

use super::super::push::{
    NewSubscriber, PushPatch, QueueKind, SubscribersChange, DEFAULT_RETRIES,
    DEFAULT_RETRIES_DELAY_S,
};
use super::super::state::Settle;
use super::super::types::{MessageState, QueueName, QueueSettings, SettingsPatch};
use super::Harness;
use crate::error::QueueError;

fn subscriber(name: &str) -> NewSubscriber {
    NewSubscriber {
        name: name.to_owned(),
        url: format!("http://127.0.0.1:9/{name}"),
        headers: vec![("X-Name".to_owned(), name.to_owned())],
    }
}

fn push_patch(names: &[&str]) -> SettingsPatch {
    SettingsPatch {
        push: Some(PushPatch {
            subscribers: Some(SubscribersChange::Replace(
                names.iter().map(|n| subscriber(n)).collect(),
            )),
            ..PushPatch::default()
        }),
        ..SettingsPatch::default()
    }
}

fn multicast(names: &[&str]) -> QueueSettings {
    push_patch(names)
        .create(&QueueName::new("q").unwrap())
        .expect("push settings")
}

#[test]
fn a_retry_keeps_the_delivered_set_and_sends_the_message_to_the_front_after_the_delay() {
    let mut h = Harness::with_settings(multicast(&["a", "b"]));
    let ids = h.push(&["m1", "m2"]);
    let got = h.reserve(1, Some(15_000)).remove(0);
    assert_eq!((got.info.id, got.info.push_done), (ids[0], 0));
    let rid = got.info.reservation_id;
    h.op(|s, now, _| s.settle(now, ids[0], rid, 0b01, Settle::Retry { delay_ms: 3_000 }))
        .unwrap();
    assert_eq!(h.get(ids[0]).unwrap().info.state, MessageState::Delayed);
    assert_eq!(h.peek_ids(2), [ids[1]], "hidden during the delay");
    h.advance(3_000);
    assert_eq!(h.peek_ids(2), [ids[0], ids[1]], "back at the front");
    h.restart();
    let again = h.reserve(1, None).remove(0);
    assert_eq!(
        (
            again.info.id,
            again.info.push_done,
            again.info.reserved_count
        ),
        (ids[0], 0b01, 2),
        "the delivered set and the try count survive a restart"
    );
}

#[test]
fn a_hold_keeps_the_reservation_until_acknowledged_or_timed_out() {
    let mut h = Harness::with_settings(multicast(&["a", "b"]));
    let id = h.push(&["m"])[0];
    let rid = h.reserve(1, Some(15_000))[0].info.reservation_id;
    h.op(|s, now, _| s.settle(now, id, rid, 0b01, Settle::Hold { for_ms: 60_000 }))
        .unwrap();
    h.advance(30_000);
    let view = h.get(id).unwrap();
    assert_eq!(
        (view.info.state, view.info.reserved_until_ms),
        (MessageState::Reserved, h.now + 30_000),
        "held past the delivery lease, under the same reservation"
    );
    // The wrong reservation is refused; the right one with b completes it.
    assert_eq!(
        h.op(|s, now, _| s.acknowledge(now, id, rid + 1, 0b10, 0b11)),
        Err(QueueError::ReservationMismatch(id))
    );
    assert_eq!(
        h.op(|s, now, _| s.acknowledge(now, id, rid, 0b10, 0b11)),
        Ok(true)
    );
    assert_eq!(h.get(id), Err(QueueError::MessageNotFound(id)));

    // A hold nobody acknowledges ends like a lease: requeued at the front.
    let other = h.push(&["n"])[0];
    let rid = h.reserve(1, Some(15_000))[0].info.reservation_id;
    h.op(|s, now, _| s.settle(now, other, rid, 0, Settle::Hold { for_ms: 1_000 }))
        .unwrap();
    h.advance(1_000);
    assert_eq!(
        h.op(|s, now, _| s.acknowledge(now, other, rid, 0b01, 0b11)),
        Err(QueueError::ReservationExpired(other))
    );
    assert_eq!(h.peek_ids(1), [other]);
}

#[test]
fn an_acknowledgement_short_of_the_required_set_keeps_the_message() {
    let mut h = Harness::with_settings(multicast(&["a", "b", "c"]));
    let id = h.push(&["m"])[0];
    let rid = h.reserve(1, None)[0].info.reservation_id;
    h.op(|s, now, _| s.settle(now, id, rid, 0b001, Settle::Hold { for_ms: 60_000 }))
        .unwrap();
    assert_eq!(
        h.op(|s, now, _| s.acknowledge(now, id, rid, 0b010, 0b111)),
        Ok(false)
    );
    assert_eq!(h.get(id).unwrap().info.push_done, 0b011);
    h.restart();
    assert_eq!(h.get(id).unwrap().info.push_done, 0b011, "written down");
}

#[test]
fn push_settings_take_defaults_keep_slots_and_refuse_type_changes() {
    let q = QueueName::new("q").unwrap();
    let settings = multicast(&["a", "b"]);
    let push = settings.push.clone().unwrap();
    assert_eq!(push.kind, QueueKind::Multicast, "push without a type");
    assert_eq!(
        (push.retries, push.retries_delay_s),
        (DEFAULT_RETRIES, DEFAULT_RETRIES_DELAY_S)
    );
    assert_eq!(push.all_slots(), 0b11);

    // Removing a keeps b's slot; a new subscriber takes the free one.
    let removed = SettingsPatch {
        push: Some(PushPatch {
            subscribers: Some(SubscribersChange::Remove(vec!["a".into()])),
            ..PushPatch::default()
        }),
        ..SettingsPatch::default()
    }
    .apply(&q, &settings)
    .unwrap();
    let slots = |s: &QueueSettings| -> Vec<(String, u8)> {
        let push = s.push.as_ref().unwrap();
        push.subscribers
            .iter()
            .map(|s| (s.name.clone(), s.slot))
            .collect()
    };
    assert_eq!(slots(&removed), [("b".to_owned(), 1)]);
    let replaced = push_patch(&["c", "b"]).apply(&q, &removed).unwrap();
    assert_eq!(slots(&replaced), [("c".to_owned(), 0), ("b".to_owned(), 1)]);

    let invalid = |patch: SettingsPatch, base: &QueueSettings| {
        matches!(patch.apply(&q, base), Err(QueueError::InvalidArgument(_)))
    };
    let pull = QueueSettings::default();
    assert!(
        invalid(push_patch(&["a"]), &pull),
        "subscribers on a pull queue"
    );
    let to_pull = SettingsPatch {
        kind: Some(QueueKind::Pull),
        ..SettingsPatch::default()
    };
    assert!(
        invalid(to_pull, &settings),
        "a push queue cannot become pull"
    );
    let to_unicast = SettingsPatch {
        kind: Some(QueueKind::Unicast),
        ..SettingsPatch::default()
    };
    assert!(invalid(to_unicast, &settings));
    let remove_all = SettingsPatch {
        push: Some(PushPatch {
            subscribers: Some(SubscribersChange::Remove(vec!["a".into(), "b".into()])),
            ..PushPatch::default()
        }),
        ..SettingsPatch::default()
    };
    assert!(invalid(remove_all, &settings), "at least one subscriber");
    let out_of_range = |retries, delay| SettingsPatch {
        push: Some(PushPatch {
            retries,
            retries_delay_s: delay,
            ..PushPatch::default()
        }),
        ..SettingsPatch::default()
    };
    assert!(invalid(out_of_range(Some(101), None), &settings));
    assert!(invalid(out_of_range(None, Some(2)), &settings));
    assert!(invalid(out_of_range(None, Some(86_401)), &settings));
    assert!(out_of_range(Some(100), Some(3))
        .apply(&q, &settings)
        .is_ok());
    let mut bad_url = subscriber("x");
    bad_url.url = "ftp://host/".into();
    let bad = SettingsPatch {
        push: Some(PushPatch {
            subscribers: Some(SubscribersChange::Upsert(vec![bad_url])),
            ..PushPatch::default()
        }),
        ..SettingsPatch::default()
    };
    assert!(invalid(bad, &settings));
    let mut iron_header = subscriber("x");
    iron_header.headers = vec![("Iron-Message-Id".into(), "1".into())];
    let bad = SettingsPatch {
        push: Some(PushPatch {
            subscribers: Some(SubscribersChange::Upsert(vec![iron_header])),
            ..PushPatch::default()
        }),
        ..SettingsPatch::default()
    };
    assert!(invalid(bad, &settings));
}

#[test]
fn a_message_redriven_out_of_a_push_queue_leaves_its_push_headers_behind() {
    use super::super::push::wrap_body;
    use super::super::types::NewMessage;
    let mut h = Harness::with_settings(multicast(&["a"]));
    let headers = vec![("X-A".to_owned(), "1".to_owned())];
    let stored = wrap_body(&headers, &bytes::Bytes::from_static(b"payload"));
    let messages = vec![NewMessage {
        key: None,
        priority: crate::queue::types::DEFAULT_PRIORITY,
        body: stored,
        delay_ms: 0,
    }];
    h.op(|s, now, io| s.push(now, io, messages)).unwrap();
    let moved = h.redrive(1);
    assert_eq!(&moved[0].body[..], b"payload");
}
