//! [`Server`]: a running ferromq. It opens the store, loads the queues, builds the
//! service layer, and starts the front ends on it: the binary protocol
//! ([`crate::binary`]) and, with `--http-listen`, the IronMQ HTTP API
//! ([`crate::http`]), both checking the same tokens ([`crate::auth`]). Without
//! tokens it serves only loopback addresses, unless the operator allows more
//! ([`Config::effective_auth`]).
//!
//! # Shutdown
//! [`Server::shutdown`]: stop accepting (both accept loops end); connections stop
//! reading, finish their in-flight requests and answer UNAVAILABLE to the requests
//! they had received but not read (`binary/mod.rs`); the queue actors stop (long polls
//! are answered UNAVAILABLE, requests still queued too) and every task they started
//! ends; the committer does its last flush and the store is closed; then it returns.
//! Every task the server starts is tracked and awaited here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::QueueError;
use crate::queue::admission::{Admission, DISK_CHECK_EVERY};
use crate::queue::clock::{Clock, SystemClock};
use crate::queue::Registry;
use crate::service::Service;
use crate::storage::{SledConfig, SledStore, StorageError, Store};
use crate::tls::ServerTls;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory could not be opened.
    #[error("cannot open the data directory: {0}")]
    Storage(#[from] StorageError),
    /// The queues could not be loaded.
    #[error("cannot load the queues: {0}")]
    Load(#[from] QueueError),
    /// A listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS certificate or key could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// A running server.
pub struct Server {
    service: Arc<Service>,
    local_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    stop: CancellationToken,
    /// TLS of both ports, if on (reloaded by [`Server::reload_tls`]).
    tls: Option<Arc<ServerTls>>,
    /// The accept loops.
    listeners: TaskTracker,
    /// The connections of both front ends.
    connections: TaskTracker,
}

impl Server {
    /// Opens the data directory, loads the queues and starts serving `listener`
    /// (and the HTTP API if the configuration asks for it), on the system clock.
    ///
    /// # Errors
    /// If the configuration is invalid or the data directory cannot be opened.
    pub async fn start(listener: TcpListener, config: Config) -> Result<Server, ServerError> {
        Self::start_with_clock(listener, config, Arc::new(SystemClock::new())).await
    }

    /// As [`Server::start`], with the queues' time taken from `clock` (tests use a
    /// [`crate::queue::clock::ManualClock`]).
    ///
    /// # Errors
    /// As [`Server::start`].
    pub async fn start_with_clock(
        listener: TcpListener,
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, ServerError> {
        config.validate().map_err(ServerError::Config)?;
        let local_addr = listener.local_addr()?;
        let (auth, warning) = config
            .effective_auth(local_addr)
            .map_err(ServerError::Config)?;
        match warning {
            Some(warning) => tracing::warn!("{warning}"),
            None => tracing::info!(tokens = auth.tokens.len(), "authentication required"),
        }
        let auth = Arc::new(auth);
        // The certificate first: a server that cannot serve TLS must not open
        // the data directory (or take its lock) at all.
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(ServerTls::load(files.clone())?)),
            None => None,
        };
        let sled = SledConfig {
            path: config.data_dir.clone(),
            cache_bytes: config.cache_bytes,
            fsync: config.fsync,
            recover: config.recover_lost_data,
        };
        // Opening reads sled's log and makes the first id block durable.
        let started = std::time::Instant::now();
        let store: Arc<dyn Store> = tokio::task::spawn_blocking(move || SledStore::open(&sled))
            .await
            .map_err(|err| StorageError::Io(format!("opening stopped: {err}")))??;
        let opened = started.elapsed();
        let registry = Registry::open_with(store, clock, config.queue_limits).await?;
        let admission = Arc::clone(registry.admission());
        // The first reading before anything is served.
        let mut disk = DiskWatch {
            dir: config.data_dir.clone(),
            admission,
            failing: false,
        };
        disk.read().await;
        tracing::info!(
            store_ms = opened.as_millis(),
            queues_ms = (started.elapsed() - opened).as_millis(),
            "data directory loaded"
        );
        // Loading pulled every page through sled's cache: give the buffers back.
        let _ = tokio::task::spawn_blocking(crate::memory::release_free_memory).await;
        let stop = CancellationToken::new();
        let listeners = TaskTracker::new();
        let connections = TaskTracker::new();
        let http = match config.http_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let http_url = match &http {
            Some(http) => {
                let scheme = if tls.is_some() { "https" } else { "http" };
                Some(format!("{scheme}://{}", http.local_addr()?))
            }
            None => None,
        };
        let push = crate::push::PushEngine::new(registry.clone(), config.push.clone(), http_url)
            .map_err(ServerError::Config)?;
        let service = Arc::new(
            Service::new(registry, config.max_body)
                .with_push(Arc::clone(&push))
                .with_metrics(crate::telemetry::MetricsOptions {
                    max_queue_series: config.metrics_max_queues,
                    data_dir: Some(config.data_dir.clone()),
                }),
        );
        push.start();
        let http_limits = crate::http::Limits {
            max_connections: config.max_connections,
            header_timeout: nonzero_ms(config.http_header_timeout_ms),
            body_budget: config.max_http_body_bytes,
            api: true,
            dashboard: config.dashboard,
        };
        let http_addr = match http {
            Some(http) => {
                let http_addr = http.local_addr()?;
                listeners.spawn(crate::http::serve(
                    http,
                    Arc::clone(&service),
                    Arc::clone(&auth),
                    tls.clone(),
                    http_limits,
                    stop.clone(),
                    connections.clone(),
                ));
                Some(http_addr)
            }
            None => None,
        };
        let metrics_addr = match config.metrics_listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await?;
                let metrics_addr = listener.local_addr()?;
                listeners.spawn(crate::http::serve(
                    listener,
                    Arc::clone(&service),
                    Arc::clone(&auth),
                    tls.clone(),
                    crate::http::Limits {
                        api: false,
                        ..http_limits
                    },
                    stop.clone(),
                    connections.clone(),
                ));
                Some(metrics_addr)
            }
            None => None,
        };
        listeners.spawn(crate::binary::serve(
            listener,
            Arc::clone(&service),
            auth,
            tls.clone(),
            crate::binary::Limits {
                max_frame: config.max_frame,
                max_connections: config.max_connections,
                max_in_flight: config.max_in_flight,
                max_connection_bytes: config.max_connection_bytes,
                idle_timeout: nonzero_ms(config.idle_timeout_ms),
            },
            stop.clone(),
            connections.clone(),
        ));
        listeners.spawn(sample_rates(Arc::clone(&service), stop.clone()));
        listeners.spawn(trim_memory(stop.clone()));
        listeners.spawn(disk.watch(stop.clone()));
        listeners.close();
        // The one "listening" line of the log, with every listener (stdout has
        // one line per listener for scripts: `cli/serve.rs`).
        tracing::info!(
            binary = %local_addr,
            http = http_addr.map(|a| a.to_string()).as_deref().unwrap_or("off"),
            metrics = metrics_addr.map(|a| a.to_string()).as_deref().unwrap_or("off"),
            dashboard = http_limits.dashboard,
            tls = tls.is_some(),
            "listening"
        );
        Ok(Server {
            service,
            local_addr,
            http_addr,
            metrics_addr,
            stop,
            tls,
            listeners,
            connections,
        })
    }

    /// The address the binary protocol listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the IronMQ HTTP API, if it was enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The address of the metrics listener, if it was enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The service both front ends call (its metrics, its health).
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Reads the TLS certificate and key again (SIGHUP): new connections use them,
    /// open ones keep theirs. On error the old ones stay in use. Without TLS,
    /// nothing to do.
    ///
    /// # Errors
    /// If the files cannot be read or do not belong together.
    pub fn reload_tls(&self) -> Result<bool, crate::tls::TlsError> {
        match &self.tls {
            Some(tls) => tls.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Stops the server in the order of the module docs and waits until the data
    /// directory is flushed and released.
    pub async fn shutdown(self) {
        self.service.set_stopping();
        self.stop.cancel();
        self.listeners.wait().await;
        // Deliveries before the queues: their rounds end through the actors.
        self.service.stop_push().await;
        self.service.shutdown().await;
        self.connections.close();
        self.connections.wait().await;
    }
}

/// `ms` as a duration; 0 means none.
fn nonzero_ms(ms: u64) -> Option<std::time::Duration> {
    (ms != 0).then(|| std::time::Duration::from_millis(ms))
}

/// Reads the data directory's free space into admission
/// (`queue/admission.rs`, "Disk space"). A reading that fails keeps the last one;
/// the failure is logged once, until a reading works again.
struct DiskWatch {
    dir: PathBuf,
    admission: Arc<Admission>,
    failing: bool,
}

impl DiskWatch {
    /// A reading every [`DISK_CHECK_EVERY`] until `stop`.
    async fn watch(mut self, stop: CancellationToken) {
        let mut every = tokio::time::interval(DISK_CHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => self.read().await,
                () = stop.cancelled() => return,
            }
        }
    }

    /// One reading (a `statvfs`, on the blocking pool).
    async fn read(&mut self) {
        let path = self.dir.clone();
        let free = tokio::task::spawn_blocking(move || fs2::available_space(&path))
            .await
            .map_err(std::io::Error::other)
            .and_then(|read| read);
        match free {
            Ok(free) => {
                self.admission.set_disk_free(free);
                self.failing = false;
            }
            Err(err) if !self.failing => {
                self.failing = true;
                tracing::warn!(data_dir = %self.dir.display(), cause = %err, "cannot read the free disk space");
            }
            Err(_) => {}
        }
    }
}

/// Samples the message totals every second for the rates of `stats`
/// ([`crate::telemetry::Metrics::sample`]) until `stop`.
async fn sample_rates(service: Arc<Service>, stop: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => service.metrics().sample(),
            () = stop.cancelled() => return,
        }
    }
}

/// Gives free heap memory back every [`crate::memory::TRIM_EVERY`] until `stop`.
async fn trim_memory(stop: CancellationToken) {
    let mut every = tokio::time::interval(crate::memory::TRIM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick is now; the start already trimmed
    loop {
        tokio::select! {
            _ = every.tick() => {
                let _ = tokio::task::spawn_blocking(crate::memory::release_free_memory).await;
            }
            () = stop.cancelled() => return,
        }
    }
}
