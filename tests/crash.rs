//! Durability: run the real `ferromq` binary, push messages, SIGKILL it while pushes
//! are in flight, restart it on the same data directory and find every push that
//! was acknowledged; and stop it with SIGTERM under pushes, reserves and deletes:
//! a clean exit, in bounded time, with every acknowledged push and delete kept.

mod common;
mod hook;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferromq::client::ReserveOptions;
use ferromq::Client;

use common::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_push_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let client = Client::connect(server.addr.as_str()).await.unwrap();

    // 8 producers push batches of 5 until 400 batches are acknowledged; the kill
    // lands while the producers are still pushing.
    let acked: Arc<Mutex<Vec<(u64, Bytes)>>> = Arc::default();
    let (enough_tx, enough_rx) = tokio::sync::oneshot::channel();
    let enough_tx = Arc::new(Mutex::new(Some(enough_tx)));
    let mut producers = Vec::new();
    for p in 0..8u32 {
        let client = client.clone();
        let acked = Arc::clone(&acked);
        let enough_tx = Arc::clone(&enough_tx);
        producers.push(tokio::spawn(async move {
            for i in 0..1_000u32 {
                let bodies: Vec<Bytes> = (0..5)
                    .map(|k| Bytes::from(format!("p{p}-{i}-{k}")))
                    .collect();
                let Ok(ids) = client.push("durable", bodies.clone()).await else {
                    return; // the server is gone
                };
                let mut acked = acked.lock().unwrap();
                acked.extend(ids.into_iter().zip(bodies));
                if acked.len() >= 2_000 {
                    if let Some(tx) = enough_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                }
            }
        }));
    }
    enough_rx.await.expect("2000 acknowledged pushes");
    server.child.kill().expect("SIGKILL"); // std's kill() is SIGKILL on Unix
    server.child.wait().unwrap();
    drop(server);
    for producer in producers {
        producer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 2_000);

    let server = start(dir.path());
    let client = Client::connect(server.addr.as_str()).await.unwrap();
    let found = common::drain(&client, "durable").await;
    let missing: Vec<u64> = acked
        .iter()
        .filter(|(id, body)| found.get(id) != Some(body))
        .map(|(id, _)| *id)
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    let unique: HashSet<u64> = acked.iter().map(|(id, _)| *id).collect();
    assert_eq!(unique.len(), acked.len(), "no id was handed out twice");
}

/// Issue 14's message attributes are part of the durability contract: after a
/// SIGKILL while prioritized, keyed pushes are in flight, every acknowledged push
/// comes back with its priority and key, and every acknowledged release with the
/// attempt it ended in its delivery history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_keys_and_delivery_histories_survive_sigkill() {
    use ferromq::client::ConnectOptions;
    use ferromq::proto::{DeliveryOutcome, PushMessage};

    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let options = ConnectOptions {
        consumer: Some("worker-9".into()),
        ..ConnectOptions::default()
    };
    let client = Client::connect_with(server.addr.as_str(), &options)
        .await
        .unwrap();
    // Acknowledged releases first: their messages have one attempt each.
    let released_ids = client
        .push(
            "tagged",
            (0..20).map(|i| Bytes::from(format!("r{i}"))).collect(),
        )
        .await
        .unwrap();
    let all = ReserveOptions {
        n: 20,
        ..ReserveOptions::default()
    };
    for m in client.reserve("tagged", all).await.unwrap() {
        client
            .release("tagged", m.id, m.reservation_id, 0)
            .await
            .unwrap();
    }
    // Then producers push tagged batches until 1,000 messages are acknowledged;
    // the kill lands while they are still pushing.
    type Acked = Vec<(u64, Bytes, u32, String)>;
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let (enough_tx, enough_rx) = tokio::sync::oneshot::channel();
    let enough_tx = Arc::new(Mutex::new(Some(enough_tx)));
    let mut producers = Vec::new();
    for p in 0..4u32 {
        let (client, acked, enough_tx) =
            (client.clone(), Arc::clone(&acked), Arc::clone(&enough_tx));
        producers.push(tokio::spawn(async move {
            for i in 0..1_000u32 {
                let messages: Vec<PushMessage> = (0..5u32)
                    .map(|k| PushMessage {
                        body: Bytes::from(format!("p{p}-{i}-{k}")),
                        priority: Some((i + k) % 16),
                        key: if k % 2 == 0 {
                            format!("tenant-{}", (i + k) % 7)
                        } else {
                            String::new()
                        },
                        ..PushMessage::default()
                    })
                    .collect();
                let Ok(ids) = client.push_messages("tagged", messages.clone()).await else {
                    return; // the server is gone
                };
                let mut acked = acked.lock().unwrap();
                for (id, m) in ids.into_iter().zip(messages) {
                    acked.push((id, m.body, m.priority.unwrap_or(8), m.key));
                }
                if acked.len() >= 1_000 {
                    if let Some(tx) = enough_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                }
            }
        }));
    }
    enough_rx.await.expect("1000 acknowledged pushes");
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    drop(server);
    for producer in producers {
        producer.await.unwrap();
    }

    let server = start(dir.path());
    let client = Client::connect(server.addr.as_str()).await.unwrap();
    let acked = acked.lock().unwrap().clone();
    for (id, body, priority, key) in &acked {
        let got = client.get("tagged", *id).await.unwrap_or_else(|err| {
            panic!("acknowledged message {id} lost: {err}");
        });
        assert_eq!(
            (&got.body, got.priority, &got.key),
            (body, *priority, key),
            "message {id}"
        );
    }
    for id in released_ids {
        let got = client.get("tagged", id).await.unwrap();
        let attempts: Vec<(DeliveryOutcome, &str)> = got
            .history
            .iter()
            .map(|a| (a.outcome(), a.consumer.as_str()))
            .collect();
        assert_eq!(
            attempts,
            [(DeliveryOutcome::Released, "worker-9")],
            "message {id}"
        );
    }
}

