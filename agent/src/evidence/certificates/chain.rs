//! Chain analysis: path building, name matching, weak keys and digests,
//! and OpenSSL's own verdict, for one served chain.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkey::Id;
use openssl::stack::Stack;
use openssl::x509::{X509, X509Ref, X509StoreContext};

use super::trust::{X509_STORE_CTX_get0_param, X509_VERIFY_PARAM_set1};
use super::*;

/// `issuer`'s subject is `cert`'s issuer and `issuer`'s key verifies
/// `cert`'s signature. Unlike `X509_check_issued` this ignores key usage:
/// the question is which certificate issued which, not whether it may.
pub(super) fn signed_by(cert: &X509Ref, issuer: &X509Ref) -> bool {
    let names_match = issuer
        .subject_name()
        .try_cmp(cert.issuer_name())
        .is_ok_and(|o| o.is_eq());
    names_match
        && issuer
            .public_key()
            .and_then(|key| cert.verify(&key))
            .unwrap_or(false)
}

fn self_signed(cert: &X509Ref) -> bool {
    signed_by(cert, cert)
}

/// "1.2.3.4", "::1" or "[::1]" as an address.
pub(super) fn parse_ip(name: &str) -> Option<IpAddr> {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    bare.parse().ok()
}

/// Whether `name` is a name `cert` is valid for, by RFC 6125 as TLS clients
/// apply it: an IP name matches an IP SAN only; a DNS name matches a SAN
/// DNS name, or the CN when there are no SAN DNS names; case-insensitive;
/// a wildcard only as the whole left-most label, matching exactly one label,
/// with at least two labels after it.
///
/// `CertificateFact::sans` holds DNS names and addresses as text, so a SAN
/// that parses as an address is taken as an IP SAN.
pub fn name_matches_certificate(cert: &CertificateFact, name: &str) -> bool {
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.contains('*') {
        return false;
    }
    if let Some(ip) = parse_ip(name) {
        return cert.sans.iter().any(|s| parse_ip(s) == Some(ip));
    }
    let dns: Vec<&str> = cert
        .sans
        .iter()
        .map(String::as_str)
        .filter(|s| parse_ip(s).is_none())
        .collect();
    if dns.is_empty() {
        return cert
            .common_name
            .as_deref()
            .is_some_and(|cn| dns_name_matches(cn, name));
    }
    dns.iter().any(|pattern| dns_name_matches(pattern, name))
}

fn dns_name_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    if let Some(rest) = pattern.strip_prefix("*.") {
        // "*.com" would cover a whole TLD: refused, as OpenSSL does.
        if rest.contains('*') || !rest.contains('.') {
            return false;
        }
        return match name.split_once('.') {
            Some((first, tail)) => !first.is_empty() && tail.eq_ignore_ascii_case(rest),
            None => false,
        };
    }
    !pattern.contains('*') && pattern.eq_ignore_ascii_case(name)
}

/// How the path from the leaf ended.
enum PathEnd {
    /// At a certificate a trust anchor issued (or that is an anchor).
    Anchored,
    /// At a self-signed certificate the store does not hold.
    UntrustedSelfSigned,
    /// At a certificate whose issuer is neither served nor an anchor.
    IssuerMissing,
}

/// Builds the path from the leaf (index 0) through the served certificates,
/// preferring a trust anchor at each step (OpenSSL's trusted-first rule).
fn build_path(certs: &[X509], trust: &TrustStore) -> (Vec<usize>, PathEnd) {
    let mut path = vec![0];
    let mut cur = 0;
    loop {
        let Some(cert) = certs.get(cur) else {
            return (path, PathEnd::IssuerMissing);
        };
        if trust.issuer_of(cert).is_some() {
            return (path, PathEnd::Anchored);
        }
        if self_signed(cert) {
            return (path, PathEnd::UntrustedSelfSigned);
        }
        // The next served certificate first (the expected order), then any.
        let next = std::iter::once(cur + 1)
            .chain(0..certs.len())
            .filter(|j| *j != cur && !path.contains(j))
            .find(|&j| certs.get(j).is_some_and(|issuer| signed_by(cert, issuer)));
        match next {
            Some(j) => {
                path.push(j);
                cur = j;
            }
            None => return (path, PathEnd::IssuerMissing),
        }
    }
}

