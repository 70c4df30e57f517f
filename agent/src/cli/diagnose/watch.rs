//! `agent diagnose --watch`: this host's handshakes as they happen,
//! explained, by the capture pipeline run in this process.

use std::process::ExitCode;
use std::time::Duration;

/// Runs the capture pipeline in this process: every handshake, successes
/// included, one line each, nothing journaled beyond a temporary file.
pub(super) fn execute(ports: &[u16], duration: Option<Duration>) -> ExitCode {
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
    if let Some(d) = duration {
        argv.push("--duration".into());
        argv.push(d.as_secs().max(1).to_string());
    }
    for port in ports {
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
    let code = crate::cli::run::execute(crate::cli::run::RunArgs {
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
