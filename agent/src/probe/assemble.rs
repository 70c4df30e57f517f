//! From the attempts to the report: the chain as served and its checks,
//! the root cause the default client hits (by the rules), the simulated
//! clients' verdicts, and every other finding.

use std::net::SocketAddr;

use chrono::Utc;

use crate::diagnosis::Cause;
use crate::diagnosis::host::{HostFacts, HostState};
use crate::evidence::certificates::{self, ChainReport};

use super::certs::{self, CertificateChecks};
use super::clients::{self, ClientSimulation};
use super::findings::{self, Inputs};
use super::handshake::{Attempt, MAX_KEPT_CERTIFICATES};
use super::iana::TLS1_2;
use super::matrix::{self, VersionAttempt};
use super::parallel::Results;
use super::report::{AddressProbe, ClientCertificateCheck, Finding, ProbeReport, ProtocolProbe};
use super::request::client_certificate_check;
use super::run::{self, Setup};
use super::suites::{self, VersionSuites};

/// What the stages before produced.
pub(super) struct Parts {
    pub addr: SocketAddr,
    pub standard: Attempt,
    pub results: Results,
    /// Why the attempts after the default client were skipped.
    pub skip: Option<String>,
    pub addresses: Vec<AddressProbe>,
}

fn protocols(
    versions: &[VersionAttempt],
    skip: Option<&str>,
    notes: &mut Vec<String>,
) -> Vec<ProtocolProbe> {
    if versions.is_empty() {
        return run::not_tested(&matrix::VERSIONS, skip.unwrap_or("not tested"));
    }
    notes.push("TLS 1.0 and 1.1 were offered alone at OpenSSL security level 0 with every cipher suite: a default modern client (OpenSSL 3 at security level 2) does not offer them at all".to_string());
    if versions.iter().any(|v| v.attempt.is_none()) {
        notes.push("the total timeout was reached: some versions were not tested".to_string());
    }
    versions.iter().map(matrix::protocol_probe).collect()
}

fn cipher_suites(
    setup: &Setup,
    results: &Results,
    skip: Option<&str>,
    notes: &mut Vec<String>,
) -> Vec<VersionSuites> {
    let why = match (skip, setup.options.quick) {
        (Some(why), _) => Some(why.to_string()),
        (None, true) => {
            notes.push("quick: the cipher-suite and group enumeration and the client simulation were skipped".to_string());
            Some("skipped (--quick)".to_string())
        }
        (None, false) => None,
    };
    if let Some(why) = why {
        return suites::VERSIONS
            .iter()
            .map(|&v| VersionSuites::not_tested(v, &why))
            .collect();
    }
    let mut entries = results.suites.clone();
    for (version, groups, stopped) in &results.groups {
        suites::attach_groups(&mut entries, *version, groups);
        if let Some(why) = stopped {
            notes.push(format!(
                "the group enumeration for {} stopped early: {why}",
                super::iana::version_name(*version)
            ));
        }
    }
    notes.push("cipher suites: every registered suite was offered per version with hand-made ClientHellos (no handshake completed), so suites this host's OpenSSL lacks are found too".to_string());
    entries
}

/// The served chain's analysis, with the note when it was capped.
fn chain_analysis(
    setup: &Setup,
    source: Option<&Attempt>,
    notes: &mut Vec<String>,
) -> Option<ChainReport> {
    source.map(|a| {
        if a.served > MAX_KEPT_CERTIFICATES {
            notes.push(format!(
                "the server sent {} certificates; the first {MAX_KEPT_CERTIFICATES} were kept",
                a.served
            ));
        }
        certificates::analyze_chain(
            &a.chain,
            Some(&setup.verify_name),
            Utc::now(),
            &setup.trust,
            "wire",
        )
    })
}

/// The root cause a default client hits, by the rules; with host facts
/// when the target is local.
#[allow(clippy::too_many_arguments)]
fn root_cause(
    setup: &Setup,
    report: &mut ProbeReport,
    addr: SocketAddr,
    root_attempt: Option<&Attempt>,
    outcome_attempt: &Attempt,
    served_report: Option<&ChainReport>,
    served_is_outcome: bool,
    cert: Option<&ClientCertificateCheck>,
    host: &mut Option<&mut HostState>,
    notes: &mut Vec<String>,
) -> HostFacts {
    let mut outcome = super::cause::from_attempt(outcome_attempt, addr, root_attempt.is_some());
    // The rules see the chain this very connection received.
    let own_chain = if served_is_outcome {
        served_report.cloned()
    } else if !outcome_attempt.chain.is_empty() {
        Some(certificates::analyze_chain(
            &outcome_attempt.chain,
            Some(&setup.verify_name),
            outcome.end_time,
            &setup.trust,
            "wire",
        ))
    } else {
        None
    };
    let facts = super::cause::host_facts(
        &outcome,
        host.as_deref_mut(),
        own_chain.as_ref(),
        &setup.view(),
    );
    report.local = facts.server_is_local;
    if host.is_some() && !facts.server_is_local {
        notes.push(
            "the target is not on this host: the verdict comes from the network alone".to_string(),
        );
    }
    if root_attempt.is_some() {
        let mut d = super::cause::diagnose(&mut outcome, &facts);
        run::enrich(&mut d, &report.protocols, &report.cipher_suites, cert);
        outcome.set_diagnosis(d.clone());
        report.root_cause = Some(d);
        report.outcome = Some(outcome);
    }
    facts
}

