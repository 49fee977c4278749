//! The `ferromq` command line: `serve` runs the server; every other subcommand is
//! a client call against `--addr`.
//!
//! Output is human-readable by default; `--json` prints one JSON object per result
//! (per message for reserve/peek) with the .proto field names, for scripts. Bodies
//! are printed as UTF-8 (invalid bytes replaced). On an error the CLI prints
//! `error: CODE: message` to stderr and exits with status 1 (2 for usage errors).
//!
//! Durations (`--timeout`, `--wait`, `--delay`) take a unit: `500ms`, `30s`, `5m`,
//! `2h`; a bare number is milliseconds, like the wire protocol.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::client::{Client, ClientError, ReserveOptions};
use crate::config::{self, Config};
use crate::proto;
use crate::queue::types::MAX_BATCH;
use crate::server::Server;
use crate::storage::FsyncMode;

/// ferromq: a durable message-queue server and its command-line client.
#[derive(Debug, Parser)]
#[command(name = "ferromq", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Load-generate against a running server (ferromq, beanstalkd or Redis) and
    /// report throughput, latency percentiles and server CPU/RSS.
    Bench(Box<crate::bench::BenchArgs>),
    /// Push messages: bodies as arguments, or `-` to push each line of stdin.
    Push {
        #[command(flatten)]
        conn: Conn,
        queue: String,
        /// Message bodies; `-` reads one body per line from stdin.
        #[arg(required = true)]
        bodies: Vec<String>,
        /// Delay before the messages become available.
        #[arg(long, value_parser = parse_duration_ms, default_value = "0")]
        delay: u64,
    },
    /// Reserve messages.
    Reserve {
        #[command(flatten)]
        conn: Conn,
        queue: String,
        /// How many, 1..=100.
        #[arg(long, default_value_t = 1)]
        n: u32,
        /// Lease length (default: the queue's).
        #[arg(long, value_parser = parse_duration_ms, default_value = "0")]
        timeout: u64,
        /// Long-poll wait, up to 30s.
        #[arg(long, value_parser = parse_duration_ms, default_value = "0")]
        wait: u64,
        /// Delete the messages as they are reserved.
        #[arg(long)]
        delete: bool,
    },
    /// Delete a message.
    Delete {
        #[command(flatten)]
        conn: Conn,
        queue: String,
        id: u64,
        /// Required if the message is reserved.
        #[arg(long)]
        reservation_id: Option<u64>,
    },
    /// Extend a reservation; prints the new reservation id.
    Touch {
        #[command(flatten)]
        conn: Conn,
        queue: String,
        id: u64,
        #[arg(long)]
        reservation_id: u64,
        /// New lease length from now (default: the queue's).
        #[arg(long, value_parser = parse_duration_ms, default_value = "0")]
        timeout: u64,
    },
    /// Give a reserved message back to the front of the queue.
    Release {
        #[command(flatten)]
        conn: Conn,
        queue: String,
        id: u64,
        #[arg(long)]
        reservation_id: u64,
        #[arg(long, value_parser = parse_duration_ms, default_value = "0")]
        delay: u64,
    },
    /// Show available messages without reserving them.
    Peek {
        #[command(flatten)]
        conn: Conn,
        queue: String,
        #[arg(long, default_value_t = 1)]
        n: u32,
    },
    /// Show one message by id.
    Get {
        #[command(flatten)]
        conn: Conn,
        queue: String,
        id: u64,
    },
    /// Show a queue's counters and settings.
    Info {
        #[command(flatten)]
        conn: Conn,
        queue: String,
    },
    /// Show server-wide counters: uptime, queues, group-commit flushes, fsync mode.
    Stats {
        #[command(flatten)]
        conn: Conn,
    },
    /// List queues.
    Queues {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Create a queue with settings (push creates queues with the defaults).
    CreateQueue {
        #[command(flatten)]
        conn: Conn,
        queue: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Change a queue's settings; options not given stay as they are.
    UpdateQueue {
        #[command(flatten)]
        conn: Conn,
        queue: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Move available messages (e.g. from a dead-letter queue) to another queue.
    Redrive {
        #[command(flatten)]
        conn: Conn,
        queue: String,
        /// The queue to move them to.
        #[arg(long)]
        to: String,
        /// How many, 1..=100.
        #[arg(long, default_value_t = 100)]
        n: u32,
    },
    /// Remove every message of a queue.
    Clear {
        #[command(flatten)]
        conn: Conn,
        queue: String,
    },
    /// Delete a queue and its messages.
    DeleteQueue {
        #[command(flatten)]
        conn: Conn,
        queue: String,
    },
}

/// Queue settings on the command line.
#[derive(Debug, Args)]
struct SettingsArgs {
    /// Default lease length.
    #[arg(long, value_parser = parse_duration_ms)]
    timeout: Option<u64>,
    /// Seconds from push until a message is removed.
    #[arg(long)]
    expiration_s: Option<u64>,
    /// Dead-letter queue ("" removes the setting with update-queue).
    #[arg(long)]
    dead_letter: Option<String>,
    /// Reservations before a message goes to the dead-letter queue (1..=1000).
    #[arg(long, default_value_t = 10)]
    max_reservations: u32,
}

impl SettingsArgs {
    fn to_proto(&self) -> proto::QueueSettings {
        proto::QueueSettings {
            message_timeout_ms: self.timeout.unwrap_or(0),
            message_expiration_s: self.expiration_s.unwrap_or(0),
            dead_letter: self.dead_letter.as_ref().map(|queue| proto::DeadLetter {
                queue: queue.clone(),
                max_reservations: self.max_reservations,
            }),
        }
    }
}

/// Options of every client subcommand.
#[derive(Debug, Args)]
struct Conn {
    /// Server address.
    #[arg(long, default_value_t = default_addr())]
    addr: SocketAddr,
    /// One JSON object per result, with the .proto field names.
    #[arg(long)]
    json: bool,
}

fn default_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], config::DEFAULT_PORT))
}

