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

use super::output;
use crate::report::{self, HostReport, Style};

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
        return watch(&args);
    }
    if let Some(target) = &args.target {
        return super::probe::execute(&args, target);
    }
    host_report(&args)
}

fn style() -> Style {
    Style {
        colour: std::io::IsTerminal::is_terminal(&std::io::stdout()),
    }
}

fn host_report(args: &DiagnoseArgs) -> ExitCode {
    let since = chrono::Duration::from_std(args.since)
        .ok()
        .map(|d| chrono::Utc::now() - d);
    let report = HostReport::gather(&args.journal, since, args.ca.as_deref());
    let printed = if args.json {
        output::print_json(&report)
    } else {
        output::print(&report::render(&report, style()))
    };
    if let Err(code) = printed {
        return code;
    }
    if report.has_problems() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs the capture pipeline in this process: every handshake, successes
/// included, one line each, nothing journaled beyond a temporary file.
fn watch(args: &DiagnoseArgs) -> ExitCode {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "error: --watch loads eBPF probes and needs root; without root, read the running agent's failures with `agent diagnose` (host report)"
        );
        return ExitCode::from(2);
    }
    let dir = std::env::temp_dir().join(format!("tlsdoctor-watch-{}", std::process::id()));
    let mut argv: Vec<String> = vec![
        "agent".into(),
        "--journal".into(),
        dir.join("journal.jsonl").display().to_string(),
        "--show-success".into(),
    ];
    if let Some(d) = args.duration {
        argv.push("--duration".into());
        argv.push(d.as_secs().max(1).to_string());
    }
    for port in &args.ports {
        argv.push("--port".into());
        argv.push(port.to_string());
    }
    let config = match <WatchConfig as clap::Parser>::try_parse_from(&argv) {
        Ok(c) => c.config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let code = super::run::execute(super::run::RunArgs {
        config,
        print_config: false,
    });
    let _ = std::fs::remove_dir_all(&dir);
    code
}

/// `agent run`'s settings, parsed the same way (defaults, TLSDOCTOR_* variables).
#[derive(clap::Parser)]
struct WatchConfig {
    #[command(flatten)]
    config: crate::config::RunConfig,
}
