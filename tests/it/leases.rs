//! Lease expiry, requeue, fencing tokens, long polls and expiration: the timed parts
//! of semantics.md. Waiting is done by long polls, which return when the server's
//! timer fires, not by sleeping in the test.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ferromq::client::ReserveOptions;
use ferromq::proto::{ErrorCode, QueueSettings};

use crate::support::TestServer;

/// Waits until the server reports `n` parked long polls on `queue`. The server
/// offers no push notification of a parked waiter, so this polls its `waiting`
/// counter (bounded: 10 s).
async fn wait_for_waiters(client: &ferromq::Client, queue: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.info(queue).await.unwrap().waiting != n {
        assert!(Instant::now() < deadline, "{n} waiter(s) never parked");
        tokio::task::yield_now().await;
    }
}

fn opts(n: u32, timeout_ms: u64, wait_ms: u64) -> ReserveOptions {
    ReserveOptions {
        n,
        timeout_ms,
        wait_ms,
        delete: false,
    }
}

#[tokio::test]
async fn an_expired_lease_requeues_the_message_with_its_count_and_refuses_the_old_id() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .push(
            "q",
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
        )
        .await
        .unwrap();
    let held = client.reserve("q", opts(2, 300, 0)).await.unwrap();
    let (a, b) = (&held[0], &held[1]);
    assert_eq!(&a.body[..], b"a");

    // Nothing is available now: this long poll returns when the leases run out.
    // Both expire in the same instant; b is requeued last, so it is at the front.
    let started = Instant::now();
    let again = client.reserve("q", opts(1, 60_000, 10_000)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, b.id);
    assert_eq!(again[0].reserved_count, 2);
    assert!(
        again[0].reservation_id > a.reservation_id.max(b.reservation_id),
        "fencing tokens only grow"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // a's lease ran out and nobody holds it since: expired. b's old lease has been
    // superseded by the new reservation: mismatch.
    let err = client
        .delete("q", a.id, Some(a.reservation_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ReservationExpired));
    let err = client
        .release("q", a.id, a.reservation_id, 0)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ReservationExpired));
    let err = client
        .touch("q", b.id, b.reservation_id, 0)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ReservationMismatch));
    let peeked = client.peek("q", 10).await.unwrap();
    assert_eq!(
        (peeked.len(), peeked[0].id, peeked[0].reserved_count),
        (1, a.id, 1)
    );
    client
        .delete("q", b.id, Some(again[0].reservation_id))
        .await
        .unwrap();
    client.delete("q", a.id, None).await.unwrap();
}

#[tokio::test]
async fn a_superseded_reservation_is_a_mismatch() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .push("q", vec![Bytes::from_static(b"a")])
        .await
        .unwrap();
    let a = client
        .reserve("q", opts(1, 200, 0))
        .await
        .unwrap()
        .remove(0);
    // Wait for the requeue by a long poll, then the old lease is expired for every op.
    let again = client
        .reserve("q", opts(1, 200, 10_000))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(again.id, a.id);
    let after = client
        .reserve("q", opts(1, 60_000, 10_000))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(after.reserved_count, 3);
    for err in [
        client
            .release("q", a.id, again.reservation_id, 0)
            .await
            .unwrap_err(),
        client
            .delete("q", a.id, Some(again.reservation_id))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.code(), Some(ErrorCode::ReservationMismatch), "{err}");
    }
    client
        .release("q", a.id, after.reservation_id, 0)
        .await
        .unwrap();
    let err = client
        .release("q", a.id, after.reservation_id, 0)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ReservationMismatch));
}

