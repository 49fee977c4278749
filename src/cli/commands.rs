//! The client subcommands: each is one or a few calls on one connection, made once
//! by the caller (`cli/mod.rs`).

use std::io::BufRead;

use bytes::Bytes;
use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{print_done, print_info, print_messages, print_push_statuses};
use crate::client::{Client, ClientError, ReserveOptions};
use crate::config::{parse_duration_ms, DEFAULT_PORT};
use crate::proto;
use crate::queue::types::{DEFAULT_MAX_RESERVATIONS, MAX_BATCH};

/// A reserve's `--timeout`: a DURATION (0: the queue's), or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lease {
    /// This many ms.
    Ms(u64),
    /// Lease advice.
    Auto,
}

fn parse_lease(text: &str) -> Result<Lease, String> {
    if text.eq_ignore_ascii_case("auto") {
        return Ok(Lease::Auto);
    }
    parse_duration_ms(text).map(Lease::Ms)
}

/// Options of every client subcommand.
#[derive(Debug, Clone, Args)]
pub(super) struct ClientArgs {
    /// Server address, `HOST:PORT`.
    #[arg(long, default_value_t = format!("127.0.0.1:{DEFAULT_PORT}"))]
    pub(super) addr: String,
    /// One JSON object per result, with the .proto field names.
    #[arg(long)]
    pub(super) json: bool,
    /// The token for a server that requires one. Prefer the environment variable:
    /// a command line is visible to every user of the machine.
    #[arg(long, env = "FERROMQ_TOKEN", hide_env_values = true)]
    pub(super) token: Option<Secret>,
    /// Speak TLS to the server, trusting the system's roots (or --ca-cert).
    #[arg(long)]
    pub(super) tls: bool,
    /// Trust the CA certificates in this PEM file (implies --tls).
    #[arg(long, env = "FERROMQ_CA_CERT", value_name = "PEM")]
    pub(super) ca_cert: Option<std::path::PathBuf>,
    /// The consumer name sent in Hello: `get` shows it in the delivery history
    /// of the messages this run reserves.
    #[arg(long, env = "FERROMQ_CONSUMER", value_name = "NAME")]
    pub(super) consumer: Option<String>,
}

/// `--to QUEUE=BODY` follow-ups, grouped by queue in the order each queue first
/// appears.
fn follow_ups(to: &[String]) -> Result<Vec<proto::FollowUps>, String> {
    let mut targets: Vec<proto::FollowUps> = Vec::new();
    for entry in to {
        let Some((queue, body)) = entry.split_once('=') else {
            return Err(format!("--to {entry:?}: expected QUEUE=BODY"));
        };
        if queue.is_empty() {
            return Err(format!("--to {entry:?}: the queue name is empty"));
        }
        let message = proto::PushMessage {
            body: Bytes::copy_from_slice(body.as_bytes()),
            ..proto::PushMessage::default()
        };
        match targets.iter_mut().find(|t| t.queue == queue) {
            Some(target) => target.messages.push(message),
            None => targets.push(proto::FollowUps {
                queue: queue.to_owned(),
                messages: vec![message],
            }),
        }
    }
    Ok(targets)
}

