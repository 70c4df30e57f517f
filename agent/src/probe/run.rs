//! The probe's steps in order, and the report they make.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::diagnosis::host::HostState;
use crate::diagnosis::{Cause, Confidence, Diagnosis, Evidence, Source};
use crate::evidence::certificates::TrustStore;

use super::assemble;
use super::cause::{self, ClientView};
use super::connect;
use super::display;
use super::handshake::{self, Attempt, AttemptSpec, Verification};
use super::matrix;
use super::parallel;
use super::report::{
    AddressProbe, ClientCertificateCheck, Finding, HandshakeSummary, OcspStaple, ProbeReport,
    ProtocolProbe, ProtocolStatus, SCHEMA_VERSION, Severity, TcpResult, Verdict,
};
use super::suites::VersionSuites;
use super::target::{self, Target};
use super::{Budget, ProbeError, ProbeOptions, Progress};

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
                "the system trust store could not be read ({e}): every chain looks untrusted",
                e = crate::text::Chain(&e)
            ));
            let empty = TrustStore::from_der_certificates(&[], "none")
                .map_err(|e| ProbeError::Internal(crate::text::Chain(&e).to_string()))?;
            Ok((empty, "none".to_string()))
        }
    }
}

pub(super) fn summary(
    standard: &Attempt,
    refused_request: bool,
    ocsp: Option<OcspStaple>,
) -> HandshakeSummary {
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
        ocsp,
        duration_ms: standard.duration_ms,
    }
}

/// The matrix in one line, as evidence for causes it bears on.
pub(super) fn matrix_evidence(protocols: &[ProtocolProbe]) -> Option<Evidence> {
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
pub(super) fn pointless_to_continue(standard: &Attempt) -> Option<String> {
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
pub(super) fn address_findings(
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

/// What every stage needs to know about the probe.
pub(super) struct Setup<'a> {
    pub options: &'a ProbeOptions,
    pub target: Target,
    /// The SNI the default client sends.
    pub sni: Option<String>,
    /// The name (or address) certificates are checked against.
    pub verify_name: String,
    pub trust: TrustStore,
    pub trust_label: String,
    pub started: DateTime<Utc>,
    pub budget: Budget,
}

impl Setup<'_> {
    pub fn view(&self) -> ClientView<'_> {
        ClientView {
            trust: &self.trust,
            own_anchors: self.options.ca.is_some(),
            name: &self.verify_name,
        }
    }
}

fn empty_report(setup: &Setup, host_state_used: bool) -> ProbeReport {
    ProbeReport {
        schema: SCHEMA_VERSION,
        target: setup.options.target.clone(),
        host: setup.target.host.clone(),
        port: setup.target.port,
        sni: setup.sni.clone(),
        verify_name: setup.verify_name.clone(),
        trust: setup.trust_label.clone(),
        started: setup.started,
        duration_ms: 0,
        verdict: Verdict::Ok,
        local: false,
        host_state_used,
        addresses: Vec::new(),
        probed_address: None,
        handshake: None,
        chain: None,
        protocols: Vec::new(),
        cipher_suites: Vec::new(),
        clients: Vec::new(),
        certificate_checks: None,
        without_sni: None,
        client_certificate: None,
        root_cause: None,
        outcome: None,
        findings: Vec::new(),
        notes: Vec::new(),
    }
}

/// Every address's TCP result, and the first connection, left open.
type Connected = (Vec<AddressProbe>, Option<(SocketAddr, TcpStream)>);

