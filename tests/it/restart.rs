//! Restart with data kept: every acknowledged, undeleted message comes back in
//! order, with its reserved_count, its lease and its queue's settings.

use bytes::Bytes;
use ferromq::client::ReserveOptions;
use ferromq::proto::{DeadLetter, ErrorCode, MessageState, QueueSettings};

use crate::support::TestServer;

#[tokio::test]
async fn a_restart_keeps_messages_order_counts_leases_and_settings() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .create_queue(
            "kept",
            QueueSettings {
                message_timeout_ms: 45_000,
                message_expiration_s: 0,
                dead_letter: Some(DeadLetter {
                    queue: "kept.dead".into(),
                    max_reservations: 4,
                }),
            },
        )
        .await
        .unwrap();
    let bodies: Vec<Bytes> = (0..10).map(|i| Bytes::from(format!("m{i}"))).collect();
    let ids = client.push("kept", bodies).await.unwrap();
    // m0 deleted, m1 reserved (lease running), m2 released to the front.
    client.delete("kept", ids[0], None).await.unwrap();
    let got = client
        .reserve(
            "kept",
            ReserveOptions {
                n: 2,
                timeout_ms: 60_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (m1, m2) = (&got[0], &got[1]);
    client
        .release("kept", m2.id, m2.reservation_id, 0)
        .await
        .unwrap();
    drop(client);

    let server = server.restart().await;
    let client = server.client().await;
    let info = client.info("kept").await.unwrap();
    assert_eq!(
        (info.size, info.reserved, info.available, info.total_pushed),
        (9, 1, 8, 10)
    );
    let settings = info.settings.unwrap();
    assert_eq!(settings.message_timeout_ms, 45_000);
    assert_eq!(settings.dead_letter.unwrap().max_reservations, 4);

    let peeked: Vec<u64> = client
        .peek("kept", 100)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    let mut expected = vec![ids[2]];
    expected.extend(&ids[3..]);
    assert_eq!(peeked, expected, "released message first, then push order");

    let reserved = client.get("kept", m1.id).await.unwrap();
    assert_eq!(reserved.state, MessageState::Reserved as i32);
    assert_eq!(reserved.reserved_until_ms, m1.reserved_until_ms);
    assert_eq!(client.get("kept", ids[2]).await.unwrap().reserved_count, 1);
    // The lease taken before the restart is still valid...
    client
        .touch("kept", m1.id, m1.reservation_id, 0)
        .await
        .unwrap();
    // ...and new ids never repeat old ones.
    let new_ids = client
        .push("kept", vec![Bytes::from_static(b"new")])
        .await
        .unwrap();
    assert!(new_ids[0] > *ids.last().unwrap());
    let err = client.get("kept", ids[0]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MessageNotFound));
}

#[tokio::test]
async fn a_deleted_queue_stays_deleted_after_a_restart() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .push("gone", vec![Bytes::from_static(b"x")])
        .await
        .unwrap();
    client.delete_queue("gone").await.unwrap();
    client
        .push("again", vec![Bytes::from_static(b"y")])
        .await
        .unwrap();
    drop(client);
    let server = server.restart().await;
    let client = server.client().await;
    let list = client.list_queues("", "", 100).await.unwrap();
    assert_eq!(list.names, ["again"]);
}
