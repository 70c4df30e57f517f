//! Command line: one module per verb. Settings come from flags, their
//! environment variables and the optional config file, in that order
//! (`crate::config::file`); colour follows `--color` and `NO_COLOR`
//! (`crate::sinks::console`).

pub mod diagnose;
pub mod generate;
pub mod output;
pub mod run;

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::config::file::{Applied, ConfigFile};
use crate::sinks::console::{self, ColourChoice};

const AFTER_HELP: &str = "\
Examples:
  agent run                                    capture; failures to stdout and the journal
  agent run --metrics-addr 127.0.0.1:9464      … with Prometheus metrics and /healthz, /readyz
  agent run --config /etc/tlsdoctor/agent.yaml settings from a file (flag > env > file > default)
  agent run --print-config                     the effective settings, secrets redacted
  agent diagnose                               host report: listeners, configs, recent failures
  agent diagnose example.com:443               active probe: what a client hits there, and why
  agent diagnose --watch --failures-only       this host's failing handshakes, live

Exit codes:
  0  nothing wrong (diagnose), or a clean stop (run)
  1  diagnose found a problem (a finding, a recent failure, a failed or warned probe)
  2  the command itself failed (bad arguments, no permission, an I/O error)

Every setting of `agent run` has an environment variable (shown in its --help);
docs/configuration.md lists them with the config file's keys.";

/// tlsdoctor: finds out why TLS handshakes fail on this host.
#[derive(Parser, Debug)]
#[command(name = "agent", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace) or a tracing filter; RUST_LOG overrides.
    #[arg(long, global = true, env = "TLSDOCTOR_LOG", default_value = "info")]
    pub log: String,

    /// The agent's own log lines (stderr): text, or one JSON object per line.
    #[arg(long, global = true, env = "TLSDOCTOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Colour: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, env = "TLSDOCTOR_COLOR", value_enum, default_value_t = ColourChoice::Auto)]
    pub color: ColourChoice,

    /// Settings file (TOML or YAML) whose keys are the long flags of
    /// `agent run`; flags and environment variables override it.
    #[arg(long, global = true, env = "TLSDOCTOR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once at start and consumed at once: the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Capture every TLS handshake on this host and record failures with their cause.
    Run(run::RunArgs),
    /// Host report, active probe of HOST:PORT, or live watch (see --help).
    Diagnose(diagnose::DiagnoseArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(generate::CompletionsArgs),
    /// Write the man pages (agent.1, agent-run.1, …) into a directory.
    #[command(hide = true)]
    Man(generate::ManArgs),
}

/// The command line after the config file: the parsed arguments, and what
/// the file contributed.
pub struct Parsed {
    pub cli: Cli,
    pub matches: clap::ArgMatches,
    pub applied: Applied,
}

/// Process entry point; the exit code is the command's.
pub fn main() -> ExitCode {
    let parsed = match parse(std::env::args_os().collect()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    console::set_choice(parsed.cli.color);
    init_logging(&parsed.cli.log, parsed.cli.log_format);
    let config_file = parsed.cli.config.clone();
    match parsed.cli.command {
        Command::Run(args) => {
            let sources = parsed
                .matches
                .subcommand_matches("run")
                .map(|m| {
                    let cmd = Cli::command();
                    match cmd.find_subcommand("run") {
                        Some(run) => crate::config::file::sources(run, m, &parsed.applied.keys),
                        None => Default::default(),
                    }
                })
                .unwrap_or_default();
            run::execute(args, config_file, sources)
        }
        Command::Diagnose(args) => diagnose::execute(args),
        Command::Completions(args) => generate::completions(&args),
        Command::Man(args) => generate::man(&args),
    }
}

/// Parses `argv`, then adds the config file's settings that neither a flag
/// nor an environment variable gave and parses again. `Err` is the exit
/// code, the error printed (clap's own for `--help`, `--version` and usage
/// errors).
pub fn parse(argv: Vec<OsString>) -> Result<Parsed, ExitCode> {
    let cmd = Cli::command();
    let matches = cmd.clone().try_get_matches_from(&argv).map_err(clap_exit)?;
    let cli = Cli::from_arg_matches(&matches).map_err(clap_exit)?;
    let Some(path) = cli.config.clone() else {
        return Ok(Parsed {
            cli,
            matches,
            applied: Applied::default(),
        });
    };
    let file = ConfigFile::load(&path).map_err(|e| {
        eprintln!("error: {e}", e = crate::text::Chain(&e));
        ExitCode::from(2)
    })?;
    let known = cmd
        .find_subcommand("run")
        .cloned()
        .unwrap_or_else(|| clap::Command::new("run"));
    let sub = matches
        .subcommand()
        .and_then(|(name, m)| Some((cmd.find_subcommand(name)?, m)));
    let env = |name: &str| std::env::var(name).ok();
    let applied = file
        .args_for(&cmd, &matches, &known, sub, &env)
        .map_err(|e| {
            eprintln!("error: {e}", e = crate::text::Chain(&e));
            ExitCode::from(2)
        })?;
    if applied.args.is_empty() {
        return Ok(Parsed {
            cli,
            matches,
            applied,
        });
    }
    let mut full = argv;
    full.extend(applied.args.iter().cloned());
    let matches = cmd.try_get_matches_from(&full).map_err(|e| {
        eprintln!("error: in the settings of {}:", path.display());
        clap_exit(e)
    })?;
    let cli = Cli::from_arg_matches(&matches).map_err(clap_exit)?;
    Ok(Parsed {
        cli,
        matches,
        applied,
    })
}

/// Prints a clap error (or help/version) and gives its exit code: 0 for
/// help and version, 2 for a usage error.
fn clap_exit(e: clap::Error) -> ExitCode {
    let _ = e.print();
    ExitCode::from(if e.use_stderr() { 2 } else { 0 })
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        // Colour codes only for a person at a terminal: never into a file,
        // a pipe or a container log.
        LogFormat::Text => builder
            .with_ansi(console::colour_for(std::io::stderr().is_terminal()))
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_has_examples_and_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Examples:"), "{help}");
        assert!(help.contains("Exit codes:"), "{help}");
    }
}
