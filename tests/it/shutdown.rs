//! Shutdown ends every task the server started: accept loops, connections, queue
//! actors, queue creations and message moves.

use bytes::Bytes;
use ferromq::proto::{self, request::Op, response, DeadLetter, QueueSettings, Request};

use crate::support::{raw, recv, send, Http, TestServer};

/// One request on a raw connection (no client tasks of its own) and its result.
async fn call(
    conn: &mut tokio_util::codec::Framed<tokio::net::TcpStream, ferromq::codec::ClientCodec>,
    id: u64,
    op: Op,
) -> response::Result {
    send(conn, Request { id, op: Some(op) }).await;
    let reply = recv(conn).await.expect("a response");
    assert_eq!(reply.id, id);
    reply.result.expect("a result")
}

/// Regression: the HTTP accept loop and the dead-letter move helper were spawned
/// untracked, so they could outlive `Server::shutdown`. On this one-thread runtime
/// the count of live tasks is exact.
#[tokio::test]
async fn shutdown_ends_every_task_the_server_started() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let server = TestServer::start_with(|config| {
        config.http_listen = Some("127.0.0.1:0".parse().unwrap());
        config.auth.disabled = true;
    })
    .await;
    let mut conn = raw(server.addr()).await;
    let settings = QueueSettings {
        dead_letter: Some(DeadLetter {
            queue: "work.dead".into(),
            max_reservations: 1,
        }),
        ..QueueSettings::default()
    };
    call(
        &mut conn,
        1,
        Op::CreateQueue(proto::CreateQueue {
            queue: "work".into(),
            settings: Some(settings),
        }),
    )
    .await;
    let push = Op::Push(proto::Push {
        queue: "work".into(),
        messages: vec![proto::PushMessage {
            body: Bytes::from_static(b"poison"),
            delay_ms: 0,
        }],
    });
    call(&mut conn, 2, push).await;
    let reserve = |n| {
        Op::Reserve(proto::Reserve {
            queue: "work".into(),
            n,
            timeout_ms: 0,
            wait_ms: 0,
            delete: false,
        })
    };
    let response::Result::Messages(got) = call(&mut conn, 3, reserve(1)).await else {
        panic!("reserve")
    };
    let m = &got.messages[0];
    let release = Op::Release(proto::Release {
        queue: "work".into(),
        message_id: m.id,
        reservation_id: m.reservation_id,
        delay_ms: 0,
    });
    call(&mut conn, 4, release).await;
    // This reserve starts the move to the dead-letter queue, which creates it.
    call(&mut conn, 5, reserve(1)).await;
    let http = Http {
        addr: server.server.http_addr().unwrap(),
        project: "p".into(),
        token: None,
    };
    assert_eq!(http.call("GET", "queues", None).await.status, 200);
    assert!(metrics.num_alive_tasks() > before, "the server runs tasks");

    let TestServer {
        server, dir: _dir, ..
    } = server;
    server.shutdown().await;
    assert_eq!(
        metrics.num_alive_tasks(),
        before,
        "a task outlived the server's shutdown"
    );
    drop(conn);
}
