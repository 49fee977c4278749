//! Server configuration: every limit and default in one struct, with validation,
//! and the duration syntax of the command line.

use std::net::SocketAddr;
use std::path::PathBuf;

pub use crate::auth::Auth;
use crate::codec::DEFAULT_MAX_FRAME;
pub use crate::queue::QueueLimits;
use crate::storage::FsyncMode;

/// Default TCP port of the binary protocol.
pub const DEFAULT_PORT: u16 = 7600;
/// Default body limit: 64 KiB.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// Largest body limit that may be configured: 16 MiB.
pub const MAX_MAX_BODY: usize = 16 * 1024 * 1024;
/// Default cap on concurrent connections per port; a connection past it is
/// answered with a refusal and closed (`net.rs`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default cap on requests in flight on one connection; past it the server stops
/// reading that connection until one completes (backpressure, not an error).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Default cap on the bytes of requests in flight on one connection: 16 MiB
/// (two full frames). With `--max-connections` it bounds what clients' requests
/// can make the server hold: 10,000 connections × 16 MiB at the very most, and
/// in practice what the connections actually send.
pub const DEFAULT_MAX_CONNECTION_BYTES: usize = 16 * 1024 * 1024;
/// Default sled page-cache budget: 32 MiB. With sled's cache accounting fixed
/// (vendor/sled/PATCHES.md 5) the budget bounds memory; a server holding 1 M
/// messages of 100 B runs in ~65 MiB with it. A backlog is read once, at its head,
/// and the OS page cache holds the file anyway, so a larger cache buys little for a
/// FIFO queue.
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Default idle timeout of a binary connection: 5 minutes. Long enough for pooled
/// clients between bursts (a long poll is in flight, so it never counts as idle),
/// short enough that abandoned connections do not pile up to the cap.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 300_000;
/// Default cap on the bytes of HTTP request bodies held at once: 256 MiB. A
/// request may carry up to 100 bodies of `--max-body`, JSON-escaped (~39 MiB
/// with the defaults), so without it 10,000 connections could make the server
/// hold hundreds of GiB; with it, a few such requests or thousands of ordinary ones.
pub const DEFAULT_MAX_HTTP_BODY_BYTES: usize = 256 * 1024 * 1024;
/// Default HTTP header read timeout: 30 s (hyper's own default), which is also
/// how long an idle keep-alive connection stays open.
pub const DEFAULT_HTTP_HEADER_TIMEOUT_MS: u64 = 30_000;

/// Everything the server needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the binary protocol listens.
    pub listen: SocketAddr,
    /// The sled data directory.
    pub data_dir: PathBuf,
    /// When acknowledgements wait for fsync.
    pub fsync: FsyncMode,
    /// Largest frame in either direction, in bytes (length prefix excluded).
    pub max_frame: usize,
    /// Largest message body in bytes.
    pub max_body: usize,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Most requests in flight on one connection.
    pub max_in_flight: usize,
    /// Most bytes of requests in flight on one connection.
    pub max_connection_bytes: usize,
    /// sled's page-cache budget in bytes.
    pub cache_bytes: u64,
    /// Most queues on the server and in one project.
    pub queue_limits: QueueLimits,
    /// Start on a data directory that lost acknowledged data (behind its guard
    /// file) instead of refusing it (`--recover-lost-data`).
    pub recover_lost_data: bool,
    /// A binary connection with nothing in flight and no request for this long is
    /// closed (0: never).
    pub idle_timeout_ms: u64,
    /// An HTTP request's headers must arrive within this time of the connection
    /// opening or of the previous response; bounds idle keep-alive too (0: never).
    pub http_header_timeout_ms: u64,
    /// Bytes of HTTP request bodies held at once, every connection together; a
    /// request whose body would pass it is 503 before its body is read.
    pub max_http_body_bytes: usize,
    /// Where the IronMQ v3 HTTP API listens; off when `None`.
    pub http_listen: Option<SocketAddr>,
    /// Who may use which queues, on both ports.
    pub auth: Auth,
    /// Serve without authentication on an address other than loopback
    /// (`--allow-remote-without-auth`): without it such a server refuses to start.
    pub allow_remote_without_auth: bool,
    /// TLS on both ports: the certificate chain and key (`--tls-cert`,
    /// `--tls-key`); plaintext when `None`.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Push-queue deliveries: concurrency, answer timeout, the subscriber address
    /// policy (`push/policy.rs`).
    pub push: crate::push::PushConfig,
    /// A listener of its own for `/metrics` and `/health/*` (`--metrics-listen`),
    /// for servers without the HTTP API or with metrics on another interface.
    pub metrics_listen: Option<SocketAddr>,
    /// Queues with per-queue metric series of their own; the rest are summed
    /// (`--metrics-max-queues`, `crate::metrics`).
    pub metrics_max_queues: usize,
    /// Serve the web dashboard under `/ui/` on the HTTP listener (`--dashboard`).
    pub dashboard: bool,
}

