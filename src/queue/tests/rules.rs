//! Every rule of docs/semantics.md, checked on the state machine with a manual
//! clock (section by section, in the page's order).

use bytes::Bytes;

use super::super::history::{HistoryUpdate, Outcome};
use super::super::recovery::{meta_from_record, rebuild};
use super::super::staging::LogWrite;
use super::super::state::{Event, QueueMeta, QueueState, Reserved};
use super::super::types::{
    DeadLetter, DeadLetterPatch, MessageState, NewMessage, QueueName, QueueSettings, SettingsPatch,
    Transfer, AUTO_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, MAX_EXPIRATION_S, MIN_TIMEOUT_MS,
};
use super::{text, Harness, START_MS};
use crate::error::QueueError;
use crate::storage::{DeadLetterRecord, QueueLog, QueueRecord};

fn ids(messages: &[super::MessageView]) -> Vec<u64> {
    messages.iter().map(|m| m.info.id).collect()
}

fn with_dead_letter(max_reservations: u32) -> QueueSettings {
    QueueSettings {
        dead_letter: Some(DeadLetter {
            queue: QueueName::new("q.dead").unwrap(),
            max_reservations,
        }),
        ..QueueSettings::default()
    }
}

/// (waiter, message ids) of every Woken event, and the waiters whose wait ended.
fn wakes(events: Vec<Event>) -> (Vec<(super::WaiterId, Vec<u64>)>, Vec<super::WaiterId>) {
    let mut woken = Vec::new();
    let mut ended = Vec::new();
    for event in events {
        match event {
            Event::Woken { waiter, result, .. } => {
                woken.push((waiter, ids(&result.expect("a woken reserve succeeds"))));
            }
            Event::WaitEnded(waiter) => ended.push(waiter),
            Event::DeadLetters { .. } => {}
        }
    }
    (woken, ended)
}

// ----- life of a message -----------------------------------------------------

#[test]
fn push_gives_increasing_ids_and_reserve_returns_messages_in_push_order() {
    let mut h = Harness::new();
    let pushed = h.push(&["a", "b", "c"]);
    assert!(pushed.windows(2).all(|w| w[0] < w[1]));
    let got = h.reserve(2, None);
    assert_eq!(ids(&got), &pushed[..2]);
    assert_eq!((text(&got[0]), text(&got[1])), ("a", "b"));
    let stats = h.stats();
    assert_eq!(
        (
            stats.size,
            stats.available,
            stats.reserved,
            stats.delayed,
            stats.total_pushed
        ),
        (3, 1, 2, 0, 3)
    );
}

#[test]
fn a_reserve_is_a_lease_with_a_growing_fencing_token() {
    let mut h = Harness::new();
    h.push(&["a", "b"]);
    let first = h.reserve(1, None).remove(0);
    assert_eq!(first.info.state, MessageState::Reserved);
    assert_eq!(first.info.reserved_count, 1);
    assert_eq!(first.info.reserved_until_ms, h.now + DEFAULT_TIMEOUT_MS);
    let second = h.reserve(1, Some(5_000)).remove(0);
    assert_eq!(second.info.reserved_until_ms, h.now + 5_000);
    assert!(second.info.reservation_id > first.info.reservation_id);
}

#[test]
fn an_expired_lease_requeues_the_message_at_the_front_at_its_deadline() {
    let mut h = Harness::new();
    let pushed = h.push(&["old", "new"]);
    let old = h.reserve(1, Some(1_000)).remove(0);
    h.advance(999);
    assert_eq!(
        h.peek_ids(10),
        [pushed[1]],
        "still leased 1 ms before the deadline"
    );
    h.advance(1);
    assert_eq!(
        h.peek_ids(10),
        pushed,
        "requeued at the deadline, in front of newer"
    );
    let again = h.reserve(1, None).remove(0);
    assert_eq!((again.info.id, again.info.reserved_count), (old.info.id, 2));
    assert!(again.info.reservation_id > old.info.reservation_id);
}

#[test]
fn a_late_request_with_an_expired_lease_is_told_expired_and_a_superseded_one_mismatch() {
    let mut h = Harness::new();
    let id = h.push(&["a"])[0];
    let lease = h.reserve(1, Some(1_000)).remove(0).info.reservation_id;
    // Deadlines are checked at request time: `now >= deadline` is expired.
    h.now += 1_000;
    assert_eq!(
        h.delete(&[(id, Some(lease))]),
        Err(QueueError::ReservationExpired(id))
    );
    assert_eq!(
        h.touch(id, lease, None),
        Err(QueueError::ReservationExpired(id))
    );
    assert_eq!(
        h.release(id, lease, 0),
        Err(QueueError::ReservationExpired(id))
    );
    // Reserved again: the old reservation is now superseded.
    let newer = h.reserve(1, None).remove(0).info.reservation_id;
    assert_eq!(
        h.delete(&[(id, Some(lease))]),
        Err(QueueError::ReservationMismatch(id))
    );
    assert_eq!(h.delete(&[(id, Some(newer))]), Ok(1));
}

#[test]
fn leases_ending_together_requeue_in_id_order_so_the_larger_id_is_first() {
    let mut h = Harness::new();
    let pushed = h.push(&["a", "b"]);
    h.reserve(2, Some(300));
    h.advance(300);
    assert_eq!(h.peek_ids(10), [pushed[1], pushed[0]]);
}

#[test]
fn touch_issues_a_new_reservation_and_deadline_and_retires_the_old_one() {
    let mut h = Harness::new();
    let id = h.push(&["a"])[0];
    let old = h.reserve(1, Some(1_000)).remove(0).info.reservation_id;
    h.advance(500);
    let lease = h.touch(id, old, Some(2_000)).unwrap();
    assert!(lease.reservation_id > old);
    assert_eq!(lease.reserved_until_ms, h.now + 2_000);
    assert_eq!(
        h.touch(id, old, None),
        Err(QueueError::ReservationMismatch(id))
    );
    h.advance(1_999);
    assert_eq!(
        h.get(id).unwrap().info.state,
        MessageState::Reserved,
        "extended"
    );
    let default = h.touch(id, lease.reservation_id, None).unwrap();
    assert_eq!(default.reserved_until_ms, h.now + DEFAULT_TIMEOUT_MS);
    assert_eq!(
        h.get(id).unwrap().info.reserved_count,
        1,
        "touch does not count"
    );
}

#[test]
fn release_puts_a_message_at_the_front_latest_first_and_a_delay_holds_it_back() {
    let mut h = Harness::new();
    let pushed = h.push(&["a", "b", "c"]);
    let got = h.reserve(2, None);
    h.release(got[0].info.id, got[0].info.reservation_id, 0)
        .unwrap();
    h.release(got[1].info.id, got[1].info.reservation_id, 0)
        .unwrap();
    assert_eq!(h.peek_ids(10), [pushed[1], pushed[0], pushed[2]]);
    let b = h.reserve(1, None).remove(0);
    assert_eq!((b.info.id, b.info.reserved_count), (pushed[1], 2));
    h.release(b.info.id, b.info.reservation_id, 1_000).unwrap();
    assert_eq!(h.get(b.info.id).unwrap().info.state, MessageState::Delayed);
    assert_eq!(h.stats().delayed, 1);
    h.advance(1_000);
    assert_eq!(
        h.peek_ids(10),
        [pushed[1], pushed[0], pushed[2]],
        "back at the front"
    );
    assert_eq!(
        h.release(b.info.id, b.info.reservation_id, 0),
        Err(QueueError::ReservationMismatch(b.info.id)),
        "released once"
    );
}

