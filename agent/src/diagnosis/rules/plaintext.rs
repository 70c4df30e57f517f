//! plaintext-to-tls-port and tls-to-plaintext-port: one side does not speak
//! TLS at all.
//!
//! Plain HTTP to an OpenSSL TLS port is closed without an alert; the server's
//! OpenSSL says "http request" (or "https proxy request" for a CONNECT), the
//! wire shows `GET ` where a TLS record should start, and nginx answers 400
//! "The plain HTTP request was sent to HTTPS port". TLS to a plain port gets
//! a plain-text reply (`HTTP/1.1 400`), which the client's OpenSSL reads as a
//! record with a "wrong version number" or "packet length too long".

use crate::diagnosis::{Cause, Confidence, Diagnosis, Evidence, Facts, Source};
use crate::evidence::openssl::reason;
use crate::evidence::server_config::{ListenSpec, ServerKind};
use crate::outcome::Role;

use super::directives::{Directive, directive, reload_command};
use super::headline;

/// Ports conventionally used for plain HTTP: a `listen ... ssl` on one of
/// them is more likely a config slip than a client's mistake.
const PLAIN_HTTP_PORTS: [u16; 4] = [80, 8000, 8008, 8080];

/// The `listen` on the server's port, with or without `ssl`.
fn listen_on_port<'a>(f: &Facts<'a>, ssl: bool) -> Option<(ServerKind, &'a ListenSpec)> {
    let port = f.server_port()?;
    f.host.blocks_on_port.iter().find_map(|b| {
        b.listens
            .iter()
            .find(|l| l.port == port && l.ssl == ssl)
            .map(|l| (b.kind, l))
    })
}

fn listen_text(kind: ServerKind, spec: &ListenSpec) -> String {
    let addr = spec.addr.map(|a| format!("{a}:")).unwrap_or_default();
    format!(
        "{} {addr}{}{}",
        directive(kind, Directive::Listen),
        spec.port,
        if spec.ssl { " ssl" } else { "" }
    )
}

fn location(spec: &ListenSpec) -> String {
    format!("{}:{}", spec.file.display(), spec.line)
}

pub fn plaintext_to_tls_port(f: &Facts) -> Option<Diagnosis> {
    // A ClientHello on the wire proves the client spoke TLS, whatever a log
    // line about another connection from the same address says.
    if f.outcome.tls.client_hello.is_some() {
        return None;
    }
    let non_tls = f
        .outcome
        .tls
        .non_tls
        .as_ref()
        .filter(|n| n.sender == Role::Client && n.kind != "sslv2-hello");
    let error = f
        .ssl_error(&[reason::HTTP_REQUEST, reason::HTTPS_PROXY_REQUEST])
        .filter(|_| f.role() == Role::Server);
    let garbage = f
        .ssl_error(&[reason::WRONG_VERSION_NUMBER, reason::UNKNOWN_PROTOCOL])
        .filter(|_| f.role() == Role::Server);
    let logs = f.log_lines(Cause::PlaintextToTlsPort);

    let confidence =
        if non_tls.is_some_and(|n| n.kind == "http-request") || error.is_some() || !logs.is_empty()
        {
            Confidence::High
        } else if non_tls.is_some() || garbage.is_some() {
            Confidence::Medium
        } else {
            return None;
        };
    let mut evidence = Vec::new();
    if let Some(n) = non_tls {
        evidence.push(Evidence::new(
            Source::Wire,
            format!(
                "the client's first bytes are not a TLS record but {}: `{}`",
                n.kind, n.description
            ),
        ));
    }
    evidence.extend(error.map(|e| f.ssl_error_evidence(e)));
    evidence.extend(garbage.map(|e| f.ssl_error_evidence(e)));
    evidence.extend(logs.iter().map(|l| super::cite::log_evidence(l)));
    let tls_listen = listen_on_port(f, true);
    if let Some((kind, spec)) = tls_listen {
        evidence.push(
            Evidence::new(
                Source::Host,
                format!(
                    "the port is configured for TLS: `{}`",
                    listen_text(kind, spec)
                ),
            )
            .at(location(spec)),
        );
    }

    let http =
        non_tls.is_some_and(|n| n.kind == "http-request") || error.is_some() || !logs.is_empty();
    let what = if http {
        "plain HTTP"
    } else {
        "a non-TLS protocol"
    };
    let summary = format!("{}: the client spoke {what} to a TLS port", headline(f));
    let diagnosis =
        Diagnosis::new(Cause::PlaintextToTlsPort, confidence, summary).with_evidence(evidence);
    Some(match tls_listen {
        Some((kind, spec)) if PLAIN_HTTP_PORTS.contains(&spec.port) => diagnosis
            .fix(format!(
                "Port {} is a plain-HTTP port but `{}` at {} makes it TLS: remove `ssl` there (serve TLS on 443), then {}.",
                spec.port,
                listen_text(kind, spec),
                location(spec),
                reload_command(kind)
            ))
            .fix_at(Some(location(spec))),
        Some((kind, spec)) => diagnosis.fix(format!(
            "Use https:// (or the client's TLS option) for {}; if this port should serve plain HTTP instead, remove `ssl` from `{}` at {} and {}.",
            f.target(),
            listen_text(kind, spec),
            location(spec),
            reload_command(kind)
        )),
        None => diagnosis.fix(format!(
            "Use https:// (or the client's TLS option) for {}: the port expects a TLS ClientHello.",
            f.target()
        )),
    })
}