/// Options of `ferromq serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the binary protocol.
    #[arg(long, default_value_t = default_addr())]
    listen: SocketAddr,
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
    /// sled page-cache budget in MiB.
    #[arg(long, default_value_t = config::DEFAULT_CACHE_BYTES / (1024 * 1024))]
    cache_mb: u64,
    /// Also serve the IronMQ v3 HTTP/JSON API here (off unless given; e.g.
    /// 127.0.0.1:8080).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// A token the HTTP API accepts: `TOKEN` (every project) or
    /// `TOKEN=PROJECT[,PROJECT...]`. Repeat for more tokens.
    #[arg(long = "http-token", value_name = "TOKEN[=PROJECTS]")]
    http_tokens: Vec<config::HttpAuth>,
    /// Serve the HTTP API without authentication (trusted networks only).
    #[arg(long)]
    http_no_auth: bool,
}

/// Parses `500ms`, `30s`, `5m`, `2h` or a bare number of milliseconds.
pub(crate) fn parse_duration_ms(text: &str) -> Result<u64, String> {
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

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli.command))
}

async fn bench(args: crate::bench::BenchArgs) -> ExitCode {
    let json = args.json;
    match crate::bench::run(args).await {
        Ok(report) => {
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.summary());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> ExitCode {
    let result = match command {
        Command::Serve(args) => return serve(args).await,
        Command::Bench(args) => return bench(*args).await,
        other => client_command(other).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(ClientError::Server { code, message }) => {
            eprintln!("error: {}: {message}", code.as_str_name());
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let config = Config {
        listen: args.listen,
        data_dir: args.data_dir,
        fsync: args.fsync,
        max_frame: args.max_frame,
        max_body: args.max_body,
        max_connections: args.max_connections,
        max_in_flight: args.max_in_flight,
        cache_bytes: args.cache_mb.saturating_mul(1024 * 1024),
        http_listen: args.http_listen,
        http_auth: config::HttpAuth {
            tokens: args
                .http_tokens
                .into_iter()
                .flat_map(|auth| auth.tokens)
                .collect(),
            disabled: args.http_no_auth,
        },
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(data_dir = %config.data_dir.display(), fsync = %config.fsync, "starting");
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
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn client_command(command: Command) -> Result<(), ClientError> {
    match command {
        Command::Serve(_) | Command::Bench(_) => Ok(()),
        Command::Push {
            conn,
            queue,
            bodies,
            delay,
        } => {
            let client = Client::connect(conn.addr).await?;
            let bodies = if bodies == ["-"] {
                read_stdin_lines()?
            } else {
                bodies.into_iter().map(Bytes::from).collect()
            };
            let mut ids = Vec::with_capacity(bodies.len());
            for chunk in bodies.chunks(MAX_BATCH) {
                let messages = chunk
                    .iter()
                    .map(|body| proto::PushMessage {
                        body: body.clone(),
                        delay_ms: delay,
                    })
                    .collect();
                ids.extend(client.push_messages(&queue, messages).await?);
            }
            if conn.json {
                println!("{}", json!({ "ids": ids }));
            } else {
                let list: Vec<String> = ids.iter().map(u64::to_string).collect();
                println!("pushed {} message(s): {}", ids.len(), list.join(" "));
            }
            Ok(())
        }
        Command::Reserve {
            conn,
            queue,
            n,
            timeout,
            wait,
            delete,
        } => {
            let client = Client::connect(conn.addr).await?;
            let options = ReserveOptions {
                n,
                timeout_ms: timeout,
                wait_ms: wait,
                delete,
            };
            print_messages(&client.reserve(&queue, options).await?, conn.json);
            Ok(())
        }
        Command::Delete {
            conn,
            queue,
            id,
            reservation_id,
        } => {
            let client = Client::connect(conn.addr).await?;
            client.delete(&queue, id, reservation_id).await?;
            print_done(
                conn.json,
                json!({ "deleted": id }),
                &format!("deleted {id}"),
            );
            Ok(())
        }
        Command::Touch {
            conn,
            queue,
            id,
            reservation_id,
            timeout,
        } => {
            let client = Client::connect(conn.addr).await?;
            let touched = client.touch(&queue, id, reservation_id, timeout).await?;
            print_done(
                conn.json,
                json!({
                    "reservation_id": touched.reservation_id,
                    "reserved_until_ms": touched.reserved_until_ms,
                }),
                &format!(
                    "reservation_id={} reserved_until_ms={}",
                    touched.reservation_id, touched.reserved_until_ms
                ),
            );
            Ok(())
        }
        Command::Release {
            conn,
            queue,
            id,
            reservation_id,
            delay,
        } => {
            let client = Client::connect(conn.addr).await?;
            client.release(&queue, id, reservation_id, delay).await?;
            print_done(
                conn.json,
                json!({ "released": id }),
                &format!("released {id}"),
            );
            Ok(())
        }
        Command::Peek { conn, queue, n } => {
            let client = Client::connect(conn.addr).await?;
            print_messages(&client.peek(&queue, n).await?, conn.json);
            Ok(())
        }
        Command::Get { conn, queue, id } => {
            let client = Client::connect(conn.addr).await?;
            print_messages(&[client.get(&queue, id).await?], conn.json);
            Ok(())
        }
        Command::CreateQueue {
            conn,
            queue,
            settings,
        } => {
            let client = Client::connect(conn.addr).await?;
            let info = client.create_queue(&queue, settings.to_proto()).await?;
            print_info(&info, conn.json);
            Ok(())
        }
        Command::UpdateQueue {
            conn,
            queue,
            settings,
        } => {
            let client = Client::connect(conn.addr).await?;
            let info = client.update_queue(&queue, settings.to_proto()).await?;
            print_info(&info, conn.json);
            Ok(())
        }
        Command::Redrive { conn, queue, to, n } => {
            let client = Client::connect(conn.addr).await?;
            let count = client.redrive(&queue, &to, n).await?;
            print_done(
                conn.json,
                json!({ "moved": count }),
                &format!("moved {count} message(s) to {to}"),
            );
            Ok(())
        }
        Command::Info { conn, queue } => {
            let client = Client::connect(conn.addr).await?;
            print_info(&client.info(&queue).await?, conn.json);
            Ok(())
        }
        Command::Stats { conn } => {
            let client = Client::connect(conn.addr).await?;
            let stats = client.server_stats().await?;
            if conn.json {
                println!(
                    "{}",
                    json!({"uptime_ms": stats.uptime_ms, "queues": stats.queues,
                           "flushes": stats.flushes, "fsync": stats.fsync})
                );
            } else {
                println!(
                    "uptime_ms={} queues={} flushes={} fsync={}",
                    stats.uptime_ms, stats.queues, stats.flushes, stats.fsync
                );
            }
            Ok(())
        }
        Command::Queues { conn, prefix } => {
            let client = Client::connect(conn.addr).await?;
            let mut cursor = String::new();
            loop {
                let page = client.list_queues(&prefix, &cursor, 100).await?;
                for name in &page.names {
                    if conn.json {
                        println!("{}", json!({ "name": name }));
                    } else {
                        println!("{name}");
                    }
                }
                if page.next_cursor.is_empty() {
                    return Ok(());
                }
                cursor = page.next_cursor;
            }
        }
        Command::Clear { conn, queue } => {
            let client = Client::connect(conn.addr).await?;
            let count = client.clear_queue(&queue).await?;
            print_done(
                conn.json,
                json!({ "count": count }),
                &format!("cleared {count} message(s)"),
            );
            Ok(())
        }
        Command::DeleteQueue { conn, queue } => {
            let client = Client::connect(conn.addr).await?;
            client.delete_queue(&queue).await?;
            print_done(
                conn.json,
                json!({ "deleted_queue": queue }),
                &format!("deleted queue {queue}"),
            );
            Ok(())
        }
    }
}

fn read_stdin_lines() -> Result<Vec<Bytes>, ClientError> {
    let mut bodies = Vec::new();
    for line in std::io::stdin().lock().lines() {
        bodies.push(Bytes::from(line?));
    }
    Ok(bodies)
}

fn print_done(as_json: bool, value: serde_json::Value, text: &str) {
    if as_json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

fn print_info(info: &proto::QueueInfo, as_json: bool) {
    let settings = info.settings.clone().unwrap_or_default();
    let dead_letter = settings.dead_letter.as_ref();
    if as_json {
        println!(
            "{}",
            json!({
                "name": info.name,
                "size": info.size,
                "available": info.available,
                "reserved": info.reserved,
                "delayed": info.delayed,
                "total_pushed": info.total_pushed,
                "settings": {
                    "message_timeout_ms": settings.message_timeout_ms,
                    "message_expiration_s": settings.message_expiration_s,
                    "dead_letter": dead_letter.map(|d| json!({
                        "queue": d.queue,
                        "max_reservations": d.max_reservations,
                    })),
                },
                "created_at_ms": info.created_at_ms,
                "waiting": info.waiting,
            })
        );
    } else {
        let dead_letter = dead_letter.map_or_else(String::new, |d| {
            format!(
                " dead_letter={} max_reservations={}",
                d.queue, d.max_reservations
            )
        });
        println!(
            "{}: size={} available={} reserved={} delayed={} total_pushed={} waiting={} message_timeout_ms={} message_expiration_s={}{dead_letter}",
            info.name,
            info.size,
            info.available,
            info.reserved,
            info.delayed,
            info.total_pushed,
            info.waiting,
            settings.message_timeout_ms,
            settings.message_expiration_s
        );
    }
}

fn state_name(state: i32) -> &'static str {
    proto::MessageState::try_from(state)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN")
}

fn print_messages(messages: &[proto::Message], as_json: bool) {
    if messages.is_empty() && !as_json {
        println!("no messages");
    }
    for m in messages {
        let body = String::from_utf8_lossy(&m.body);
        if as_json {
            println!(
                "{}",
                json!({
                    "id": m.id,
                    "body": body,
                    "reserved_count": m.reserved_count,
                    "reservation_id": m.reservation_id,
                    "reserved_until_ms": m.reserved_until_ms,
                    "pushed_at_ms": m.pushed_at_ms,
                    "available_at_ms": m.available_at_ms,
                    "expires_at_ms": m.expires_at_ms,
                    "state": state_name(m.state),
                })
            );
        } else {
            let reservation = if m.reservation_id != 0 {
                format!(" reservation_id={}", m.reservation_id)
            } else {
                String::new()
            };
            println!(
                "id={}{} state={} reserved_count={} body={body}",
                m.id,
                reservation,
                state_name(m.state),
                m.reserved_count
            );
        }
    }
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
