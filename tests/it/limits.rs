//! Server limits answered, not left hanging: a connection past
//! `--max-connections` gets one refusal and a close, on both ports, and the
//! connections already in are not disturbed; idle and slow connections are
//! closed; queues past `--max-queues` and `--max-queues-per-project` are refused.

use ferromq::proto::{self, response, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{error_then_close, read_until_closed, TestServer};

#[tokio::test]
async fn a_connection_past_the_limit_gets_resource_exhausted_and_a_close() {
    let server = TestServer::start_with(|config| {
        config.max_connections = 2;
        config.http_listen = Some("127.0.0.1:0".parse().unwrap());
        config.auth.disabled = true;
    })
    .await;
    let first = server.client().await;
    let second = server.client().await;

    let mut third = TcpStream::connect(server.addr()).await.unwrap();
    let (_, err) = error_then_close(&mut third).await;
    assert_eq!(
        ErrorCode::try_from(err.code).unwrap(),
        ErrorCode::ResourceExhausted
    );
    assert!(err.message.contains("at most 2"), "{}", err.message);

    // The two inside are served as before.
    first.push("jobs", vec!["a".into()]).await.unwrap();
    assert_eq!(second.info("jobs").await.unwrap().size, 1);

    // Once one leaves, a new connection is admitted (the slot frees when the
    // server has seen the close, so try a bounded number of times).
    drop(first);
    let mut admitted = None;
    for _ in 0..200 {
        match ferromq::Client::connect(server.addr()).await {
            Ok(client) => {
                admitted = Some(client);
                break;
            }
            Err(err) => {
                assert_eq!(err.code(), Some(ErrorCode::ResourceExhausted), "{err}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    let admitted = admitted.expect("a slot frees when a client leaves");
    assert_eq!(admitted.info("jobs").await.unwrap().size, 1);

    // The HTTP port has its own cap with the same number: two in, the third 503.
    let http = server.server.http_addr().unwrap();
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(http).await.unwrap();
        // A keep-alive request that is answered proves the connection is in.
        conn.write_all(b"GET /3/projects/p/queues HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0_u8; 12];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        open.push(conn);
    }
    let mut refused = TcpStream::connect(http).await.unwrap();
    refused
        .write_all(b"GET /3/projects/p/queues HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8(read_until_closed(&mut refused).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 1"), "{answer}");
    assert!(answer.contains("Too many connections"), "{answer}");
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed_and_busy_ones_are_not() {
    let server = TestServer::start_with(|config| {
        config.idle_timeout_ms = 300;
        config.http_header_timeout_ms = 300;
        config.http_listen = Some("127.0.0.1:0".parse().unwrap());
        config.auth.disabled = true;
    })
    .await;
    // A long poll longer than the idle timeout is not idle: it gets its message.
    let waiting = server.client().await;
    waiting
        .create_queue("jobs", proto::QueueSettings::default())
        .await
        .unwrap();
    let poll = tokio::spawn(async move {
        waiting
            .reserve(
                "jobs",
                ferromq::client::ReserveOptions {
                    wait_ms: 2_000,
                    ..Default::default()
                },
            )
            .await
    });
    // An idle connection, and one that trickles half a frame and stops.
    let mut idle = TcpStream::connect(server.addr()).await.unwrap();
    let mut trickle = TcpStream::connect(server.addr()).await.unwrap();
    trickle.write_all(&[0, 0, 0, 50, 1]).await.unwrap();
    for stream in [&mut idle, &mut trickle] {
        let (_, err) = error_then_close(stream).await;
        assert_eq!(
            ErrorCode::try_from(err.code).unwrap(),
            ErrorCode::Unavailable
        );
        assert!(err.message.contains("idle"), "{}", err.message);
    }
    let producer = server.client().await;
    producer.push("jobs", vec!["late".into()]).await.unwrap();
    let got = poll.await.unwrap().expect("the long poll was served");
    assert_eq!(&got[0].body[..], b"late");

    // HTTP: headers that never finish, and a keep-alive connection left idle.
    let http = server.server.http_addr().unwrap();
    let mut slow = TcpStream::connect(http).await.unwrap();
    slow.write_all(b"GET /3/projects/p/queues HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow).await;
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let mut kept = TcpStream::connect(http).await.unwrap();
    kept.write_all(b"GET /3/projects/p/queues HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut kept).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "answered, then closed when idle"
    );
}

#[tokio::test]
async fn queues_past_the_server_and_project_limits_are_refused_until_one_goes() {
    let server = TestServer::start_with(|config| {
        config.queue_limits = ferromq::config::QueueLimits {
            max_queues: 3,
            max_queues_per_project: 2,
            ..ferromq::config::QueueLimits::default()
        };
        config.http_listen = Some("127.0.0.1:0".parse().unwrap());
        config.auth.disabled = true;
    })
    .await;
    let client = server.client().await;
    let exhausted = |result: Result<Vec<u64>, ferromq::client::ClientError>| match result {
        Err(err) => err.code() == Some(ErrorCode::ResourceExhausted),
        Ok(_) => false,
    };
    client.push("p1/a", vec!["x".into()]).await.unwrap();
    client.push("p1/b", vec!["x".into()]).await.unwrap();
    assert!(
        exhausted(client.push("p1/c", vec!["x".into()]).await),
        "project limit"
    );
    let refused = client
        .create_queue("p1/c", proto::QueueSettings::default())
        .await;
    assert_eq!(
        refused.err().and_then(|e| e.code()),
        Some(ErrorCode::ResourceExhausted)
    );
    client.push("p2/a", vec!["x".into()]).await.unwrap();
    assert!(
        exhausted(client.push("jobs", vec!["x".into()]).await),
        "server limit"
    );
    // Over HTTP the same refusal is a 503.
    let http = crate::support::Http {
        addr: server.server.http_addr().unwrap(),
        project: "p3".into(),
        token: None,
    };
    let reply = http
        .call(
            "POST",
            "queues/new/messages",
            Some(serde_json::json!({"messages": [{"body": "x"}]})),
        )
        .await;
    assert_eq!(reply.status, 503, "{:?}", reply.json);
    // Existing queues keep working, and deleting one makes room.
    client.push("p1/a", vec!["more".into()]).await.unwrap();
    client.delete_queue("p1/a").await.unwrap();
    client.push("p1/c", vec!["x".into()]).await.unwrap();
    assert_eq!(client.server_stats().await.unwrap().queues, 3);
}

#[tokio::test]
async fn a_full_queue_refuses_pushes_whole_and_takes_them_again_once_drained() {
    let server = TestServer::start_with(|config| {
        config.queue_limits.max_messages_per_queue = 5;
    })
    .await;
    let client = server.client().await;
    let bodies = |n: usize| (0..n).map(|i| format!("m{i}").into()).collect::<Vec<_>>();
    client.push("jobs", bodies(4)).await.unwrap();
    let refused = client.push("jobs", bodies(2)).await;
    assert_eq!(
        refused.err().and_then(|e| e.code()),
        Some(ErrorCode::ResourceExhausted),
        "4 + 2 would pass 5"
    );
    assert_eq!(
        client.info("jobs").await.unwrap().size,
        4,
        "nothing of it pushed"
    );
    client.push("jobs", bodies(1)).await.unwrap();
    // Reserved messages still count; deleting makes room.
    let got = client
        .reserve(
            "jobs",
            ferromq::client::ReserveOptions {
                n: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        client.push("jobs", bodies(1)).await.is_err(),
        "reserved ones count"
    );
    for m in &got {
        client
            .delete("jobs", m.id, Some(m.reservation_id))
            .await
            .unwrap();
    }
    client.push("jobs", bodies(2)).await.unwrap();
    assert_eq!(client.info("jobs").await.unwrap().size, 5);
    // Other queues are not affected.
    client.push("other", bodies(5)).await.unwrap();
}

#[tokio::test]
async fn pushes_past_a_queues_bytes_or_the_servers_total_are_refused_until_drained() {
    let server = TestServer::start_with(|config| {
        config.queue_limits.max_bytes_per_queue = 1000;
        config.queue_limits.max_total_bytes = 1500;
    })
    .await;
    let client = server.client().await;
    let bodies = |n: usize| (0..n).map(|_| vec![b'x'; 100].into()).collect::<Vec<_>>();
    let code = |result: Result<Vec<u64>, ferromq::client::ClientError>| {
        result.err().and_then(|e| e.code())
    };
    client.push("a", bodies(9)).await.unwrap();
    assert_eq!(client.info("a").await.unwrap().bytes, 900);
    assert_eq!(
        code(client.push("a", bodies(2)).await),
        Some(ErrorCode::ResourceExhausted),
        "900 + 200 would pass the queue's 1000"
    );
    assert_eq!(
        client.info("a").await.unwrap().size,
        9,
        "nothing of it pushed"
    );
    client.push("a", bodies(1)).await.unwrap();
    // The server's total: 1000 held in a, 600 more would pass 1500.
    assert_eq!(
        code(client.push("b", bodies(6)).await),
        Some(ErrorCode::ResourceExhausted),
        "the total"
    );
    client.push("b", bodies(5)).await.unwrap();
    // Draining a gives its bytes back, to it and to the total.
    let got = client
        .reserve(
            "a",
            ferromq::client::ReserveOptions {
                n: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 10);
    for m in &got {
        client
            .delete("a", m.id, Some(m.reservation_id))
            .await
            .unwrap();
    }
    assert_eq!(client.info("a").await.unwrap().bytes, 0);
    client.push("a", bodies(10)).await.unwrap();
    assert_eq!(
        code(client.push("b", bodies(1)).await),
        Some(ErrorCode::ResourceExhausted),
        "1000 + 500 held: the total is full again"
    );
    // A deleted queue's bytes leave the total with it.
    client.delete_queue("a").await.unwrap();
    client.push("b", bodies(5)).await.unwrap();
    assert_eq!(client.info("b").await.unwrap().bytes, 1000);
}

#[tokio::test]
async fn http_bodies_past_the_servers_budget_get_503_before_they_are_read() {
    let server = TestServer::start_with(|config| {
        config.max_http_body_bytes = 2048;
        config.http_listen = Some("127.0.0.1:0".parse().unwrap());
        config.auth.disabled = true;
    })
    .await;
    let http = server.server.http_addr().unwrap();
    let body = format!(r#"{{"messages":[{{"body":"{}"}}]}}"#, "x".repeat(1450));
    let head = format!(
        "POST /3/projects/p/queues/q/messages HTTP/1.1\r\nHost: t\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    // A holds 1.5 KiB of the 2 KiB budget: the server asks for its body (100
    // Continue) only once it holds its share.
    let mut a = tokio::net::TcpStream::connect(http).await.unwrap();
    a.write_all(format!("{head}Expect: 100-continue\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 64];
    let n = a.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // B's 1.5 KiB would pass the budget: 503 at once, with Retry-After.
    let request = format!("{head}Connection: close\r\n\r\n{body}");
    let mut b = tokio::net::TcpStream::connect(http).await.unwrap();
    b.write_all(request.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut b).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after"),
        "{answer}"
    );
    // A finishes and gives its share back; B's retry is served.
    a.write_all(body.as_bytes()).await.unwrap();
    let n = a.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 201"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let mut b = tokio::net::TcpStream::connect(http).await.unwrap();
    b.write_all(request.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut b).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 201"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn a_connection_stops_being_read_past_its_byte_budget() {
    use futures_util::SinkExt;
    use prost::Message as _;
    const BUDGET: usize = 3500;
    const MAX_BODY: usize = 200;
    let server = TestServer::start_with(|config| {
        config.max_connection_bytes = BUDGET;
        config.max_body = MAX_BODY;
    })
    .await;
    let admin = server.client().await;
    admin
        .create_queue("jobs", proto::QueueSettings::default())
        .await
        .unwrap();
    let poll = |id| proto::Request {
        id,
        op: Some(proto::request::Op::Reserve(proto::Reserve {
            queue: "jobs".into(),
            n: 1,
            wait_ms: 20_000,
            ..proto::Reserve::default()
        })),
    };
    // A reserve of one message is charged its frame and the body it may bring
    // (at most a sixteenth of the budget).
    let size = poll(10).encoded_len() + MAX_BODY.min(BUDGET / 16);
    // Reading stops once the requests in flight hold the budget.
    let expected = BUDGET.div_ceil(size);
    let total = expected + 3;
    let mut conn = crate::support::raw(server.addr()).await;
    for id in 0..total {
        conn.feed(poll(u64::try_from(id).unwrap() + 10))
            .await
            .unwrap();
    }
    conn.flush().await.unwrap();
    let parked = u64::try_from(expected).unwrap();
    assert!(
        crate::support::until_waiting(&admin, "jobs", parked).await,
        "{expected} polls parked"
    );
    // Still only those, after another round trip.
    assert_eq!(
        admin.info("jobs").await.unwrap().waiting,
        u64::try_from(expected).unwrap()
    );
    // Each message served frees a request's bytes and lets the next one in: all
    // are answered in the end.
    for i in 0..total {
        admin
            .push("jobs", vec![format!("m{i}").into()])
            .await
            .unwrap();
    }
    let mut answered = 0;
    while answered < total {
        let reply = crate::support::recv(&mut conn).await.expect("an answer");
        assert!(
            matches!(&reply.result, Some(response::Result::Messages(m)) if m.messages.len() == 1),
            "{reply:?}"
        );
        answered += 1;
    }
}

#[tokio::test]
async fn long_polls_past_the_queue_limit_are_refused() {
    let server =
        TestServer::start_with(|config| config.queue_limits.max_waiters_per_queue = 1).await;
    let client = server.client().await;
    client
        .create_queue("jobs", proto::QueueSettings::default())
        .await
        .unwrap();
    let poll = ferromq::client::ReserveOptions {
        wait_ms: 10_000,
        ..Default::default()
    };
    let first = {
        let client = client.clone();
        tokio::spawn(async move { client.reserve("jobs", poll).await })
    };
    assert!(crate::support::until_waiting(&client, "jobs", 1).await);
    let refused = client.reserve("jobs", poll).await;
    assert_eq!(
        refused.err().and_then(|e| e.code()),
        Some(ErrorCode::ResourceExhausted)
    );
    client.push("jobs", vec!["m".into()]).await.unwrap();
    let got = first.await.unwrap().unwrap();
    assert_eq!(&got[0].body[..], b"m");
}
