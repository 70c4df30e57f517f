//! The probe's steps in order, and the report they make.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Instant;

use chrono::Utc;
use openssl::hash::MessageDigest;
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspResponse, OcspResponseStatus};
use openssl::x509::X509;

use crate::diagnosis::host::{HostFacts, HostState};
use crate::diagnosis::{Cause, Confidence, Diagnosis, Evidence, Source};
use crate::evidence::certificates::{self, ChainReport, TrustStore};

use super::cause::{self, ClientView};
use super::connect;
use super::findings::{self, Inputs};
use super::handshake::{self, Attempt, AttemptSpec, MAX_KEPT_CERTIFICATES, Verification};
use super::matrix;
use super::report::{
    AddressProbe, ClientCertificateCheck, Finding, HandshakeSummary, OcspStaple, ProbeReport,
    ProtocolProbe, ProtocolStatus, SCHEMA_VERSION, Severity, TcpResult, Verdict,
};
use super::request::{client_certificate_check, http_request};
use super::target;
use super::{Budget, ProbeError, ProbeOptions};

pub(super) fn validate_sni(sni: &str) -> Result<String, ProbeError> {
    let invalid = |reason: &str| ProbeError::InvalidSni {
        sni: sni.to_string(),
        reason: reason.to_string(),
    };
    let name = sni.trim();
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() > 255 || name.contains('\0') || name.chars().any(char::is_whitespace) {
        return Err(invalid("not a host name"));
    }
    Ok(name.to_string())
}

fn trust_store(
    ca: Option<&Path>,
    notes: &mut Vec<String>,
) -> Result<(TrustStore, String), ProbeError> {
    if let Some(path) = ca {
        let store = TrustStore::from_pem_file(path).map_err(|source| ProbeError::CaFile {
            path: path.to_path_buf(),
            source,
        })?;
        notes.push(format!(
            "trust: only the {} certificate(s) in {} (as curl --cacert), not the system store",
            store.len(),
            path.display()
        ));
        return Ok((store, format!("--ca {}", path.display())));
    }
    match TrustStore::system() {
        Ok(store) => {
            let label = format!("system ({})", store.source());
            Ok((store, label))
        }
        Err(e) => {
            notes.push(format!(
                "the system trust store could not be read ({e}): every chain looks untrusted"
            ));
            let empty = TrustStore::from_der_certificates(&[], "none")
                .map_err(|e| ProbeError::Internal(e.to_string()))?;
            Ok((empty, "none".to_string()))
        }
    }
}

fn ocsp_staple(attempt: &Attempt) -> Option<OcspStaple> {
    let der = attempt.ocsp.as_ref()?;
    let response = OcspResponse::from_der(der).ok()?;
    let status = response.status();
    let response_status = match status {
        OcspResponseStatus::SUCCESSFUL => "successful",
        OcspResponseStatus::MALFORMED_REQUEST => "malformedRequest",
        OcspResponseStatus::INTERNAL_ERROR => "internalError",
        OcspResponseStatus::TRY_LATER => "tryLater",
        OcspResponseStatus::SIG_REQUIRED => "sigRequired",
        OcspResponseStatus::UNAUTHORIZED => "unauthorized",
        _ => "unknown",
    }
    .to_string();
    let certificate_status = (|| {
        let basic = response.basic().ok()?;
        let leaf = X509::from_der(attempt.chain.first()?).ok()?;
        let issuer = X509::from_der(attempt.chain.get(1)?).ok()?;
        let id = OcspCertId::from_cert(MessageDigest::sha1(), &leaf, &issuer).ok()?;
        let found = basic.find_status(&id)?;
        Some(
            match found.status {
                OcspCertStatus::GOOD => "good",
                OcspCertStatus::REVOKED => "revoked",
                _ => "unknown",
            }
            .to_string(),
        )
    })();
    Some(OcspStaple {
        response_status,
        certificate_status,
        bytes: der.len(),
    })
}

fn summary(standard: &Attempt, refused_request: bool) -> HandshakeSummary {
    HandshakeSummary {
        completed: standard.completed && !refused_request,
        version: standard.version.clone(),
        cipher: standard.cipher.clone(),
        alpn: standard.alpn.clone(),
        verify_code: standard.verify.as_ref().map(|v| v.code),
        verify_text: standard.verify.as_ref().map(|v| v.text.clone()),
        errors: standard.errors.iter().map(|e| e.text.clone()).collect(),
        failure: standard.failure(),
        certificate_requested: standard.certificate_request.is_some(),
        served_certificates: standard.served,
        ocsp: ocsp_staple(standard),
        duration_ms: standard.duration_ms,
    }
}

