//! Priorities (issue 14) end to end: pushed with a priority on either protocol,
//! reserved lower first and FIFO within a priority by both, shown by both, kept
//! across a restart; a priority out of range is refused with the reason. The
//! rules themselves (requeues to the front of their own priority, moves keeping
//! it) are checked on the state machine (`src/queue/tests/rules.rs`, and the
//! model test).

use bytes::Bytes;
use ferromq::client::ReserveOptions;
use ferromq::proto::{ErrorCode, PushMessage};
use serde_json::json;

use crate::support::{with_http, TestServer};

fn message(body: &'static str, priority: Option<u32>) -> PushMessage {
    PushMessage {
        body: Bytes::from_static(body.as_bytes()),
        priority,
        ..PushMessage::default()
    }
}

#[tokio::test]
async fn both_protocols_push_and_reserve_by_priority_and_a_restart_keeps_the_order() {
    let server = TestServer::start_with(with_http).await;
    let client = server.client().await;
    let queue = "p/jobs";
    client
        .push_messages(
            queue,
            vec![
                message("bulk-1", Some(12)),
                message("normal-1", None),
                message("urgent-1", Some(0)),
            ],
        )
        .await
        .unwrap();
    let http = server.http("p", Some("t"));
    let reply = http
        .call(
            "POST",
            "queues/jobs/messages",
            Some(json!({"messages": [
                {"body": "urgent-2", "priority": 0},
                {"body": "normal-2"},
                {"body": "bulk-2", "priority": 12}
            ]})),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");

    let expected = [
        ("urgent-1", 0),
        ("urgent-2", 0),
        ("normal-1", 8),
        ("normal-2", 8),
        ("bulk-1", 12),
        ("bulk-2", 12),
    ];
    let peeked: Vec<(String, u32)> = client
        .peek(queue, 6)
        .await
        .unwrap()
        .iter()
        .map(|m| (String::from_utf8_lossy(&m.body).into_owned(), m.priority))
        .collect();
    let want: Vec<(String, u32)> = expected
        .iter()
        .map(|&(body, priority)| (body.to_owned(), priority))
        .collect();
    assert_eq!(peeked, want);

    // Kept across a restart.
    let server = server.restart_with(with_http).await;
    let client = server.client().await;
    let http = server.http("p", Some("t"));
    // The first two by HTTP, the next two by the binary protocol.
    let reply = http
        .call("POST", "queues/jobs/reservations", Some(json!({"n": 2})))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let got: Vec<(String, u64)> = reply.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["body"].as_str().unwrap().to_owned(),
                m["priority"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [("urgent-1".to_owned(), 0), ("urgent-2".to_owned(), 0)]
    );
    let options = ReserveOptions {
        n: 2,
        ..ReserveOptions::default()
    };
    let got = client.reserve(queue, options).await.unwrap();
    let bodies: Vec<&[u8]> = got.iter().map(|m| &m.body[..]).collect();
    assert_eq!(bodies, [&b"normal-1"[..], b"normal-2"]);
    // A release goes to the front of its own priority: before the other
    // normal one, after nothing urgent.
    client
        .release(queue, got[1].id, got[1].reservation_id, 0)
        .await
        .unwrap();
    client
        .push_messages(queue, vec![message("urgent-3", Some(0))])
        .await
        .unwrap();
    let reply = http.call("GET", "queues/jobs/messages?n=4", None).await;
    let bodies: Vec<&str> = reply.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["urgent-3", "normal-2", "bulk-1", "bulk-2"]);
}

#[tokio::test]
async fn a_priority_out_of_range_is_refused_on_both_protocols() {
    let server = TestServer::start_with(with_http).await;
    let client = server.client().await;
    let err = client
        .push_messages("p/q", vec![message("ok", Some(3)), message("no", Some(16))])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument));
    assert!(err.to_string().contains("priority = 16"), "{err}");
    let http = server.http("p", Some("t"));
    for bad in [json!(16), json!(-1), json!("high"), json!(1.5)] {
        let reply = http
            .call(
                "POST",
                "queues/q/messages",
                Some(json!({"messages": [{"body": "x", "priority": bad}]})),
            )
            .await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
        assert!(reply.text.contains("priority"), "{bad}: {}", reply.text);
    }
    // All or nothing: the good message of the refused push is not there either.
    let reply = http.call("GET", "queues/q", None).await;
    assert!(
        reply.status == 404 || reply.json["queue"]["size"] == 0,
        "{reply:?}"
    );
}
