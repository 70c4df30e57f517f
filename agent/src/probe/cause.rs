//! The probe's failures as handshake outcomes (role client), diagnosed by
//! the same rules as captured failures: one rule set, two ways in.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};

use crate::diagnosis::host::{HostFacts, HostState};
use crate::diagnosis::{self, Diagnosis, Facts};
use crate::evidence::certificates::{self, ChainFinding, ChainReport, TrustStore};
use crate::evidence::openssl::OpensslFacts;
use crate::evidence::wire::TlsFacts;
use crate::outcome::{Endpoint, HandshakeOutcome, HandshakeResult, Role};

use super::PROBE_THREAD_NAME;
use super::connect;
use super::handshake::Attempt;
use super::report::AddressProbe;

fn next_id() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "probe-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn this_host() -> Option<String> {
    Some(gethostname::gethostname().to_string_lossy().into_owned()).filter(|h| !h.is_empty())
}

/// The probing end, as the capture would name it: this process, and the
/// thread name the probe's sockets are opened under.
fn client_endpoint(local: Option<SocketAddr>) -> Endpoint {
    Endpoint {
        ip: local.map(|a| a.ip()),
        port: local.map(|a| a.port()),
        pid: Some(std::process::id()),
        comm: Some(PROBE_THREAD_NAME.to_string()),
        ..Endpoint::default()
    }
}

fn server_endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint {
        ip: Some(addr.ip()),
        port: Some(addr.port()),
        ..Endpoint::default()
    }
}

/// One attempt as an outcome record. `failed` says whether a client would
/// call it a failure (a completed handshake whose request the server then
/// refused is one).
pub fn from_attempt(attempt: &Attempt, addr: SocketAddr, failed: bool) -> HandshakeOutcome {
    HandshakeOutcome {
        id: next_id(),
        time: attempt.time,
        end_time: attempt.end_time,
        role: Role::Client,
        result: if failed {
            HandshakeResult::Failure
        } else {
            HandshakeResult::Success
        },
        cause: diagnosis::Cause::Unknown,
        client: client_endpoint(attempt.local),
        server: server_endpoint(addr),
        tls: attempt.tls.clone(),
        openssl: OpensslFacts {
            calls: attempt.calls.clone(),
            errors: attempt.errors.clone(),
            verify_result: attempt.verify.clone(),
            reasons: attempt.errors.iter().map(|e| e.text.clone()).collect(),
        },
        socket: attempt.socket.clone(),
        diagnosis: Diagnosis::undiagnosed(),
        host: this_host(),
        tentative: false,
    }
}

/// A refused (or unanswered) TCP connect as an outcome record.
pub fn from_connect_failure(
    probe: &AddressProbe,
    sni: Option<&str>,
    time: DateTime<Utc>,
) -> HandshakeOutcome {
    HandshakeOutcome {
        id: next_id(),
        time,
        end_time: time,
        role: Role::Client,
        result: HandshakeResult::Failure,
        cause: diagnosis::Cause::Unknown,
        client: client_endpoint(None),
        server: server_endpoint(probe.address),
        tls: TlsFacts {
            sni: sni.map(str::to_string),
            ..TlsFacts::default()
        },
        openssl: OpensslFacts::default(),
        socket: connect::failed_connect_facts(probe),
        diagnosis: Diagnosis::undiagnosed(),
        host: this_host(),
        tentative: false,
    }
}

/// The client's trust decides which chains are complete and trusted.
pub struct ClientView<'a> {
    pub trust: &'a TrustStore,
    /// The probe was given its own anchors (`--ca`), not the system's.
    pub own_anchors: bool,
    /// The name the certificate must cover.
    pub name: &'a str,
}

/// The host facts for `outcome`, seen with the probe client's trust: the
/// served chain is the probe's own analysis (its anchors, its name), and
/// with `--ca` the configured chain is re-checked against those anchors
/// (host state checks it against the system store, which would call a
/// private CA untrusted).
pub fn host_facts(
    outcome: &HandshakeOutcome,
    host: Option<&mut HostState>,
    wire_chain: Option<&ChainReport>,
    view: &ClientView,
) -> HostFacts {
    let mut facts = match host {
        Some(h) => h.facts_for(outcome),
        None => HostFacts::default(),
    };
    facts.wire_chain = wire_chain.cloned();
    if view.own_anchors {
        recheck_configured_chain(&mut facts, view, outcome.end_time);
    }
    facts
}

fn recheck_configured_chain(facts: &mut HostFacts, view: &ClientView, now: DateTime<Utc>) {
    let Some(block) = &facts.selected_block else {
        return;
    };
    let Some(old) = &facts.configured_chain else {
        return;
    };
    let files: Vec<_> = block
        .certificate
        .iter()
        .chain(block.chain_file.iter())
        .map(|s| s.value.clone())
        .collect();
    let mut der = Vec::new();
    for file in &files {
        match certificates::load_pem_chain_in(&block.root, file) {
            Ok(mut certs) => der.append(&mut certs),
            // Keep host state's verdict: the file problem is the finding.
            Err(_) => return,
        }
    }
    let mut report =
        certificates::analyze_chain(&der, Some(view.name), now, view.trust, &old.source);
    let unreadable: Vec<ChainFinding> = old
        .findings
        .iter()
        .filter(|f| matches!(f, ChainFinding::Unreadable { .. }))
        .cloned()
        .collect();
    if !unreadable.is_empty() {
        report
            .findings
            .retain(|f| !matches!(f, ChainFinding::Unreadable { .. }));
        report.findings.splice(0..0, unreadable);
    }
    facts.configured_chain = Some(report);
}

/// Runs the rules engine over one failed outcome and records its verdict
/// in it.
pub fn diagnose(outcome: &mut HandshakeOutcome, facts: &HostFacts) -> Diagnosis {
    let diagnosis = diagnosis::diagnose(&Facts {
        outcome,
        host: facts,
    });
    outcome.set_diagnosis(diagnosis.clone());
    diagnosis
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::Cause;
    use crate::probe::report::TcpResult;

    #[test]
    fn a_refusal_with_no_host_state_is_port_not_listening() {
        let probe = AddressProbe {
            address: "192.0.2.9:8443".parse().unwrap(),
            tcp: TcpResult::Refused,
            errno: Some(libc::ECONNREFUSED),
            error: Some("ECONNREFUSED".into()),
            connect_ms: Some(1),
        };
        let mut outcome = from_connect_failure(&probe, Some("site.example"), Utc::now());
        assert_eq!(outcome.role, Role::Client);
        assert_eq!(outcome.client.comm.as_deref(), Some(PROBE_THREAD_NAME));
        let d = diagnose(&mut outcome, &HostFacts::default());
        assert_eq!(d.cause, Cause::PortNotListening);
        assert_eq!(outcome.cause, Cause::PortNotListening);
        assert!(d.summary.contains("site.example:8443"), "{}", d.summary);
    }

    #[test]
    fn an_unreachable_host_keeps_its_raw_facts() {
        let probe = AddressProbe {
            address: "192.0.2.9:443".parse().unwrap(),
            tcp: TcpResult::Unreachable,
            errno: Some(libc::EHOSTUNREACH),
            error: Some("EHOSTUNREACH".into()),
            connect_ms: Some(1),
        };
        let mut outcome = from_connect_failure(&probe, None, Utc::now());
        let d = diagnose(&mut outcome, &HostFacts::default());
        assert_eq!(d.cause, Cause::Unknown);
        assert!(
            d.evidence.iter().any(|e| e.fact.contains("EHOSTUNREACH")),
            "{d:#?}"
        );
    }
}
