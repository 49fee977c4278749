//! Authentication on the binary protocol: a server with tokens lets in only a
//! Hello with a valid token, and a token limited to projects reaches, lists and
//! counts only its projects' queues, a redrive's target and a dead-letter target
//! included. The same tokens work on the HTTP API.

use bytes::Bytes;
use ferromq::client::{Client, ClientError, ConnectOptions};
use ferromq::proto::{self, request::Op, response, ErrorCode, Request};

use crate::support::{raw, recv, send, Http, TestServer};

const ADMIN: &str = "admin-token";
const LIMITED: &str = "limited-token";

/// A server with an all-projects token and one limited to projects `p1` and `a-b`.
async fn server() -> TestServer {
    TestServer::start_with(|config| {
        config.http_listen = Some("127.0.0.1:0".parse().unwrap());
        config.auth = ferromq::config::Auth {
            tokens: vec![
                (ADMIN.into(), None),
                (LIMITED.into(), Some(vec!["p1".into(), "a-b".into()])),
            ],
            disabled: false,
        };
    })
    .await
}

async fn connect(server: &TestServer, token: Option<&str>) -> Result<Client, ClientError> {
    let options = ConnectOptions {
        token: token.map(str::to_owned),
        ..ConnectOptions::default()
    };
    Client::connect_with(server.addr(), &options).await
}

fn code<T>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Server { code, .. }) => code,
        Err(other) => panic!("expected a server error, got {other}"),
        Ok(_) => panic!("expected a server error, got a success"),
    }
}

fn hello(id: u64, token: &str) -> Request {
    Request {
        id,
        op: Some(Op::Hello(proto::Hello {
            consumer: String::new(),
            version: proto::PROTOCOL_VERSION,
            client: "auth-test".into(),
            token: token.into(),
        })),
    }
}

fn push(id: u64, queue: &str) -> Request {
    Request {
        id,
        op: Some(Op::Push(proto::Push {
            queue: queue.into(),
            messages: vec![proto::PushMessage {
                key: String::new(),
                priority: None,
                body: Bytes::from_static(b"x"),
                delay_ms: 0,
                push_headers: Vec::new(),
            }],
        })),
    }
}

fn error_of(response: &proto::Response) -> Option<ErrorCode> {
    match &response.result {
        Some(response::Result::Error(err)) => ErrorCode::try_from(err.code).ok(),
        _ => None,
    }
}

#[tokio::test]
async fn no_token_and_a_wrong_token_are_refused_and_closed() {
    let server = server().await;
    assert_eq!(
        code(connect(&server, None).await),
        ErrorCode::Unauthenticated
    );
    assert_eq!(
        code(connect(&server, Some("guess")).await),
        ErrorCode::Unauthenticated
    );
    // A token that is a prefix of a real one is just as wrong.
    assert_eq!(
        code(connect(&server, Some("admin")).await),
        ErrorCode::Unauthenticated
    );

    // A request before any Hello: one UNAUTHENTICATED answer, then the close, and
    // nothing was done.
    let mut conn = raw(server.addr()).await;
    send(&mut conn, push(7, "jobs")).await;
    let answer = recv(&mut conn).await.expect("an answer");
    assert_eq!(
        (answer.id, error_of(&answer)),
        (7, Some(ErrorCode::Unauthenticated))
    );
    assert!(recv(&mut conn).await.is_none(), "the server closes");

    // A Hello with a wrong token: refused and closed; the push behind it is not run.
    let mut conn = raw(server.addr()).await;
    send(&mut conn, hello(1, "guess")).await;
    send(&mut conn, push(2, "jobs")).await;
    let answer = recv(&mut conn).await.expect("an answer");
    assert_eq!(
        (answer.id, error_of(&answer)),
        (1, Some(ErrorCode::Unauthenticated))
    );
    assert!(recv(&mut conn).await.is_none(), "the server closes");

    let admin = connect(&server, Some(ADMIN))
        .await
        .expect("the admin token");
    assert_eq!(
        code(admin.info("jobs").await),
        ErrorCode::QueueNotFound,
        "no refused request created anything"
    );
}