/// SIGTERM under load (issue 10): the server exits 0 within a bounded time; every
/// push and delete it acknowledged holds after a restart; every other request got
/// UNAVAILABLE or found the connection closed, never another error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_zero_and_keeps_what_it_acknowledged() {
    use ferromq::client::ClientError;
    use ferromq::proto::ErrorCode;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let client = Client::connect(server.addr.as_str()).await.unwrap();
    // Consumers may start before the first push: the queue exists from the start.
    client
        .create_queue("term", ferromq::proto::QueueSettings::default())
        .await
        .unwrap();
    let pushed: Arc<Mutex<Vec<u64>>> = Arc::default();
    let deleted: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let bad: Arc<Mutex<Vec<String>>> = Arc::default();
    // Only a stop-time error is expected: UNAVAILABLE, or the connection gone.
    let expected = |err: &ClientError| match err {
        ClientError::Server { code, .. } => *code == ErrorCode::Unavailable,
        ClientError::Closed | ClientError::Io(_) => true,
        ClientError::Protocol(_) => false,
    };
    let (enough_tx, enough_rx) = tokio::sync::oneshot::channel();
    let enough_tx = Arc::new(Mutex::new(Some(enough_tx)));
    let mut tasks = Vec::new();
    for p in 0..4u32 {
        let (client, pushed, bad, enough_tx) = (
            client.clone(),
            Arc::clone(&pushed),
            Arc::clone(&bad),
            Arc::clone(&enough_tx),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..5_000u32 {
                match client.push("term", vec![format!("p{p}-{i}").into()]).await {
                    Ok(ids) => {
                        let mut pushed = pushed.lock().unwrap();
                        pushed.extend(ids);
                        if pushed.len() >= 1_000 {
                            if let Some(tx) = enough_tx.lock().unwrap().take() {
                                let _ = tx.send(());
                            }
                        }
                    }
                    Err(err) => {
                        if !expected(&err) {
                            bad.lock().unwrap().push(err.to_string());
                        }
                        return;
                    }
                }
            }
        }));
    }
    for _ in 0..2 {
        let (client, deleted, bad) = (client.clone(), Arc::clone(&deleted), Arc::clone(&bad));
        tasks.push(tokio::spawn(async move {
            loop {
                let options = ReserveOptions {
                    n: 10,
                    timeout_ms: 60_000,
                    wait_ms: 100,
                    delete: false,
                    auto_timeout: false,
                };
                let got = match client.reserve("term", options).await {
                    Ok(got) => got,
                    Err(err) => {
                        if !expected(&err) {
                            bad.lock().unwrap().push(err.to_string());
                        }
                        return;
                    }
                };
                for m in got {
                    match client.delete("term", m.id, Some(m.reservation_id)).await {
                        Ok(_) => {
                            deleted.lock().unwrap().insert(m.id);
                        }
                        Err(err) => {
                            if !expected(&err) {
                                bad.lock().unwrap().push(err.to_string());
                            }
                            return;
                        }
                    }
                }
            }
        }));
    }
    enough_rx.await.expect("1000 acknowledged pushes");
    let started = std::time::Instant::now();
    let status = common::sigterm_and_wait(server, std::time::Duration::from_secs(10))
        .await
        .expect("SIGTERM stopped the server within 10 s");
    assert_eq!(status.code(), Some(0), "a clean exit");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "stopped in {:?}",
        started.elapsed()
    );
    for task in tasks {
        task.await.unwrap();
    }
    assert!(bad.lock().unwrap().is_empty(), "{:?}", bad.lock().unwrap());

    let server = start(dir.path());
    let client = Client::connect(server.addr.as_str()).await.unwrap();
    let mut found = HashSet::new();
    loop {
        let options = ReserveOptions {
            n: 100,
            delete: true,
            ..Default::default()
        };
        let got = client.reserve("term", options).await.unwrap();
        if got.is_empty() {
            break;
        }
        found.extend(got.iter().map(|m| m.id));
    }
    let pushed = pushed.lock().unwrap().clone();
    let deleted = deleted.lock().unwrap().clone();
    // What is not available now was reserved before the stop (its 60 s lease
    // survives the restart): it must still be there.
    let mut lost = Vec::new();
    for id in pushed
        .iter()
        .filter(|id| !deleted.contains(id) && !found.contains(id))
    {
        if client.get("term", *id).await.is_err() {
            lost.push(*id);
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged pushes lost: {lost:?}",
        lost.len()
    );
    let back: Vec<&u64> = deleted.iter().filter(|id| found.contains(id)).collect();
    assert!(
        back.is_empty(),
        "{} acknowledged deletes came back",
        back.len()
    );
}