/// A token from the command line or the environment; `Debug` does not show it.
#[derive(Clone)]
pub(super) struct Secret(pub(super) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Queue settings on the command line; an option not given stays as it is.
#[derive(Debug, Args)]
pub(super) struct SettingsArgs {
    /// Default lease length.
    #[arg(long, value_parser = parse_duration_ms)]
    timeout: Option<u64>,
    /// Seconds from push until a message is removed.
    #[arg(long)]
    expiration_s: Option<u64>,
    /// Delivery attempts kept per message, 0..=100 (0: none; default 10).
    #[arg(long)]
    delivery_history: Option<u32>,
    /// Most reserved messages per message key at once, 0..=10000 (0: no cap;
    /// 1: one at a time, in order, per key).
    #[arg(long)]
    key_max_in_flight: Option<u32>,
    /// Dead-letter queue ("" removes the setting with update-queue).
    #[arg(long)]
    dead_letter: Option<String>,
    /// Reservations before a message goes to the dead-letter queue (1..=1000;
    /// default 10 for a new dead-letter setting).
    #[arg(long)]
    max_reservations: Option<u32>,
    /// The queue's type, fixed at creation: pull (default), unicast or multicast
    /// (the default with --subscriber).
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<QueueTypeArg>,
    /// Push queues: a subscriber, `NAME=URL` (repeat for more). update-queue:
    /// the list replaces the queue's.
    #[arg(long = "subscriber", value_name = "NAME=URL")]
    subscribers: Vec<String>,
    /// Push queues, update-queue: add a subscriber, or replace the one of its
    /// name, `NAME=URL`.
    #[arg(long = "add-subscriber", value_name = "NAME=URL")]
    add_subscribers: Vec<String>,
    /// Push queues, update-queue: remove the subscriber of this name.
    #[arg(long = "remove-subscriber", value_name = "NAME")]
    remove_subscribers: Vec<String>,
    /// Push queues: a header sent to one of the subscribers given here,
    /// `SUBSCRIBER:HEADER=VALUE` (repeat for more).
    #[arg(long = "subscriber-header", value_name = "SUBSCRIBER:HEADER=VALUE")]
    subscriber_headers: Vec<String>,
    /// Push queues: tries after the first (0..=100; default 3).
    #[arg(long)]
    retries: Option<u32>,
    /// Push queues: time between tries, whole seconds (3s..=1d; default 60s).
    #[arg(long, value_parser = parse_duration_ms)]
    retries_delay: Option<u64>,
    /// Push queues: where messages whose retries ran out are reported ("" for
    /// none).
    #[arg(long)]
    error_queue: Option<String>,
}

/// Values of `--type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum QueueTypeArg {
    Pull,
    Unicast,
    Multicast,
}

/// `--header NAME=VALUE` options as push headers.
fn push_headers(headers: &[String]) -> Result<Vec<proto::Header>, String> {
    headers
        .iter()
        .map(|text| {
            let (name, value) = split_pair(text, "--header")?;
            Ok(proto::Header {
                name: name.to_owned(),
                value: value.to_owned(),
            })
        })
        .collect()
}

/// `NAME=VALUE` split at the first `=`.
fn split_pair<'a>(text: &'a str, what: &str) -> Result<(&'a str, &'a str), String> {
    text.split_once('=')
        .ok_or_else(|| format!("{what} {text:?} must be NAME=VALUE"))
}

impl SettingsArgs {
    /// The settings on the wire, where an empty or zero field is unset: the default
    /// for a new queue, unchanged for an update (so each option changes only its
    /// own part).
    fn to_proto(&self, creating: bool) -> Result<proto::QueueSettings, String> {
        let dead_letter = match (&self.dead_letter, self.max_reservations) {
            (None, None) => None,
            (Some(queue), _) if queue.is_empty() && self.max_reservations.is_some() => {
                return Err(
                    "--dead-letter \"\" removes the dead-letter setting; it takes no --max-reservations"
                        .into(),
                )
            }
            (queue, max) => Some(proto::DeadLetter {
                queue: queue.clone().unwrap_or_default(),
                max_reservations: max
                    .unwrap_or(if creating { DEFAULT_MAX_RESERVATIONS } else { 0 }),
            }),
        };
        Ok(proto::QueueSettings {
            message_timeout_ms: self.timeout.unwrap_or(0),
            message_expiration_s: self.expiration_s.unwrap_or(0),
            delivery_history: self.delivery_history,
            key_max_in_flight: self.key_max_in_flight,
            dead_letter,
            push: self.push()?,
        })
    }

