//! A full disk, on the real binary: the data directory on a small tmpfs made by the
//! test, filled by pushes. Every push past `--min-free-disk` gets a clear
//! RESOURCE_EXHAUSTED at once (never a hang); reads, reserves and deletes go on;
//! when space comes back pushes are taken again without a restart; SIGTERM still
//! stops the server; and after a restart nothing acknowledged is lost and no
//! acknowledged delete came back.
//!
//! Mounting a tmpfs needs root (CI runs as root). Elsewhere the test says it cannot
//! run and passes without checking anything.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferromq::client::{ClientError, ReserveOptions};
use ferromq::proto::ErrorCode;
use ferromq::Client;

const MIB: u64 = 1024 * 1024;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Tmpfs {
            path: dir.path().to_path_buf(),
            _dir: dir,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn is_exhausted(result: &Result<Vec<u64>, ClientError>) -> bool {
    matches!(result, Err(err) if err.code() == Some(ErrorCode::ResourceExhausted))
}

/// Writes a file of `bytes` zeros (what the test later removes to free space).
fn ballast(path: &Path, bytes: u64) {
    let file = std::fs::File::create(path).expect("ballast");
    let chunk = vec![0u8; usize::try_from(MIB).unwrap()];
    let mut writer = std::io::BufWriter::new(file);
    for _ in 0..bytes / MIB {
        std::io::Write::write_all(&mut writer, &chunk).expect("write ballast");
    }
    std::io::Write::flush(&mut writer).expect("flush ballast");
}

/// A server with `--min-free-disk min_free` on a new tmpfs of `size_mib`, and a
/// client; `None` (said on stderr) where no tmpfs can be mounted.
async fn start_on_tmpfs(
    size_mib: u64,
    min_free: &str,
) -> Option<(Tmpfs, PathBuf, common::Process, Client)> {
    let Some(fs) = Tmpfs::mount(size_mib) else {
        eprintln!("disk_full: cannot mount a tmpfs here (needs root); not run");
        return None;
    };
    let data = fs.path.join("data");
    let server = common::start_with(
        &data,
        "127.0.0.1:0",
        &["--min-free-disk", min_free],
        ("warn", Stdio::inherit()),
    );
    let client = Client::connect(server.addr.as_str()).await.unwrap();
    Some((fs, data, server, client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_pushes_serves_the_rest_and_recovers_when_space_returns() {
    let Some((fs, data, server, client)) = start_on_tmpfs(96, "16MiB").await else {
        return;
    };
    client.push("jobs", vec!["first".into()]).await.unwrap();
    // Leave about 24 MiB free: 8 MiB above the reserve.
    let free = fs2::available_space(&fs.path).unwrap();
    let ballast_path = fs.path.join("ballast");
    ballast(&ballast_path, free.saturating_sub(24 * MIB));

    // Push 64 KiB batches until the reserve is reached. Bounded: 24 MiB of room
    // is ~400 batches; 4,000 would be ten times that.
    let mut acked: BTreeMap<u64, Bytes> = BTreeMap::new();
    let started = Instant::now();
    let mut refused = None;
    for i in 0..4_000u32 {
        let bodies: Vec<Bytes> = (0..64)
            .map(|k| Bytes::from(format!("{i}-{k}-{}", "x".repeat(1000))))
            .collect();
        let result = client.push("jobs", bodies.clone()).await;
        if is_exhausted(&result) {
            refused = Some(result.unwrap_err().to_string());
            break;
        }
        acked.extend(
            result
                .expect("a push either succeeds or is refused")
                .into_iter()
                .zip(bodies),
        );
    }
    let refused = refused.expect("the disk filled up within 4,000 pushes of 64 KiB");
    assert!(refused.contains("--min-free-disk"), "{refused}");
    eprintln!(
        "disk_full: {} messages acknowledged in {:?} before the refusal: {refused}",
        acked.len(),
        started.elapsed()
    );
    assert!(!acked.is_empty());

    // Every push and new queue is refused at once; reads, reserves and deletes go on.
    for _ in 0..20 {
        let at = Instant::now();
        assert!(is_exhausted(
            &client.push("jobs", vec!["more".into()]).await
        ));
        assert!(at.elapsed() < Duration::from_secs(1), "refused quickly");
    }
    let created = client
        .create_queue("new", ferromq::proto::QueueSettings::default())
        .await;
    assert_eq!(
        created.err().and_then(|e| e.code()),
        Some(ErrorCode::ResourceExhausted)
    );
    assert_eq!(client.peek("jobs", 3).await.unwrap().len(), 3);
    let info = client.info("jobs").await.unwrap();
    assert_eq!(info.size, u64::try_from(acked.len()).unwrap() + 1);
    let mut deleted = HashSet::new();
    for _ in 0..10 {
        let got = client
            .reserve(
                "jobs",
                ReserveOptions {
                    n: 50,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        for m in got {
            client
                .delete("jobs", m.id, Some(m.reservation_id))
                .await
                .unwrap();
            deleted.insert(m.id);
        }
    }
    assert_eq!(deleted.len(), 500, "reserve and delete on a full disk");

    // Space comes back: pushes are taken again within a few checks, no restart.
    std::fs::remove_file(&ballast_path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ids = loop {
        match client.push("jobs", vec!["after".into()]).await {
            Ok(ids) => break ids,
            Err(err) if err.code() == Some(ErrorCode::ResourceExhausted) => {
                assert!(
                    Instant::now() < deadline,
                    "pushes refused 10 s after space returned"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("{err}"),
        }
    };
    acked.insert(ids[0], Bytes::from("after"));

    // SIGTERM stops it, cleanly and in bounded time.
    let status = common::sigterm_and_wait(server, Duration::from_secs(10))
        .await
        .expect("SIGTERM stopped the server within 10 s");
    assert!(status.success(), "{status}");

    // After a restart: every acknowledged push that was not deleted, and no other.
    let server = common::start(&data);
    let client = Client::connect(server.addr.as_str()).await.unwrap();
    let found = common::drain(&client, "jobs").await;
    for id in &deleted {
        assert!(
            !found.contains_key(id),
            "acknowledged delete of {id} came back"
        );
    }
    let lost: Vec<u64> = acked
        .iter()
        .filter(|(id, body)| !deleted.contains(id) && found.get(id) != Some(body))
        .map(|(id, _)| *id)
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}

/// Without the reserve (`--min-free-disk 0`) sled itself meets `ENOSPC`, and
/// nothing hangs. Where the write that fails is a blob file (a large page), the
/// request gets RESOURCE_EXHAUSTED and the server goes on answering, and stops on
/// SIGTERM; where it is sled's log, the flush fails and the server aborts at once,
/// as on any failed flush (README, Durability), rather than acknowledge anything it
/// could not write: the requests in flight find the connection closed. Which of the
/// two comes first depends on the timing. (Before vendor/sled/PATCHES.md 6 a failed
/// blob write left its log buffer claimed for ever: every later flush, request and
/// the shutdown hung. Restarting on a full disk fails with a clear "the disk is
/// full" until space is freed: sled must write to open.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_meeting_a_full_disk_never_hangs() {
    let Some((_fs, _data, server, client)) = start_on_tmpfs(32, "0").await else {
        return;
    };
    let answer = Duration::from_secs(10);
    let gone = |err: &ClientError| matches!(err, ClientError::Closed | ClientError::Io(_));
    let mut acked = 0usize;
    let mut outcome = None;
    for i in 0..2_000u32 {
        let bodies: Vec<Bytes> = (0..64)
            .map(|k| Bytes::from(format!("{i}-{k}-{}", "x".repeat(1000))))
            .collect();
        let result = tokio::time::timeout(answer, client.push("jobs", bodies))
            .await
            .expect("a push on a full disk is answered");
        match result {
            Ok(ids) => acked += ids.len(),
            Err(err) => {
                assert!(
                    gone(&err) || err.code() == Some(ErrorCode::ResourceExhausted),
                    "{err}"
                );
                outcome = Some(err);
                break;
            }
        }
    }
    let first = outcome.expect("32 MiB filled within 2,000 pushes of 64 KiB");
    assert!(acked > 0);
    let mut aborted = gone(&first);
    if !aborted {
        assert!(first.to_string().contains("disk is full"), "{first}");
        // Everything after it is answered, one way or the other (or the server
        // aborts on a failed flush meanwhile).
        for _ in 0..5 {
            let pushed = tokio::time::timeout(answer, client.push("jobs", vec!["y".into()]))
                .await
                .expect("answered");
            let options = ReserveOptions {
                n: 2,
                delete: true,
                ..Default::default()
            };
            let reserved = tokio::time::timeout(answer, client.reserve("jobs", options))
                .await
                .expect("answered");
            let info = tokio::time::timeout(answer, client.info("jobs"))
                .await
                .expect("answered");
            let errors = [pushed.err(), reserved.err(), info.err()];
            if errors.iter().flatten().any(gone) {
                aborted = true;
                break;
            }
            if let Some(err) = &errors[0] {
                assert_eq!(err.code(), Some(ErrorCode::ResourceExhausted), "{err}");
            }
        }
    }
    if aborted {
        let status = common::wait_for_exit(server, Duration::from_secs(10))
            .await
            .expect("a server whose flush failed exits at once");
        assert!(!status.success(), "{status}");
    } else {
        let stopped = common::sigterm_and_wait(server, Duration::from_secs(10)).await;
        assert!(
            stopped.is_some(),
            "SIGTERM stopped the server on a full disk within 10 s"
        );
    }
}
