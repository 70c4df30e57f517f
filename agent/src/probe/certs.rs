//! The certificate checks scanners make beside chain building: key usage
//! and extended key usage, key identifiers, must-staple and the stapled
//! OCSP response, certificate transparency, and the chain's verdict against
//! both the system store and `--ca`. Facts here; the findings they lead to
//! are at the end.

use std::path::Path;

use chrono::{DateTime, Utc};
use openssl::hash::MessageDigest;
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspFlag, OcspResponse, OcspResponseStatus};
use openssl::stack::Stack;
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use serde::{Deserialize, Serialize};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::evidence::certificates::{self, TrustStore};

use super::report::{Finding, OcspStaple, Severity};

/// TLS Feature (RFC 7633); with status_request (5) in it: must-staple.
const TLS_FEATURE_OID: &str = "1.3.6.1.5.5.7.1.24";
/// Seconds of clock difference tolerated on an OCSP response's dates.
const OCSP_LEEWAY_SECS: u32 = 300;

/// The facts of one served certificate beyond `CertificateFact`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateCheck {
    /// Position in the served chain (0 = leaf).
    pub index: usize,
    pub subject: String,
    /// subjectAltNames before any cap of the report's lists.
    pub san_count: usize,
    /// keyUsage bits by RFC 5280 name; absent when the extension is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_usage: Option<Vec<String>>,
    /// extendedKeyUsage purposes ("serverAuth", or a dotted OID); absent
    /// when the extension is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_key_usage: Option<Vec<String>>,
    /// The certificate may be used for TLS server authentication: no EKU,
    /// or one with serverAuth or anyExtendedKeyUsage.
    pub server_auth: bool,
    pub authority_key_id: bool,
    pub subject_key_id: bool,
    /// TLS Feature status_request (RFC 7633): clients that honour it
    /// (Firefox) refuse the certificate without a stapled OCSP response.
    pub must_staple: bool,
    /// SCTs embedded in the certificate (RFC 6962).
    pub embedded_scts: usize,
    pub self_signed: bool,
    pub is_ca: bool,
}

impl CertificateCheck {
    /// The keyUsage allows digitalSignature (absent keyUsage allows all).
    pub fn allows_signing(&self) -> bool {
        self.allows("digitalSignature")
    }

    /// The keyUsage allows `bit` (absent keyUsage allows all).
    pub fn allows(&self, bit: &str) -> bool {
        self.key_usage
            .as_ref()
            .is_none_or(|ku| ku.iter().any(|b| b == bit))
    }
}

/// One trust store's verdict on the served chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustCheck {
    /// "system (<files>)" or "--ca <file>".
    pub store: String,
    /// X509 verify result (0 = ok), for the verified name.
    pub verify_code: i32,
    pub verify_text: String,
}

/// Everything the certificate checks found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateChecks {
    /// One entry per served certificate (as many as were kept).
    pub certificates: Vec<CertificateCheck>,
    /// The served chain against the client's anchors, and — with `--ca` —
    /// against the system store too.
    pub trust: Vec<TrustCheck>,
    /// SCTs the server sent in the TLS extension (TLS 1.2 hellos of the
    /// client simulation that asked for them); absent when none asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_extension_scts: Option<usize>,
}

impl CertificateChecks {
    pub fn leaf(&self) -> Option<&CertificateCheck> {
        self.certificates.first()
    }

    /// The chain verifies against the system store: a public CA issued it.
    pub fn publicly_trusted(&self) -> bool {
        self.trust
            .iter()
            .any(|t| t.store.starts_with("system") && t.verify_code == 0)
    }
}

fn key_usage_names(flags: u16) -> Vec<String> {
    const NAMES: [&str; 9] = [
        "digitalSignature",
        "nonRepudiation",
        "keyEncipherment",
        "dataEncipherment",
        "keyAgreement",
        "keyCertSign",
        "cRLSign",
        "encipherOnly",
        "decipherOnly",
    ];
    NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| flags >> bit & 1 == 1)
        .map(|(_, n)| n.to_string())
        .collect()
}

fn eku_names(eku: &x509_parser::extensions::ExtendedKeyUsage) -> Vec<String> {
    let mut out = Vec::new();
    for (set, name) in [
        (eku.any, "anyExtendedKeyUsage"),
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "OCSPSigning"),
    ] {
        if set {
            out.push(name.to_string());
        }
    }
    out.extend(eku.other.iter().map(|o| o.to_id_string()));
    out
}

