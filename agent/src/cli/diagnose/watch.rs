//! `agent diagnose --watch`: this host's handshakes as they happen,
//! explained, by the capture pipeline run in this process: one line each
//! (`--json`: one journal record each), filtered by process, pod, cause.

use std::process::ExitCode;

use super::DiagnoseArgs;
use crate::sinks::console::ConsoleFilter;

/// Runs the capture pipeline in this process: every handshake, successes
/// included unless `--failures-only`, one line each, nothing journaled
/// beyond a temporary file.
pub(super) fn execute(args: &DiagnoseArgs) -> ExitCode {
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
        "--console".into(),
        if args.json { "json" } else { "text" }.into(),
    ];
    if !args.failures_only {
        argv.push("--show-success".into());
    }
    if let Some(d) = args.duration {
        argv.push("--duration".into());
        argv.push(d.as_secs().max(1).to_string());
    }
    for port in &args.ports {
        argv.push("--port".into());
        argv.push(port.to_string());
    }
    let mut config = match <WatchConfig as clap::Parser>::try_parse_from(&argv) {
        Ok(c) => c.config,
        Err(e) => {
            eprintln!("error: {e}", e = crate::text::Chain(&e));
            return ExitCode::from(2);
        }
    };
    config.console_filter = ConsoleFilter {
        pids: args.pids.clone(),
        comms: args.comms.clone(),
        namespaces: args.namespaces.clone(),
        pods: args.pods.clone(),
        causes: args.causes.clone(),
        failures_only: args.failures_only,
    };
    let code = crate::cli::run::execute(
        crate::cli::run::RunArgs {
            config,
            print_config: false,
        },
        None,
        Default::default(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    code
}

/// `agent run`'s settings, parsed the same way (defaults, TLSDOCTOR_* variables).
#[derive(clap::Parser)]
struct WatchConfig {
    #[command(flatten)]
    config: crate::config::RunConfig,
}
