//! Many requests in flight on one connection; responses matched by id, out of order.

use std::collections::HashSet;

use bytes::Bytes;
use ferromq::client::ReserveOptions;
use ferromq::proto::{self, request::Op, response, QueueSettings, Request};

use crate::support::{raw, recv, send, TestServer};

fn push(id: u64, queue: &str, body: &'static [u8]) -> Request {
    Request {
        id,
        op: Some(Op::Push(proto::Push {
            queue: queue.into(),
            messages: vec![proto::PushMessage {
                key: String::new(),
                priority: None,
                body: Bytes::from_static(body),
                delay_ms: 0,
                push_headers: Vec::new(),
            }],
        })),
    }
}

#[tokio::test]
async fn a_long_poll_does_not_hold_back_later_requests_on_the_same_connection() {
    let server = TestServer::start().await;
    let mut conn = raw(server.addr()).await;
    let setup = server.client().await;
    setup
        .create_queue("slow", QueueSettings::default())
        .await
        .unwrap();

    send(
        &mut conn,
        Request {
            id: 1,
            op: Some(Op::Reserve(proto::Reserve {
                queue: "slow".into(),
                n: 1,
                timeout_ms: 0,
                wait_ms: 20_000,
                delete: false,
                auto_timeout: false,
            })),
        },
    )
    .await;
    send(&mut conn, push(2, "fast", b"x")).await;
    let first = recv(&mut conn).await.expect("a response");
    assert_eq!(
        first.id, 2,
        "the push is answered while the long poll waits"
    );
    assert!(matches!(first.result, Some(response::Result::Push(_))));

    send(&mut conn, push(3, "slow", b"wake")).await;
    let mut ids = HashSet::new();
    for _ in 0..2 {
        let resp = recv(&mut conn).await.expect("a response");
        if resp.id == 1 {
            let Some(response::Result::Messages(list)) = resp.result else {
                panic!("reserve answered with {:?}", resp.result)
            };
            assert_eq!(&list.messages[0].body[..], b"wake");
        }
        ids.insert(resp.id);
    }
    assert_eq!(ids, HashSet::from([1, 3]));
}

#[tokio::test]
async fn the_client_pipelines_many_requests_on_one_connection() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut calls = Vec::new();
    for i in 0..500u32 {
        let client = client.clone();
        calls.push(tokio::spawn(async move {
            client
                .push("many", vec![Bytes::from(i.to_string())])
                .await
                .unwrap()
        }));
    }
    let mut ids = HashSet::new();
    for call in calls {
        ids.extend(call.await.unwrap());
    }
    assert_eq!(ids.len(), 500, "every push got its own id");
    assert_eq!(client.info("many").await.unwrap().size, 500);
    // And a long poll on the same client does not block an info on it.
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .reserve(
                    "empty",
                    ReserveOptions {
                        wait_ms: 20_000,
                        ..Default::default()
                    },
                )
                .await
        })
    };
    client
        .create_queue("empty", QueueSettings::default())
        .await
        .ok();
    let info = client.info("many").await.unwrap();
    assert_eq!(info.size, 500);
    client
        .push("empty", vec![Bytes::from_static(b"done")])
        .await
        .unwrap();
    let got = waiter.await.unwrap();
    // The reserve may have reached the server before create_queue: then it failed
    // with QUEUE_NOT_FOUND; otherwise it got the message.
    if let Ok(messages) = got {
        assert_eq!(&messages[0].body[..], b"done");
    }
}
