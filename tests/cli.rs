//! The `ferromq` command line against the real server binary: human output,
//! `--json` output, stdin bodies, and error codes with a non-zero exit.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{cli, cli_with_env, start};
use serde_json::Value;

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn json_lines(output: &std::process::Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

#[test]
fn the_cli_drives_every_operation_and_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.addr.as_str();

    let out = stdout(&cli(addr, &["push", "jobs", "one", "two", "three"]));
    assert!(out.starts_with("pushed 3 message(s): "), "{out}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_ferromq"))
        .args(["push", "jobs", "-", "--json", "--addr", addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"four\nfive\n")
        .unwrap();
    let pushed = json_lines(&child.wait_with_output().unwrap());
    assert_eq!(pushed[0]["ids"].as_array().unwrap().len(), 2);

    let info = json_lines(&cli(addr, &["info", "jobs", "--json"]));
    assert_eq!(info[0]["size"], 5);
    assert_eq!(info[0]["settings"]["message_timeout_ms"], 60_000);

    let peeked = json_lines(&cli(addr, &["peek", "jobs", "--n", "2", "--json"]));
    assert_eq!(peeked.len(), 2);
    assert_eq!(peeked[0]["body"], "one");
    assert_eq!(peeked[0]["state"], "AVAILABLE");

    let reserved = json_lines(&cli(
        addr,
        &["reserve", "jobs", "--n", "2", "--timeout", "30s", "--json"],
    ));
    assert_eq!(reserved.len(), 2);
    assert_eq!(
        (reserved[0]["body"].clone(), reserved[1]["body"].clone()),
        ("one".into(), "two".into())
    );
    let id = reserved[0]["id"].as_u64().unwrap().to_string();
    let rid = reserved[0]["reservation_id"].as_u64().unwrap().to_string();

    let touched = json_lines(&cli(
        addr,
        &["touch", "jobs", &id, "--reservation-id", &rid, "--json"],
    ));
    let new_rid = touched[0]["reservation_id"].as_u64().unwrap().to_string();
    assert_ne!(new_rid, rid);

    // The old reservation is refused, with the code on stderr and exit status 1.
    let stale = cli(addr, &["delete", "jobs", &id, "--reservation-id", &rid]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("RESERVATION_MISMATCH"));

    stdout(&cli(
        addr,
        &["release", "jobs", &id, "--reservation-id", &new_rid],
    ));
    let got = json_lines(&cli(addr, &["get", "jobs", &id, "--json"]));
    assert_eq!(
        (got[0]["state"].clone(), got[0]["reserved_count"].clone()),
        ("AVAILABLE".into(), 1.into())
    );

    let second = &reserved[1];
    let (id2, rid2) = (
        second["id"].to_string(),
        second["reservation_id"].to_string(),
    );
    let out = stdout(&cli(
        addr,
        &["delete", "jobs", &id2, "--reservation-id", &rid2],
    ));
    assert_eq!(out.trim(), format!("deleted {id2}"));
    // That delete finished a reservation: a processing time (lease advice).
    let text = stdout(&cli(addr, &["info", "jobs"]));
    assert!(
        text.contains("processing_p50=") && text.contains("(of 1 deletes)"),
        "{text}"
    );
    assert!(text.contains("timeout_auto=default"), "{text}");
    assert_eq!(
        json_lines(&cli(addr, &["info", "jobs", "--json"]))[0]["processing_samples"],
        1
    );

    let taken = json_lines(&cli(addr, &["reserve", "jobs", "--delete", "--json"]));
    assert_eq!(
        taken[0]["body"], "one",
        "the released message is at the front"
    );

    assert_eq!(stdout(&cli(addr, &["queues"])).trim(), "jobs");
    let cleared = json_lines(&cli(addr, &["clear", "jobs", "--json"]));
    assert_eq!(cleared[0]["count"], 3);
    // Lease advice: `--timeout auto` (the queue's default until 20 samples).
    stdout(&cli(addr, &["push", "jobs", "later"]));
    let auto = json_lines(&cli(
        addr,
        &["reserve", "jobs", "--timeout", "auto", "--json"],
    ));
    let lease =
        auto[0]["reserved_until_ms"].as_u64().unwrap() - auto[0]["pushed_at_ms"].as_u64().unwrap();
    assert!((59_000..=61_000).contains(&lease), "{lease}");
    stdout(&cli(addr, &["delete-queue", "jobs"]));

    let missing = cli(addr, &["reserve", "jobs"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("QUEUE_NOT_FOUND"));
    let bad = cli(addr, &["push", "bad name", "x"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("INVALID_ARGUMENT"));
    let usage = cli(addr, &["reserve", "jobs", "--timeout", "soon"]);
    assert_eq!(usage.status.code(), Some(2), "clap usage error");
}

/// Priorities (issue 14): `push --priority`, shown by peek and reserve (the text
/// line names a priority other than the default), and refused out of range.
#[test]
fn the_cli_pushes_with_a_priority_and_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.addr.as_str();
    stdout(&cli(addr, &["push", "jobs", "later", "--priority", "12"]));
    stdout(&cli(addr, &["push", "jobs", "normal"]));
    stdout(&cli(addr, &["push", "jobs", "now", "--priority", "0"]));
    let peeked = json_lines(&cli(addr, &["peek", "jobs", "--n", "3", "--json"]));
    let order: Vec<(Value, Value)> = peeked
        .iter()
        .map(|m| (m["body"].clone(), m["priority"].clone()))
        .collect();
    assert_eq!(
        order,
        [
            ("now".into(), 0.into()),
            ("normal".into(), 8.into()),
            ("later".into(), 12.into())
        ]
    );
    let text = stdout(&cli(addr, &["reserve", "jobs", "--n", "3"]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("state=RESERVED priority=0 "), "{text}");
    assert!(!lines[1].contains("priority="), "the default: {text}");
    assert!(lines[2].contains("priority=12") && lines[2].ends_with("body=later"));
    let usage = cli(addr, &["push", "jobs", "x", "--priority", "16"]);
    assert_eq!(usage.status.code(), Some(2), "clap usage error");
    assert!(String::from_utf8_lossy(&usage.stderr).contains("0..=15"));
}

/// Delivery history (issue 14): `--consumer` names the reserving consumer;
/// `get` prints each attempt under the message, and `--json` has them too.
#[test]
fn the_cli_names_its_consumer_and_get_shows_the_delivery_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.addr.as_str();
    stdout(&cli(addr, &["push", "jobs", "flaky"]));
    let got = json_lines(&cli(
        addr,
        &["reserve", "jobs", "--consumer", "cli-worker", "--json"],
    ));
    let id = got[0]["id"].as_u64().unwrap().to_string();
    let rid = got[0]["reservation_id"].as_u64().unwrap().to_string();
    stdout(&cli(
        addr,
        &["release", "jobs", &id, "--reservation-id", &rid],
    ));
    let text = stdout(&cli(addr, &["get", "jobs", &id]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[1].starts_with("  attempt 1: released consumer=cli-worker reserved_at=20"),
        "{text}"
    );
    let json = json_lines(&cli(addr, &["get", "jobs", &id, "--json"]));
    assert_eq!(json[0]["history"][0]["outcome"], "released");
    assert_eq!(json[0]["history"][0]["consumer"], "cli-worker");
    let bad = cli(addr, &["reserve", "jobs", "--consumer", "no spaces"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("INVALID_ARGUMENT"));
}

/// Fair dispatch (issue 14): `push --key`, `create-queue --key-max-in-flight`,
/// keys shown by reserve and counted by info.
#[test]
fn the_cli_pushes_keyed_messages_and_caps_keys() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.addr.as_str();
    stdout(&cli(
        addr,
        &["create-queue", "orders", "--key-max-in-flight", "1"],
    ));
    stdout(&cli(addr, &["push", "orders", "a1", "a2", "--key", "acme"]));
    stdout(&cli(addr, &["push", "orders", "g1", "--key", "globex"]));
    let text = stdout(&cli(addr, &["reserve", "orders", "--n", "10"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one per key: {text}");
    assert!(
        lines[0].contains(" key=acme ") && lines[0].ends_with("body=a1"),
        "{text}"
    );
    assert!(
        lines[1].contains(" key=globex ") && lines[1].ends_with("body=g1"),
        "{text}"
    );
    let info = stdout(&cli(addr, &["info", "orders"]));
    assert!(info.contains(" keys=2 key_max_in_flight=1"), "{info}");
    let bad = cli(addr, &["push", "orders", "x", "--key", ""]);
    assert_eq!(bad.status.code(), Some(0), "an empty key is no key");
}

/// Atomic hand-off (issue 14): `hand-off ID --reservation-id R --to
/// QUEUE=BODY ...` deletes the reserved message and pushes the follow-ups,
/// grouped by queue; a wrong reservation changes nothing.
#[test]
fn the_cli_hands_a_reserved_message_off_to_follow_ups() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.addr.as_str();
    stdout(&cli(addr, &["push", "orders", "order 7"]));
    let got = json_lines(&cli(addr, &["reserve", "orders", "--json"]));
    let id = got[0]["id"].as_u64().unwrap().to_string();
    let rid = got[0]["reservation_id"].as_u64().unwrap();
    let wrong = (rid + 1).to_string();
    let rid = rid.to_string();
    let refused = cli(
        addr,
        &[
            "hand-off",
            "orders",
            &id,
            "--reservation-id",
            &wrong,
            "--to",
            "invoices=x",
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("RESERVATION_MISMATCH"));
    let bad = cli(
        addr,
        &[
            "hand-off",
            "orders",
            &id,
            "--reservation-id",
            &rid,
            "--to",
            "no-equals-sign",
        ],
    );
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    let text = stdout(&cli(
        addr,
        &[
            "hand-off",
            "orders",
            &id,
            "--reservation-id",
            &rid,
            "--to",
            "invoices=invoice 7",
            "--to",
            "emails=email 7",
            "--to",
            "invoices=receipt 7",
        ],
    ));
    assert!(
        text.starts_with(&format!("handed off {id}; follow-ups invoices: ")),
        "{text}"
    );
    assert!(text.contains("; emails: "), "{text}");
    let invoices = stdout(&cli(addr, &["peek", "invoices", "--n", "10"]));
    let lines: Vec<&str> = invoices.lines().collect();
    assert_eq!(lines.len(), 2, "{invoices}");
    assert!(lines[0].ends_with("body=invoice 7") && lines[1].ends_with("body=receipt 7"));
    let gone = cli(addr, &["get", "orders", &id]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("MESSAGE_NOT_FOUND"));
    assert!(stdout(&cli(addr, &["peek", "emails"])).ends_with("body=email 7\n"));
}

fn info(addr: &str, queue: &str) -> Value {
    json_lines(&cli(addr, &["info", queue, "--json"])).remove(0)
}

/// Regressions: `update-queue --max-reservations N` alone did nothing (and exited
/// 0), and `update-queue --dead-letter X` reset max_reservations to 10.
#[test]
fn update_queue_changes_only_the_options_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.addr.as_str();
    stdout(&cli(
        addr,
        &[
            "create-queue",
            "jobs",
            "--dead-letter",
            "dead",
            "--max-reservations",
            "5",
        ],
    ));
    stdout(&cli(
        addr,
        &["update-queue", "jobs", "--max-reservations", "7"],
    ));
    let dead_letter = &info(addr, "jobs")["settings"]["dead_letter"];
    assert_eq!(
        (
            dead_letter["queue"].clone(),
            dead_letter["max_reservations"].clone()
        ),
        ("dead".into(), 7.into())
    );
    stdout(&cli(
        addr,
        &["update-queue", "jobs", "--dead-letter", "graveyard"],
    ));
    let dead_letter = &info(addr, "jobs")["settings"]["dead_letter"];
    assert_eq!(
        (
            dead_letter["queue"].clone(),
            dead_letter["max_reservations"].clone()
        ),
        ("graveyard".into(), 7.into()),
        "the limit is kept"
    );
    stdout(&cli(addr, &["update-queue", "jobs", "--timeout", "5s"]));
    assert_eq!(
        info(addr, "jobs")["settings"]["dead_letter"]["queue"],
        "graveyard"
    );
    let contradiction = cli(
        addr,
        &[
            "update-queue",
            "jobs",
            "--dead-letter",
            "",
            "--max-reservations",
            "3",
        ],
    );
    assert_eq!(contradiction.status.code(), Some(2), "a usage error");
    stdout(&cli(addr, &["update-queue", "jobs", "--dead-letter", ""]));
    assert!(
        info(addr, "jobs")["settings"]["dead_letter"].is_null(),
        "removed"
    );
    // A limit alone, with no dead-letter queue to apply it to, is refused.
    let alone = cli(addr, &["update-queue", "jobs", "--max-reservations", "3"]);
    assert_eq!(alone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&alone.stderr).contains("INVALID_ARGUMENT"));
    // A new dead-letter setting without a limit gets 10.
    stdout(&cli(
        addr,
        &["create-queue", "other", "--dead-letter", "dead"],
    ));
    assert_eq!(
        info(addr, "other")["settings"]["dead_letter"]["max_reservations"],
        10
    );
}

/// Regressions: `reserve --delete` printed `state=RESERVED`, and `get --json`
/// printed `reservation_id: 0`.
#[test]
fn messages_print_the_state_and_ids_they_really_have() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.addr.as_str();
    stdout(&cli(addr, &["push", "jobs", "one", "two", "three"]));
    let taken = stdout(&cli(addr, &["reserve", "jobs", "--delete"]));
    assert!(taken.contains("state=DELETED"), "{taken}");
    assert!(!taken.contains("reservation_id"), "{taken}");
    let taken = json_lines(&cli(addr, &["reserve", "jobs", "--delete", "--json"]));
    assert_eq!(taken[0]["state"], "DELETED");
    assert!(taken[0].get("reservation_id").is_none(), "{:?}", taken[0]);
    let id = taken[0]["id"].as_u64().unwrap() + 1;
    let got = json_lines(&cli(addr, &["get", "jobs", &id.to_string(), "--json"]));
    assert_eq!(got[0]["state"], "AVAILABLE");
    assert!(got[0].get("reservation_id").is_none(), "{:?}", got[0]);
    let reserved = json_lines(&cli(addr, &["reserve", "jobs", "--json"]));
    assert!(reserved[0]["reservation_id"].as_u64().unwrap() > 0);
}

/// Regression: `--addr` and `--listen` refused host names (`localhost:7600`).
#[test]
fn addresses_may_name_a_host() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start_listening(dir.path(), "localhost:0");
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let addr = format!("localhost:{port}");
    let out = stdout(&cli(&addr, &["push", "named", "hello"]));
    assert!(out.starts_with("pushed 1 message(s)"), "{out}");
    let bad = cli("no-such-host.invalid:7600", &["stats"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("error: connection"));
}

/// Regression: a second server on the same data directory printed a raw
/// `Os { code: 11, .. }`; it must say which directory is locked and why.
#[test]
fn a_second_server_on_the_same_data_directory_says_it_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _first = start(dir.path());
    let second = Command::new(env!("CARGO_BIN_EXE_ferromq"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "off")
        .output()
        .expect("run a second server");
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&dir.path().display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("another ferromq server"), "{stderr}");
    assert!(!stderr.contains("Os {"), "{stderr}");
}

/// `--workers` takes 1..=1024 runtime threads; a server started with two serves as
/// one does, and 0 is refused as a usage error before anything starts.
#[test]
fn serve_takes_a_worker_count_in_range() {
    let dir = tempfile::tempdir().unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_ferromq"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "clap usage error");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--workers"));
    assert!(!dir.path().join("db").exists(), "nothing was opened");

    let mut child = Command::new(env!("CARGO_BIN_EXE_ferromq"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line.trim().strip_prefix("ferromq listening on ").unwrap();
    let pushed = cli(addr, &["push", "w", "hello"]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(pushed.status.success(), "{pushed:?}");
    assert!(String::from_utf8_lossy(&pushed.stdout).starts_with("pushed 1 message(s)"));
}

/// Without a token the server listens on loopback only: any other address is
/// refused before anything is bound or opened, with `--auth none` too unless the
/// operator adds `--allow-remote-without-auth`.
#[test]
fn an_exposed_server_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    for extra in [&[][..], &["--auth", "none"][..]] {
        let refused = Command::new(env!("CARGO_BIN_EXE_ferromq"))
            .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(2), "{extra:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("without authentication"), "{stderr}");
        assert!(stderr.contains("--token"), "{stderr}");
        assert!(!dir.path().join("db").exists(), "nothing was opened");
    }
    let contradiction = Command::new(env!("CARGO_BIN_EXE_ferromq"))
        .args(["serve", "--auth", "none", "--token", "t", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(contradiction.status.code(), Some(2));
}

/// With `--token`, the CLI needs the token (flag or FERROMQ_TOKEN), a wrong one
/// is UNAUTHENTICATED, and the server's log never shows it, even at debug level.
#[test]
fn the_cli_authenticates_with_a_token_that_is_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let data = dir.path().join("data");
    let server = common::start_with(
        &data,
        "127.0.0.1:0",
        &["--token", "s3cr3t-admin", "--token", "s3cr3t-p1=p1"],
        ("debug", log_file.into()),
    );
    let addr = server.addr.as_str();
    let refused = common::cli(addr, &["push", "jobs", "x"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("UNAUTHENTICATED"),
        "{refused:?}"
    );
    let wrong = common::cli(addr, &["push", "jobs", "x", "--token", "guess"]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("UNAUTHENTICATED"));
    let pushed = common::cli(addr, &["push", "jobs", "x", "--token", "s3cr3t-admin"]);
    assert!(stdout(&pushed).starts_with("pushed 1 message(s)"));
    let env = [("FERROMQ_TOKEN", "s3cr3t-p1")];
    let denied = common::cli_with_env(addr, &["push", "jobs", "x"], &env);
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("PERMISSION_DENIED"),
        "{denied:?}"
    );
    let mine = common::cli_with_env(addr, &["push", "p1/jobs", "x"], &env);
    assert!(stdout(&mine).starts_with("pushed 1 message(s)"));
    drop(server);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("s3cr3t"), "{logged}");
}

/// A self-signed certificate for 127.0.0.1 (its own root), as PEM text: (cert, key).
fn certificate() -> (String, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("certificate");
    (cert.pem(), signing_key.serialize_pem())
}

/// Reads the server's log until a line contains `wanted` (or the log ends).
fn wait_for_log(log: &mut impl std::io::BufRead, wanted: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        if log.read_line(&mut line).expect("read the log") == 0 {
            panic!("the log ended before {wanted:?}");
        }
        if line.contains(wanted) {
            return line;
        }
    }
}

