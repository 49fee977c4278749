//! Atomic hand-off (issue 14) end to end: a reserved message replaced by
//! follow-ups in other queues over either protocol, kept across a restart; the
//! refusals (a wrong or missing reservation, no target, a bad follow-up, a full
//! target after another target was staged) change nothing. What a crash at any
//! moment leaves is tested by killing the real binary (`tests/crash.rs`); the
//! steps and their recovery on the state machine (`src/queue/tests/hand_off.rs`,
//! the model test).

use bytes::Bytes;
use ferromq::client::{Client, ReserveOptions};
use ferromq::proto::{ErrorCode, FollowUps, Message, MessageState, PushMessage};
use serde_json::json;

use crate::support::{with_http, TestServer};

fn follow_ups(queue: &str, bodies: &[&str]) -> FollowUps {
    FollowUps {
        queue: queue.into(),
        messages: bodies
            .iter()
            .map(|b| PushMessage {
                body: Bytes::copy_from_slice(b.as_bytes()),
                ..PushMessage::default()
            })
            .collect(),
    }
}

/// Pushes `body` to `queue` and reserves it: the message.
async fn reserved(client: &Client, queue: &str, body: &str) -> Message {
    client
        .push(queue, vec![body.to_owned().into()])
        .await
        .unwrap();
    let mut got = client
        .reserve(queue, ReserveOptions::default())
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    got.remove(0)
}

