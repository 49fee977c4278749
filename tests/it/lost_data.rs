//! A data directory that lost acknowledged data is refused at start, naming the
//! path and what is missing, and served again only when the operator asks to
//! recover, with ids that never repeat (`src/storage/guard.rs`).

use std::sync::Arc;

use ferromq::queue::clock::SystemClock;
use ferromq::storage::FsyncMode;
use ferromq::{Config, Server};
use tokio::net::TcpListener;

use crate::support::TestServer;

async fn start(dir: &std::path::Path, recover: bool) -> Result<Server, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let config = Config {
        data_dir: dir.to_path_buf(),
        fsync: FsyncMode::Always,
        recover_lost_data: recover,
        ..Config::default()
    };
    Server::start_with_clock(listener, config, Arc::new(SystemClock::new()))
        .await
        .map_err(|err| err.to_string())
}

/// A server holding acknowledged messages, stopped; returns its directory and the
/// highest id it handed out.
async fn stopped_with_messages() -> (tempfile::TempDir, u64) {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut last = 0;
    for round in 0..20 {
        let bodies = (0..100).map(|i| format!("m{round}-{i}").into()).collect();
        last = *client.push("kept", bodies).await.unwrap().last().unwrap();
    }
    drop(client);
    let TestServer { server, dir, .. } = server;
    server.shutdown().await;
    (dir, last)
}

#[tokio::test]
async fn a_deleted_db_file_is_refused_and_recovery_never_repeats_an_id() {
    let (dir, last) = stopped_with_messages().await;
    std::fs::remove_file(dir.path().join("db")).expect("sled's db file");
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("snap.")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    let refused = start(dir.path(), false).await.err().expect("refused");
    assert!(
        refused.contains(&dir.path().display().to_string()),
        "{refused}"
    );
    assert!(
        refused.contains("acknowledged data is missing"),
        "{refused}"
    );
    assert!(refused.contains("--recover-lost-data"), "{refused}");
    // Refused again: nothing was rewritten by the refusal.
    assert!(start(dir.path(), false).await.is_err());

    let server = start(dir.path(), true).await.expect("recovery starts");
    let client = ferromq::Client::connect(server.local_addr()).await.unwrap();
    let fresh = client.push("after", vec!["new".into()]).await.unwrap()[0];
    assert!(
        fresh > last,
        "id {fresh} was already handed out (last {last})"
    );
    drop(client);
    server.shutdown().await;
    // After the recovery the directory is consistent again: a plain start works.
    let server = start(dir.path(), false).await.expect("a normal start");
    server.shutdown().await;
}

#[tokio::test]
async fn a_truncated_db_file_is_refused() {
    let (dir, _) = stopped_with_messages().await;
    let db = dir.path().join("db");
    let len = std::fs::metadata(&db).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    let refused = start(dir.path(), false).await.err().expect("refused");
    assert!(
        refused.contains(&dir.path().display().to_string()),
        "{refused}"
    );
}

#[tokio::test]
async fn an_intact_directory_restarts_cleanly_many_times() {
    let (dir, _) = stopped_with_messages().await;
    for _ in 0..3 {
        let server = start(dir.path(), false).await.expect("restart");
        let client = ferromq::Client::connect(server.local_addr()).await.unwrap();
        assert_eq!(client.info("kept").await.unwrap().size, 2000);
        client.push("kept2", vec!["x".into()]).await.unwrap();
        drop(client);
        server.shutdown().await;
    }
}

/// A data directory of a newer format is refused, naming both versions, and left
/// as it was.
#[tokio::test]
async fn a_directory_of_a_newer_format_is_refused_and_left_alone() {
    let (dir, _) = stopped_with_messages().await;
    {
        let db = sled::open(dir.path()).unwrap();
        assert_eq!(
            db.get(b"format_version").unwrap().as_deref(),
            Some(&ferromq::storage::FORMAT_VERSION.to_be_bytes()[..]),
            "a directory records its format"
        );
        db.insert(b"format_version", &99u64.to_be_bytes()[..])
            .unwrap();
        db.flush().unwrap();
    }
    let refused = start(dir.path(), false).await.err().expect("refused");
    assert!(refused.contains("format 99"), "{refused}");
    assert!(
        refused.contains(&format!("up to {}", ferromq::storage::FORMAT_VERSION)),
        "{refused}"
    );
    let db = sled::open(dir.path()).unwrap();
    assert_eq!(
        db.get(b"format_version").unwrap().as_deref(),
        Some(&99u64.to_be_bytes()[..]),
        "not rewritten"
    );
}