fn weak_digest(cert: &X509Ref) -> bool {
    cert.signature_algorithm()
        .object()
        .nid()
        .signature_algorithms()
        .is_some_and(|algs| {
            [Nid::MD2, Nid::MD4, Nid::MD5, Nid::MD5_SHA1, Nid::SHA1].contains(&algs.digest)
        })
}

fn weak_key(cert: &X509Ref) -> Option<u32> {
    let key = cert.public_key().ok()?;
    let bits = key.bits();
    let weak = match key.id() {
        Id::RSA | Id::RSA_PSS | Id::DSA => bits < 2048,
        Id::EC => bits < 224,
        _ => false,
    };
    weak.then_some(bits)
}

/// Runs `X509_verify_cert` as a client would: leaf plus the rest as the
/// untrusted chain, at time `now`, checking `name` when given.
pub(super) fn openssl_verify(
    certs: &[X509],
    name: Option<&str>,
    now: DateTime<Utc>,
    trust: &TrustStore,
) -> Result<(i32, String), ErrorStack> {
    let store = trust.anchor_store()?;
    let param = trust.verify_param(now, name)?;
    let mut untrusted = Stack::new()?;
    for cert in certs.iter().skip(1) {
        untrusted.push(cert.clone())?;
    }
    let Some(leaf) = certs.first() else {
        return Ok((VERIFY_NOT_RUN, "no certificate".to_string()));
    };
    let mut ctx = X509StoreContext::new()?;
    ctx.init(store, leaf, &untrusted, |c| {
        // SAFETY: `c` is an initialised store context whose parameters live
        // as long as it; set1 copies the values out of `param`.
        let copied = unsafe {
            X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(c.as_ptr()), param.as_ptr())
        };
        if copied != 1 {
            return Err(ErrorStack::get());
        }
        c.verify_cert()?;
        let result = c.error();
        Ok((result.as_raw(), result.error_string().to_string()))
    })
}

/// Analyses a chain as served (leaf first).
///
/// `verify_code`/`verify_text` are OpenSSL's `X509_verify_cert` verdict at
/// time `now` against `trust`, with the SSL-server purpose, the store's
/// security level as auth level, and — when `name` is given — the host (or
/// IP) set on the verify parameters, so the code is what a hostname-checking
/// OpenSSL client sees (62 for a wrong name, 64 for a wrong IP). OpenSSL
/// reports only the first error (an unbuildable chain gives 20 and hides the
/// dates); `findings` list every problem found independently. Date and
/// signature findings cover the certificates on the path from the leaf;
/// key-size findings every served certificate. `VERIFY_NOT_RUN` (-1) means
/// OpenSSL was not run.
pub fn analyze_chain(
    chain_der: &[Vec<u8>],
    name: Option<&str>,
    now: DateTime<Utc>,
    trust: &TrustStore,
    source: &str,
) -> ChainReport {
    AnalysedChain::new(chain_der, now, trust, source).report_for(name, trust)
}

/// Whether a name is one the leaf is valid for, and of which kind: the
/// only thing about a name OpenSSL's verdict depends on (`check_id` passes
/// or fails with 62 for a DNS name, 64 for an address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mismatch {
    Dns,
    Ip,
}

/// A chain analysed once and checked for any number of names: parsing,
/// path building and OpenSSL's verdict do not depend on the name a client
/// asked for, so a flood of handshakes with random SNIs costs one analysis
/// (plus at most one verification per kind of mismatching name), not one
/// per name.
#[derive(Clone, Debug)]
pub struct AnalysedChain {
    /// The report for no name.
    base: ChainReport,
    /// Where a name mismatch goes among `base.findings` (after the path
    /// findings, before those of single certificates).
    name_at: usize,
    /// The certificates analysed, for a verification with a name.
    der: Vec<Vec<u8>>,
    now: DateTime<Utc>,
    /// OpenSSL's verdict for a name the leaf is not valid for, by kind.
    mismatched: Vec<(Mismatch, i32, String)>,
}