#[test]
fn tls_serves_the_cli_and_reloads_its_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (certs.path().join("tls.pem"), certs.path().join("tls.key"));
    let (old_ca, old_key) = certificate();
    std::fs::write(&cert_path, &old_ca).unwrap();
    std::fs::write(&key_path, &old_key).unwrap();
    let old_ca_path = certs.path().join("old-ca.pem");
    std::fs::write(&old_ca_path, &old_ca).unwrap();
    let mut server = common::start_with(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
        ("info", Stdio::piped()),
    );
    let mut log = std::io::BufReader::new(server.child.stderr.take().unwrap());
    let addr = server.addr.clone();
    let with_ca = |ca: &std::path::Path, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--ca-cert", ca.to_str().unwrap()]);
        cli(&addr, &all)
    };
    assert_eq!(
        stdout(&with_ca(&old_ca_path, &["push", "q", "one"])).trim(),
        "pushed 1 message(s): 2"
    );
    let plain = cli(&addr, &["info", "q"]);
    assert_eq!(
        plain.status.code(),
        Some(1),
        "a plaintext CLI is not served"
    );

    // New files, then SIGHUP: new connections get the new certificate.
    let (new_ca, new_key) = certificate();
    std::fs::write(&cert_path, &new_ca).unwrap();
    std::fs::write(&key_path, &new_key).unwrap();
    let new_ca_path = certs.path().join("new-ca.pem");
    std::fs::write(&new_ca_path, &new_ca).unwrap();
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for_log(&mut log, "TLS certificate and key reloaded");
    let info = stdout(&with_ca(&new_ca_path, &["info", "q"]));
    assert!(info.starts_with("q: size=1"), "{info}");
    let stale = with_ca(&old_ca_path, &["info", "q"]);
    assert_eq!(stale.status.code(), Some(1), "the old certificate is gone");

    // A broken key is refused at reload; the server goes on with what it had.
    std::fs::write(&key_path, "not a key").unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let failed = wait_for_log(&mut log, "TLS reload failed");
    assert!(failed.contains("tls.key"), "{failed}");
    let info = stdout(&with_ca(&new_ca_path, &["info", "q"]));
    assert!(info.starts_with("q: size=1"), "{info}");
}

