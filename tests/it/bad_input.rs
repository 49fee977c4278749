//! Bad input: each case gets its error code, the server keeps serving other
//! connections, and nothing already stored is lost.

use bytes::Bytes;
use ferromq::client::ReserveOptions;
use ferromq::proto::{self, request::Op, response, ErrorCode, Request};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{frame, raw, recv, send, TestServer};

/// Reads one response frame and then expects the server to close the connection.
async fn error_then_close(stream: &mut TcpStream) -> (u64, ErrorCode) {
    let (id, err) = crate::support::error_then_close(stream).await;
    (id, ErrorCode::try_from(err.code).unwrap())
}

fn error_code(resp: &proto::Response) -> Option<ErrorCode> {
    match &resp.result {
        Some(response::Result::Error(err)) => ErrorCode::try_from(err.code).ok(),
        _ => None,
    }
}

fn code<T>(result: Result<T, ferromq::client::ClientError>) -> Option<ErrorCode> {
    result.err().and_then(|e| e.code())
}

/// A message pushed before the abuse, checked after it.
async fn survivor(server: &TestServer) -> u64 {
    let client = server.client().await;
    client
        .push("keep", vec![Bytes::from_static(b"precious")])
        .await
        .unwrap()[0]
}

async fn still_serving(server: &TestServer, id: u64) {
    let client = server.client().await;
    let m = client
        .get("keep", id)
        .await
        .expect("the server still serves");
    assert_eq!(&m.body[..], b"precious");
}

#[tokio::test]
async fn garbage_bytes_get_malformed_frame_and_a_close() {
    let server = TestServer::start().await;
    let id = survivor(&server).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream
        .write_all(&frame(6, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))
        .await
        .unwrap();
    assert_eq!(
        error_then_close(&mut stream).await,
        (0, ErrorCode::MalformedFrame)
    );
    still_serving(&server, id).await;
}

#[tokio::test]
async fn a_truncated_frame_gets_malformed_frame() {
    let server = TestServer::start().await;
    let id = survivor(&server).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(&frame(100, b"only ten b")).await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(
        error_then_close(&mut stream).await,
        (0, ErrorCode::MalformedFrame)
    );
    still_serving(&server, id).await;
}

#[tokio::test]
async fn an_oversize_length_prefix_gets_frame_too_large_without_sending_the_body() {
    let server = TestServer::start().await;
    let id = survivor(&server).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    assert_eq!(
        error_then_close(&mut stream).await,
        (0, ErrorCode::FrameTooLarge)
    );
    still_serving(&server, id).await;
}

#[tokio::test]
async fn the_frame_limit_is_configurable() {
    let server = TestServer::start_with(|c| {
        c.max_body = 1024;
        c.max_frame = 4096;
    })
    .await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(&frame(4097, &[])).await.unwrap();
    assert_eq!(
        error_then_close(&mut stream).await,
        (0, ErrorCode::FrameTooLarge)
    );
}

#[tokio::test]
async fn an_unknown_op_gets_unknown_operation_and_the_connection_stays_open() {
    let server = TestServer::start().await;
    let mut conn = raw(server.addr()).await;
    send(&mut conn, Request { id: 9, op: None }).await;
    let resp = recv(&mut conn).await.unwrap();
    assert_eq!(
        (resp.id, error_code(&resp)),
        (9, Some(ErrorCode::UnknownOperation))
    );

    // A field number from a future version decodes as "no op" too.
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    // field 1 (id) = 5, field 99 (length-delimited) = "hi"
    let payload = [0x08, 0x05, 0x9a, 0x06, 0x02, b'h', b'i'];
    stream
        .write_all(&frame(u32::try_from(payload.len()).unwrap(), &payload))
        .await
        .unwrap();
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await.unwrap();
    let mut body = vec![0u8; usize::try_from(u32::from_be_bytes(header)).unwrap()];
    stream.read_exact(&mut body).await.unwrap();
    let resp = proto::Response::decode(&body[..]).unwrap();
    assert_eq!(
        (resp.id, error_code(&resp)),
        (5, Some(ErrorCode::UnknownOperation))
    );

    // The first connection still works.
    send(
        &mut conn,
        Request {
            id: 10,
            op: Some(Op::ListQueues(proto::ListQueues::default())),
        },
    )
    .await;
    let resp = recv(&mut conn).await.unwrap();
    assert_eq!(resp.id, 10);
    assert!(matches!(resp.result, Some(response::Result::QueueList(_))));
}