#[tokio::test]
async fn requests_pipelined_behind_a_valid_hello_are_served() {
    let server = server().await;
    let mut conn = raw(server.addr()).await;
    send(&mut conn, hello(1, LIMITED)).await;
    send(&mut conn, push(2, "p1/jobs")).await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        answers.push(recv(&mut conn).await.expect("an answer"));
    }
    answers.sort_by_key(|r| r.id);
    assert!(matches!(
        answers[0].result,
        Some(response::Result::Hello(_))
    ));
    assert!(
        matches!(&answers[1].result, Some(response::Result::Push(ok)) if ok.ids.len() == 1),
        "{:?}",
        answers[1]
    );
}

#[tokio::test]
async fn a_limited_token_reaches_only_its_projects_and_stays_connected() {
    let server = server().await;
    let limited = connect(&server, Some(LIMITED))
        .await
        .expect("limited token");
    let admin = connect(&server, Some(ADMIN)).await.expect("admin token");
    admin.push("p2/jobs", vec!["theirs".into()]).await.unwrap();
    admin
        .push("jobs", vec!["default namespace".into()])
        .await
        .unwrap();

    let mine = limited.push("p1/jobs", vec!["mine".into()]).await.unwrap();
    for queue in ["p2/jobs", "jobs", "p1x/jobs"] {
        assert_eq!(
            code(limited.push(queue, vec!["x".into()]).await),
            ErrorCode::PermissionDenied,
            "push to {queue}"
        );
        assert_eq!(
            code(limited.peek(queue, 1).await),
            ErrorCode::PermissionDenied
        );
        assert_eq!(code(limited.info(queue).await), ErrorCode::PermissionDenied);
        assert_eq!(
            code(limited.clear_queue(queue).await),
            ErrorCode::PermissionDenied
        );
        assert_eq!(
            code(limited.delete_queue(queue).await),
            ErrorCode::PermissionDenied
        );
    }
    // The connection is still open and its own queue served.
    let got = limited.get("p1/jobs", mine[0]).await.unwrap();
    assert_eq!(&got.body[..], b"mine");
    // Nothing of the others' changed.
    assert_eq!(admin.info("p2/jobs").await.unwrap().size, 1);
    assert_eq!(admin.info("jobs").await.unwrap().size, 1);
    assert_eq!(code(admin.info("p1x/jobs").await), ErrorCode::QueueNotFound);
}

#[tokio::test]
async fn a_second_queue_outside_the_scope_is_refused() {
    let server = server().await;
    let limited = connect(&server, Some(LIMITED))
        .await
        .expect("limited token");
    let admin = connect(&server, Some(ADMIN)).await.expect("admin token");
    limited
        .push("p1/dead", vec!["a".into(), "b".into()])
        .await
        .unwrap();

    // Redrive into another project's queue: refused, nothing moved or created.
    assert_eq!(
        code(limited.redrive("p1/dead", "p2/jobs", 10).await),
        ErrorCode::PermissionDenied
    );
    assert_eq!(limited.info("p1/dead").await.unwrap().size, 2);
    assert_eq!(code(admin.info("p2/jobs").await), ErrorCode::QueueNotFound);
    // Within the scope it works.
    assert_eq!(limited.redrive("p1/dead", "a-b/jobs", 10).await.unwrap(), 2);

    // A dead-letter target in another project, on create and on update.
    let settings = |target: &str| proto::QueueSettings {
        dead_letter: Some(proto::DeadLetter {
            queue: target.into(),
            max_reservations: 3,
        }),
        ..proto::QueueSettings::default()
    };
    assert_eq!(
        code(limited.create_queue("p1/work", settings("p2/dlq")).await),
        ErrorCode::PermissionDenied
    );
    assert_eq!(code(admin.info("p1/work").await), ErrorCode::QueueNotFound);
    assert_eq!(
        code(limited.create_queue("p1/work", settings("dlq")).await),
        ErrorCode::PermissionDenied,
        "the default namespace is outside a limited scope"
    );
    limited
        .create_queue("p1/work", settings("p1/dlq"))
        .await
        .expect("a target in its own project");
    assert_eq!(
        code(limited.update_queue("p1/work", settings("p2/dlq")).await),
        ErrorCode::PermissionDenied
    );
    let info = admin.info("p1/work").await.unwrap();
    let target = info.settings.and_then(|s| s.dead_letter).map(|d| d.queue);
    assert_eq!(
        target.as_deref(),
        Some("p1/dlq"),
        "the refused update changed nothing"
    );
}

