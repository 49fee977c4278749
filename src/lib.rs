//! ferromq: a durable message-queue server.
//!
//! Crate map, in the order a request flows through it:
//!
//! - [`codec`]: bytes ⇄ protobuf frames (4-byte big-endian length + message), sans I/O.
//! - [`proto`]: the wire types generated from `proto/ferromq/v1/ferromq.proto`.
//! - [`binary`]: the binary protocol front end: connections, pipelined requests,
//!   proto ⇄ domain and error codes.
//! - [`http`]: the IronMQ v3 HTTP/JSON front end (`--http-listen`).
//! - [`service`]: the one API both front ends call; every limit is checked here.
//! - [`queue`]: the queue registry, one actor per queue, and the pure state machine
//!   each actor drives.
//! - [`storage`]: the [`storage::Store`] / [`storage::QueueLog`] traits, their sled
//!   implementation, the group committer and the id counter.
//! - [`server`]: starts and stops all of the above; [`net`] is the accept loop both
//!   front ends share.
//! - [`client`]: the async pipelined client used by the CLI, tests, examples and
//!   the load generator (`crates/ferromq-bench`).
//! - [`cli`]: the `ferromq` command line (server and client subcommands).
//! - [`auth`]: the tokens of both front ends and what each may reach.
//! - [`tls`]: TLS on both ports (certificate reload on SIGHUP) and in the client.
//! - [`config`], [`error`]: limits and defaults; the queue layer's errors.

pub mod auth;
pub mod binary;
pub mod cli;
pub mod client;
pub mod codec;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod proto;
pub mod push;
pub mod queue;
pub mod server;
pub mod service;
pub mod storage;
pub mod telemetry;
pub mod tls;

pub use client::Client;
pub use config::{Config, DEFAULT_PORT};
pub use server::Server;
