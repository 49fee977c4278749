//! Server configuration: every limit and default in one struct, with validation.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::codec::DEFAULT_MAX_FRAME;
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
/// Default sled page-cache budget: 64 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

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

/// Tokens of the HTTP API (`Authorization: OAuth TOKEN` or `?oauth=TOKEN`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAuth {
    /// Accepted tokens, each with the projects it may use (`None`: every project).
    pub tokens: Vec<(String, Option<Vec<String>>)>,
    /// No authentication at all; only when the configuration says so.
    pub disabled: bool,
}

impl HttpAuth {
    /// Whether `token` may act on `project`.
    pub fn allows(&self, token: Option<&str>, project: &str) -> bool {
        if self.disabled {
            return true;
        }
        let Some(token) = token else {
            return false;
        };
        self.tokens.iter().any(|(known, projects)| {
            known == token
                && projects
                    .as_ref()
                    .is_none_or(|list| list.iter().any(|p| p == project))
        })
    }
}

impl std::str::FromStr for HttpAuth {
    type Err = String;

    /// One `--http-token` value: `TOKEN` or `TOKEN=PROJECT[,PROJECT...]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (token, projects) = match s.split_once('=') {
            Some((token, list)) => {
                let projects: Vec<String> = list
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
                if projects.is_empty() {
                    return Err(format!("{s:?}: no project after '='"));
                }
                (token, Some(projects))
            }
            None => (s, None),
        };
        if token.is_empty() {
            return Err("an empty token".into());
        }
        Ok(HttpAuth {
            tokens: vec![(token.to_owned(), projects)],
            disabled: false,
        })
    }
}

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