#[test]
fn a_delayed_push_becomes_available_when_its_delay_ends_in_push_order() {
    let mut h = Harness::new();
    let late = h.push_delayed("late", 2_000);
    let early = h.push(&["early"])[0];
    let view = h.get(late).unwrap().info;
    assert_eq!(
        (view.state, view.available_at_ms),
        (MessageState::Delayed, h.now + 2_000)
    );
    assert_eq!(h.peek_ids(10), [early]);
    h.advance(2_000);
    assert_eq!(h.peek_ids(10), [late, early], "pushed first, so first");
}

#[test]
fn delete_needs_the_current_reservation_of_a_reserved_message_and_is_all_or_nothing() {
    let mut h = Harness::new();
    let pushed = h.push(&["a", "b", "c"]);
    let held = h.reserve(1, None).remove(0);
    let rid = held.info.reservation_id;
    assert_eq!(
        h.delete(&[(pushed[0], None)]),
        Err(QueueError::ReservationMismatch(pushed[0]))
    );
    assert_eq!(
        h.delete(&[(pushed[0], Some(rid + 1))]),
        Err(QueueError::ReservationMismatch(pushed[0]))
    );
    assert_eq!(
        h.delete(&[(pushed[1], Some(rid))]),
        Err(QueueError::ReservationMismatch(pushed[1]))
    );
    assert_eq!(
        h.delete(&[(999, None)]),
        Err(QueueError::MessageNotFound(999))
    );
    assert!(matches!(
        h.delete(&[(pushed[1], None), (pushed[1], None)]),
        Err(QueueError::InvalidArgument(_))
    ));
    // One failing entry: nothing is deleted.
    assert_eq!(
        h.delete(&[(pushed[1], None), (pushed[0], None)]),
        Err(QueueError::ReservationMismatch(pushed[0]))
    );
    assert_eq!(h.stats().size, 3);
    assert_eq!(
        h.delete(&[(pushed[1], None), (pushed[0], Some(rid))]),
        Ok(2)
    );
    assert_eq!(h.peek_ids(10), [pushed[2]]);
    assert_eq!(
        h.get(pushed[0]),
        Err(QueueError::MessageNotFound(pushed[0]))
    );
}

#[test]
fn a_delayed_message_can_be_deleted_without_a_reservation() {
    let mut h = Harness::new();
    let id = h.push_delayed("later", 5_000);
    assert_eq!(h.delete(&[(id, None)]), Ok(1));
    assert_eq!(h.stats().size, 0);
}

#[test]
fn peek_changes_nothing_and_get_shows_any_state_without_reservation_ids() {
    let mut h = Harness::new();
    let pushed = h.push(&["a", "b"]);
    let reserved = h.reserve(1, Some(9_000)).remove(0);
    let before = h.stats();
    let peeked = h.peek(10);
    assert_eq!(ids(&peeked), [pushed[1]]);
    assert_eq!(peeked[0].info.reservation_id, 0);
    assert_eq!(h.stats(), before, "peek changes nothing");
    let got = h.get(pushed[0]).unwrap();
    assert_eq!(got.info.state, MessageState::Reserved);
    assert_eq!(
        got.info.reservation_id, 0,
        "get never shows a reservation id"
    );
    assert_eq!(got.info.reserved_until_ms, reserved.info.reserved_until_ms);
    assert_eq!((text(&got), got.info.reserved_count), ("a", 1));
}

#[test]
fn reserve_with_delete_hands_out_and_removes_at_most_once() {
    let mut h = Harness::new();
    let pushed = h.push(&["a", "b"]);
    let taken = match h.try_reserve(1, None, 0, true).unwrap() {
        Reserved::Now(messages) => messages,
        Reserved::Parked(_) => panic!("parked"),
    };
    assert_eq!(ids(&taken), [pushed[0]]);
    assert_eq!(taken[0].info.state, MessageState::Deleted);
    assert_eq!(
        (taken[0].info.reservation_id, taken[0].info.reserved_count),
        (0, 1)
    );
    assert_eq!(
        h.get(pushed[0]),
        Err(QueueError::MessageNotFound(pushed[0]))
    );
    assert_eq!(h.stats().size, 1);
}

// ----- expiration ---------------------------------------------------------------

#[test]
fn messages_expire_at_their_time_whatever_their_state() {
    let mut h = Harness::with_settings(QueueSettings {
        message_expiration_s: 2,
        ..QueueSettings::default()
    });
    let pushed = h.push(&["available", "reserved"]);
    h.reserve(1, Some(60_000));
    h.push_delayed("delayed", 10_000);
    h.advance(1_000);
    let later = h.push(&["later"])[0];
    h.advance(999);
    assert_eq!(h.stats().size, 4);
    h.advance(1);
    let stats = h.stats();
    assert_eq!(
        (stats.size, stats.available, stats.reserved, stats.delayed),
        (1, 1, 0, 0),
        "available, reserved and delayed messages expired together"
    );
    assert_eq!(
        h.get(pushed[1]),
        Err(QueueError::MessageNotFound(pushed[1]))
    );
    h.advance(1_000);
    assert_eq!(h.stats().size, 0, "the later push expired a second later");
    assert_eq!(h.get(later), Err(QueueError::MessageNotFound(later)));
    assert_eq!(h.stats().total_pushed, 4, "total_pushed never goes down");
}

#[test]
fn messages_gathered_into_one_record_still_expire_each_at_its_own_time() {
    let mut h = Harness::with_settings(QueueSettings {
        message_expiration_s: 1,
        ..QueueSettings::default()
    });
    // No write between the pushes: both land in one batch record.
    let first = h.push(&["first"])[0];
    h.advance(500);
    let second = h.push(&["second"])[0];
    h.write(false);
    h.advance(500);
    assert_eq!(h.peek_ids(10), [second], "the first expired on time");
    h.advance(500);
    assert!(h.peek_ids(10).is_empty());
    assert_eq!(h.get(first), Err(QueueError::MessageNotFound(first)));
}

#[test]
fn a_new_expiration_applies_to_messages_pushed_afterwards() {
    let mut h = Harness::new();
    let old = h.push(&["old"])[0];
    h.update(&SettingsPatch {
        message_expiration_s: Some(1),
        ..SettingsPatch::default()
    })
    .unwrap();
    let new = h.push(&["new"])[0];
    h.advance(1_000);
    assert_eq!(h.peek_ids(10), [old]);
    assert_eq!(h.get(new), Err(QueueError::MessageNotFound(new)));
}

