//! unknown: no class fits. Nothing observed is thrown away — every raw fact
//! goes into the evidence, so a person (or a future rule) can still tell
//! what happened.

use crate::diagnosis::{Cause, Confidence, Diagnosis, Evidence, Facts, Source};

use super::cite::{finding_evidence, log_evidence, ssl_error_evidence, verify_evidence};
use super::headline;

fn wire_facts(f: &Facts, evidence: &mut Vec<Evidence>) {
    let tls = &f.outcome.tls;
    let w = |text: String| Evidence::new(Source::Wire, text);
    if let Some(sni) = &tls.sni {
        evidence.push(w(format!("SNI: {sni}")));
    }
    if !tls.offered_versions.is_empty() {
        evidence.push(w(format!(
            "versions offered: {}",
            tls.offered_versions.join(", ")
        )));
    }
    if let Some(v) = &tls.negotiated_version {
        evidence.push(w(format!("version negotiated: {v}")));
    }
    if let Some(hello) = &tls.client_hello {
        evidence.push(w(format!(
            "ClientHello: {} cipher suites, groups [{}], ALPN [{}]",
            hello.cipher_suites.len(),
            hello.supported_groups.join(", "),
            hello.alpn.join(", ")
        )));
    }
    if let Some(hello) = &tls.server_hello {
        evidence.push(w(format!(
            "ServerHello: {} {}{}",
            hello.version,
            hello.cipher_suite,
            if hello.hello_retry_request {
                " (HelloRetryRequest)"
            } else {
                ""
            }
        )));
    }
    if !tls.messages.is_empty() {
        let seq: Vec<String> = tls
            .messages
            .iter()
            .map(|m| format!("{}:{}", m.sender.as_str(), m.message))
            .collect();
        evidence.push(w(format!("handshake messages: {}", seq.join(" → "))));
    }
    for cert in &tls.server_certificates {
        evidence.push(w(format!(
            "server certificate \"{}\" issued by \"{}\", valid {} to {}, SANs [{}]",
            cert.subject,
            cert.issuer,
            cert.not_before.format("%Y-%m-%d"),
            cert.not_after.format("%Y-%m-%d"),
            cert.sans.join(", ")
        )));
    }
    if tls.certificate_requested {
        evidence.push(w("the server requested a client certificate".to_string()));
    }
    if let Some(n) = tls.client_certificate_count {
        evidence.push(w(format!("the client sent {n} certificate(s)")));
    }
    if !tls.encrypted_records.is_empty() {
        let alerts = tls
            .encrypted_records
            .iter()
            .filter(|r| r.probable_alert)
            .count();
        evidence.push(w(format!(
            "{} encrypted record(s), {alerts} of alert length",
            tls.encrypted_records.len()
        )));
    }
    if let Some(n) = &tls.non_tls {
        evidence.push(w(format!(
            "the {} does not speak TLS ({}): `{}`",
            n.sender.as_str(),
            n.kind,
            n.description
        )));
    }
    for anomaly in &tls.anomalies {
        evidence.push(w(format!("anomaly: {anomaly}")));
    }
}

fn openssl_facts(f: &Facts, evidence: &mut Vec<Evidence>) {
    let openssl = &f.outcome.openssl;
    for call in &openssl.calls {
        evidence.push(Evidence::new(
            Source::Openssl,
            format!("{} returned {}", call.function, call.ret),
        ));
    }
    for error in &openssl.errors {
        evidence.push(ssl_error_evidence(f.role(), error));
    }
    if openssl.errors.is_empty() {
        for text in &openssl.reasons {
            evidence.push(Evidence::new(Source::Openssl, format!("OpenSSL: {text}")));
        }
    }
    if let Some(v) = &openssl.verify_result {
        evidence.push(verify_evidence(f.role(), v));
    }
}

fn socket_facts(f: &Facts, evidence: &mut Vec<Evidence>) {
    let socket = &f.outcome.socket;
    let s = |text: String| Evidence::new(Source::Socket, text);
    if let Some(errno) = socket.connect_errno {
        evidence.push(s(format!(
            "connect failed: {} (errno {errno})",
            socket.connect_error.as_deref().unwrap_or("?")
        )));
    }
    if !socket.tcp_states.is_empty() {
        let seq: Vec<String> = socket
            .tcp_states
            .iter()
            .map(|t| format!("{}→{}", t.from, t.to))
            .collect();
        evidence.push(s(format!("TCP states: {}", seq.join(", "))));
    }
    if let Some(by) = &socket.closed_by {
        evidence.push(s(format!("closed first by: {by}")));
    }
    if socket.reset_by_peer {
        evidence.push(s("the peer reset the connection".to_string()));
    }
    if socket.stalled {
        evidence.push(s("the handshake stalled".to_string()));
    }
    evidence.push(s(format!(
        "{} bytes sent, {} bytes received",
        socket.bytes_sent, socket.bytes_received
    )));
}

fn host_facts(f: &Facts, evidence: &mut Vec<Evidence>) {
    for line in &f.host.log_lines {
        evidence.push(log_evidence(&line.line));
    }
    for report in f.chain_reports() {
        for finding in &report.findings {
            evidence.push(finding_evidence(report, finding));
        }
    }
    for p in &f.host.config_problems {
        let location = match p.line {
            Some(line) => format!("{}:{line}", p.file.display()),
            None => p.file.display().to_string(),
        };
        evidence.push(Evidence::new(Source::Host, p.message.clone()).at(location));
    }
    if let Some(c) = &f.host.clock
        && !c.synchronized
    {
        evidence.push(Evidence::new(
            Source::Host,
            format!("clock not synchronized (max error {} µs)", c.max_error_us),
        ));
    }
}

/// The fallback when no rule fires: keeps every raw fact.
pub fn unknown(f: &Facts) -> Diagnosis {
    let mut evidence = Vec::new();
    for alert in f.alerts() {
        evidence.push(alert.evidence());
    }
    openssl_facts(f, &mut evidence);
    wire_facts(f, &mut evidence);
    socket_facts(f, &mut evidence);
    host_facts(f, &mut evidence);

    // The few facts a person reads first, in the one line.
    let mut key: Vec<String> = Vec::new();
    if let Some(a) = f.alerts().first() {
        key.push(format!(
            "alert {} ({}) from the {}",
            a.name(),
            a.code,
            a.sender.as_str()
        ));
    }
    if let Some(e) = f.outcome.openssl.errors.first() {
        key.push(format!("OpenSSL \"{}\"", e.text));
    }
    if let Some(v) = f
        .outcome
        .openssl
        .verify_result
        .as_ref()
        .filter(|v| v.code != 0)
    {
        key.push(format!("X509 error {} \"{}\"", v.code, v.text));
    }
    if let Some(e) = &f.outcome.socket.connect_error {
        key.push(format!("connect {e}"));
    }
    let key = if key.is_empty() {
        String::new()
    } else {
        format!(" ({})", key.join("; "))
    };
    let sni = f
        .sni()
        .map(|s| format!(" -servername {s}"))
        .unwrap_or_default();
    Diagnosis::new(
        Cause::Unknown,
        Confidence::Low,
        format!(
            "{}: the handshake failed and no known cause fits{key}",
            headline(f)
        ),
    )
    .with_evidence(evidence)
    .fix(format!(
        "No known cause matched; the evidence keeps every raw fact. Reproduce with `openssl s_client -connect {}{sni} -state` and read the server's error log at info level (nginx: `error_log ... info;`, Apache: `LogLevel ssl:info`).",
        f.connect_target()
    ))
}
