//! Unit tests of the certificate evidence: real chains made with the
//! openssl crate, checked with the host's OpenSSL.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use openssl::nid::Nid;

use super::chain::*;
use super::load::*;
use super::trust::*;
use super::*;
use chrono::Duration;
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::X509NameBuilder;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn rsa_key(bits: u32) -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap()
}

/// What to put in a test certificate.
struct Spec<'a> {
    cn: &'a str,
    sans: &'a [&'a str],
    ca: bool,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    digest: MessageDigest,
}

impl<'a> Spec<'a> {
    fn leaf(cn: &'a str, sans: &'a [&'a str]) -> Self {
        let now = Utc::now();
        Spec {
            cn,
            sans,
            ca: false,
            not_before: now - Duration::days(10),
            not_after: now + Duration::days(90),
            digest: MessageDigest::sha256(),
        }
    }

    fn ca(cn: &'a str) -> Self {
        Spec {
            ca: true,
            not_before: Utc::now() - Duration::days(365),
            not_after: Utc::now() + Duration::days(3650),
            ..Spec::leaf(cn, &[])
        }
    }
}

/// Builds a certificate for `key`, signed by `issuer` (self-signed when
/// None).
fn make(spec: &Spec, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("O", "tlsdoctor test").unwrap();
    name.append_entry_by_text("CN", spec.cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial
        .rand(64, openssl::bn::MsbOption::MAYBE_ZERO, false)
        .unwrap();
    b.set_serial_number(&Asn1Integer::from_bn(&serial).unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    match issuer {
        Some((cert, _)) => b.set_issuer_name(cert.subject_name()).unwrap(),
        None => b.set_issuer_name(&name).unwrap(),
    }
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(spec.not_before.timestamp()).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(spec.not_after.timestamp()).unwrap())
        .unwrap();
    if spec.ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
    } else {
        b.append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
            .unwrap();
    }
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None))
        .unwrap();
    b.append_extension(ski).unwrap();
    if let Some((cert, _)) = issuer {
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(cert), None))
            .unwrap();
        b.append_extension(aki).unwrap();
    }
    if !spec.sans.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for s in spec.sans {
            if s.parse::<IpAddr>().is_ok() {
                san.ip(s);
            } else {
                san.dns(s);
            }
        }
        let ext = san.build(&b.x509v3_context(None, None)).unwrap();
        b.append_extension(ext).unwrap();
    }
    let signer = issuer.map(|(_, k)| k).unwrap_or(key);
    b.sign(signer, spec.digest).unwrap();
    b.build()
}

/// Test CA → intermediate, and a trust store holding only the CA (loaded
/// from a temp PEM file, the way `--ca` is).
struct Pki {
    ca: X509,
    int: X509,
    int_key: PKey<Private>,
    trust: TrustStore,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "tlsdoctor-cert-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pki(tag: &str) -> Pki {
    let ca_key = ec_key();
    let ca = make(&Spec::ca("Test Root CA"), &ca_key, None);
    let int_key = ec_key();
    let int = make(
        &Spec::ca("Test Intermediate CA"),
        &int_key,
        Some((&ca, &ca_key)),
    );
    let dir = TempDir::new(tag);
    let path = dir.0.join("ca.pem");
    std::fs::write(&path, ca.to_pem().unwrap()).unwrap();
    let trust = TrustStore::from_pem_file(&path).unwrap();
    Pki {
        ca,
        int,
        int_key,
        trust,
        _dir: dir,
    }
}

impl Pki {
    fn leaf(&self, spec: &Spec) -> X509 {
        self.leaf_with_key(spec, &ec_key())
    }

    fn leaf_with_key(&self, spec: &Spec, key: &PKey<Private>) -> X509 {
        make(spec, key, Some((&self.int, &self.int_key)))
    }

    fn analyze(&self, chain: &[&X509], name: Option<&str>) -> ChainReport {
        let der: Vec<Vec<u8>> = chain.iter().map(|c| c.to_der().unwrap()).collect();
        analyze_chain(&der, name, Utc::now(), &self.trust, "test")
    }
}

