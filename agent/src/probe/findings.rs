//! Every problem the probe found beside the root cause: what the chain
//! analysis, the protocol matrix, the suite enumeration, the handshake
//! without SNI, the client certificate check and the OCSP staple showed.
//! (The certificate checks and the client simulation bring their own, as
//! `extra`.)

use chrono::{DateTime, Duration, Utc};
use openssl::nid::Nid;
use openssl::x509::X509;

use crate::diagnosis::host::HostFacts;
use crate::diagnosis::{Cause, Diagnosis, Evidence, REFINEMENTS, Source};
use crate::evidence::certificates::{CertificateFact, ChainFinding, ChainReport};
use crate::evidence::server_config::{ServerKind, Setting};

use super::display::cap_list;
use super::report::{
    ClientCertificateCheck, Finding, OcspStaple, ProtocolProbe, ProtocolStatus, Severity, SniProbe,
};
use super::suites::VersionSuites;

/// A certificate expiring sooner than this is worth a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// What the findings are derived from.
pub struct Inputs<'a> {
    pub root_cause: Option<&'a Diagnosis>,
    /// The served chain's analysis (source "wire").
    pub chain: Option<&'a ChainReport>,
    /// The served chain as DER, leaf first.
    pub served: &'a [Vec<u8>],
    /// The chain the default client built and verified, when it did.
    pub verified: &'a [Vec<u8>],
    pub protocols: &'a [ProtocolProbe],
    /// The suite enumeration (empty when it did not run).
    pub suites: &'a [VersionSuites],
    pub without_sni: Option<&'a SniProbe>,
    pub client_certificate: Option<&'a ClientCertificateCheck>,
    pub ocsp: Option<&'a OcspStaple>,
    /// Host facts when the target is local: they name the lines to change.
    pub host: Option<&'a HostFacts>,
    pub name: &'a str,
    pub now: DateTime<Utc>,
}

/// The findings, most severe first, none of them repeating the root cause.
pub fn derive(inputs: &Inputs, mut extra: Vec<Finding>) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(chain) = inputs.chain {
        out.extend(chain_findings(chain, inputs));
        out.extend(expiring(chain, inputs.now));
    }
    out.extend(intermediate_from_store(inputs));
    out.extend(protocol_findings(inputs));
    out.extend(suite_findings(inputs));
    out.extend(sni_findings(inputs));
    out.extend(client_certificate_findings(inputs));
    out.extend(ocsp_findings(inputs));
    out.append(&mut extra);
    if let Some(root) = inputs.root_cause {
        out.retain(|f| !repeats_root_cause(f, root));
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

/// The root cause already says it: the same class, or one it refines
/// (sni-default-certificate explains the hostname mismatch).
fn repeats_root_cause(finding: &Finding, root: &Diagnosis) -> bool {
    let Some(cause) = finding.cause else {
        return false;
    };
    if finding.kind == "address-failed" {
        return false;
    }
    cause == root.cause
        || REFINEMENTS
            .iter()
            .any(|(refining, refined, _)| *refining == root.cause && *refined == cause)
}

fn directive(kind: ServerKind, protocols: bool) -> &'static str {
    match (kind, protocols) {
        (ServerKind::Nginx, true) => "ssl_protocols",
        (ServerKind::Nginx, false) => "ssl_certificate",
        (ServerKind::Apache, true) => "SSLProtocol",
        (ServerKind::Apache, false) => "SSLCertificateFile",
    }
}

/// "/etc/nginx/site.crt (ssl_certificate at /etc/nginx/sites-enabled/site:12)".
fn certificate_setting(host: Option<&HostFacts>) -> Option<String> {
    let block = host?.selected_block.as_ref()?;
    let setting: &Setting<std::path::PathBuf> = block.certificate.as_ref()?;
    Some(format!(
        "{} ({} at {})",
        setting.value.display(),
        directive(block.kind, false),
        setting.location()
    ))
}

pub(super) fn in_certificate_file(host: Option<&HostFacts>) -> String {
    certificate_setting(host)
        .map(|s| format!(" in {s}"))
        .unwrap_or_default()
}

fn wire(text: String) -> Evidence {
    Evidence::new(Source::Wire, text)
}

