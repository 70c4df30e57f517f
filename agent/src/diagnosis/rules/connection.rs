//! Failures before or instead of a TLS conversation: port-not-listening,
//! listener-bound-to-loopback and server-cannot-load-certificate
//! (handshake-aborted is `aborted`).
//!
//! A refused connect says only "nothing accepted at that address and port".
//! The host's listeners tell the three refusals apart: none at all on the
//! port (the service is down, or never came up because it could not load its
//! certificate — the config, the files and the error log say which), or some
//! bound to other addresses than the one the client used.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::diagnosis::{Cause, Confidence, Diagnosis, Evidence, Facts, Source};
use crate::evidence::certificates::ChainFinding;
use crate::evidence::server_config::{ServerKind, Setting};
use crate::outcome::Role;

use super::directives::{Directive, directive, reload_command, server_software, start_command};
use super::{describe_setting, headline};

pub(super) fn address(ip: IpAddr, port: Option<u16>) -> String {
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    match ip {
        IpAddr::V6(_) => format!("[{ip}]{port}"),
        IpAddr::V4(_) => format!("{ip}{port}"),
    }
}

/// The connect was refused: ECONNREFUSED, or a SYN answered with RST.
fn connect_refused(f: &Facts) -> Option<Evidence> {
    let socket = &f.outcome.socket;
    let to = f
        .outcome
        .server
        .ip
        .map(|ip| address(ip, f.server_port()))
        .unwrap_or_else(|| f.target());
    // Another errno (a timeout, a client giving up) is no refusal, whatever
    // the TCP states show.
    if socket
        .connect_errno
        .is_some_and(|e| e != libc::ECONNREFUSED)
    {
        return None;
    }
    if socket.connect_errno == Some(libc::ECONNREFUSED) {
        return Some(Evidence::new(
            Source::Socket,
            format!("connect to {to} failed: ECONNREFUSED (the SYN was answered with a reset)"),
        ));
    }
    let syn_reset = socket
        .tcp_states
        .iter()
        .any(|s| s.from == "SYN_SENT" && s.to == "CLOSE")
        && !socket.tcp_states.iter().any(|s| s.to == "ESTABLISHED");
    syn_reset.then(|| {
        Evidence::new(
            Source::Socket,
            format!("the SYN to {to} was answered with a reset (SYN_SENT → CLOSE)"),
        )
    })
}

/// Does a socket bound to `listener` accept connections to `dest`?
pub(super) fn accepts(listener: IpAddr, dest: IpAddr) -> bool {
    if listener == dest {
        return true;
    }
    match (listener, dest) {
        (IpAddr::V4(l), IpAddr::V4(_)) => l.is_unspecified(),
        // Linux's default bindv6only=0: [::] takes IPv4 connections too.
        (IpAddr::V6(l), _) if l.is_unspecified() => true,
        (IpAddr::V6(l), IpAddr::V4(d)) => l.to_ipv4_mapped() == Some(d),
        (IpAddr::V4(l), IpAddr::V6(d)) => d.to_ipv4_mapped() == Some(l),
        _ => false,
    }
}

/// The host state covers the server's port (it is, or should be, local).
fn host_knows_listeners(f: &Facts) -> bool {
    f.host.server_is_local
        || !f.host.listeners_on_port.is_empty()
        || !f.host.blocks_on_port.is_empty()
}

/// Config lines that name the port: "listen 443 ssl" at file:line.
pub(super) fn listens_on_port(f: &Facts) -> Vec<(ServerKind, String, String)> {
    let Some(port) = f.server_port() else {
        return Vec::new();
    };
    let mut seen = Vec::new();
    for block in &f.host.blocks_on_port {
        for spec in block.listens.iter().filter(|l| l.port == port) {
            let addr = spec
                .addr
                .map(|a| format!("{}:", address(a, None)))
                .unwrap_or_default();
            let text = format!(
                "{} {addr}{}{}",
                directive(block.kind, Directive::Listen),
                spec.port,
                if spec.ssl { " ssl" } else { "" }
            );
            let location = format!("{}:{}", spec.file.display(), spec.line);
            if !seen.iter().any(|(_, _, l)| *l == location) {
                seen.push((block.kind, text, location));
            }
        }
    }
    seen
}