// ----- dead letters and moves ------------------------------------------------------

#[test]
fn a_message_reserved_too_often_moves_to_the_dead_letter_queue_on_its_next_reserve() {
    let mut h = Harness::with_settings(with_dead_letter(2));
    let id = h.push(&["poison"])[0];
    for attempt in 1..=2 {
        let got = h.reserve(1, None).remove(0);
        assert_eq!(got.info.reserved_count, attempt);
        h.release(id, got.info.reservation_id, 0).unwrap();
    }
    h.take_events();
    assert!(h.reserve(1, None).is_empty(), "moved, not delivered");
    let events = h.take_events();
    let [Event::DeadLetters { to, messages }] = events.as_slice() else {
        panic!("one move: {events:?}")
    };
    assert_eq!(to.as_str(), "q.dead");
    assert_eq!((messages[0].id, messages[0].reserved_count), (id, 2));
    assert_eq!(&messages[0].body[..], b"poison");
    // MOVING: invisible, but counted until the move is done.
    assert_eq!(h.get(id), Err(QueueError::MessageNotFound(id)));
    assert_eq!((h.stats().size, h.stats().available), (1, 0));
    h.transfer_done(&[id], true);
    assert_eq!(h.stats().size, 0);
}

#[test]
fn a_failed_move_gives_the_message_back_at_its_place() {
    let mut h = Harness::with_settings(with_dead_letter(1));
    let pushed = h.push(&["a", "b"]);
    let a = h.reserve(1, None).remove(0);
    h.release(a.info.id, a.info.reservation_id, 0).unwrap();
    // a (count 1) moves; b is reserved instead.
    let got = h.reserve(1, None);
    assert_eq!(ids(&got), [pushed[1]]);
    h.transfer_done(&[pushed[0]], false);
    assert_eq!(h.peek_ids(10), [pushed[0]]);
    assert_eq!(h.get(pushed[0]).unwrap().info.reserved_count, 1);
}

#[test]
fn redrive_moves_available_messages_in_order_with_their_count_reset() {
    let mut h = Harness::new();
    let pushed = h.push(&["a", "b", "c"]);
    let a = h.reserve(1, None).remove(0);
    h.release(a.info.id, a.info.reservation_id, 0).unwrap();
    let moving = h.redrive(2);
    assert_eq!(
        moving.iter().map(|m| m.id).collect::<Vec<_>>(),
        &pushed[..2]
    );
    assert!(moving.iter().all(|m| m.reserved_count == 0));
    assert_eq!(h.peek_ids(10), [pushed[2]]);
    h.transfer_done(&[pushed[0], pushed[1]], true);
    assert_eq!(h.stats().size, 1);
    let to_itself = QueueName::new("q").unwrap();
    let err = h.state.redrive(&mut h.io, &to_itself, 1).unwrap_err();
    assert!(matches!(err, QueueError::InvalidArgument(_)));
}

#[test]
fn adopted_messages_keep_id_body_and_count_and_their_expiry_restarts() {
    let mut h = Harness::with_settings(QueueSettings {
        message_expiration_s: 5,
        ..QueueSettings::default()
    });
    let transfer = |id| Transfer {
        key: None,
        history: Vec::new(),
        priority: crate::queue::types::DEFAULT_PRIORITY,
        id,
        body: Bytes::from_static(b"moved"),
        reserved_count: 3,
    };
    assert_eq!(h.adopt(vec![transfer(500), transfer(501)]), 2);
    assert_eq!(
        h.adopt(vec![transfer(500)]),
        0,
        "a repeated move adds nothing"
    );
    let got = h.get(500).unwrap();
    assert_eq!((text(&got), got.info.reserved_count), ("moved", 3));
    assert_eq!(got.info.expires_at_ms, h.now + 5_000);
    assert_eq!(h.stats().total_pushed, 2);
    let reserved = h.reserve(1, None).remove(0);
    assert_eq!(reserved.info.reserved_count, 4);
}

// ----- priorities ------------------------------------------------------------------

/// Pushes one message per (body, priority), in one turn.
fn push_with_priorities(h: &mut Harness, messages: &[(&str, u8)]) -> Vec<u64> {
    let messages = messages
        .iter()
        .map(|&(body, priority)| NewMessage {
            key: None,
            body: Bytes::copy_from_slice(body.as_bytes()),
            delay_ms: 0,
            priority,
        })
        .collect();
    h.op(|s, now, io| s.push(now, io, messages)).unwrap()
}

#[test]
fn priorities_go_lower_first_fifo_within_and_a_requeue_to_the_front_of_its_own() {
    let mut h = Harness::new();
    push_with_priorities(
        &mut h,
        &[
            ("low1", 12),
            ("mid1", 8),
            ("high1", 2),
            ("low2", 12),
            ("high2", 2),
        ],
    );
    h.push(&["mid2"]); // the default priority, 8
    let order: Vec<String> = h.peek(6).iter().map(|m| text(m).to_owned()).collect();
    assert_eq!(order, ["high1", "high2", "mid1", "mid2", "low1", "low2"]);
    assert_eq!(h.peek(1)[0].info.priority, 2);

    // Leases run out on high1 and low1: each goes to the front of its own priority,
    // not of the queue.
    let taken = h.reserve(5, Some(1_000));
    assert_eq!(text(&taken[4]), "low1");
    let (high1, low1) = (&taken[0], &taken[4]);
    for m in &taken[1..4] {
        h.delete(&[(m.info.id, Some(m.info.reservation_id))])
            .unwrap();
    }
    h.release(low1.info.id, low1.info.reservation_id, 0)
        .unwrap();
    h.advance(1_000);
    assert_eq!(
        h.get(high1.info.id).unwrap().info.state,
        MessageState::Available
    );
    push_with_priorities(&mut h, &[("high3", 2), ("low3", 12)]);
    let order: Vec<String> = h.peek(6).iter().map(|m| text(m).to_owned()).collect();
    assert_eq!(order, ["high1", "high3", "low1", "low2", "low3"]);

    // The order, priorities included, survives a restart.
    h.write(false);
    h.restart();
    let after: Vec<(String, u8)> = h
        .peek(6)
        .iter()
        .map(|m| (text(m).to_owned(), m.info.priority))
        .collect();
    assert_eq!(
        after,
        [
            ("high1".to_owned(), 2),
            ("high3".to_owned(), 2),
            ("low1".to_owned(), 12),
            ("low2".to_owned(), 12),
            ("low3".to_owned(), 12)
        ]
    );
    // A requeue after the restart still goes in front of the ones before it.
    let taken = h.reserve(4, None);
    for m in [&taken[1], &taken[0], &taken[3]] {
        h.release(m.info.id, m.info.reservation_id, 0).unwrap();
    }
    let order: Vec<String> = h.peek(6).iter().map(|m| text(m).to_owned()).collect();
    assert_eq!(
        order,
        ["high1", "high3", "low2", "low3"],
        "low1 is reserved"
    );
}

