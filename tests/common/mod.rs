//! Shared by the tests that run the real `ferromq` binary: start it on port 0 and
//! read the address it prints.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// A server process and the address it reported on stdout.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) addr: String,
    /// The HTTP API's address, if the server was started with `--http-listen`.
    pub(crate) http: Option<String>,
    /// Its stdout, kept open: a closed pipe would fail the server's next line.
    pub(crate) stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Process {
    /// A failing test must not leave a server running (it would also hold the
    /// test's output pipe open).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(data_dir: &Path) -> Process {
    start_listening(data_dir, "127.0.0.1:0")
}

/// Starts the server with `--listen listen` (which may name a host).
pub(crate) fn start_listening(data_dir: &Path, listen: &str) -> Process {
    start_with(data_dir, listen, &[], ("warn", Stdio::inherit()))
}

/// Starts the server with `--listen listen`, `extra` arguments and its log at
/// `RUST_LOG=log.0` going to `log.1`.
pub(crate) fn start_with(
    data_dir: &Path,
    listen: &str,
    extra: &[&str],
    log: (&str, Stdio),
) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferromq"))
        .args([
            "serve",
            "--listen",
            listen,
            "--fsync",
            "always",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", log.0)
        .stdout(Stdio::piped())
        .stderr(log.1)
        .spawn()
        .expect("spawn ferromq");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read stdout");
    let addr = line
        .trim()
        .strip_prefix("ferromq listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let http = extra.contains(&"--http-listen").then(|| {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read stdout");
        line.trim()
            .strip_prefix("ferromq http listening on ")
            .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
            .to_owned()
    });
    Process {
        child,
        addr,
        http,
        stdout,
    }
}

/// Runs `ferromq ARGS... --addr ADDR` as a client and returns its output.
pub(crate) fn cli(addr: &str, args: &[&str]) -> Output {
    cli_with_env(addr, args, &[])
}

/// As [`cli`], with `env` set (and `FERROMQ_TOKEN` only if `env` sets it).
pub(crate) fn cli_with_env(addr: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferromq"))
        .args(args)
        .args(["--addr", addr])
        .env_remove("FERROMQ_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("run the ferromq CLI")
}

/// Sends SIGTERM to the server and waits for it to exit, at most `within`; on
/// timeout kills it and returns `None`.
pub(crate) async fn sigterm_and_wait(
    server: Process,
    within: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let pid = server.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    wait_for_exit(server, within).await
}

/// Waits for the server to exit, at most `within`; on timeout kills it and
/// returns `None`.
pub(crate) async fn wait_for_exit(
    server: Process,
    within: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let pid = server.child.id().to_string();
    let mut server = server;
    let waited = tokio::time::timeout(
        within,
        tokio::task::spawn_blocking(move || {
            let status = server.child.wait().expect("wait for the server");
            drop(server);
            status
        }),
    )
    .await;
    match waited {
        Ok(status) => Some(status.expect("the waiting task")),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            None
        }
    }
}

/// Reserves and deletes (`reserve --delete`) everything in `queue`; returns the
/// messages by id.
pub(crate) async fn drain(
    client: &ferromq::Client,
    queue: &str,
) -> std::collections::BTreeMap<u64, bytes::Bytes> {
    let mut found = std::collections::BTreeMap::new();
    loop {
        let options = ferromq::client::ReserveOptions {
            n: 100,
            delete: true,
            ..Default::default()
        };
        let got = client.reserve(queue, options).await.expect("reserve");
        if got.is_empty() {
            return found;
        }
        found.extend(got.into_iter().map(|m| (m.id, m.body)));
    }
}
