//! The console: one line per outcome on stdout, for `agent run` and `agent
//! diagnose --watch` — text for people, or JSON lines in the journal's
//! schema (docs/journal.md) for programs — and the one place that decides
//! whether anything the agent prints to a terminal is coloured.
//!
//! Everything in a line that a peer or a process controls (SNI, process
//! names, the diagnosis' texts) is shown with its control characters
//! escaped ([`crate::text::escape`]).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicU8, Ordering};

use serde::Serialize;

use crate::catalogue::Cause;
use crate::outcome::{Endpoint, HandshakeOutcome, HandshakeResult};
use crate::text::escape;

/// `--color`: colour on a terminal (`auto`, honouring `NO_COLOR`), always, or never.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourChoice {
    /// Colour when the output is a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    Always,
    Never,
}

/// The process-wide choice, set once by the command line ([`set_choice`]).
static CHOICE: AtomicU8 = AtomicU8::new(0);

/// Records `--color` for every output of this process.
pub fn set_choice(choice: ColourChoice) {
    let v = match choice {
        ColourChoice::Auto => 0,
        ColourChoice::Always => 1,
        ColourChoice::Never => 2,
    };
    CHOICE.store(v, Ordering::Relaxed);
}

fn choice() -> ColourChoice {
    match CHOICE.load(Ordering::Relaxed) {
        1 => ColourChoice::Always,
        2 => ColourChoice::Never,
        _ => ColourChoice::Auto,
    }
}

/// `NO_COLOR` set to anything non-empty (<https://no-color.org>).
fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether output to a stream that `is_terminal` (or not) is coloured:
/// `--color always`/`never` decide; `auto` colours a terminal unless
/// `NO_COLOR` is set.
pub fn colour_for(is_terminal: bool) -> bool {
    match choice() {
        ColourChoice::Always => true,
        ColourChoice::Never => false,
        ColourChoice::Auto => is_terminal && !no_color_env(),
    }
}

/// ANSI colour or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    Never,
    Always,
}

impl Colour {
    /// Colour for stdout: the one place that decides it ([`colour_for`]).
    pub fn for_stdout() -> Colour {
        if colour_for(std::io::stdout().is_terminal()) {
            Colour::Always
        } else {
            Colour::Never
        }
    }
}

/// `--console`: what `agent run` prints on stdout per outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleMode {
    /// Nothing (the journal, OTLP and metrics still get everything).
    Off,
    /// One human line per outcome.
    #[default]
    Text,
    /// One JSON object per line, in the journal's schema (docs/journal.md).
    Json,
}

/// Which outcomes the console shows (`agent diagnose --watch` filters); an
/// empty list lets everything through. An outcome matches a filter when
/// either endpoint does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConsoleFilter {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    pub namespaces: Vec<String>,
    pub pods: Vec<String>,
    pub causes: Vec<Cause>,
    pub failures_only: bool,
}

impl ConsoleFilter {
    pub fn matches(&self, o: &HandshakeOutcome) -> bool {
        let ends = [&o.client, &o.server];
        let any = |f: &dyn Fn(&Endpoint) -> bool| ends.iter().any(|e| f(e));
        (!self.failures_only || o.is_failure())
            && (self.pids.is_empty() || any(&|e| e.pid.is_some_and(|p| self.pids.contains(&p))))
            && (self.comms.is_empty()
                || any(&|e| e.comm.as_ref().is_some_and(|c| self.comms.contains(c))))
            && (self.namespaces.is_empty()
                || any(&|e| {
                    e.k8s
                        .as_ref()
                        .and_then(|k| k.namespace.as_ref())
                        .is_some_and(|n| self.namespaces.contains(n))
                }))
            && (self.pods.is_empty()
                || any(&|e| {
                    e.k8s
                        .as_ref()
                        .and_then(|k| k.pod.as_ref())
                        .is_some_and(|n| self.pods.contains(n))
                }))
            && (self.causes.is_empty() || (o.is_failure() && self.causes.contains(&o.cause)))
    }
}

/// The console sink of the sink thread.
#[derive(Clone, Debug)]
pub struct Console {
    pub mode: ConsoleMode,
    /// Successes are shown too (they are built only when asked for).
    pub show_success: bool,
    pub filter: ConsoleFilter,
    pub colour: Colour,
}

impl Console {
    pub fn new(mode: ConsoleMode, show_success: bool, filter: ConsoleFilter) -> Console {
        Console {
            mode,
            show_success,
            filter,
            colour: Colour::for_stdout(),
        }
    }

    /// Whether `o` is printed.
    pub fn wants(&self, o: &HandshakeOutcome) -> bool {
        self.mode != ConsoleMode::Off
            && (o.is_failure() || self.show_success)
            && self.filter.matches(o)
    }