#[test]
fn a_moved_message_keeps_its_priority() {
    let mut h = Harness::with_settings(with_dead_letter(1));
    push_with_priorities(&mut h, &[("urgent", 0), ("slow", 15)]);
    let taken = h.reserve(2, Some(1_000));
    assert_eq!(taken.len(), 2);
    h.advance(1_000);
    assert!(
        h.reserve(2, None).is_empty(),
        "both reserved once: dead letters"
    );
    let dead: Vec<(u64, u8)> = h
        .take_events()
        .into_iter()
        .flat_map(|event| match event {
            Event::DeadLetters { messages, .. } => messages,
            _ => Vec::new(),
        })
        .map(|m| (m.id, m.priority))
        .collect();
    assert_eq!(dead, [(taken[0].info.id, 0), (taken[1].info.id, 15)]);
    let adopted = Transfer {
        key: None,
        history: Vec::new(),
        id: 900,
        body: Bytes::from_static(b"in"),
        reserved_count: 0,
        priority: 3,
    };
    let mut other = Harness::new();
    other.push(&["default"]);
    assert_eq!(other.adopt(vec![adopted]), 1);
    other.write(false);
    other.restart();
    let got: Vec<(u64, u8)> = other
        .peek(2)
        .iter()
        .map(|m| (m.info.id, m.info.priority))
        .collect();
    assert_eq!(got, [(900, 3), (1, 8)]);
}

// ----- delivery history ------------------------------------------------------------

/// Reserves one message as `consumer` (leased for `lease_ms`).
fn reserve_as(h: &mut Harness, consumer: Option<&str>, lease_ms: u64) -> super::MessageView {
    match h
        .try_reserve_as(1, Some(lease_ms), 0, false, consumer)
        .unwrap()
    {
        Reserved::Now(mut got) => got.remove(0),
        Reserved::Parked(_) => panic!("nothing to reserve"),
    }
}

/// (outcome, consumer, reserved at, ended at, touches) of each attempt.
fn attempts(view: &super::MessageView) -> Vec<(Outcome, String, u64, u64, u32)> {
    view.history
        .iter()
        .map(|a| {
            (
                a.outcome,
                a.consumer.to_string(),
                a.reserved_at_ms,
                a.ended_at_ms,
                a.touches,
            )
        })
        .collect()
}

#[test]
fn every_attempt_that_does_not_delete_is_kept_with_its_consumer_touches_and_times() {
    let mut h = Harness::new();
    let id = h.push(&["job"])[0];
    let t0 = h.now;
    let first = reserve_as(&mut h, Some("w1"), 1_000);
    h.advance(400);
    let touched = h.touch(id, first.info.reservation_id, Some(1_000)).unwrap();
    h.advance(1_000); // the touched lease runs out at t0 + 1400
    let t1 = h.now;
    let second = reserve_as(&mut h, Some("w2"), 5_000);
    h.advance(250);
    h.release(id, second.info.reservation_id, 0).unwrap();
    h.advance(50);
    let third = reserve_as(&mut h, None, 5_000);
    h.advance(10);
    let got = h.get(id).unwrap();
    assert_eq!(
        attempts(&got),
        [
            (Outcome::TimedOut, "w1".into(), t0, t0 + 1_400, 1),
            (Outcome::Released, "w2".into(), t1, t1 + 250, 0),
            (Outcome::InProgress, String::new(), t1 + 300, t1 + 310, 0),
        ]
    );
    assert_eq!(got.history[0].reservation_id, touched.reservation_id);
    assert_eq!(got.history[0].duration_ms(), 1_400);
    assert_eq!(got.history[2].reservation_id, third.info.reservation_id);

    // Kept on disk: a restart keeps the ended attempts; the one under way
    // loses its start (in memory only).
    h.write(false);
    h.restart();
    let after = h.get(id).unwrap();
    assert_eq!(after.history[..2], got.history[..2]);
    assert_eq!(
        (after.history[2].outcome, after.history[2].reserved_at_ms),
        (Outcome::InProgress, 0)
    );
    // Deleting the message deletes its history.
    h.delete(&[(id, Some(third.info.reservation_id))]).unwrap();
    let writes = h.write(false);
    assert!(writes.contains(&LogWrite::History {
        id,
        update: HistoryUpdate::Remove
    }));
    assert!(h.io.log.history_ids().unwrap().is_empty());
}

#[test]
fn a_message_delivered_once_and_deleted_writes_no_history_and_keeps_nothing() {
    let mut h = Harness::new();
    let ids = h.push(&["a", "b"]);
    h.write(false);
    for id in ids {
        let got = reserve_as(&mut h, Some("w"), 1_000);
        assert_eq!(got.info.id, id);
        let lease = h.touch(id, got.info.reservation_id, None).unwrap();
        h.delete(&[(id, Some(lease.reservation_id))]).unwrap();
    }
    let writes = h.write(false);
    assert!(
        !writes.iter().any(|w| matches!(w, LogWrite::History { .. })),
        "{writes:?}"
    );
    assert!(h.io.log.history_ids().unwrap().is_empty());
    assert_eq!(
        h.state.history_footprint(),
        (0, 0),
        "nothing held in memory"
    );
}

#[test]
fn the_newest_k_attempts_are_kept_and_k_0_keeps_none() {
    let mut h = Harness::new();
    h.update(&SettingsPatch {
        delivery_history: Some(2),
        ..SettingsPatch::default()
    })
    .unwrap();
    let id = h.push(&["x"])[0];
    for consumer in ["a", "b", "c"] {
        let got = reserve_as(&mut h, Some(consumer), 1_000);
        h.release(id, got.info.reservation_id, 0).unwrap();
        h.write(false); // each append reads the stored record
    }
    let names: Vec<String> = attempts(&h.get(id).unwrap())
        .into_iter()
        .map(|a| a.1)
        .collect();
    assert_eq!(names, ["b", "c"]);
    assert!(h
        .update(&SettingsPatch {
            delivery_history: Some(101),
            ..SettingsPatch::default()
        })
        .is_err());
    h.update(&SettingsPatch {
        delivery_history: Some(0),
        ..SettingsPatch::default()
    })
    .unwrap();
    let got = reserve_as(&mut h, Some("d"), 1_000);
    h.release(id, got.info.reservation_id, 0).unwrap();
    assert_eq!(
        h.get(id).unwrap().history.len(),
        2,
        "nothing added with K = 0"
    );
}