    /// The push settings, if any option gives one.
    fn push(&self) -> Result<Option<proto::PushSettings>, String> {
        let mut headers: Vec<(String, proto::Header)> = Vec::new();
        for text in &self.subscriber_headers {
            let (subscriber, header) = text.split_once(':').ok_or_else(|| {
                format!("--subscriber-header {text:?} must be SUBSCRIBER:HEADER=VALUE")
            })?;
            let (name, value) = split_pair(header, "--subscriber-header")?;
            headers.push((
                subscriber.to_owned(),
                proto::Header {
                    name: name.to_owned(),
                    value: value.to_owned(),
                },
            ));
        }
        let list = |texts: &[String], what: &str| -> Result<Vec<proto::Subscriber>, String> {
            texts
                .iter()
                .map(|text| {
                    let (name, url) = split_pair(text, what)?;
                    Ok(proto::Subscriber {
                        name: name.to_owned(),
                        url: url.to_owned(),
                        headers: headers
                            .iter()
                            .filter(|(s, _)| s == name)
                            .map(|(_, h)| h.clone())
                            .collect(),
                    })
                })
                .collect()
        };
        let retries_delay_s = match self.retries_delay {
            Some(ms) if ms % 1000 != 0 => {
                return Err("--retries-delay is in whole seconds".into());
            }
            Some(ms) => ms / 1000,
            None => 0,
        };
        let push = proto::PushSettings {
            r#type: match self.kind {
                None => proto::QueueType::Unspecified,
                Some(QueueTypeArg::Pull) => proto::QueueType::Pull,
                Some(QueueTypeArg::Unicast) => proto::QueueType::Unicast,
                Some(QueueTypeArg::Multicast) => proto::QueueType::Multicast,
            }
            .into(),
            subscribers: list(&self.subscribers, "--subscriber")?,
            retries: self.retries,
            retries_delay_s,
            error_queue: self.error_queue.clone(),
            add_subscribers: list(&self.add_subscribers, "--add-subscriber")?,
            remove_subscribers: self.remove_subscribers.clone(),
        };
        Ok((push != proto::PushSettings::default()).then_some(push))
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum ClientCommand {
    /// Push messages: bodies as arguments, or `-` to push each line of stdin.
    Push {
        #[command(flatten)]
        conn: ClientArgs,
        /// The queue's name.
        queue: String,
        /// Message bodies; `-` reads one body per line from stdin.
        #[arg(required = true)]
        bodies: Vec<String>,
        /// Delay before the messages become available.
        #[arg(long, value_parser = parse_duration_ms, default_value = "0")]
        delay: u64,
        /// Push queues: a header sent with each delivery, `NAME=VALUE` (up to 5).
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
        /// Priority, 0..=15: lower is reserved first; 8 when not given.
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=15))]
        priority: Option<u32>,
        /// Dispatch key (a tenant, a customer): reserves take keys in turn.
        #[arg(long)]
        key: Option<String>,
    },
    /// Reserve messages.
    Reserve {
        #[command(flatten)]
        conn: ClientArgs,
        /// The queue's name.
        queue: String,
        /// How many, 1..=100.
        #[arg(long, default_value_t = 1)]
        n: u32,
        /// Lease length (default: the queue's), or `auto`: twice the queue's
        /// p99 processing time (`info`), the queue's default until it has
        /// enough samples.
        #[arg(long, value_parser = parse_lease, default_value = "0")]
        timeout: Lease,
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
        conn: ClientArgs,
        /// The queue's name.
        queue: String,
        /// The message id.
        id: u64,
        /// Required if the message is reserved.
        #[arg(long)]
        reservation_id: Option<u64>,
        /// Push queues: acknowledge as this subscriber a delivery it answered with
        /// 202 (with the delivery's --reservation-id).
        #[arg(long, requires = "reservation_id")]
        subscriber: Option<String>,
    },
    /// Push queues: a message's delivery status with each subscriber.
    PushStatuses {
        #[command(flatten)]
        conn: ClientArgs,
        /// The queue's name.
        queue: String,
        /// The message id.
        id: u64,
    },
    /// Extend a reservation; prints the new reservation id.
    Touch {
        #[command(flatten)]
        conn: ClientArgs,
        /// The queue's name.
        queue: String,
        /// The message id.
        id: u64,
        /// The reservation id the message was reserved (or last touched) with.
        #[arg(long)]
        reservation_id: u64,
        /// New lease length from now (default: the queue's).
        #[arg(long, value_parser = parse_duration_ms, default_value = "0")]
        timeout: u64,
    },
    /// Give a reserved message back to the front of the queue.
    Release {
        #[command(flatten)]
        conn: ClientArgs,
        /// The queue's name.
        queue: String,
        /// The message id.
        id: u64,
        /// The reservation id the message was reserved (or last touched) with.
        #[arg(long)]
        reservation_id: u64,
        /// Available again after this long (`0`: at once).
        #[arg(long, value_parser = parse_duration_ms, default_value = "0")]
        delay: u64,
    },
    /// Show available messages without reserving them.
    Peek {
        #[command(flatten)]
        conn: ClientArgs,
        /// The queue's name.
        queue: String,
        /// How many messages, 1..=100.
        #[arg(long, default_value_t = 1)]
        n: u32,
    },
    /// Show one message by id.
    Get {
        #[command(flatten)]
        conn: ClientArgs,
        /// The queue's name.
        queue: String,
        /// The message id.
        id: u64,
    },
    /// Show a queue's counters and settings.
    Info {
        #[command(flatten)]
        conn: ClientArgs,
        /// The queue's name.
        queue: String,
    },
    /// Whether the server is ready (exit status 0) or not (1, with the reasons;
    /// also when it cannot be reached): for scripts and orchestrators. Needs no
    /// token.
    Health {
        #[command(flatten)]
        conn: ClientArgs,
    },
    /// Show the server's figures: version, uptime, connections, queues,
    /// messages, totals and rates, group commit, data directory size.
    Stats {
        #[command(flatten)]
        conn: ClientArgs,
    },
    /// A live per-queue view, refreshed like `top`: depth, in flight, delayed,
    /// oldest message, push/reserve/delete rates (Ctrl-C ends it).
    Top {
        #[command(flatten)]
        conn: ClientArgs,
        /// Only queues whose names start with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Time between frames.
        #[arg(long, value_parser = parse_duration_ms, default_value = "2s")]
        interval: u64,
        /// Stop after this many frames (default: until Ctrl-C).
        #[arg(long)]
        frames: Option<u64>,
        /// Queues shown per frame.
        #[arg(long, default_value_t = 20)]
        rows: usize,
        /// Order of the queues.
        #[arg(long, value_enum, default_value = "size")]
        sort: super::top::SortBy,
    },
    /// List queues.
    Queues {
        #[command(flatten)]
        conn: ClientArgs,
        /// Only queues whose names start with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Create a queue with settings (push creates queues with the defaults).
    CreateQueue {
        #[command(flatten)]
        conn: ClientArgs,
        /// The queue's name.
        queue: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Change a queue's settings; options not given stay as they are.
    UpdateQueue {
        #[command(flatten)]
        conn: ClientArgs,
        /// The queue's name.
        queue: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Move available messages (e.g. from a dead-letter queue) to another queue.
    Redrive {
        #[command(flatten)]
        conn: ClientArgs,
        /// The queue's name.
        queue: String,
        /// The queue to move them to.
        #[arg(long)]
        to: String,
        /// How many, 1..=100.
        #[arg(long, default_value_t = 100)]
        n: u32,
    },
    /// Atomic hand-off: delete a reserved message and push follow-ups to other
    /// queues, all or nothing (after a crash: the old message, or every
    /// follow-up, never both, never neither).
    HandOff {
        #[command(flatten)]
        conn: ClientArgs,
        /// The queue of the message to hand off.
        queue: String,
        /// The message id.
        id: u64,
        /// The reservation id the message was reserved (or last touched) with.
        #[arg(long)]
        reservation_id: u64,
        /// A follow-up: `QUEUE=BODY` (queue names have no `=`); repeat for
        /// more, in order. Follow-ups to one queue go in one group.
        #[arg(long = "to", value_name = "QUEUE=BODY", required = true)]
        to: Vec<String>,
    },
    /// Remove every message of a queue.
    Clear {
        #[command(flatten)]
        conn: ClientArgs,
        /// The queue's name.
        queue: String,
    },
    /// Delete a queue and its messages.
    DeleteQueue {
        #[command(flatten)]
        conn: ClientArgs,
        /// The queue's name.
        queue: String,
    },
}

impl ClientCommand {
    /// The connection options every subcommand has.
    pub(super) fn client_args(&self) -> &ClientArgs {
        match self {
            Self::Push { conn, .. }
            | Self::Reserve { conn, .. }
            | Self::Delete { conn, .. }
            | Self::Touch { conn, .. }
            | Self::Release { conn, .. }
            | Self::Peek { conn, .. }
            | Self::Get { conn, .. }
            | Self::PushStatuses { conn, .. }
            | Self::Info { conn, .. }
            | Self::Stats { conn }
            | Self::Top { conn, .. }
            | Self::Health { conn }
            | Self::Queues { conn, .. }
            | Self::CreateQueue { conn, .. }
            | Self::UpdateQueue { conn, .. }
            | Self::Redrive { conn, .. }
            | Self::HandOff { conn, .. }
            | Self::Clear { conn, .. }
            | Self::DeleteQueue { conn, .. } => conn,
        }
    }

    /// Whether this is `health`, which needs no Hello.
    pub(super) fn is_health(&self) -> bool {
        matches!(self, Self::Health { .. })
    }

    /// Usage errors clap cannot see, found before connecting.
    pub(super) fn check(&self) -> Result<(), String> {
        match self {
            Self::CreateQueue { settings, .. } => settings.to_proto(true).map(drop),
            Self::UpdateQueue { settings, .. } => settings.to_proto(false).map(drop),
            Self::Push { headers, .. } => push_headers(headers).map(drop),
            Self::HandOff { to, .. } => follow_ups(to).map(drop),
            _ => Ok(()),
        }
    }

    /// Runs the subcommand on `client` and prints its result.
    pub(super) async fn run(self, client: &Client, json: bool) -> Result<Outcome, ClientError> {
        match self {
            Self::Health { .. } => {
                let health = client.health().await?;
                let text = if health.ready {
                    "ready".to_owned()
                } else {
                    format!("not ready: {}", health.reasons.join("; "))
                };
                print_done(
                    json,
                    json!({"ready": health.ready, "reasons": health.reasons}),
                    &text,
                );
                return Ok(if health.ready {
                    Outcome::Done
                } else {
                    Outcome::NotReady
                });
            }
            Self::Push {
                queue,
                bodies,
                delay,
                headers,
                priority,
                key,
                ..
            } => {
                let push_headers = push_headers(&headers).map_err(ClientError::Protocol)?;
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
                            push_headers: push_headers.clone(),
                            priority,
                            key: key.clone().unwrap_or_default(),
                        })
                        .collect();
                    ids.extend(client.push_messages(&queue, messages).await?);
                }
                let list: Vec<String> = ids.iter().map(u64::to_string).collect();
                print_done(
                    json,
                    json!({ "ids": ids }),
                    &format!("pushed {} message(s): {}", ids.len(), list.join(" ")),
                );
            }
            Self::Reserve {
                queue,
                n,
                timeout,
                wait,
                delete,
                ..
            } => {
                let options = ReserveOptions {
                    n,
                    timeout_ms: match timeout {
                        Lease::Ms(ms) => ms,
                        Lease::Auto => 0,
                    },
                    wait_ms: wait,
                    delete,
                    auto_timeout: timeout == Lease::Auto,
                };
                print_messages(&client.reserve(&queue, options).await?, json);
            }
            Self::Delete {
                queue,
                id,
                reservation_id,
                subscriber: Some(subscriber),
                ..
            } => {
                let rid = reservation_id.unwrap_or(0);
                let deleted = client.acknowledge(&queue, id, rid, &subscriber).await?;
                let text = if deleted {
                    format!("acknowledged {id} for {subscriber}: delivered to every subscriber, deleted")
                } else {
                    format!("acknowledged {id} for {subscriber}")
                };
                print_done(
                    json,
                    json!({ "acknowledged": id, "deleted": deleted }),
                    &text,
                );
            }
            Self::Delete {
                queue,
                id,
                reservation_id,
                subscriber: None,
                ..
            } => {
                client.delete(&queue, id, reservation_id).await?;
                print_done(json, json!({ "deleted": id }), &format!("deleted {id}"));
            }
            Self::PushStatuses { queue, id, .. } => {
                print_push_statuses(&client.push_statuses(&queue, id).await?, json);
            }
            Self::Touch {
                queue,
                id,
                reservation_id,
                timeout,
                ..
            } => {
                let touched = client.touch(&queue, id, reservation_id, timeout).await?;
                print_done(
                    json,
                    json!({
                        "reservation_id": touched.reservation_id,
                        "reserved_until_ms": touched.reserved_until_ms,
                    }),
                    &format!(
                        "reservation_id={} reserved_until_ms={}",
                        touched.reservation_id, touched.reserved_until_ms
                    ),
                );
            }
            Self::Release {
                queue,
                id,
                reservation_id,
                delay,
                ..
            } => {
                client.release(&queue, id, reservation_id, delay).await?;
                print_done(json, json!({ "released": id }), &format!("released {id}"));
            }
            Self::Peek { queue, n, .. } => print_messages(&client.peek(&queue, n).await?, json),
            Self::Get { queue, id, .. } => print_messages(&[client.get(&queue, id).await?], json),
            Self::Info { queue, .. } => print_info(&client.info(&queue).await?, json),
            Self::Stats { .. } => super::top::stats(client, json).await?,
            Self::Top {
                prefix,
                interval,
                frames,
                rows,
                sort,
                ..
            } => {
                let options = super::top::TopOptions {
                    prefix,
                    interval: std::time::Duration::from_millis(interval.max(100)),
                    frames,
                    rows,
                    sort,
                };
                super::top::top(client, &options, json).await?;
            }
            Self::Queues { prefix, .. } => {
                let mut cursor = String::new();
                loop {
                    let page = client.list_queues(&prefix, &cursor, 100).await?;
                    for name in &page.names {
                        print_done(json, json!({ "name": name }), name);
                    }
                    if page.next_cursor.is_empty() {
                        break;
                    }
                    cursor = page.next_cursor;
                }
            }
            Self::CreateQueue {
                queue, settings, ..
            } => {
                let settings = settings.to_proto(true).map_err(ClientError::Protocol)?;
                let created = client.create_queue(&queue, settings).await.map_err(|err| {
                    match err {
                        ClientError::Server { code, message } if code == proto::ErrorCode::QueueExists => {
                            ClientError::Server {
                                code,
                                message: format!(
                                    "{message} (change its settings with `ferromq update-queue {queue} ...`)"
                                ),
                            }
                        }
                        other => other,
                    }
                })?;
                print_info(&created, json);
            }
            Self::UpdateQueue {
                queue, settings, ..
            } => {
                let settings = settings.to_proto(false).map_err(ClientError::Protocol)?;
                print_info(&client.update_queue(&queue, settings).await?, json);
            }
            Self::HandOff {
                queue,
                id,
                reservation_id,
                to,
                ..
            } => {
                let targets = follow_ups(&to).map_err(ClientError::Protocol)?;
                let ids = client
                    .hand_off(&queue, id, reservation_id, targets.clone())
                    .await?;
                let lines: Vec<String> = targets
                    .iter()
                    .zip(&ids)
                    .map(|(target, ids)| {
                        let list: Vec<String> = ids.iter().map(u64::to_string).collect();
                        format!("{}: {}", target.queue, list.join(" "))
                    })
                    .collect();
                let shown: Vec<serde_json::Value> = targets
                    .iter()
                    .zip(&ids)
                    .map(|(target, ids)| json!({ "queue": target.queue, "ids": ids }))
                    .collect();
                print_done(
                    json,
                    json!({ "handed_off": id, "targets": shown }),
                    &format!("handed off {id}; follow-ups {}", lines.join("; ")),
                );
            }
            Self::Redrive { queue, to, n, .. } => {
                let count = client.redrive(&queue, &to, n).await?;
                print_done(
                    json,
                    json!({ "moved": count }),
                    &format!("moved {count} message(s) to {to}"),
                );
            }
            Self::Clear { queue, .. } => {
                let count = client.clear_queue(&queue).await?;
                print_done(
                    json,
                    json!({ "count": count }),
                    &format!("cleared {count} message(s)"),
                );
            }
            Self::DeleteQueue { queue, .. } => {
                client.delete_queue(&queue).await?;
                print_done(
                    json,
                    json!({ "deleted_queue": queue }),
                    &format!("deleted queue {queue}"),
                );
            }
        }
        Ok(Outcome::Done)
    }
}

/// How a subcommand that got its answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Exit status 0.
    Done,
    /// `health`: the server is not ready; exit status 1.
    NotReady,
}

fn read_stdin_lines() -> Result<Vec<Bytes>, ClientError> {
    let mut bodies = Vec::new();
    for line in std::io::stdin().lock().lines() {
        bodies.push(Bytes::from(line?));
    }
    Ok(bodies)
}
