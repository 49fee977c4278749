//! Every operation of semantics.md through the client, with its observable effects.

use bytes::Bytes;
use ferromq::client::{ClientError, ReserveOptions};
use ferromq::proto::{ErrorCode, MessageState, PushMessage, QueueSettings};

use crate::support::TestServer;

fn bodies(texts: &[&str]) -> Vec<Bytes> {
    texts
        .iter()
        .map(|t| Bytes::copy_from_slice(t.as_bytes()))
        .collect()
}

fn code(err: ClientError) -> ErrorCode {
    err.code()
        .unwrap_or_else(|| panic!("not a server error: {err}"))
}

fn texts(messages: &[ferromq::proto::Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

#[tokio::test]
async fn push_creates_the_queue_and_reserve_returns_messages_in_order() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let ids = client.push("jobs", bodies(&["a", "b", "c"])).await.unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    let got = client
        .reserve(
            "jobs",
            ReserveOptions {
                n: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(texts(&got), ["a", "b"]);
    assert_eq!(got[0].id, ids[0]);
    assert_eq!(got[0].reserved_count, 1);
    assert_eq!(got[0].state, MessageState::Reserved as i32);
    assert!(got[1].reservation_id > got[0].reservation_id);
    assert!(got[0].reserved_until_ms > got[0].pushed_at_ms);

    let info = client.info("jobs").await.unwrap();
    assert_eq!(
        (info.size, info.available, info.reserved, info.delayed),
        (3, 1, 2, 0)
    );
    assert_eq!(info.total_pushed, 3);
}

#[tokio::test]
async fn reserve_on_an_empty_queue_returns_nothing_at_once() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .create_queue("empty", QueueSettings::default())
        .await
        .unwrap();
    let got = client
        .reserve("empty", ReserveOptions::default())
        .await
        .unwrap();
    assert!(got.is_empty());
}

#[tokio::test]
async fn only_push_creates_queues() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let missing = "missing";
    assert_eq!(
        code(
            client
                .reserve(missing, ReserveOptions::default())
                .await
                .unwrap_err()
        ),
        ErrorCode::QueueNotFound
    );
    assert_eq!(
        code(client.peek(missing, 1).await.unwrap_err()),
        ErrorCode::QueueNotFound
    );
    assert_eq!(
        code(client.get(missing, 1).await.unwrap_err()),
        ErrorCode::QueueNotFound
    );
    assert_eq!(
        code(client.delete(missing, 1, None).await.unwrap_err()),
        ErrorCode::QueueNotFound
    );
    assert_eq!(
        code(client.info(missing).await.unwrap_err()),
        ErrorCode::QueueNotFound
    );
    assert_eq!(
        code(client.clear_queue(missing).await.unwrap_err()),
        ErrorCode::QueueNotFound
    );
    assert_eq!(
        code(client.delete_queue(missing).await.unwrap_err()),
        ErrorCode::QueueNotFound
    );
    assert_eq!(
        code(client.touch(missing, 1, 1, 0).await.unwrap_err()),
        ErrorCode::QueueNotFound
    );
    assert_eq!(
        code(client.release(missing, 1, 1, 0).await.unwrap_err()),
        ErrorCode::QueueNotFound
    );
    assert_eq!(
        code(
            client
                .update_queue(missing, QueueSettings::default())
                .await
                .unwrap_err()
        ),
        ErrorCode::QueueNotFound
    );
    let list = client.list_queues("", "", 100).await.unwrap();
    assert!(
        list.names.is_empty(),
        "nothing was created: {:?}",
        list.names
    );
}

#[tokio::test]
async fn delete_with_and_without_reservation() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let ids = client.push("q", bodies(&["a", "b"])).await.unwrap();
    // An available message can be deleted without a reservation id.
    client.delete("q", ids[1], None).await.unwrap();
    assert_eq!(
        code(client.get("q", ids[1]).await.unwrap_err()),
        ErrorCode::MessageNotFound
    );

    let got = client
        .reserve("q", ReserveOptions::default())
        .await
        .unwrap();
    // A reserved message needs its reservation id.
    assert_eq!(
        code(client.delete("q", ids[0], None).await.unwrap_err()),
        ErrorCode::ReservationMismatch
    );
    assert_eq!(
        code(
            client
                .delete("q", ids[0], Some(got[0].reservation_id + 1000))
                .await
                .unwrap_err()
        ),
        ErrorCode::ReservationMismatch
    );
    client
        .delete("q", ids[0], Some(got[0].reservation_id))
        .await
        .unwrap();
    assert_eq!(
        code(client.delete("q", ids[0], None).await.unwrap_err()),
        ErrorCode::MessageNotFound
    );
    assert_eq!(client.info("q").await.unwrap().size, 0);
}