fn chain_findings(chain: &ChainReport, inputs: &Inputs) -> Vec<Finding> {
    let file = in_certificate_file(inputs.host);
    let name = inputs.name;
    let mut out = Vec::new();
    for finding in &chain.findings {
        let f = match finding {
            ChainFinding::MissingIntermediate { issuer } => {
                let mut f = Finding::of(
                    Cause::ChainIncomplete,
                    Severity::Critical,
                    format!("the server sends its certificate without the intermediate issued to \"{issuer}\": clients cannot build a chain to a trusted root"),
                )
                .evidence(wire(format!(
                    "the server sent {} certificate(s); the leaf's issuer \"{issuer}\" is neither among them nor a trust anchor",
                    chain.certificates.len()
                )))
                .fix(format!("Serve the full chain (leaf first, then the intermediate(s), e.g. the CA's fullchain.pem){file}."));
                if let Some(url) = inputs.served.first().and_then(|d| ca_issuers_url(d)) {
                    f = f.evidence(wire(format!(
                        "the leaf names its issuer's URL (AIA caIssuers {url}): browsers may fetch it, OpenSSL, curl, Python and Go clients do not"
                    )));
                }
                f
            }
            ChainFinding::WrongOrder => Finding::new(
                "chain-wrong-order",
                Severity::Warning,
                "the served chain is not in leaf-to-root order: strict clients reject it",
            )
            .evidence(wire(
                "the chain the server sent is not in leaf-to-root order".to_string(),
            ))
            .fix(format!("Order the chain file leaf first, then each issuer{file}.")),
            ChainFinding::UntrustedRoot { root } => Finding::of(
                Cause::UntrustedRoot,
                Severity::Critical,
                format!("the chain ends in \"{root}\", a root the client does not trust"),
            )
            .evidence(wire(format!(
                "the chain the server sent ends in root \"{root}\", which the trust store does not hold"
            )))
            .fix("Use a certificate from a CA the clients trust, or install the private root in the clients' trust stores (or pass it with --ca)."),
            ChainFinding::SelfSignedLeaf { subject } => Finding::of(
                Cause::UntrustedRoot,
                Severity::Critical,
                format!("the certificate \"{subject}\" is self-signed and not trusted"),
            )
            .evidence(wire(format!("the leaf \"{subject}\" is self-signed")))
            .fix(format!("Replace the self-signed certificate with one from a CA the clients trust{file}.")),
            ChainFinding::Expired {
                index,
                subject,
                not_after,
            } => Finding::of(
                Cause::CertificateExpired,
                Severity::Critical,
                format!(
                    "certificate #{index} \"{subject}\" expired on {} ({} ago)",
                    not_after.format("%Y-%m-%d %H:%M UTC"),
                    super::display::duration_words(inputs.now - *not_after)
                ),
            )
            .evidence(wire(format!("certificate #{index} \"{subject}\": notAfter {not_after}")))
            .fix(format!("Renew the certificate and install it{file}, then reload the server.")),
            ChainFinding::NotYetValid {
                index,
                subject,
                not_before,
            } => Finding::of(
                Cause::CertificateNotYetValid,
                Severity::Critical,
                format!("certificate #{index} \"{subject}\" is not valid before {}", not_before.format("%Y-%m-%d %H:%M UTC")),
            )
            .evidence(wire(format!("certificate #{index} \"{subject}\": notBefore {not_before}")))
            .fix(not_yet_valid_fix(*not_before - inputs.now, inputs.host)),
            ChainFinding::NameMismatch { name: asked, sans } => Finding::of(
                Cause::HostnameMismatch,
                Severity::Critical,
                format!(
                    "the certificate does not cover \"{asked}\" (it names {})",
                    if sans.is_empty() { "no subjectAltName".to_string() } else { cap_list(sans, 10) }
                ),
            )
            .evidence(wire(format!("the served leaf's names: [{}]; the client asked for \"{asked}\"", cap_list(sans, 10))))
            .fix(format!("Serve a certificate whose subjectAltName covers \"{name}\"{file}.")),
            ChainFinding::WeakKey {
                index,
                subject,
                key_type,
                bits,
            } => Finding::of(
                Cause::WeakCryptoRejected,
                Severity::Critical,
                format!("certificate #{index} \"{subject}\" has a {bits}-bit {key_type} key: OpenSSL 3 clients at security level 2 reject it"),
            )
            .evidence(wire(format!("certificate #{index}: {key_type} {bits} bits")))
            .fix(format!("Reissue it with an RSA key of 2048+ bits or ECDSA P-256{file}.")),
            ChainFinding::WeakSignature {
                index,
                subject,
                algorithm,
            } => Finding::of(
                Cause::WeakCryptoRejected,
                Severity::Critical,
                format!("certificate #{index} \"{subject}\" is signed with {algorithm}: OpenSSL 3 clients at security level 2 reject SHA-1 and MD5 signatures"),
            )
            .evidence(wire(format!("certificate #{index}: signature {algorithm}")))
            .fix(format!("Reissue it signed with SHA-256{file}.")),
            ChainFinding::Unreadable { path, error } => Finding::new(
                "unparsable-certificate",
                Severity::Warning,
                format!("{path} could not be parsed: {error}"),
            )
            .fix("Check the certificate the server serves (`openssl s_client -showcerts`)."),
        };
        out.push(f);
    }
    out
}

