//! Client simulation: which real clients connect, with what, and which
//! fail and why. Each profile's own ClientHello (see `profiles`) goes to
//! the server; its answer (version, suite, group, and in TLS 1.2 the
//! certificate and key exchange in clear) is then judged by that client's
//! policy — trust, names, dates, purpose, key usage, key sizes, signature
//! digests, DH size, certificate transparency. A refused hello is
//! explained from the enumeration: no version, suite or group in common.
//!
//! Every client judges with the probe's trust anchors (the system store,
//! or `--ca`): the question is what the server does, not which roots each
//! client ships. In TLS 1.3 the certificate is encrypted; the chain the
//! default client received stands for every client then.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::diagnosis::{Cause, Evidence, Source};
use crate::evidence::certificates::{
    self, CertificateFact, ChainFinding, ChainReport, TrustStore, name_matches_certificate,
};

use super::certs::{self, CertificateChecks};
use super::hello::{Flight, KeyExchange};
use super::iana::{self, KeyExchangeKind, TLS1_1, TLS1_3};
use super::profiles::{ClientProfile, KeyUsagePolicy, Sha1Policy};
use super::report::{Finding, ProtocolProbe, ProtocolStatus, Severity};
use super::suites::{EnumerationStatus, VersionSuites};

/// Why a simulated client fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    NoSharedVersion,
    NoSharedCipher,
    NoSharedGroup,
    NoSharedSignatureAlgorithm,
    /// The server refused the hello and the enumeration cannot say why.
    Refused,
    /// No answer, or not TLS.
    NoAnswer,
    /// A version the client negotiated but cannot complete (OpenSSL 3 and
    /// TLS 1.0/1.1).
    LegacyVersion,
    WeakKeyExchange,
    MissingIntermediate,
    UntrustedRoot,
    Expired,
    NotYetValid,
    NameMismatch,
    WrongPurpose,
    KeyUsage,
    WeakKey,
    WeakSignature,
    NoTransparency,
    ClientCertificate,
}

impl FailureKind {
    /// The catalogue class this failure is an instance of, if any.
    pub fn cause(self) -> Option<Cause> {
        use FailureKind::*;
        match self {
            NoSharedVersion | LegacyVersion => Some(Cause::ProtocolVersionMismatch),
            NoSharedCipher | NoSharedGroup | NoSharedSignatureAlgorithm => {
                Some(Cause::NoSharedCipher)
            }
            WeakKeyExchange | WeakKey | WeakSignature => Some(Cause::WeakCryptoRejected),
            MissingIntermediate => Some(Cause::ChainIncomplete),
            UntrustedRoot => Some(Cause::UntrustedRoot),
            Expired => Some(Cause::CertificateExpired),
            NotYetValid => Some(Cause::CertificateNotYetValid),
            NameMismatch => Some(Cause::HostnameMismatch),
            ClientCertificate => Some(Cause::ClientCertificateRequired),
            Refused | NoAnswer | WrongPurpose | KeyUsage | NoTransparency => None,
        }
    }
}

/// One simulated client's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSimulation {
    /// Profile id ("go-1.19").
    pub client: String,
    /// Display name ("Go 1.19 (crypto/tls)").
    pub name: String,
    /// The client would complete the handshake and accept the certificate.
    pub connects: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The suite (OpenSSL's name where it has one, else IANA's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// The key exchange: a group, "DH 2048 bits", "RSA key transport".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_exchange: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    /// Why it fails, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_kind: Option<FailureKind>,
    /// What else matters for this client (a HelloRetryRequest, an
    /// intermediate it would fetch).
    pub notes: Vec<String>,
}

/// What the simulation judges against.
pub struct Context<'a> {
    /// The default client's served chain, analysed for `name` with the
    /// probe's anchors.
    pub chain: Option<&'a ChainReport>,
    pub served: &'a [Vec<u8>],
    pub checks: &'a CertificateChecks,
    pub trust: &'a TrustStore,
    pub name: &'a str,
    pub now: DateTime<Utc>,
    /// The server insists on a client certificate (no profile sends one).
    pub client_certificate_required: bool,
    pub suites: &'a [VersionSuites],
    pub protocols: &'a [ProtocolProbe],
}

fn list(items: impl IntoIterator<Item = String>, max: usize) -> String {
    let all: Vec<String> = items.into_iter().collect();
    super::display::cap_list(&all, max)
}

fn suite_label(id: u16) -> String {
    iana::openssl_cipher_name(id).unwrap_or_else(|| iana::cipher_name(id))
}