pub fn port_not_listening(f: &Facts) -> Option<Diagnosis> {
    let refused = connect_refused(f)?;
    let port_words = f
        .server_port()
        .map(|p| format!("port {p}"))
        .unwrap_or_else(|| "the port".to_string());
    let listeners = &f.host.listeners_on_port;
    let mut evidence = vec![refused];

    if !host_knows_listeners(f) {
        let summary = format!(
            "{}: nothing accepts connections there (connection refused)",
            headline(f)
        );
        return Some(
            Diagnosis::new(Cause::PortNotListening, Confidence::Medium, summary)
                .with_evidence(evidence)
                .fix(format!(
                    "Check that the service runs on {} and listens on that address (`ss -ltnp` on the server), and that no firewall rule rejects {port_words}.",
                    f.target()
                )),
        );
    }
    if !listeners.is_empty() {
        let reaches = f
            .outcome
            .server
            .ip
            .is_none_or(|dest| listeners.iter().any(|l| accepts(l.addr, dest)));
        if !reaches {
            // Listeners exist, just not on the address the client used.
            return None;
        }
        for l in listeners {
            evidence.push(Evidence::new(
                Source::Host,
                format!(
                    "{} listens on {} now",
                    l.comm.as_deref().unwrap_or("a process"),
                    address(l.addr, Some(l.port))
                ),
            ));
        }
        return Some(
            Diagnosis::new(
                Cause::PortNotListening,
                Confidence::Low,
                format!(
                    "{}: the connection was refused although a listener exists now: the service was probably restarting, or a firewall rejects",
                    headline(f)
                ),
            )
            .with_evidence(evidence)
            .fix("Check the service's restart history (`journalctl -u <service>`) around the failure time, and firewall REJECT rules (`nft list ruleset` / `iptables -S`) for this port."),
        );
    }

    evidence.push(Evidence::new(
        Source::Host,
        format!("no socket listens on {port_words}, on any address"),
    ));
    let configured = listens_on_port(f);
    for (_, text, location) in &configured {
        evidence
            .push(Evidence::new(Source::Host, format!("the config says `{text}`")).at(location));
    }
    let diagnosis = match configured.first() {
        Some((kind, text, location)) => Diagnosis::new(
            Cause::PortNotListening,
            Confidence::High,
            format!(
                "{}: nothing listens on {port_words} although {location} says `{text}`: {} is down or has not been reloaded",
                headline(f),
                server_software(*kind)
            ),
        )
        .fix(format!(
            "Check the configuration and start {software} (`{}`; if it runs with an older configuration, `{}`); `systemctl status` and its error log say why it is down.",
            start_command(*kind),
            reload_command(*kind),
            software = server_software(*kind),
        ))
        .fix_at(Some(location.clone())),
        None => Diagnosis::new(
            Cause::PortNotListening,
            Confidence::High,
            format!("{}: nothing listens on {port_words}", headline(f)),
        )
        .fix(format!(
            "Start the service that should listen on {port_words} (`ss -ltnp` shows what listens), or point the client at the right port."
        )),
    };
    Some(diagnosis.with_evidence(evidence))
}

