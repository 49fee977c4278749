//! The configuration of `ferromq serve` from a TOML file and the environment, and
//! `ferromq config check` / `ferromq config example`.
//!
//! # One set of names
//! Every option of `serve` is set the same three ways, and the names follow the
//! flag's: `--max-body 1MiB` on the command line, `FERROMQ_MAX_BODY=1MiB` in the
//! environment, `max-body = "1MiB"` in the file given by `--config PATH` (or
//! `FERROMQ_CONFIG`). A flag beats the environment, which beats the file, which
//! beats the default. The file is flat (no tables): its keys are the flag names
//! without the dashes, so the flags' help is its documentation, and `ferromq
//! config example` prints every key with its help and default (the repository
//! ships that output as `packaging/ferromq.toml`).
//!
//! # How
//! The environment is clap's own (`env` on each argument, added here to every
//! `serve` option so none is forgotten). The file's values are turned into the
//! flags they name and parsed by the same clap parsers as the command line, after
//! it, for the options the command line and the environment left unset; so a
//! value means the same wherever it is written, and is checked the same way. An
//! unknown key, a table, or a list for a single-valued option is an error naming
//! the key and the file. Lists (`token = ["a", "b=p1"]`) are for the options that
//! may repeat; the environment gives those one value.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};

/// The environment variable of an option: `FERROMQ_` and its flag name in upper
/// snake case.
pub(super) fn env_name(long: &str) -> String {
    format!("FERROMQ_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// `command` with an environment variable on every `serve` option that takes a
/// value or is a switch (help and version excepted).
pub(super) fn with_env(command: Command) -> Command {
    command.mut_subcommand("serve", |serve| {
        serve.mut_args(|arg| {
            let Some(long) = arg.get_long().map(str::to_owned) else {
                return arg;
            };
            if matches!(long.as_str(), "help" | "version") || arg.get_env().is_some() {
                return arg;
            }
            // clap keeps the name for the process's life; so does this, once per
            // option at start.
            let name: &'static str = Box::leak(env_name(&long).into_boxed_str());
            let secret = long == "token";
            arg.env(name).hide_env_values(secret)
        })
    })
}

/// What a configuration file adds to the command line.
#[derive(Debug, Default)]
pub(super) struct FromFile {
    /// The flags it sets, to parse after the command line's.
    pub(super) args: Vec<OsString>,
    /// The ids of the options it set.
    pub(super) ids: Vec<String>,
}

/// The arguments the file at `path` adds for the `serve` options the command
/// line and the environment left unset (`given` says which were set).
///
/// # Errors
/// A sentence naming the file and, where there is one, the key.
pub(super) fn file_args(
    serve: &Command,
    given: &ArgMatches,
    path: &Path,
) -> Result<FromFile, String> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        format!(
            "cannot read the configuration file {}: {err}",
            path.display()
        )
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|err| format!("{}: not valid TOML: {err}", path.display()))?;
    let mut args = Vec::new();
    let mut ids = Vec::new();
    for (key, value) in &table {
        let Some(arg) = serve
            .get_arguments()
            .find(|arg| arg.get_long() == Some(key.as_str()) && !arg.is_hide_set())
            .filter(|_| !matches!(key.as_str(), "help" | "config"))
        else {
            return Err(format!(
                "{}: unknown key `{key}` (the keys are the options of `ferromq serve` without \
                 their dashes; `ferromq config example` lists them)",
                path.display()
            ));
        };
        let set_elsewhere = matches!(
            given.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if set_elsewhere {
            continue;
        }
        ids.push(arg.get_id().as_str().to_owned());
        let flag = format!("--{key}");
        let repeats = matches!(arg.get_action(), ArgAction::Append);
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let bad = |what: &str| format!("{}: key `{key}`: {what}", path.display());
        let mut push = |value: &toml::Value| -> Result<(), String> {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(b) if switch => {
                    if *b {
                        args.push(OsString::from(&flag));
                    }
                    return Ok(());
                }
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Datetime(_) => {
                    return Err(bad("a date is not a value of this option"))
                }
                toml::Value::Array(_) => return Err(bad("a list inside a list")),
                toml::Value::Table(_) => {
                    return Err(bad(
                        "a table is not a value (the file is flat: `key = value`)",
                    ))
                }
            };
            if switch {
                return Err(bad("this switch takes true or false"));
            }
            args.push(OsString::from(format!("{flag}={text}")));
            Ok(())
        };
        match value {
            toml::Value::Array(values) if repeats => {
                for value in values {
                    push(value)?;
                }
            }
            toml::Value::Array(_) => return Err(bad("takes one value, not a list")),
            value => push(value)?,
        }
    }
    Ok(FromFile { args, ids })
}