/// The matrix in one line, as evidence for causes it bears on.
fn matrix_evidence(protocols: &[ProtocolProbe]) -> Option<Evidence> {
    let tested: Vec<String> = protocols
        .iter()
        .filter(|p| p.status != ProtocolStatus::NotTested)
        .map(|p| match (p.status, &p.cipher, &p.detail) {
            (ProtocolStatus::Accepted, Some(c), _) => format!("{} accepted ({c})", p.version),
            (ProtocolStatus::Accepted, None, _) => format!("{} accepted", p.version),
            (_, _, Some(d)) => format!("{} refused ({d})", p.version),
            _ => format!("{} refused", p.version),
        })
        .collect();
    (!tested.is_empty()).then(|| {
        Evidence::new(
            Source::Wire,
            format!(
                "each version offered alone with every cipher suite: {}; a default client offers TLS 1.2 and 1.3 with OpenSSL's default suites",
                tested.join(", ")
            ),
        )
    })
}

/// The server stalled or does not speak TLS: further attempts learn nothing.
fn pointless_to_continue(standard: &Attempt) -> Option<String> {
    if standard.socket.stalled && standard.socket.bytes_received == 0 {
        return Some("the server accepted TCP but answered nothing to the ClientHello within the step timeout: the other attempts were skipped".to_string());
    }
    if standard
        .tls
        .non_tls
        .as_ref()
        .is_some_and(|n| n.sender == crate::outcome::Role::Server)
    {
        return Some(
            "the server does not speak TLS on this port: the other attempts were skipped"
                .to_string(),
        );
    }
    None
}

/// Refused or unanswered addresses, diagnosed one by one.
fn address_findings(
    addresses: &[AddressProbe],
    skip: Option<SocketAddr>,
    sni: Option<&str>,
    host: &mut Option<&mut HostState>,
    view: &ClientView,
) -> Vec<Finding> {
    addresses
        .iter()
        .filter(|a| !matches!(a.tcp, TcpResult::Connected | TcpResult::NotTried))
        .filter(|a| Some(a.address) != skip)
        .map(|a| {
            let mut outcome = cause::from_connect_failure(a, sni, Utc::now());
            let facts = cause::host_facts(&outcome, host.as_deref_mut(), None, view);
            let d = cause::diagnose(&mut outcome, &facts);
            let mut f = Finding::from_diagnosis("address-failed", Severity::Warning, &d);
            f.summary = format!(
                "{} (clients that try {} first must fall back to another address)",
                d.summary, a.address
            );
            f
        })
        .collect()
}

