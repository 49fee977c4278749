//! The `ferromq` command line: `serve` runs the server (`serve.rs`); every other
//! subcommand is one client call against `--addr` (`commands.rs`), printed by
//! `output.rs`.
//!
//! Output is human-readable by default; `--json` prints one JSON object per result
//! (per message for reserve/peek) with the .proto field names, for scripts. Bodies
//! are printed as UTF-8 (invalid bytes replaced). On an error the CLI prints
//! `error: CODE: message` to stderr and exits with status 1 (2 for usage errors).
//!
//! Durations (`--timeout`, `--wait`, `--delay`) take a unit: `500ms`, `30s`, `5m`,
//! `2h`; a bare number is milliseconds, like the wire protocol. Addresses
//! (`--addr`, `--listen`, `--http-listen`) are `HOST:PORT`, host names included.
//! The load generator is its own binary, `ferromq-bench` (`crates/ferromq-bench`).

mod commands;
mod file;
mod output;
mod serve;
mod top;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::client::{Client, ClientError, ClientTls, ConnectOptions};

/// ferromq: a durable message-queue server and its command-line client.
#[derive(Debug, Parser)]
#[command(name = "ferromq", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: CliCommand,
}

// Parsed once at start: the size difference of the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum CliCommand {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Print this program's version and the protocol version it speaks (a
    /// server's version is in `ferromq stats`).
    Version,
    /// Check a configuration file, or print a documented example of one.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script: `ferromq completions bash >
    /// /etc/bash_completion.d/ferromq`, `ferromq completions zsh >
    /// ~/.zfunc/_ferromq`, `... fish > ~/.config/fish/completions/ferromq.fish`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Client(commands::ClientCommand),
}

/// `ferromq config ...`.
#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file with the environment over it (as `serve
    /// --config PATH` would run) and print the effective configuration, tokens
    /// masked; exit status 2 if it is not valid.
    Check {
        /// The TOML file.
        path: std::path::PathBuf,
    },
    /// Print a configuration file with every option of `serve`, documented and
    /// commented out at its default.
    Example,
}