#[path = "hook/mod.rs"]
mod hook;

/// Push queues from the command line: create with subscribers, push with a
/// header, read the statuses, acknowledge a 202, change the subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_configures_and_follows_push_queues() {
    use hook::{Hook, Reply};
    let dir = tempfile::tempdir().unwrap();
    let server = common::start_with(
        dir.path(),
        "127.0.0.1:0",
        &["--push-allow", "127.0.0.1"],
        ("warn", Stdio::inherit()),
    );
    let addr = server.addr.clone();
    let mut hook = Hook::start().await;
    hook.script("w", &[Reply::Status(202)]);
    let run = |args: Vec<String>| {
        let addr = addr.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = tokio::task::spawn_blocking({
                let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
                move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    cli(&addr, &args)
                }
            })
            .await
            .unwrap();
            out
        }
    };
    let created = json_lines(
        &run(vec![
            "create-queue".into(),
            "hooks".into(),
            "--type".into(),
            "unicast".into(),
            "--subscriber".into(),
            format!("w={}", hook.url("w")),
            "--subscriber-header".into(),
            "w:X-Team=ops".into(),
            "--retries".into(),
            "2".into(),
            "--retries-delay".into(),
            "5s".into(),
            "--json".into(),
        ])
        .await,
    );
    let push = &created[0]["settings"]["push"];
    assert_eq!(push["type"], "unicast");
    assert_eq!(
        (&push["retries"], &push["retries_delay_s"]),
        (&Value::from(2), &Value::from(5))
    );
    let pushed = json_lines(
        &run(vec![
            "push".into(),
            "hooks".into(),
            "hello".into(),
            "--header".into(),
            "X-Trace=7".into(),
            "--json".into(),
        ])
        .await,
    );
    let id = pushed[0]["ids"][0].as_u64().unwrap().to_string();
    let hit = hook.next(std::time::Duration::from_secs(10)).await;
    assert_eq!((hit.header("x-team"), hit.header("x-trace")), ("ops", "7"));
    let rid = hit.header("iron-reservation-id").to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = stdout(&run(vec!["push-statuses".into(), "hooks".into(), id.clone()]).await);
        if out.contains("reserved status_code=202") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reserved: {out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let out = stdout(
        &run(vec![
            "delete".into(),
            "hooks".into(),
            id.clone(),
            "--reservation-id".into(),
            rid,
            "--subscriber".into(),
            "w".into(),
        ])
        .await,
    );
    assert!(out.contains("deleted"), "{out}");
    let added = json_lines(
        &run(vec![
            "update-queue".into(),
            "hooks".into(),
            "--add-subscriber".into(),
            format!("v={}", hook.url("v")),
            "--json".into(),
        ])
        .await,
    );
    let names: Vec<&str> = added[0]["settings"]["push"]["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["w", "v"]);
    let refused = run(vec![
        "update-queue".into(),
        "hooks".into(),
        "--type".into(),
        "pull".into(),
    ])
    .await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot be changed"));
}

/// `ferromq health`: exit status 0 and "ready" from a server with tokens (no token
/// needed), 1 when the server cannot be reached.
#[test]
fn health_exits_zero_when_ready_and_one_when_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start_with(
        dir.path(),
        "127.0.0.1:0",
        &["--token", "secret"],
        ("warn", Stdio::inherit()),
    );
    let out = cli(&server.addr, &["health"]);
    assert_eq!(stdout(&out).trim(), "ready");
    let json = json_lines(&cli(&server.addr, &["health", "--json"]));
    assert_eq!(json[0]["ready"], true);
    drop(server);
    let gone = cli("127.0.0.1:9", &["health"]);
    assert_eq!(gone.status.code(), Some(1), "unreachable");
}

