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
#[command(after_help = AFTER_HELP)]
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

    /// With --watch: only handshakes of these processes (either end).
    #[arg(long = "pid", requires = "watch", value_delimiter = ',')]
    pub pids: Vec<u32>,

    /// With --watch: only handshakes of processes with these names (either end).
    #[arg(long = "comm", requires = "watch", value_delimiter = ',')]
    pub comms: Vec<String>,

    /// With --watch: only handshakes of pods in these Kubernetes namespaces.
    #[arg(long = "namespace", requires = "watch", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// With --watch: only handshakes of these pods (by name).
    #[arg(long = "pod", requires = "watch", value_delimiter = ',')]
    pub pods: Vec<String>,

    /// With --watch: only failures with these causes (catalogue ids, e.g.
    /// untrusted-root; docs/catalogue.md).
    #[arg(long = "cause", requires = "watch", value_delimiter = ',', value_parser = parse_cause)]
    pub causes: Vec<crate::catalogue::Cause>,

    /// With --watch: failures only (successes are then not even built).
    #[arg(long, requires = "watch")]
    pub failures_only: bool,

    /// Failures the running agent recorded since this long ago (host report).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub since: Duration,

    /// The running agent's journal.
    #[arg(long, env = "TLSDOCTOR_JOURNAL", default_value = crate::sinks::journal::DEFAULT_PATH)]
    pub journal: PathBuf,

    /// Machine-readable output (schema: docs/journal.md); with --watch,
    /// one journal record per line.
    #[arg(long)]
    pub json: bool,
}

const AFTER_HELP: &str = "\
Examples:
  agent diagnose                                  host report and the last hour's failures
  agent diagnose --json --since 24h               the same, as JSON (docs/journal.md)
  agent diagnose example.com:443                  probe: what a client hits there, and why
  agent diagnose 10.0.0.5:8443 --sni api.internal --ca ca.pem
  agent diagnose --watch --port 443               live handshakes to port 443, explained
  agent diagnose --watch --failures-only --json   failing handshakes as JSON lines
  agent diagnose --watch --namespace shop --cause untrusted-root,hostname-mismatch

Exit codes:
  0  nothing wrong: no findings and no recent failures; the probe's client got through
  1  something is wrong: a finding, a recent failure, a failed or warned probe
  2  the command itself failed (bad arguments, not root for --watch, an I/O error)";

fn parse_cause(s: &str) -> Result<crate::catalogue::Cause, String> {
    crate::catalogue::Cause::from_id(s.trim())
        .ok_or_else(|| format!("{s:?} is not a cause id (see docs/catalogue.md)"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}", e = crate::text::Chain(&e)))
}

pub fn execute(args: DiagnoseArgs) -> ExitCode {
    if args.watch {
        return watch::execute(&args);
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
