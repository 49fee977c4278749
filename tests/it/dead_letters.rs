//! Dead-letter queues and redrive.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ferromq::client::ReserveOptions;
use ferromq::proto::{DeadLetter, ErrorCode, QueueSettings};
use ferromq::Client;

use crate::support::TestServer;

fn with_dead_letter(queue: &str, max_reservations: u32) -> QueueSettings {
    QueueSettings {
        dead_letter: Some(DeadLetter {
            queue: queue.into(),
            max_reservations,
        }),
        ..QueueSettings::default()
    }
}

/// Waits until `queue` holds `size` messages. A completed move is reported to the
/// source queue by a message of the server to itself; nothing tells a client, so
/// this polls the queue's counter (bounded: 10 s).
async fn wait_for_size(client: &Client, queue: &str, size: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.info(queue).await.unwrap().size != size {
        assert!(
            Instant::now() < deadline,
            "{queue} never reached size {size}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_message_reserved_too_often_moves_to_the_dead_letter_queue() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .create_queue("work", with_dead_letter("work.dead", 2))
        .await
        .unwrap();
    let id = client
        .push("work", vec![Bytes::from_static(b"poison")])
        .await
        .unwrap()[0];
    for attempt in 1..=2 {
        let got = client
            .reserve("work", ReserveOptions::default())
            .await
            .unwrap();
        assert_eq!((got[0].id, got[0].reserved_count), (id, attempt));
        client
            .release("work", id, got[0].reservation_id, 0)
            .await
            .unwrap();
    }
    // The third reserve meets reserved_count == 2: the message moves instead.
    let got = client
        .reserve("work", ReserveOptions::default())
        .await
        .unwrap();
    assert!(
        got.is_empty(),
        "a dead-lettered message is not delivered: {got:?}"
    );
    assert_eq!(
        client.get("work", id).await.unwrap_err().code(),
        Some(ErrorCode::MessageNotFound)
    );

    // The dead-letter queue was created by the move; the message arrives there with
    // its id, body and count.
    let dead = client
        .reserve(
            "work.dead",
            ReserveOptions {
                wait_ms: 10_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (dead[0].id, &dead[0].body[..], dead[0].reserved_count),
        (id, &b"poison"[..], 3)
    );
    wait_for_size(&client, "work", 0).await;
    let info = client.info("work.dead").await.unwrap();
    assert_eq!((info.size, info.total_pushed), (1, 1));
}

#[tokio::test]
async fn redrive_moves_messages_back_with_a_fresh_count() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .create_queue("work", with_dead_letter("dlq", 1))
        .await
        .unwrap();
    let ids = client
        .push(
            "work",
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
        )
        .await
        .unwrap();
    let got = client
        .reserve(
            "work",
            ReserveOptions {
                n: 2,
                timeout_ms: 60_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for m in &got {
        client
            .release("work", m.id, m.reservation_id, 0)
            .await
            .unwrap();
    }
    assert!(client
        .reserve(
            "work",
            ReserveOptions {
                n: 2,
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .is_empty());
    wait_for_size(&client, "dlq", 2).await;
    wait_for_size(&client, "work", 0).await;

    let moved = client.redrive("dlq", "work", 100).await.unwrap();
    assert_eq!(moved, 2);
    let back = client.peek("work", 10).await.unwrap();
    assert_eq!(back.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
    assert!(back.iter().all(|m| m.reserved_count == 0));
    wait_for_size(&client, "dlq", 0).await;

    assert_eq!(
        client.redrive("dlq", "dlq", 1).await.unwrap_err().code(),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        client.redrive("nope", "work", 1).await.unwrap_err().code(),
        Some(ErrorCode::QueueNotFound)
    );
}

#[tokio::test]
async fn dead_letter_settings_are_validated_updated_and_removed() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let err = client
        .create_queue("q", with_dead_letter("q", 3))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::InvalidArgument),
        "own dead-letter queue"
    );
    let err = client
        .create_queue("q", with_dead_letter("d", 0))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::InvalidArgument),
        "max_reservations 0"
    );
    let err = client
        .create_queue("q", with_dead_letter("bad name", 3))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::InvalidArgument),
        "invalid dead-letter name"
    );

    client
        .create_queue("q", QueueSettings::default())
        .await
        .unwrap();
    let info = client
        .update_queue("q", with_dead_letter("d", 7))
        .await
        .unwrap();
    let dead_letter = info.settings.unwrap().dead_letter.unwrap();
    assert_eq!(
        (dead_letter.queue.as_str(), dead_letter.max_reservations),
        ("d", 7)
    );
    // Updating another field leaves the dead-letter setting alone.
    let info = client
        .update_queue(
            "q",
            QueueSettings {
                message_timeout_ms: 9_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(info.settings.unwrap().dead_letter.is_some());
    // An empty queue name removes it.
    let info = client
        .update_queue("q", with_dead_letter("", 0))
        .await
        .unwrap();
    assert!(info.settings.unwrap().dead_letter.is_none());
}
