//! Writing a command's result to stdout, the same way for every verb: JSON
//! or text, colour only on a terminal.
//!
//! A reader that goes away early (`agent diagnose … | head`) closes the pipe;
//! as with any Unix tool that is not an error: the output stops quietly and
//! the command keeps its own exit code. Rust ignores SIGPIPE, so without this
//! every `println!` after the reader left would panic.

use std::io::{self, Write as _};
use std::process::ExitCode;

use serde::Serialize;

use crate::sinks::console::Colour;

/// Writes `text` to stdout. `Err` carries the exit code of a real write
/// error (reported on stderr); a closed pipe is `Ok`.
pub fn print(text: &str) -> Result<(), ExitCode> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            eprintln!("error: writing to stdout: {e}", e = crate::text::Chain(&e));
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
            eprintln!(
                "error: encoding the JSON output: {e}",
                e = crate::text::Chain(&e)
            );
            Err(ExitCode::from(2))
        }
    }
}

/// A command's result: `value` as pretty JSON with `json`, else its text
/// rendering (`render`, styled for stdout). `Err` carries the exit code of
/// an output that failed (reported on stderr).
pub fn emit<T: Serialize>(
    json: bool,
    value: &T,
    render: impl FnOnce(Style) -> String,
) -> Result<(), ExitCode> {
    if json {
        print_json(value)
    } else {
        print(&render(Style::for_stdout()))
    }
}

/// ANSI styling, only on a terminal.
#[derive(Clone, Copy)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    /// Colour when stdout is a terminal.
    pub fn for_stdout() -> Style {
        Style {
            colour: Colour::for_stdout() == Colour::Always,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    pub fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }
    pub fn red(&self, t: &str) -> String {
        self.paint("1;31", t)
    }
    pub fn yellow(&self, t: &str) -> String {
        self.paint("33", t)
    }
    pub fn green(&self, t: &str) -> String {
        self.paint("32", t)
    }
    pub fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
}
