//! Writing a command's result to stdout, the same way for every verb.
//!
//! A reader that goes away early (`agent diagnose … | head`) closes the pipe;
//! as with any Unix tool that is not an error: the output stops quietly and
//! the command keeps its own exit code. Rust ignores SIGPIPE, so without this
//! every `println!` after the reader left would panic.

use std::io::{self, Write as _};
use std::process::ExitCode;

use serde::Serialize;

/// Writes `text` to stdout. `Err` carries the exit code of a real write
/// error (reported on stderr); a closed pipe is `Ok`.
pub fn print(text: &str) -> Result<(), ExitCode> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            eprintln!("error: writing to stdout: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// Pretty JSON and a newline to stdout, or exit code 2 with the reason.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), ExitCode> {
    match serde_json::to_string_pretty(value) {
        Ok(mut text) => {
            text.push('\n');
            print(&text)
        }
        Err(e) => {
            eprintln!("error: encoding the JSON output: {e}");
            Err(ExitCode::from(2))
        }
    }
}
