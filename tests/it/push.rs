//! Push queues over real HTTP: the server delivers to subscriber servers on
//! 127.0.0.1 started by the tests (`tests/hook`), retries, fails over, holds for
//! 202s, reports to the error queue, keeps its schedule across a restart, and
//! applies its SSRF policy (docs/ironmq-v3-api.md §6; `src/push/`).

use std::time::Duration;

use ferromq::config::Auth;
use serde_json::{json, Value};

use crate::hook::{Hook, Reply};
use crate::support::{Http, TestServer};

const PROJECT: &str = "000000000000000000000001";
/// IronMQ's shortest retries delay: retry spacing is tested at it.
const DELAY_S: u64 = 3;
/// Waiting for a delivery: a retry takes DELAY_S, a debug build some more.
const WITHIN: Duration = Duration::from_secs(10);

fn config(config: &mut ferromq::Config) {
    config.http_listen = Some("127.0.0.1:0".parse().unwrap());
    config.auth = Auth {
        tokens: vec![("secret".into(), None)],
        disabled: false,
    };
    config.push.allow = vec!["127.0.0.1".into()];
    config.push.timeout = Duration::from_secs(1);
}

async fn server() -> TestServer {
    TestServer::start_with(config).await
}

fn api(server: &TestServer) -> Http {
    Http {
        addr: server.server.http_addr().expect("http enabled"),
        project: PROJECT.into(),
        token: Some("secret".into()),
    }
}

