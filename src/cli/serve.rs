//! `ferromq serve`: the server's options, and running it until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::config::{self, Auth, Config, DEFAULT_PORT};
use crate::server::Server;
use crate::storage::FsyncMode;

/// Options of `ferromq serve`.
#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Read options from this TOML file (`ferromq config example` prints one);
    /// flags and FERROMQ_* environment variables override it.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Address of the binary protocol, `HOST:PORT`.
    #[arg(long, default_value_t = format!("127.0.0.1:{DEFAULT_PORT}"))]
    listen: String,
    /// Data directory (created if missing).
    #[arg(long, default_value = "ferromq-data")]
    data_dir: PathBuf,
    /// always (ack after fsync, default), interval:MS (fsync every MS, acks do not
    /// wait), or never.
    #[arg(long, default_value = "always")]
    fsync: FsyncMode,
    /// Largest message body in bytes (up to 16 MiB).
    #[arg(long, default_value_t = config::DEFAULT_MAX_BODY)]
    max_body: usize,
    /// Largest frame in bytes.
    #[arg(long, default_value_t = crate::codec::DEFAULT_MAX_FRAME)]
    max_frame: usize,
    /// Most concurrent connections.
    #[arg(long, default_value_t = config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Most requests in flight on one connection; past it the server stops reading
    /// that connection until one completes.
    #[arg(long, default_value_t = config::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Most bytes of requests in flight on one connection; past it the server
    /// stops reading that connection until some complete (one request is always
    /// let in).
    #[arg(long, default_value_t = config::DEFAULT_MAX_CONNECTION_BYTES)]
    max_connection_bytes: usize,
    /// Close a connection with nothing in flight and no request for this long
    /// (`0`: never).
    #[arg(long, value_parser = config::parse_duration_ms, default_value = "5m")]
    idle_timeout: u64,
    /// HTTP: a request's headers must arrive within this time of the connection
    /// opening or of the previous response, which also bounds idle keep-alive
    /// (`0`: never).
    #[arg(long, value_parser = config::parse_duration_ms, default_value = "30s")]
    http_header_timeout: u64,
    /// HTTP: most bytes of request bodies held at once, every connection together
    /// (`256MiB`); a request past it gets 503 with Retry-After before its body is
    /// read (one request is always let in).
    #[arg(long, value_parser = parse_size_usize, default_value = "256MiB")]
    max_http_body_bytes: usize,
    /// Most queues on the server; creating one more is RESOURCE_EXHAUSTED (HTTP
    /// 503).
    #[arg(long, default_value_t = crate::queue::registry::DEFAULT_MAX_QUEUES)]
    max_queues: usize,
    /// Most queues in one project (names `PROJECT/...`).
    #[arg(long, default_value_t = crate::queue::registry::DEFAULT_MAX_QUEUES_PER_PROJECT)]
    max_queues_per_project: usize,
    /// Start even if the data directory has lost acknowledged data (it is behind
    /// its guard file: a damaged or truncated `db`, deleted files), serving what
    /// is left; ids continue after the last one handed out. Without it such a
    /// directory is refused.
    #[arg(long)]
    recover_lost_data: bool,
    /// Most messages in one queue (available, reserved, delayed); a push that
    /// would pass it is RESOURCE_EXHAUSTED (HTTP 503) and pushes nothing.
    #[arg(long, default_value_t = crate::queue::registry::DEFAULT_MAX_MESSAGES_PER_QUEUE)]
    max_queue_messages: usize,
    /// Most bytes of message bodies in one queue (`64MiB`, `10GiB`, `unlimited`);
    /// a push that would pass it is RESOURCE_EXHAUSTED (HTTP 503) and pushes
    /// nothing. Counted as `info` shows `bytes`: the bodies of every stored batch
    /// that still holds a message.
    #[arg(long, value_parser = config::parse_bytes, default_value = "1TiB")]
    max_queue_bytes: u64,
    /// Most bytes of message bodies in all queues together; as --max-queue-bytes.
    #[arg(long, value_parser = config::parse_bytes, default_value = "unlimited")]
    max_total_bytes: u64,
    /// Free space to keep on the data directory's file system: below it pushes
    /// and new queues are RESOURCE_EXHAUSTED (HTTP 503) until space is freed;
    /// reads, reserves and deletes go on (`0`: no reserve).
    #[arg(long, value_parser = config::parse_bytes, default_value = "64MiB")]
    min_free_disk: u64,
    /// Most long polls waiting at once on one queue; one more is
    /// RESOURCE_EXHAUSTED (HTTP 503).
    #[arg(long, default_value_t = crate::queue::registry::DEFAULT_MAX_WAITERS_PER_QUEUE)]
    max_waiters: usize,
    /// sled page-cache budget in MiB.
    #[arg(long, default_value_t = config::DEFAULT_CACHE_BYTES / (1024 * 1024))]
    cache_mb: u64,
    /// Also serve the IronMQ v3 HTTP/JSON API here, `HOST:PORT` (off unless given;
    /// e.g. 127.0.0.1:8080).
    #[arg(long, value_name = "HOST:PORT")]
    http_listen: Option<String>,
    /// Also serve the web dashboard at `/ui/` on the HTTP API's listener (needs
    /// --http-listen): it takes the same tokens as the API.
    #[arg(long)]
    dashboard: bool,
    /// Also serve `/metrics` (Prometheus) and `/health/*` here, `HOST:PORT`, on a
    /// listener of its own (the HTTP API's listener serves them too). With
    /// tokens, `/metrics` needs one that reaches every queue (`Authorization:
    /// Bearer TOKEN`).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_listen: Option<String>,
    /// Queues with per-queue metric series of their own (the first in name
    /// order); the others are summed into `queue="(other)"`.
    #[arg(long, default_value_t = crate::metrics::DEFAULT_MAX_QUEUE_SERIES)]
    metrics_max_queues: usize,
    /// A token clients must present, on both ports (binary: Hello; HTTP:
    /// `Authorization: OAuth TOKEN`): `TOKEN` (every queue) or
    /// `TOKEN=PROJECT[,PROJECT...]` (the queues `PROJECT/NAME` of those
    /// projects). Repeat for more tokens.
    #[arg(long = "token", alias = "http-token", value_name = "TOKEN[=PROJECTS]")]
    tokens: Vec<Auth>,
    /// `token`: require a token (the default when --token is given); `none`: serve
    /// without authentication. Without either, a server without --token serves
    /// loopback addresses only, open, with a warning.
    #[arg(long, value_enum)]
    auth: Option<AuthMode>,
    /// The old spelling of `--auth none`.
    #[arg(long, hide = true)]
    http_no_auth: bool,
    /// Serve without authentication on an address other than loopback (trusted
    /// networks only); without it such a server refuses to start.
    #[arg(long)]
    allow_remote_without_auth: bool,
    /// TLS on both ports: the server's certificate chain (PEM, leaf first).
    /// Needs --tls-key. Read again on SIGHUP.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Push queues: also deliver to subscribers at these hosts or networks, which
    /// the default policy denies (loopback, private, link-local, ...): an address
    /// (`127.0.0.1`), a network (`10.0.0.0/8`), a host name or `*.domain`. Repeat
    /// for more.
    #[arg(long = "push-allow", value_name = "RULE")]
    push_allow: Vec<String>,
    /// Push queues: never deliver to these hosts or networks (added to the
    /// default deny list; an allow rule wins). Repeat for more.
    #[arg(long = "push-deny", value_name = "RULE")]
    push_deny: Vec<String>,
    /// Push queues: most deliveries in flight on the whole server.
    #[arg(long, default_value_t = crate::push::DEFAULT_MAX_DELIVERIES)]
    push_concurrency: usize,
    /// Push queues: most deliveries in flight for one queue.
    #[arg(long, default_value_t = crate::push::DEFAULT_MAX_DELIVERIES_PER_QUEUE)]
    push_queue_concurrency: usize,
    /// Push queues: how long a subscriber has to answer a delivery.
    #[arg(long, value_parser = config::parse_duration_ms, default_value = "10s")]
    push_timeout: u64,
    /// Push queues: the base URL subscribers reach the HTTP API at, for the
    /// `Iron-Subscriber-Message-Url` header (default: http:// and the
    /// --http-listen address).
    #[arg(long, value_name = "URL")]
    push_public_url: Option<String>,
    /// Push queues: also trust the CA certificates in this file (PEM) for
    /// `https` subscribers (the system's roots are always trusted).
    #[arg(long, value_name = "PEM")]
    push_ca_cert: Option<PathBuf>,
    /// The log's format on stderr: `human` (one line per event) or `json` (one
    /// JSON object per line, for log shippers). Its level: RUST_LOG.
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
    /// Runtime worker threads (connections, queue actors, HTTP). Default: one less
    /// than the CPUs, at least 1, leaving a CPU for the committer thread's fsyncs
    /// and sled's threads (README, "Threads"). Batching producers gain from more.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
}