/// Resolves and TCP-connects every address; the first connection stays open
/// for the default client.
fn connect_all(setup: &Setup) -> Result<Connected, ProbeError> {
    let addrs = target::resolve(&setup.target, setup.budget.step_time())?;
    let mut addresses = Vec::new();
    let mut primary: Option<(SocketAddr, TcpStream)> = None;
    for addr in addrs {
        let step = setup.budget.step_time();
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
    Ok((addresses, primary))
}

pub(super) fn run(
    options: &ProbeOptions,
    mut host: Option<&mut HostState>,
    progress: &(dyn Fn(&Progress) + Sync),
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
    let setup = Setup {
        options,
        target,
        sni,
        verify_name,
        trust,
        trust_label,
        started,
        budget,
    };
    let (addresses, primary) = connect_all(&setup)?;
    let mut report = empty_report(&setup, host.is_some());
    let Some((addr, stream)) = primary else {
        no_connection(&setup, &mut report, &addresses, &mut host);
        report.addresses = addresses;
        return Ok(finish(report, notes, clock));
    };
    report.probed_address = Some(addr);

    // The default client, on the connection already open.
    let verification = Verification {
        ca_file: options.ca.clone(),
        name: setup.verify_name.clone(),
    };
    let standard_spec = AttemptSpec::default_client(verification, setup.sni.clone());
    let Some(deadline) = setup.budget.step_deadline() else {
        report.addresses = addresses;
        notes.push("the total timeout was reached before the handshake".to_string());
        return Ok(finish(report, notes, clock));
    };
    let standard = handshake::run(&standard_spec, addr, Some(stream), deadline)?;
    progress(&Progress {
        stage: "default client",
        done: 0,
        total: 0,
    });

    let skip = pointless_to_continue(&standard);
    let results = parallel::run(
        &setup,
        addr,
        &standard,
        &standard_spec,
        skip.as_deref(),
        progress,
    )?;
    assemble::assemble(
        &setup,
        &mut report,
        assemble::Parts {
            addr,
            standard,
            results,
            skip,
            addresses,
        },
        &mut host,
        &mut notes,
    );
    Ok(finish(report, notes, clock))
}

/// No address accepted TCP: the first one tried is what a client hits.
fn no_connection(
    setup: &Setup,
    report: &mut ProbeReport,
    addresses: &[AddressProbe],
    host: &mut Option<&mut HostState>,
) {
    let view = setup.view();
    match addresses.iter().find(|a| a.tcp != TcpResult::NotTried) {
        Some(first) => {
            let mut outcome =
                cause::from_connect_failure(first, setup.sni.as_deref(), setup.started);
            let facts = cause::host_facts(&outcome, host.as_deref_mut(), None, &view);
            report.local = facts.server_is_local;
            report.root_cause = Some(cause::diagnose(&mut outcome, &facts));
            report.outcome = Some(outcome);
            report.findings = address_findings(
                addresses,
                Some(first.address),
                setup.sni.as_deref(),
                host,
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
    report.cipher_suites = super::suites::VERSIONS
        .iter()
        .map(|&v| VersionSuites::not_tested(v, "no address accepted TCP"))
        .collect();
}

/// Probe evidence the rules cannot know: the version matrix, the suites
/// the server accepts, the request the server refused.
pub(super) fn enrich(
    d: &mut Diagnosis,
    protocols: &[ProtocolProbe],
    suites: &[VersionSuites],
    cert: Option<&ClientCertificateCheck>,
) {
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
    if matrix_helps && let Some(e) = suites_evidence(suites) {
        d.evidence.push(e);
    }
    if d.cause == Cause::ClientCertificateRequired
        && let Some(c) = cert
    {
        d.evidence.push(Evidence::new(Source::Wire, c.how.clone()));
    }
}

/// "the server accepts: TLS 1.2 only ECDHE-ARIA…; TLS 1.3 none".
fn suites_evidence(suites: &[VersionSuites]) -> Option<Evidence> {
    let parts: Vec<String> = suites
        .iter()
        .filter(|v| !v.suites.is_empty())
        .map(|v| {
            let names: Vec<String> = v
                .suites
                .iter()
                .map(|s| s.openssl_name.clone().unwrap_or_else(|| s.name.clone()))
                .collect();
            format!(
                "{} {} suite(s): {}",
                v.version,
                names.len(),
                display::cap_list(&names, 8)
            )
        })
        .collect();
    (!parts.is_empty()).then(|| {
        Evidence::new(
            Source::Wire,
            format!(
                "every registered suite offered per version, the server accepts {}",
                parts.join("; ")
            ),
        )
    })
}

pub(super) fn not_tested(versions: &[openssl::ssl::SslVersion], why: &str) -> Vec<ProtocolProbe> {
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
    report.notes.extend(notes);
    display::cap_report(&mut report);
    report.duration_ms = clock.elapsed().as_millis() as u64;
    report
}
