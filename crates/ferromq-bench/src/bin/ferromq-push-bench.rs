//! The `ferromq-push-bench` binary: how fast a ferromq server delivers a push
//! queue to a local subscriber ([`ferromq_bench::push`]). `scripts/push-bench.sh`
//! starts a server and runs it.

use std::process::ExitCode;

use clap::Parser;

/// Measure push-queue delivery throughput to a local subscriber.
#[derive(Debug, Parser)]
#[command(name = "ferromq-push-bench", version, about)]
struct Cli {
    #[command(flatten)]
    args: ferromq_bench::push::PushBenchArgs,
}

fn main() -> ExitCode {
    let args = Cli::parse().args;
    let json = args.json;
    ferromq_bench::main_with(ferromq_bench::push::run(args), |report| {
        if json {
            println!("{}", report.json());
        } else {
            print!("{}", report.summary());
        }
    })
}