#[tokio::test]
async fn a_requeued_message_goes_before_messages_pushed_earlier() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .push("q", vec![Bytes::from_static(b"old")])
        .await
        .unwrap();
    // Reserve "old" so that "new" can be pushed behind it, then let only "old" expire.
    let old = client
        .reserve("q", opts(1, 60_000, 0))
        .await
        .unwrap()
        .remove(0);
    client
        .push("q", vec![Bytes::from_static(b"new")])
        .await
        .unwrap();
    // A 1 s lease: long enough that "new" cannot expire before "old" is taken
    // again below, even on a loaded machine.
    let new = client
        .reserve("q", opts(1, 1_000, 0))
        .await
        .unwrap()
        .remove(0);
    client
        .release("q", old.id, old.reservation_id, 0)
        .await
        .unwrap();
    // "old" is available; the long poll would take it, so reserve it with a long lease.
    let old_again = client
        .reserve("q", opts(1, 60_000, 0))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(old_again.id, old.id);
    // Now only "new" is reserved, and it expires: it comes back at the front.
    let back = client
        .reserve("q", opts(1, 60_000, 10_000))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(back.id, new.id);
    client
        .release("q", back.id, back.reservation_id, 0)
        .await
        .unwrap();
    client
        .release("q", old_again.id, old_again.reservation_id, 0)
        .await
        .unwrap();
    // The most recent requeue is first.
    let order: Vec<u64> = client
        .peek("q", 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(order, [old.id, new.id]);
}

#[tokio::test]
async fn a_long_poll_is_woken_by_a_push_from_another_connection() {
    let server = TestServer::start().await;
    let consumer = server.client().await;
    let producer = server.client().await;
    producer
        .create_queue("q", QueueSettings::default())
        .await
        .unwrap();
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let got = consumer.reserve("q", opts(1, 0, 20_000)).await.unwrap();
        (got, started.elapsed())
    });
    wait_for_waiters(&producer, "q", 1).await;
    producer
        .push("q", vec![Bytes::from_static(b"wake")])
        .await
        .unwrap();
    let (got, elapsed) = waiting.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], b"wake");
    assert!(
        elapsed < Duration::from_secs(10),
        "woken by the push, not by the wait: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_long_poll_that_times_out_returns_no_messages() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .create_queue("q", QueueSettings::default())
        .await
        .unwrap();
    let started = Instant::now();
    let got = client.reserve("q", opts(1, 0, 300)).await.unwrap();
    assert!(got.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(290),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn long_polls_are_served_in_arrival_order() {
    let server = TestServer::start().await;
    let producer = server.client().await;
    producer
        .create_queue("q", QueueSettings::default())
        .await
        .unwrap();
    let first = server.client().await;
    let second = server.client().await;
    let one = tokio::spawn(async move { first.reserve("q", opts(1, 0, 20_000)).await.unwrap() });
    wait_for_waiters(&producer, "q", 1).await;
    let two = tokio::spawn(async move { second.reserve("q", opts(1, 0, 20_000)).await.unwrap() });
    wait_for_waiters(&producer, "q", 2).await;
    producer
        .push("q", vec![Bytes::from_static(b"1")])
        .await
        .unwrap();
    let got_one = one.await.unwrap();
    assert_eq!(&got_one[0].body[..], b"1");
    producer
        .push("q", vec![Bytes::from_static(b"2")])
        .await
        .unwrap();
    let got_two = two.await.unwrap();
    assert_eq!(&got_two[0].body[..], b"2");
}

#[tokio::test]
async fn messages_expire_whatever_their_state() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .create_queue(
            "q",
            QueueSettings {
                message_timeout_ms: 0,
                message_expiration_s: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    client
        .push("q", vec![Bytes::from_static(b"a")])
        .await
        .unwrap();
    let reserved = client
        .reserve("q", opts(1, 60_000, 0))
        .await
        .unwrap()
        .remove(0);
    assert!(reserved.expires_at_ms <= reserved.pushed_at_ms + 1_000);
    // "b" is delayed past its own expiration.
    let delayed = vec![ferromq::proto::PushMessage {
        body: Bytes::from_static(b"b"),
        delay_ms: 1_200,
    }];
    client.push_messages("q", delayed).await.unwrap();
    // No signal exists for an expiration; a server-side long poll of 2 s is the
    // clock here, and it must come back empty because "b" expires before its delay ends.
    let got = client.reserve("q", opts(1, 0, 2_000)).await.unwrap();
    assert!(
        got.is_empty(),
        "expired messages are never delivered: {got:?}"
    );
    let info = client.info("q").await.unwrap();
    assert_eq!(
        info.size, 0,
        "both the delayed and the reserved message expired"
    );
    let err = client
        .delete("q", reserved.id, Some(reserved.reservation_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MessageNotFound));
}