/// The effective configuration of `serve` as TOML: every option with its value
/// and where it came from, tokens masked.
pub(super) fn effective(serve: &Command, matches: &ArgMatches, from_file: &[String]) -> String {
    let mut out = String::new();
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        if arg.is_hide_set() || matches!(long, "help" | "config") {
            continue;
        }
        let id = arg.get_id().as_str();
        let source = match matches.value_source(id) {
            // The file's values were given to clap as arguments.
            Some(_) if from_file.iter().any(|f| f == id) => "file".to_owned(),
            Some(ValueSource::CommandLine) => "command line".to_owned(),
            Some(ValueSource::EnvVariable) => env_name(long),
            Some(_) => "default".to_owned(),
            None => {
                out.push_str(&format!("# {long} is not set\n"));
                continue;
            }
        };
        let values: Vec<String> = matches
            .get_raw(id)
            .into_iter()
            .flatten()
            .map(|raw| {
                let text = raw.to_string_lossy();
                if long == "token" {
                    mask_token(&text)
                } else {
                    text.into_owned()
                }
            })
            .collect();
        let value = match arg.get_action() {
            ArgAction::SetTrue => matches.get_flag(id).to_string(),
            ArgAction::Append => format!(
                "[{}]",
                values
                    .iter()
                    .map(|v| quote(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => values
                .first()
                .map_or_else(|| "\"\"".to_owned(), |v| quote(v)),
        };
        out.push_str(&format!("{long} = {value}  # {source}\n"));
    }
    out
}

/// `TOKEN[=PROJECTS]` with the token hidden.
fn mask_token(text: &str) -> String {
    match text.split_once('=') {
        Some((_, projects)) => format!("***={projects}"),
        None => "***".to_owned(),
    }
}

/// A TOML value for `text`: a number as it is, anything else as a basic string.
fn quote(text: &str) -> String {
    if !text.is_empty() && text.len() < 19 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A documented configuration file with every option of `serve`, commented out
/// at its default.
pub(super) fn example(serve: &Command) -> String {
    let mut out = String::from(
        "# ferromq serve --config ferromq.toml\n\
         #\n\
         # Every key is an option of `ferromq serve` without its dashes, and every one\n\
         # can also be set as FERROMQ_<KEY> in the environment (upper case, `_` for\n\
         # `-`). A flag beats the environment, which beats this file, which beats the\n\
         # default. Durations take a unit (`500ms`, `30s`, `1m30s`, `1d`); sizes too\n\
         # (`64KiB`, `1GiB`). Generated by `ferromq config example`.\n",
    );
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        if arg.is_hide_set() || matches!(long, "help" | "config") {
            continue;
        }
        out.push('\n');
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        for line in wrap(&help, 78) {
            out.push_str(&format!("# {line}\n"));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let value = match arg.get_action() {
            ArgAction::SetTrue => "false".to_owned(),
            ArgAction::Append => "[]".to_owned(),
            _ => match defaults.first() {
                Some(default) => quote(default),
                None => {
                    // No default: the placeholder names what it takes.
                    let choices: Vec<String> = arg
                        .get_possible_values()
                        .iter()
                        .map(|v| v.get_name().to_owned())
                        .collect();
                    let name = if choices.is_empty() {
                        arg.get_value_names()
                            .and_then(|names| names.first())
                            .map_or_else(|| long.to_ascii_uppercase(), ToString::to_string)
                    } else {
                        choices.join("|")
                    };
                    format!("\"{name}\"  # not set by default")
                }
            },
        };
        out.push_str(&format!("# {long} = {value}\n"));
    }
    out
}

/// `text` in lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}