/// A TLS Feature value (SEQUENCE OF INTEGER) that lists status_request.
fn lists_status_request(value: &[u8]) -> bool {
    use x509_parser::der_parser::ber::BerObjectContent;
    let Ok((_, obj)) = x509_parser::der_parser::parse_der(value) else {
        return false;
    };
    match obj.content {
        BerObjectContent::Sequence(items) => items.iter().any(|i| i.as_u32() == Ok(5)),
        _ => false,
    }
}

/// The checks of one DER certificate (`None` when it does not parse).
pub fn check_certificate(index: usize, der: &[u8]) -> Option<CertificateCheck> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut check = CertificateCheck {
        index,
        subject: cert.subject().to_string(),
        san_count: 0,
        key_usage: None,
        extended_key_usage: None,
        server_auth: true,
        authority_key_id: false,
        subject_key_id: false,
        must_staple: false,
        embedded_scts: 0,
        self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
        is_ca: cert.is_ca(),
    };
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => check.key_usage = Some(key_usage_names(ku.flags)),
            ParsedExtension::ExtendedKeyUsage(eku) => {
                check.server_auth = eku.any || eku.server_auth;
                check.extended_key_usage = Some(eku_names(eku));
            }
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                check.authority_key_id = aki.key_identifier.is_some();
            }
            ParsedExtension::SubjectKeyIdentifier(_) => check.subject_key_id = true,
            ParsedExtension::SubjectAlternativeName(san) => {
                check.san_count = san.general_names.len();
            }
            ParsedExtension::SCT(scts) => check.embedded_scts = scts.len(),
            _ if ext.oid.to_id_string() == TLS_FEATURE_OID => {
                check.must_staple = lists_status_request(ext.value);
            }
            _ => {}
        }
    }
    Some(check)
}

/// The checks of every served certificate, and the chain's verdict for
/// `name` against `trust` (labelled `label`) and — when `trust` is the
/// user's own `--ca` — against the system store as well.
pub fn check_chain(
    served: &[Vec<u8>],
    name: &str,
    now: DateTime<Utc>,
    trust: (&TrustStore, &str),
    own_anchors: bool,
) -> CertificateChecks {
    let certificates = served
        .iter()
        .enumerate()
        .filter_map(|(i, der)| check_certificate(i, der))
        .collect();
    let mut checks = CertificateChecks {
        certificates,
        ..CertificateChecks::default()
    };
    if served.is_empty() {
        return checks;
    }
    let verdict = |store: &TrustStore, label: &str| {
        let report = certificates::analyze_chain(served, Some(name), now, store, "wire");
        TrustCheck {
            store: label.to_string(),
            verify_code: report.verify_code,
            verify_text: report.verify_text,
        }
    };
    checks.trust.push(verdict(trust.0, trust.1));
    if own_anchors && let Ok(system) = TrustStore::system() {
        let label = format!("system ({})", system.source());
        checks.trust.push(verdict(&system, &label));
    }
    checks
}

/// SCTs in a SignedCertificateTimestampList without its outer length (as
/// tls-parser hands the extension over): a sequence of u16-length entries.
pub fn count_scts(mut list: &[u8]) -> usize {
    let mut n = 0;
    while let Some(&[hi, lo]) = list.get(..2) {
        let len = u16::from_be_bytes([hi, lo]) as usize;
        let Some(rest) = list.get(2 + len..) else {
            break;
        };
        if len > 0 {
            n += 1;
        }
        list = rest;
    }
    n
}

fn response_status_name(status: OcspResponseStatus) -> &'static str {
    match status {
        OcspResponseStatus::SUCCESSFUL => "successful",
        OcspResponseStatus::MALFORMED_REQUEST => "malformedRequest",
        OcspResponseStatus::INTERNAL_ERROR => "internalError",
        OcspResponseStatus::TRY_LATER => "tryLater",
        OcspResponseStatus::SIG_REQUIRED => "sigRequired",
        OcspResponseStatus::UNAUTHORIZED => "unauthorized",
        _ => "unknown",
    }
}

