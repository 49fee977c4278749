//! Fair dispatch by key (issue 14) end to end: keys given on either protocol,
//! reserves taking keys in turn, a cap of one per key holding the rest back
//! until the one in flight is done, keys shown by reserve, peek and get on both
//! protocols, kept across a restart; bad keys and caps refused. The rules are
//! tested on the state machine (`src/queue/tests/rules.rs`, the model test).

use bytes::Bytes;
use ferromq::client::ReserveOptions;
use ferromq::proto::{ErrorCode, PushMessage, QueueSettings};
use serde_json::json;

use crate::support::{with_http, TestServer};

fn keyed(body: &str, key: &str) -> PushMessage {
    PushMessage {
        body: Bytes::copy_from_slice(body.as_bytes()),
        key: key.into(),
        ..PushMessage::default()
    }
}

fn n(n: u32) -> ReserveOptions {
    ReserveOptions {
        n,
        ..ReserveOptions::default()
    }
}

#[tokio::test]
async fn keys_take_turns_and_a_cap_holds_a_key_back_on_both_protocols() {
    let server = TestServer::start_with(with_http).await;
    let client = server.client().await;
    let queue = "p/orders";
    // A noisy tenant first, by the binary protocol ...
    let noisy: Vec<PushMessage> = (0..20).map(|i| keyed(&format!("big-{i}"), "big")).collect();
    client.push_messages(queue, noisy).await.unwrap();
    // ... then two small ones over HTTP.
    let api = server.http("p", Some("t"));
    let reply = api
        .call(
            "POST",
            "queues/orders/messages",
            Some(json!({"messages": [
                {"body": "small-a", "key": "tenant-a"},
                {"body": "small-b", "key": "tenant-b"}
            ]})),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    // Each key in turn: the small tenants are not stuck behind 20 messages.
    let got = client.reserve(queue, n(4)).await.unwrap();
    let bodies: Vec<&[u8]> = got.iter().map(|m| &m.body[..]).collect();
    assert_eq!(bodies, [&b"big-0"[..], b"small-a", b"small-b", b"big-1"]);
    assert_eq!(got[1].key, "tenant-a");
    let info = client.info(queue).await.unwrap();
    assert_eq!(info.keys, 3);

    // A cap of one per key: the next "big" waits until both in flight are done.
    let reply = api
        .call(
            "PATCH",
            "queues/orders",
            Some(json!({"queue": {"key_max_in_flight": 1}})),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["queue"]["key_max_in_flight"], 1);
    let reply = api
        .call("POST", "queues/orders/reservations", Some(json!({"n": 5})))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["messages"], json!([]), "big has 2 in flight");
    for m in &got {
        if m.key == "big" {
            client
                .delete(queue, m.id, Some(m.reservation_id))
                .await
                .unwrap();
        }
    }
    let reply = api
        .call("POST", "queues/orders/reservations", Some(json!({"n": 5})))
        .await;
    let list = reply.json["messages"].as_array().unwrap();
    assert_eq!(list.len(), 1, "one at a time: {reply:?}");
    assert_eq!(list[0]["body"], "big-2");
    assert_eq!(list[0]["key"], "big");

    // Kept across a restart: the key, the cap, and so the hold.
    let server = server.restart_with(with_http).await;
    let client = server.client().await;
    let peeked = client.peek(queue, 1).await.unwrap();
    assert_eq!(
        (&peeked[0].body[..], peeked[0].key.as_str()),
        (&b"big-3"[..], "big")
    );
    assert!(
        client.reserve(queue, n(5)).await.unwrap().is_empty(),
        "big-2 is still in flight"
    );
}

#[tokio::test]
async fn bad_keys_and_caps_are_refused_on_both_protocols() {
    let server = TestServer::start_with(with_http).await;
    let client = server.client().await;
    let err = client
        .push_messages("p/q", vec![keyed("x", &"k".repeat(129))])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument));
    assert!(err.to_string().contains("key"), "{err}");
    let err = client
        .create_queue(
            "p/capped",
            QueueSettings {
                key_max_in_flight: Some(10_001),
                ..QueueSettings::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument));
    let api = server.http("p", Some("t"));
    for bad in [json!("a\u{7}b"), json!(7), json!("k".repeat(129))] {
        let reply = api
            .call(
                "POST",
                "queues/q/messages",
                Some(json!({"messages": [{"body": "x", "key": bad}]})),
            )
            .await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
        assert!(reply.text.contains("key"), "{}", reply.text);
    }
}