/// How to fix a certificate that starts in the future. The clock is worth
/// checking only when it could be off by the gap (`rules::clock::judge`):
/// an unsynchronized clock is off by seconds (its maximum error), not days.
fn not_yet_valid_fix(gap: Duration, host: Option<&HostFacts>) -> String {
    use crate::diagnosis::rules::clock::{Verdict, judge};
    let plausible = match host.and_then(|h| h.clock.as_ref()) {
        Some(clock) => judge(clock, Verdict::NotYetValid, Some(gap))
            .explains
            .is_some(),
        // Nothing known of any clock here: only a small gap suggests one.
        None => gap <= Duration::minutes(5),
    };
    if plausible {
        "Check the clocks (this host's: timedatectl; the server's), then the certificate's dates; reissue it with a start date in the past.".to_string()
    } else {
        format!(
            "The certificate starts {} from now, more than any clock here is off: reissue it with a start date in the past (or install it only once it is valid).",
            super::display::duration_words(gap)
        )
    }
}

/// The leaf's AIA caIssuers URL.
pub(super) fn ca_issuers_url(der: &[u8]) -> Option<String> {
    let cert = X509::from_der(der).ok()?;
    let info = cert.authority_info()?;
    info.iter()
        .filter(|d| d.method().nid() == Nid::AD_CA_ISSUERS)
        .find_map(|d| d.location().uri().map(str::to_string))
}

fn expiring(chain: &ChainReport, now: DateTime<Utc>) -> Vec<Finding> {
    let soon = now + Duration::days(EXPIRY_WARNING_DAYS);
    chain
        .certificates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.not_after > now && c.not_after <= soon)
        .map(|(i, c)| {
            let days = (c.not_after - now).num_days();
            Finding::new(
                "certificate-expiring-soon",
                Severity::Warning,
                format!(
                    "certificate #{i} \"{}\" expires in {days} day(s), on {}",
                    c.subject,
                    c.not_after.format("%Y-%m-%d %H:%M UTC")
                ),
            )
            .evidence(wire(format!("certificate #{i}: notAfter {}", c.not_after)))
            .fix("Renew it now (and check that automatic renewal runs and reloads the server).")
        })
        .collect()
}

/// The default client verified the chain only because its trust store
/// holds an intermediate the server does not send: most clients lack it.
fn intermediate_from_store(inputs: &Inputs) -> Option<Finding> {
    if inputs.verified.is_empty() {
        return None;
    }
    let supplied: Vec<CertificateFact> = inputs
        .verified
        .iter()
        .filter(|der| !inputs.served.contains(der))
        .filter_map(|der| CertificateFact::from_der(der).ok())
        .filter(|c| !c.self_signed)
        .collect();
    let first = supplied.first()?;
    Some(
        Finding::of(
            Cause::ChainIncomplete,
            Severity::Warning,
            format!(
                "the server does not send the intermediate \"{}\": this client has it in its trust store, clients without it fail",
                first.subject
            ),
        )
        .evidence(wire(format!(
            "the server sent {} certificate(s); the verified chain needed \"{}\" from the trust store",
            inputs.served.len(),
            first.subject
        )))
        .fix(format!(
            "Serve the full chain (leaf, then intermediates){}.",
            in_certificate_file(inputs.host)
        )),
    )
}