async fn bodies(client: &Client, queue: &str) -> Vec<String> {
    client
        .peek(queue, 100)
        .await
        .unwrap()
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

#[tokio::test]
async fn a_hand_off_replaces_the_message_by_its_follow_ups_on_both_protocols() {
    let server = TestServer::start_with(with_http).await;
    let client = server.client().await;

    // Binary protocol: one order becomes two invoices and an email.
    let order = reserved(&client, "p/orders", "order 1").await;
    let ids = client
        .hand_off(
            "p/orders",
            order.id,
            order.reservation_id,
            vec![
                follow_ups("p/invoices", &["invoice 1a", "invoice 1b"]),
                follow_ups("p/emails", &["email 1"]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0].len(), 2);
    assert_eq!(ids[1].len(), 1);
    let err = client.get("p/orders", order.id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MessageNotFound));
    assert_eq!(
        bodies(&client, "p/invoices").await,
        ["invoice 1a", "invoice 1b"]
    );
    assert_eq!(bodies(&client, "p/emails").await, ["email 1"]);
    let invoice = client.get("p/invoices", ids[0][0]).await.unwrap();
    assert_eq!(invoice.state(), MessageState::Available);

    // HTTP: the same, with the reservation id as a string, targets in the project.
    let order = reserved(&client, "p/orders", "order 2").await;
    let api = server.http("p", Some("t"));
    let reply = api
        .call(
            "POST",
            &format!("queues/orders/messages/{}/hand_off", order.id),
            Some(json!({
                "reservation_id": order.reservation_id.to_string(),
                "targets": [
                    {"queue": "invoices", "messages": [{"body": "invoice 2", "priority": 1}]},
                    {"queue": "emails", "messages": [{"body": "email 2", "delay": 60}]}
                ]
            })),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["msg"], "Handed off");
    assert_eq!(reply.json["targets"][0]["queue"], "invoices");
    let invoice_id: u64 = reply.json["targets"][0]["ids"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let reply = api
        .call("GET", &format!("queues/orders/messages/{}", order.id), None)
        .await;
    assert_eq!(reply.status, 404, "{reply:?}");
    // The follow-ups are pushed as pushes are: priority first, a delay kept.
    assert_eq!(
        bodies(&client, "p/invoices").await,
        ["invoice 2", "invoice 1a", "invoice 1b"]
    );
    assert_eq!(bodies(&client, "p/emails").await, ["email 1"]);
    let email = client.get("p/emails", invoice_id + 1).await.unwrap();
    assert_eq!(email.state(), MessageState::Delayed);
    assert_eq!(client.info("p/orders").await.unwrap().size, 0);

    // Kept across a restart.
    let server = server.restart_with(with_http).await;
    let client = server.client().await;
    assert_eq!(
        bodies(&client, "p/invoices").await,
        ["invoice 2", "invoice 1a", "invoice 1b"]
    );
    assert_eq!(client.info("p/emails").await.unwrap().size, 2);
    assert_eq!(client.info("p/orders").await.unwrap().size, 0);
}

#[tokio::test]
async fn a_refused_hand_off_changes_nothing_anywhere() {
    let server = TestServer::start_with(|config| {
        with_http(config);
        config.queue_limits.max_messages_per_queue = 2;
        config.max_body = 1024;
    })
    .await;
    let client = server.client().await;
    let order = reserved(&client, "p/orders", "order").await;
    client
        .push("p/full", vec!["a".into(), "b".into()])
        .await
        .unwrap();
    let hand_off = |reservation_id: u64, targets: Vec<FollowUps>| {
        let client = &client;
        let id = order.id;
        async move {
            client
                .hand_off("p/orders", id, reservation_id, targets)
                .await
                .unwrap_err()
                .code()
        }
    };
    let good = || vec![follow_ups("p/next", &["next"])];
    assert_eq!(
        hand_off(order.reservation_id + 1, good()).await,
        Some(ErrorCode::ReservationMismatch)
    );
    assert_eq!(hand_off(0, good()).await, Some(ErrorCode::InvalidArgument));
    assert_eq!(
        hand_off(order.reservation_id, Vec::new()).await,
        Some(ErrorCode::InvalidArgument),
        "no target"
    );
    assert_eq!(
        hand_off(order.reservation_id, vec![follow_ups("p/bad name", &["x"])]).await,
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        hand_off(order.reservation_id, vec![follow_ups("p/next", &[])]).await,
        Some(ErrorCode::InvalidArgument),
        "a target without messages"
    );
    let big = "x".repeat(2048);
    assert_eq!(
        hand_off(order.reservation_id, vec![follow_ups("p/next", &[&big])]).await,
        Some(ErrorCode::BodyTooLarge)
    );
    // The first target is staged before the second is found full: it is undone.
    assert_eq!(
        hand_off(
            order.reservation_id,
            vec![
                follow_ups("p/next", &["next"]),
                follow_ups("p/full", &["c"])
            ]
        )
        .await,
        Some(ErrorCode::ResourceExhausted)
    );
    assert_eq!(client.info("p/next").await.unwrap().size, 0);
    assert_eq!(client.info("p/full").await.unwrap().size, 2);
    // The message is still reserved under its reservation: it can be handed
    // off (or deleted) with it.
    let got = client.get("p/orders", order.id).await.unwrap();
    assert_eq!(got.state(), MessageState::Reserved);
    let ids = client
        .hand_off("p/orders", order.id, order.reservation_id, good())
        .await
        .unwrap();
    assert_eq!(bodies(&client, "p/next").await, ["next"]);
    assert_eq!(ids[0].len(), 1);

    // HTTP refusals.
    let order = reserved(&client, "p/orders", "order 2").await;
    let api = server.http("p", Some("t"));
    let path = format!("queues/orders/messages/{}/hand_off", order.id);
    for (body, why) in [
        (
            json!({"targets": [{"queue": "next", "messages": [{"body": "x"}]}]}),
            "reservation_id",
        ),
        (
            json!({"reservation_id": order.reservation_id.to_string()}),
            "targets",
        ),
        (
            json!({"reservation_id": order.reservation_id.to_string(), "targets": [{"messages": [{"body": "x"}]}]}),
            "queue",
        ),
        (
            json!({"reservation_id": order.reservation_id.to_string(), "targets": [{"queue": "next", "messages": [{"body": 7}]}]}),
            "body",
        ),
    ] {
        let reply = api.call("POST", &path, Some(body)).await;
        assert_eq!(reply.status, 400, "{why}: {reply:?}");
        assert!(reply.text.contains(why), "{why}: {}", reply.text);
    }
    let reply = api
        .call(
            "POST",
            &path,
            Some(json!({
                "reservation_id": (order.reservation_id + 1).to_string(),
                "targets": [{"queue": "next", "messages": [{"body": "x"}]}]
            })),
        )
        .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(bodies(&client, "p/next").await, ["next"]);
    assert_eq!(
        client.get("p/orders", order.id).await.unwrap().state(),
        MessageState::Reserved
    );
}