/// The command line with the environment under it and, for `serve --config
/// PATH`, the file under both (`file.rs`); the ids of the options the file set.
fn parse(args: Vec<std::ffi::OsString>) -> Result<(Cli, clap::ArgMatches, Vec<String>), ExitCode> {
    let command = file::with_env(Cli::command());
    let matches = command
        .clone()
        .try_get_matches_from(&args)
        .unwrap_or_else(|err| err.exit());
    let config = matches
        .subcommand_matches("serve")
        .and_then(|serve| serve.get_one::<std::path::PathBuf>("config").cloned());
    let (matches, from_file) = match (config, matches.subcommand_matches("serve")) {
        (Some(path), Some(given)) => {
            let serve = command
                .find_subcommand("serve")
                .expect("serve is a subcommand");
            let from_file = match file::file_args(serve, given, &path) {
                Ok(from_file) => from_file,
                Err(err) => {
                    eprintln!("error: {err}");
                    return Err(ExitCode::from(2));
                }
            };
            let mut args = args;
            args.extend(from_file.args);
            match command.try_get_matches_from(args) {
                Ok(matches) => (matches, from_file.ids),
                Err(err) => {
                    eprintln!("error: in the configuration file {}:", path.display());
                    let _ = err.print();
                    return Err(ExitCode::from(2));
                }
            }
        }
        _ => (matches, Vec::new()),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    Ok((cli, matches, from_file))
}

/// `ferromq config check PATH`: parsed as `serve --config PATH` would be.
async fn config_check(path: &std::path::Path) -> ExitCode {
    let args = ["ferromq", "serve", "--config"]
        .map(std::ffi::OsString::from)
        .into_iter()
        .chain([path.as_os_str().to_owned()])
        .collect();
    let (cli, matches, from_file) = match parse(args) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let CliCommand::Serve(serve) = cli.command else {
        return ExitCode::FAILURE;
    };
    if let Err(err) = serve::config(serve).await {
        eprintln!("error: {}: {err}", path.display());
        return ExitCode::from(2);
    }
    let command = file::with_env(Cli::command());
    if let (Some(serve), Some(given)) = (
        command.find_subcommand("serve"),
        matches.subcommand_matches("serve"),
    ) {
        print!(
            "# {}: valid\n{}",
            path.display(),
            file::effective(serve, given, &from_file)
        );
    }
    ExitCode::SUCCESS
}

/// The command line's definition, with the environment variables of `serve`'s
/// options (for the man page and completion scripts).
pub fn command() -> clap::Command {
    file::with_env(Cli::command())
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match parse(std::env::args_os().collect()) {
        Ok((cli, _, _)) => cli,
        Err(code) => return code,
    };
    if let CliCommand::Config(ConfigCommand::Example) = cli.command {
        let command = file::with_env(Cli::command());
        if let Some(serve) = command.find_subcommand("serve") {
            print!("{}", file::example(serve));
        }
        return ExitCode::SUCCESS;
    }
    if let CliCommand::Completions { shell } = cli.command {
        let mut command = file::with_env(Cli::command());
        clap_complete::generate(shell, &mut command, "ferromq", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let CliCommand::Version = cli.command {
        println!(
            "ferromq {} (binary protocol {})",
            env!("CARGO_PKG_VERSION"),
            crate::proto::PROTOCOL_VERSION
        );
        return ExitCode::SUCCESS;
    }
    // RUST_LOG as `LEVEL` or `TARGET=LEVEL,...` (tracing-subscriber's `Targets`:
    // the usual forms, without EnvFilter's span and regex filters, whose regex
    // engine cost 0.3 MB of the binary). A value that does not parse is said.
    let log = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = match log.trim() {
        "" => Targets::new().with_default(tracing::Level::INFO),
        text => text.parse::<Targets>().unwrap_or_else(|err| {
            eprintln!("warning: RUST_LOG={text:?} is not LEVEL or TARGET=LEVEL,... ({err}); logging at info");
            Targets::new().with_default(tracing::Level::INFO)
        }),
    };
    // `serve --log-format json`: one JSON object per line (timestamp, level,
    // target, fields), for log shippers; otherwise the human format.
    let json = matches!(&cli.command, CliCommand::Serve(args) if args.json_logs());
    tracing_subscriber::registry()
        .with((!json).then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        }))
        .with(json.then(|| {
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(std::io::stderr)
        }))
        .with(filter)
        .init();
    // A client command talks over one connection: one worker is plenty.
    let workers = match &cli.command {
        CliCommand::Serve(args) => args.workers(),
        CliCommand::Client(_)
        | CliCommand::Version
        | CliCommand::Config(_)
        | CliCommand::Completions { .. } => 1,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            CliCommand::Serve(args) => serve::serve(args).await,
            CliCommand::Client(command) => client_call(command).await,
            CliCommand::Config(ConfigCommand::Check { path }) => config_check(&path).await,
            CliCommand::Version
            | CliCommand::Config(ConfigCommand::Example)
            | CliCommand::Completions { .. } => ExitCode::SUCCESS,
        }
    })
}

/// Connects once, runs the subcommand on that connection, reports the outcome.
async fn client_call(command: commands::ClientCommand) -> ExitCode {
    if let Err(usage) = command.check() {
        eprintln!("error: {usage}");
        return ExitCode::from(2);
    }
    let args = command.client_args().clone();
    let tls = if args.tls || args.ca_cert.is_some() {
        match crate::tls::client_config(args.ca_cert.as_deref()) {
            Ok(config) => Some(ClientTls {
                config,
                server_name: crate::client::host_of(&args.addr).to_owned(),
            }),
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let options = ConnectOptions {
        token: args.token.as_ref().map(|token| token.0.clone()),
        tls,
        // Health is answered without a token: a probe needs none.
        skip_hello: command.is_health(),
        consumer: args.consumer.clone(),
        ..ConnectOptions::default()
    };
    let result = match Client::connect_with(args.addr.as_str(), &options).await {
        Ok(client) => command.run(&client, args.json).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(commands::Outcome::Done) => ExitCode::SUCCESS,
        Ok(commands::Outcome::NotReady) => ExitCode::FAILURE,
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