/// What a crash loop's clients saw acknowledged, and what was in doubt when the
/// server died.
#[derive(Default, Clone)]
struct Ledger {
    /// Queue "work" (reserve, then delete or release by id).
    work_pushed: HashSet<u64>,
    work_deleted: HashSet<u64>,
    /// Deletes sent whose answer never came: either outcome is right.
    work_deleting: HashSet<u64>,
    /// Queue "once" (reserve --delete: the ids of a lost answer are unknown).
    once_pushed: HashSet<u64>,
    once_deleted: HashSet<u64>,
    /// Reserve --delete calls whose answer never came (each took up to 5).
    once_lost_calls: usize,
}

/// kill -9 in a loop under pushes, reserve + delete, reserve + release and
/// reserve --delete (issue 10): after every restart no acknowledged push is
/// missing and no acknowledged delete came back. `FERROMQ_CRASH_ITERATIONS=300
/// cargo test --release --test crash kill_9_loop` runs it longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_loop_under_mixed_load_loses_and_resurrects_nothing() {
    let iterations: usize = std::env::var("FERROMQ_CRASH_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let mut checked = 0;
    for iteration in 0..iterations {
        let mut server = start(dir.path());
        let client = Client::connect(server.addr.as_str()).await.unwrap();
        let snapshot = ledger.lock().unwrap().clone();
        checked += check_ledger(&client, &snapshot).await;
        drop(client);

        let client = Client::connect(server.addr.as_str()).await.unwrap();
        if iteration == 0 {
            for queue in ["work", "once"] {
                client
                    .create_queue(queue, ferromq::proto::QueueSettings::default())
                    .await
                    .unwrap();
            }
        }
        let (enough_tx, enough_rx) = tokio::sync::oneshot::channel();
        let enough_tx = Arc::new(Mutex::new(Some(enough_tx)));
        // A different amount of work before each kill: `goal` more push calls.
        let goal = {
            let ledger = ledger.lock().unwrap();
            ledger.work_pushed.len() + ledger.once_pushed.len() + 5 * (40 + (iteration * 37) % 160)
        };
        let mut tasks = Vec::new();
        for (p, queue) in [(0, "work"), (1, "work"), (2, "once")] {
            let (client, ledger, enough_tx) =
                (client.clone(), Arc::clone(&ledger), Arc::clone(&enough_tx));
            tasks.push(tokio::spawn(async move {
                for i in 0..100_000u32 {
                    let bodies = (0..5)
                        .map(|k| format!("{iteration}-{p}-{i}-{k}").into())
                        .collect();
                    let Ok(ids) = client.push(queue, bodies).await else {
                        return;
                    };
                    let mut ledger = ledger.lock().unwrap();
                    if queue == "work" {
                        ledger.work_pushed.extend(ids);
                    } else {
                        ledger.once_pushed.extend(ids);
                    }
                    if ledger.work_pushed.len() + ledger.once_pushed.len() >= goal {
                        if let Some(tx) = enough_tx.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                    }
                }
            }));
        }
        for releases in [false, true] {
            let (client, ledger) = (client.clone(), Arc::clone(&ledger));
            tasks.push(tokio::spawn(async move {
                let mut turn = 0_u64;
                loop {
                    let options = ReserveOptions {
                        n: 5,
                        timeout_ms: 60_000,
                        wait_ms: 50,
                        delete: false,
                        auto_timeout: false,
                    };
                    let Ok(got) = client.reserve("work", options).await else {
                        return;
                    };
                    for m in got {
                        turn += 1;
                        if releases && turn % 2 == 0 {
                            if client
                                .release("work", m.id, m.reservation_id, 0)
                                .await
                                .is_err()
                            {
                                return;
                            }
                            continue;
                        }
                        ledger.lock().unwrap().work_deleting.insert(m.id);
                        if client
                            .delete("work", m.id, Some(m.reservation_id))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        let mut ledger = ledger.lock().unwrap();
                        ledger.work_deleting.remove(&m.id);
                        ledger.work_deleted.insert(m.id);
                    }
                }
            }));
        }
        {
            let (client, ledger) = (client.clone(), Arc::clone(&ledger));
            tasks.push(tokio::spawn(async move {
                loop {
                    let options = ReserveOptions {
                        n: 5,
                        timeout_ms: 0,
                        wait_ms: 50,
                        delete: true,
                        auto_timeout: false,
                    };
                    ledger.lock().unwrap().once_lost_calls += 1;
                    let Ok(got) = client.reserve("once", options).await else {
                        return;
                    };
                    let mut ledger = ledger.lock().unwrap();
                    ledger.once_lost_calls -= 1;
                    ledger.once_deleted.extend(got.iter().map(|m| m.id));
                }
            }));
        }
        enough_rx.await.expect("the goal of acknowledged pushes");
        server.child.kill().expect("SIGKILL");
        server.child.wait().unwrap();
        drop(server);
        for task in tasks {
            task.await.unwrap();
        }
    }
    let server = start(dir.path());
    let client = Client::connect(server.addr.as_str()).await.unwrap();
    let ledger = ledger.lock().unwrap().clone();
    checked += check_ledger(&client, &ledger).await;
    eprintln!(
        "{iterations} kill -9 iterations: {checked} acknowledged operations checked \
         ({} pushes, {} deletes acknowledged)",
        ledger.work_pushed.len() + ledger.once_pushed.len(),
        ledger.work_deleted.len() + ledger.once_deleted.len()
    );
    assert!(
        checked >= iterations * 200,
        "{checked} acknowledged operations checked"
    );
    assert!(!ledger.work_deleted.is_empty() && !ledger.once_deleted.is_empty());
}

