//! The IronMQ v3 HTTP API over real HTTP against a running server: every endpoint
//! and the rules of section 5 of docs/ironmq-v3-api.md.

use bytes::Bytes;
use ferromq::config::Auth;
use serde_json::{json, Value};

use crate::support::{Http, TestServer};

const PROJECT: &str = "000000000000000000000001";
const OTHER: &str = "000000000000000000000002";

fn http_config(config: &mut ferromq::Config) {
    config.http_listen = Some("127.0.0.1:0".parse().unwrap());
    config.auth = Auth {
        tokens: vec![
            ("secret".into(), None),
            ("only2".into(), Some(vec![OTHER.into()])),
        ],
        disabled: false,
    };
}

async fn server() -> TestServer {
    TestServer::start_with(http_config).await
}

/// A server whose queues' clock moves only by `TestServer::advance`.
async fn manual_server() -> TestServer {
    TestServer::start_manual(http_config).await
}

fn http(server: &TestServer, project: &str, token: Option<&str>) -> Http {
    Http {
        addr: server.server.http_addr().expect("http enabled"),
        project: project.into(),
        token: token.map(str::to_owned),
    }
}

fn api(server: &TestServer) -> Http {
    http(server, PROJECT, Some("secret"))
}

fn ids(reply: &Value) -> Vec<String> {
    reply["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_str().expect("ids are strings").to_owned())
        .collect()
}

fn message_ids(reply: &Value) -> Vec<String> {
    reply["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("id is a string").to_owned())
        .collect()
}

async fn post(api: &Http, queue: &str, bodies: &[&str]) -> Vec<String> {
    let messages: Vec<Value> = bodies.iter().map(|b| json!({ "body": b })).collect();
    let reply = api
        .call(
            "POST",
            &format!("queues/{queue}/messages"),
            Some(json!({ "messages": messages })),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    ids(&reply.json)
}

async fn reserve(api: &Http, queue: &str, body: Value) -> Vec<Value> {
    let reply = api
        .call("POST", &format!("queues/{queue}/reservations"), Some(body))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json["messages"].as_array().expect("messages").clone()
}

#[tokio::test]
async fn a_wrong_or_missing_token_gets_401_and_nothing_is_done() {
    let server = server().await;
    let body = json!({"messages": [{"body": "x"}]});
    for (client, what) in [
        (http(&server, PROJECT, None), "no token"),
        (http(&server, PROJECT, Some("wrong")), "wrong token"),
        (
            http(&server, PROJECT, Some("only2")),
            "token of another project",
        ),
    ] {
        let reply = client
            .call("POST", "queues/q/messages", Some(body.clone()))
            .await;
        assert_eq!(reply.status, 401, "{what}");
        assert_eq!(reply.json["msg"], "Unauthorized");
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    }
    let reply = api(&server).call("GET", "queues/q", None).await;
    assert_eq!(reply.status, 404, "nothing was created");

    // ?oauth= works, the scheme is case-insensitive, and a limited token works in
    // its own project.
    let anonymous = http(&server, PROJECT, None);
    let path = format!("/3/projects/{PROJECT}/queues?oauth=secret");
    assert_eq!(anonymous.raw("GET", &path, None, &[]).await.status, 200);
    let lower = anonymous
        .raw(
            "GET",
            &format!("/3/projects/{PROJECT}/queues"),
            None,
            &["Authorization: oauth secret"],
        )
        .await;
    assert_eq!(lower.status, 200);
    let limited = http(&server, OTHER, Some("only2"));
    assert_eq!(limited.call("GET", "queues", None).await.status, 200);
}

#[tokio::test]
async fn every_response_is_json_and_errors_carry_msg() {
    let server = server().await;
    let api = api(&server);
    let cases = [
        ("GET", format!("/3/projects/{PROJECT}/nothing"), None, 404),
        ("GET", "/somewhere/else".to_owned(), None, 404),
        (
            "PUT",
            format!("/3/projects/{PROJECT}/queues/q/messages"),
            None,
            405,
        ),
        (
            "POST",
            format!("/3/projects/{PROJECT}/queues/q/messages"),
            Some("{not json"),
            400,
        ),
        (
            "POST",
            format!("/3/projects/{PROJECT}/queues/q/messages"),
            Some("[1]"),
            400,
        ),
        (
            "POST",
            format!("/3/projects/{PROJECT}/queues/q/messages"),
            Some(r#"{"messages":[]}"#),
            400,
        ),
        (
            "POST",
            format!("/3/projects/{PROJECT}/queues/q/messages"),
            Some(r#"{"messages":[{"body":1}]}"#),
            400,
        ),
        (
            "POST",
            format!("/3/projects/{PROJECT}/queues/bad%20name/messages"),
            Some(r#"{"messages":[{"body":"x"}]}"#),
            400,
        ),
        (
            "GET",
            format!("/3/projects/{PROJECT}/queues/missing"),
            None,
            404,
        ),
    ];
    for (method, path, body, status) in cases {
        let reply = api.raw(method, &path, body, &[]).await;
        assert_eq!(reply.status, status, "{method} {path}: {reply:?}");
        assert_eq!(
            reply.content_type.as_deref(),
            Some("application/json"),
            "{method} {path}"
        );
        assert!(reply.json["msg"].is_string(), "{method} {path}: {reply:?}");
    }
    let missing = api.call("GET", "queues/missing", None).await;
    assert_eq!(missing.json["msg"], "Queue not found");
    // None of the failed posts created a queue.
    let list = api.call("GET", "queues", None).await;
    assert_eq!(list.json, json!({"queues": []}));
}

#[tokio::test]
async fn post_creates_the_queue_and_only_post_does() {
    let server = server().await;
    let api = api(&server);
    for (method, path, body) in [
        ("POST", "queues/lazy/reservations", Some(json!({}))),
        ("GET", "queues/lazy/messages", None),
        ("DELETE", "queues/lazy/messages", Some(json!({}))),
        (
            "PATCH",
            "queues/lazy",
            Some(json!({"queue": {"message_timeout": 30}})),
        ),
        ("DELETE", "queues/lazy", None),
    ] {
        let reply = api.call(method, path, body).await;
        assert_eq!(
            (reply.status, reply.json["msg"].as_str()),
            (404, Some("Queue not found")),
            "{method} {path}"
        );
    }
    let first = post(&api, "lazy", &["a", "b", "c"]).await;
    assert_eq!(first.len(), 3);
    let numeric: Vec<u64> = first.iter().map(|id| id.parse().unwrap()).collect();
    assert!(numeric.windows(2).all(|w| w[0] < w[1]), "ids in post order");
    let info = api.call("GET", "queues/lazy", None).await;
    assert_eq!(info.status, 200);
    let queue = &info.json["queue"];
    assert_eq!(
        (
            queue["name"].as_str(),
            queue["project_id"].as_str(),
            queue["type"].as_str()
        ),
        (Some("lazy"), Some(PROJECT), Some("pull"))
    );
    assert_eq!(
        (queue["size"].as_u64(), queue["total_messages"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(
        (
            queue["message_timeout"].as_u64(),
            queue["message_expiration"].as_u64()
        ),
        (Some(60), Some(604_800))
    );
    assert!(queue.get("push").is_none() && queue.get("dead_letter").is_none());
}

#[tokio::test]
async fn queues_are_created_listed_updated_and_deleted_per_project() {
    let server = server().await;
    let api = api(&server);
    let create = json!({"queue": {"message_timeout": 45, "message_expiration": 404}});
    let reply = api.call("PUT", "queues/aa", Some(create)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["queue"]["message_timeout"], 45);
    post(&api, "aa", &["kept"]).await;
    // PUT again is an update that keeps the messages.
    let reply = api
        .call(
            "PUT",
            "queues/aa",
            Some(json!({"queue": {"message_timeout": 50}})),
        )
        .await;
    assert_eq!(
        (reply.status, reply.json["queue"]["size"].as_u64()),
        (200, Some(1))
    );
    // PATCH changes only what it names.
    let reply = api
        .call(
            "PATCH",
            "queues/aa",
            Some(json!({"queue": {"message_expiration": 900}})),
        )
        .await;
    let queue = &reply.json["queue"];
    assert_eq!(
        (
            queue["message_timeout"].as_u64(),
            queue["message_expiration"].as_u64()
        ),
        (Some(50), Some(900))
    );
    for bad in [
        json!({"queue": {"message_timeout": 0}}),
        json!({"queue": {"message_timeout": 86_401}}),
        json!({"queue": {"message_expiration": "long"}}),
        json!({"queue": {"type": "multicast"}}),
        json!({"queue": {"push": {"subscribers": [{"url": "http://127.0.0.1:1/"}]}}}),
    ] {
        let reply = api.call("PATCH", "queues/aa", Some(bad.clone())).await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
    }
    for name in ["aaa", "aaaa", "ab", "b"] {
        api.call("PUT", &format!("queues/{name}"), Some(json!({})))
            .await;
    }
    let names = |reply: &Value| -> Vec<String> {
        reply["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = api.call("GET", "queues?per_page=101", None).await;
    assert_eq!(names(&all.json), ["aa", "aaa", "aaaa", "ab", "b"]);
    let page = api.call("GET", "queues?previous=aa&per_page=2", None).await;
    assert_eq!(names(&page.json), ["aaa", "aaaa"], "previous is exclusive");
    let prefixed = api.call("GET", "queues?prefix=aa&previous=aaa", None).await;
    assert_eq!(names(&prefixed.json), ["aaaa"]);

    // Another project has its own namespace; the binary protocol sees project/name.
    let other = http(&server, OTHER, Some("secret"));
    assert_eq!(
        names(&other.call("GET", "queues", None).await.json),
        Vec::<String>::new()
    );
    post(&other, "aa", &["other"]).await;
    assert_eq!(
        api.call("GET", "queues/aa", None).await.json["queue"]["size"],
        1
    );
    let client = server.client().await;
    let info = client.info(&format!("{OTHER}/aa")).await.unwrap();
    assert_eq!(info.size, 1);
    client
        .push(
            &format!("{PROJECT}/aa"),
            vec![Bytes::from_static(b"binary")],
        )
        .await
        .unwrap();
    assert_eq!(
        api.call("GET", "queues/aa", None).await.json["queue"]["size"],
        2
    );

    let reply = api.call("DELETE", "queues/aa", None).await;
    assert_eq!(
        (reply.status, reply.json["msg"].as_str()),
        (200, Some("Deleted"))
    );
    assert_eq!(api.call("GET", "queues/aa", None).await.status, 404);
    assert_eq!(other.call("GET", "queues/aa", None).await.status, 200);
    // Posting again makes a fresh queue.
    post(&api, "aa", &["new"]).await;
    assert_eq!(
        api.call("GET", "queues/aa", None).await.json["queue"]["total_messages"],
        1
    );
}

#[tokio::test]
async fn reserve_peek_get_and_the_counts() {
    let server = server().await;
    let api = api(&server);
    let posted = post(&api, "work", &["a", "b", "c", "d"]).await;
    // A delayed message counts in size but is neither peeked nor reserved.
    let delayed = api
        .call("POST", "queues/work/messages", Some(json!({"messages": [{"body": "later", "delay": 60, "timeout": 5, "expires_in": 9}]})))
        .await;
    assert_eq!(delayed.status, 201, "old per-message fields are ignored");

    let got = reserve(&api, "work", json!({"n": 0})).await;
    assert_eq!(got.len(), 1, "n = 0 means 1");
    assert_eq!(
        (got[0]["id"].as_str(), got[0]["body"].as_str()),
        (Some(posted[0].as_str()), Some("a"))
    );
    assert_eq!(got[0]["reserved_count"], 1);
    assert!(got[0]["reservation_id"].is_string());

    let peeked = api.call("GET", "queues/work/messages?n=10", None).await;
    assert_eq!(message_ids(&peeked.json), &posted[1..]);
    assert!(peeked.json["messages"][0].get("reservation_id").is_none());
    let one = api.call("GET", "queues/work/messages", None).await;
    assert_eq!(message_ids(&one.json), &posted[1..2], "peek defaults to 1");
    assert_eq!(
        api.call("GET", "queues/work/messages?n=101", None)
            .await
            .status,
        400
    );

    let reserved = api
        .call("GET", &format!("queues/work/messages/{}", posted[0]), None)
        .await;
    assert_eq!(reserved.json["message"]["reserved_count"], 1);
    assert!(reserved.json["message"].get("reservation_id").is_none());
    let missing = api.call("GET", "queues/work/messages/999999", None).await;
    assert_eq!(
        (missing.status, missing.json["msg"].as_str()),
        (404, Some("Message not found"))
    );

    let info = api.call("GET", "queues/work", None).await;
    assert_eq!(
        info.json["queue"]["size"], 5,
        "available + reserved + delayed"
    );

    assert_eq!(
        api.call("POST", "queues/work/reservations", Some(json!({"n": 101})))
            .await
            .status,
        400
    );
    assert_eq!(
        api.call(
            "POST",
            "queues/work/reservations",
            Some(json!({"timeout": 86_401}))
        )
        .await
        .status,
        400
    );
    assert_eq!(
        api.call(
            "POST",
            "queues/work/reservations",
            Some(json!({"delete": "yes"}))
        )
        .await
        .status,
        400
    );
    // delete: true hands out and removes; total_messages never goes down.
    let taken = reserve(&api, "work", json!({"n": 2, "delete": true})).await;
    assert_eq!(taken.len(), 2);
    assert!(taken[0].get("reservation_id").is_none());
    let clear = api.call("DELETE", "queues/work/messages", None).await;
    assert_eq!(
        (clear.status, clear.json["msg"].as_str()),
        (200, Some("Cleared"))
    );
    let queue = api.call("GET", "queues/work", None).await.json["queue"].clone();
    assert_eq!(
        (queue["size"].as_u64(), queue["total_messages"].as_u64()),
        (Some(0), Some(5))
    );
}

#[tokio::test]
async fn delete_follows_the_reservation_rules() {
    let server = manual_server().await;
    let api = api(&server);
    post(&api, "del", &["a"]).await;
    let got = reserve(&api, "del", json!({"n": 1, "timeout": 1})).await;
    let (id, rid) = (
        got[0]["id"].as_str().unwrap(),
        got[0]["reservation_id"].as_str().unwrap(),
    );
    let path = format!("queues/del/messages/{id}");

    let no_rid = api.call("DELETE", &path, Some(json!({}))).await;
    assert_eq!(no_rid.status, 403, "reserved, no reservation id");
    let go_style = api
        .call("DELETE", &path, Some(json!({"reservation_id": ""})))
        .await;
    assert_eq!(
        go_style.status, 403,
        "an empty reservation id counts as absent"
    );
    let wrong = api
        .call("DELETE", &path, Some(json!({"reservation_id": "12345"})))
        .await;
    assert_eq!(wrong.status, 403);
    let garbage = api
        .call("DELETE", &path, Some(json!({"reservation_id": "zz"})))
        .await;
    assert_eq!(garbage.status, 403);

    // The 1 s lease runs out; the old reservation is then "timed out", checked at
    // request time.
    let behind = post(&api, "del", &["newer"]).await;
    server.advance(1_000);
    let stale = api
        .call("DELETE", &path, Some(json!({"reservation_id": rid})))
        .await;
    assert_eq!(
        (stale.status, stale.json["msg"].as_str()),
        (403, Some("Reservation timed out"))
    );
    let again = reserve(&api, "del", json!({"n": 1})).await;
    assert_eq!(
        again[0]["id"].as_str(),
        Some(id),
        "requeued to the front, before newer"
    );
    assert_eq!(again[0]["reserved_count"], 2);
    let newer = api
        .call(
            "DELETE",
            &format!("queues/del/messages/{}", behind[0]),
            None,
        )
        .await;
    assert_eq!(newer.status, 200);
    let superseded = api
        .call("DELETE", &path, Some(json!({"reservation_id": rid})))
        .await;
    assert_eq!(superseded.status, 403, "reserved again under a new id");
    let current = again[0]["reservation_id"].as_str().unwrap();
    let ok = api
        .call("DELETE", &path, Some(json!({"reservation_id": current})))
        .await;
    assert_eq!((ok.status, ok.json["msg"].as_str()), (200, Some("Deleted")));
    assert_eq!(api.call("DELETE", &path, Some(json!({}))).await.status, 404);

    // Not reserved, no reservation id: deleted.
    let posted = post(&api, "del", &["b", "c"]).await;
    let plain = api
        .call(
            "DELETE",
            &format!("queues/del/messages/{}", posted[0]),
            None,
        )
        .await;
    assert_eq!(plain.status, 200);

    // Batch delete is all or nothing.
    let more = post(&api, "del", &["x", "y"]).await;
    let held = reserve(&api, "del", json!({"n": 1})).await;
    let batch = json!({"ids": [{"id": more[0]}, {"id": held[0]["id"]}]});
    let failed = api.call("DELETE", "queues/del/messages", Some(batch)).await;
    assert_eq!(failed.status, 403, "one entry lacks its reservation id");
    assert_eq!(
        api.call("GET", "queues/del", None).await.json["queue"]["size"],
        3
    );
    let batch = json!({"ids": [
        {"id": more[0]},
        {"id": held[0]["id"], "reservation_id": held[0]["reservation_id"]},
    ]});
    let done = api.call("DELETE", "queues/del/messages", Some(batch)).await;
    assert_eq!(
        (done.status, done.json["msg"].as_str()),
        (200, Some("Deleted"))
    );
    assert_eq!(
        api.call("GET", "queues/del", None).await.json["queue"]["size"],
        1
    );
}

#[tokio::test]
async fn touch_renews_and_release_puts_messages_at_the_front() {
    let server = server().await;
    let api = api(&server);
    post(&api, "tr", &["a", "b", "c"]).await;
    let got = reserve(&api, "tr", json!({"n": 2, "timeout": 30})).await;
    let (a, b) = (&got[0], &got[1]);
    let touch_path = format!("queues/tr/messages/{}/touch", a["id"].as_str().unwrap());
    let touched = api
        .call(
            "POST",
            &touch_path,
            Some(json!({"reservation_id": a["reservation_id"], "timeout": 60})),
        )
        .await;
    assert_eq!(
        (touched.status, touched.json["msg"].as_str()),
        (200, Some("Touched"))
    );
    let new_rid = touched.json["reservation_id"].as_str().unwrap().to_owned();
    assert_ne!(Some(new_rid.as_str()), a["reservation_id"].as_str());
    let old = api
        .call(
            "POST",
            &touch_path,
            Some(json!({"reservation_id": a["reservation_id"]})),
        )
        .await;
    assert_eq!(old.status, 403, "the old reservation is dead after a touch");
    assert_eq!(
        api.call("POST", &touch_path, Some(json!({}))).await.status,
        400
    );

    // Release a, then b: b is first, then a, then c.
    let release = |id: &str| format!("queues/tr/messages/{id}/release");
    let reply = api
        .call(
            "POST",
            &release(a["id"].as_str().unwrap()),
            Some(json!({"reservation_id": new_rid})),
        )
        .await;
    assert_eq!(
        (reply.status, reply.json["msg"].as_str()),
        (200, Some("Released"))
    );
    let reply = api
        .call(
            "POST",
            &release(b["id"].as_str().unwrap()),
            Some(json!({"reservation_id": b["reservation_id"]})),
        )
        .await;
    assert_eq!(reply.status, 200);
    let peeked = api.call("GET", "queues/tr/messages?n=3", None).await;
    let bodies: Vec<&str> = peeked.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["b", "a", "c"]);
    // reserved_count is kept: the next reserve of b makes it 2.
    let again = reserve(&api, "tr", json!({})).await;
    assert_eq!(
        (
            again[0]["body"].as_str(),
            again[0]["reserved_count"].as_u64()
        ),
        (Some("b"), Some(2))
    );
    let delayed = api
        .call(
            "POST",
            &release(again[0]["id"].as_str().unwrap()),
            Some(json!({"reservation_id": again[0]["reservation_id"], "delay": 60})),
        )
        .await;
    assert_eq!(delayed.status, 200);
    let peeked = api.call("GET", "queues/tr/messages?n=3", None).await;
    assert_eq!(
        peeked.json["messages"].as_array().unwrap().len(),
        2,
        "b is delayed"
    );
}

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_a_message_is_posted() {
    let server = server().await;
    let api = api(&server);
    api.call("PUT", "queues/lp", Some(json!({}))).await;
    let poller = http(&server, PROJECT, Some("secret"));
    let waiting = tokio::spawn(async move {
        poller
            .call(
                "POST",
                "queues/lp/reservations",
                Some(json!({"n": 5, "wait": 30})),
            )
            .await
    });
    // Post once the reserve is waiting (the queue's `waiting` counter is the signal).
    let client = server.client().await;
    while client.info(&format!("{PROJECT}/lp")).await.unwrap().waiting == 0 {
        tokio::task::yield_now().await;
    }
    post(&api, "lp", &["wake"]).await;
    let reply = waiting.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json["messages"][0]["body"], "wake");
}

#[tokio::test]
async fn dead_letters_move_on_reserve() {
    let server = server().await;
    let api = api(&server);
    let settings = json!({"queue": {"dead_letter": {"queue_name": "dlq", "max_reservations": 1}}});
    let reply = api.call("PUT", "queues/src", Some(settings)).await;
    assert_eq!(
        reply.json["queue"]["dead_letter"],
        json!({"queue_name": "dlq", "max_reservations": 1})
    );
    post(&api, "src", &["once"]).await;
    let got = reserve(&api, "src", json!({})).await;
    let release = format!(
        "queues/src/messages/{}/release",
        got[0]["id"].as_str().unwrap()
    );
    api.call(
        "POST",
        &release,
        Some(json!({"reservation_id": got[0]["reservation_id"]})),
    )
    .await;
    assert!(
        reserve(&api, "src", json!({})).await.is_empty(),
        "moved, not delivered again"
    );
    // The move is acknowledged asynchronously; a long poll on the DLQ waits for it.
    let moved = reserve(&api, "dlq", json!({"wait": 5})).await;
    assert_eq!(
        (moved[0]["id"].as_str(), moved[0]["body"].as_str()),
        (got[0]["id"].as_str(), Some("once"))
    );
    assert_eq!(
        moved[0]["reserved_count"], 2,
        "kept its count, plus this reserve"
    );
    let off = api
        .call(
            "PATCH",
            "queues/src",
            Some(json!({"queue": {"dead_letter": {"queue_name": ""}}})),
        )
        .await;
    assert!(off.json["queue"].get("dead_letter").is_none());
}

#[tokio::test]
async fn bodies_are_checked_and_round_trip() {
    let server = server().await;
    let api = api(&server);
    let text = "é ✓ \"quoted\" \u{1F600}";
    let ids = post(&api, "bodies", &["", text]).await;
    let got = api
        .call("GET", &format!("queues/bodies/messages/{}", ids[1]), None)
        .await;
    assert_eq!(got.json["message"]["body"], text);
    let empty = api
        .call("GET", &format!("queues/bodies/messages/{}", ids[0]), None)
        .await;
    assert_eq!(empty.json["message"]["body"], "");
    let big = "x".repeat(64 * 1024 + 1);
    let reply = api
        .call(
            "POST",
            "queues/bodies/messages",
            Some(json!({"messages": [{"body": big}]})),
        )
        .await;
    assert_eq!(
        (reply.status, reply.json["msg"].as_str()),
        (413, Some("Message body too large"))
    );
    let bad_headers = json!({"messages": [{"body": "x", "push_headers": {"Content-Type": "y"}}]});
    assert_eq!(
        api.call("POST", "queues/bodies/messages", Some(bad_headers))
            .await
            .status,
        400
    );
    // The webhook takes the raw body as one message.
    let hook = api
        .raw(
            "POST",
            &format!("/3/projects/{PROJECT}/queues/hooked/webhook"),
            Some("raw <b>text</b>"),
            &["Content-Type: text/plain"],
        )
        .await;
    assert_eq!(hook.status, 201);
    let got = reserve(&api, "hooked", json!({})).await;
    assert_eq!(got[0]["body"], "raw <b>text</b>");
    // Subscribers are for push queues: 400 on a pull queue; GET is no method there.
    let subscribers = json!({"subscribers": [{"name": "a", "url": "http://127.0.0.1:9/"}]});
    assert_eq!(
        api.call("POST", "queues/bodies/subscribers", Some(subscribers))
            .await
            .status,
        400
    );
    assert_eq!(
        api.call("GET", "queues/bodies/subscribers", None)
            .await
            .status,
        405
    );
}

#[tokio::test]
async fn alerts_are_added_replaced_removed_and_kept_across_restarts() {
    let server = server().await;
    let api = api(&server);
    post(&api, "watched", &["x"]).await;
    let fixed = json!({"type": "fixed", "trigger": 100, "queue": "ops"});
    let added = api
        .call(
            "PATCH",
            "queues/watched",
            Some(json!({"queue": {"alerts": [fixed.clone()]}})),
        )
        .await;
    assert_eq!(added.status, 200, "{added:?}");
    let alerts = added.json["queue"]["alerts"].as_array().unwrap().clone();
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (
            alerts[0]["direction"].as_str(),
            alerts[0]["snooze"].as_u64()
        ),
        (Some("asc"), Some(0))
    );
    let first_id = alerts[0]["id"].as_str().unwrap().to_owned();

    let duplicate = api
        .call(
            "PATCH",
            "queues/watched",
            Some(json!({"queue": {"alerts": [fixed]}})),
        )
        .await;
    assert_eq!(duplicate.status, 400);
    assert_eq!(
        duplicate.json["msg"],
        "At least one new alert duplicates current queue alerts."
    );
    let bad = json!({"queue": {"alerts": [{"type": "fixed", "trigger": 0, "queue": "ops"}]}});
    assert_eq!(
        api.call("PATCH", "queues/watched", Some(bad)).await.status,
        400
    );
    let five: Vec<Value> = (1..=5)
        .map(|t| json!({"type": "progressive", "trigger": t, "queue": "ops", "direction": "desc"}))
        .collect();
    let too_many = api
        .call(
            "PATCH",
            "queues/watched",
            Some(json!({"queue": {"alerts": five.clone()}})),
        )
        .await;
    assert_eq!(too_many.status, 400, "1 + 5 is over the limit of 5");

    // PUT replaces the list; the queue keeps its message.
    let replaced = api
        .call(
            "PUT",
            "queues/watched",
            Some(json!({"queue": {"alerts": five}})),
        )
        .await;
    let ids: Vec<String> = replaced.json["queue"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 5);
    assert!(!ids.contains(&first_id));
    assert_eq!(replaced.json["queue"]["size"], 1);

    let removed = api
        .call(
            "DELETE",
            "queues/watched/alerts",
            Some(json!({"queue": {"alerts": [{"id": ids[0]}]}})),
        )
        .await;
    assert_eq!(removed.status, 200, "{removed:?}");
    let one = api
        .call("DELETE", &format!("queues/watched/alerts/{}", ids[1]), None)
        .await;
    assert_eq!(one.status, 200);
    let unknown = api.call("DELETE", "queues/watched/alerts/nope", None).await;
    assert_eq!(
        (unknown.status, unknown.json["msg"].as_str()),
        (404, Some("Alert not found"))
    );

    drop(api);
    let server = server
        .restart_with(|config| {
            config.http_listen = Some("127.0.0.1:0".parse().unwrap());
            config.auth = Auth {
                tokens: vec![("secret".into(), None)],
                disabled: false,
            };
        })
        .await;
    let api = self::api(&server);
    let kept: Vec<String> = api.call("GET", "queues/watched", None).await.json["queue"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kept, &ids[2..]);
}

#[tokio::test]
async fn messages_expire_after_the_queues_message_expiration() {
    let server = manual_server().await;
    let api = api(&server);
    let reply = api
        .call(
            "PUT",
            "queues/short",
            Some(json!({"queue": {"message_expiration": 1}})),
        )
        .await;
    assert_eq!(reply.json["queue"]["message_expiration"], 1);
    post(&api, "short", &["gone soon"]).await;
    reserve(&api, "short", json!({"timeout": 60})).await;
    post(&api, "short", &["also"]).await;
    server.advance(2_000);
    let queue = api.call("GET", "queues/short", None).await.json["queue"].clone();
    assert_eq!(
        (queue["size"].as_u64(), queue["total_messages"].as_u64()),
        (Some(0), Some(2)),
        "expired whether reserved or not"
    );
    assert!(reserve(&api, "short", json!({})).await.is_empty());
}

#[tokio::test]
async fn garbage_on_the_http_port_hurts_nobody_else() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = server().await;
    let api = api(&server);
    post(&api, "steady", &["kept"]).await;
    let addr = server.server.http_addr().unwrap();
    for junk in [
        &b"GARBAGE\r\n\r\n"[..],
        b"\x00\xff\x13\x37",
        b"POST /3/projects/x HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
    ] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(junk).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut answer = Vec::new();
        // The server answers or closes; either way the read ends.
        let _ = stream.read_to_end(&mut answer).await;
    }
    let reply = api.call("GET", "queues/steady", None).await;
    assert_eq!(
        (reply.status, reply.json["queue"]["size"].as_u64()),
        (200, Some(1))
    );
}

/// Regression: the token was checked only after the whole body had been read, so
/// an unauthenticated client could make the server buffer up to the body limit
/// (and a client that never sent the body held its request open).
#[tokio::test]
async fn an_unauthenticated_request_is_refused_before_its_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = server().await;
    let addr = server.server.http_addr().unwrap();
    for token in ["Authorization: OAuth wrong\r\n", ""] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /3/projects/{PROJECT}/queues/q/messages HTTP/1.1\r\nHost: test\r\n{token}\
             Content-Type: application/json\r\nContent-Length: 30000000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // Not a byte of the 30 MB is sent: the answer must come anyway.
        let mut answer = vec![0u8; 4096];
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut answer))
                .await
                .expect("answered without waiting for the body")
                .unwrap();
        let text = String::from_utf8_lossy(&answer[..read]);
        assert!(text.starts_with("HTTP/1.1 401"), "{text}");
        assert!(text.contains("Unauthorized"), "{text}");
    }
    let reply = api(&server).call("GET", "queues/q", None).await;
    assert_eq!(reply.status, 404, "nothing was created");
}