fn accepted(inputs: &Inputs, label: &str) -> Option<bool> {
    inputs
        .protocols
        .iter()
        .find(|p| p.version == label)
        .and_then(|p| match p.status {
            ProtocolStatus::Accepted => Some(true),
            ProtocolStatus::Rejected => Some(false),
            ProtocolStatus::NotTested => None,
        })
}

fn protocols_fix(host: Option<&HostFacts>, wanted: &str) -> String {
    let setting = host
        .and_then(|h| h.selected_block.as_ref().or(h.blocks_on_port.first()))
        .and_then(|b| b.protocols.as_ref().map(|p| (b.kind, p)));
    match setting {
        Some((kind, p)) => format!(
            "Set `{} {wanted}` at {} (now \"{}\"), then reload the server.",
            directive(kind, true),
            p.location(),
            p.value.join(" ")
        ),
        None => format!(
            "Enable only {wanted} in the server's TLS settings (nginx: ssl_protocols; Apache: SSLProtocol)."
        ),
    }
}

fn protocol_findings(inputs: &Inputs) -> Vec<Finding> {
    let mut out = Vec::new();
    let weak: Vec<&ProtocolProbe> = inputs
        .protocols
        .iter()
        .filter(|p| p.status == ProtocolStatus::Accepted && !p.default_client_offers)
        .collect();
    if !weak.is_empty() {
        let names: Vec<&str> = weak.iter().map(|p| p.version.as_str()).collect();
        let mut f = Finding::new(
            "weak-protocol-accepted",
            Severity::Warning,
            format!(
                "the server accepts {}, deprecated since 2021 (RFC 8996)",
                names.join(" and ")
            ),
        )
        .fix(protocols_fix(inputs.host, "TLSv1.2 TLSv1.3"));
        for p in &weak {
            f = f.evidence(wire(format!(
                "offered alone, {} was accepted{}",
                p.version,
                p.cipher
                    .as_deref()
                    .map(|c| format!(" with {c}"))
                    .unwrap_or_default()
            )));
        }
        out.push(f);
    }
    match (accepted(inputs, "TLS 1.2"), accepted(inputs, "TLS 1.3")) {
        (Some(true), Some(false)) => out.push(
            Finding::new(
                "tls13-not-supported",
                Severity::Info,
                "the server does not speak TLS 1.3",
            )
            .fix(protocols_fix(inputs.host, "TLSv1.2 TLSv1.3")),
        ),
        (Some(false), Some(true)) => out.push(
            Finding::new(
                "tls12-not-supported",
                Severity::Info,
                "the server speaks only TLS 1.3: clients without it (older Java, Windows before 11/Server 2022, OpenSSL 1.0) cannot connect",
            )
            .fix(protocols_fix(inputs.host, "TLSv1.2 TLSv1.3")),
        ),
        _ => {}
    }
    out
}

/// The block's `ssl_ciphers`/`SSLCipherSuite` setting, for fixes.
fn ciphers_fix(host: Option<&HostFacts>, wanted: &str) -> String {
    let setting = host
        .and_then(|h| h.selected_block.as_ref().or(h.blocks_on_port.first()))
        .and_then(|b| b.ciphers.as_ref().map(|c| (b.kind, c)));
    match setting {
        Some((kind, c)) => format!(
            "Set `{} {wanted}` at {} (now \"{}\"), then reload the server.",
            match kind {
                ServerKind::Nginx => "ssl_ciphers",
                ServerKind::Apache => "SSLCipherSuite",
            },
            c.location(),
            c.value
        ),
        None => format!(
            "Accept only strong suites (nginx: ssl_ciphers {wanted}; Apache: SSLCipherSuite {wanted})."
        ),
    }
}

