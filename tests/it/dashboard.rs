//! The web dashboard's page and API (`serve --dashboard`, `src/http/dashboard.rs`)
//! over real HTTP: what is served and with which headers, who may call the API,
//! and each operation the page makes. The page itself is tested in a browser by
//! scripts/dashboard-test.sh.

use bytes::Bytes;
use ferromq::config::Auth;
use serde_json::{json, Value};

use crate::support::{Http, HttpReply, TestServer};

const PROJECT: &str = "p1";

fn config(config: &mut ferromq::Config) {
    config.http_listen = Some("127.0.0.1:0".parse().unwrap());
    config.dashboard = true;
    config.auth = Auth {
        tokens: vec![
            ("all".into(), None),
            ("p1only".into(), Some(vec![PROJECT.into()])),
        ],
        disabled: false,
    };
}

/// Plain HTTP to the server, without the IronMQ API's token header.
fn http(server: &TestServer) -> Http {
    Http {
        addr: server.server.http_addr().expect("http enabled"),
        project: PROJECT.into(),
        token: None,
    }
}

/// A dashboard API call: the header it needs, and `Bearer TOKEN` when given.
async fn call(
    server: &TestServer,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> HttpReply {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut headers = vec!["X-Ferromq-Dashboard: 1"];
    if let Some(auth) = &auth {
        headers.push(auth);
    }
    let body = body.map(|b| b.to_string());
    http(server)
        .raw(
            method,
            &format!("/ui/api/{path}"),
            body.as_deref(),
            &headers,
        )
        .await
}

async fn get(server: &TestServer, path: &str) -> Value {
    let reply = call(server, Some("all"), "GET", path, None).await;
    assert_eq!(reply.status, 200, "{path}: {reply:?}");
    reply.json
}

async fn push(server: &TestServer, queue: &str, bodies: &[&[u8]]) -> Vec<u64> {
    let client = server.client().await;
    client
        .push(
            queue,
            bodies.iter().map(|b| Bytes::copy_from_slice(b)).collect(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn the_page_is_served_only_with_the_flag_and_with_strict_headers() {
    let off = TestServer::start_with(|c| {
        config(c);
        c.dashboard = false;
    })
    .await;
    assert_eq!(http(&off).raw("GET", "/ui/", None, &[]).await.status, 404);
    assert_eq!(
        call(&off, Some("all"), "GET", "overview", None)
            .await
            .status,
        404
    );

    let server = TestServer::start_with(config).await;
    let page = http(&server).raw("GET", "/ui/", None, &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.content_type.as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert!(page
        .text
        .contains("<script src=\"/ui/app.js\" defer></script>"));
    let csp = page.header("content-security-policy").expect("a CSP");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    // No inline script or style in the page (the CSP would refuse them).
    assert!(!page.text.contains("<script>") && !page.text.contains("style="));
    for (path, kind) in [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let asset = http(&server).raw("GET", path, None, &[]).await;
        assert_eq!(
            (asset.status, asset.content_type.as_deref()),
            (200, Some(kind)),
            "{path}"
        );
        assert!(asset.header("content-security-policy").is_some(), "{path}");
    }
    let bare = http(&server).raw("GET", "/ui", None, &[]).await;
    assert_eq!((bare.status, bare.header("location")), (308, Some("/ui/")));
    assert_eq!(
        http(&server)
            .raw("GET", "/ui/nope.js", None, &[])
            .await
            .status,
        404
    );
    assert_eq!(
        http(&server)
            .raw("POST", "/ui/", Some(""), &[])
            .await
            .status,
        405
    );
}

#[tokio::test]
async fn the_api_wants_its_header_and_a_token_in_the_authorization_header() {
    let server = TestServer::start_with(config).await;
    let plain = http(&server);
    let no_header = plain
        .raw(
            "GET",
            "/ui/api/overview",
            None,
            &["Authorization: Bearer all"],
        )
        .await;
    assert_eq!(no_header.status, 403, "{no_header:?}");
    assert_eq!(
        call(&server, None, "GET", "overview", None).await.status,
        401
    );
    assert_eq!(
        call(&server, Some("wrong"), "GET", "overview", None)
            .await
            .status,
        401
    );
    // Never from the URL.
    let in_url = call(&server, None, "GET", "overview?oauth=all", None).await;
    assert_eq!(in_url.status, 401);
    let oauth = plain
        .raw(
            "GET",
            "/ui/api/overview",
            None,
            &["X-Ferromq-Dashboard: 1", "Authorization: OAuth all"],
        )
        .await;
    assert_eq!(oauth.status, 200);
    let ok = call(&server, Some("all"), "GET", "overview", None).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    assert!(ok.header("content-security-policy").is_some());
    assert_eq!(ok.json["scope"], "all");
    assert_eq!(ok.json["auth"], true);
    assert_eq!(ok.json["fsync"], "always");
    assert!(ok.json["history"].is_array(), "{}", ok.json);
    assert_eq!(
        call(&server, Some("all"), "GET", "nope", None).await.status,
        404
    );
    assert_eq!(
        call(&server, Some("all"), "POST", "overview", None)
            .await
            .status,
        405
    );
}

#[tokio::test]
async fn a_server_without_tokens_answers_its_api_only_at_an_address() {
    let server = TestServer::start_with(|c| {
        config(c);
        c.auth = Auth {
            tokens: Vec::new(),
            disabled: true,
        };
    })
    .await;
    let port = server.server.http_addr().unwrap().port();
    let plain = http(&server);
    for (host, status) in [
        (format!("Host: 127.0.0.1:{port}"), 200),
        (format!("Host: localhost:{port}"), 200),
        (format!("Host: rebound.example:{port}"), 403),
        ("Host: 127.0.0.1.nip.io".to_owned(), 403),
    ] {
        let reply = plain
            .raw(
                "GET",
                "/ui/api/overview",
                None,
                &["X-Ferromq-Dashboard: 1", &host],
            )
            .await;
        assert_eq!(reply.status, status, "{host}: {reply:?}");
    }
}

#[tokio::test]
async fn a_project_token_sees_and_operates_only_its_projects_queues() {
    let server = TestServer::start_with(config).await;
    push(&server, "p1/mine", &[b"a", b"b"]).await;
    push(&server, "p2/theirs", &[b"c"]).await;
    push(&server, "plain", &[b"d"]).await;
    let token = Some("p1only");
    let table = call(&server, token, "GET", "queues", None).await;
    assert_eq!(table.status, 200);
    let names: Vec<&str> = table.json["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p1/mine"]);
    assert_eq!(table.json["total"], 1);
    let overview = call(&server, token, "GET", "overview", None).await.json;
    assert_eq!(overview["scope"], json!(["p1"]));
    assert_eq!(overview["totals"]["size"], 2);
    // The server's samples count every project: not shown to this token.
    assert_eq!(overview["history"], Value::Null);
    for (method, path) in [
        ("GET", "queue?name=p2/theirs"),
        ("GET", "messages?name=plain"),
        ("DELETE", "messages?name=p2/theirs"),
        ("DELETE", "queue?name=p2/theirs"),
        ("POST", "redrive?name=p1/mine&to=p2/theirs&n=1"),
    ] {
        let reply = call(&server, token, method, path, None).await;
        assert_eq!(reply.status, 403, "{method} {path}: {reply:?}");
    }
    assert_eq!(
        get(&server, "queue?name=p2/theirs").await["figures"]["size"],
        1
    );
    assert_eq!(
        get(&server, "queue?name=p1/mine").await["figures"]["size"],
        2
    );
}

#[tokio::test]
async fn a_queue_is_shown_peeked_edited_redriven_cleared_and_deleted() {
    let server = TestServer::start_with(config).await;
    let ids = push(
        &server,
        "p1/jobs",
        &[b"<script>alert(1)</script>", &[0xff, 0, 1]],
    )
    .await;
    let page = get(&server, "queue?name=p1/jobs").await;
    assert_eq!(page["name"], "p1/jobs");
    assert_eq!(page["project"], "p1");
    assert_eq!(page["figures"]["available"], 2);
    assert_eq!(page["figures"]["pushed"], 2);
    assert_eq!(page["settings"]["message_timeout"], 60);
    assert_eq!(page["settings"]["type"], "pull");

    // Peek: text as text, anything else as hex.
    let peeked = get(&server, "messages?name=p1/jobs&n=5").await;
    let messages = peeked["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["body"]["text"], "<script>alert(1)</script>");
    assert_eq!(messages[1]["body"]["hex"], "ff0001");
    assert_eq!(messages[1]["size"], 3);

    // Settings, read as the IronMQ API reads them: names within the project.
    let patched = call(
        &server,
        Some("all"),
        "PATCH",
        "queue?name=p1/jobs",
        Some(json!({"queue": {"message_timeout": 90, "dead_letter": {"queue_name": "jobs-dead", "max_reservations": 3}}})),
    )
    .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.json["settings"]["message_timeout"], 90);
    assert_eq!(
        patched.json["settings"]["dead_letter"]["queue_name"],
        "jobs-dead"
    );
    assert_eq!(
        patched.json["settings"]["dead_letter"]["queue"],
        "p1/jobs-dead"
    );
    let bad = call(
        &server,
        Some("all"),
        "PATCH",
        "queue?name=p1/jobs",
        Some(json!({"queue": {"message_timeout": 0}})),
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    let table = get(&server, "queues?prefix=p1/").await;
    assert_eq!(table["queues"][0]["dead_letter"], "p1/jobs-dead");

    // A message by id, with its state; a reserved one cannot be deleted here.
    let client = server.client().await;
    let leased = client
        .reserve("p1/jobs", ferromq::client::ReserveOptions::default())
        .await
        .unwrap();
    assert_eq!(leased[0].id, ids[0]);
    let one = get(&server, &format!("message?name=p1/jobs&id={}", ids[0])).await;
    assert_eq!(one["message"]["state"], "reserved");
    assert_eq!(one["message"]["reserved_count"], 1);
    // Its delivery history: the attempt under way (issue 14).
    assert_eq!(one["message"]["history"][0]["outcome"], "in_progress");
    assert_eq!(one["message"]["key"], serde_json::Value::Null);
    let refused = call(
        &server,
        Some("all"),
        "DELETE",
        &format!("message?name=p1/jobs&id={}", ids[0]),
        None,
    )
    .await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let deleted = call(
        &server,
        Some("all"),
        "DELETE",
        &format!("message?name=p1/jobs&id={}", ids[1]),
        None,
    )
    .await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let missing = call(
        &server,
        Some("all"),
        "GET",
        &format!("message?name=p1/jobs&id={}", ids[1]),
        None,
    )
    .await;
    assert_eq!(missing.status, 404);

    // Redrive from a dead-letter queue, then clear, then delete.
    push(&server, "p1/jobs-dead", &[b"1", b"2", b"3"]).await;
    let moved = call(
        &server,
        Some("all"),
        "POST",
        "redrive?name=p1/jobs-dead&to=p1/jobs&n=2",
        None,
    )
    .await;
    assert_eq!(
        (moved.status, &moved.json["moved"]),
        (200, &json!(2)),
        "{moved:?}"
    );
    assert_eq!(
        get(&server, "queue?name=p1/jobs-dead").await["figures"]["size"],
        1
    );
    assert_eq!(
        get(&server, "queue?name=p1/jobs").await["figures"]["available"],
        2
    );
    let cleared = call(
        &server,
        Some("all"),
        "DELETE",
        "messages?name=p1/jobs",
        None,
    )
    .await;
    assert_eq!(cleared.json["cleared"], 3, "{cleared:?}");
    assert_eq!(
        get(&server, "queue?name=p1/jobs").await["figures"]["size"],
        0
    );
    let gone = call(
        &server,
        Some("all"),
        "DELETE",
        "queue?name=p1/jobs-dead",
        None,
    )
    .await;
    assert_eq!(gone.status, 200);
    let after = call(&server, Some("all"), "GET", "queue?name=p1/jobs-dead", None).await;
    assert_eq!(after.status, 404);
}

#[tokio::test]
async fn bad_requests_get_a_clear_error() {
    let server = TestServer::start_with(config).await;
    push(&server, "q", &[b"x"]).await;
    for (method, path, needle) in [
        ("GET", "queues?sort=colour", "sort must be one of"),
        ("GET", "queues?order=up", "order must be asc or desc"),
        ("GET", "queues?limit=101", "limit"),
        ("GET", "queues?offset=-1", "offset must be"),
        (
            "GET",
            "queues?sort=size&offset=100000",
            "narrow with a prefix",
        ),
        ("GET", "queue", "name (a queue name) is missing"),
        ("GET", "queue?name=bad%20name", "queue name"),
        ("GET", "message?name=q", "id (a message id) is missing"),
        ("GET", "message?name=q&id=x", "id must be"),
        ("GET", "messages?name=q&n=1000", "n"),
        ("POST", "redrive?name=q&to=q&n=1", ""),
        ("PATCH", "queue?name=q", "invalid JSON"),
    ] {
        let body = (method == "PATCH").then_some("{nope");
        let reply = http(&server)
            .raw(
                method,
                &format!("/ui/api/{path}"),
                body,
                &["X-Ferromq-Dashboard: 1", "Authorization: Bearer all"],
            )
            .await;
        assert_eq!(reply.status, 400, "{method} {path}: {reply:?}");
        let msg = reply.json["msg"].as_str().unwrap_or("");
        assert!(msg.contains(needle), "{method} {path}: {msg}");
    }
    assert_eq!(
        call(&server, Some("all"), "GET", "queue?name=none", None)
            .await
            .status,
        404
    );
}

/// Rates on the queues' manual clock: over the last window of 2 s or more, and
/// falling to 0 when the queue is idle; the table sorts by them.
#[tokio::test]
async fn queue_rates_follow_the_queues_clock_and_sort_the_table() {
    let server = TestServer::start_manual(config).await;
    push(&server, "busy", &[b"1".as_slice(); 10]).await;
    push(&server, "calm", &[b"1"]).await;
    server.advance(2_000);
    push(&server, "busy", &[b"1".as_slice(); 30]).await;
    push(&server, "calm", &[b"1"]).await;
    let table = get(&server, "queues?sort=push_rate&order=desc").await;
    let rows = table["queues"].as_array().unwrap();
    assert_eq!(rows[0]["name"], "busy");
    // 40 pushed over the 2 s window that opened when the queue was created.
    assert_eq!(rows[0]["rates"]["pushed"], 20.0);
    assert_eq!(rows[1]["rates"]["pushed"], 1.0);
    server.advance(10_000);
    let idle = get(&server, "queue?name=busy").await;
    assert_eq!(idle["rates"]["pushed"], 0.0);
}

#[tokio::test]
async fn a_push_queues_settings_are_shown_and_edited_keeping_subscriber_headers() {
    let server = TestServer::start_with(|c| {
        config(c);
        c.push.allow = vec!["127.0.0.1".into()];
    })
    .await;
    let api = Http {
        token: Some("all".into()),
        ..http(&server)
    };
    // A subscriber nothing listens on: deliveries fail and are retried, which
    // does not matter here.
    let created = api
        .call(
            "PUT",
            "queues/hooks",
            Some(json!({"queue": {"type": "multicast", "push": {
                "subscribers": [{"name": "a", "url": "http://127.0.0.1:9/a", "headers": {"X-K": "v"}}],
                "retries": 5}}})),
        )
        .await;
    assert_eq!(created.status, 200, "{created:?}");
    let page = get(&server, "queue?name=p1/hooks").await;
    assert_eq!(page["settings"]["type"], "multicast");
    assert_eq!(page["settings"]["push"]["retries"], 5);
    let patched = call(
        &server,
        Some("all"),
        "PATCH",
        "queue?name=p1/hooks",
        Some(json!({"queue": {"push": {"retries": 2, "retries_delay": 30, "error_queue": "hooks-errors",
            "subscribers": [
                {"name": "a", "url": "http://127.0.0.1:9/a", "headers": {"X-K": "v"}},
                {"name": "b", "url": "http://127.0.0.1:9/b"}]}}})),
    )
    .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    let push = &patched.json["settings"]["push"];
    assert_eq!(
        (push["retries"].as_u64(), push["retries_delay"].as_u64()),
        (Some(2), Some(30))
    );
    assert_eq!(push["error_queue"], "hooks-errors");
    assert_eq!(push["subscribers"][0]["headers"]["X-K"], "v");
    assert_eq!(push["subscribers"][1]["name"], "b");
    // A push queue has no dead letter: refused, as on the IronMQ API.
    let refused = call(
        &server,
        Some("all"),
        "PATCH",
        "queue?name=p1/hooks",
        Some(json!({"queue": {"dead_letter": {"queue_name": "x"}}})),
    )
    .await;
    assert_eq!(refused.status, 400, "{refused:?}");
}