/// The client's anchors as an OpenSSL store, for the OCSP signature.
fn anchor_store(ca: Option<&Path>) -> Option<openssl::x509::store::X509Store> {
    let mut builder = X509StoreBuilder::new().ok()?;
    match ca {
        Some(path) => {
            let pem = std::fs::read(path).ok()?;
            for cert in X509::stack_from_pem(&pem).ok()? {
                builder.add_cert(cert).ok()?;
            }
        }
        None => builder.set_default_paths().ok()?,
    }
    Some(builder.build())
}

/// A stapled OCSP response: its status, the leaf's status in it, whether
/// its signature verifies against the client's anchors (with the served
/// chain as intermediates) and whether it is current.
pub fn ocsp_staple(der: &[u8], served: &[Vec<u8>], ca: Option<&Path>) -> OcspStaple {
    let mut staple = OcspStaple {
        response_status: "unparsable".to_string(),
        certificate_status: None,
        bytes: der.len(),
        verified: None,
        this_update: None,
        next_update: None,
        current: None,
        detail: None,
    };
    let Ok(response) = OcspResponse::from_der(der) else {
        staple.detail = Some("the stapled response is not a DER OCSP response".to_string());
        return staple;
    };
    staple.response_status = response_status_name(response.status()).to_string();
    let Ok(basic) = response.basic() else {
        return staple;
    };
    let chain: Vec<X509> = served
        .iter()
        .filter_map(|d| X509::from_der(d).ok())
        .collect();
    if let Some(store) = anchor_store(ca)
        && let Ok(mut certs) = Stack::new()
    {
        for c in &chain {
            let _ = certs.push(c.clone());
        }
        let result = basic.verify(&certs, &store, OcspFlag::empty());
        staple.verified = Some(result.is_ok());
        if let Err(e) = result {
            staple.detail = Some(format!(
                "its signature does not verify: {e}",
                e = crate::text::Chain(&e)
            ));
        }
    }
    let (Some(leaf), Some(issuer)) = (chain.first(), chain.get(1)) else {
        return staple;
    };
    let Ok(id) = OcspCertId::from_cert(MessageDigest::sha1(), leaf, issuer) else {
        return staple;
    };
    if let Some(found) = basic.find_status(&id) {
        staple.certificate_status = Some(
            match found.status {
                OcspCertStatus::GOOD => "good",
                OcspCertStatus::REVOKED => "revoked",
                _ => "unknown",
            }
            .to_string(),
        );
        staple.this_update = Some(found.this_update.to_string());
        staple.next_update = found.next_update().map(|t| t.to_string());
        staple.current = Some(found.check_validity(OCSP_LEEWAY_SECS, None).is_ok());
    }
    staple
}

fn wire(text: String) -> crate::diagnosis::Evidence {
    crate::diagnosis::Evidence::new(crate::diagnosis::Source::Wire, text)
}

/// What the checks show that clients act on. `file` names the configured
/// certificate (" in /etc/nginx/site.crt (ssl_certificate at …)") when known.
pub fn findings(
    checks: &CertificateChecks,
    ocsp: Option<&OcspStaple>,
    handshake_completed: bool,
    file: &str,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in checks.certificates.iter().filter(|c| !c.server_auth) {
        let which = if c.index == 0 {
            "the certificate".to_string()
        } else {
            format!("the intermediate #{} \"{}\"", c.index, c.subject)
        };
        let ekus = c.extended_key_usage.clone().unwrap_or_default().join(", ");
        out.push(
            Finding::new(
                "certificate-not-for-server-auth",
                Severity::Critical,
                format!(
                    "{which} may not be used by TLS servers: its extended key usage ({ekus}) lacks serverAuth, so clients refuse it (OpenSSL: \"unsupported certificate purpose\", X509 error 26)"
                ),
            )
            .evidence(wire(format!("certificate #{}: extendedKeyUsage {ekus}", c.index)))
            .fix(format!(
                "Reissue it with extendedKeyUsage serverAuth{}{file}.",
                if c.index == 0 { "" } else { " (or without an EKU on the intermediate)" }
            )),
        );
    }
    if let Some(leaf) = checks.leaf().filter(|l| !l.allows_signing()) {
        let ku = leaf.key_usage.clone().unwrap_or_default().join(", ");
        out.push(
            Finding::new(
                "key-usage-incompatible",
                Severity::Warning,
                format!(
                    "the certificate's key usage ({ku}) lacks digitalSignature, which TLS 1.3 and ECDHE key exchanges need: strict clients (Java, GnuTLS, Chrome) refuse it"
                ),
            )
            .evidence(wire(format!("certificate #0: keyUsage {ku}")))
            .fix(format!(
                "Reissue it with keyUsage digitalSignature (and keyEncipherment for RSA key transport){file}."
            )),
        );
    }
    out.extend(ocsp_findings(checks, ocsp, handshake_completed));
    out.extend(transparency_finding(checks));
    out.extend(key_identifier_finding(checks, file));
    out
}