impl AnalysedChain {
    /// Analyses `chain_der` (leaf first) at `now`, for no name.
    pub fn new(
        chain_der: &[Vec<u8>],
        now: DateTime<Utc>,
        trust: &TrustStore,
        source: &str,
    ) -> AnalysedChain {
        let mut analysed = AnalysedChain {
            base: ChainReport {
                source: source.to_string(),
                certificates: Vec::new(),
                verify_code: VERIFY_NOT_RUN,
                verify_text: "not verified".to_string(),
                name: None,
                findings: Vec::new(),
            },
            name_at: 0,
            der: Vec::new(),
            now,
            mismatched: Vec::new(),
        };
        let report = &mut analysed.base;
        let Some(certs) = parse_chain(chain_der, source, report) else {
            analysed.name_at = report.findings.len();
            return analysed;
        };
        analysed.der = chain_der.iter().take(MAX_CHAIN_CERTS).cloned().collect();
        match openssl_verify(&certs, None, now, trust) {
            Ok((code, text)) => {
                report.verify_code = code;
                report.verify_text = text;
            }
            Err(e) => {
                report.verify_text = format!(
                    "verification could not run: {e}",
                    e = crate::text::Chain(&e)
                )
            }
        }
        let facts = &report.certificates;
        let findings = &mut report.findings;
        let (path, end) = build_path(&certs, trust);
        path_findings(&certs, facts, &path, end, findings);
        analysed.name_at = findings.len();
        certificate_findings(&certs, facts, &path, now, findings);
        analysed
    }

    /// Replaces the findings about unreadable certificates with
    /// `file_findings` (why the files could not be read beats "empty
    /// chain"), first in the list.
    pub fn replace_unreadable(&mut self, file_findings: Vec<ChainFinding>) {
        if file_findings.is_empty() {
            return;
        }
        let findings = &mut self.base.findings;
        let unreadable_before_name = findings
            .iter()
            .take(self.name_at)
            .filter(|f| matches!(f, ChainFinding::Unreadable { .. }))
            .count();
        findings.retain(|f| !matches!(f, ChainFinding::Unreadable { .. }));
        let added = file_findings.len();
        findings.splice(0..0, file_findings);
        self.name_at = self.name_at - unreadable_before_name + added;
    }

    /// The report for `name` (None: no name checked).
    pub fn report_for(&mut self, name: Option<&str>, trust: &TrustStore) -> ChainReport {
        let mut report = self.base.clone();
        report.name = name.map(str::to_string);
        let (Some(name), Some(leaf)) = (name, self.base.certificates.first()) else {
            return report;
        };
        if name_matches_certificate(leaf, name) {
            return report;
        }
        // A name OpenSSL cannot take (empty, NUL) is not checked by it.
        let trimmed = name.trim_end_matches('.');
        let unchecked = trimmed.is_empty() || trimmed.contains('\0');
        report.findings.insert(
            self.name_at.min(report.findings.len()),
            ChainFinding::NameMismatch {
                name: name.to_string(),
                sans: leaf.sans.clone(),
            },
        );
        if unchecked {
            return report;
        }
        let kind = if parse_ip(name).is_some() {
            Mismatch::Ip
        } else {
            Mismatch::Dns
        };
        if let Some((_, code, text)) = self.mismatched.iter().find(|(k, _, _)| *k == kind) {
            report.verify_code = *code;
            report.verify_text = text.clone();
            return report;
        }
        let certs: Result<Vec<X509>, ErrorStack> =
            self.der.iter().map(|der| X509::from_der(der)).collect();
        let verdict = certs
            .and_then(|certs| openssl_verify(&certs, Some(name), self.now, trust))
            .unwrap_or_else(|e| {
                (
                    VERIFY_NOT_RUN,
                    format!(
                        "verification could not run: {e}",
                        e = crate::text::Chain(&e)
                    ),
                )
            });
        report.verify_code = verdict.0;
        report.verify_text = verdict.1.clone();
        self.mismatched.push((kind, verdict.0, verdict.1));
        report
    }

    /// Roughly the memory this analysis holds: the DER kept, plus the
    /// parsed facts.
    pub fn heap_bytes(&self) -> usize {
        const PER_FACT: usize = 1024;
        self.der.iter().map(Vec::len).sum::<usize>()
            + self.base.certificates.len() * PER_FACT
            + self.base.findings.len() * 256
            + std::mem::size_of::<AnalysedChain>()
    }
}