#[test]
fn a_dead_lettered_message_carries_its_history_and_why_it_died() {
    let mut h = Harness::with_settings(with_dead_letter(2));
    let id = h.push(&["poison"])[0];
    for consumer in ["w1", "w2"] {
        reserve_as(&mut h, Some(consumer), 1_000);
        h.advance(1_000);
    }
    let died_at = h.now;
    assert!(h
        .try_reserve_as(1, None, 0, false, Some("w3"))
        .map(|r| matches!(r, Reserved::Now(got) if got.is_empty()))
        .unwrap());
    let moved: Vec<Transfer> = h
        .take_events()
        .into_iter()
        .flat_map(|event| match event {
            Event::DeadLetters { messages, .. } => messages,
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(moved.len(), 1);
    let history: Vec<(Outcome, &str)> = moved[0]
        .history
        .iter()
        .map(|a| (a.outcome, &*a.consumer))
        .collect();
    assert_eq!(
        history,
        [
            (Outcome::TimedOut, "w1"),
            (Outcome::TimedOut, "w2"),
            (Outcome::DeadLettered, "w3")
        ]
    );
    assert_eq!(moved[0].history[2].ended_at_ms, died_at);
    // Where it lands, get shows it.
    let mut dlq = Harness::new();
    assert_eq!(dlq.adopt(moved), 1);
    dlq.write(false);
    dlq.restart();
    assert_eq!(dlq.get(id).unwrap().history.len(), 3);
}

// ----- fair dispatch by key --------------------------------------------------------

/// Pushes one message per (body, key) in one turn.
fn push_keyed(h: &mut Harness, messages: &[(&str, Option<&str>)]) -> Vec<u64> {
    let messages = messages
        .iter()
        .map(|&(body, key)| NewMessage {
            body: Bytes::copy_from_slice(body.as_bytes()),
            delay_ms: 0,
            priority: crate::queue::types::DEFAULT_PRIORITY,
            key: key.map(std::sync::Arc::from),
        })
        .collect();
    h.op(|s, now, io| s.push(now, io, messages)).unwrap()
}

fn bodies_of(messages: &[super::MessageView]) -> Vec<String> {
    messages.iter().map(|m| text(m).to_owned()).collect()
}

#[test]
fn keys_take_turns_so_a_noisy_key_cannot_starve_the_others() {
    let mut h = Harness::new();
    let noisy: Vec<(String, Option<&str>)> =
        (0..50).map(|i| (format!("n{i}"), Some("noisy"))).collect();
    let noisy: Vec<(&str, Option<&str>)> = noisy.iter().map(|(b, k)| (b.as_str(), *k)).collect();
    push_keyed(&mut h, &noisy);
    push_keyed(
        &mut h,
        &[("q1", Some("quiet")), ("q2", Some("quiet")), ("u1", None)],
    );
    // Least recently served first; never served by name ("" for no key first).
    let got = h.reserve(7, Some(60_000));
    assert_eq!(bodies_of(&got), ["u1", "n0", "q1", "n1", "q2", "n2", "n3"]);
    assert_eq!(got[1].key.as_deref(), Some("noisy"));
    assert_eq!(got[0].key, None);
    // Peek keeps the queue's order: keys decide only what a reserve takes.
    assert_eq!(bodies_of(&h.peek(2)), ["n4", "n5"]);
    assert_eq!(h.stats().keys, 2, "quiet has messages in flight still");
}

#[test]
fn a_cap_of_one_hands_out_each_key_in_order_one_at_a_time() {
    let mut h = Harness::new();
    h.update(&SettingsPatch {
        key_max_in_flight: Some(1),
        ..SettingsPatch::default()
    })
    .unwrap();
    push_keyed(
        &mut h,
        &[
            ("a1", Some("a")),
            ("a2", Some("a")),
            ("b1", Some("b")),
            ("u1", None),
            ("u2", None),
        ],
    );
    let got = h.reserve(10, Some(1_000));
    // Unkeyed messages are never capped.
    assert_eq!(bodies_of(&got), ["u1", "a1", "b1", "u2"]);
    assert!(h.reserve(1, None).is_empty(), "a2 waits for a1");
    assert_eq!(h.stats().available, 1);
    // A parked reserve is served when a1 is done.
    let waiter = h.wait(1, 10_000);
    h.delete(&[(got[1].info.id, Some(got[1].info.reservation_id))])
        .unwrap();
    let woken: Vec<_> = h
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Woken { waiter, result, .. } => Some((waiter, bodies_of(&result.unwrap()))),
            _ => None,
        })
        .collect();
    assert_eq!(woken, [(waiter, vec!["a2".to_owned()])]);
    // A lease running out frees the key as well; the order within it holds.
    push_keyed(&mut h, &[("b2", Some("b"))]);
    h.advance(1_000); // b1's, u1's and u2's leases end: back at their fronts
    let again = h.reserve(4, None);
    assert_eq!(
        bodies_of(&again),
        ["b1", "u2", "u1"],
        "b (served longest ago) first, then the unkeyed (the latest requeue \
         first); b2 waits for b1 again"
    );
    // A restart keeps keys and cap (turns start again).
    h.write(false);
    h.restart();
    assert_eq!(h.stats().settings.key_max_in_flight, 1);
    assert_eq!(h.get(got[2].info.id).unwrap().key.as_deref(), Some("b"));
    assert!(
        h.reserve(1, None).is_empty(),
        "b1 is reserved still: b2 waits"
    );
    // Lifting the cap frees them.
    h.update(&SettingsPatch {
        key_max_in_flight: Some(0),
        ..SettingsPatch::default()
    })
    .unwrap();
    assert_eq!(bodies_of(&h.reserve(1, None)), ["b2"]);
}

#[test]
fn a_moved_message_keeps_its_key() {
    let mut h = Harness::with_settings(with_dead_letter(1));
    push_keyed(&mut h, &[("x", Some("tenant-7"))]);
    h.reserve(1, Some(1_000));
    h.advance(1_000);
    assert!(h.reserve(1, None).is_empty());
    let keys: Vec<Option<String>> = h
        .take_events()
        .into_iter()
        .flat_map(|event| match event {
            Event::DeadLetters { messages, .. } => messages,
            _ => Vec::new(),
        })
        .map(|m| m.key.map(|k| k.to_string()))
        .collect();
    assert_eq!(keys, [Some("tenant-7".to_owned())]);
}

// ----- long polls -----------------------------------------------------------------

#[test]
fn long_polls_are_served_in_arrival_order_when_messages_come() {
    let mut h = Harness::new();
    let first = h.wait(1, 10_000);
    let second = h.wait(1, 10_000);
    assert_eq!(h.stats().waiting, 2);
    let pushed = h.push(&["1"]);
    let (woken, _) = wakes(h.take_events());
    assert_eq!(woken, [(first, pushed)]);
    let pushed = h.push(&["2"]);
    let (woken, _) = wakes(h.take_events());
    assert_eq!(woken, [(second, pushed)]);
    assert_eq!(h.stats().waiting, 0);
}

#[test]
fn long_polls_past_the_waiter_limit_are_refused_and_a_reserve_with_messages_is_not() {
    let mut h = Harness::new();
    h.state.set_max_waiters(2);
    let first = h.wait(1, 10_000);
    h.wait(1, 10_000);
    assert!(matches!(
        h.try_reserve(1, None, 10_000, false),
        Err(QueueError::ResourceExhausted(_))
    ));
    assert_eq!(h.stats().waiting, 2, "the refused poll parked nothing");
    // Without wait nothing parks, so nothing is refused.
    assert!(h.try_reserve(1, None, 0, false).is_ok());
    let pushed = h.push(&["1"]);
    let (woken, _) = wakes(h.take_events());
    assert_eq!(woken, [(first, pushed)]);
    // A place is free again.
    h.wait(1, 10_000);
    assert_eq!(h.stats().waiting, 2);
}