fn ocsp_findings(
    checks: &CertificateChecks,
    ocsp: Option<&OcspStaple>,
    handshake_completed: bool,
) -> Option<Finding> {
    let must_staple = checks.leaf().is_some_and(|l| l.must_staple);
    match ocsp {
        None if must_staple && handshake_completed => Some(
            Finding::new(
                "must-staple-not-stapled",
                Severity::Warning,
                "the certificate demands OCSP stapling (TLS Feature status_request) but the server staples no OCSP response: Firefox refuses the connection",
            )
            .evidence(wire(
                "certificate #0 carries the TLS Feature extension with status_request; the server sent no CertificateStatus to a client that asked for one".to_string(),
            ))
            .fix("Enable stapling (nginx: ssl_stapling on; ssl_stapling_verify on; with a resolver or ssl_stapling_file; Apache: SSLUseStapling on), or reissue the certificate without must-staple."),
        ),
        Some(s) => {
            let problem = if s.response_status != "successful" {
                Some(format!("its status is {}", s.response_status))
            } else if s.verified == Some(false) {
                Some(s.detail.clone().unwrap_or_else(|| "its signature does not verify".into()))
            } else if s.current == Some(false) {
                Some(format!(
                    "it is not current (thisUpdate {}, nextUpdate {})",
                    s.this_update.as_deref().unwrap_or("?"),
                    s.next_update.as_deref().unwrap_or("-")
                ))
            } else if s.certificate_status.as_deref() == Some("unknown") {
                Some("it says the responder does not know the certificate".to_string())
            } else {
                None
            }?;
            Some(
                Finding::new(
                    "ocsp-staple-invalid",
                    Severity::Warning,
                    format!("the server staples an OCSP response that clients cannot use: {problem}"),
                )
                .evidence(wire(format!(
                    "stapled OCSP response, {} bytes: status {}, certificate {}",
                    s.bytes,
                    s.response_status,
                    s.certificate_status.as_deref().unwrap_or("not found")
                )))
                .fix(format!(
                    "Let the server fetch a fresh response from the CA's responder (nginx: ssl_stapling with a resolver, not a stale ssl_stapling_file){}.",
                    if must_staple { "; with must-staple, Firefox refuses the connection meanwhile" } else { "" }
                )),
            )
        }
        None => None,
    }
}

fn transparency_finding(checks: &CertificateChecks) -> Option<Finding> {
    let leaf = checks.leaf()?;
    let scts = leaf.embedded_scts + checks.tls_extension_scts.unwrap_or(0);
    (checks.publicly_trusted() && scts == 0).then(|| {
        Finding::new(
            "no-certificate-transparency",
            Severity::Warning,
            "the certificate chains to a public root but carries no SCTs (certificate transparency): Chrome and Safari refuse it",
        )
        .evidence(wire(format!(
            "certificate #0: {} embedded SCTs; TLS extension: {}",
            leaf.embedded_scts,
            checks
                .tls_extension_scts
                .map(|n| format!("{n} SCTs"))
                .unwrap_or_else(|| "not asked".into())
        )))
        .fix("Reissue the certificate from the CA with embedded SCTs (every public CA does this by default).")
    })
}

