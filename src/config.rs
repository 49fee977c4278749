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
        }
    }
}

impl Config {
    /// Checks the limits against each other.
    ///
    /// # Errors
    /// A sentence saying which setting is wrong and why.
    pub fn validate(&self) -> Result<(), String> {
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