pub fn tls_to_plaintext_port(f: &Facts) -> Option<Diagnosis> {
    let non_tls = f
        .outcome
        .tls
        .non_tls
        .as_ref()
        .filter(|n| n.sender == Role::Server);
    let error = f
        .ssl_error(&[
            reason::WRONG_VERSION_NUMBER,
            reason::PACKET_LENGTH_TOO_LONG,
            reason::UNKNOWN_PROTOCOL,
        ])
        .filter(|_| f.role() == Role::Client);
    let plain_listen = listen_on_port(f, false);
    let logs = f.log_lines(Cause::TlsToPlaintextPort);

    let confidence = match (non_tls, error) {
        (Some(n), _) if n.kind == "http-response" => Confidence::High,
        (Some(_), Some(_)) => Confidence::High,
        (Some(_), None) => Confidence::Medium,
        (None, Some(_)) if plain_listen.is_some() => Confidence::High,
        (None, Some(_)) => Confidence::Medium,
        (None, None) if !logs.is_empty() => Confidence::Medium,
        (None, None) => return None,
    };
    let mut evidence = Vec::new();
    if let Some(n) = non_tls {
        evidence.push(Evidence::new(
            Source::Wire,
            format!(
                "the server answered the ClientHello with {} instead of a TLS record: `{}`",
                n.kind, n.description
            ),
        ));
    }
    evidence.extend(error.map(|e| f.ssl_error_evidence(e)));
    evidence.extend(logs.iter().map(|l| super::cite::log_evidence(l)));
    if let Some((kind, spec)) = plain_listen {
        evidence.push(
            Evidence::new(
                Source::Host,
                format!(
                    "the port is configured without TLS: `{}`",
                    listen_text(kind, spec)
                ),
            )
            .at(location(spec)),
        );
    }
    if let Some(l) = f.host.listeners_on_port.first()
        && let Some(comm) = &l.comm
    {
        evidence.push(Evidence::new(
            Source::Host,
            format!("{comm} listens on port {}", l.port),
        ));
    }

    let reply = non_tls
        .map(|n| format!(" (it replied `{}`)", n.description))
        .unwrap_or_default();
    let summary = format!(
        "{}: the client spoke TLS to a port that answers in plain text{reply}",
        headline(f)
    );
    let diagnosis =
        Diagnosis::new(Cause::TlsToPlaintextPort, confidence, summary).with_evidence(evidence);
    Some(match plain_listen {
        Some((kind, spec)) => diagnosis
            .fix(format!(
                "Port {} serves plain text (`{}` at {}): use http:// or the TLS port. To serve TLS here, make it `{} ssl` with a certificate and key, then {}.",
                spec.port,
                listen_text(kind, spec),
                location(spec),
                listen_text(kind, spec),
                reload_command(kind)
            ))
            .fix_at(Some(location(spec))),
        None => diagnosis.fix(format!(
            "{} does not speak TLS on this port: use http:// there, or the port that serves TLS (usually 443).",
            f.target()
        )),
    })
}
