//! Integration tests: a real server on an ephemeral 127.0.0.1 port, over TCP.

mod auth;
mod bad_input;
mod client;
mod dashboard;
mod dead_letters;
mod hand_off;
mod health;
mod history;
#[path = "../hook/mod.rs"]
mod hook;
mod http;
mod keys;
mod leases;
mod limits;
mod lost_data;
mod metrics;
mod operations;
mod pipelining;
mod priorities;
mod push;
mod restart;
mod shutdown;
mod support;
mod tls;
