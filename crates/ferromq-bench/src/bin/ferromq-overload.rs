//! The `ferromq-overload` binary: offers a ferromq server a multiple of its
//! capacity for a fixed time and reports goodput, refusals, push-ack latency,
//! consume rate, probe latency and peak RSS ([`ferromq_bench::overload`]).
//! `scripts/overload.sh` measures the capacity first and runs it.

use std::process::ExitCode;

use clap::Parser;

/// Flood a ferromq server with a multiple of its capacity and report what it did.
#[derive(Debug, Parser)]
#[command(name = "ferromq-overload", version, about)]
struct Cli {
    #[command(flatten)]
    args: ferromq_bench::overload::OverloadArgs,
}

fn main() -> ExitCode {
    let args = Cli::parse().args;
    let json = args.json;
    ferromq_bench::main_with(ferromq_bench::overload::run(args), |report| {
        if json {
            println!("{}", report.json());
        } else {
            print!("{}", report.summary());
        }
    })
}