/// Checks the server against the ledger; returns how many acknowledged
/// operations it checked.
async fn check_ledger(client: &Client, ledger: &Ledger) -> usize {
    use ferromq::proto::ErrorCode;
    let exists = |queue: &'static str, id: u64| async move {
        match client.get(queue, id).await {
            Ok(_) => true,
            Err(err) if err.code() == Some(ErrorCode::MessageNotFound) => false,
            Err(err) if err.code() == Some(ErrorCode::QueueNotFound) => false,
            Err(err) => panic!("get {queue}/{id}: {err}"),
        }
    };
    let mut checked = 0;
    for &id in &ledger.work_pushed {
        if ledger.work_deleted.contains(&id) {
            assert!(
                !exists("work", id).await,
                "acknowledged delete of {id} came back"
            );
        } else if !ledger.work_deleting.contains(&id) {
            assert!(
                exists("work", id).await,
                "acknowledged push {id} is missing"
            );
        }
        checked += 1;
    }
    let mut present = 0;
    for &id in &ledger.once_pushed {
        let there = exists("once", id).await;
        if ledger.once_deleted.contains(&id) {
            assert!(!there, "acknowledged reserve --delete of {id} came back");
        }
        present += usize::from(there);
        checked += 1;
    }
    // (A reserve --delete may also take messages whose push answer was lost.)
    let undeleted = ledger
        .once_pushed
        .iter()
        .filter(|id| !ledger.once_deleted.contains(id))
        .count();
    assert!(
        present + 5 * ledger.once_lost_calls >= undeleted,
        "queue once: {present} present, {undeleted} acknowledged and not deleted, \
         {} answers lost",
        ledger.once_lost_calls
    );
    checked
}

