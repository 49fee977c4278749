//! The atomic hand-off's rules (`state/hand_off.rs`): a reserved message
//! replaced by follow-ups in other queues, all or nothing, at every point a
//! crash can cut it.

use super::{bodies, text, Harness};
use crate::error::QueueError;
use crate::queue::state::resolve_hand_offs;
use crate::queue::types::{MessageState, Origin, QueueSettings};
use crate::storage::QueueLog;

/// A source queue `q` with one reserved message, and an empty target `t` whose
/// ids do not overlap `q`'s.
fn setup() -> (Harness, Harness, u64, u64) {
    let mut q = Harness::named("q", QueueSettings::default());
    let mut t = Harness::named("t", QueueSettings::default());
    t.io.next_id = 1_000_000;
    let id = q.push(&["order 1"])[0];
    let reserved = q.reserve(1, Some(30_000));
    let reservation_id = reserved[0].info.reservation_id;
    q.write(false);
    (q, t, id, reservation_id)
}

fn origin(q: &Harness, id: u64) -> Origin {
    Origin {
        queue: q.state.meta().name.clone(),
        id,
    }
}

/// Steps 1 and 2: the message held, two follow-ups staged in `t` and written.
fn begin_and_stage(q: &mut Harness, t: &mut Harness, id: u64, reservation_id: u64) -> Vec<u64> {
    q.op(|s, now, _| s.hand_off_begin(now, id, reservation_id))
        .expect("begin");
    let origin = origin(q, id);
    let staged = t
        .op(|s, now, io| s.stage_follow_ups(now, io, &origin, bodies(&["invoice 1", "email 1"])))
        .expect("stage");
    t.write(false);
    staged
}

/// Both queues restart from their records (a crash after the last writes),
/// and recovery resolves the hand-offs across them, its writes applied.
fn restart_both(q: &mut Harness, t: &mut Harness) {
    q.restart();
    t.restart();
    let touched = resolve_hand_offs(&mut [&mut q.state, &mut t.state]);
    for at in touched {
        if at == 0 {
            q.write(false);
        } else {
            t.write(false);
        }
    }
}

#[test]
fn a_committed_hand_off_replaces_the_message_by_its_follow_ups() {
    let (mut q, mut t, id, reservation_id) = setup();
    let staged = begin_and_stage(&mut q, &mut t, id, reservation_id);
    assert_eq!(staged.len(), 2);
    // Staged follow-ups are invisible; the held message too.
    assert!(t.peek(10).is_empty(), "staged follow-ups cannot be seen");
    assert!(matches!(
        t.get(staged[0]),
        Err(QueueError::MessageNotFound(_))
    ));
    assert!(matches!(q.get(id), Err(QueueError::MessageNotFound(_))));
    assert_eq!(
        q.delete(&[(id, Some(reservation_id))]),
        Err(QueueError::MessageNotFound(id)),
        "a held message cannot be deleted by another request"
    );
    q.op(|s, now, _| s.hand_off_end(now, id, true))
        .expect("end");
    q.write(false);
    let origin = origin(&q, id);
    t.op(|s, now, _| s.release_follow_ups(now, &origin, true));
    let seen: Vec<String> = t.peek(10).iter().map(|m| text(m).to_owned()).collect();
    assert_eq!(seen, ["invoice 1", "email 1"]);
    assert_eq!(t.stats().size, 2);
    assert_eq!(q.stats().size, 0);
    // A restart keeps the follow-ups: their origin is gone.
    restart_both(&mut q, &mut t);
    assert_eq!(t.peek_ids(10), staged);
    assert!(matches!(q.get(id), Err(QueueError::MessageNotFound(_))));
}

#[test]
fn a_crash_before_the_deletion_is_written_keeps_the_message_and_drops_every_follow_up() {
    let (mut q, mut t, id, reservation_id) = setup();
    let staged = begin_and_stage(&mut q, &mut t, id, reservation_id);
    // Crash: the follow-ups are on disk, the deletion is not.
    restart_both(&mut q, &mut t);
    assert_eq!(t.stats().size, 0, "no follow-up survives");
    for follow_up in &staged {
        assert!(matches!(
            t.get(*follow_up),
            Err(QueueError::MessageNotFound(_))
        ));
    }
    let old = q.get(id).expect("the old message is still there");
    assert_eq!(old.info.state, MessageState::Reserved);
    // And the drop itself is on disk: another restart agrees.
    restart_both(&mut q, &mut t);
    assert_eq!(t.stats().size, 0);
    let mut stored = 0;
    t.io.log.load(&mut |_| stored += 1).expect("load");
    assert_eq!(stored, 0, "the follow-ups' records are removed");
    // The old message's reservation still works: the hand-off never happened.
    assert_eq!(q.delete(&[(id, Some(reservation_id))]), Ok(1));
}