/// The certificate checks, with the SCTs the TLS 1.2 hellos brought.
fn certificate_checks(setup: &Setup, served: &[Vec<u8>], results: &Results) -> CertificateChecks {
    let mut checks = certs::check_chain(
        served,
        &setup.verify_name,
        Utc::now(),
        (&setup.trust, &setup.trust_label),
        setup.options.ca.is_some(),
    );
    checks.tls_extension_scts = results
        .flights
        .iter()
        .filter(|(p, _)| p.sct)
        .filter_map(|(_, f)| f.hello.as_ref())
        .filter(|h| h.version <= TLS1_2)
        .map(|h| h.scts.unwrap_or(0))
        .max();
    checks
}

/// The catalogue has no class for a certificate not meant for servers:
/// the rules call that failure unknown. The certificate check knows why;
/// its words go into the root cause (the class stays `unknown`).
fn explain_unknown(report: &mut ProbeReport, verify_code: Option<i32>) {
    let Some(root) = report
        .root_cause
        .as_mut()
        .filter(|d| d.cause == Cause::Unknown)
    else {
        return;
    };
    if verify_code != Some(openssl_sys::X509_V_ERR_INVALID_PURPOSE) {
        return;
    }
    let Some(pos) = report
        .findings
        .iter()
        .position(|f| f.kind == "certificate-not-for-server-auth")
    else {
        return;
    };
    let f: Finding = report.findings.remove(pos);
    root.summary = f.summary;
    root.remediation = f.remediation;
    root.evidence.extend(f.evidence);
    if let Some(outcome) = &mut report.outcome {
        outcome.set_diagnosis(root.clone());
    }
}

pub(super) fn assemble(
    setup: &Setup,
    report: &mut ProbeReport,
    parts: Parts,
    host: &mut Option<&mut HostState>,
    notes: &mut Vec<String>,
) {
    let Parts {
        addr,
        standard,
        results,
        skip,
        addresses,
    } = parts;
    let client_certificate = client_certificate_check(&standard, results.request.as_ref());
    let refused_request = standard.completed
        && client_certificate
            .as_ref()
            .is_some_and(|c| c.required == Some(true));
    if let Some(why) = &skip {
        notes.push(why.clone());
    }
    report.protocols = protocols(&results.versions, skip.as_deref(), notes);
    report.cipher_suites = cipher_suites(setup, &results, skip.as_deref(), notes);

    // The chain as served: the default client's, else the newest version's.
    let chain_source: Option<&Attempt> = if standard.chain.is_empty() {
        matrix::best_chain(&results.versions)
    } else {
        Some(&standard)
    };
    let chain_report = chain_analysis(setup, chain_source, notes);
    let served: &[Vec<u8>] = chain_source.map(|a| a.chain.as_slice()).unwrap_or(&[]);
    report.without_sni = results
        .no_sni
        .as_ref()
        .map(|a| matrix::sni_probe(a, served.first().map(Vec::as_slice), &setup.verify_name));
    let checks = certificate_checks(setup, served, &results);
    let ocsp = standard
        .ocsp
        .as_ref()
        .map(|der| certs::ocsp_staple(der, &standard.chain, setup.options.ca.as_deref()));

    let root_attempt = if !standard.completed {
        Some(&standard)
    } else if refused_request {
        results.request.as_ref()
    } else {
        None
    };
    let outcome_attempt = root_attempt.unwrap_or(&standard);
    let facts = root_cause(
        setup,
        report,
        addr,
        root_attempt,
        outcome_attempt,
        chain_report.as_ref(),
        chain_source.is_some_and(|a| std::ptr::eq(a, outcome_attempt)),
        client_certificate.as_ref(),
        host,
        notes,
    );

    let context = clients::Context {
        chain: chain_report.as_ref(),
        served,
        checks: &checks,
        trust: &setup.trust,
        name: &setup.verify_name,
        now: Utc::now(),
        client_certificate_required: client_certificate
            .as_ref()
            .is_some_and(|c| c.required == Some(true)),
        suites: &report.cipher_suites,
        protocols: &report.protocols,
    };
    let simulations: Vec<ClientSimulation> = results
        .flights
        .iter()
        .map(|(profile, flight)| clients::simulate(profile, flight, &context))
        .collect();

    let local_facts = facts.server_is_local.then_some(&facts);
    let file = findings::in_certificate_file(local_facts);
    let mut extra =
        run::address_findings(&addresses, None, setup.sni.as_deref(), host, &setup.view());
    extra.extend(certs::findings(
        &checks,
        ocsp.as_ref(),
        standard.completed,
        &file,
    ));
    extra.extend(clients::findings(&simulations));
    let summary = run::summary(&standard, refused_request, ocsp);
    let inputs = Inputs {
        root_cause: report.root_cause.as_ref(),
        chain: chain_report.as_ref(),
        served,
        verified: &standard.verified_chain,
        protocols: &report.protocols,
        suites: &report.cipher_suites,
        without_sni: report.without_sni.as_ref(),
        client_certificate: client_certificate.as_ref(),
        ocsp: summary.ocsp.as_ref(),
        host: local_facts,
        name: &setup.verify_name,
        now: Utc::now(),
    };
    report.findings = findings::derive(&inputs, extra);
    report.handshake = Some(summary);
    report.chain = chain_report;
    report.clients = simulations;
    report.certificate_checks = (!checks.certificates.is_empty()).then_some(checks);
    report.client_certificate = client_certificate;
    report.addresses = addresses;
    explain_unknown(report, standard.verify.as_ref().map(|v| v.code));
}