/// The suggested port of the HTTP API (`--http-listen 127.0.0.1:8080`).
pub const DEFAULT_HTTP_PORT: u16 = 8080;

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            data_dir: PathBuf::from("ferromq-data"),
            fsync: FsyncMode::Always,
            max_frame: DEFAULT_MAX_FRAME,
            max_body: DEFAULT_MAX_BODY,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_connection_bytes: DEFAULT_MAX_CONNECTION_BYTES,
            cache_bytes: DEFAULT_CACHE_BYTES,
            queue_limits: QueueLimits::default(),
            recover_lost_data: false,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            http_header_timeout_ms: DEFAULT_HTTP_HEADER_TIMEOUT_MS,
            max_http_body_bytes: DEFAULT_MAX_HTTP_BODY_BYTES,
            http_listen: None,
            auth: Auth::default(),
            allow_remote_without_auth: false,
            tls: None,
            push: crate::push::PushConfig::default(),
            metrics_listen: None,
            metrics_max_queues: crate::metrics::DEFAULT_MAX_QUEUE_SERIES,
            dashboard: false,
        }
    }
}

impl Config {
    /// Checks the limits against each other.
    ///
    /// # Errors
    /// A sentence saying which setting is wrong and why.
    pub fn validate(&self) -> Result<(), String> {
        self.push.validate()?;
        if self.auth.disabled && !self.auth.tokens.is_empty() {
            return Err("--auth none and --token contradict each other: give one".into());
        }
        if self.http_listen.is_some() && self.auth.tokens.is_empty() && !self.auth.disabled {
            return Err(
                "--http-listen needs --token TOKEN (or --auth none to run without auth)".into(),
            );
        }
        if self.dashboard && self.http_listen.is_none() {
            return Err(
                "--dashboard is served on the HTTP listener: give --http-listen HOST:PORT too"
                    .into(),
            );
        }
        if self.max_body == 0 || self.max_body > MAX_MAX_BODY {
            return Err(format!(
                "--max-body {} is out of range 1..={MAX_MAX_BODY}",
                self.max_body
            ));
        }
        if self.max_frame < self.max_body + 1024 {
            return Err(format!(
                "--max-frame {} must be at least --max-body + 1024 ({}) so that one message fits in a frame",
                self.max_frame,
                self.max_body + 1024
            ));
        }
        if u32::try_from(self.max_frame).is_err() {
            return Err("--max-frame must fit in the 4-byte length prefix".into());
        }
        let limits = &self.queue_limits;
        if limits.max_queues == 0
            || limits.max_queues_per_project == 0
            || limits.max_messages_per_queue == 0
            || limits.max_waiters_per_queue == 0
            || limits.max_bytes_per_queue == 0
            || limits.max_total_bytes == 0
        {
            return Err(
                "--max-queues, --max-queues-per-project, --max-queue-messages, \
                 --max-queue-bytes, --max-total-bytes and --max-waiters must be at least 1"
                    .into(),
            );
        }
        if self.max_connection_bytes == 0 || self.max_http_body_bytes == 0 {
            return Err(
                "--max-connection-bytes and --max-http-body-bytes must be at least 1".into(),
            );
        }
        if self.max_connections == 0 || self.max_in_flight == 0 {
            return Err("--max-connections and --max-in-flight must be at least 1".into());
        }
        Ok(())
    }

    /// The authentication the server runs with when its binary protocol listens on
    /// `binary`, with a warning to log if it runs without any. Without tokens the
    /// server runs open only on loopback addresses, unless the operator allowed
    /// more (`--allow-remote-without-auth`); with `--auth none` that is said once
    /// at start, and without tokens or `--auth none` it is a warning.
    ///
    /// # Errors
    /// A sentence naming the exposed address and the flags that would start it.
    pub fn effective_auth(&self, binary: SocketAddr) -> Result<(Auth, Option<String>), String> {
        if !self.auth.tokens.is_empty() {
            return Ok((self.auth.clone(), None));
        }
        let exposed = std::iter::once(binary)
            .chain(self.http_listen)
            .chain(self.metrics_listen)
            .find(|addr| !addr.ip().is_loopback());
        if let Some(addr) = exposed {
            if !self.allow_remote_without_auth {
                return Err(format!(
                    "listening on {addr} without authentication would let anyone who can reach \
                     it use every queue: give --token TOKEN, or --auth none \
                     --allow-remote-without-auth on a trusted network"
                ));
            }
        }
        let open = Auth {
            tokens: Vec::new(),
            disabled: true,
        };
        let note = if self.auth.disabled {
            match exposed {
                Some(addr) => format!(
                    "authentication is off (--auth none) and {addr} is not a loopback address: \
                     anyone who can reach it may use every queue"
                ),
                None => "authentication is off (--auth none)".into(),
            }
        } else {
            "no --token given: authentication is off and every client of this machine may \
             use every queue (give --token to require one, or --auth none to say so)"
                .into()
        };
        Ok((open, Some(note)))
    }
}