/// Values of `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Text, one line per event.
    Human,
    /// One JSON object per line.
    Json,
}

/// Values of `--auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AuthMode {
    /// Require a token (give one or more with --token).
    Token,
    /// No authentication: every client may use every queue.
    None,
}

impl ServeArgs {
    /// Whether the log is JSON lines.
    pub(super) fn json_logs(&self) -> bool {
        self.log_format == LogFormat::Json
    }

    /// The number of runtime worker threads to start.
    pub(super) fn workers(&self) -> usize {
        self.workers.map_or_else(default_workers, usize::from)
    }
}

/// One less than the CPUs this process may use, at least 1. Measured on 2 CPUs
/// (BENCHMARKS.md, the commit path, "One worker or two"): one worker gives the same unbatched saturated
/// throughput as two at 20–25 % less CPU, and about 30 % less CPU and context
/// switches at 1,000 msg/s, because the committer and the load on the other CPU
/// are not fought over (batched pushes are the exception: two workers go faster).
fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .saturating_sub(1)
        .max(1)
}

/// [`config::parse_bytes`], as a `usize`.
fn parse_size_usize(text: &str) -> Result<usize, String> {
    let bytes = config::parse_bytes(text)?;
    usize::try_from(bytes).map_err(|_| format!("{text:?} is too large for this machine"))
}