/// Weak suites accepted, and DH groups below what OpenSSL 3 accepts.
fn suite_findings(inputs: &Inputs) -> Vec<Finding> {
    let mut out = Vec::new();
    let weak: Vec<String> = inputs
        .suites
        .iter()
        .filter_map(|v| {
            let names: Vec<String> = v
                .suites
                .iter()
                .filter(|s| s.strength != "ok")
                .map(|s| {
                    format!(
                        "{} ({})",
                        s.openssl_name.as_deref().unwrap_or(&s.name),
                        s.strength
                    )
                })
                .collect();
            (!names.is_empty()).then(|| format!("{}: {}", v.version, cap_list(&names, 6)))
        })
        .collect();
    if !weak.is_empty() {
        out.push(
            Finding::new(
                "weak-cipher-suites",
                Severity::Warning,
                format!(
                    "the server accepts cipher suites that are broken or weak (NULL, anonymous, export, RC4, DES, 3DES, MD5): {}",
                    weak.join("; ")
                ),
            )
            .evidence(wire(format!(
                "offered every registered suite, the server accepted {}",
                weak.join("; ")
            )))
            .fix(ciphers_fix(inputs.host, "HIGH:!aNULL:!MD5:!3DES")),
        );
    }
    let smallest = inputs
        .suites
        .iter()
        .filter_map(|v| v.dh_bits.map(|b| (b, v.version.as_str())))
        .min();
    if let Some((bits, version)) = smallest.filter(|(b, _)| *b < 2048) {
        out.push(
            Finding::new(
                "weak-dh-parameters",
                Severity::Warning,
                format!(
                    "the server uses a {bits}-bit Diffie-Hellman group ({version}): OpenSSL 3 clients at security level 2 refuse it (\"dh key too small\")"
                ),
            )
            .evidence(wire(format!(
                "ServerKeyExchange of a DHE suite in {version}: a {bits}-bit modulus"
            )))
            .fix("Use DH parameters of 2048 bits or more (nginx: ssl_dhparam; Apache: SSLOpenSSLConfCmd DHParameters), or offer only ECDHE suites."),
        );
    }
    out
}

fn sni_findings(inputs: &Inputs) -> Option<Finding> {
    let probe = inputs.without_sni?;
    if !probe.completed && probe.leaf.is_none() {
        return Some(
            Finding::new(
                "sni-required",
                Severity::Info,
                format!(
                    "clients that send no SNI are refused{}",
                    probe
                        .detail
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
            )
            .fix("Nothing to do for modern clients; give the port a default certificate if SNI-less clients (very old ones, some health checks) must connect."),
        );
    }
    let leaf = probe.leaf.as_ref()?;
    if probe.same_as_with_sni == Some(false) && probe.covers_name == Some(false) {
        return Some(
            Finding::of(
                Cause::SniDefaultCertificate,
                Severity::Info,
                format!(
                    "clients that send no SNI get another certificate (\"{}\", for {}), which does not cover \"{}\"",
                    leaf.subject,
                    if leaf.sans.is_empty() { "no names".to_string() } else { cap_list(&leaf.sans, 10) },
                    inputs.name
                ),
            )
            .evidence(wire("without SNI the server served a different leaf".to_string()))
            .fix("Only SNI-less clients (IP-address connections, very old clients) are affected; make the block for this name the default server if they matter."),
        );
    }
    None
}

fn client_certificate_findings(inputs: &Inputs) -> Option<Finding> {
    let check = inputs.client_certificate?;
    match check.required {
        Some(true) => Some(
            Finding::of(
                Cause::ClientCertificateRequired,
                Severity::Critical,
                "the server requires a client certificate",
            )
            .evidence(wire(check.how.clone()))
            .fix("Clients must present a certificate the server's CA issued."),
        ),
        Some(false) => Some(
            Finding::new(
                "client-certificate-optional",
                Severity::Info,
                "the server asks for a client certificate but serves clients without one",
            )
            .evidence(wire(check.how.clone())),
        ),
        None => None,
    }
}

fn ocsp_findings(inputs: &Inputs) -> Option<Finding> {
    let staple = inputs.ocsp?;
    (staple.certificate_status.as_deref() == Some("revoked")).then(|| {
        Finding::new(
            "certificate-revoked",
            Severity::Critical,
            "the server staples an OCSP response saying its certificate is revoked",
        )
        .evidence(wire(format!(
            "stapled OCSP response ({}): certificate status revoked",
            staple.response_status
        )))
        .fix(format!(
            "Install a newly issued certificate{}.",
            in_certificate_file(inputs.host)
        ))
    })
}