/// `ferromq version` prints the version without a server; `stats` shows the
/// server's.
#[test]
fn version_is_printed_by_the_program_and_by_stats() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferromq"))
        .arg("version")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(
        text.trim(),
        format!("ferromq {} (binary protocol 1)", env!("CARGO_PKG_VERSION"))
    );
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let stats = json_lines(&cli(&server.addr, &["stats", "--json"]));
    assert_eq!(stats[0]["version"], env!("CARGO_PKG_VERSION"));
}

/// `create-queue` on a queue that exists says how to change it.
#[test]
fn create_queue_on_an_existing_queue_says_how_to_update_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    stdout(&cli(&server.addr, &["create-queue", "taken"]));
    let again = cli(&server.addr, &["create-queue", "taken", "--timeout", "30s"]);
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("QUEUE_EXISTS"), "{stderr}");
    assert!(stderr.contains("ferromq update-queue taken"), "{stderr}");
}

/// Runs `ferromq ARGS...` with `env` (no FERROMQ_* variable from the test's own
/// environment).
fn ferromq(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferromq"));
    for (name, _) in std::env::vars() {
        if name.starts_with("FERROMQ_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run ferromq")
}

#[test]
fn the_shipped_example_configuration_is_the_generated_one_and_valid() {
    let example = stdout(&ferromq(&["config", "example"], &[]));
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/ferromq.toml"
    ))
    .unwrap();
    assert_eq!(
        example, shipped,
        "packaging/ferromq.toml is stale: ferromq config example > packaging/ferromq.toml"
    );
    // Every option is there, documented, and uncommenting the defaults gives a
    // file that `config check` accepts.
    let dir = tempfile::tempdir().unwrap();
    let defaults: String = example
        .lines()
        .filter(|line| !line.contains("not set by default"))
        .filter_map(|line| line.strip_prefix("# "))
        .filter(|line| {
            line.split_once(" = ")
                .is_some_and(|(key, _)| !key.contains(' '))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    for key in [
        "listen",
        "data-dir",
        "fsync",
        "token",
        "tls-cert",
        "push-allow",
        "max-queue-bytes",
    ] {
        assert!(example.contains(&format!("\n# {key} = ")), "{key} missing");
    }
    let path = dir.path().join("defaults.toml");
    std::fs::write(&path, &defaults).unwrap();
    let checked = stdout(&ferromq(&["config", "check", path.to_str().unwrap()], &[]));
    assert!(checked.contains("max-body = 65536  # file"), "{checked}");
}

#[test]
fn configuration_comes_from_flags_over_the_environment_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferromq.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\ndata-dir = {:?}\nmax-body = 100\nidle-timeout = \"1m30s\"\n\
             token = [\"file-secret\", \"other=p1,p2\"]\nmax-queues = 7\n",
            data.display()
        ),
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let checked = stdout(&ferromq(
        &["config", "check", file],
        &[("FERROMQ_MAX_QUEUES", "9")],
    ));
    assert!(checked.contains("max-body = 100  # file"), "{checked}");
    assert!(
        checked.contains("idle-timeout = \"1m30s\"  # file"),
        "{checked}"
    );
    assert!(
        checked.contains("max-queues = 9  # FERROMQ_MAX_QUEUES"),
        "{checked}"
    );
    assert!(
        checked.contains("fsync = \"always\"  # default"),
        "{checked}"
    );
    assert!(
        checked.contains("token = [\"***\", \"***=p1,p2\"]  # file"),
        "{checked}"
    );
    assert!(
        !checked.contains("file-secret"),
        "tokens are masked: {checked}"
    );

    // A real server from the file, with a flag over it: --max-body 10.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferromq"))
        .args(["serve", "--config", file, "--max-body", "10"])
        .env("RUST_LOG", "warn")
        .env_remove("FERROMQ_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("ferromq listening on ")
        .unwrap()
        .to_owned();
    let token = [("FERROMQ_TOKEN", "file-secret")];
    let pushed = cli_with_env(&addr, &["push", "q", "0123456789"], &token);
    assert!(pushed.status.success(), "{pushed:?}");
    let refused = cli_with_env(&addr, &["push", "q", "0123456789a"], &token);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("BODY_TOO_LARGE"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(data.join("db").exists(), "the file's data-dir was used");
}

#[test]
fn a_bad_configuration_file_is_refused_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let file = path.to_str().unwrap();
    for (text, wanted) in [
        ("max-bodyy = 1\n", "unknown key `max-bodyy`"),
        ("[server]\nlisten = \"x\"\n", "unknown key `server`"),
        ("listen = { host = \"x\" }\n", "a table is not a value"),
        ("listen = [\"a\", \"b\"]\n", "key `listen`: takes one value"),
        ("max-body = \"lots\"\n", "--max-body"),
        ("max-body = 10\nmax-frame = 100\n", "--max-frame"),
        ("recover-lost-data = \"yes\"\n", "takes true or false"),
        ("listen = \n", "not valid TOML"),
    ] {
        std::fs::write(&path, text).unwrap();
        for args in [
            vec!["config", "check", file],
            vec!["serve", "--config", file],
        ] {
            let output = ferromq(&args, &[]);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{text}: {stderr}");
            assert!(stderr.contains(wanted), "{text}: {stderr}");
            assert!(stderr.contains(file), "{text}: the file is named: {stderr}");
        }
    }
}