/// The first address `HOST:PORT` resolves to.
async fn resolve(what: &str, addr: &str) -> Result<SocketAddr, String> {
    match tokio::net::lookup_host(addr).await {
        Ok(mut found) => found
            .next()
            .ok_or_else(|| format!("{what} {addr:?} resolves to no address")),
        Err(err) => Err(format!("{what} {addr:?} is not a HOST:PORT address: {err}")),
    }
}

/// The server's configuration from its options: addresses resolved, limits
/// checked against each other, and a server exposed without auth refused.
///
/// # Errors
/// A sentence saying which option is wrong.
pub(super) async fn config(args: ServeArgs) -> Result<Config, String> {
    let addresses = async {
        let listen = resolve("--listen", &args.listen).await?;
        let http_listen = match &args.http_listen {
            Some(addr) => Some(resolve("--http-listen", addr).await?),
            None => None,
        };
        let metrics_listen = match &args.metrics_listen {
            Some(addr) => Some(resolve("--metrics-listen", addr).await?),
            None => None,
        };
        Ok::<_, String>((listen, http_listen, metrics_listen))
    };
    let (listen, http_listen, metrics_listen) = addresses.await?;
    let config = Config {
        listen,
        data_dir: args.data_dir,
        fsync: args.fsync,
        max_frame: args.max_frame,
        max_body: args.max_body,
        max_connections: args.max_connections,
        max_in_flight: args.max_in_flight,
        max_connection_bytes: args.max_connection_bytes,
        cache_bytes: args.cache_mb.saturating_mul(1024 * 1024),
        recover_lost_data: args.recover_lost_data,
        queue_limits: config::QueueLimits {
            max_queues: args.max_queues,
            max_queues_per_project: args.max_queues_per_project,
            max_messages_per_queue: args.max_queue_messages,
            max_bytes_per_queue: args.max_queue_bytes,
            max_total_bytes: args.max_total_bytes,
            min_free_disk: args.min_free_disk,
            max_waiters_per_queue: args.max_waiters,
        },
        idle_timeout_ms: args.idle_timeout,
        http_header_timeout_ms: args.http_header_timeout,
        max_http_body_bytes: args.max_http_body_bytes,
        http_listen,
        auth: Auth {
            tokens: args
                .tokens
                .into_iter()
                .flat_map(|auth| auth.tokens)
                .collect(),
            disabled: args.auth == Some(AuthMode::None) || args.http_no_auth,
        },
        allow_remote_without_auth: args.allow_remote_without_auth,
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| crate::tls::TlsFiles { cert, key }),
        push: crate::push::PushConfig {
            allow: args.push_allow,
            deny: args.push_deny,
            max_deliveries: args.push_concurrency,
            max_deliveries_per_queue: args.push_queue_concurrency,
            timeout: std::time::Duration::from_millis(args.push_timeout),
            public_url: args.push_public_url,
            ca_cert: args.push_ca_cert,
        },
        metrics_listen,
        metrics_max_queues: args.metrics_max_queues,
        dashboard: args.dashboard,
    };
    if args.auth == Some(AuthMode::Token) && config.auth.tokens.is_empty() {
        return Err("--auth token needs at least one --token TOKEN".into());
    }
    // Refuse an exposed server without auth before binding anything.
    config
        .validate()
        .and_then(|()| config.effective_auth(config.listen).map(drop))?;
    Ok(config)
}

/// Runs the server until a signal, then shuts it down in order.
pub(super) async fn serve(args: ServeArgs) -> ExitCode {
    let file = args.config.clone();
    let config = match config(args).await {
        Ok(config) => config,
        Err(err) => {
            match file {
                Some(file) => eprintln!("error: {err} (configuration file {})", file.display()),
                None => eprintln!("error: {err}"),
            }
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %config.data_dir.display(),
        fsync = %config.fsync,
        "starting"
    );
    let server = match Server::start(listener, config).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    // One plain line on stdout, for scripts and tests that start the server on
    // port 0 and need to know where it is.
    println!("ferromq listening on {}", server.local_addr());
    if let Some(http) = server.http_addr() {
        println!("ferromq http listening on {http}");
    }
    if let Some(metrics) = server.metrics_addr() {
        println!("ferromq metrics listening on {metrics}");
    }
    wait_for_signal(&server).await;
    tracing::info!("shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Waits for SIGINT or SIGTERM; on SIGHUP reads the TLS certificate and key again
/// (and says how that went in the log) and goes on waiting.
async fn wait_for_signal(server: &Server) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut hangup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return,
                    _ = term.recv() => return,
                    _ = hangup.recv() => match server.reload_tls() {
                        Ok(true) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                        Ok(false) => tracing::info!("SIGHUP: no TLS to reload"),
                        Err(err) => tracing::error!(
                            cause = %err,
                            "SIGHUP: TLS reload failed; still serving the previous certificate"
                        ),
                    },
                }
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
