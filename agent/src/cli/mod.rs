//! Command line: one module per verb.

pub mod diagnose;
pub mod output;
pub mod run;

use clap::{Parser, Subcommand};

/// tlsdoctor: finds out why TLS handshakes fail on this host.
#[derive(Parser, Debug)]
#[command(name = "agent", version, about, long_about = None)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace) or a tracing filter; RUST_LOG overrides.
    #[arg(long, global = true, env = "TLSDOCTOR_LOG", default_value = "info")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Capture every TLS handshake on this host and record failures with their cause.
    Run(run::RunArgs),
    /// Host report, active probe of HOST:PORT, or live watch (see --help).
    Diagnose(diagnose::DiagnoseArgs),
}

/// Process entry point; the exit code is the command's.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    match cli.command {
        Command::Run(args) => run::execute(args),
        Command::Diagnose(args) => diagnose::execute(args),
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