#[test]
fn a_crash_after_the_deletion_is_written_keeps_every_follow_up() {
    let (mut q, mut t, id, reservation_id) = setup();
    let staged = begin_and_stage(&mut q, &mut t, id, reservation_id);
    q.op(|s, now, _| s.hand_off_end(now, id, true))
        .expect("end");
    q.write(false);
    // Crash before the follow-ups were released.
    restart_both(&mut q, &mut t);
    assert_eq!(
        t.peek_ids(10),
        staged,
        "the follow-ups are there, available"
    );
    assert!(matches!(q.get(id), Err(QueueError::MessageNotFound(_))));
    assert_eq!(q.stats().size, 0);
}

#[test]
fn an_aborted_hand_off_gives_the_message_back_and_removes_the_follow_ups() {
    let (mut q, mut t, id, reservation_id) = setup();
    let staged = begin_and_stage(&mut q, &mut t, id, reservation_id);
    let origin = origin(&q, id);
    t.op(|s, now, _| s.release_follow_ups(now, &origin, false));
    q.op(|s, now, _| s.hand_off_end(now, id, false))
        .expect("abort");
    assert_eq!(t.stats().size, 0);
    assert!(matches!(
        t.get(staged[1]),
        Err(QueueError::MessageNotFound(_))
    ));
    let old = q.get(id).expect("back");
    assert_eq!(old.info.state, MessageState::Reserved);
    // Under the same reservation, which still runs to its deadline.
    q.advance(29_000);
    assert_eq!(q.delete(&[(id, Some(reservation_id))]), Ok(1));
    // Nothing of the follow-ups is left on disk.
    t.write(false);
    restart_both(&mut q, &mut t);
    assert_eq!(t.stats().size, 0);
}

#[test]
fn only_the_current_reservation_can_hand_a_message_off() {
    let (mut q, _t, id, reservation_id) = setup();
    assert_eq!(
        q.op(|s, now, _| s.hand_off_begin(now, id, reservation_id + 1)),
        Err(QueueError::ReservationMismatch(id))
    );
    assert_eq!(
        q.op(|s, now, _| s.hand_off_begin(now, 999, reservation_id)),
        Err(QueueError::MessageNotFound(999))
    );
    q.advance(30_000);
    assert_eq!(
        q.op(|s, now, _| s.hand_off_begin(now, id, reservation_id)),
        Err(QueueError::ReservationExpired(id))
    );
    // Available again: a message nobody reserved cannot be handed off.
    let available = q.push(&["free"])[0];
    assert_eq!(
        q.op(|s, now, _| s.hand_off_begin(now, available, reservation_id)),
        Err(QueueError::ReservationMismatch(available))
    );
    // Nothing was held by the refusals.
    assert_eq!(q.peek(10).len(), 2);
}

#[test]
fn a_held_message_outlives_its_lease_and_its_expiry_until_the_hand_off_ends() {
    let settings = QueueSettings {
        message_expiration_s: 60,
        ..QueueSettings::default()
    };
    let mut q = Harness::named("q", settings);
    let id = q.push(&["late"])[0];
    let reservation_id = q.reserve(1, Some(1_000))[0].info.reservation_id;
    q.op(|s, now, _| s.hand_off_begin(now, id, reservation_id))
        .expect("begin");
    q.advance(2_000);
    assert!(
        q.peek(1).is_empty(),
        "the lease's end does not requeue a held message"
    );
    // Its reservation ran out while held: an abort gives it back, then it is
    // requeued at once.
    q.op(|s, now, _| s.hand_off_end(now, id, false))
        .expect("abort");
    q.advance(0);
    assert_eq!(q.peek_ids(1), [id]);
    // Held past its expiry, it is not removed until the hand-off ends.
    let reservation_id = q.reserve(1, Some(120_000))[0].info.reservation_id;
    q.op(|s, now, _| s.hand_off_begin(now, id, reservation_id))
        .expect("begin again");
    q.advance(61_000);
    assert_eq!(q.stats().size, 1, "held through its expiry");
    assert_eq!(q.get(id), Err(QueueError::MessageNotFound(id)), "invisible");
    assert!(q.peek(1).is_empty());
    assert_eq!(q.stats().size, 1, "looking does not expire it either");
    q.op(|s, now, _| s.hand_off_end(now, id, false))
        .expect("abort");
    assert_eq!(
        q.stats().size,
        0,
        "an aborted hand-off lets the expired message go"
    );
}