#[tokio::test]
async fn batch_delete_is_all_or_nothing() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let ids = client.push("q", bodies(&["a", "b", "c"])).await.unwrap();
    let err = client
        .delete_batch("q", vec![(ids[0], None), (ids[1], None), (999_999, None)])
        .await
        .unwrap_err();
    assert_eq!(code(err), ErrorCode::MessageNotFound);
    assert_eq!(
        client.info("q").await.unwrap().size,
        3,
        "nothing was deleted"
    );
    let count = client
        .delete_batch("q", vec![(ids[0], None), (ids[2], None)])
        .await
        .unwrap();
    assert_eq!(count, 2);
    let left = client.peek("q", 10).await.unwrap();
    assert_eq!(texts(&left), ["b"]);
    let err = client.delete_batch("q", vec![]).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::InvalidArgument);
}

#[tokio::test]
async fn touch_issues_a_new_reservation_and_retires_the_old_one() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.push("q", bodies(&["a"])).await.unwrap();
    let got = client
        .reserve(
            "q",
            ReserveOptions {
                timeout_ms: 10_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let m = &got[0];
    let touched = client
        .touch("q", m.id, m.reservation_id, 30_000)
        .await
        .unwrap();
    assert!(
        touched.reservation_id > m.reservation_id,
        "fencing token increases"
    );
    assert!(touched.reserved_until_ms > m.reserved_until_ms);
    assert_eq!(
        code(
            client
                .touch("q", m.id, m.reservation_id, 0)
                .await
                .unwrap_err()
        ),
        ErrorCode::ReservationMismatch,
        "the superseded reservation is refused"
    );
    let info = client.get("q", m.id).await.unwrap();
    assert_eq!(info.reserved_until_ms, touched.reserved_until_ms);
    assert_eq!(info.reservation_id, 0, "get never shows reservation ids");
    client
        .delete("q", m.id, Some(touched.reservation_id))
        .await
        .unwrap();
}

#[tokio::test]
async fn release_puts_messages_at_the_front_latest_first() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.push("q", bodies(&["a", "b", "c"])).await.unwrap();
    let got = client
        .reserve(
            "q",
            ReserveOptions {
                n: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    client
        .release("q", got[1].id, got[1].reservation_id, 0)
        .await
        .unwrap();
    assert_eq!(texts(&client.peek("q", 10).await.unwrap()), ["b", "c"]);
    client
        .release("q", got[0].id, got[0].reservation_id, 0)
        .await
        .unwrap();
    assert_eq!(texts(&client.peek("q", 10).await.unwrap()), ["a", "b", "c"]);
    // The released reservation is gone.
    assert_eq!(
        code(
            client
                .release("q", got[0].id, got[0].reservation_id, 0)
                .await
                .unwrap_err()
        ),
        ErrorCode::ReservationMismatch
    );
    // A second reservation counts.
    let again = client
        .reserve("q", ReserveOptions::default())
        .await
        .unwrap();
    assert_eq!(again[0].reserved_count, 2);
}

#[tokio::test]
async fn release_with_delay_and_push_with_delay_keep_messages_delayed() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let ids = client
        .push_messages(
            "q",
            vec![PushMessage {
                key: String::new(),
                priority: None,
                body: Bytes::from_static(b"later"),
                delay_ms: 60_000,
                push_headers: Vec::new(),
            }],
        )
        .await
        .unwrap();
    let info = client.info("q").await.unwrap();
    assert_eq!((info.size, info.delayed, info.available), (1, 1, 0));
    assert!(client
        .reserve("q", ReserveOptions::default())
        .await
        .unwrap()
        .is_empty());
    let m = client.get("q", ids[0]).await.unwrap();
    assert_eq!(m.state, MessageState::Delayed as i32);
    assert!(m.available_at_ms >= m.pushed_at_ms + 60_000);

    client.push("q", bodies(&["now"])).await.unwrap();
    let got = client
        .reserve("q", ReserveOptions::default())
        .await
        .unwrap();
    client
        .release("q", got[0].id, got[0].reservation_id, 60_000)
        .await
        .unwrap();
    let info = client.info("q").await.unwrap();
    assert_eq!(
        (info.size, info.delayed, info.available, info.reserved),
        (2, 2, 0, 0)
    );
}

#[tokio::test]
async fn a_delayed_message_becomes_available_and_wakes_a_long_poll() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .push_messages(
            "q",
            vec![PushMessage {
                key: String::new(),
                priority: None,
                body: Bytes::from_static(b"soon"),
                delay_ms: 300,
                push_headers: Vec::new(),
            }],
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let got = client
        .reserve(
            "q",
            ReserveOptions {
                wait_ms: 10_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(texts(&got), ["soon"]);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn reserve_with_delete_removes_the_messages() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.push("q", bodies(&["a", "b"])).await.unwrap();
    let got = client
        .reserve(
            "q",
            ReserveOptions {
                n: 5,
                delete: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(texts(&got), ["a", "b"]);
    assert_eq!(got[0].reservation_id, 0);
    assert_eq!(client.info("q").await.unwrap().size, 0);
}

#[tokio::test]
async fn peek_changes_nothing_and_shows_no_reservation_ids() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.push("q", bodies(&["a", "b", "c"])).await.unwrap();
    let first = client.peek("q", 2).await.unwrap();
    let second = client.peek("q", 2).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(texts(&first), ["a", "b"]);
    assert!(first
        .iter()
        .all(|m| m.reservation_id == 0 && m.reserved_count == 0));
    assert_eq!(client.info("q").await.unwrap().available, 3);
}

#[tokio::test]
async fn get_shows_state_and_counts_in_any_state() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let ids = client.push("q", bodies(&["a"])).await.unwrap();
    let m = client.get("q", ids[0]).await.unwrap();
    assert_eq!(
        (m.state, m.reserved_count),
        (MessageState::Available as i32, 0)
    );
    assert_eq!(&m.body[..], b"a");
    client
        .reserve("q", ReserveOptions::default())
        .await
        .unwrap();
    let m = client.get("q", ids[0]).await.unwrap();
    assert_eq!(
        (m.state, m.reserved_count),
        (MessageState::Reserved as i32, 1)
    );
    assert_eq!(
        code(client.get("q", 12_345_678).await.unwrap_err()),
        ErrorCode::MessageNotFound
    );
}

#[tokio::test]
async fn queue_admin_create_update_info_list_clear_delete() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let created = client
        .create_queue(
            "a.jobs",
            QueueSettings {
                message_timeout_ms: 5_000,
                message_expiration_s: 3_600,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let settings = created.settings.unwrap();
    assert_eq!(
        (settings.message_timeout_ms, settings.message_expiration_s),
        (5_000, 3_600)
    );
    assert_eq!(
        code(
            client
                .create_queue("a.jobs", QueueSettings::default())
                .await
                .unwrap_err()
        ),
        ErrorCode::QueueExists
    );
    let updated = client
        .update_queue(
            "a.jobs",
            QueueSettings {
                message_timeout_ms: 7_000,
                message_expiration_s: 0,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let settings = updated.settings.unwrap();
    assert_eq!(
        (settings.message_timeout_ms, settings.message_expiration_s),
        (7_000, 3_600)
    );
    // The default lease comes from the queue setting.
    client.push("a.jobs", bodies(&["x"])).await.unwrap();
    let got = client
        .reserve("a.jobs", ReserveOptions::default())
        .await
        .unwrap();
    let lease = got[0].reserved_until_ms - got[0].pushed_at_ms;
    assert!((6_000..=8_000).contains(&lease), "lease of {lease} ms");
    // Expiration is pushed_at + message_expiration.
    assert_eq!(got[0].expires_at_ms, got[0].pushed_at_ms + 3_600_000);

    for name in ["a.more", "b.other", "a.zzz"] {
        client
            .create_queue(name, QueueSettings::default())
            .await
            .unwrap();
    }
    let page = client.list_queues("a.", "", 2).await.unwrap();
    assert_eq!(page.names, ["a.jobs", "a.more"]);
    let page = client
        .list_queues("a.", &page.next_cursor, 2)
        .await
        .unwrap();
    assert_eq!(page.names, ["a.zzz"]);
    assert!(page.next_cursor.is_empty());

    client.push("a.more", bodies(&["1", "2"])).await.unwrap();
    assert_eq!(client.clear_queue("a.more").await.unwrap(), 2);
    let info = client.info("a.more").await.unwrap();
    assert_eq!((info.size, info.total_pushed), (0, 2));

    client.delete_queue("a.more").await.unwrap();
    assert_eq!(
        code(client.info("a.more").await.unwrap_err()),
        ErrorCode::QueueNotFound
    );
    // A queue of the same name starts empty.
    client.push("a.more", bodies(&["fresh"])).await.unwrap();
    let info = client.info("a.more").await.unwrap();
    assert_eq!((info.size, info.total_pushed), (1, 1));
}

#[tokio::test]
async fn settings_out_of_range_are_refused() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let err = client
        .create_queue(
            "q",
            QueueSettings {
                message_timeout_ms: 50,
                message_expiration_s: 0,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), ErrorCode::InvalidArgument);
    let err = client
        .create_queue(
            "q",
            QueueSettings {
                message_timeout_ms: 0,
                message_expiration_s: 2_592_001,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), ErrorCode::InvalidArgument);
}

#[tokio::test]
async fn queues_are_independent() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.push("one", bodies(&["1"])).await.unwrap();
    client.push("two", bodies(&["2"])).await.unwrap();
    let got = client
        .reserve(
            "two",
            ReserveOptions {
                n: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(texts(&got), ["2"]);
    assert_eq!(client.info("one").await.unwrap().available, 1);
}

#[tokio::test]
async fn server_stats_count_queues_and_group_commit_flushes() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let before = client.server_stats().await.unwrap();
    assert_eq!((before.queues, before.fsync.as_str()), (0, "always"));
    client
        .push("stats-a", vec![Bytes::from_static(b"x")])
        .await
        .unwrap();
    client
        .push("stats-b", vec![Bytes::from_static(b"y")])
        .await
        .unwrap();
    let after = client.server_stats().await.unwrap();
    assert_eq!(after.queues, 2);
    // Each acknowledged push waited for a flush that started after it.
    assert!(
        after.flushes >= before.flushes + 2,
        "{before:?} -> {after:?}"
    );
    assert!(after.uptime_ms >= before.uptime_ms);
}

/// A plain reserve and a touch answer without waiting for the disk, so they ask for
/// no flush of their own (their writes ride on the next one); a delete does.
#[tokio::test]
async fn reserves_and_touches_cost_no_flush_of_their_own() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .push("lazy", vec![Bytes::from_static(b"x")])
        .await
        .unwrap();
    let pushed = client.server_stats().await.unwrap().flushes;
    let got = client
        .reserve("lazy", ReserveOptions::default())
        .await
        .unwrap();
    let touched = client
        .touch("lazy", got[0].id, got[0].reservation_id, 30_000)
        .await
        .unwrap();
    assert_eq!(client.server_stats().await.unwrap().flushes, pushed);
    client
        .delete("lazy", got[0].id, Some(touched.reservation_id))
        .await
        .unwrap();
    assert_eq!(client.server_stats().await.unwrap().flushes, pushed + 1);
    assert_eq!(client.info("lazy").await.unwrap().size, 0);
}

/// Regression: a push that reached its queue's actor in the same turn as the
/// queue's deletion was refused QUEUE_NOT_FOUND instead of re-creating the queue.
/// The race needs two threads; each round pushes while the queue is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_racing_the_deletion_of_their_queue_are_all_acknowledged() {
    let server = TestServer::start().await;
    let producer = server.client().await;
    let admin = server.client().await;
    for round in 0..20 {
        let pushes: Vec<_> = (0..16)
            .map(|i| {
                let producer = producer.clone();
                tokio::spawn(async move {
                    producer
                        .push("racy", bodies(&[&format!("{round}-{i}")]))
                        .await
                })
            })
            .collect();
        // The queue may not exist yet when the deletion arrives.
        let _ = admin.delete_queue("racy").await;
        for push in pushes {
            let ids = push
                .await
                .unwrap()
                .expect("a push is never refused for a deleted queue");
            assert_eq!(ids.len(), 1);
        }
    }
}
