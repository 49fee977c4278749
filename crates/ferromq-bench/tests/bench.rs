//! `ferromq-bench` against a real server on an ephemeral port: the harness pushes,
//! consumes and counts what it claims, writes its plot and cleans up. Numbers are
//! never asserted.

use clap::Parser;
use ferromq::storage::FsyncMode;
use ferromq::{Client, Config, Server};
use ferromq_bench::{self as bench, BenchArgs};

/// A server in this process on a fresh data directory.
struct TestServer {
    server: Server,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            fsync: FsyncMode::Always,
            ..Config::default()
        };
        let server = Server::start(listener, config).await.expect("server start");
        TestServer { server, _dir: dir }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    async fn client(&self) -> Client {
        Client::connect(self.addr()).await.expect("connect")
    }
}

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: BenchArgs,
}

fn args(server: &TestServer, extra: &[&str]) -> BenchArgs {
    let addr = server.addr().to_string();
    let mut argv = vec![
        "ferromq-bench",
        "--addr",
        &addr,
        "--quiet",
        "--max-time",
        "60s",
    ];
    argv.extend_from_slice(extra);
    Wrapper::parse_from(argv).args
}

#[tokio::test]
async fn a_mixed_run_counts_every_message_and_draws_its_plot() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("run.svg");
    let pid = std::process::id().to_string();
    let mut run = args(
        &server,
        &[
            "--messages",
            "2000",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--depth",
            "4",
        ],
    );
    run.plot = Some(plot.clone());
    run.server_pid = Some(pid.parse().unwrap());
    run.queue_prefix = Some("smoke".into());
    let report = bench::run(run).await.unwrap();
    assert_eq!((report.pushed, report.consumed), (2000, 2000));
    assert_eq!(report.e2e.count, 2000);
    assert_eq!(report.push_ack.count, 2000);
    assert!(report.throughput > 0.0);
    assert!(report.e2e.p50 <= report.e2e.p99 && report.e2e.p99 <= report.e2e.max);
    assert!(report
        .server
        .is_some_and(|s| s.cpu_s >= 0.0 && s.rss_mib > 0.0));
    let json = report.json();
    assert_eq!(json["consumed"], 2000);
    assert_eq!(json["target"], "ferromq");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{svg}"
    );
    // Both rate series are drawn and named in the legend.
    assert!(
        svg.contains("pushed/s") && svg.contains("consumed/s"),
        "{svg}"
    );
    assert!(svg.contains("seconds") && svg.contains("messages per second"));
    // The run removed its queue.
    let client = server.client().await;
    let list = client.list_queues("smoke", "", 100).await.unwrap();
    assert!(list.names.is_empty(), "{:?}", list.names);
}

#[tokio::test]
async fn push_and_drain_runs_move_exactly_the_requested_messages() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let report = bench::run(args(
        &server,
        &[
            "--workload",
            "push",
            "--messages",
            "500",
            "--batch",
            "7",
            "--queue-prefix",
            "pushed",
        ],
    ))
    .await
    .unwrap();
    assert_eq!((report.pushed, report.consumed), (500, 0));
    // A push run leaves its messages for inspection.
    assert_eq!(client.info("pushed-0").await.unwrap().size, 500);

    let report = bench::run(args(
        &server,
        &[
            "--workload",
            "drain",
            "--messages",
            "600",
            "--batch",
            "10",
            "--queues",
            "3",
            "--queue-prefix",
            "drained",
        ],
    ))
    .await
    .unwrap();
    assert_eq!(report.consumed, 600);
    // A drain has consumers only, whatever --producers says.
    assert!(
        report.summary().contains(", 0 producer(s), "),
        "{}",
        report.summary()
    );
    assert_eq!(report.json()["producers"], 0);
    let list = client.list_queues("drained", "", 100).await.unwrap();
    assert!(list.names.is_empty(), "{:?}", list.names);
}

/// `--finish hand-off` and `push-then-delete(-each)`: every message consumed is
/// finished with one follow-up in `QUEUE.next` (checked with `--keep-queues`,
/// which leaves them to count).
#[tokio::test]
async fn consumers_can_finish_each_message_with_a_follow_up() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for (finish, prefix) in [
        ("hand-off", "handed"),
        ("push-then-delete", "pushed-on"),
        ("push-then-delete-each", "each"),
    ] {
        let report = bench::run(args(
            &server,
            &[
                "--messages",
                "300",
                "--producers",
                "1",
                "--consumers",
                "2",
                "--depth",
                "4",
                "--finish",
                finish,
                "--keep-queues",
                "--queue-prefix",
                prefix,
            ],
        ))
        .await
        .unwrap();
        assert_eq!(report.consumed, 300, "{finish}");
        let queue = format!("{prefix}-0");
        assert_eq!(client.info(&queue).await.unwrap().size, 0, "{finish}");
        let next = client.info(&format!("{queue}.next")).await.unwrap();
        assert_eq!(next.size, 300, "{finish}: one follow-up per message");
    }
    let err = bench::run(args(
        &server,
        &["--target", "redis", "--finish", "hand-off"],
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("--finish"), "{err}");
}

#[derive(Parser)]
struct OverloadWrapper {
    #[command(flatten)]
    args: bench::overload::OverloadArgs,
}

/// The overload run against a server whose queue holds at most 50 messages: the
/// flood meets the limit, so some pushes are refused; every push offered is
/// accounted for once, and the consumers drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overload_run_accounts_for_every_push_it_offered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.queue_limits.max_messages_per_queue = 50;
    let server = Server::start(listener, config).await.unwrap();
    let addr = server.local_addr().to_string();
    let args = OverloadWrapper::parse_from([
        "ferromq-overload",
        "--addr",
        &addr,
        "--capacity",
        "500",
        "--factor",
        "10",
        "--duration",
        "1s",
        "--after",
        "200ms",
        "--producers",
        "4",
        "--consumers",
        "1",
        "--consumer-depth",
        "1",
        "--reserve-n",
        "1",
        "--json",
    ])
    .args;
    let report = bench::overload::run(args).await.unwrap();
    let r = report.json();
    let per_s = |k: &str| r[k].as_f64().unwrap();
    let flood = per_s("flood_s");
    let total = (per_s("goodput_per_s") + per_s("refused_per_s") + per_s("shed_per_s")) * flood
        + r["failed"].as_f64().unwrap();
    let offered = per_s("offered_per_s") * flood;
    // Only the pushes still unanswered when the flood ended (at most 4 x 64) are
    // not counted yet.
    assert!(total <= offered + 0.5 && offered - total <= 256.5, "{r}");
    assert!(
        per_s("refused_per_s") > 0.0,
        "{r}: the 50-message limit refused some"
    );
    assert!(per_s("consumed_per_s") > 0.0, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert!(per_s("probe_flood_p99_ms") > 0.0, "{r}");
    server.shutdown().await;
}
