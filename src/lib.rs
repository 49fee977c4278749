//! ferromq: a durable message-queue server.
//!
//! Crate map, in the order a request flows through it:
//!
//! - [`codec`]: bytes ⇄ protobuf frames (4-byte big-endian length + message), sans I/O.
//! - [`proto`]: the wire types generated from `proto/ferromq/v1/ferromq.proto`.
//! - [`server`]: accept loop and connections; pipelined requests, coalesced writes.
//! - [`command`]: validation and wire → domain conversion; dispatch to queues.
//! - [`http`]: the IronMQ v3 HTTP/JSON API over the same queues (`--http-listen`).
//! - [`registry`]: queue name → actor handle; queue creation and deletion.
//! - [`queue`]: one actor per queue, the state machine of semantics.md.
//! - [`storage`]: the [`storage::Store`] / [`storage::QueueLog`] traits, their sled
//!   implementation and the group committer.
//! - [`client`]: the async pipelined client used by the CLI, tests and examples.
//! - [`cli`]: the `ferromq` command line (server and client subcommands).
//! - [`bench`]: `ferromq bench`, the load generator (ferromq, beanstalkd, Redis).
//! - [`config`], [`error`]: limits and defaults; errors and their wire codes.

pub mod bench;
pub mod cli;
pub mod client;
pub mod codec;
pub mod command;
pub mod config;
pub mod error;
pub mod http;
pub mod proto;
pub mod queue;
pub mod registry;
pub mod server;
pub mod storage;

pub use client::Client;
pub use config::{Config, DEFAULT_PORT};
pub use server::Server;