pub(super) fn run(
    options: &ProbeOptions,
    mut host: Option<&mut HostState>,
) -> Result<ProbeReport, ProbeError> {
    let started = Utc::now();
    let clock = Instant::now();
    let budget = Budget::new(options.timeout, options.total_timeout);
    let target = target::parse(&options.target)?;
    let sni = match &options.sni {
        Some(s) => Some(validate_sni(s)?),
        None => target.ip.is_none().then(|| target.host.clone()),
    };
    let verify_name = sni.clone().unwrap_or_else(|| target.host.clone());
    let mut notes = Vec::new();
    let (trust, trust_label) = trust_store(options.ca.as_deref(), &mut notes)?;
    let view = ClientView {
        trust: &trust,
        own_anchors: options.ca.is_some(),
        name: &verify_name,
    };
    let addrs = target::resolve(&target, budget.step_time())?;

    let mut addresses = Vec::new();
    let mut primary: Option<(SocketAddr, TcpStream)> = None;
    for addr in addrs {
        let step = budget.step_time();
        if step.is_zero() {
            addresses.push(connect::not_tried(addr));
            continue;
        }
        let (probe, stream) = connect::connect(addr, step);
        if primary.is_none()
            && let Some(stream) = stream
        {
            primary = Some((addr, stream));
        }
        addresses.push(probe);
    }

    let mut report = ProbeReport {
        schema: SCHEMA_VERSION,
        target: options.target.clone(),
        host: target.host.clone(),
        port: target.port,
        sni: sni.clone(),
        verify_name: verify_name.clone(),
        trust: trust_label,
        started,
        duration_ms: 0,
        verdict: Verdict::Ok,
        local: false,
        host_state_used: host.is_some(),
        addresses: Vec::new(),
        probed_address: None,
        handshake: None,
        chain: None,
        protocols: Vec::new(),
        without_sni: None,
        client_certificate: None,
        root_cause: None,
        outcome: None,
        findings: Vec::new(),
        notes: Vec::new(),
    };

    let Some((addr, stream)) = primary else {
        // No address accepted TCP: the first one tried is what a client hits.
        match addresses.iter().find(|a| a.tcp != TcpResult::NotTried) {
            Some(first) => {
                let mut outcome = cause::from_connect_failure(first, sni.as_deref(), started);
                let facts = cause::host_facts(&outcome, host.as_deref_mut(), None, &view);
                report.local = facts.server_is_local;
                report.root_cause = Some(cause::diagnose(&mut outcome, &facts));
                report.outcome = Some(outcome);
                report.findings = address_findings(
                    &addresses,
                    Some(first.address),
                    sni.as_deref(),
                    &mut host,
                    &view,
                );
            }
            None => {
                report.root_cause = Some(Diagnosis::new(
                    Cause::Unknown,
                    Confidence::Low,
                    "the total timeout was reached before any address was tried",
                ));
            }
        }
        report.protocols = not_tested(&matrix::VERSIONS, "no address accepted TCP");
        report.addresses = addresses;
        return Ok(finish(report, notes, clock));
    };
    report.probed_address = Some(addr);

    // The default client, on the connection already open.
    let verification = Verification {
        ca_file: options.ca.clone(),
        name: verify_name.clone(),
    };
    let standard_spec = AttemptSpec::default_client(verification, sni.clone());
    let Some(deadline) = budget.step_deadline() else {
        report.addresses = addresses;
        notes.push("the total timeout was reached before the handshake".to_string());
        return Ok(finish(report, notes, clock));
    };
    let standard = handshake::run(&standard_spec, addr, Some(stream), deadline)?;

    // Does the server insist on the client certificate it asked for?
    let mut request_attempt = None;
    if standard.completed
        && standard.certificate_request.is_some()
        && let Some(deadline) = budget.step_deadline()
    {
        let mut spec = standard_spec.clone();
        spec.alpn = &["http/1.1"];
        spec.ocsp = false;
        spec.request = Some(http_request(&target, &verify_name));
        request_attempt = Some(handshake::run(&spec, addr, None, deadline)?);
    }
    let client_certificate = client_certificate_check(&standard, request_attempt.as_ref());
    let refused_request = standard.completed
        && client_certificate
            .as_ref()
            .is_some_and(|c| c.required == Some(true));

    // What else the server speaks.
    let skip = pointless_to_continue(&standard);
    let (versions, no_sni) = match &skip {
        Some(why) => {
            notes.push(why.clone());
            (Vec::new(), None)
        }
        None => {
            let versions = matrix::versions(addr, sni.as_deref(), &budget)?;
            let no_sni = match sni {
                Some(_) => matrix::without_sni(addr, &budget)?,
                None => None,
            };
            (versions, no_sni)
        }
    };
    report.protocols = if versions.is_empty() {
        not_tested(&matrix::VERSIONS, skip.as_deref().unwrap_or("not tested"))
    } else {
        notes.push("TLS 1.0 and 1.1 were offered alone at OpenSSL security level 0 with every cipher suite: a default modern client (OpenSSL 3 at security level 2) does not offer them at all".to_string());
        versions.iter().map(matrix::protocol_probe).collect()
    };
    if versions.iter().any(|v| v.attempt.is_none()) {
        notes.push("the total timeout was reached: some versions were not tested".to_string());
    }

    // The chain as served: the default client's, else the newest version's.
    let chain_source: Option<&Attempt> = if standard.chain.is_empty() {
        matrix::best_chain(&versions)
    } else {
        Some(&standard)
    };
    let chain_report: Option<ChainReport> = chain_source.map(|a| {
        if a.served > MAX_KEPT_CERTIFICATES {
            notes.push(format!(
                "the server sent {} certificates; the first {MAX_KEPT_CERTIFICATES} were kept",
                a.served
            ));
        }
        certificates::analyze_chain(&a.chain, Some(&verify_name), Utc::now(), &trust, "wire")
    });
    let sni_leaf = chain_source
        .and_then(|a| a.chain.first())
        .map(Vec::as_slice);
    report.without_sni = no_sni
        .as_ref()
        .map(|a| matrix::sni_probe(a, sni_leaf, &verify_name));

    // The root cause a default client hits, by the rules.
    let root_attempt = if !standard.completed {
        Some(&standard)
    } else if refused_request {
        request_attempt.as_ref()
    } else {
        None
    };
    let outcome_attempt = root_attempt.unwrap_or(&standard);
    let mut outcome = cause::from_attempt(outcome_attempt, addr, root_attempt.is_some());
    // The rules see the chain this very connection received.
    let own_chain = if chain_source.is_some_and(|a| std::ptr::eq(a, outcome_attempt)) {
        chain_report.clone()
    } else if !outcome_attempt.chain.is_empty() {
        Some(certificates::analyze_chain(
            &outcome_attempt.chain,
            Some(&verify_name),
            outcome.end_time,
            &trust,
            "wire",
        ))
    } else {
        None
    };
    let facts: HostFacts =
        cause::host_facts(&outcome, host.as_deref_mut(), own_chain.as_ref(), &view);
    report.local = facts.server_is_local;
    if host.is_some() && !facts.server_is_local {
        notes.push(
            "the target is not on this host: the verdict comes from the network alone".to_string(),
        );
    }
    if root_attempt.is_some() {
        let mut d = cause::diagnose(&mut outcome, &facts);
        enrich(&mut d, &report.protocols, client_certificate.as_ref());
        outcome.set_diagnosis(d.clone());
        report.root_cause = Some(d);
        report.outcome = Some(outcome);
    }

    let extra = address_findings(&addresses, None, sni.as_deref(), &mut host, &view);
    let summary = summary(&standard, refused_request);
    let inputs = Inputs {
        root_cause: report.root_cause.as_ref(),
        chain: chain_report.as_ref(),
        served: chain_source.map(|a| a.chain.as_slice()).unwrap_or(&[]),
        verified: &standard.verified_chain,
        protocols: &report.protocols,
        without_sni: report.without_sni.as_ref(),
        client_certificate: client_certificate.as_ref(),
        ocsp: summary.ocsp.as_ref(),
        host: facts.server_is_local.then_some(&facts),
        name: &verify_name,
        now: Utc::now(),
    };
    report.findings = findings::derive(&inputs, extra);
    report.handshake = Some(summary);
    report.chain = chain_report;
    report.client_certificate = client_certificate;
    report.addresses = addresses;
    Ok(finish(report, notes, clock))
}

