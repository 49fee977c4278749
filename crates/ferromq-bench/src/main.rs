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
    match runtime.block_on(ferromq_bench::run(args)) {
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