#[test]
fn a_clear_while_the_message_is_held_ends_the_hand_off() {
    let (mut q, mut t, id, reservation_id) = setup();
    begin_and_stage(&mut q, &mut t, id, reservation_id);
    q.clear();
    assert_eq!(
        q.op(|s, now, _| s.hand_off_end(now, id, true)),
        Err(QueueError::MessageNotFound(id))
    );
}

#[test]
fn a_hand_off_into_its_own_queue_is_resolved_like_any_other() {
    let mut q = Harness::named("q", QueueSettings::default());
    let id = q.push(&["step 1"])[0];
    let reservation_id = q.reserve(1, None)[0].info.reservation_id;
    q.op(|s, now, _| s.hand_off_begin(now, id, reservation_id))
        .expect("begin");
    let origin = origin(&q, id);
    let staged = q
        .op(|s, now, io| s.stage_follow_ups(now, io, &origin, bodies(&["step 2"])))
        .expect("stage");
    // Crash before the deletion: the old message stays, the follow-up goes.
    q.restart();
    let touched = resolve_hand_offs(&mut [&mut q.state]);
    assert_eq!(touched, [0]);
    q.write(false);
    assert!(matches!(
        q.get(staged[0]),
        Err(QueueError::MessageNotFound(_))
    ));
    assert_eq!(q.get(id).expect("old").info.state, MessageState::Reserved);
}

#[test]
fn a_held_message_still_counts_against_its_keys_cap() {
    // Found by the model test: a held message that stopped counting as in
    // flight let a parked reserve take the next message of its key, and an
    // abort then left the key over its cap.
    let settings = QueueSettings {
        key_max_in_flight: 1,
        ..QueueSettings::default()
    };
    let mut q = Harness::named("q", settings);
    let keyed = |body: &str| crate::queue::types::NewMessage {
        key: Some(std::sync::Arc::from("acme")),
        ..bodies(&[body]).remove(0)
    };
    let first = q
        .op(|s, now, io| s.push(now, io, vec![keyed("acme 1")]))
        .expect("push")[0];
    let reservation_id = q.reserve(1, Some(30_000))[0].info.reservation_id;
    let waiter = q.wait(1, 10_000);
    q.op(|s, now, io| s.push(now, io, vec![keyed("acme 2")]))
        .expect("push");
    q.op(|s, now, _| s.hand_off_begin(now, first, reservation_id))
        .expect("begin");
    assert!(
        q.take_events().is_empty(),
        "acme 2 waits: acme is at its cap"
    );
    assert_eq!(q.stats().reserved, 1, "the held message is still reserved");
    q.op(|s, now, _| s.hand_off_end(now, first, false))
        .expect("abort");
    assert!(q.take_events().is_empty());
    // Deleted under its reservation, the key is free: the waiter gets acme 2.
    assert_eq!(q.delete(&[(first, Some(reservation_id))]), Ok(1));
    let events = q.take_events();
    assert!(
        matches!(&events[..], [crate::queue::state::Event::Woken { waiter: w, result: Ok(m), .. }] if *w == waiter && text(&m[0]) == "acme 2"),
        "{events:?}"
    );
}

#[test]
fn a_message_held_while_its_group_expires_others_still_expires_after_an_abort() {
    let settings = QueueSettings {
        message_expiration_s: 60,
        ..QueueSettings::default()
    };
    let mut q = Harness::named("q", settings);
    // Nothing is written in between: both pushes are in one group, whose
    // expiry timer fires for `early` while `held` is held.
    let early = q.push(&["early"])[0];
    q.advance(30_000);
    let held = q.push(&["held"])[0];
    let reservation_id = q
        .reserve(2, Some(200_000))
        .iter()
        .find(|m| m.info.id == held)
        .map(|m| m.info.reservation_id)
        .expect("held reserved");
    q.op(|s, now, _| s.hand_off_begin(now, held, reservation_id))
        .expect("begin");
    q.advance(31_000);
    assert!(
        matches!(q.get(early), Err(QueueError::MessageNotFound(_))),
        "early expired"
    );
    q.op(|s, now, _| s.hand_off_end(now, held, false))
        .expect("abort");
    assert_eq!(q.stats().size, 1, "held is back, not yet expired");
    // Its expiry, passed by while it was held, still comes.
    q.advance(30_000);
    assert_eq!(q.stats().size, 0, "held expired at its time");
}
