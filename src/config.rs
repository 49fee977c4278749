//! Server configuration: every limit and default in one struct, with validation,
//! and the duration syntax of the command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::codec::DEFAULT_MAX_FRAME;
pub use crate::http::HttpAuth;
use crate::storage::FsyncMode;

/// Default TCP port of the binary protocol.
pub const DEFAULT_PORT: u16 = 7600;
/// Default body limit: 64 KiB.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// Largest body limit that may be configured: 16 MiB.
pub const MAX_MAX_BODY: usize = 16 * 1024 * 1024;
/// Default cap on concurrent connections; further connections wait in the
/// listen backlog until one closes.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default cap on requests in flight on one connection; past it the server stops
/// reading that connection until one completes (backpressure, not an error).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Default sled page-cache budget: 32 MiB. With sled's cache accounting fixed
/// (vendor/sled/PATCHES.md 5) the budget bounds memory; a server holding 1 M
/// messages of 100 B runs in ~65 MiB with it. A backlog is read once, at its head,
/// and the OS page cache holds the file anyway, so a larger cache buys little for a
/// FIFO queue.
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

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
    /// sled's page-cache budget in bytes.
    pub cache_bytes: u64,
    /// Where the IronMQ v3 HTTP API listens; off when `None`.
    pub http_listen: Option<SocketAddr>,
    /// Who may use the HTTP API.
    pub http_auth: HttpAuth,
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
            cache_bytes: DEFAULT_CACHE_BYTES,
            http_listen: None,
            http_auth: HttpAuth::default(),
        }
    }
}

impl Config {
    /// Checks the limits against each other.
    ///
    /// # Errors
    /// A sentence saying which setting is wrong and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.http_listen.is_some()
            && self.http_auth.tokens.is_empty()
            && !self.http_auth.disabled
        {
            return Err(
                "--http-listen needs --http-token TOKEN (or --http-no-auth to run without auth)"
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
        if self.max_connections == 0 || self.max_in_flight == 0 {
            return Err("--max-connections and --max-in-flight must be at least 1".into());
        }
        Ok(())
    }
}

/// Parses `500ms`, `30s`, `5m`, `2h` or a bare number of milliseconds.
///
/// # Errors
/// A sentence saying what is wrong with `text`.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "ms"),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 30s, 5m"))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("unknown unit {unit:?}: use ms, s, m or h")),
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_parse_durations_with_units() {
        assert_eq!(parse_duration_ms("250"), Ok(250));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert!(parse_duration_ms("1d").is_err());
        assert!(parse_duration_ms("s").is_err());
    }
}
