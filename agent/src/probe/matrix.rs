//! What the server speaks, beyond what a default client asks: each TLS
//! version alone, and a handshake without SNI.

use std::net::SocketAddr;

use openssl::ssl::SslVersion;

use crate::evidence::certificates::{CertificateFact, name_matches_certificate};
use crate::outcome::Role;

use super::handshake::{Attempt, AttemptSpec, Ciphers, version_label};
use super::report::{ProtocolProbe, ProtocolStatus, SniProbe};
use super::{Budget, ProbeError};

/// The versions tried, oldest first.
pub const VERSIONS: [SslVersion; 4] = [
    SslVersion::TLS1,
    SslVersion::TLS1_1,
    SslVersion::TLS1_2,
    SslVersion::TLS1_3,
];

/// A default modern client (OpenSSL 3 at security level 2, curl, Python,
/// browsers) offers only TLS 1.2 and 1.3.
pub fn default_client_offers(version: SslVersion) -> bool {
    version == SslVersion::TLS1_2 || version == SslVersion::TLS1_3
}

/// One version's attempt (absent when the budget was spent).
pub struct VersionAttempt {
    pub version: SslVersion,
    pub attempt: Option<Attempt>,
}

/// Tries `version` alone against `addr`, with every suite at security
/// level 0, without verification: does the server speak it at all?
pub fn version_attempt(
    addr: SocketAddr,
    sni: Option<&str>,
    version: SslVersion,
    budget: &Budget,
) -> Result<VersionAttempt, ProbeError> {
    let attempt = match budget.step_deadline() {
        Some(deadline) => Some(super::handshake::run(
            &AttemptSpec::only(version, sni.map(str::to_string)),
            addr,
            None,
            deadline,
        )?),
        None => None,
    };
    Ok(VersionAttempt { version, attempt })
}

/// The server's alert, in words: "alert protocol_version (70)".
fn server_alert(attempt: &Attempt) -> Option<String> {
    attempt
        .tls
        .alerts
        .iter()
        .find(|a| a.sender == Role::Server)
        .map(|a| format!("alert {} ({})", a.description, a.code))
}

/// The report line of one version.
pub fn protocol_probe(v: &VersionAttempt) -> ProtocolProbe {
    let label = version_label(v.version);
    let mut probe = ProtocolProbe {
        version: label.to_string(),
        status: ProtocolStatus::NotTested,
        cipher: None,
        detail: None,
        default_client_offers: default_client_offers(v.version),
    };
    let Some(attempt) = &v.attempt else {
        probe.detail = Some("not tested: the total timeout was reached".to_string());
        return probe;
    };
    if attempt.connect_failure.is_some() {
        probe.detail = attempt.failure();
        return probe;
    }
    let hello_version = attempt
        .tls
        .server_hello
        .as_ref()
        .map(|h| h.version.as_str())
        .or(attempt.version.as_deref());
    if hello_version == Some(label) {
        probe.status = ProtocolStatus::Accepted;
        probe.cipher.clone_from(&attempt.cipher);
        if !attempt.completed {
            // Accepted the version, failed later (a client certificate, a
            // broken key exchange): say so, the version still works.
            probe.detail = attempt
                .failure()
                .map(|f| format!("the handshake then failed: {f}"));
        }
    } else {
        probe.status = ProtocolStatus::Rejected;
        probe.detail = server_alert(attempt).or_else(|| attempt.failure());
    }
    probe
}

/// The attempt whose chain stands for "what the server serves with SNI"
/// when the default client got none: the newest version that served one.
pub fn best_chain(versions: &[VersionAttempt]) -> Option<&Attempt> {
    versions
        .iter()
        .rev()
        .filter_map(|v| v.attempt.as_ref())
        .find(|a| !a.chain.is_empty())
}

/// A client without SNI: any version, every suite, no verification.
pub fn without_sni(addr: SocketAddr, budget: &Budget) -> Result<Option<Attempt>, ProbeError> {
    let Some(deadline) = budget.step_deadline() else {
        return Ok(None);
    };
    let spec = AttemptSpec {
        min_version: None,
        max_version: None,
        ciphers: Ciphers::Everything,
        verify: None,
        sni: None,
        alpn: &[],
        ocsp: false,
        request: None,
    };
    Ok(Some(super::handshake::run(&spec, addr, None, deadline)?))
}

/// The report line of the handshake without SNI, compared with the leaf
/// served with SNI (`sni_leaf_der`).
pub fn sni_probe(attempt: &Attempt, sni_leaf_der: Option<&[u8]>, name: &str) -> SniProbe {
    let leaf_der = attempt.chain.first();
    let leaf = leaf_der.and_then(|der| CertificateFact::from_der(der).ok());
    SniProbe {
        completed: attempt.completed,
        same_as_with_sni: match (leaf_der, sni_leaf_der) {
            (Some(a), Some(b)) => Some(a.as_slice() == b),
            _ => None,
        },
        covers_name: leaf.as_ref().map(|l| name_matches_certificate(l, name)),
        detail: if attempt.completed {
            None
        } else {
            server_alert(attempt).or_else(|| attempt.failure())
        },
        leaf,
    }
}
