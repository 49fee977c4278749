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
    let json = args.json;
    match runtime.block_on(ferromq_bench::overload::run(args)) {
        Ok(report) if json => {
            println!("{}", report.json());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.summary());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
