//! The TOML configuration file of `agentca serve --config <file>`.
//!
//! Its keys are the long options of `agentca serve` without the leading
//! dashes (`listen`, `max-ttl`, `crl-validity`, …), and its values what
//! those options take: strings (`"24h"`, `"127.0.0.1:8443"`), integers,
//! booleans for switches, and arrays for repeatable options
//! (`server-name = ["ca.example.com"]`). Each value is handed to the same
//! parser as the command line, so it is checked the same way.
//!
//! Precedence, highest first: the command line, the environment variable
//! an option names, the file, the built-in default.

use std::ffi::OsString;
use std::path::Path;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::ArgMatches;

/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// Options that make no sense in the file.
const NOT_IN_FILE: &[&str] = &["config", "help", "version"];

/// The command-line arguments that apply `path` to `command` (the
/// subcommand as clap knows it), for the options that `matches` did not
/// get from the command line or the environment.
pub fn arguments_from_file(
    path: &Path,
    command: &clap::Command,
    matches: &ArgMatches,
) -> anyhow::Result<Vec<OsString>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the configuration {}", path.display()))?;
    anyhow::ensure!(
        meta.len() <= MAX_CONFIG_BYTES,
        "the configuration {} is larger than {MAX_CONFIG_BYTES} bytes",
        path.display()
    );
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let known: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| a.get_long().is_some_and(|l| !NOT_IN_FILE.contains(&l)))
        .collect();
    let mut args = Vec::new();
    for (key, value) in &table {
        let arg = known
            .iter()
            .find(|a| a.get_long() == Some(key.as_str()))
            .with_context(|| {
                let mut names: Vec<&str> = known.iter().filter_map(|a| a.get_long()).collect();
                names.sort_unstable();
                format!(
                    "{}: unknown key {key:?}; the keys are: {}",
                    path.display(),
                    names.join(", ")
                )
            })?;
        let explicit = matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if explicit {
            continue;
        }
        let flag = format!("--{key}");
        let switch = matches!(
            arg.get_action(),
            clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
        );
        let values: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for value in values {
            match (value, switch) {
                (toml::Value::Boolean(true), true) => args.push(OsString::from(&flag)),
                (toml::Value::Boolean(false), true) => {}
                (_, true) => anyhow::bail!("{}: {key} takes true or false", path.display()),
                (toml::Value::String(s), false) => args.push(format!("{flag}={s}").into()),
                (toml::Value::Integer(i), false) => args.push(format!("{flag}={i}").into()),
                (toml::Value::Boolean(b), false) => args.push(format!("{flag}={b}").into()),
                (_, false) => anyhow::bail!(
                    "{}: {key} takes a string or a number (durations as strings: \"5m\")",
                    path.display()
                ),
            }
        }
    }
    Ok(args)
}