/// Probe evidence the rules cannot know: the version matrix, the request
/// the server refused.
fn enrich(d: &mut Diagnosis, protocols: &[ProtocolProbe], cert: Option<&ClientCertificateCheck>) {
    let matrix_helps = matches!(
        d.cause,
        Cause::ProtocolVersionMismatch
            | Cause::NoSharedCipher
            | Cause::WeakCryptoRejected
            | Cause::HandshakeAborted
            | Cause::Unknown
    );
    if matrix_helps && let Some(e) = matrix_evidence(protocols) {
        d.evidence.push(e);
    }
    if d.cause == Cause::ClientCertificateRequired
        && let Some(c) = cert
    {
        d.evidence.push(Evidence::new(Source::Wire, c.how.clone()));
    }
}

fn not_tested(versions: &[openssl::ssl::SslVersion], why: &str) -> Vec<ProtocolProbe> {
    versions
        .iter()
        .map(|&v| ProtocolProbe {
            version: handshake::version_label(v).to_string(),
            status: ProtocolStatus::NotTested,
            cipher: None,
            detail: Some(why.to_string()),
            default_client_offers: matrix::default_client_offers(v),
        })
        .collect()
}

fn finish(mut report: ProbeReport, notes: Vec<String>, clock: Instant) -> ProbeReport {
    report.verdict = if report.root_cause.is_some() {
        Verdict::Failed
    } else if report.findings_at_least(Severity::Warning).next().is_some() {
        Verdict::Warnings
    } else {
        Verdict::Ok
    };
    report.notes = notes;
    report.duration_ms = clock.elapsed().as_millis() as u64;
    report
}