#[test]
fn a_long_poll_is_woken_by_a_release_a_requeue_and_a_delay_end() {
    let mut h = Harness::with_settings(QueueSettings {
        message_timeout_ms: 1_000,
        ..QueueSettings::default()
    });
    let id = h.push(&["a"])[0];
    let lease = h.reserve(1, Some(1_000)).remove(0).info.reservation_id;
    let by_release = h.wait(1, 30_000);
    h.release(id, lease, 0).unwrap();
    let (woken, _) = wakes(h.take_events());
    assert_eq!(woken, [(by_release, vec![id])]);

    let by_requeue = h.wait(1, 30_000);
    h.advance(1_000);
    let (woken, _) = wakes(h.take_events());
    assert_eq!(
        woken,
        [(by_requeue, vec![id])],
        "the lease of the woken reserve ran out"
    );

    h.clear();
    let delayed = h.push_delayed("d", 2_000);
    let by_delay = h.wait(1, 30_000);
    h.advance(2_000);
    let (woken, _) = wakes(h.take_events());
    assert_eq!(woken, [(by_delay, vec![delayed])]);
}

#[test]
fn a_long_poll_that_times_out_ends_empty_and_a_gone_client_is_skipped() {
    let mut h = Harness::new();
    let timed_out = h.wait(1, 300);
    h.advance(299);
    assert!(h.take_events().is_empty());
    h.advance(1);
    let (woken, ended) = wakes(h.take_events());
    assert!(woken.is_empty());
    assert_eq!(ended, [timed_out]);

    let gone = h.wait(1, 10_000);
    let kept = h.wait(1, 10_000);
    h.io.gone.insert(gone);
    let pushed = h.push(&["x"]);
    let (woken, ended) = wakes(h.take_events());
    assert_eq!(
        woken,
        [(kept, pushed)],
        "the message went to the client still there"
    );
    assert_eq!(
        ended,
        [gone],
        "the gone client's wait is over: its reply is forgotten"
    );
    assert_eq!(h.stats().waiting, 0);
}

#[test]
fn a_long_poll_that_only_meets_dead_letters_keeps_waiting() {
    let mut h = Harness::with_settings(with_dead_letter(1));
    let id = h.push(&["a"])[0];
    let lease = h.reserve(1, None).remove(0).info.reservation_id;
    let waiter = h.wait(1, 10_000);
    h.take_events();
    h.release(id, lease, 0).unwrap();
    let events = h.take_events();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::DeadLetters { .. })));
    assert!(!events.iter().any(|e| matches!(e, Event::Woken { .. })));
    assert_eq!(h.stats().waiting, 1);
    let pushed = h.push(&["b"]);
    let (woken, _) = wakes(h.take_events());
    assert_eq!(woken, [(waiter, pushed)]);
}

#[test]
fn clear_removes_every_message_but_not_the_waiting_reserves() {
    let mut h = Harness::new();
    h.push(&["a", "b"]);
    h.reserve(2, None);
    h.push_delayed("c", 1_000);
    let waiter = h.wait(1, 30_000);
    assert_eq!(h.clear(), 3);
    let stats = h.stats();
    assert_eq!(
        (
            stats.size,
            stats.reserved,
            stats.delayed,
            stats.waiting,
            stats.total_pushed
        ),
        (0, 0, 0, 1, 3)
    );
    h.advance(1_000);
    let pushed = h.push(&["d"]);
    let (woken, _) = wakes(h.take_events());
    assert_eq!(woken, [(waiter, pushed)]);
}

// ----- durability: records and restart ----------------------------------------------

#[test]
fn a_restart_restores_order_counts_leases_delays_and_settings() {
    let mut h = Harness::with_settings(QueueSettings {
        message_timeout_ms: 45_000,
        ..with_dead_letter(4)
    });
    let pushed = h.push(&["m0", "m1", "m2", "m3", "m4"]);
    h.delete(&[(pushed[0], None)]).unwrap();
    let got = h.reserve(2, None);
    let (m1, m2) = (&got[0], &got[1]);
    h.release(m2.info.id, m2.info.reservation_id, 0).unwrap();
    h.push_delayed("later", 5_000);
    h.restart();
    let stats = h.stats();
    assert_eq!(
        (
            stats.size,
            stats.reserved,
            stats.available,
            stats.delayed,
            stats.total_pushed
        ),
        (5, 1, 3, 1, 6)
    );
    assert_eq!(stats.settings.message_timeout_ms, 45_000);
    assert_eq!(
        stats.settings.dead_letter.map(|d| d.max_reservations),
        Some(4)
    );
    assert_eq!(h.peek_ids(10), [pushed[2], pushed[3], pushed[4]]);
    assert_eq!(h.get(pushed[2]).unwrap().info.reserved_count, 1);
    let lease = h.get(m1.info.id).unwrap().info;
    assert_eq!(lease.reserved_until_ms, m1.info.reserved_until_ms);
    h.touch(m1.info.id, m1.info.reservation_id, None)
        .expect("a lease taken before the restart is still valid");
    h.advance(5_000);
    assert_eq!(h.stats().delayed, 0, "the delay still ends on time");
    let fresh = h.push(&["after"])[0];
    assert!(fresh > *pushed.last().unwrap(), "ids never repeat");
}

#[test]
fn after_a_restart_a_late_request_with_an_expired_lease_is_a_mismatch() {
    let mut h = Harness::new();
    let id = h.push(&["a"])[0];
    let lease = h.reserve(1, Some(100)).remove(0).info.reservation_id;
    h.advance(100);
    assert_eq!(
        h.delete(&[(id, Some(lease))]),
        Err(QueueError::ReservationExpired(id))
    );
    h.restart();
    assert_eq!(
        h.delete(&[(id, Some(lease))]),
        Err(QueueError::ReservationMismatch(id)),
        "which reservation ran out is not persisted"
    );
}

#[test]
fn a_turn_writes_one_batch_record_and_a_drained_queue_leaves_no_records() {
    let mut h = Harness::new();
    let first = h.push(&["a", "b"]);
    let second = h.push(&["c"]);
    let writes = h.write(false);
    assert_eq!(writes.len(), 1, "two pushes, one batch record: {writes:?}");
    let got = h.reserve(3, None);
    assert_eq!(
        h.write(false).len(),
        1,
        "one state record for the touched batch"
    );
    let entries: Vec<(u64, Option<u64>)> = got
        .iter()
        .map(|m| (m.info.id, Some(m.info.reservation_id)))
        .collect();
    h.delete(&entries).unwrap();
    h.write(false);
    assert_eq!(
        h.io.log.batch_count(),
        0,
        "records go with their last message"
    );
    h.restart();
    assert_eq!(h.stats().size, 0);
    assert!(first.iter().chain(&second).all(|&id| h.get(id).is_err()));
}