/// Versions the server was seen to accept (matrix or enumeration).
fn server_versions(ctx: &Context) -> Vec<u16> {
    [iana::TLS1_0, iana::TLS1_1, iana::TLS1_2, TLS1_3]
        .into_iter()
        .filter(|&v| {
            let name = iana::version_name(v);
            ctx.protocols
                .iter()
                .any(|p| p.version == name && p.status == ProtocolStatus::Accepted)
                || ctx
                    .suites
                    .iter()
                    .any(|s| s.version == name && !s.suites.is_empty())
        })
        .collect()
}

fn enumeration<'a>(ctx: &'a Context, version: u16) -> Option<&'a VersionSuites> {
    let name = iana::version_name(version);
    ctx.suites
        .iter()
        .find(|s| s.version == name && s.status == EnumerationStatus::Complete)
}

/// Why the server refused this client's hello, from what it accepts.
fn explain_refusal(
    profile: &ClientProfile,
    flight: &Flight,
    ctx: &Context,
) -> (FailureKind, String) {
    if flight.hello.is_none() && (flight.timed_out || flight.not_tls || flight.error.is_some()) {
        return (FailureKind::NoAnswer, flight.refusal());
    }
    let said = flight.refusal();
    let server = server_versions(ctx);
    let common: Vec<u16> = profile
        .versions
        .iter()
        .copied()
        .filter(|v| server.contains(v))
        .collect();
    let names = |vs: &[u16]| list(vs.iter().map(|&v| iana::version_name(v)), 4);
    if !server.is_empty() && common.is_empty() {
        return (
            FailureKind::NoSharedVersion,
            format!(
                "no TLS version in common: the server speaks {}, the client offers {} ({said})",
                names(&server),
                names(profile.versions)
            ),
        );
    }
    let mut no_suites = Vec::new();
    for &v in &common {
        let Some(e) = enumeration(ctx, v) else {
            return refused(said);
        };
        let shared: Vec<u16> = e
            .ids()
            .filter(|s| profile.cipher_suites.contains(s))
            .collect();
        if !shared.is_empty() {
            if let Some(why) = group_mismatch(profile, ctx, v, &shared) {
                return (FailureKind::NoSharedGroup, format!("{why} ({said})"));
            }
            return (
                FailureKind::NoSharedSignatureAlgorithm,
                format!(
                    "the server refused the hello ({said}) although they share a version and suites: the likely mismatch is the signature algorithms the client accepts ({})",
                    list(
                        profile
                            .signature_algorithms
                            .iter()
                            .map(|&s| iana::signature_scheme_name(s)),
                        6
                    )
                ),
            );
        }
        no_suites.push(format!(
            "in {} the server accepts only {}",
            iana::version_name(v),
            list(e.ids().map(suite_label), 5)
        ));
    }
    if no_suites.is_empty() {
        return refused(said);
    }
    (
        FailureKind::NoSharedCipher,
        format!(
            "no cipher suite in common: {}, and the client offers none of them ({said})",
            no_suites.join("; ")
        ),
    )
}

fn refused(said: String) -> (FailureKind, String) {
    (
        FailureKind::Refused,
        format!("the server refused its ClientHello: {said}"),
    )
}

/// Suites are shared but the groups their key exchange needs are not.
fn group_mismatch(
    profile: &ClientProfile,
    ctx: &Context,
    version: u16,
    shared: &[u16],
) -> Option<String> {
    let e = enumeration(ctx, version)?;
    let needs_group = version == TLS1_3
        || shared
            .iter()
            .all(|&s| iana::key_exchange_kind(s) == KeyExchangeKind::Ecdhe);
    if !needs_group || e.groups.is_empty() {
        return None;
    }
    let offered: Vec<String> = profile
        .groups
        .iter()
        .map(|&g| iana::group_name(g))
        .collect();
    let common = e.groups.iter().any(|g| offered.contains(g));
    (!common).then(|| {
        format!(
            "no key-exchange group in common: with {} the server accepts only {}, the client offers {}",
            iana::version_name(version),
            list(e.groups.iter().cloned(), 5),
            list(offered, 5)
        )
    })
}

/// The certificate facts a verdict needs.
struct Served<'a> {
    chain: &'a ChainReport,
    checks: &'a CertificateChecks,
    /// DER of the leaf (for its AIA URL).
    leaf_der: Option<&'a [u8]>,
}

fn weak_digest(algorithm: &str) -> Option<&'static str> {
    let a = algorithm.to_ascii_lowercase();
    if a.contains("md5") || a.contains("md2") {
        Some("MD5")
    } else if a.contains("sha1") || a.contains("sha-1") {
        Some("SHA-1")
    } else {
        None
    }
}

