//! `agent run`: the capture agent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::RunConfig;
use crate::config::print::PrintedConfig;

const AFTER_HELP: &str = "\
Examples:
  agent run
  agent run --metrics-addr 127.0.0.1:9464 --metrics-labels server_port
  agent run --console json | jq .cause
  agent run --otlp-endpoint https://collector:4318 --otlp-header 'authorization=Bearer …'
  TLSDOCTOR_CONFIG=/etc/tlsdoctor/agent.yaml agent run --print-config

Settings: flag > environment variable > config file (--config) > default.

Exit codes:
  0  stopped cleanly (SIGINT, SIGTERM, --duration, stdout closed)
  2  could not start or failed (not root, eBPF load refused, bad settings)";

#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: RunConfig,

    /// Print the effective configuration as JSON and exit: every setting,
    /// where it came from (flag, env, file, default), and the OTLP
    /// exporter's resolved endpoint, protocol and timeout (header values
    /// redacted).
    #[arg(long)]
    pub print_config: bool,
}

/// Runs the agent; `config_file` and `sources` (where each setting came
/// from) are only shown by `--print-config`.
pub fn execute(
    args: RunArgs,
    config_file: Option<PathBuf>,
    sources: BTreeMap<String, &'static str>,
) -> ExitCode {
    if args.print_config {
        let printed = match PrintedConfig::new(&args.config, config_file, sources) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}", e = crate::text::Chain(&e));
                return ExitCode::from(2);
            }
        };
        return match super::output::print_json(&printed) {
            Ok(()) => ExitCode::SUCCESS,
            Err(code) => code,
        };
    }
    // One thread owns the ring buffer and the connection table; diagnosis,
    // sinks and OTLP export run on threads of their own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "error: starting the runtime: {e}",
                e = crate::text::Chain(&e)
            );
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(crate::pipeline::run(args.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
