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
                key_max_in_flight: None,
                delivery_history: None,
                message_timeout_ms: 45_000,
                message_expiration_s: 0,
                dead_letter: Some(DeadLetter {
                    queue: "kept.dead".into(),
                    max_reservations: 4,
                }),
                push: None,
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

/// Messages are stored many to a record (one batch record per actor turn, at most
/// 512 messages each) with one state record per batch: deletes scattered over
/// several batches must come back exactly after a restart, and a drained queue
/// must leave no record behind.
#[tokio::test]
async fn batches_restore_exactly_the_undeleted_messages_and_vanish_when_drained() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut ids = Vec::new();
    for push in 0..12 {
        let bodies = (0..100)
            .map(|i| Bytes::from(format!("p{push}-{i}")))
            .collect();
        ids.extend(client.push("batched", bodies).await.unwrap());
    }
    // The whole first push, every third message of the fifth, and one reserved
    // then deleted from the middle.
    let mut deleted: Vec<u64> = ids[..100].to_vec();
    deleted.extend(ids[400..500].iter().step_by(3));
    for chunk in deleted.chunks(100) {
        let entries = chunk.iter().map(|&id| (id, None)).collect();
        client.delete_batch("batched", entries).await.unwrap();
    }
    let got = client
        .reserve(
            "batched",
            ReserveOptions {
                n: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    client
        .delete("batched", got[0].id, Some(got[0].reservation_id))
        .await
        .unwrap();
    deleted.push(got[0].id);
    drop(client);

    let server = server.restart().await;
    let client = server.client().await;
    let expected: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| !deleted.contains(id))
        .collect();
    let body = client.get("batched", ids[1199]).await.unwrap().body;
    assert_eq!(&body[..], b"p11-99");
    // Reserving everything shows the order; deleting it drains the queue.
    let mut order = Vec::new();
    loop {
        let got = client
            .reserve(
                "batched",
                ReserveOptions {
                    n: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        order.extend(got.iter().map(|m| m.id));
        let entries = got.iter().map(|m| (m.id, Some(m.reservation_id))).collect();
        client.delete_batch("batched", entries).await.unwrap();
    }
    assert_eq!(order, expected);
    drop(client);
    let TestServer { server, dir, .. } = server;
    server.shutdown().await;
    let db = sled::open(dir.path()).unwrap();
    let queues = db.open_tree("queues").unwrap();
    let (_, value) = queues.first().unwrap().expect("one queue");
    let queue = ferromq::storage::keys::decode_queue(&value).unwrap();
    assert_eq!(queue.total_pushed, 1200);
    for tree in [
        ferromq::storage::keys::BATCHES_TREE,
        ferromq::storage::keys::STATES_TREE,
    ] {
        let left = db
            .open_tree(tree)
            .unwrap()
            .scan_prefix(ferromq::storage::keys::id_key(queue.id))
            .count();
        assert_eq!(left, 0, "records left behind");
    }
}

/// Ids stay dense across a clean restart (the exact counter is written at
/// shutdown); only a crash makes them jump.
#[tokio::test]
async fn ids_continue_where_they_stopped_after_a_clean_restart() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let before = client
        .push("dense", vec![Bytes::from_static(b"a")])
        .await
        .unwrap()[0];
    drop(client);
    let server = server.restart().await;
    let client = server.client().await;
    let after = client
        .push("dense", vec![Bytes::from_static(b"b")])
        .await
        .unwrap()[0];
    assert_eq!(after, before + 1);
}

/// A data directory of layout 2 (two sled trees per queue) is migrated into the
/// shared trees when the server opens it: its messages, order, leases and settings
/// are all there, and the old trees are gone.
#[tokio::test]
async fn a_data_directory_with_a_tree_per_queue_is_migrated() {
    use ferromq::storage::keys;
    use ferromq::storage::{BatchBuilder, DeadLetterRecord, MessageRecord, QueueRecord};
    let dir = tempfile::tempdir().unwrap();
    let now = 1_700_000_000_000u64;
    {
        let db = sled::open(dir.path()).unwrap();
        let queue = QueueRecord {
            key_max_in_flight: 0,
            delivery_history: 10,
            id: 1,
            name: "old".into(),
            created_at_ms: now,
            total_pushed: 3,
            message_timeout_ms: 30_000,
            message_expiration_s: 30 * 24 * 3600,
            dead_letter: Some(DeadLetterRecord {
                queue: "old.dead".into(),
                max_reservations: 4,
            }),
            processing: Vec::new(),
            push: None,
            attachment: Vec::new(),
        };
        db.open_tree("queues")
            .unwrap()
            .insert(keys::id_key(1), keys::encode_queue(&queue))
            .unwrap();
        let mut batch = BatchBuilder::default();
        for (i, id) in [2u64, 3, 4].into_iter().enumerate() {
            let record = MessageRecord {
                pushed_at_ms: now,
                available_at_ms: 0,
                expires_at_ms: u64::MAX / 2,
            };
            batch.push(id, record, Bytes::from(format!("m{i}")), (None, 8));
        }
        db.open_tree(keys::layout2_tree_name(1, false))
            .unwrap()
            .insert(keys::id_key(2), batch.encode())
            .unwrap();
        // Message 3 deleted (slot 1), the rest in their push-default state.
        let state = ferromq::storage::batch::encode_batch_state(3, |slot| slot == 1, &[]);
        db.open_tree(keys::layout2_tree_name(1, true))
            .unwrap()
            .insert(keys::id_key(2), state)
            .unwrap();
        db.insert(b"next_id", &keys::id_key(10)[..]).unwrap();
        db.flush().unwrap();
    }
    let server = TestServer::start_in_dir(dir).await;
    let client = server.client().await;
    let peeked: Vec<u64> = client
        .peek("old", 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(peeked, [2, 4]);
    let info = client.info("old").await.unwrap();
    assert_eq!((info.size, info.total_pushed), (2, 3));
    assert_eq!(
        info.settings.unwrap().dead_letter.unwrap().max_reservations,
        4
    );
    let fresh = client
        .push("old", vec![Bytes::from_static(b"new")])
        .await
        .unwrap()[0];
    assert!(fresh >= 10, "ids continue above the old counter");
    drop(client);
    let TestServer { server, dir, .. } = server;
    server.shutdown().await;
    let db = sled::open(dir.path()).unwrap();
    let names: Vec<Vec<u8>> = db.tree_names().into_iter().map(|n| n.to_vec()).collect();
    assert!(
        names.iter().all(|name| keys::layout2_tree(name).is_none()),
        "the old trees are gone: {names:?}"
    );
}

/// A backlog many times the page cache (1 MiB here): sled evicts its pages and
/// reads them back, and a restart rebuilds the queue's compact index from them.
/// Every message comes back once, in order, with its own body.
#[tokio::test]
async fn a_backlog_larger_than_the_cache_comes_back_whole_and_in_order() {
    let small_cache = |config: &mut ferromq::Config| config.cache_bytes = 1 << 20;
    let server = TestServer::start_with(small_cache).await;
    let client = server.client().await;
    let body = |i: usize| Bytes::from(format!("{i:>600}"));
    let mut ids = Vec::new();
    for chunk in 0..100 {
        let bodies = (chunk * 100..(chunk + 1) * 100).map(body).collect();
        ids.extend(client.push("big", bodies).await.unwrap());
    }
    // Every 7th message deleted before the restart, so the groups are not whole.
    for i in (0..ids.len()).step_by(7) {
        client.delete("big", ids[i], None).await.unwrap();
    }
    drop(client);

    let server = server.restart_with(small_cache).await;
    let client = server.client().await;
    let expected: Vec<usize> = (0..ids.len()).filter(|i| i % 7 != 0).collect();
    assert_eq!(
        client.info("big").await.unwrap().size,
        expected.len() as u64
    );
    let mut got = Vec::new();
    loop {
        let batch = client
            .reserve(
                "big",
                ReserveOptions {
                    n: 100,
                    delete: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        got.extend(batch);
    }
    assert_eq!(got.len(), expected.len());
    for (message, &i) in got.iter().zip(&expected) {
        assert_eq!((message.id, &message.body), (ids[i], &body(i)));
    }
    assert_eq!(client.info("big").await.unwrap().size, 0);
}