pub fn listener_bound_to_loopback(f: &Facts) -> Option<Diagnosis> {
    let refused = connect_refused(f)?;
    let dest = f.outcome.server.ip?;
    let listeners = &f.host.listeners_on_port;
    if listeners.is_empty() || listeners.iter().any(|l| accepts(l.addr, dest)) {
        return None;
    }
    let port = f.server_port();
    let mut evidence = vec![refused];
    for l in listeners {
        let who = match (&l.comm, l.pid) {
            (Some(comm), Some(pid)) => format!("{comm}[{pid}]"),
            (Some(comm), None) => comm.clone(),
            _ => "a process".to_string(),
        };
        evidence.push(Evidence::new(
            Source::Host,
            format!("{who} listens on {} only", address(l.addr, Some(l.port))),
        ));
    }
    let bound: Vec<String> = listeners.iter().map(|l| l.addr.to_string()).collect();
    let bound_spec = f.host.blocks_on_port.iter().find_map(|b| {
        b.listens
            .iter()
            .find(|s| {
                port.is_none_or(|p| p == s.port)
                    && s.addr
                        .is_some_and(|a| listeners.iter().any(|l| l.addr == a))
            })
            .map(|s| (b.kind, s))
    });
    if let Some((kind, spec)) = bound_spec {
        evidence.push(
            Evidence::new(
                Source::Host,
                format!(
                    "the config binds it: `{} {}`",
                    directive(kind, Directive::Listen),
                    spec.addr
                        .map(|a| address(a, Some(spec.port)))
                        .unwrap_or_default()
                ),
            )
            .at(format!("{}:{}", spec.file.display(), spec.line)),
        );
    }
    let process = listeners
        .iter()
        .find_map(|l| l.comm.clone())
        .unwrap_or_else(|| f.process(Role::Server));
    let summary = format!(
        "{}: {process} listens on port {} only on {}, not on {dest}",
        headline(f),
        port.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
        bound.join(", ")
    );
    let first = listeners
        .first()
        .map(|l| address(l.addr, Some(l.port)))
        .unwrap_or_default();
    let diagnosis = Diagnosis::new(Cause::ListenerBoundToLoopback, Confidence::High, summary)
        .with_evidence(evidence);
    Some(match bound_spec {
        Some((kind, spec)) => diagnosis
            .fix(format!(
                "Change `{listen} {}` at {}:{} to `{listen} {}` (all addresses) or to {}, then {}; or connect to {first}.",
                spec.addr.map(|a| address(a, Some(spec.port))).unwrap_or_default(),
                spec.file.display(),
                spec.line,
                spec.port,
                address(dest, Some(spec.port)),
                reload_command(kind),
                listen = directive(kind, Directive::Listen),
            ))
            .fix_at(Some(format!("{}:{}", spec.file.display(), spec.line))),
        None => diagnosis.fix(format!(
            "Make {process} listen on {dest} or on all addresses (0.0.0.0 / [::]) instead of {}, or connect to {first}.",
            bound.join(", ")
        )),
    })
}

pub fn server_cannot_load_certificate(f: &Facts) -> Option<Diagnosis> {
    let unreadable: Vec<(&str, &str)> = f
        .host
        .configured_chain
        .iter()
        .flat_map(|r| r.findings.iter())
        .filter_map(|x| match x {
            ChainFinding::Unreadable { path, error } => Some((path.as_str(), error.as_str())),
            _ => None,
        })
        .collect();
    let logs = f.log_lines(Cause::ServerCannotLoadCertificate);
    let block = f.block();
    let settings: Vec<FileSetting> = block
        .map(|b| {
            [
                (Directive::Certificate, b.certificate.as_ref()),
                (Directive::CertificateKey, b.certificate_key.as_ref()),
                (Directive::ChainFile, b.chain_file.as_ref()),
            ]
            .into_iter()
            .filter_map(|(d, s)| s.map(|s| (directive(b.kind, d), s)))
            .collect()
        })
        .unwrap_or_default();
    let problems: Vec<_> = f
        .host
        .config_problems
        .iter()
        .filter(|p| {
            settings
                .iter()
                .any(|(_, s)| s.file == p.file && Some(s.line) == p.line)
        })
        .collect();
    if unreadable.is_empty() && logs.is_empty() && problems.is_empty() {
        return None;
    }
    let refused = connect_refused(f);
    let none_listening = host_knows_listeners(f) && f.host.listeners_on_port.is_empty();
    let listener_reaches = f.outcome.server.ip.is_none_or(|dest| {
        f.host
            .listeners_on_port
            .iter()
            .any(|l| accepts(l.addr, dest))
    }) && !f.host.listeners_on_port.is_empty();
    if listener_reaches || (refused.is_none() && !none_listening) {
        // A listener is up (perhaps an old process with the old config):
        // whatever failed this handshake, it was not a missing listener.
        return None;
    }

    let cert_location = block
        .and_then(|b| b.certificate.as_ref())
        .map(|s| s.location());
    let mut evidence = load_failure_evidence(&unreadable, &settings, cert_location.as_deref());
    evidence.extend(logs.iter().map(|l| super::cite::log_evidence(l)));
    for p in &problems {
        let location = match p.line {
            Some(line) => format!("{}:{line}", p.file.display()),
            None => p.file.display().to_string(),
        };
        evidence.push(Evidence::new(Source::Host, p.message.clone()).at(location));
    }
    evidence.extend(refused);
    if none_listening {
        evidence.push(Evidence::new(
            Source::Host,
            format!(
                "no socket listens on {}",
                f.server_port()
                    .map(|p| format!("port {p}"))
                    .unwrap_or_else(|| "the port".to_string())
            ),
        ));
    }

    let key_mismatch = logs
        .iter()
        .any(|l| l.text.to_ascii_lowercase().contains(KEY_VALUES_MISMATCH))
        || problems
            .iter()
            .any(|p| p.message.to_ascii_lowercase().contains(KEY_VALUES_MISMATCH));
    let software = block
        .map(|b| server_software(b.kind))
        .unwrap_or("the server");
    let cert_setting = settings
        .iter()
        .find(|(_, s)| Some(s.location()) == cert_location);
    let key_setting = block.and_then(|b| {
        b.certificate_key
            .as_ref()
            .map(|s| (directive(b.kind, Directive::CertificateKey), s))
    });
    let what = if key_mismatch {
        "its private key does not match its certificate".to_string()
    } else if let Some((path, error)) = unreadable.first() {
        format!("it cannot load {path} ({error})")
    } else {
        "it cannot load its certificate or key (see its error log)".to_string()
    };
    let summary = format!(
        "{}: {software} is not serving TLS because {what}",
        headline(f)
    );
    let test = block
        .map(|b| start_command(b.kind))
        .unwrap_or("test the configuration and start the server");
    let (fix, location) = load_failure_fix(key_mismatch, key_setting, cert_setting, software, test);
    Some(
        Diagnosis::new(
            Cause::ServerCannotLoadCertificate,
            Confidence::High,
            summary,
        )
        .with_evidence(evidence)
        .fix(fix)
        .fix_at(location),
    )
}