/// Creates push queue `q` of `kind` with `subscribers` (name, url) and `extra`
/// push settings.
async fn create(api: &Http, q: &str, kind: &str, subscribers: &[(&str, String)], extra: Value) {
    let subscribers: Vec<Value> = subscribers
        .iter()
        .map(|(name, url)| json!({"name": name, "url": url}))
        .collect();
    let mut push = json!({"subscribers": subscribers, "retries_delay": DELAY_S});
    for (k, v) in extra.as_object().unwrap() {
        push[k] = v.clone();
    }
    let reply = api
        .call(
            "PUT",
            &format!("queues/{q}"),
            Some(json!({"queue": {"type": kind, "push": push}})),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

async fn post(api: &Http, q: &str, message: Value) -> String {
    let reply = api
        .call(
            "POST",
            &format!("queues/{q}/messages"),
            Some(json!({ "messages": [message] })),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.json["ids"][0].as_str().unwrap().to_owned()
}

/// Polls `check` every 20 ms until it holds, failing the test after 10 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn gone(api: &Http, q: &str, id: &str) -> bool {
    api.call("GET", &format!("queues/{q}/messages/{id}"), None)
        .await
        .status
        == 404
}

async fn statuses(api: &Http, q: &str, id: &str) -> Vec<Value> {
    let reply = api
        .call(
            "GET",
            &format!("queues/{q}/messages/{id}/subscribers"),
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json["subscribers"].as_array().unwrap().clone()
}

fn status_of<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no status of {name} in {list:?}"))
}

/// Creates push queue `q` with one subscriber on `hook`, posts a message, and
/// waits until the subscriber's status says the delivery was refused for `why`;
/// the hook got nothing.
async fn refused(api: &Http, hook: &mut Hook, q: &str, why: &str) {
    create(api, q, "multicast", &[("s", hook.url("s"))], json!({})).await;
    let id = post(api, q, json!({"body": "x"})).await;
    eventually(&format!("a refusal saying {why:?}"), async || {
        let list = statuses(api, q, &id).await;
        status_of(&list, "s")["msg"]
            .as_str()
            .is_some_and(|m| m.to_lowercase().contains(why))
    })
    .await;
    assert!(
        hook.next_within(Duration::from_millis(300)).await.is_none(),
        "nothing sent"
    );
}

#[tokio::test]
async fn a_delivery_carries_the_raw_body_and_every_header_then_the_message_is_deleted() {
    let server = server().await;
    let api = api(&server);
    let mut hook = Hook::start().await;
    let subscribers = json!([{
        "name": "s1",
        "url": hook.url("s1"),
        "headers": {"X-Team": "ops", "Content-Type": "application/json"},
    }]);
    let reply = api
        .call(
            "PUT",
            "queues/pq",
            Some(json!({"queue": {"type": "multicast", "push": {"subscribers": subscribers}}})),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let id = post(
        &api,
        "pq",
        json!({"body": "{\"order\": 7}", "push_headers": {"X-Trace": "t-1"}}),
    )
    .await;
    let hit = hook.next(WITHIN).await;
    assert_eq!(hit.path, "/s1");
    assert_eq!(&hit.body[..], b"{\"order\": 7}", "the raw body");
    assert_eq!(hit.header("user-agent"), "IronMQ Pusherd");
    assert_eq!(
        hit.header("content-type"),
        "application/json",
        "a subscriber header overrides the default"
    );
    assert_eq!(hit.header("x-team"), "ops");
    assert_eq!(hit.header("x-trace"), "t-1", "the message's push header");
    assert_eq!(hit.header("iron-message-id"), id);
    assert_eq!(hit.header("iron-subscriber-name"), "s1");
    assert!(hit.header("iron-reservation-id").parse::<u64>().is_ok());
    let http = server.server.http_addr().unwrap();
    assert_eq!(
        hit.header("iron-subscriber-message-url"),
        format!("http://{http}/3/projects/{PROJECT}/queues/pq/messages/{id}")
    );
    eventually("the delivered message is deleted", async || {
        gone(&api, "pq", &id).await
    })
    .await;
    // The webhook's X-Subscribers-* headers are the message's push headers.
    let hooked = api
        .raw(
            "POST",
            &format!("/3/projects/{PROJECT}/queues/pq/webhook"),
            Some("raw"),
            &[
                "X-Subscribers-Source: form",
                "X-Subscribers-Iron-Message-Id: no",
            ],
        )
        .await;
    assert_eq!(hooked.status, 201, "{hooked:?}");
    let hit = hook.next(WITHIN).await;
    assert_eq!((&hit.body[..], hit.header("source")), (&b"raw"[..], "form"));
    assert_ne!(
        hit.header("iron-message-id"),
        "no",
        "an invalid one is dropped"
    );
    // Peek and get show the body without its push headers; reserve is refused.
    let id2 = {
        hook.script("s1", &[Reply::Status(500)]);
        post(
            &api,
            "pq",
            json!({"body": "b2", "push_headers": {"X-A": "1"}}),
        )
        .await
    };
    let got = api
        .call("GET", &format!("queues/pq/messages/{id2}"), None)
        .await;
    assert_eq!(got.json["message"]["body"], "b2");
    let reserve = api
        .call("POST", "queues/pq/reservations", Some(json!({})))
        .await;
    assert_eq!(reserve.status, 400, "{reserve:?}");
}

#[tokio::test]
async fn multicast_retries_only_the_failed_subscriber_at_its_spacing_then_reports_to_the_error_queue(
) {
    let server = server().await;
    let api = api(&server);
    let mut hook = Hook::start().await;
    hook.script("bad", &[Reply::Status(500)]);
    let subscribers = [("good", hook.url("good")), ("bad", hook.url("bad"))];
    create(
        &api,
        "mq",
        "multicast",
        &subscribers,
        json!({"retries": 2, "error_queue": "mq-errors"}),
    )
    .await;
    let id = post(
        &api,
        "mq",
        json!({"body": "payload", "push_headers": {"X-K": "v"}}),
    )
    .await;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    while bad.len() < 3 {
        let hit = hook.next(WITHIN).await;
        if hit.path == "/good" {
            good.push(hit);
        } else {
            bad.push(hit);
        }
        if bad.len() == 1 && good.len() == 1 {
            // After the first round: one delivered, one retrying.
            eventually("statuses after the first round", async || {
                let list = statuses(&api, "mq", &id).await;
                status_of(&list, "bad")["status_code"] == 500
                    && status_of(&list, "good")["status"] == "delivered"
            })
            .await;
            let list = statuses(&api, "mq", &id).await;
            let b = status_of(&list, "bad");
            assert_eq!(
                (&b["status"], &b["tries"], &b["retries_remaining"]),
                (&json!("retrying"), &json!(1), &json!(2))
            );
            assert!(b["last_try_at"].as_str().unwrap().ends_with('Z'));
        }
    }
    assert_eq!(good.len(), 1, "a delivered subscriber is not retried");
    for pair in bad.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_secs(DELAY_S) - Duration::from_millis(50),
            "retries are retries_delay apart: {gap:?}"
        );
    }
    assert!(
        hook.next_within(Duration::from_secs(DELAY_S + 1))
            .await
            .is_none(),
        "1 try + 2 retries, then no more"
    );
    eventually("the given-up message is deleted", async || {
        gone(&api, "mq", &id).await
    })
    .await;
    let peek = api.call("GET", "queues/mq-errors/messages?n=5", None).await;
    let reports = peek.json["messages"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "{peek:?}");
    let report: Value = serde_json::from_str(reports[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(report["source_msg_id"], id);
    assert_eq!(report["body"], "payload");
    assert_eq!(report["headers"], json!({"X-K": "v"}));
    assert_eq!(
        report["subscribers"],
        json!([{"name": "bad", "url": hook.url("bad"), "code": 500, "msg": "answer 500"}])
    );
}

#[tokio::test]
async fn unicast_fails_over_at_once_and_retries_the_whole_message_when_all_fail() {
    let server = server().await;
    let api = api(&server);
    let mut hook = Hook::start().await;
    hook.script("down", &[Reply::Status(503)]);
    create(
        &api,
        "uq",
        "unicast",
        &[("down", hook.url("down")), ("up", hook.url("up"))],
        json!({}),
    )
    .await;
    // Whichever is tried first, the message ends at "up", once, with "down"
    // (if tried) just before it.
    for body in ["m1", "m2"] {
        let id = post(&api, "uq", json!({ "body": body })).await;
        let first = hook.next(WITHIN).await;
        if first.path == "/down" {
            let second = hook.next(WITHIN).await;
            assert_eq!(second.path, "/up");
            assert!(
                second.at - first.at < Duration::from_secs(DELAY_S),
                "at once"
            );
        } else {
            assert_eq!(first.path, "/up");
        }
        eventually("delivered", async || gone(&api, "uq", &id).await).await;
    }
    assert!(hook.next_within(Duration::from_millis(300)).await.is_none());

    // Both down: each tried once per round, the round repeated after the delay.
    hook.script("up", &[Reply::Status(500), Reply::Status(200)]);
    let id = post(&api, "uq", json!({"body": "m3"})).await;
    let round1 = [hook.next(WITHIN).await, hook.next(WITHIN).await];
    let mut paths: Vec<&str> = round1.iter().map(|h| h.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/down", "/up"]);
    let retry = hook.next(WITHIN).await;
    assert!(retry.at - round1[1].at >= Duration::from_secs(DELAY_S) - Duration::from_millis(50));
    // The retry reaches "up" (directly or after "down").
    let last = if retry.path == "/up" {
        retry
    } else {
        hook.next(WITHIN).await
    };
    assert_eq!(last.path, "/up");
    eventually("delivered on the retry", async || {
        gone(&api, "uq", &id).await
    })
    .await;
}

#[tokio::test]
async fn a_202_holds_the_message_until_acknowledged_or_its_timeout_ends() {
    let server = server().await;
    let api = api(&server);
    let mut hook = Hook::start().await;
    hook.script("slow", &[Reply::Status(202)]);
    create(
        &api,
        "aq",
        "multicast",
        &[("slow", hook.url("slow"))],
        json!({}),
    )
    .await;
    let id = post(&api, "aq", json!({"body": "work"})).await;
    let hit = hook.next(WITHIN).await;
    let rid = hit.header("iron-reservation-id").to_owned();
    eventually("reserved for the subscriber", async || {
        let list = statuses(&api, "aq", &id).await;
        status_of(&list, "slow")["status"] == "reserved"
    })
    .await;
    let path = format!("queues/aq/messages/{id}");
    let wrong = api
        .call(
            "DELETE",
            &path,
            Some(json!({"reservation_id": "12345", "subscriber_name": "slow"})),
        )
        .await;
    assert_eq!(wrong.status, 403, "{wrong:?}");
    let stranger = api
        .call(
            "DELETE",
            &path,
            Some(json!({"reservation_id": rid, "subscriber_name": "nobody"})),
        )
        .await;
    assert_eq!(stranger.status, 400, "{stranger:?}");
    assert!(!gone(&api, "aq", &id).await, "held, not deleted");
    let ack = api
        .call(
            "DELETE",
            &path,
            Some(json!({"reservation_id": rid, "subscriber_name": "slow"})),
        )
        .await;
    assert_eq!((ack.status, &ack.json["msg"]), (200, &json!("Deleted")));
    assert!(gone(&api, "aq", &id).await);
    assert!(hook.next_within(Duration::from_millis(300)).await.is_none());

    // Unacknowledged: tried again when the queue's timeout (1 s here) ends.
    let reply = api
        .call(
            "PATCH",
            "queues/aq",
            Some(json!({"queue": {"message_timeout": 1}})),
        )
        .await;
    assert_eq!(reply.status, 200);
    hook.script("slow", &[Reply::Status(202), Reply::Status(200)]);
    let id = post(&api, "aq", json!({"body": "again"})).await;
    let first = hook.next(WITHIN).await;
    let second = hook.next(WITHIN).await;
    assert_eq!(second.header("iron-message-id"), id);
    assert!(
        second.at - first.at >= Duration::from_millis(950),
        "after the hold"
    );
    assert_ne!(
        first.header("iron-reservation-id"),
        second.header("iron-reservation-id")
    );
    eventually("delivered on the retry", async || {
        gone(&api, "aq", &id).await
    })
    .await;
}

#[tokio::test]
async fn a_restart_in_the_middle_of_the_retry_schedule_goes_on_with_the_retries_left() {
    let server = server().await;
    let mut hook = Hook::start().await;
    hook.script("bad", &[Reply::Status(500)]);
    {
        let api = api(&server);
        create(
            &api,
            "rq",
            "multicast",
            &[("good", hook.url("good")), ("bad", hook.url("bad"))],
            json!({"retries": 2, "error_queue": "rq-errors"}),
        )
        .await;
        post(&api, "rq", json!({"body": "x"})).await;
    }
    let mut paths = vec![hook.next(WITHIN).await.path, hook.next(WITHIN).await.path];
    paths.sort();
    assert_eq!(paths, ["/bad", "/good"]);
    let api = api(&server);
    eventually("the first round ended", async || {
        api.call("GET", "queues/rq/messages?n=1", None).await.json["messages"]
            .as_array()
            .is_some_and(Vec::is_empty)
    })
    .await;
    let server = server.restart_with(config).await;
    let api = crate::push::api(&server);
    // Two more tries of "bad" only, then the report.
    for _ in 0..2 {
        assert_eq!(hook.next(WITHIN).await.path, "/bad");
    }
    assert!(hook
        .next_within(Duration::from_secs(DELAY_S + 1))
        .await
        .is_none());
    eventually("the report", async || {
        api.call("GET", "queues/rq-errors", None).await.json["queue"]["size"] == 1
    })
    .await;
    let info = api.call("GET", "queues/rq", None).await;
    assert_eq!(info.json["queue"]["size"], 0);
    assert_eq!(
        info.json["queue"]["push"]["retries"], 2,
        "kept across the restart"
    );
}

#[tokio::test]
async fn a_subscriber_that_never_answers_times_out_and_other_queues_keep_flowing() {
    let server = server().await;
    let api = api(&server);
    let mut hook = Hook::start().await;
    hook.script("stuck", &[Reply::Hang]);
    create(
        &api,
        "stuckq",
        "multicast",
        &[("stuck", hook.url("stuck"))],
        json!({}),
    )
    .await;
    create(
        &api,
        "freeq",
        "multicast",
        &[("free", hook.url("free"))],
        json!({}),
    )
    .await;
    let stuck = post(&api, "stuckq", json!({"body": "s"})).await;
    assert_eq!(hook.next(WITHIN).await.path, "/stuck");
    for i in 0..5 {
        let id = post(&api, "freeq", json!({ "body": format!("f{i}") })).await;
        let hit = hook.next(WITHIN).await;
        assert_eq!(
            (hit.path.as_str(), hit.header("iron-message-id")),
            ("/free", id.as_str())
        );
    }
    eventually("the stuck delivery timed out", async || {
        let list = statuses(&api, "stuckq", &stuck).await;
        status_of(&list, "stuck")["msg"]
            .as_str()
            .is_some_and(|m| m.contains("no answer within"))
    })
    .await;
    let list = statuses(&api, "stuckq", &stuck).await;
    assert_eq!(
        (
            &status_of(&list, "stuck")["status"],
            &status_of(&list, "stuck")["status_code"]
        ),
        (&json!("retrying"), &json!(0))
    );

    // In one multicast queue, the other subscriber gets every message at once.
    hook.script("stuck2", &[Reply::Hang]);
    create(
        &api,
        "mixq",
        "multicast",
        &[("stuck2", hook.url("stuck2")), ("fine", hook.url("fine"))],
        json!({}),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(post(&api, "mixq", json!({ "body": format!("m{i}") })).await);
    }
    let mut fine = Vec::new();
    while fine.len() < ids.len() {
        let hit = hook.next(WITHIN).await;
        if hit.path == "/fine" {
            fine.push(hit.header("iron-message-id").to_owned());
        }
    }
    fine.sort();
    ids.sort();
    assert_eq!(fine, ids);
}

#[tokio::test]
async fn push_settings_round_trip_through_create_update_and_the_subscriber_calls() {
    let server = server().await;
    let api = api(&server);
    let hook = Hook::start().await;
    let reply = api
        .call(
            "PUT",
            "queues/cfg",
            Some(json!({"queue": {"push": {
                "subscribers": [{"name": "a", "url": hook.url("a"), "headers": {"X-A": "1"}}],
                "error_queue": "cfg-err",
            }}})),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let queue = &reply.json["queue"];
    assert_eq!(
        queue["type"], "multicast",
        "push without a type is multicast"
    );
    assert_eq!(
        queue["push"],
        json!({
            "subscribers": [{"name": "a", "url": hook.url("a"), "headers": {"X-A": "1"}}],
            "retries": 3,
            "retries_delay": 60,
            "error_queue": "cfg-err",
        })
    );
    let patched = api
        .call(
            "PATCH",
            "queues/cfg",
            Some(json!({"queue": {"push": {"retries": 7, "retries_delay": 5, "error_queue": ""}}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    let push = &patched.json["queue"]["push"];
    assert_eq!(
        (&push["retries"], &push["retries_delay"]),
        (&json!(7), &json!(5))
    );
    assert!(push.get("error_queue").is_none(), "turned off");
    let names = |reply: &Value| -> Vec<String> {
        reply["queue"]["push"]["subscribers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let subs = |list: Value| Some(json!({ "subscribers": list }));
    let updated = api
        .call(
            "POST",
            "queues/cfg/subscribers",
            subs(json!([{"name": "b", "url": hook.url("b")}, {"url": hook.url("c")}])),
        )
        .await;
    assert_eq!(
        (updated.status, &updated.json["msg"]),
        (200, &json!("Updated"))
    );
    let info = api.call("GET", "queues/cfg", None).await.json;
    assert_eq!(names(&info), ["a", "b", &hook.url("c")]);
    let replaced = api
        .call(
            "PUT",
            "queues/cfg/subscribers",
            subs(json!([{"name": "z", "url": hook.url("z")}])),
        )
        .await;
    assert_eq!(replaced.status, 200);
    let info = api.call("GET", "queues/cfg", None).await.json;
    assert_eq!(names(&info), ["z"]);
    api.call(
        "POST",
        "queues/cfg/subscribers",
        subs(json!([{"name": "y", "url": hook.url("y")}])),
    )
    .await;
    let removed = api
        .call(
            "DELETE",
            "queues/cfg/subscribers",
            subs(json!([{"name": "z"}])),
        )
        .await;
    assert_eq!(removed.status, 200);
    let info = api.call("GET", "queues/cfg", None).await.json;
    assert_eq!(names(&info), ["y"]);

    for (method, path, body) in [
        ("PATCH", "queues/cfg", json!({"queue": {"type": "pull"}})),
        ("PATCH", "queues/cfg", json!({"queue": {"type": "unicast"}})),
        (
            "PATCH",
            "queues/cfg",
            json!({"queue": {"push": {"retries": 101}}}),
        ),
        (
            "PATCH",
            "queues/cfg",
            json!({"queue": {"push": {"retries_delay": 2}}}),
        ),
        (
            "PATCH",
            "queues/cfg",
            json!({"queue": {"dead_letter": {"queue_name": "d"}}}),
        ),
        (
            "PATCH",
            "queues/cfg",
            json!({"queue": {"alerts": [{"type": "fixed", "trigger": 1, "queue": "x"}]}}),
        ),
        (
            "DELETE",
            "queues/cfg/subscribers",
            json!({"subscribers": [{"name": "y"}]}),
        ),
        (
            "POST",
            "queues/cfg/subscribers",
            json!({"subscribers": [{"name": "f", "url": "ftp://x/"}]}),
        ),
        ("PUT", "queues/new", json!({"queue": {"type": "unicast"}})),
    ] {
        let reply = api.call(method, path, Some(body.clone())).await;
        assert_eq!(reply.status, 400, "{method} {path} {body}: {reply:?}");
    }
    assert_eq!(
        api.call(
            "POST",
            "queues/nothere/subscribers",
            subs(json!([{"name": "a", "url": hook.url("a")}]))
        )
        .await
        .status,
        404
    );
    let server = server.restart_with(config).await;
    let api = crate::push::api(&server);
    let info = api.call("GET", "queues/cfg", None).await.json;
    assert_eq!(names(&info), ["y"]);
    assert_eq!(info["queue"]["push"]["retries"], 7, "kept across a restart");
}

#[tokio::test]
async fn subscribers_in_denied_networks_are_never_contacted() {
    let server = TestServer::start_with(|c| {
        config(c);
        c.push.allow.clear();
    })
    .await;
    let mut hook = Hook::start().await;
    refused(&api(&server), &mut hook, "ssrf", "denies").await;
}

#[tokio::test]
async fn the_binary_protocol_configures_push_queues_pushes_headers_and_acknowledges() {
    use ferromq::proto;
    let server = server().await;
    let client = server.client().await;
    let mut hook = Hook::start().await;
    hook.script("w", &[Reply::Status(202)]);
    let base = hook.url("");
    let subscriber = |name: &str| proto::Subscriber {
        name: name.into(),
        url: format!("{base}{name}"),
        headers: vec![proto::Header {
            name: "X-S".into(),
            value: name.into(),
        }],
    };
    let settings = proto::QueueSettings {
        push: Some(proto::PushSettings {
            r#type: proto::QueueType::Unicast.into(),
            subscribers: vec![subscriber("w")],
            retries: Some(0),
            retries_delay_s: 5,
            error_queue: Some("bin-err".into()),
            ..proto::PushSettings::default()
        }),
        ..proto::QueueSettings::default()
    };
    let info = client.create_queue("binq", settings).await.unwrap();
    let push = info.settings.unwrap().push.unwrap();
    assert_eq!(
        (
            push.r#type(),
            push.retries,
            push.retries_delay_s,
            push.error_queue.as_deref()
        ),
        (proto::QueueType::Unicast, Some(0), 5, Some("bin-err"))
    );
    let ids = client
        .push_messages(
            "binq",
            vec![proto::PushMessage {
                body: "job".into(),
                push_headers: vec![proto::Header {
                    name: "X-M".into(),
                    value: "1".into(),
                }],
                ..proto::PushMessage::default()
            }],
        )
        .await
        .unwrap();
    let hit = hook.next(WITHIN).await;
    assert_eq!((hit.header("x-s"), hit.header("x-m")), ("w", "1"));
    assert_eq!(&hit.body[..], b"job");
    let rid: u64 = hit.header("iron-reservation-id").parse().unwrap();
    eventually("reserved for w", async || {
        let list = client.push_statuses("binq", ids[0]).await.unwrap();
        list[0].status == "reserved" && list[0].status_code == 202
    })
    .await;
    let got = client.get("binq", ids[0]).await.unwrap();
    assert_eq!(&got.body[..], b"job", "shown without its push headers");
    assert!(client.acknowledge("binq", ids[0], rid, "w").await.unwrap());
    assert!(client.get("binq", ids[0]).await.is_err());

    // Update: add, remove, and a type change refused.
    let add = proto::QueueSettings {
        push: Some(proto::PushSettings {
            add_subscribers: vec![subscriber("v")],
            ..proto::PushSettings::default()
        }),
        ..proto::QueueSettings::default()
    };
    let info = client.update_queue("binq", add).await.unwrap();
    let names: Vec<String> = info
        .settings
        .unwrap()
        .push
        .unwrap()
        .subscribers
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["w", "v"]);
    let to_pull = proto::QueueSettings {
        push: Some(proto::PushSettings {
            r#type: proto::QueueType::Multicast.into(),
            ..proto::PushSettings::default()
        }),
        ..proto::QueueSettings::default()
    };
    let refused = client.update_queue("binq", to_pull).await.unwrap_err();
    assert!(
        refused.to_string().contains("cannot be changed"),
        "{refused}"
    );
    assert!(client
        .push_statuses("binq-missing", 1)
        .await
        .unwrap_err()
        .to_string()
        .contains("not found"));
}

#[tokio::test]
async fn https_subscribers_are_verified_against_the_trusted_roots() {
    let certs = tempfile::tempdir().unwrap();
    let (pem, key) = crate::tls::certificate(certs.path(), "hook");
    let mut hook = Hook::start_tls(&pem, &key).await;
    // The hook's certificate is its own root: trusted with --push-ca-cert only.
    let trusting = TestServer::start_with(|c| {
        config(c);
        c.push.ca_cert = Some(pem.clone());
    })
    .await;
    let api = api(&trusting);
    create(
        &api,
        "tlsq",
        "multicast",
        &[("s", hook.url("s"))],
        json!({}),
    )
    .await;
    let id = post(&api, "tlsq", json!({"body": "secret"})).await;
    let hit = hook.next(WITHIN).await;
    assert_eq!(
        (&hit.body[..], hit.header("iron-message-id")),
        (&b"secret"[..], id.as_str())
    );
    eventually("delivered over TLS", async || gone(&api, "tlsq", &id).await).await;

    let other = server().await;
    refused(&crate::push::api(&other), &mut hook, "tlsq", "certificate").await;
}