#[tokio::test]
async fn listings_and_stats_show_only_the_queues_a_token_covers() {
    let server = server().await;
    let admin = connect(&server, Some(ADMIN)).await.expect("admin token");
    for queue in ["a-b/x", "a/y", "jobs", "p1/a", "p1/b", "p1/c", "p2/z"] {
        admin.push(queue, vec!["m".into()]).await.unwrap();
    }
    let limited = connect(&server, Some(LIMITED))
        .await
        .expect("limited token");

    // Paged two at a time across both projects, in name order.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = limited.list_queues("", &cursor, 2).await.unwrap();
        pages += 1;
        assert!(page.names.len() <= 2);
        seen.extend(page.names);
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
        assert!(pages < 10, "the cursor moves on");
    }
    assert_eq!(seen, ["a-b/x", "p1/a", "p1/b", "p1/c"]);
    assert_eq!(pages, 2);
    // A prefix inside a project, and one outside the scope.
    let page = limited.list_queues("p1/b", "", 0).await.unwrap();
    assert_eq!(page.names, ["p1/b"]);
    let page = limited.list_queues("p2", "", 0).await.unwrap();
    assert!(page.names.is_empty(), "{:?}", page.names);

    assert_eq!(limited.server_stats().await.unwrap().queues, 4);
    assert_eq!(admin.server_stats().await.unwrap().queues, 7);
    let all = admin.list_queues("", "", 0).await.unwrap();
    assert_eq!(all.names.len(), 7);

    // Figures: the same scope, and the totals of what the token covers.
    let figures = limited.list_queue_stats("", "", 0).await.unwrap();
    let names: Vec<&str> = figures.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["a-b/x", "p1/a", "p1/b", "p1/c"]);
    assert!(figures
        .queues
        .iter()
        .all(|q| q.available == 1 && q.pushed_total == 1));
    let stats = limited.server_stats().await.unwrap();
    assert_eq!((stats.messages, stats.pushed_total), (4, 4));
    let stats = admin.server_stats().await.unwrap();
    assert_eq!((stats.messages, stats.pushed_total), (7, 7));
}

#[tokio::test]
async fn the_same_tokens_guard_the_http_api() {
    let server = server().await;
    let addr = server.server.http_addr().expect("http enabled");
    let api = |project: &str, token: Option<&str>| Http {
        addr,
        project: project.into(),
        token: token.map(str::to_owned),
    };
    let posted = api("p1", Some(LIMITED))
        .call(
            "POST",
            "queues/jobs/messages",
            Some(serde_json::json!({"messages": [{"body": "over http"}]})),
        )
        .await;
    assert_eq!(posted.status, 201, "{:?}", posted.json);
    let refused = api("p2", Some(LIMITED)).call("GET", "queues", None).await;
    assert_eq!(refused.status, 401);
    let refused = api("p1", None).call("GET", "queues", None).await;
    assert_eq!(refused.status, 401);
    // The message posted over HTTP is there for the same token on the binary port.
    let limited = connect(&server, Some(LIMITED))
        .await
        .expect("limited token");
    let peeked = limited.peek("p1/jobs", 1).await.unwrap();
    assert_eq!(&peeked[0].body[..], b"over http");
}

#[tokio::test]
async fn a_server_without_auth_ignores_tokens() {
    let server = TestServer::start().await;
    let client = connect(&server, Some("anything")).await.expect("no auth");
    client.push("jobs", vec!["x".into()]).await.unwrap();
    let plain = server.client().await;
    assert_eq!(plain.info("jobs").await.unwrap().size, 1);
}
