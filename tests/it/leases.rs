//! Lease expiry, requeue, fencing tokens, long polls and expiration end to end: the
//! timed parts of semantics.md through a real server. Every rule is checked on the
//! state machine with a manual clock (`src/queue/tests/rules.rs`); here a few tests
//! let the actors' real timers fire (waiting by long polls, which return when the
//! server's timer fires, not by sleeping), and the rest move a manual clock.

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
        auto_timeout: false,
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
    let server = TestServer::start_manual(|_| {}).await;
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
        key: String::new(),
        priority: None,
        body: Bytes::from_static(b"b"),
        delay_ms: 1_200,
        push_headers: Vec::new(),
    }];
    client.push_messages("q", delayed).await.unwrap();
    server.advance(2_000);
    let got = client.reserve("q", opts(1, 0, 0)).await.unwrap();
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

/// Lease advice (issue 14): `info` reports the queue's processing times (reserve
/// to delete with the reservation) on both protocols, on the queues' clock.
#[tokio::test]
async fn info_reports_processing_times_on_both_protocols_and_keeps_them_across_a_restart() {
    let server = TestServer::start_manual(crate::support::with_http).await;
    let client = server.client().await;
    let queue = "p/work";
    client
        .push(
            queue,
            vec![Bytes::from_static(b"1"), Bytes::from_static(b"2")],
        )
        .await
        .unwrap();
    let info = client.info(queue).await.unwrap();
    assert_eq!(info.processing_samples, 0);
    for held_ms in [250, 4_000] {
        let got = client.reserve(queue, opts(1, 60_000, 0)).await.unwrap();
        server.advance(held_ms);
        client
            .delete(queue, got[0].id, Some(got[0].reservation_id))
            .await
            .unwrap();
    }
    let info = client.info(queue).await.unwrap();
    assert_eq!(info.processing_samples, 2);
    assert!((250..=312).contains(&info.processing_p50_ms), "{info:?}");
    assert!(
        (4_000..=5_000).contains(&info.processing_p99_ms),
        "{info:?}"
    );
    let http = server.http("p", Some("t"));
    let reply = http.call("GET", "queues/work", None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let times = &reply.json["queue"]["processing_time"];
    assert_eq!(times["samples"], 2);
    assert_eq!(times["p50_ms"].as_u64(), Some(info.processing_p50_ms));
    assert_eq!(times["p99_ms"].as_u64(), Some(info.processing_p99_ms));
    // Kept with the queue's record.
    let server = server.restart_with(crate::support::with_http).await;
    let after = server.client().await.info(queue).await.unwrap();
    assert_eq!(
        (
            after.processing_samples,
            after.processing_p50_ms,
            after.processing_p99_ms
        ),
        (2, info.processing_p50_ms, info.processing_p99_ms)
    );
}

/// Lease advice (issue 14): a reserve with `timeout = auto` gets the queue's
/// timeout until 20 deletes were measured, then twice their p99, on both
/// protocols; `info` says which lease `auto` gives.
#[tokio::test]
async fn an_auto_timeout_follows_the_measured_processing_time_on_both_protocols() {
    let server = TestServer::start_manual(crate::support::with_http).await;
    let client = server.client().await;
    let queue = "p/auto";
    client
        .push(queue, (0..30).map(|_| Bytes::from_static(b"w")).collect())
        .await
        .unwrap();
    let auto = ReserveOptions {
        n: 1,
        auto_timeout: true,
        ..ReserveOptions::default()
    };
    let start = client.info(queue).await.unwrap();
    assert_eq!(start.advised_timeout_ms, 0);
    let default = start.settings.as_ref().unwrap().message_timeout_ms;
    for i in 0..20 {
        let got = client.reserve(queue, auto).await.unwrap();
        // The clock moved 2 s per round since the push: the queue's default.
        let now = got[0].pushed_at_ms + 2_000 * i;
        assert_eq!(got[0].reserved_until_ms, now + default, "round {i}");
        server.advance(2_000);
        client
            .delete(queue, got[0].id, Some(got[0].reservation_id))
            .await
            .unwrap();
    }
    let info = client.info(queue).await.unwrap();
    assert_eq!(info.processing_samples, 20);
    assert_eq!(info.advised_timeout_ms, 2 * info.processing_p99_ms);
    assert!(
        (4_000..=5_000).contains(&info.advised_timeout_ms),
        "{info:?}"
    );
    // Binary protocol: the advised lease, from now on the queues' clock.
    let before = client
        .reserve(
            queue,
            ReserveOptions {
                n: 1,
                ..ReserveOptions::default()
            },
        )
        .await
        .unwrap();
    let now = before[0].reserved_until_ms - default;
    let got = client.reserve(queue, auto).await.unwrap();
    assert_eq!(got[0].reserved_until_ms, now + info.advised_timeout_ms);
    // HTTP: `"timeout": "auto"`.
    let http = server.http("p", Some("t"));
    let reply = http
        .call(
            "POST",
            "queues/auto/reservations",
            Some(serde_json::json!({"n": 1, "timeout": "auto"})),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let id = reply.json["messages"][0]["id"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    let leased = client.get(queue, id).await.unwrap();
    assert_eq!(leased.reserved_until_ms, now + info.advised_timeout_ms);
    let info_http = http.call("GET", "queues/auto", None).await;
    assert_eq!(
        info_http.json["queue"]["processing_time"]["advised_timeout_ms"].as_u64(),
        Some(info.advised_timeout_ms)
    );
    // Anything else than a number or "auto" is refused.
    let bad = http
        .call(
            "POST",
            "queues/auto/reservations",
            Some(serde_json::json!({"timeout": "soon"})),
        )
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
}