    /// Prints `o` (one line, flushed, so the reader sees each outcome as
    /// it happens); a closed pipe comes back as `BrokenPipe`.
    pub fn print(&self, o: &HandshakeOutcome) -> std::io::Result<()> {
        let mut text = match self.mode {
            ConsoleMode::Off => return Ok(()),
            ConsoleMode::Text => line(o, self.colour),
            ConsoleMode::Json => serde_json::to_string(o).map_err(std::io::Error::other)?,
        };
        text.push('\n');
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }
}

fn endpoint(ep: &Endpoint) -> String {
    let addr = match (ep.ip, ep.port) {
        (Some(std::net::IpAddr::V6(ip)), Some(port)) => format!("[{ip}]:{port}"),
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        (Some(ip), None) => ip.to_string(),
        _ => "?".to_string(),
    };
    let pod = ep
        .k8s
        .as_ref()
        .and_then(|k| Some(format!(" {}/{}", k.namespace.as_ref()?, k.pod.as_ref()?)))
        .unwrap_or_default();
    match (&ep.comm, ep.pid) {
        (Some(comm), Some(pid)) => format!("{addr} ({}[{pid}]{})", escape(comm), escape(&pod)),
        _ => addr,
    }
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
        let _ = write!(s, " sni={}", escape(sni));
    }
    if let Some(v) = &o.tls.negotiated_version {
        let _ = write!(s, " {}", escape(v));
    }
    if o.result == HandshakeResult::Failure {
        let cause = if colour == Colour::Always {
            format!("\x1b[1m{}\x1b[0m", o.cause)
        } else {
            o.cause.to_string()
        };
        let _ = write!(s, ": {cause} — {}", escape(&o.diagnosis.summary));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{K8sPod, sample_failure};

    fn failure() -> HandshakeOutcome {
        let mut o = sample_failure();
        o.cause = Cause::UntrustedRoot;
        o.client.pid = Some(42);
        o.client.comm = Some("cu\x1b[2Jrl".into());
        o.client.ip = Some("127.0.0.1".parse().unwrap());
        o.client.port = Some(40000);
        o.server.pid = Some(7);
        o.server.comm = Some("nginx".into());
        o.server.k8s = Some(K8sPod {
            pod: Some("web-0".into()),
            namespace: Some("shop".into()),
            ..Default::default()
        });
        o.tls.sni = Some("evil\r\n.example".into());
        o
    }

    #[test]
    fn the_line_escapes_what_peers_and_processes_control() {
        let text = line(&failure(), Colour::Never);
        assert!(!text.contains('\x1b') && !text.contains('\r'), "{text}");
        assert!(text.contains("cu\\x1b[2Jrl[42]"), "{text}");
        assert!(text.contains("sni=evil\\x0d\\x0a.example"), "{text}");
        assert!(text.contains("(nginx[7] shop/web-0)"), "{text}");
        assert!(text.contains(": untrusted-root — "), "{text}");
        let coloured = line(&failure(), Colour::Always);
        assert!(coloured.contains("\x1b[1;31mFAIL\x1b[0m"), "{coloured}");
        assert!(
            coloured.contains("\x1b[1muntrusted-root\x1b[0m"),
            "{coloured}"
        );
    }

    #[test]
    fn filters_match_either_end() {
        let o = failure();
        let all = ConsoleFilter::default();
        assert!(all.matches(&o));
        let by = |f: ConsoleFilter| f.matches(&o);
        assert!(by(ConsoleFilter {
            pids: vec![7],
            ..Default::default()
        }));
        assert!(!by(ConsoleFilter {
            pids: vec![8],
            ..Default::default()
        }));
        assert!(by(ConsoleFilter {
            comms: vec!["nginx".into()],
            ..Default::default()
        }));
        assert!(by(ConsoleFilter {
            namespaces: vec!["shop".into()],
            pods: vec!["web-0".into()],
            ..Default::default()
        }));
        assert!(!by(ConsoleFilter {
            namespaces: vec!["other".into()],
            ..Default::default()
        }));
        assert!(by(ConsoleFilter {
            causes: vec![Cause::UntrustedRoot],
            failures_only: true,
            ..Default::default()
        }));
        assert!(!by(ConsoleFilter {
            causes: vec![Cause::ClockSkew],
            ..Default::default()
        }));
        let mut ok = failure();
        ok.result = HandshakeResult::Success;
        assert!(
            !ConsoleFilter {
                failures_only: true,
                ..Default::default()
            }
            .matches(&ok)
        );
    }

    #[test]
    fn the_console_shows_successes_only_when_asked() {
        let mut ok = failure();
        ok.result = HandshakeResult::Success;
        let quiet = Console::new(ConsoleMode::Text, false, ConsoleFilter::default());
        assert!(quiet.wants(&failure()) && !quiet.wants(&ok));
        let all = Console::new(ConsoleMode::Json, true, ConsoleFilter::default());
        assert!(all.wants(&ok));
        let off = Console::new(ConsoleMode::Off, true, ConsoleFilter::default());
        assert!(!off.wants(&failure()));
    }
}
