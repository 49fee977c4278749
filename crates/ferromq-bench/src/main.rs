//! The `ferromq-bench` binary: parses [`ferromq_bench::BenchArgs`], runs the load
//! and prints the report (text, or JSON with `--json`).

use std::process::ExitCode;

use clap::Parser;

/// Load-generate against a running server (ferromq, beanstalkd or Redis) and report
/// throughput, latency percentiles and server CPU/RSS.
#[derive(Debug, Parser)]
#[command(name = "ferromq-bench", version, about)]
struct Cli {
    #[command(flatten)]
    args: ferromq_bench::BenchArgs,
}

fn main() -> ExitCode {
    let args = Cli::parse().args;
    let json = args.json;
    ferromq_bench::main_with(ferromq_bench::run(args), |report| {
        if json {
            println!("{}", report.json());
        } else {
            print!("{}", report.summary());
        }
    })
}