fn small_key(cert: &CertificateFact, policy: &super::profiles::Policy) -> Option<String> {
    let bits = cert.key_bits?;
    let min = match cert.key_type.as_str() {
        "RSA" | "DSA" | "RSASSA-PSS" => policy.min_rsa_bits,
        "EC" => policy.min_ec_bits,
        _ => 0,
    };
    (bits < min).then(|| {
        format!(
            "its {bits}-bit {} key in \"{}\" is below the {min} bits it requires",
            cert.key_type, cert.subject
        )
    })
}

type Failure = (FailureKind, String);

/// Trust and dates, from the chain analysis.
fn chain_verdict(
    policy: &super::profiles::Policy,
    served: &Served,
    notes: &mut Vec<String>,
) -> Option<Failure> {
    for finding in &served.chain.findings {
        match finding {
            ChainFinding::MissingIntermediate { issuer } => {
                let url = served.leaf_der.and_then(super::findings::ca_issuers_url);
                match url {
                    Some(url) if policy.fetches_intermediates => notes.push(format!(
                        "fetches the missing intermediate \"{issuer}\" from {url}"
                    )),
                    _ => {
                        return Some((
                            FailureKind::MissingIntermediate,
                            format!(
                                "cannot build a chain: the server does not send the intermediate \"{issuer}\""
                            ),
                        ));
                    }
                }
            }
            ChainFinding::UntrustedRoot { root } => {
                return Some((
                    FailureKind::UntrustedRoot,
                    format!("the chain ends in \"{root}\", which it does not trust"),
                ));
            }
            ChainFinding::SelfSignedLeaf { subject } => {
                return Some((
                    FailureKind::UntrustedRoot,
                    format!("the certificate \"{subject}\" is self-signed"),
                ));
            }
            ChainFinding::Expired {
                subject, not_after, ..
            } => {
                return Some((
                    FailureKind::Expired,
                    format!("\"{subject}\" expired on {}", not_after.format("%Y-%m-%d")),
                ));
            }
            ChainFinding::NotYetValid {
                subject,
                not_before,
                ..
            } => {
                return Some((
                    FailureKind::NotYetValid,
                    format!(
                        "\"{subject}\" is not valid before {}",
                        not_before.format("%Y-%m-%d")
                    ),
                ));
            }
            _ => {}
        }
    }
    None
}

/// Name, purpose and key usage of the leaf.
fn leaf_verdict(
    policy: &super::profiles::Policy,
    served: &Served,
    kx: KeyExchangeKind,
    name: &str,
) -> Option<Failure> {
    if let Some(leaf) = served.chain.certificates.first() {
        if !name_matches_certificate(leaf, name) {
            return Some((
                FailureKind::NameMismatch,
                format!("the certificate does not cover \"{name}\""),
            ));
        }
        let dns_sans = leaf
            .sans
            .iter()
            .any(|s| s.parse::<std::net::IpAddr>().is_err());
        if !policy.cn_fallback && !dns_sans && name.parse::<std::net::IpAddr>().is_err() {
            return Some((
                FailureKind::NameMismatch,
                "the certificate names the host only in its Common Name; this client requires a subjectAltName".to_string(),
            ));
        }
    }
    let leaf = served.checks.leaf()?;
    if !leaf.server_auth && policy.server_auth_eku {
        return Some((
            FailureKind::WrongPurpose,
            "the certificate's extended key usage lacks serverAuth".to_string(),
        ));
    }
    let ec = served
        .chain
        .certificates
        .first()
        .is_some_and(|c| c.key_type == "EC");
    let missing = match policy.key_usage {
        KeyUsagePolicy::Ignored => None,
        KeyUsagePolicy::Purpose => {
            let any = ["digitalSignature", "keyEncipherment", "keyAgreement"]
                .iter()
                .any(|b| leaf.allows(b));
            (!any || (ec && !leaf.allows_signing())).then_some("digitalSignature")
        }
        KeyUsagePolicy::Strict => match kx {
            KeyExchangeKind::Rsa => (!leaf.allows("keyEncipherment")).then_some("keyEncipherment"),
            _ => (!leaf.allows_signing()).then_some("digitalSignature"),
        },
    };
    missing.map(|bit| {
        (
            FailureKind::KeyUsage,
            format!("the certificate's key usage lacks {bit}, which this key exchange needs"),
        )
    })
}

