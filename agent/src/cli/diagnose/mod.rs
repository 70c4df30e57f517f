//! `agent diagnose`: the on-host command an SRE types when HTTPS breaks.
//!
//! - no target: the host report (clock, TLS listeners and their configs,
//!   findings, recent failures from the running agent's journal);
//! - `HOST:PORT`: an active probe of what a client hits there, and why;
//! - `--watch`: the handshakes of this host as they happen, explained.
//!
//! Exit code: 0 when nothing is wrong, 1 when something is, 2 on an error of
//! the command itself.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::probe::ProbeOptions;

pub mod host;
mod probe;
mod watch;

#[derive(Args, Debug)]
pub struct DiagnoseArgs {
    /// HOST:PORT to probe ([v6]:port for IPv6); omit for the host report.
    pub target: Option<String>,

    /// Server name to send (SNI) and check the certificate for; default: the host.
    #[arg(long, requires = "target")]
    pub sni: Option<String>,

    /// Trust this CA file instead of the system store (private PKIs): for
    /// the probe and for the host report's certificate checks.
    #[arg(long)]
    pub ca: Option<PathBuf>,

    /// Probe: skip the cipher-suite and group enumeration and the client
    /// simulation (the default client, versions, SNI and certificate checks only).
    #[arg(long, requires = "target")]
    pub quick: bool,

    /// Per-step probe timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Show this host's handshakes as they happen (loads its own probes;
    /// needs root), until interrupted or --duration.
    #[arg(long, conflicts_with = "target")]
    pub watch: bool,

    /// With --watch: only handshakes to these server ports.
    #[arg(long = "port", requires = "watch")]
    pub ports: Vec<u16>,

    /// With --watch: stop after this long (e.g. 30s, 5m).
    #[arg(long, requires = "watch", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Failures the running agent recorded since this long ago (host report).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub since: Duration,

    /// The running agent's journal.
    #[arg(long, env = "TLSDOCTOR_JOURNAL", default_value = crate::sinks::journal::DEFAULT_PATH)]
    pub journal: PathBuf,

    /// Machine-readable output (schema: docs/journal.md).
    #[arg(long)]
    pub json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

pub fn execute(args: DiagnoseArgs) -> ExitCode {
    if args.watch {
        return watch::execute(&args.ports, args.duration);
    }
    if let Some(target) = &args.target {
        let mut options = ProbeOptions::new(target);
        options.sni = args.sni.clone();
        options.ca = args.ca.clone();
        options.timeout = args.timeout;
        options.total_timeout = (args.timeout * 6).max(Duration::from_secs(10));
        options.quick = args.quick;
        return probe::execute(&options, args.json);
    }
    let since = chrono::Duration::from_std(args.since)
        .ok()
        .map(|d| chrono::Utc::now() - d);
    host::execute(&args.journal, since, args.ca.as_deref(), args.json)
}