#[test]
fn json_logs_have_one_listening_line_and_an_access_log_without_the_token() {
    use std::io::{Read, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = common::start_with(
        &dir.path().join("data"),
        "127.0.0.1:0",
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--token",
            "secret",
            "--log-format",
            "json",
        ],
        ("info", Stdio::from(log)),
    );
    let http = server.http.clone().unwrap();
    let mut stream = std::net::TcpStream::connect(&http).unwrap();
    stream
        .write_all(
            b"GET /3/projects/p/queues/missing?oauth=secret HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let token = [("FERROMQ_TOKEN", "secret")];
    for body in ["one", "two", "three"] {
        assert!(cli_with_env(&server.addr, &["push", "q", body], &token)
            .status
            .success());
    }
    assert!(
        cli_with_env(&server.addr, &["reserve", "q", "--n", "3"], &token)
            .status
            .success()
    );
    drop(server); // killed: everything it logged is in the file
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains("secret"), "no token in the log: {text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let listening: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "listening")
        .collect();
    assert_eq!(listening.len(), 1, "{text}");
    assert_eq!(listening[0]["http"], http.as_str());
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "ferromq::access")
        .collect();
    assert_eq!(access.len(), 1, "{text}");
    assert_eq!(access[0]["level"], "INFO");
    assert_eq!(access[0]["method"], "GET");
    assert_eq!(access[0]["path"], "/3/projects/p/queues/missing");
    assert_eq!(access[0]["status"], 404);
    assert!(access[0]["duration_us"].is_u64(), "{}", access[0]);
    // No line per message or binary request at info.
    let chatty: Vec<&Value> = lines
        .iter()
        .filter(|l| l["level"] == "INFO" && l["target"] == "ferromq::binary")
        .collect();
    assert!(chatty.is_empty(), "{chatty:?}");
}