/// Key sizes, signature digests and certificate transparency.
fn crypto_verdict(
    policy: &super::profiles::Policy,
    served: &Served,
    public: bool,
) -> Option<Failure> {
    let certs = &served.chain.certificates;
    if let Some(why) = certs.iter().find_map(|c| small_key(c, policy)) {
        return Some((
            FailureKind::WeakKey,
            format!("it refuses the certificate: {why}"),
        ));
    }
    let refuses_sha1 = match policy.sha1_certificates {
        Sha1Policy::Accepted => false,
        Sha1Policy::Refused => true,
        Sha1Policy::RefusedUnderPublicRoots => public,
    };
    for c in certs.iter().filter(|c| !c.self_signed) {
        match weak_digest(&c.signature_algorithm) {
            Some("SHA-1") if !refuses_sha1 => {}
            Some(digest) => {
                return Some((
                    FailureKind::WeakSignature,
                    format!(
                        "\"{}\" is signed with {digest} ({}), which it refuses",
                        c.subject, c.signature_algorithm
                    ),
                ));
            }
            None => {}
        }
    }
    let scts = served.checks.leaf().map(|l| l.embedded_scts).unwrap_or(0)
        + served.checks.tls_extension_scts.unwrap_or(0);
    (policy.requires_sct_for_public && public && scts == 0).then(|| {
        (
            FailureKind::NoTransparency,
            "a publicly trusted certificate without SCTs (certificate transparency)".to_string(),
        )
    })
}

/// The client's verdict on the certificate it received.
fn certificate_verdict(
    profile: &ClientProfile,
    served: &Served,
    kx: KeyExchangeKind,
    ctx: &Context,
    notes: &mut Vec<String>,
) -> Option<Failure> {
    let policy = &profile.policy;
    chain_verdict(policy, served, notes)
        .or_else(|| leaf_verdict(policy, served, kx, ctx.name))
        .or_else(|| crypto_verdict(policy, served, ctx.checks.publicly_trusted()))
}

/// What the server negotiated with this client, judged before the
/// certificate: the version and suite it offered, a group it has, a
/// version it can complete, a DH group it accepts, no client certificate.
fn negotiation_verdict(
    profile: &ClientProfile,
    flight: &Flight,
    ctx: &Context,
    sim: &mut ClientSimulation,
) -> Option<Failure> {
    let Some(sh) = &flight.hello else {
        return Some(explain_refusal(profile, flight, ctx));
    };
    sim.version = Some(iana::version_name(sh.version));
    sim.cipher = Some(suite_label(sh.cipher));
    sim.alpn.clone_from(&sh.alpn);
    if !profile.versions.contains(&sh.version) || !profile.cipher_suites.contains(&sh.cipher) {
        return Some((
            FailureKind::Refused,
            "the server chose a version or suite the client did not offer".to_string(),
        ));
    }
    let kx = match (sh.group, flight.key_exchange) {
        (Some(g), _) => Some(KeyExchange::Group(g)),
        (None, k) => k,
    };
    sim.key_exchange = kx.map(KeyExchange::label);
    if let Some(KeyExchange::Group(g)) = kx {
        if !profile.groups.contains(&g) {
            return Some((
                FailureKind::NoSharedGroup,
                format!(
                    "the server asked for {}, which the client does not offer",
                    iana::group_name(g)
                ),
            ));
        }
        if sh.retry {
            sim.notes.push(format!(
                "the server asked for a {} key share (HelloRetryRequest): one more round trip",
                iana::group_name(g)
            ));
        }
    }
    if sh.version <= TLS1_1 && !profile.policy.legacy_versions {
        return Some((
            FailureKind::LegacyVersion,
            format!(
                "it cannot complete {}: the handshake's MD5/SHA-1 signatures are below its security level",
                iana::version_name(sh.version)
            ),
        ));
    }
    let min_dh = profile.policy.min_dh_bits;
    if let Some(bits) = kx.and_then(KeyExchange::dh_bits)
        && min_dh > 0
        && bits < min_dh
    {
        return Some((
            FailureKind::WeakKeyExchange,
            format!(
                "the server's {bits}-bit DH group is below the {min_dh} bits it requires (\"dh key too small\")"
            ),
        ));
    }
    ctx.client_certificate_required.then(|| {
        (
            FailureKind::ClientCertificate,
            "the server requires a client certificate".to_string(),
        )
    })
}

