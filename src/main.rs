//! The `ferromq` binary: parses the command line and hands over to [`ferromq::cli`].

fn main() -> std::process::ExitCode {
    ferromq::cli::main()
}