/// Parses a duration: `500ms`, `1.5s`, `1m30s`, `2h`, `1d` (humantime, plus one
/// decimal amount of one unit) or a bare number of milliseconds.
///
/// # Errors
/// A sentence saying what is wrong with `text`.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a duration like 500ms, 1.5s, 1m30s, 2h or 1d");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad());
    }
    // A decimal amount of one unit (humantime takes whole numbers only).
    if let Some(at) = text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        let (number, unit) = text.split_at(at);
        if number.contains('.') {
            let factor = match unit {
                "ms" => 1.0,
                "s" => 1e3,
                "m" => 60e3,
                "h" => 3_600e3,
                "d" => 86_400e3,
                _ => return Err(bad()),
            };
            let value: f64 = number.parse().map_err(|_| bad())?;
            let ms = (value * factor).round();
            // Within u64, and a number (the parse above takes no NaN or sign).
            return if ms.is_finite() && ms < 1.8e19 {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(ms as u64)
            } else {
                Err(format!("{text:?} is too long"))
            };
        }
    }
    let duration = humantime::parse_duration(text).map_err(|_| bad())?;
    u64::try_from(duration.as_millis()).map_err(|_| format!("{text:?} is too long"))
}

/// Parses a size in bytes: a bare number, or one with a binary unit (`512KiB`,
/// `64MiB`, `10GiB`, `1TiB`; `K`, `M`, `G`, `T` mean the same), or `unlimited`.
///
/// # Errors
/// A sentence saying what is wrong with `text`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    if text.eq_ignore_ascii_case("unlimited") {
        return Ok(u64::MAX);
    }
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 4096, 64MiB, 10GiB or unlimited"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use KiB, MiB, GiB or TiB"
            ))
        }
    };
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_run_without_auth_only_on_loopback_unless_allowed() {
        let loopback: SocketAddr = "127.0.0.1:7600".parse().unwrap();
        let anywhere: SocketAddr = "0.0.0.0:7600".parse().unwrap();
        let mut config = Config::default();
        let (auth, warning) = config.effective_auth(loopback).unwrap();
        assert!(auth.disabled && warning.is_some());
        let refusal = config.effective_auth(anywhere).unwrap_err();
        assert!(refusal.contains("0.0.0.0:7600"), "{refusal}");
        config.auth.disabled = true;
        assert!(config.effective_auth(anywhere).is_err());
        config.allow_remote_without_auth = true;
        assert!(config.effective_auth(anywhere).unwrap().0.disabled);
        let mut config = Config {
            auth: "secret".parse().unwrap(),
            ..Config::default()
        };
        let (auth, warning) = config.effective_auth(anywhere).unwrap();
        assert!(!auth.disabled && warning.is_none());
        config.auth.disabled = true;
        assert!(config.validate().is_err());
        let config = Config {
            http_listen: Some(loopback),
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn the_dashboard_needs_the_http_listener() {
        let mut config = Config {
            auth: "secret".parse().unwrap(),
            dashboard: true,
            ..Config::default()
        };
        let refusal = config.validate().unwrap_err();
        assert!(
            refusal.contains("--dashboard") && refusal.contains("--http-listen"),
            "{refusal}"
        );
        config.http_listen = Some("127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn should_parse_sizes_with_binary_units() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("unlimited"), Ok(u64::MAX));
        assert!(parse_bytes("1PB").is_err());
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("99999999999TiB").is_err());
    }

    #[test]
    fn should_parse_durations_with_units() {
        assert_eq!(parse_duration_ms("250"), Ok(250));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1_500));
        assert_eq!(parse_duration_ms("0.25m"), Ok(15_000));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_duration_ms("1h 30m"), Ok(5_400_000));
        for bad in ["s", "", "1.5x", "1.2.3s", "-1s", "1e3s", "forever"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }
}