/// Parses the served certificates (at most [`MAX_CHAIN_CERTS`]) into
/// `report.certificates`, noting those that do not parse. `None` when there
/// is nothing to analyse: no certificate, or an unreadable leaf (every other
/// finding would be about the wrong certificate).
fn parse_chain(chain_der: &[Vec<u8>], source: &str, report: &mut ChainReport) -> Option<Vec<X509>> {
    if chain_der.is_empty() {
        report.findings.push(ChainFinding::Unreadable {
            path: source.to_string(),
            error: "no certificate".to_string(),
        });
        return None;
    }
    if chain_der.len() > MAX_CHAIN_CERTS {
        report.findings.push(ChainFinding::Unreadable {
            path: source.to_string(),
            error: format!(
                "{} certificates; only the first {MAX_CHAIN_CERTS} analysed",
                chain_der.len()
            ),
        });
    }
    let mut certs = Vec::new();
    for (i, der) in chain_der.iter().take(MAX_CHAIN_CERTS).enumerate() {
        let parsed = X509::from_der(der)
            .map_err(|e| crate::text::Chain(&e).to_string())
            .and_then(|x| {
                Ok((
                    x,
                    CertificateFact::from_der(der)
                        .map_err(|e| crate::text::Chain(&e).to_string())?,
                ))
            });
        match parsed {
            Ok((x509, fact)) => {
                certs.push(x509);
                report.certificates.push(fact);
            }
            Err(error) => {
                report.findings.push(ChainFinding::Unreadable {
                    path: format!("{source} certificate {i}"),
                    error,
                });
                if i == 0 {
                    return None;
                }
            }
        }
    }
    Some(certs)
}

/// Findings about the path from the leaf: served out of order, and how it
/// ended (a trust anchor, an untrusted self-signed root, a missing issuer).
fn path_findings(
    certs: &[X509],
    facts: &[CertificateFact],
    path: &[usize],
    end: PathEnd,
    findings: &mut Vec<ChainFinding>,
) {
    let top = path.last().copied().unwrap_or(0);
    // Served out of order: the path skips around, or the first certificate
    // issued another served one (so it is not the end entity).
    let out_of_order = path.windows(2).any(|w| w[1] != w[0] + 1)
        || certs.iter().enumerate().skip(1).any(|(i, c)| {
            certs
                .first()
                .is_some_and(|leaf| !path.contains(&i) && signed_by(c, leaf))
        });
    if out_of_order {
        findings.push(ChainFinding::WrongOrder);
    }
    let Some(top_fact) = facts.get(top) else {
        return;
    };
    match end {
        PathEnd::Anchored => {}
        PathEnd::UntrustedSelfSigned if top == 0 => findings.push(ChainFinding::SelfSignedLeaf {
            subject: top_fact.subject.clone(),
        }),
        PathEnd::UntrustedSelfSigned => findings.push(ChainFinding::UntrustedRoot {
            root: top_fact.subject.clone(),
        }),
        // The leaf's own issuer is missing: the server sends no
        // intermediate for it.
        PathEnd::IssuerMissing if top == 0 => findings.push(ChainFinding::MissingIntermediate {
            issuer: top_fact.issuer.clone(),
        }),
        // The server sends intermediates and the top one's issuer is
        // unknown here: the chain is as the server means it, its root
        // is not trusted (the usual private-CA case).
        PathEnd::IssuerMissing => findings.push(ChainFinding::UntrustedRoot {
            root: top_fact.issuer.clone(),
        }),
    }
}

/// Findings about single certificates: dates and signatures of those on the
/// path, key sizes of every served one.
fn certificate_findings(
    certs: &[X509],
    facts: &[CertificateFact],
    path: &[usize],
    now: DateTime<Utc>,
    findings: &mut Vec<ChainFinding>,
) {
    for &i in path {
        let (Some(fact), Some(cert)) = (facts.get(i), certs.get(i)) else {
            continue;
        };
        if now > fact.not_after {
            findings.push(ChainFinding::Expired {
                index: i,
                subject: fact.subject.clone(),
                not_after: fact.not_after,
            });
        }
        if now < fact.not_before {
            findings.push(ChainFinding::NotYetValid {
                index: i,
                subject: fact.subject.clone(),
                not_before: fact.not_before,
            });
        }
        // A self-signed certificate's own signature is never relied on.
        if !self_signed(cert) && weak_digest(cert) {
            findings.push(ChainFinding::WeakSignature {
                index: i,
                subject: fact.subject.clone(),
                algorithm: fact.signature_algorithm.clone(),
            });
        }
    }
    for (i, (fact, cert)) in facts.iter().zip(certs).enumerate() {
        if let Some(bits) = weak_key(cert) {
            findings.push(ChainFinding::WeakKey {
                index: i,
                subject: fact.subject.clone(),
                key_type: fact.key_type.clone(),
                bits,
            });
        }
    }
}