/// A push delivery cut by SIGKILL (its subscriber never answered) is delivered
/// again by the restarted server, then deleted: never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_delivery_cut_by_sigkill_is_delivered_again_after_the_restart() {
    use hook::{http_call, Hook, Reply};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let mut hook = Hook::start().await;
    hook.script("s", &[Reply::Hang, Reply::Status(200)]);
    let args = [
        "--http-listen",
        "127.0.0.1:0",
        "--auth",
        "none",
        "--push-allow",
        "127.0.0.1",
        "--push-timeout",
        "1s",
    ];
    let log = || ("warn", std::process::Stdio::inherit());
    let mut server = common::start_with(dir.path(), "127.0.0.1:0", &args, log());
    let http = server.http.clone().expect("http address");
    let queue = format!(
        r#"{{"queue": {{"type": "multicast", "push": {{"subscribers": [{{"name": "s", "url": "{}"}}]}}}}}}"#,
        hook.url("s")
    );
    let (status, body) = http_call(&http, "PUT", "/3/projects/p/queues/pq", &queue).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_call(
        &http,
        "POST",
        "/3/projects/p/queues/pq/messages",
        r#"{"messages": [{"body": "survive"}]}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let first = hook.next(Duration::from_secs(10)).await;
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    drop(server);

    let server = common::start_with(dir.path(), "127.0.0.1:0", &args, log());
    let http = server.http.clone().expect("http address");
    // The lease of the cut delivery (1 s answer timeout + 5 s) runs out, then the
    // message goes out again.
    let again = hook.next(Duration::from_secs(20)).await;
    assert_eq!(&again.body[..], b"survive");
    assert_eq!(
        again.header("iron-message-id"),
        first.header("iron-message-id")
    );
    let id = first.header("iron-message-id").to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let path = format!("/3/projects/p/queues/pq/messages/{id}");
        if http_call(&http, "GET", &path, "").await.0 == 404 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 14's atomic hand-off under kill -9 in a loop: consumers reserve
/// messages of queue "a" and hand each off to two follow-ups in "b" and one in
/// "c"; the server is killed at a different moment each time. After every
/// restart, for every message: either it is still in "a" and none of its
/// follow-ups ever appeared, or all three appeared (once each) and it is gone
/// from "a"; never both, never neither, never part. Every acknowledged hand-off
/// is the second case. `FERROMQ_CRASH_ITERATIONS=100 cargo test --release
/// --test crash hand_off` runs it longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_loop_under_hand_offs_leaves_the_old_message_or_all_its_follow_ups() {
    use std::collections::{BTreeMap, HashMap};

    use ferromq::proto::{ErrorCode, FollowUps, PushMessage};

    let iterations: usize = std::env::var("FERROMQ_CRASH_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    // Each iteration hands off at most 99 more than the last acknowledged, plus
    // the few in flight at the kill: enough messages that "a" never runs dry.
    let messages = 100 * (iterations * 3 / 2 + 10);
    let follow_ups = |n: &str| {
        let message = |body: String| PushMessage {
            body: body.into(),
            ..PushMessage::default()
        };
        vec![
            FollowUps {
                queue: "b".into(),
                messages: vec![message(format!("{n}/b0")), message(format!("{n}/b1"))],
            },
            FollowUps {
                queue: "c".into(),
                messages: vec![message(format!("{n}/c0"))],
            },
        ]
    };
    let dir = tempfile::tempdir().unwrap();
    // Message n's id in "a"; follow-ups seen (drained), by n; acknowledged
    // hand-offs.
    let mut ids: BTreeMap<u64, String> = BTreeMap::new();
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut committed_total = 0;
    for iteration in 0..=iterations {
        let mut server = start(dir.path());
        let client = Client::connect(server.addr.as_str()).await.unwrap();
        if iteration == 0 {
            for queue in ["a", "b", "c"] {
                client
                    .create_queue(queue, ferromq::proto::QueueSettings::default())
                    .await
                    .unwrap();
            }
            for chunk in 0..messages / 100 {
                let names: Vec<String> =
                    (0..100).map(|k| format!("m{}", chunk * 100 + k)).collect();
                let bodies = names.iter().map(|n| Bytes::from(n.clone())).collect();
                let pushed = client.push("a", bodies).await.unwrap();
                ids.extend(pushed.into_iter().zip(names));
            }
        }
        // The check: drain what the follow-up queues hold, then every message
        // is in "a" XOR has all its follow-ups, each seen once.
        for queue in ["b", "c"] {
            for body in common::drain(&client, queue).await.into_values() {
                let body = String::from_utf8(body.to_vec()).unwrap();
                let (n, _) = body.split_once('/').unwrap();
                let list = seen.entry(n.to_owned()).or_default();
                assert!(!list.contains(&body), "follow-up {body} appeared twice");
                list.push(body);
            }
        }
        let acked_now = acked.lock().unwrap().clone();
        let mut committed = 0;
        for (&id, n) in &ids {
            let in_a = match client.get("a", id).await {
                Ok(_) => true,
                Err(err) if err.code() == Some(ErrorCode::MessageNotFound) => false,
                Err(err) => panic!("get a/{id}: {err}"),
            };
            let follow = seen.get(n).map_or(0, Vec::len);
            assert!(
                (in_a && follow == 0) || (!in_a && follow == 3),
                "after kill -9 number {iteration}: {n} (id {id}) is {} \"a\" with {follow} of 3 \
                 follow-ups",
                if in_a { "in" } else { "not in" }
            );
            assert!(
                !(in_a && acked_now.contains(n)),
                "acknowledged hand-off of {n} came back"
            );
            committed += usize::from(!in_a);
        }
        committed_total = committed;
        if iteration == iterations {
            break;
        }
        // Hand-offs until a different goal each time, then the kill.
        let goal = acked_now.len() + 20 + (iteration * 37) % 80;
        let (enough_tx, enough_rx) = tokio::sync::oneshot::channel();
        let enough_tx = Arc::new(Mutex::new(Some(enough_tx)));
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (client, acked, enough_tx) =
                (client.clone(), Arc::clone(&acked), Arc::clone(&enough_tx));
            tasks.push(tokio::spawn(async move {
                loop {
                    let options = ReserveOptions {
                        n: 3,
                        timeout_ms: 30_000,
                        wait_ms: 50,
                        delete: false,
                        auto_timeout: false,
                    };
                    let Ok(got) = client.reserve("a", options).await else {
                        return;
                    };
                    for m in got {
                        let n = String::from_utf8(m.body.to_vec()).unwrap();
                        match client
                            .hand_off("a", m.id, m.reservation_id, follow_ups(&n))
                            .await
                        {
                            Ok(_) => {}
                            Err(err) if err.code().is_some() => {
                                panic!("hand-off of {n} refused: {err}")
                            }
                            Err(_) => return, // the server is gone
                        }
                        let mut acked = acked.lock().unwrap();
                        acked.insert(n);
                        if acked.len() >= goal {
                            if let Some(tx) = enough_tx.lock().unwrap().take() {
                                let _ = tx.send(());
                            }
                        }
                    }
                }
            }));
        }
        enough_rx.await.expect("the goal of acknowledged hand-offs");
        server.child.kill().expect("SIGKILL");
        server.child.wait().unwrap();
        drop(server);
        for task in tasks {
            task.await.unwrap();
        }
    }
    let acked = acked.lock().unwrap().len();
    eprintln!(
        "{iterations} kill -9 iterations: {committed_total} hand-offs committed, {acked} \
         acknowledged, {} messages checked after each",
        ids.len()
    );
    assert!(acked >= iterations * 20);
}
