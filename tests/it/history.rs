//! Delivery history (issue 14) end to end: consumers named by Hello on the
//! binary protocol and by `X-Ferromq-Consumer` on HTTP, attempts that time out
//! or are released shown by `get` on both protocols, kept across a restart, and
//! carried to the dead-letter queue; bad names refused. The rules (what is and
//! is not recorded, K, the cost of a message deleted at once) are tested on the
//! state machine (`src/queue/tests/rules.rs`) and in the model test.

use ferromq::client::{Client, ConnectOptions, ReserveOptions};
use ferromq::proto::{DeadLetter, DeliveryOutcome, ErrorCode, QueueSettings};
use serde_json::json;

use crate::support::{with_http, TestServer};

async fn consumer(server: &TestServer, name: &str) -> Client {
    let options = ConnectOptions {
        token: server.token.clone(),
        consumer: Some(name.into()),
        ..ConnectOptions::default()
    };
    Client::connect_with(server.addr(), &options).await.unwrap()
}

fn lease(ms: u64) -> ReserveOptions {
    ReserveOptions {
        n: 1,
        timeout_ms: ms,
        ..ReserveOptions::default()
    }
}

#[tokio::test]
async fn get_shows_each_attempt_on_both_protocols_and_a_restart_keeps_them() {
    let server = TestServer::start_manual(with_http).await;
    let queue = "p/jobs";
    let w1 = consumer(&server, "billing-1").await;
    let id = w1
        .push(queue, vec![bytes::Bytes::from_static(b"invoice 7")])
        .await
        .unwrap()[0];
    let first = w1.reserve(queue, lease(1_000)).await.unwrap().remove(0);
    server.advance(300);
    w1.touch(queue, id, first.reservation_id, 1_000)
        .await
        .unwrap();
    server.advance(1_000); // the touched lease ran out
    let w2 = consumer(&server, "billing-2").await;
    let second = w2.reserve(queue, lease(5_000)).await.unwrap().remove(0);
    assert_eq!(second.id, id);
    server.advance(40);
    w2.release(queue, id, second.reservation_id, 0)
        .await
        .unwrap();
    // Reserved over HTTP, named by the header.
    let api = server.http("p", Some("t"));
    let reply = api
        .raw(
            "POST",
            "/3/projects/p/queues/jobs/reservations",
            Some("{}"),
            &["X-Ferromq-Consumer: http-worker"],
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");

    let got = w1.get(queue, id).await.unwrap();
    let seen: Vec<(DeliveryOutcome, &str, u32)> = got
        .history
        .iter()
        .map(|a| (a.outcome(), a.consumer.as_str(), a.touches))
        .collect();
    assert_eq!(
        seen,
        [
            (DeliveryOutcome::TimedOut, "billing-1", 1),
            (DeliveryOutcome::Released, "billing-2", 0),
            (DeliveryOutcome::InProgress, "http-worker", 0),
        ]
    );
    assert_eq!(got.history[0].duration_ms, 1_300);
    assert_eq!(got.history[1].duration_ms, 40);
    let reply = api
        .call("GET", &format!("queues/jobs/messages/{id}"), None)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let history = reply.json["message"]["history"].as_array().unwrap().clone();
    let outcomes: Vec<&str> = history
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["timed_out", "released", "in_progress"]);
    assert_eq!(history[0]["consumer"], "billing-1");
    assert_eq!(history[1]["duration_ms"], 40);

    // Kept across a restart (the attempt under way loses its consumer: memory).
    let server = server.restart_with(with_http).await;
    let after = server.client().await.get(queue, id).await.unwrap();
    assert_eq!(after.history[..2], got.history[..2]);
    assert_eq!(after.history.len(), 3);
}

#[tokio::test]
async fn a_dead_lettered_message_arrives_with_its_history() {
    let server = TestServer::start_manual(with_http).await;
    let client = server.client().await;
    let settings = QueueSettings {
        dead_letter: Some(DeadLetter {
            queue: "p/jobs.dead".into(),
            max_reservations: 1,
        }),
        ..QueueSettings::default()
    };
    client.create_queue("p/jobs", settings).await.unwrap();
    let id = client
        .push("p/jobs", vec![bytes::Bytes::from_static(b"poison")])
        .await
        .unwrap()[0];
    let w1 = consumer(&server, "w1").await;
    w1.reserve("p/jobs", lease(1_000)).await.unwrap();
    server.advance(1_000);
    let w2 = consumer(&server, "w2").await;
    assert!(w2.reserve("p/jobs", lease(1_000)).await.unwrap().is_empty());
    // The move runs in a task of its own: a long poll on the dead-letter queue
    // returns when the message arrives.
    let wait = ReserveOptions {
        n: 1,
        wait_ms: 5_000,
        ..ReserveOptions::default()
    };
    let arrived = client.reserve("p/jobs.dead", wait).await.unwrap();
    assert_eq!(
        arrived.len(),
        1,
        "the message reached the dead-letter queue"
    );
    let got = client.get("p/jobs.dead", id).await.unwrap();
    let seen: Vec<(DeliveryOutcome, &str)> = got
        .history
        .iter()
        .map(|a| (a.outcome(), a.consumer.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (DeliveryOutcome::TimedOut, "w1"),
            (DeliveryOutcome::DeadLettered, "w2"),
            (DeliveryOutcome::InProgress, ""),
        ]
    );
}

#[tokio::test]
async fn bad_consumer_names_and_settings_are_refused_on_both_protocols() {
    let server = TestServer::start_with(with_http).await;
    let options = ConnectOptions {
        token: server.token.clone(),
        consumer: Some("two words".into()),
        ..ConnectOptions::default()
    };
    let err = Client::connect_with(server.addr(), &options)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");
    let api = server.http("p", Some("t"));
    api.call(
        "POST",
        "queues/q/messages",
        Some(json!({"messages": [{"body": "x"}]})),
    )
    .await;
    let long = format!("X-Ferromq-Consumer: {}", "x".repeat(65));
    let reply = api
        .raw(
            "POST",
            "/3/projects/p/queues/q/reservations",
            Some("{}"),
            &[&long],
        )
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.text.contains("consumer"), "{}", reply.text);
    let reply = api
        .call(
            "PATCH",
            "queues/q",
            Some(json!({"queue": {"delivery_history": 101}})),
        )
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    let reply = api
        .call(
            "PATCH",
            "queues/q",
            Some(json!({"queue": {"delivery_history": 3}})),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let info = server.client().await.info("p/q").await.unwrap();
    assert_eq!(info.settings.unwrap().delivery_history, Some(3));
}