#[tokio::test]
async fn an_unsupported_protocol_version_is_refused_and_closed() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    let hello = Request {
        id: 1,
        op: Some(Op::Hello(proto::Hello {
            consumer: String::new(),
            version: 99,
            client: "test".into(),
            token: String::new(),
        })),
    };
    let bytes = hello.encode_to_vec();
    stream
        .write_all(&frame(u32::try_from(bytes.len()).unwrap(), &bytes))
        .await
        .unwrap();
    assert_eq!(
        error_then_close(&mut stream).await,
        (1, ErrorCode::UnsupportedVersion)
    );
}

#[tokio::test]
async fn invalid_arguments_get_their_codes_and_change_nothing() {
    let server = TestServer::start().await;
    let id = survivor(&server).await;
    let client = server.client().await;

    for name in [
        "",
        "has space",
        "a//b",
        "/name",
        "p/a/b",
        "ü",
        &"x".repeat(129),
    ] {
        assert_eq!(
            code(client.push(name, vec![Bytes::from_static(b"a")]).await),
            Some(ErrorCode::InvalidArgument),
            "name {name:?}"
        );
    }
    assert_eq!(
        code(client.push("keep", vec![]).await),
        Some(ErrorCode::InvalidArgument)
    );
    let too_many = vec![Bytes::from_static(b"a"); 101];
    assert_eq!(
        code(client.push("keep", too_many).await),
        Some(ErrorCode::InvalidArgument)
    );
    for n in [101, 1000, u32::MAX] {
        let opts = ReserveOptions {
            n,
            ..Default::default()
        };
        assert_eq!(
            code(client.reserve("keep", opts).await),
            Some(ErrorCode::InvalidArgument),
            "n={n}"
        );
        assert_eq!(
            code(client.peek("keep", n).await),
            Some(ErrorCode::InvalidArgument),
            "n={n}"
        );
    }
    for (timeout_ms, wait_ms) in [(99, 0), (86_400_001, 0), (0, 30_001), (0, u64::MAX)] {
        let opts = ReserveOptions {
            timeout_ms,
            wait_ms,
            ..Default::default()
        };
        assert_eq!(
            code(client.reserve("keep", opts).await),
            Some(ErrorCode::InvalidArgument)
        );
    }
    let delayed = vec![proto::PushMessage {
        key: String::new(),
        priority: None,
        body: Bytes::new(),
        delay_ms: 7 * 24 * 3_600_000 + 1,
        push_headers: Vec::new(),
    }];
    assert_eq!(
        code(client.push_messages("keep", delayed).await),
        Some(ErrorCode::InvalidArgument)
    );
    let big = Bytes::from(vec![0u8; 64 * 1024 + 1]);
    assert_eq!(
        code(client.push("keep", vec![big]).await),
        Some(ErrorCode::BodyTooLarge)
    );
    assert_eq!(
        code(client.list_queues("", "", 101).await),
        Some(ErrorCode::InvalidArgument)
    );

    let info = client.info("keep").await.unwrap();
    assert_eq!(
        (info.size, info.total_pushed),
        (1, 1),
        "nothing was pushed by the bad calls"
    );
    still_serving(&server, id).await;
}

#[tokio::test]
async fn a_body_at_the_limit_is_accepted() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let body = Bytes::from(vec![7u8; 64 * 1024]);
    let ids = client.push("big", vec![body.clone()]).await.unwrap();
    assert_eq!(client.get("big", ids[0]).await.unwrap().body, body);
}

#[tokio::test]
async fn random_bytes_on_many_connections_never_hurt_the_server() {
    let server = TestServer::start().await;
    let id = survivor(&server).await;
    // A fixed xorshift sequence: the same "random" input on every run.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut connections = Vec::new();
    for _ in 0..50 {
        let len = usize::try_from(next() % 300).unwrap();
        let mut bytes: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
        // Half of the inputs carry a plausible length prefix, so they reach the decoder.
        if next() % 2 == 0 && len >= 4 {
            bytes[..4].copy_from_slice(&u32::try_from(len - 4).unwrap().to_be_bytes());
        }
        let addr = server.addr();
        connections.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(&bytes).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut sink = Vec::new();
            // Whatever the server answers, it must end the conversation.
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                stream.read_to_end(&mut sink),
            )
            .await
            .expect("the server answers or closes within 10 s")
            .ok();
        }));
    }
    for connection in connections {
        connection.await.unwrap();
    }
    still_serving(&server, id).await;
    let client = server.client().await;
    let info = client.info("keep").await.unwrap();
    assert_eq!(info.size, 1, "nothing lost, nothing added by accident");
}