/// Judges one client's exchange.
pub fn simulate(profile: &ClientProfile, flight: &Flight, ctx: &Context) -> ClientSimulation {
    let mut sim = ClientSimulation {
        client: profile.id.to_string(),
        name: profile.name.to_string(),
        connects: false,
        version: None,
        cipher: None,
        key_exchange: None,
        alpn: None,
        failure: None,
        failure_kind: None,
        notes: Vec::new(),
    };
    let failure = negotiation_verdict(profile, flight, ctx, &mut sim).or_else(|| {
        let kind = flight
            .hello
            .as_ref()
            .map(|h| iana::key_exchange_kind(h.cipher))
            .unwrap_or(KeyExchangeKind::Other);
        // A TLS 1.2 flight shows the chain this client got; it can differ
        // from the default client's (a server with an RSA and an ECDSA
        // certificate).
        if !flight.certificates.is_empty() && flight.certificates != ctx.served {
            let chain = certificates::analyze_chain(
                &flight.certificates,
                Some(ctx.name),
                ctx.now,
                ctx.trust,
                "wire",
            );
            let checks = CertificateChecks {
                certificates: flight
                    .certificates
                    .iter()
                    .enumerate()
                    .filter_map(|(i, d)| certs::check_certificate(i, d))
                    .collect(),
                trust: ctx.checks.trust.clone(),
                tls_extension_scts: ctx.checks.tls_extension_scts,
            };
            let served = Served {
                chain: &chain,
                checks: &checks,
                leaf_der: flight.certificates.first().map(Vec::as_slice),
            };
            certificate_verdict(profile, &served, kind, ctx, &mut sim.notes)
        } else {
            let served = Served {
                chain: ctx.chain?,
                checks: ctx.checks,
                leaf_der: ctx.served.first().map(Vec::as_slice),
            };
            certificate_verdict(profile, &served, kind, ctx, &mut sim.notes)
        }
    });
    match failure {
        Some((kind, why)) => {
            sim.failure = Some(why);
            sim.failure_kind = Some(kind);
        }
        None => sim.connects = true,
    }
    sim
}

/// One finding per client that cannot connect. Its `cause` is the
/// catalogue class of the failure, so a root cause of that class hides it.
pub fn findings(sims: &[ClientSimulation]) -> Vec<Finding> {
    sims.iter()
        .filter(|s| !s.connects)
        .map(|s| {
            let why = s.failure.clone().unwrap_or_default();
            let mut f = Finding::new(
                "client-cannot-connect",
                Severity::Warning,
                format!("{} cannot connect: {why}", s.name),
            )
            .evidence(Evidence::new(
                Source::Wire,
                format!(
                    "{}'s own ClientHello (its versions, suites, groups and signature algorithms) {}",
                    s.name,
                    match (&s.version, &s.cipher) {
                        (Some(v), Some(c)) => format!("was answered with {v} {c}"),
                        _ => "was refused".to_string(),
                    }
                ),
            ))
            .fix(fix_for(s.failure_kind));
            f.cause = s.failure_kind.and_then(FailureKind::cause);
            f
        })
        .collect()
}

fn fix_for(kind: Option<FailureKind>) -> &'static str {
    use FailureKind::*;
    match kind {
        Some(NoSharedVersion | LegacyVersion) => {
            "Enable TLS 1.2 and 1.3 on the server (nginx: ssl_protocols TLSv1.2 TLSv1.3; Apache: SSLProtocol -all +TLSv1.2 +TLSv1.3)."
        }
        Some(NoSharedCipher | NoSharedSignatureAlgorithm) => {
            "Accept the common modern suites (e.g. nginx: ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20; or leave ssl_ciphers at the OpenSSL default)."
        }
        Some(NoSharedGroup) => {
            "Accept x25519 and secp256r1 (nginx: ssl_ecdh_curve X25519:prime256v1; Apache: SSLOpenSSLConfCmd Groups)."
        }
        Some(WeakKeyExchange) => {
            "Use a 2048-bit or larger DH group (nginx: ssl_dhparam with 2048+ bits), or prefer ECDHE suites."
        }
        Some(MissingIntermediate) => "Serve the full chain (leaf, then the intermediates).",
        Some(UntrustedRoot) => {
            "Use a certificate from a CA these clients trust, or install the private root in their trust stores."
        }
        Some(Expired | NotYetValid) => "Install a certificate that is valid now.",
        Some(NameMismatch) => {
            "Serve a certificate whose subjectAltName covers the name clients use."
        }
        Some(WrongPurpose | KeyUsage) => {
            "Reissue the certificate for TLS servers (extendedKeyUsage serverAuth, keyUsage digitalSignature)."
        }
        Some(WeakKey | WeakSignature) => {
            "Reissue the certificate with an RSA 2048+ or ECDSA P-256 key, signed with SHA-256."
        }
        Some(NoTransparency) => "Reissue the certificate with embedded SCTs.",
        Some(ClientCertificate) => "Clients must present a certificate the server's CA issued.",
        Some(Refused | NoAnswer) | None => {
            "Compare the server's accepted suites, groups and versions with this client's."
        }
    }
}

#[cfg(test)]
mod tests;