fn kinds(report: &ChainReport) -> Vec<&'static str> {
    report
        .findings
        .iter()
        .map(|f| match f {
            ChainFinding::MissingIntermediate { .. } => "missing-intermediate",
            ChainFinding::WrongOrder => "wrong-order",
            ChainFinding::UntrustedRoot { .. } => "untrusted-root",
            ChainFinding::SelfSignedLeaf { .. } => "self-signed-leaf",
            ChainFinding::Expired { .. } => "expired",
            ChainFinding::NotYetValid { .. } => "not-yet-valid",
            ChainFinding::NameMismatch { .. } => "name-mismatch",
            ChainFinding::WeakKey { .. } => "weak-key",
            ChainFinding::WeakSignature { .. } => "weak-signature",
            ChainFinding::Unreadable { .. } => "unreadable",
        })
        .collect()
}

#[test]
fn good_chain_verifies_with_no_findings() {
    let p = pki("good");
    let leaf = p.leaf(&Spec::leaf("www.example.test", &["www.example.test"]));
    let r = p.analyze(&[&leaf, &p.int], Some("www.example.test"));
    assert_eq!(r.verify_code, 0, "{}", r.verify_text);
    assert_eq!(r.verify_text, "ok");
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.certificates.len(), 2);
    assert_eq!(r.name.as_deref(), Some("www.example.test"));
    // Serving the root as well is fine too.
    let r = p.analyze(&[&leaf, &p.int, &p.ca], Some("WWW.Example.Test."));
    assert_eq!(r.verify_code, 0, "{}", r.verify_text);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
}

#[test]
fn leaf_without_intermediate_is_missing_intermediate() {
    let p = pki("missing");
    let leaf = p.leaf(&Spec::leaf("www.example.test", &["www.example.test"]));
    let r = p.analyze(&[&leaf], Some("www.example.test"));
    assert_eq!(r.verify_code, 20);
    assert_eq!(r.verify_text, "unable to get local issuer certificate");
    let int_subject = CertificateFact::from_der(&p.int.to_der().unwrap())
        .unwrap()
        .subject;
    assert_eq!(
        r.findings,
        vec![ChainFinding::MissingIntermediate {
            issuer: int_subject.clone()
        }]
    );
    assert!(!p.trust.contains_subject(&r.certificates[0].issuer));
    assert!(
        p.trust
            .contains_subject(&r.certificates[0].issuer.replace("Intermediate", "Root"))
    );
}

