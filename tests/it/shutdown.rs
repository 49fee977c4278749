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
            key: String::new(),
            priority: None,
            body: Bytes::from_static(b"poison"),
            delay_ms: 0,
            push_headers: Vec::new(),
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
            auto_timeout: false,
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

/// Regression (issue 10): pipelined requests the server had received but not yet
/// read got no answer at shutdown, so a client could not tell a clean stop from a
/// crash. Now each gets UNAVAILABLE and none of them is run.
#[tokio::test]
async fn requests_received_but_not_run_at_shutdown_are_answered_unavailable() {
    use futures_util::SinkExt;
    let server = TestServer::start_with(|config| config.max_in_flight = 2).await;
    let admin = server.client().await;
    admin
        .create_queue("jobs", QueueSettings::default())
        .await
        .unwrap();
    let mut conn = raw(server.addr()).await;
    // Two long polls fill the connection's cap of requests in flight; ten pushes
    // arrive behind them and stay unread.
    for id in 1..=2 {
        let reserve = Op::Reserve(proto::Reserve {
            queue: "jobs".into(),
            n: 1,
            wait_ms: 20_000,
            ..proto::Reserve::default()
        });
        conn.feed(Request {
            id,
            op: Some(reserve),
        })
        .await
        .unwrap();
    }
    for id in 3..=12 {
        let push = Op::Push(proto::Push {
            queue: "jobs".into(),
            messages: vec![proto::PushMessage {
                key: String::new(),
                priority: None,
                body: Bytes::from_static(b"unread"),
                delay_ms: 0,
                push_headers: Vec::new(),
            }],
        });
        conn.feed(Request { id, op: Some(push) }).await.unwrap();
    }
    conn.flush().await.unwrap();
    // Both polls are parked (so the server has read exactly them).
    assert!(
        crate::support::until_waiting(&admin, "jobs", 2).await,
        "the two long polls are waiting"
    );
    drop(admin);

    let server = server.restart().await;
    let mut answered = Vec::new();
    while let Some(reply) = recv(&mut conn).await {
        let Some(response::Result::Error(err)) = reply.result else {
            panic!("request {} got {:?}", reply.id, reply.result);
        };
        assert_eq!(
            proto::ErrorCode::try_from(err.code).unwrap(),
            proto::ErrorCode::Unavailable,
            "{}",
            err.message
        );
        answered.push(reply.id);
    }
    answered.sort_unstable();
    assert_eq!(answered, (1..=12).collect::<Vec<u64>>());
    let client = server.client().await;
    assert_eq!(
        client.info("jobs").await.unwrap().size,
        0,
        "no refused push was run"
    );
}