fn key_identifier_finding(checks: &CertificateChecks, file: &str) -> Option<Finding> {
    let missing: Vec<String> = checks
        .certificates
        .iter()
        .flat_map(|c| {
            let mut m = Vec::new();
            if !c.self_signed && !c.authority_key_id {
                m.push(format!(
                    "certificate #{} lacks an authority key identifier",
                    c.index
                ));
            }
            if c.is_ca && !c.subject_key_id {
                m.push(format!(
                    "CA certificate #{} lacks a subject key identifier",
                    c.index
                ));
            }
            m
        })
        .collect();
    (!missing.is_empty()).then(|| {
        Finding::new(
            "missing-key-identifier",
            Severity::Warning,
            format!(
                "{}: strict verifiers refuse the chain (Python 3.13+ and OpenSSL's X509_STRICT: \"Missing Authority Key Identifier\")",
                missing.join("; ")
            ),
        )
        .evidence(wire(missing.join("; ")))
        .fix(format!(
            "Reissue the certificate with authorityKeyIdentifier (and CA certificates with subjectKeyIdentifier){file}."
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scts_are_counted_in_the_extension_list() {
        assert_eq!(count_scts(&[0, 2, 9, 9, 0, 1, 7]), 2);
        assert_eq!(count_scts(&[0, 5, 1]), 0);
        assert_eq!(count_scts(&[]), 0);
    }

    #[test]
    fn key_usage_bits_by_name() {
        assert_eq!(
            key_usage_names(0b101),
            ["digitalSignature", "keyEncipherment"]
        );
        assert!(key_usage_names(0).is_empty());
    }

    #[test]
    fn must_staple_is_status_request_in_the_tls_feature() {
        // SEQUENCE { INTEGER 5 }
        assert!(lists_status_request(&[0x30, 0x03, 0x02, 0x01, 0x05]));
        // SEQUENCE { INTEGER 17 } (status_request_v2 only)
        assert!(!lists_status_request(&[0x30, 0x03, 0x02, 0x01, 0x11]));
        assert!(!lists_status_request(&[0xff]));
    }

    fn check(index: usize) -> CertificateCheck {
        CertificateCheck {
            index,
            subject: format!("CN=c{index}"),
            san_count: 1,
            key_usage: None,
            extended_key_usage: None,
            server_auth: true,
            authority_key_id: true,
            subject_key_id: true,
            must_staple: false,
            embedded_scts: 0,
            self_signed: false,
            is_ca: index > 0,
        }
    }

    fn kinds(found: &[Finding]) -> Vec<&str> {
        found.iter().map(|f| f.kind.as_str()).collect()
    }

    #[test]
    fn purpose_key_usage_and_identifiers() {
        let mut leaf = check(0);
        leaf.server_auth = false;
        leaf.extended_key_usage = Some(vec!["clientAuth".into()]);
        leaf.key_usage = Some(vec!["keyEncipherment".into()]);
        let mut int = check(1);
        int.subject_key_id = false;
        let checks = CertificateChecks {
            certificates: vec![leaf, int],
            ..CertificateChecks::default()
        };
        let found = findings(&checks, None, true, "");
        assert_eq!(
            kinds(&found),
            [
                "certificate-not-for-server-auth",
                "key-usage-incompatible",
                "missing-key-identifier"
            ]
        );
        assert!(
            found[0].summary.contains("clientAuth"),
            "{}",
            found[0].summary
        );
        assert_eq!(found[0].severity, Severity::Critical);
        assert!(found[2].summary.contains("#1"), "{}", found[2].summary);
    }

    #[test]
    fn stapling_and_transparency() {
        let mut leaf = check(0);
        leaf.must_staple = true;
        let mut checks = CertificateChecks {
            certificates: vec![leaf],
            trust: vec![TrustCheck {
                store: "system (/etc/ssl/certs)".into(),
                verify_code: 0,
                verify_text: "ok".into(),
            }],
            tls_extension_scts: None,
        };
        let found = findings(&checks, None, true, "");
        assert_eq!(
            kinds(&found),
            ["must-staple-not-stapled", "no-certificate-transparency"]
        );
        // SCTs from the TLS extension count; a failed handshake says nothing
        // about stapling.
        checks.tls_extension_scts = Some(2);
        assert!(findings(&checks, None, false, "").is_empty());
        let stale = OcspStaple {
            response_status: "successful".into(),
            certificate_status: Some("good".into()),
            bytes: 300,
            verified: Some(true),
            this_update: Some("Jan  1 00:00:00 2020 GMT".into()),
            next_update: Some("Jan  2 00:00:00 2020 GMT".into()),
            current: Some(false),
            detail: None,
        };
        let found = findings(&checks, Some(&stale), true, "");
        assert_eq!(kinds(&found), ["ocsp-staple-invalid"]);
        assert!(
            found[0].summary.contains("not current"),
            "{}",
            found[0].summary
        );
    }
}
