//! One human line per outcome, for `agent run` and `agent diagnose --watch`.

use std::fmt::Write as _;

use crate::outcome::{Endpoint, HandshakeOutcome, HandshakeResult};

/// ANSI colour, used only on a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    Never,
    Always,
}

impl Colour {
    /// Colour when stdout is a terminal: the one place that decides it.
    pub fn for_stdout() -> Colour {
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            Colour::Always
        } else {
            Colour::Never
        }
    }
}

fn endpoint(ep: &Endpoint) -> String {
    let addr = match (ep.ip, ep.port) {
        (Some(std::net::IpAddr::V6(ip)), Some(port)) => format!("[{ip}]:{port}"),
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        (Some(ip), None) => ip.to_string(),
        _ => "?".to_string(),
    };
    match (&ep.comm, ep.pid) {
        (Some(comm), Some(pid)) => format!("{addr} ({comm}[{pid}])"),
        _ => addr,
    }
}

/// Writes [`line`] and a newline to stdout, flushed: the reader sees each
/// outcome as it happens, and a closed pipe comes back as `BrokenPipe`.
pub fn print_line(o: &HandshakeOutcome, colour: Colour) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut text = line(o, colour);
    text.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// `TIME RESULT role client -> server [sni] version: cause — summary`.
pub fn line(o: &HandshakeOutcome, colour: Colour) -> String {
    let (tag, paint) = match o.result {
        HandshakeResult::Failure => ("FAIL", "\x1b[1;31m"),
        HandshakeResult::Success => ("ok  ", "\x1b[32m"),
    };
    let mut s = String::new();
    let _ = write!(s, "{} ", o.end_time.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
    if colour == Colour::Always {
        let _ = write!(s, "{paint}{tag}\x1b[0m");
    } else {
        s.push_str(tag);
    }
    let _ = write!(
        s,
        " {:<6} {} -> {}",
        o.role.as_str(),
        endpoint(&o.client),
        endpoint(&o.server)
    );
    if let Some(sni) = &o.tls.sni {
        let _ = write!(s, " sni={sni}");
    }
    if let Some(v) = &o.tls.negotiated_version {
        let _ = write!(s, " {v}");
    }
    if o.result == HandshakeResult::Failure {
        let _ = write!(s, ": {} — {}", o.cause, o.diagnosis.summary);
    }
    s
}
