//! `agent diagnose HOST:PORT`: the active probe (PENDING: probe module merge).

use std::process::ExitCode;

use super::diagnose::DiagnoseArgs;

pub fn execute(_args: &DiagnoseArgs, target: &str) -> ExitCode {
    eprintln!("error: probing {target} is not built into this agent yet");
    ExitCode::from(2)
}