#[test]
fn messages_whose_batch_record_could_not_be_written_leave_the_queue() {
    let mut h = Harness::new();
    let pushed = h.push(&["a", "b"]);
    let writes = h.state.take_writes(h.now, false);
    let key = writes
        .log
        .iter()
        .find_map(|w| match w {
            super::LogWrite::Batch { key, .. } => Some(*key),
            _ => None,
        })
        .expect("a batch record");
    h.state.batch_lost(key);
    assert_eq!(h.stats().size, 0);
    assert_eq!(
        h.get(pushed[0]),
        Err(QueueError::MessageNotFound(pushed[0]))
    );
    assert!(
        h.state.next_deadline().is_none(),
        "no timer left for the lost batch"
    );
}

#[test]
fn total_pushed_alone_is_written_at_most_once_a_second_and_at_the_end() {
    let mut h = Harness::new();
    h.push(&["a"]);
    assert!(h.state.take_writes(h.now, false).record, "the first write");
    h.push(&["b"]);
    assert!(!h.state.take_writes(h.now, false).record, "throttled");
    h.advance(1_000);
    assert!(h.state.take_writes(h.now, false).record, "a second later");
    h.push(&["c"]);
    assert!(
        h.state.take_writes(h.now, true).record,
        "when the queue stops"
    );
    h.update(&SettingsPatch {
        message_timeout_ms: Some(MIN_TIMEOUT_MS),
        ..SettingsPatch::default()
    })
    .unwrap();
    assert!(
        h.state.take_writes(h.now, false).record,
        "settings are written at once"
    );
}

#[test]
fn settings_of_a_damaged_record_are_brought_into_range_and_never_overflow() {
    let record = QueueRecord {
        key_max_in_flight: 0,
        delivery_history: 10,
        id: 1,
        name: "q".into(),
        created_at_ms: 0,
        total_pushed: 0,
        message_timeout_ms: 0,
        message_expiration_s: u64::MAX,
        dead_letter: Some(DeadLetterRecord {
            queue: "dlq".into(),
            max_reservations: 0,
        }),
        push: None,
        attachment: Vec::new(),
        // Processing times that do not read: dropped (advice), the queue loads.
        processing: vec![9, 9],
    };
    let meta = meta_from_record(&record).unwrap();
    assert!(meta.processing.is_none());
    assert_eq!(meta.settings.message_timeout_ms, MIN_TIMEOUT_MS);
    assert_eq!(meta.settings.message_expiration_s, MAX_EXPIRATION_S);
    assert_eq!(
        meta.settings.dead_letter.map(|d| d.max_reservations),
        Some(1)
    );
    let bad_name = QueueRecord {
        name: "bad name".into(),
        ..record.clone()
    };
    assert!(meta_from_record(&bad_name).is_err());

    // Even unchecked settings and a far clock do not overflow.
    let mut state = QueueState::new(QueueMeta {
        name: QueueName::new("q").unwrap(),
        created_at_ms: 0,
        settings: QueueSettings {
            key_max_in_flight: 0,
            delivery_history: crate::queue::history::DEFAULT_DELIVERY_HISTORY,
            message_timeout_ms: u64::MAX,
            message_expiration_s: u64::MAX,
            dead_letter: None,
            push: None,
        },
        total_pushed: 0,
        processing: None,
        attachment: Bytes::new(),
    });
    let mut io = super::TestIo {
        next_id: 1,
        log: crate::storage::MemoryLog::default(),
        gone: Default::default(),
    };
    let far = u64::MAX - 10;
    state
        .push(far, &mut io, super::bodies(&["x"]))
        .expect("push at a far time");
    let Reserved::Now(got) = state
        .reserve(
            far,
            &mut io,
            super::super::state::Ask {
                n: 1,
                ..Default::default()
            },
            u64::MAX,
        )
        .unwrap()
    else {
        panic!("parked")
    };
    assert_eq!(got[0].info.reserved_until_ms, u64::MAX);
    let rebuilt = rebuild(state.meta().clone(), Vec::new(), Vec::new(), far);
    assert_eq!(rebuilt.stats().size, 0);
}

#[test]
fn a_dead_letter_patch_changes_one_part_and_keeps_the_other() {
    let mut h = Harness::with_settings(with_dead_letter(3));
    h.update(&SettingsPatch {
        dead_letter: Some(DeadLetterPatch::Set {
            queue: None,
            max_reservations: Some(7),
        }),
        ..SettingsPatch::default()
    })
    .unwrap();
    let dead_letter = h.stats().settings.dead_letter.unwrap();
    assert_eq!(
        (dead_letter.queue.as_str(), dead_letter.max_reservations),
        ("q.dead", 7)
    );
    h.update(&SettingsPatch {
        dead_letter: Some(DeadLetterPatch::Remove),
        ..SettingsPatch::default()
    })
    .unwrap();
    assert!(h.stats().settings.dead_letter.is_none());
}

#[test]
fn the_next_deadline_is_the_earliest_timed_event() {
    let mut h = Harness::new();
    assert_eq!(
        h.state.next_deadline(),
        None,
        "an idle queue needs no timer"
    );
    h.push(&["a", "b"]);
    let expiry = h.state.next_deadline().unwrap();
    assert_eq!(expiry, START_MS + QueueSettings::default().expiration_ms());
    h.reserve(2, Some(5_000));
    assert_eq!(h.state.next_deadline(), Some(h.now + 5_000));
    h.wait(1, 1_000);
    assert_eq!(h.state.next_deadline(), Some(h.now + 1_000));
}

#[test]
fn reservation_id_zero_is_never_taken_for_an_expired_reservation() {
    // Found by the model test: 0 also meant "no expired reservation", so a touch or
    // release of an available message with id 0 was told EXPIRED.
    let mut h = Harness::new();
    let id = h.push(&["a"])[0];
    assert_eq!(
        h.touch(id, 0, None),
        Err(QueueError::ReservationMismatch(id))
    );
    assert_eq!(
        h.release(id, 0, 0),
        Err(QueueError::ReservationMismatch(id))
    );
}

#[test]
fn a_queue_holds_the_bytes_of_its_stored_batches_until_their_last_message_goes() {
    let mut h = Harness::new();
    h.push(&["aaaa", "bb"]);
    assert_eq!(h.stats().bytes, 6);
    h.write(false);
    h.push(&["ccc"]);
    h.write(false);
    assert_eq!(h.stats().bytes, 9, "two batches");
    let got = h.reserve(2, None);
    let first: Vec<_> = got
        .iter()
        .map(|m| (m.info.id, Some(m.info.reservation_id)))
        .collect();
    assert_eq!(h.delete(&first[..1]), Ok(1));
    h.write(false);
    assert_eq!(
        h.stats().bytes,
        9,
        "a batch stays whole while a message of it is left"
    );
    h.restart();
    assert_eq!(h.stats().bytes, 9);
    // The lease taken before the restart still holds.
    assert_eq!(h.delete(&first[1..]), Ok(1));
    h.write(false);
    assert_eq!(
        h.stats().bytes,
        3,
        "the first batch went with its last message"
    );
    h.clear();
    assert_eq!(h.stats().bytes, 0);
}

// ----- counters (the metrics) ---------------------------------------------------