/// A certificate-file directive of the selected block: its name as the
/// server spells it, and its setting.
type FileSetting<'a> = (&'a str, &'a Setting<PathBuf>);

/// Evidence for each unreadable configured file, at the directive that names
/// it (else at the certificate's).
fn load_failure_evidence(
    unreadable: &[(&str, &str)],
    settings: &[FileSetting],
    cert_location: Option<&str>,
) -> Vec<Evidence> {
    let mut evidence = Vec::new();
    for (path, error) in unreadable {
        // Point at the directive that names the unreadable file.
        let location = settings
            .iter()
            .find(|(_, s)| s.value.as_os_str() == std::ffi::OsStr::new(path))
            .map(|(_, s)| s.location())
            .or_else(|| cert_location.map(str::to_string));
        let e = Evidence::new(Source::Host, format!("{path} cannot be loaded: {error}"));
        evidence.push(match location {
            Some(l) => e.at(l),
            None => e,
        });
    }
    evidence
}

/// The fix and its location: the key directive for a key that does not
/// match, else the certificate directive, else the error log's files.
fn load_failure_fix(
    key_mismatch: bool,
    key_setting: Option<FileSetting>,
    cert_setting: Option<&FileSetting>,
    software: &str,
    test: &str,
) -> (String, Option<String>) {
    match (key_mismatch, key_setting, cert_setting) {
        (true, Some((name, key)), _) => (
            format!(
                "Point {} at the key that belongs to the certificate (`openssl x509 -noout -pubkey -in CERT` and `openssl pkey -pubout -in KEY` must print the same key), then {test}.",
                describe_setting(name, key)
            ),
            Some(key.location()),
        ),
        (_, _, Some((name, cert))) => (
            format!(
                "Restore {} or correct the path — it must exist, be readable by {software} and hold a PEM certificate — then {test}.",
                describe_setting(name, cert)
            ),
            Some(cert.location()),
        ),
        _ => (
            format!("Fix the certificate/key files the error log names, then {test}."),
            None,
        ),
    }
}

/// OpenSSL's text for X509 reason 116 (`reason::X509_KEY_VALUES_MISMATCH`),
/// as nginx and Apache quote it in their error logs.
pub(crate) const KEY_VALUES_MISMATCH: &str = "key values mismatch";
