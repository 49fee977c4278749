//! Health checks: `/health/live` and `/health/ready` over HTTP and the binary
//! `health` request, all answered without a token on a server that has tokens.

use ferromq::proto::{request::Op, response, HealthRequest, Request};
use serde_json::json;

use crate::support::{raw, recv, send, Http, TestServer};

async fn server() -> TestServer {
    TestServer::start_with(|config| {
        config.http_listen = Some("127.0.0.1:0".parse().unwrap());
        config.auth = "secret".parse().unwrap();
    })
    .await
}

#[tokio::test]
async fn http_health_answers_without_a_token() {
    let server = server().await;
    let anonymous = Http {
        addr: server.server.http_addr().unwrap(),
        project: "p".into(),
        token: None,
    };
    let live = anonymous.raw("GET", "/health/live", None, &[]).await;
    assert_eq!((live.status, &live.json), (200, &json!({"status": "live"})));
    let ready = anonymous.raw("GET", "/health/ready/", None, &[]).await;
    assert_eq!(
        (ready.status, &ready.json),
        (200, &json!({"status": "ready"}))
    );
    assert_eq!(ready.content_type.as_deref(), Some("application/json"));
    let post = anonymous.raw("POST", "/health/ready", None, &[]).await;
    assert_eq!(post.status, 405);
    // Queues still need the token.
    let queues = anonymous
        .raw("GET", "/3/projects/p/queues", None, &[])
        .await;
    assert_eq!(queues.status, 401);
}

#[tokio::test]
async fn the_binary_health_request_is_answered_before_authentication() {
    let server = server().await;
    let mut conn = raw(server.addr()).await;
    send(
        &mut conn,
        Request {
            id: 7,
            op: Some(Op::Health(HealthRequest {})),
        },
    )
    .await;
    let answer = recv(&mut conn).await.expect("an answer");
    assert_eq!(answer.id, 7);
    match answer.result {
        Some(response::Result::Health(status)) => {
            assert!(status.ready, "{status:?}");
            assert!(status.reasons.is_empty());
        }
        other => panic!("expected a health status, got {other:?}"),
    }
    // Anything else still needs a Hello with a token first.
    send(
        &mut conn,
        Request {
            id: 8,
            op: Some(Op::QueueInfo(ferromq::proto::QueueInfoRequest {
                queue: "q".into(),
            })),
        },
    )
    .await;
    let refused = recv(&mut conn).await.expect("an answer");
    assert!(
        matches!(&refused.result, Some(response::Result::Error(e)) if e.code == ferromq::proto::ErrorCode::Unauthenticated as i32),
        "{refused:?}"
    );
}
