//! What the two ends could not agree on: protocol-version-mismatch,
//! no-shared-cipher, weak-crypto-rejected and client-certificate-required.
//!
//! Alert codes alone mislead here: `handshake_failure` (40) is what an
//! OpenSSL server sends for no shared cipher AND (TLS 1.2) for a missing
//! client certificate, and a TLS 1.0/1.1 client against a Debian OpenSSL 3
//! server gets `internal_error` (80) with the server-side reason "no
//! suitable signature algorithm" rather than `protocol_version` (70). The
//! rules therefore read the alert together with where the handshake was
//! (before or after ServerHello, CertificateRequest seen) and what the
//! client offered.

use crate::diagnosis::{Cause, Confidence, Diagnosis, Evidence, Facts, Source};
use crate::evidence::certificates::ChainFinding;
use crate::evidence::openssl::{reason, verify};
use crate::evidence::server_config::{ServerBlock, ServerKind, Setting};
use crate::outcome::Role;

use super::cite::setting_evidence;
use super::directives::{Directive, directive, reload_command};
use super::matching::{enabled_versions, version_name};
use super::signals::CERTIFICATE_ALERTS;
use super::{certificate_file, headline};

/// Reasons that say the two ends share no protocol version.
const VERSION_REASONS: [u32; 6] = [
    reason::UNSUPPORTED_PROTOCOL,
    reason::NO_PROTOCOLS_AVAILABLE,
    reason::VERSION_TOO_LOW,
    reason::VERSION_TOO_HIGH,
    reason::UNSUPPORTED_SSL_VERSION,
    reason::WRONG_SSL_VERSION,
];

/// Reasons that say the two ends share no suite, group or signature
/// algorithm (the catalogue's no-shared-cipher covers all three).
const NO_SHARED_REASONS: [u32; 4] = [
    reason::NO_SHARED_CIPHER,
    reason::NO_SHARED_GROUPS,
    reason::NO_SUITABLE_KEY_SHARE,
    reason::NO_SHARED_SIGNATURE_ALGORITHMS,
];

/// Reasons that say one side refused the other's weak parameters.
const WEAK_REASONS: [u32; 6] = [
    reason::DH_KEY_TOO_SMALL,
    reason::CA_MD_TOO_WEAK,
    reason::CA_KEY_TOO_SMALL,
    reason::EE_KEY_TOO_SMALL,
    reason::INSUFFICIENT_SECURITY,
    reason::LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED,
];

const WEAK_VERIFY: [i32; 3] = [
    verify::EE_KEY_TOO_SMALL,
    verify::CA_KEY_TOO_SMALL,
    verify::CA_MD_TOO_WEAK,
];

/// The highest version the client offered is TLS 1.1 or older.
fn client_offers_only_old_versions(f: &Facts) -> bool {
    f.offered_versions()
        .last()
        .is_some_and(|&max| max <= 0x0302)
}

fn offered_evidence(f: &Facts) -> Option<Evidence> {
    let offered = f.offered_versions();
    if offered.is_empty() {
        return None;
    }
    let names: Vec<&str> = offered.iter().map(|&v| version_name(v)).collect();
    Some(Evidence::new(
        Source::Wire,
        format!("the ClientHello offered {}", names.join(", ")),
    ))
}