#[test]
fn expired_leaf_without_intermediate_shows_both_problems() {
    // OpenSSL stops at 20 and never looks at the dates; findings do.
    let p = pki("expired-missing");
    let now = Utc::now();
    let spec = Spec {
        not_before: now - Duration::days(100),
        not_after: now - Duration::days(1),
        ..Spec::leaf("old.example.test", &["old.example.test"])
    };
    let leaf = p.leaf(&spec);
    let r = p.analyze(&[&leaf], Some("old.example.test"));
    assert_eq!(r.verify_code, 20);
    assert_eq!(kinds(&r), ["missing-intermediate", "expired"]);
    let r = p.analyze(&[&leaf, &p.int], Some("old.example.test"));
    assert_eq!(r.verify_code, 10);
    assert_eq!(r.verify_text, "certificate has expired");
    assert_eq!(kinds(&r), ["expired"]);
    match &r.findings[0] {
        ChainFinding::Expired {
            index, not_after, ..
        } => {
            assert_eq!(*index, 0);
            assert_eq!(not_after.timestamp(), spec.not_after.timestamp());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn not_yet_valid_leaf() {
    let p = pki("nyv");
    let now = Utc::now();
    let leaf = p.leaf(&Spec {
        not_before: now + Duration::days(2),
        not_after: now + Duration::days(100),
        ..Spec::leaf("new.example.test", &["new.example.test"])
    });
    let r = p.analyze(&[&leaf, &p.int], None);
    assert_eq!(r.verify_code, 9);
    assert_eq!(r.verify_text, "certificate is not yet valid");
    assert_eq!(kinds(&r), ["not-yet-valid"]);
    // At a time inside the window (a skewed clock's view) it is fine.
    let der = vec![leaf.to_der().unwrap(), p.int.to_der().unwrap()];
    let later = analyze_chain(&der, None, now + Duration::days(3), &p.trust, "t");
    assert_eq!(later.verify_code, 0, "{}", later.verify_text);
    assert!(later.findings.is_empty());
}

#[test]
fn wrong_san_is_a_name_mismatch_and_err_62() {
    let p = pki("san");
    let leaf = p.leaf(&Spec::leaf(
        "www.example.test",
        &["www.example.test", "10.1.2.3"],
    ));
    let r = p.analyze(&[&leaf, &p.int], Some("api.example.test"));
    assert_eq!(r.verify_code, 62);
    assert_eq!(r.verify_text, "hostname mismatch");
    assert_eq!(
        r.findings,
        vec![ChainFinding::NameMismatch {
            name: "api.example.test".to_string(),
            sans: vec!["www.example.test".to_string(), "10.1.2.3".to_string()],
        }]
    );
    // IP names are checked against IP SANs (err 64 from OpenSSL).
    let r = p.analyze(&[&leaf, &p.int], Some("10.1.2.3"));
    assert_eq!(r.verify_code, 0, "{}", r.verify_text);
    let r = p.analyze(&[&leaf, &p.int], Some("10.1.2.4"));
    assert_eq!(r.verify_code, 64);
    assert_eq!(kinds(&r), ["name-mismatch"]);
    // Without a name no host check is made.
    let r = p.analyze(&[&leaf, &p.int], None);
    assert_eq!(r.verify_code, 0);
}

#[test]
fn wildcard_san_matches_one_left_label() {
    let p = pki("wild");
    let leaf = p.leaf(&Spec::leaf("wild", &["*.example.test"]));
    let der = leaf.to_der().unwrap();
    let fact = CertificateFact::from_der(&der).unwrap();
    assert!(name_matches_certificate(&fact, "www.example.test"));
    assert!(name_matches_certificate(&fact, "API.EXAMPLE.TEST"));
    assert!(!name_matches_certificate(&fact, "example.test"));
    assert!(!name_matches_certificate(&fact, "a.b.example.test"));
    assert!(!name_matches_certificate(&fact, ".example.test"));
    let r = p.analyze(&[&leaf, &p.int], Some("www.example.test"));
    assert_eq!(r.verify_code, 0, "{}", r.verify_text);
    let r = p.analyze(&[&leaf, &p.int], Some("a.b.example.test"));
    assert_eq!(r.verify_code, 62);
    assert_eq!(kinds(&r), ["name-mismatch"]);
}

fn fact(cn: Option<&str>, sans: &[&str]) -> CertificateFact {
    CertificateFact {
        subject: String::new(),
        issuer: String::new(),
        common_name: cn.map(str::to_string),
        sans: sans.iter().map(|s| s.to_string()).collect(),
        serial: String::new(),
        not_before: Utc::now(),
        not_after: Utc::now(),
        self_signed: false,
        is_ca: false,
        key_type: "EC".to_string(),
        key_bits: Some(256),
        signature_algorithm: String::new(),
        sha256: String::new(),
    }
}

#[test]
fn name_matching_rules() {
    // CN only when there is no SAN DNS name.
    assert!(name_matches_certificate(
        &fact(Some("host.test"), &[]),
        "host.test"
    ));
    assert!(name_matches_certificate(
        &fact(Some("host.test"), &["10.0.0.1"]),
        "host.test"
    ));
    assert!(!name_matches_certificate(
        &fact(Some("host.test"), &["other.test"]),
        "host.test"
    ));
    // IP names: IP SANs only, never the CN; v6 in brackets too.
    assert!(!name_matches_certificate(
        &fact(Some("10.0.0.1"), &[]),
        "10.0.0.1"
    ));
    assert!(name_matches_certificate(&fact(None, &["::1"]), "[::1]"));
    assert!(!name_matches_certificate(
        &fact(None, &["::1"]),
        "127.0.0.1"
    ));
    // Wildcards: whole left-most label only, not over a TLD.
    assert!(!name_matches_certificate(
        &fact(None, &["*.test"]),
        "host.test"
    ));
    assert!(!name_matches_certificate(
        &fact(None, &["w*.example.test"]),
        "www.example.test"
    ));
    assert!(!name_matches_certificate(
        &fact(None, &["www.*.test"]),
        "www.example.test"
    ));
    assert!(!name_matches_certificate(
        &fact(None, &["*.example.test"]),
        "*.example.test"
    ));
    assert!(!name_matches_certificate(&fact(None, &["host.test"]), ""));
    assert!(name_matches_certificate(
        &fact(None, &["host.test."]),
        "HOST.test"
    ));
}

#[test]
fn weak_rsa_1024_leaf() {
    let p = pki("weakkey");
    let leaf = p.leaf_with_key(
        &Spec::leaf("weak.example.test", &["weak.example.test"]),
        &rsa_key(1024),
    );
    let r = p.analyze(&[&leaf, &p.int], Some("weak.example.test"));
    assert_eq!(r.certificates[0].key_bits, Some(1024));
    assert_eq!(kinds(&r), ["weak-key"]);
    // At security level 2 (Debian's default) OpenSSL refuses it (66);
    // at level 0 it does not check key sizes.
    let der = vec![leaf.to_der().unwrap(), p.int.to_der().unwrap()];
    let strict = p.trust.clone().with_security_level(2);
    let r2 = analyze_chain(&der, None, Utc::now(), &strict, "t");
    assert_eq!(r2.verify_code, 66);
    assert_eq!(r2.verify_text, "EE certificate key too weak");
    let lax = p.trust.clone().with_security_level(0);
    assert_eq!(
        analyze_chain(&der, None, Utc::now(), &lax, "t").verify_code,
        0
    );
}

#[test]
fn sha1_signed_leaf() {
    let p = pki("sha1");
    let leaf = p.leaf(&Spec {
        digest: MessageDigest::sha1(),
        ..Spec::leaf("sha1.example.test", &["sha1.example.test"])
    });
    let der = vec![leaf.to_der().unwrap(), p.int.to_der().unwrap()];
    let strict = p.trust.clone().with_security_level(2);
    let r = analyze_chain(&der, None, Utc::now(), &strict, "t");
    assert_eq!(r.verify_code, 68);
    assert_eq!(r.verify_text, "CA signature digest algorithm too weak");
    assert_eq!(
        r.findings,
        vec![ChainFinding::WeakSignature {
            index: 0,
            subject: r.certificates[0].subject.clone(),
            algorithm: "ecdsa-with-SHA1".to_string(),
        }]
    );
}

#[test]
fn self_signed_leaf_and_untrusted_root() {
    let p = pki("selfsigned");
    let key = ec_key();
    let leaf = make(
        &Spec::leaf("self.example.test", &["self.example.test"]),
        &key,
        None,
    );
    let r = p.analyze(&[&leaf], Some("self.example.test"));
    assert_eq!(r.verify_code, 18);
    assert_eq!(r.verify_text, "self-signed certificate");
    assert_eq!(kinds(&r), ["self-signed-leaf"]);
    assert!(r.certificates[0].self_signed);

    // A whole chain from another (untrusted) CA, root included: 19.
    let other = pki("other");
    let leaf = other.leaf(&Spec::leaf("x.example.test", &["x.example.test"]));
    let r = p.analyze(&[&leaf, &other.int, &other.ca], None);
    assert_eq!(r.verify_code, 19);
    assert_eq!(
        r.verify_text,
        "self-signed certificate in certificate chain"
    );
    assert_eq!(
        r.findings,
        vec![ChainFinding::UntrustedRoot {
            root: r.certificates[2].subject.clone()
        }]
    );
    // The same chain without its root (as servers send it): 20, and the
    // root the intermediate names is what the store lacks, not an
    // intermediate: the server's chain is complete.
    let r = p.analyze(&[&leaf, &other.int], None);
    assert_eq!(r.verify_code, 20);
    let other_root = CertificateFact::from_der(&other.ca.to_der().unwrap())
        .unwrap()
        .subject;
    assert_eq!(
        r.findings,
        vec![ChainFinding::UntrustedRoot { root: other_root }]
    );
    // Only the leaf: its issuer, the intermediate, is what is missing.
    let r = p.analyze(&[&leaf], None);
    assert_eq!(r.verify_code, 20);
    assert_eq!(kinds(&r), ["missing-intermediate"]);
}

#[test]
fn wrong_order_is_reported_but_verifies() {
    let p = pki("order");
    let leaf = p.leaf(&Spec::leaf("o.example.test", &["o.example.test"]));
    let r = p.analyze(&[&leaf, &p.ca, &p.int], None);
    assert_eq!(r.verify_code, 0, "{}", r.verify_text);
    assert_eq!(kinds(&r), ["wrong-order"]);
    // Intermediate first: the "leaf" is a CA that issued a later cert.
    let r = p.analyze(&[&p.int, &leaf], Some("o.example.test"));
    assert!(kinds(&r).contains(&"wrong-order"), "{:?}", r.findings);
    assert!(kinds(&r).contains(&"name-mismatch"), "{:?}", r.findings);
}

#[test]
fn empty_and_garbage_chains_never_panic() {
    let p = pki("garbage");
    let r = analyze_chain(&[], Some("x"), Utc::now(), &p.trust, "wire");
    assert_eq!(r.verify_code, VERIFY_NOT_RUN);
    assert_eq!(kinds(&r), ["unreadable"]);
    let r = analyze_chain(
        &[b"\x30\x03junk".to_vec()],
        None,
        Utc::now(),
        &p.trust,
        "wire",
    );
    assert_eq!(r.verify_code, VERIFY_NOT_RUN);
    assert_eq!(kinds(&r), ["unreadable"]);
    assert!(r.certificates.is_empty());
    // A bad certificate after a good leaf is reported, the rest analysed.
    let leaf = p.leaf(&Spec::leaf("g.example.test", &["g.example.test"]));
    let der = vec![
        leaf.to_der().unwrap(),
        vec![0u8; 10],
        p.int.to_der().unwrap(),
    ];
    let r = analyze_chain(&der, None, Utc::now(), &p.trust, "wire");
    assert_eq!(r.verify_code, 0, "{}", r.verify_text);
    assert_eq!(kinds(&r), ["unreadable"]);
    // Too many certificates: capped, flagged.
    let many = vec![leaf.to_der().unwrap(); MAX_CHAIN_CERTS + 5];
    let r = analyze_chain(&many, None, Utc::now(), &p.trust, "wire");
    assert_eq!(r.certificates.len(), MAX_CHAIN_CERTS);
    assert!(kinds(&r).contains(&"unreadable"));
}

#[test]
fn pem_files_skip_keys_and_keep_order() {
    let p = pki("pem");
    let key = ec_key();
    let leaf = p.leaf_with_key(&Spec::leaf("k.example.test", &["k.example.test"]), &key);
    let mut pem = Vec::new();
    pem.extend(b"junk before\n");
    pem.extend(leaf.to_pem().unwrap());
    pem.extend(key.private_key_to_pem_pkcs8().unwrap());
    pem.extend(p.int.to_pem().unwrap());
    let crlf: Vec<u8> = String::from_utf8(pem)
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes();
    let path = p._dir.0.join("chain.pem");
    std::fs::write(&path, &crlf).unwrap();
    let chain = load_pem_chain(&path).unwrap();
    assert_eq!(chain, vec![leaf.to_der().unwrap(), p.int.to_der().unwrap()]);

    // Only a key: no certificate.
    std::fs::write(&path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    assert!(matches!(
        load_pem_chain(&path),
        Err(CertError::NoCertificate { .. })
    ));
    // Truncated block.
    let pem = leaf.to_pem().unwrap();
    std::fs::write(&path, &pem[..pem.len() - 30]).unwrap();
    assert!(matches!(
        load_pem_chain(&path),
        Err(CertError::BadPem { .. })
    ));
    // Corrupt base64.
    let bad = String::from_utf8(pem.clone())
        .unwrap()
        .replacen("M", "!", 1);
    std::fs::write(&path, bad).unwrap();
    assert!(matches!(
        load_pem_chain(&path),
        Err(CertError::BadPem { .. })
    ));
    // Missing file, directory, device, oversized file.
    assert!(matches!(
        load_pem_chain(&p._dir.0.join("nope.pem")),
        Err(CertError::Io { .. })
    ));
    assert!(matches!(
        load_pem_chain(&p._dir.0),
        Err(CertError::NotAFile { .. })
    ));
    assert!(matches!(
        load_pem_chain(Path::new("/dev/zero")),
        Err(CertError::NotAFile { .. })
    ));
    let big = std::fs::File::create(&path).unwrap();
    big.set_len(MAX_CHAIN_FILE + 1).unwrap();
    assert!(matches!(
        load_pem_chain(&path),
        Err(CertError::TooLarge { .. })
    ));
}

#[test]
fn hashed_names() {
    assert!(is_hashed_name("1a2b3c4d.0"));
    assert!(is_hashed_name("ABCDEF01.12"));
    assert!(!is_hashed_name("1a2b3c4d.r0"));
    assert!(!is_hashed_name("ca-certificates.crt"));
    assert!(!is_hashed_name("1a2b3c4.0"));
}

#[test]
fn system_store_loads_and_verifies_a_system_root() {
    let store = TrustStore::system().unwrap();
    assert!(store.len() > 10, "{store:?}");
    // The roots in /etc/ssl/certs validate as chains of their own. Some
    // have a CA-only keyUsage, which the SSL-server purpose refuses (26)
    // when the root itself is presented as the server's certificate.
    let bundle = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap();
    let roots = pem_certificates(&bundle, "bundle").unwrap();
    // (A root re-issued under the same subject is skipped: OpenSSL looks
    // an end-entity up by subject, finds the other one and says 18.)
    let facts: Vec<CertificateFact> = roots
        .iter()
        .map(|der| CertificateFact::from_der(der).unwrap())
        .collect();
    let mut validated = 0;
    for (root, fact) in roots.iter().zip(&facts) {
        let reissued = facts.iter().filter(|f| f.subject == fact.subject).count() > 1;
        if reissued || !fact.self_signed || fact.not_after < Utc::now() + Duration::days(30) {
            continue;
        }
        assert!(store.contains_certificate(root));
        assert!(store.contains_subject(&fact.subject));
        let r = analyze_chain(
            std::slice::from_ref(root),
            None,
            Utc::now(),
            &store,
            "system",
        );
        assert!(
            [0, 26].contains(&r.verify_code),
            "{}: {}",
            fact.subject,
            r.verify_text
        );
        assert!(r.findings.is_empty(), "{}: {:?}", fact.subject, r.findings);
        validated += usize::from(r.verify_code == 0);
    }
    assert!(validated > 0);
    // And our private CA is not in it.
    let p = pki("system");
    let leaf = p.leaf(&Spec::leaf("p.example.test", &["p.example.test"]));
    let der = vec![leaf.to_der().unwrap(), p.int.to_der().unwrap()];
    let r = analyze_chain(&der, None, Utc::now(), &store, "system");
    assert_eq!(r.verify_code, 20);
    assert_eq!(kinds(&r), ["untrusted-root"]);
}

#[test]
fn system_locations_honour_ssl_cert_file_and_dir() {
    let (file, dir) = default_locations(|_| None);
    assert_eq!(file.as_deref(), Some("/usr/lib/ssl/cert.pem"));
    assert_eq!(dir.as_deref(), Some("/usr/lib/ssl/certs"));
    let (file, dir) = default_locations(|name| match name {
        "SSL_CERT_FILE" => Some("/x/ca.pem".to_string()),
        "SSL_CERT_DIR" => Some("/a:/b".to_string()),
        _ => None,
    });
    assert_eq!(file.as_deref(), Some("/x/ca.pem"));
    assert_eq!(dir.as_deref(), Some("/a:/b"));

    let p = pki("env");
    let path = p._dir.0.join("only-ca.pem");
    std::fs::write(&path, p.ca.to_pem().unwrap()).unwrap();
    let empty = p._dir.0.join("empty-dir");
    std::fs::create_dir_all(&empty).unwrap();
    let dirs = format!("{}:/nonexistent", empty.display());
    let store = TrustStore::from_locations(path.to_str(), Some(&dirs)).unwrap();
    assert_eq!(store.len(), 1);
    assert!(store.contains_certificate(&p.ca.to_der().unwrap()));
    // A hashed directory (as c_rehash makes it) is read too; other
    // names in it are not.
    let hashed = p._dir.0.join("hashed");
    std::fs::create_dir_all(&hashed).unwrap();
    std::fs::write(hashed.join("0badc0de.0"), p.int.to_pem().unwrap()).unwrap();
    std::fs::write(hashed.join("ca.pem"), p.ca.to_pem().unwrap()).unwrap();
    let store = TrustStore::from_locations(None, hashed.to_str()).unwrap();
    assert_eq!(store.len(), 1);
    assert!(store.contains_certificate(&p.int.to_der().unwrap()));
    assert!(matches!(
        TrustStore::from_locations(Some("/nonexistent.pem"), empty.to_str()),
        Err(CertError::NoTrustAnchors { .. })
    ));
}

mod cache;