#[test]
fn stats_and_top_show_the_queues_and_their_rates() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.addr.as_str();
    for (queue, n) in [("orders", 30), ("emails", 5)] {
        let bodies: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let mut args = vec!["push", queue];
        args.extend(bodies.iter().map(String::as_str));
        stdout(&cli(addr, &args));
    }
    stdout(&cli(addr, &["reserve", "orders", "--n", "4"]));
    let text = stdout(&cli(addr, &["stats"]));
    assert!(
        text.starts_with(&format!("ferromq {}, up ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("messages      35 held"), "{text}");
    assert!(
        text.contains("totals        pushed 35  reserved 4  deleted 0"),
        "{text}"
    );
    assert!(text.contains("group commit  "), "{text}");
    let stats = json_lines(&cli(addr, &["stats", "--json"]));
    assert_eq!(stats[0]["messages"], 35);
    assert_eq!(stats[0]["queues"], 2);
    assert!(stats[0]["data_dir_bytes"].as_u64().unwrap() > 0);

    // Two frames: the first has no rates yet, the second has them. Between the
    // frames nothing is pushed, so each rate is 0.0.
    let text = stdout(&cli(addr, &["top", "--frames", "2", "--interval", "100ms"]));
    let frames: Vec<&str> = text.split("\n\n\n").collect();
    assert_eq!(
        frames.len(),
        1,
        "frames are separated by one blank line: {text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let rows: Vec<&&str> = lines.iter().filter(|l| l.starts_with("orders ")).collect();
    assert_eq!(rows.len(), 2, "{text}");
    let first: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(&first[1..4], ["26", "4", "0"], "{text}");
    assert_eq!(&first[5..8], ["-", "-", "-"], "{text}");
    let second: Vec<&str> = rows[1].split_whitespace().collect();
    assert_eq!(&second[5..8], ["0.0", "0.0", "0.0"], "{text}");
    // Sorted by size: orders (30) before emails (5).
    let order: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w == "orders" || *w == "emails")
        .collect();
    assert_eq!(order, ["orders", "emails", "orders", "emails"], "{text}");
    let json = json_lines(&cli(
        addr,
        &["top", "--frames", "1", "--json", "--prefix", "em"],
    ));
    assert_eq!(json[0]["queues"][0]["name"], "emails");
    assert_eq!(json[0]["queues"][0]["available"], 5);
    assert_eq!(json[0]["queues_total"], 1);
}

#[test]
fn completion_scripts_are_printed_for_each_shell() {
    let bash = stdout(&ferromq(&["completions", "bash"], &[]));
    assert!(bash.contains("_ferromq()"), "a bash function");
    assert!(
        bash.contains("--max-body") && bash.contains("top"),
        "options and subcommands"
    );
    // bash parses it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferromq.bash");
    std::fs::write(&path, &bash).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(checked.status.success(), "{checked:?}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = stdout(&ferromq(&["completions", shell], &[]));
        assert!(script.contains("serve"), "{shell}");
    }
    let wrong = ferromq(&["completions", "tcsh"], &[]);
    assert_eq!(wrong.status.code(), Some(2));
}

#[test]
fn a_stopped_servers_directory_copied_is_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data);
    stdout(&cli(&server.addr, &["push", "jobs", "one", "two", "three"]));
    let reserved = json_lines(&cli(&server.addr, &["reserve", "jobs", "--json"]));
    let id = reserved[0]["id"].as_u64().unwrap().to_string();
    let rid = reserved[0]["reservation_id"].as_u64().unwrap().to_string();
    stdout(&cli(
        &server.addr,
        &["delete", "jobs", &id, "--reservation-id", &rid],
    ));
    // Stop (SIGTERM), copy, restart on the copy: the README's procedure.
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut server = server;
    assert!(server.child.wait().unwrap().success());
    let backup = dir.path().join("backup");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&backup)
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::remove_dir_all(&data).unwrap();
    let restored = start(&backup);
    let info = json_lines(&cli(&restored.addr, &["info", "jobs", "--json"]));
    assert_eq!(info[0]["size"], 2, "the deleted message stays deleted");
    let peeked = json_lines(&cli(
        &restored.addr,
        &["peek", "jobs", "--n", "5", "--json"],
    ));
    let bodies: Vec<&str> = peeked.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["two", "three"]);
}