pub fn protocol_version_mismatch(f: &Facts) -> Option<Diagnosis> {
    let alert70 = f.any_alert(&[70]);
    let version_error = f.ssl_error(&VERSION_REASONS);
    let fallback = f
        .ssl_error(&[reason::INAPPROPRIATE_FALLBACK])
        .map(|e| f.ssl_error_evidence(e))
        .or_else(|| f.any_alert(&[86]).map(|a| a.evidence()));
    let old_client = client_offers_only_old_versions(f);
    let internal_error = f.alert_from(Role::Server, &[80]);
    let no_sigalg = f
        .ssl_error(&[reason::NO_SUITABLE_SIGNATURE_ALGORITHM])
        .filter(|_| f.role() == Role::Server);
    let offered = f.offered_versions();
    let block = f.block();
    let protocols = block.and_then(|b| b.protocols.as_ref().map(|p| (b.kind, p)));
    let server_versions = protocols.map(|(_, p)| enabled_versions(&p.value));
    // An SSLv2-format ClientHello: a client too old for any TLS server today.
    let sslv2_hello = f
        .outcome
        .tls
        .non_tls
        .as_ref()
        .filter(|n| n.sender == Role::Client && n.kind == "sslv2-hello");
    let disjoint = server_versions
        .as_ref()
        .is_some_and(|s| !offered.is_empty() && !offered.iter().any(|v| s.contains(v)));

    let mut evidence = Vec::new();
    // The TLS 1.0/1.1 client against OpenSSL 3: the server's own reason
    // ("no suitable signature algorithm") is proof, the client's received
    // internal_error only a strong hint.
    let confidence = if alert70.is_some()
        || version_error.is_some()
        || (no_sigalg.is_some() && old_client)
        || (disjoint && !f.server_hello_seen())
    {
        Confidence::High
    } else if (internal_error.is_some() && old_client)
        || fallback.is_some()
        || sslv2_hello.is_some()
    {
        Confidence::Medium
    } else {
        return None;
    };
    evidence.extend(alert70.map(|a| a.evidence()));
    evidence.extend(version_error.map(|e| f.ssl_error_evidence(e)));
    if old_client {
        evidence.extend(internal_error.map(|a| a.evidence()));
        evidence.extend(no_sigalg.map(|e| {
            let mut e = f.ssl_error_evidence(e);
            e.fact.push_str(
                ": OpenSSL 3 at security level 2 has no signature algorithm a TLS 1.0/1.1 client can use",
            );
            e
        }));
    }
    evidence.extend(fallback);
    evidence.extend(sslv2_hello.map(|n| {
        Evidence::new(
            Source::Wire,
            format!(
                "the client sent an SSLv2-format ClientHello: `{}`",
                n.description
            ),
        )
    }));
    evidence.extend(offered_evidence(f));
    evidence.extend(protocols_evidence(block, protocols));

    let client_max = offered.last().copied();
    let server_range = server_versions
        .as_ref()
        .and_then(|s| Some((*s.first()?, *s.last()?)));
    let client_too_old = old_client
        || sslv2_hello.is_some()
        || matches!((client_max, server_range), (Some(c), Some((lo, _))) if c < lo);
    let server_too_old =
        matches!((offered.first(), server_range), (Some(&c), Some((_, hi))) if c > hi);

    let offered_words = if offered.is_empty() {
        "the versions it offered".to_string()
    } else {
        offered
            .iter()
            .map(|&v| version_name(v))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let summary = if client_too_old {
        format!(
            "{}: the client offers only {offered_words}, which the server does not accept",
            headline(f)
        )
    } else if server_too_old {
        format!(
            "{}: the server does not enable {offered_words}, the only versions the client offers",
            headline(f)
        )
    } else {
        format!(
            "{}: the client and server share no TLS version",
            headline(f)
        )
    };
    let mut diagnosis =
        Diagnosis::new(Cause::ProtocolVersionMismatch, confidence, summary).with_evidence(evidence);
    diagnosis = with_version_fix(
        f,
        diagnosis,
        protocols,
        server_too_old,
        client_too_old,
        &offered_words,
    );
    Some(diagnosis)
}

/// The serving block's version setting, or nginx's default when it has
/// none.
fn protocols_evidence(
    block: Option<&ServerBlock>,
    protocols: Option<(ServerKind, &Setting<Vec<String>>)>,
) -> Option<Evidence> {
    if let Some((kind, setting)) = protocols {
        Some(setting_evidence(
            directive(kind, Directive::Protocols),
            setting,
            setting.value.join(" "),
        ))
    } else if block.is_some_and(|b| b.kind == ServerKind::Nginx) {
        Some(Evidence::new(
            Source::Host,
            "no ssl_protocols in the serving block: nginx's default before 1.23.4 is TLSv1 TLSv1.1 TLSv1.2 (no TLS 1.3)",
        ))
    } else {
        None
    }
}

/// The fix for a version mismatch: enable the client's versions on a server
/// too strict, else upgrade the client, naming the setting when the host
/// shows it.
fn with_version_fix(
    f: &Facts,
    diagnosis: Diagnosis,
    protocols: Option<(ServerKind, &Setting<Vec<String>>)>,
    server_too_old: bool,
    client_too_old: bool,
    offered_words: &str,
) -> Diagnosis {
    match protocols {
        Some((kind, setting)) if server_too_old => diagnosis
            .fix(format!(
                "Enable {offered_words} in {} at {} (now \"{}\"), then {}.",
                directive(kind, Directive::Protocols),
                setting.location(),
                setting.value.join(" "),
                reload_command(kind)
            ))
            .fix_at(Some(setting.location())),
        Some((kind, setting)) => diagnosis
            .fix(format!(
                "Upgrade {} to TLS 1.2 or newer. Re-enabling old versions on the server ({} at {}, plus `@SECLEVEL=0` in the cipher string for TLS 1.0/1.1 on OpenSSL 3) is possible but not recommended.",
                f.process(Role::Client),
                directive(kind, Directive::Protocols),
                setting.location()
            ))
            .fix_at(Some(setting.location())),
        None if client_too_old => diagnosis.fix(format!(
            "Upgrade {} to TLS 1.2 or newer (it offers only {offered_words}); OpenSSL 3 servers refuse TLS 1.0/1.1 at their default security level.",
            f.process(Role::Client)
        )),
        None => diagnosis.fix(format!(
            "Make the versions overlap: check the client's minimum/maximum protocol settings and the server's allowed versions (`openssl s_client -connect {} -tls1_2` / `-tls1_3` shows which one it accepts).",
            f.connect_target()
        )),
    }
}

pub fn no_shared_cipher(f: &Facts) -> Option<Diagnosis> {
    let no_shared = f.ssl_error(&NO_SHARED_REASONS);
    let no_ciphers = f.ssl_error(&[reason::NO_CIPHERS_AVAILABLE]);
    let old_client = client_offers_only_old_versions(f);
    let sigalg = f
        .ssl_error(&[reason::NO_SUITABLE_SIGNATURE_ALGORITHM])
        .filter(|_| !old_client);
    let requested = f.outcome.tls.certificate_requested;
    let early_failure = f
        .alert_from(Role::Server, &[40])
        .filter(|_| !f.server_hello_seen() && !requested);

    let mut evidence = Vec::new();
    let confidence = if let Some(e) = no_shared {
        evidence.push(f.ssl_error_evidence(e));
        Confidence::High
    } else if let Some(e) = sigalg {
        evidence.push(f.ssl_error_evidence(e));
        if f.offered_versions().is_empty() {
            Confidence::Low
        } else {
            Confidence::High
        }
    } else if let Some(e) = no_ciphers {
        evidence.push(f.ssl_error_evidence(e));
        Confidence::Medium
    } else if let Some(alert) = early_failure {
        evidence.push(alert.evidence());
        if f.client_hello_seen() {
            evidence.push(Evidence::new(
                Source::Wire,
                "the server answered the ClientHello with the alert, before any ServerHello",
            ));
            Confidence::Medium
        } else {
            Confidence::Low
        }
    } else {
        return None;
    };

    if let Some(hello) = &f.outcome.tls.client_hello {
        let shown: Vec<&str> = hello
            .cipher_suites
            .iter()
            .take(8)
            .map(String::as_str)
            .collect();
        let more = hello.cipher_suites.len().saturating_sub(shown.len());
        evidence.push(Evidence::new(
            Source::Wire,
            format!(
                "the client offered {} cipher suite(s): {}{}",
                hello.cipher_suites.len(),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        ));
        if !hello.supported_groups.is_empty() {
            evidence.push(Evidence::new(
                Source::Wire,
                format!("groups offered: {}", hello.supported_groups.join(", ")),
            ));
        }
    }
    let ciphers = f
        .block()
        .and_then(|b| b.ciphers.as_ref().map(|c| (b.kind, c)));
    if let Some((kind, setting)) = ciphers {
        evidence.push(setting_evidence(
            directive(kind, Directive::Ciphers),
            setting,
            &setting.value,
        ));
    }

    let what = match no_shared.map(|e| e.reason) {
        Some(reason::NO_SHARED_GROUPS) | Some(reason::NO_SUITABLE_KEY_SHARE) => {
            "no key-exchange group"
        }
        Some(reason::NO_SHARED_SIGNATURE_ALGORITHMS) => "no signature algorithm",
        _ if sigalg.is_some() => "no signature algorithm usable with the server's key",
        _ => "no cipher suite",
    };
    let summary = format!(
        "{}: the client and server have {what} in common",
        headline(f)
    );
    let mut diagnosis =
        Diagnosis::new(Cause::NoSharedCipher, confidence, summary).with_evidence(evidence);
    diagnosis = match ciphers {
        Some((kind, setting)) => diagnosis
            .fix(format!(
                "Allow a suite the clients offer in {} at {} (now \"{}\"), e.g. ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256, or update the clients; then {}.",
                directive(kind, Directive::Ciphers),
                setting.location(),
                setting.value,
                reload_command(kind)
            ))
            .fix_at(Some(setting.location())),
        None => diagnosis.fix(format!(
            "Make the cipher suites (and groups/signature algorithms) overlap: compare the client's offer above with what {} accepts (`openssl s_client -connect {} -cipher ...`), and enable a modern ECDHE-AES-GCM suite on the side that lacks it.",
            f.target(),
            f.connect_target()
        )),
    };
    if confidence == Confidence::Low {
        diagnosis = diagnosis.or_maybe(
            Cause::ClientCertificateRequired,
            "an OpenSSL server also sends handshake_failure when a TLS 1.2 client sends no certificate",
        );
    }
    Some(diagnosis)
}

pub fn weak_crypto_rejected(f: &Facts) -> Option<Diagnosis> {
    let error = f.ssl_error(&WEAK_REASONS);
    let verify = f.server_cert_verify(&WEAK_VERIFY).or_else(|| {
        f.client_cert_verify()
            .filter(|v| WEAK_VERIFY.contains(&v.code))
    });
    let findings = f.findings(|x| {
        matches!(
            x,
            ChainFinding::WeakKey { .. } | ChainFinding::WeakSignature { .. }
        )
    });
    let insufficient = f.any_alert(&[71]);
    let rejected_by_client = f.alert_from(Role::Client, &CERTIFICATE_ALERTS);

    let confidence = if error.is_some()
        || verify.is_some()
        || (!findings.is_empty() && rejected_by_client.is_some())
    {
        Confidence::High
    } else if insufficient.is_some() {
        Confidence::Medium
    } else if !findings.is_empty() && f.client_gave_up_after_server_hello() {
        Confidence::Low
    } else {
        return None;
    };
    let mut evidence = Vec::new();
    evidence.extend(error.map(|e| f.ssl_error_evidence(e)));
    evidence.extend(verify.map(|v| f.verify_evidence(v)));
    evidence.extend(insufficient.map(|a| a.evidence()));
    evidence.extend(rejected_by_client.map(|a| a.evidence()));
    let setting = f.certificate_setting().map(|(_, s)| s.location());
    for (report, finding) in &findings {
        let e = super::cite::finding_evidence(report, finding);
        evidence.push(match (&setting, report.source.as_str()) {
            (Some(location), source) if source != "wire" => e.at(location.clone()),
            _ => e,
        });
    }

    let dh = error.is_some_and(|e| e.reason == reason::DH_KEY_TOO_SMALL);
    let digest = error.is_some_and(|e| e.reason == reason::CA_MD_TOO_WEAK)
        || verify.is_some_and(|v| v.code == verify::CA_MD_TOO_WEAK)
        || findings
            .iter()
            .any(|(_, x)| matches!(x, ChainFinding::WeakSignature { .. }));
    let what = if dh {
        "the server's Diffie-Hellman parameters are too small for the client's security level"
    } else if digest {
        "a certificate in the chain is signed with a digest (SHA-1/MD5) too weak for the peer's security level"
    } else if error.is_some() || verify.is_some() || !findings.is_empty() {
        "a certificate key is too small for the peer's security level (RSA/DSA under 2048 bits)"
    } else {
        "one side refused the other's parameters as insufficiently secure"
    };
    let summary = format!("{}: {what}", headline(f));
    let mut diagnosis =
        Diagnosis::new(Cause::WeakCryptoRejected, confidence, summary).with_evidence(evidence);
    diagnosis = match (dh, certificate_file(f)) {
        (true, Some(cert)) => diagnosis.fix(format!(
            "Prefer ECDHE suites in the server's cipher list, or give it DH parameters of 2048 bits or more (nginx: ssl_dhparam; `openssl dhparam -out dhparam.pem 2048`); then {}.",
            cert.reload
        )),
        (false, Some(cert)) => diagnosis
            .fix(format!(
                "Reissue the certificate in {} with an RSA key of 2048+ bits (or ECDSA P-256) signed with SHA-256, then {}.",
                cert.described, cert.reload
            ))
            .fix_at(Some(cert.location)),
        (_, None) => diagnosis.fix(format!(
            "{} uses parameters OpenSSL 3 rejects at security level 2: its operator must upgrade them (2048+ bit RSA/DH, SHA-256 signatures). Lowering this client's level (`@SECLEVEL=1` in its cipher string) only works around it, and weakens it.",
            f.target()
        )),
    };
    Some(diagnosis)
}

pub fn client_certificate_required(f: &Facts) -> Option<Diagnosis> {
    let tls = &f.outcome.tls;
    let required = f
        .ssl_error(&[reason::TLSV13_ALERT_CERTIFICATE_REQUIRED])
        .map(|e| f.ssl_error_evidence(e))
        .or_else(|| f.any_alert(&[116]).map(|a| a.evidence()));
    let none_returned = f
        .ssl_error(&[reason::PEER_DID_NOT_RETURN_A_CERTIFICATE])
        .map(|e| f.ssl_error_evidence(e));
    let empty_certificate = (tls.certificate_requested && tls.client_certificate_count == Some(0))
        .then(|| {
            Evidence::new(
                Source::Wire,
                "the server sent a CertificateRequest and the client answered with an empty Certificate message",
            )
        });
    // After a CertificateRequest, an alert from the server is about the
    // client's certificate: 40 for none (TLS 1.2), 42/48/... for a bad one.
    let refused_after_request = f
        .alert_from(Role::Server, &[40, 42, 43, 44, 45, 46, 48])
        .filter(|_| tls.certificate_requested);
    let rejected = f.client_cert_verify();
    let logs = f.log_lines(Cause::ClientCertificateRequired);
    let block = f.block();
    let verify_setting = block.and_then(|b| {
        b.verify_client
            .as_ref()
            .filter(|s| matches!(s.value.as_str(), "on" | "require"))
            .map(|s| (b.kind, s))
    });

    let strong = required.is_some()
        || none_returned.is_some()
        || empty_certificate.is_some()
        || refused_after_request.is_some()
        || rejected.is_some()
        || !logs.is_empty();
    let confidence = if strong {
        Confidence::High
    } else if verify_setting.is_some() && f.handshake_completed() {
        // nginx completes the handshake and answers HTTP 400 instead.
        Confidence::Low
    } else {
        return None;
    };

    let mut evidence = Vec::new();
    evidence.extend(required);
    evidence.extend(none_returned);
    evidence.extend(empty_certificate);
    evidence.extend(refused_after_request.map(|a| a.evidence()));
    evidence.extend(rejected.map(|v| f.verify_evidence(v)));
    evidence.extend(logs.iter().map(|l| super::cite::log_evidence(l)));
    if let Some((kind, setting)) = verify_setting {
        evidence.push(setting_evidence(
            directive(kind, Directive::VerifyClient),
            setting,
            &setting.value,
        ));
    }
    let client_ca = block.and_then(|b| b.client_ca.as_ref().map(|s| (b.kind, s)));
    if let Some((kind, setting)) = client_ca {
        evidence.push(setting_evidence(
            directive(kind, Directive::ClientCa),
            setting,
            setting.value.display(),
        ));
    }

    let unacceptable = rejected.is_some()
        || refused_after_request.is_some_and(|a| a.code != 40)
        || tls.client_certificate_count.is_some_and(|n| n > 0);
    let summary = if unacceptable {
        format!(
            "{}: the server requires a client certificate and rejected the one the client sent",
            headline(f)
        )
    } else {
        format!(
            "{}: the server requires a client certificate and the client sent none",
            headline(f)
        )
    };
    let ca_words = client_ca
        .map(|(kind, s)| super::describe_setting(directive(kind, Directive::ClientCa), s))
        .unwrap_or_else(|| "the server's client-CA file".to_string());
    let mut diagnosis = Diagnosis::new(Cause::ClientCertificateRequired, confidence, summary)
        .with_evidence(evidence);
    diagnosis = match verify_setting {
        Some((kind, setting)) => diagnosis
            .fix(format!(
                "Give the client a certificate issued by the CA in {ca_words} (curl: --cert client.crt --key client.key), or, if a certificate should not be mandatory, set `{} optional` at {} and {}.",
                directive(kind, Directive::VerifyClient),
                setting.location(),
                reload_command(kind)
            ))
            .fix_at(Some(setting.location())),
        None if f.role() == Role::Client => diagnosis.fix(format!(
            "{} requires a client certificate: configure {} with one the server's CA issued (curl: --cert client.crt --key client.key; openssl s_client: -cert/-key).",
            f.target(),
            f.process(Role::Client)
        )),
        None => diagnosis.fix(format!(
            "Clients must present a certificate issued by {ca_words}: give them one, or make the client certificate optional."
        )),
    };
    Some(diagnosis)
}
