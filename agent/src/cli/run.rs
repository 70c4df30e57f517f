//! `agent run`: the capture agent.

use std::process::ExitCode;

use clap::Args;

use crate::config::RunConfig;

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: RunConfig,

    /// Print the effective configuration as JSON and exit.
    #[arg(long)]
    pub print_config: bool,
}

pub fn execute(args: RunArgs) -> ExitCode {
    if args.print_config {
        return match super::output::print_json(&args.config) {
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
            eprintln!("error: starting the runtime: {e}");
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