#[test]
fn counters_count_each_outcome_once_and_the_head_age_follows_the_head() {
    use super::super::state::Counters;
    let mut h = Harness::with_settings(QueueSettings {
        message_expiration_s: 10,
        ..with_dead_letter(2)
    });
    assert_eq!(h.state.head_pushed_at_ms(), None);
    let first = h.push(&["a", "b", "c", "d"]);
    assert_eq!(h.state.head_pushed_at_ms(), Some(START_MS));
    let leased = h.reserve(3, Some(1_000));
    // One deleted, one released, one left to time out.
    h.delete(&[(leased[0].info.id, Some(leased[0].info.reservation_id))])
        .unwrap();
    h.release(leased[1].info.id, leased[1].info.reservation_id, 0)
        .unwrap();
    h.advance(1_000);
    assert_eq!(
        *h.state.counters(),
        Counters {
            pushed: 4,
            reserved: 3,
            deleted: 1,
            released: 1,
            timed_out: 1,
            ..Counters::default()
        }
    );
    // Message 3 (timed out) is at the front; reserved once more and timed out
    // again, it has had 2 reservations and goes to the dead-letter queue on the
    // next reserve, which takes 2 and 4 (delete-on-reserve counts as reserved and
    // deleted).
    h.reserve(1, Some(1_000));
    h.advance(1_000);
    let taken = h.try_reserve(4, None, 0, true);
    assert!(
        matches!(taken, Ok(Reserved::Now(ref m)) if m.len() == 2),
        "{taken:?}"
    );
    assert_eq!(
        *h.state.counters(),
        Counters {
            pushed: 4,
            reserved: 6,
            deleted: 3,
            released: 1,
            timed_out: 2,
            dead_lettered: 1,
            expired: 0,
        }
    );
    // What is left expires, and counts as expired: "e", and 3, which no mover
    // took out of this harness's queue.
    let later = h.push(&["e"]);
    h.advance(10_000);
    let counters = *h.state.counters();
    assert_eq!((counters.pushed, counters.expired), (5, 2), "{counters:?}");
    assert_eq!(h.state.head_pushed_at_ms(), None);
    assert!(first.iter().chain(&later).all(|&id| h.get(id).is_err()));
}

/// Lease advice (issue 14): a processing time is reserve → delete with the
/// reservation, measured from the reserve even across touches; deletes without a
/// reservation, releases, lease time-outs and reservations restored by a restart
/// are not processing times.
#[test]
fn processing_times_run_from_the_reserve_to_the_delete_that_finishes_it() {
    let mut h = Harness::new();
    h.push(&["a", "b", "c", "d", "e"]);
    assert_eq!(h.stats().processing, None);
    // 300 ms of work.
    let a = h.reserve(1, Some(10_000)).remove(0);
    h.advance(300);
    h.delete(&[(a.info.id, Some(a.info.reservation_id))])
        .unwrap();
    let first = h.stats().processing.expect("one sample");
    assert_eq!(first.samples, 1);
    assert!((300..=375).contains(&first.p50_ms), "{first:?}");
    // 2 s across a touch: from the reserve, not the touch.
    let b = h.reserve(1, Some(10_000)).remove(0);
    h.advance(1_000);
    let lease = h
        .touch(b.info.id, b.info.reservation_id, Some(10_000))
        .unwrap();
    h.advance(1_000);
    h.delete(&[(b.info.id, Some(lease.reservation_id))])
        .unwrap();
    let two = h.stats().processing.expect("two samples");
    assert_eq!(two.samples, 2);
    assert!((2_000..=2_500).contains(&two.p99_ms), "{two:?}");
    // Not processing times: a delete without a reservation, a release, a lease
    // that ran out.
    let c = h.reserve(1, Some(1_000)).remove(0);
    h.release(c.info.id, c.info.reservation_id, 0).unwrap();
    h.delete(&[(c.info.id, None)]).unwrap();
    h.reserve(1, Some(1_000));
    h.advance(1_000);
    assert_eq!(h.stats().processing.map(|p| p.samples), Some(2));
    // The histogram is kept with the queue's record across a restart; a
    // reservation restored by the restart is not sampled: its start is not known.
    let e = h.reserve(1, Some(60_000)).remove(0);
    h.restart();
    assert_eq!(h.stats().processing, Some(two));
    h.advance(500);
    h.delete(&[(e.info.id, Some(e.info.reservation_id))])
        .unwrap();
    assert_eq!(h.stats().processing, Some(two));
}

/// The processing times ride on the queue record's throttle: written at most
/// once a second while they change (like `total_pushed`), at once when the
/// queue stops.
#[test]
fn processing_times_are_written_with_the_queue_record_at_most_once_a_second() {
    let mut h = Harness::new();
    h.push(&["a", "b"]);
    h.write(false);
    let a = h.reserve(1, None).remove(0);
    h.advance(1_000);
    h.write(false);
    h.delete(&[(a.info.id, Some(a.info.reservation_id))])
        .unwrap();
    assert!(
        h.state.take_writes(h.now, false).record,
        "a second after the last record"
    );
    let b = h.reserve(1, None).remove(0);
    h.advance(10);
    h.delete(&[(b.info.id, Some(b.info.reservation_id))])
        .unwrap();
    assert!(!h.state.take_writes(h.now, false).record, "throttled");
    assert!(
        h.state.take_writes(h.now, true).record,
        "written as the queue stops"
    );
}

/// Lease advice: `timeout = auto` is the queue's timeout until 20 deletes were
/// measured, then twice their p99 (at least 1 s); a parked reserve gets the
/// advice of the moment it is served.
#[test]
fn an_auto_lease_is_the_default_until_twenty_samples_then_twice_the_p99() {
    let mut h = Harness::new();
    let auto = Some(AUTO_TIMEOUT_MS);
    h.push(&["x"; 25]);
    for _ in 0..19 {
        let m = h.reserve(1, auto).remove(0);
        assert_eq!(
            m.info.reserved_until_ms,
            h.now + DEFAULT_TIMEOUT_MS,
            "the default"
        );
        h.advance(4_000);
        h.delete(&[(m.info.id, Some(m.info.reservation_id))])
            .unwrap();
    }
    assert_eq!(h.stats().processing.and_then(|p| p.advised_ms), None);
    let m = h.reserve(1, auto).remove(0);
    h.advance(4_000);
    h.delete(&[(m.info.id, Some(m.info.reservation_id))])
        .unwrap();
    let summary = h.stats().processing.expect("20 samples");
    assert_eq!(summary.advised_ms, Some(2 * summary.p99_ms));
    assert!(
        (8_000..=10_000).contains(&(2 * summary.p99_ms)),
        "{summary:?}"
    );
    let advised = h.reserve(1, auto).remove(0);
    assert_eq!(advised.info.reserved_until_ms, h.now + 2 * summary.p99_ms);
    // An explicit timeout is still what it says.
    let explicit = h.reserve(1, Some(500)).remove(0);
    assert_eq!(explicit.info.reserved_until_ms, h.now + 500);
}
