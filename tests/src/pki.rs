//! Certificates for the tests, made with the host's OpenSSL: a root CA, an
//! intermediate, and leaves with whatever flaw a scenario needs.

use std::path::PathBuf;

use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Extension, X509NameBuilder};

use crate::TempDir;

/// Key type of a certificate.
#[derive(Clone, Copy, Debug)]
pub enum Key {
    Rsa(u32),
    EcP256,
}

/// Who signs a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Issuer {
    Intermediate,
    Root,
    /// Self-signed.
    Itself,
}

/// What a leaf looks like.
#[derive(Clone, Debug)]
pub struct LeafSpec {
    pub cn: String,
    /// DNS names (IP addresses are written as IP SANs).
    pub sans: Vec<String>,
    /// Validity start, in days from now (negative: the past).
    pub not_before_days: i64,
    pub not_after_days: i64,
    pub key: Key,
    pub digest: fn() -> MessageDigest,
    pub issuer: Issuer,
    /// extendedKeyUsage includes serverAuth (else clientAuth only).
    pub server_auth: bool,
    /// keyUsage includes digitalSignature (else keyEncipherment only).
    pub digital_signature: bool,
    /// The leaf has an authorityKeyIdentifier.
    pub authority_key_id: bool,
    /// TLS Feature status_request (RFC 7633, "must-staple").
    pub must_staple: bool,
}

impl LeafSpec {
    pub fn new(name: &str) -> LeafSpec {
        LeafSpec {
            cn: name.to_string(),
            sans: vec![name.to_string()],
            not_before_days: -1,
            not_after_days: 90,
            key: Key::EcP256,
            digest: MessageDigest::sha256,
            issuer: Issuer::Intermediate,
            server_auth: true,
            digital_signature: true,
            authority_key_id: true,
            must_staple: false,
        }
    }
}

/// A leaf's files.
pub struct Leaf {
    /// The leaf alone.
    pub cert: PathBuf,
    /// Leaf then intermediate (what a correct server serves).
    pub fullchain: PathBuf,
    pub key: PathBuf,
}

/// A private PKI in a temp directory.
pub struct Pki {
    dir: TempDir,
    root: (X509, PKey<Private>),
    intermediate: (X509, PKey<Private>),
    /// The root CA's PEM (clients' --cacert).
    pub ca_file: PathBuf,
    counter: std::cell::Cell<u32>,
}

fn key(kind: Key) -> PKey<Private> {
    match kind {
        Key::Rsa(bits) => PKey::from_rsa(Rsa::generate(bits).expect("RSA key")).expect("pkey"),
        Key::EcP256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
            PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("pkey")
        }
    }
}

fn days(d: i64) -> Asn1Time {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Asn1Time::from_unix(now + d * 86_400).expect("time")
}

struct CertSpec<'a> {
    cn: &'a str,
    sans: &'a [String],
    not_before: i64,
    not_after: i64,
    ca: bool,
    digest: MessageDigest,
    /// Leaves only: (serverAuth, digitalSignature, AKI, must-staple).
    flags: (bool, bool, bool, bool),
}

fn build(
    spec: &CertSpec<'_>,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
) -> X509 {
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "tlsdoctor tests")
        .expect("O");
    name.append_entry_by_nid(Nid::COMMONNAME, spec.cn)
        .expect("CN");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("v3");
    let mut serial = BigNum::new().expect("bn");
    serial.rand(64, MsbOption::MAYBE_ZERO, false).expect("rand");
    b.set_serial_number(&serial.to_asn1_integer().expect("serial"))
        .expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(issuer.map(|(c, _)| c.subject_name()).unwrap_or(&name))
        .expect("issuer");
    b.set_pubkey(key).expect("pubkey");
    b.set_not_before(&days(spec.not_before)).expect("nb");
    b.set_not_after(&days(spec.not_after)).expect("na");
    if spec.ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
            .expect("bc");
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .expect("ku"),
        )
        .expect("ku");
    } else {
        b.append_extension(BasicConstraints::new().build().expect("bc"))
            .expect("bc");
        let (server_auth, digital_signature, _, must_staple) = spec.flags;
        let mut ku = KeyUsage::new();
        ku.critical().key_encipherment();
        if digital_signature {
            ku.digital_signature();
        }
        b.append_extension(ku.build().expect("ku")).expect("ku");
        let mut eku = ExtendedKeyUsage::new();
        eku.client_auth();
        if server_auth {
            eku.server_auth();
        }
        b.append_extension(eku.build().expect("eku")).expect("eku");
        if must_staple {
            // TLS Feature: SEQUENCE { INTEGER 5 (status_request) }.
            let oid = Asn1Object::from_str("1.3.6.1.5.5.7.1.24").expect("oid");
            let value =
                Asn1OctetString::new_from_bytes(&[0x30, 0x03, 0x02, 0x01, 0x05]).expect("value");
            b.append_extension(X509Extension::new_from_der(&oid, false, &value).expect("ext"))
                .expect("tls feature");
        }
    }
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(issuer.map(|(c, _)| &**c), None))
        .expect("ski");
    b.append_extension(ski).expect("ski");
    if issuer.is_some() && (spec.ca || spec.flags.2) {
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(issuer.map(|(c, _)| &**c), None))
            .expect("aki");
        b.append_extension(aki).expect("aki");
    }
    if !spec.sans.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for s in spec.sans {
            if s.parse::<std::net::IpAddr>().is_ok() {
                san.ip(s);
            } else {
                san.dns(s);
            }
        }
        let ext = san
            .build(&b.x509v3_context(issuer.map(|(c, _)| &**c), None))
            .expect("san");
        b.append_extension(ext).expect("san");
    }
    let signer = issuer.map(|(_, k)| k).unwrap_or(key);
    b.sign(signer, spec.digest).expect("sign");
    b.build()
}

impl Pki {
    pub fn new() -> Pki {
        Pki::with_intermediate_days(-10, 3650)
    }

    /// A PKI whose intermediate is valid from `not_before` to `not_after`
    /// days from now (negative: the past), e.g. one that expired.
    pub fn with_intermediate_days(not_before: i64, not_after: i64) -> Pki {
        let dir = TempDir::new("pki");
        let root_key = key(Key::EcP256);
        let root = build(
            &CertSpec {
                cn: "tlsdoctor test root",
                sans: &[],
                not_before: -10,
                not_after: 3650,
                ca: true,
                digest: MessageDigest::sha256(),
                flags: (true, true, true, false),
            },
            &root_key,
            None,
        );
        let int_key = key(Key::EcP256);
        let intermediate = build(
            &CertSpec {
                cn: "tlsdoctor test intermediate",
                sans: &[],
                not_before,
                not_after,
                ca: true,
                digest: MessageDigest::sha256(),
                flags: (true, true, true, false),
            },
            &int_key,
            Some((&root, &root_key)),
        );
        let ca_file = dir.join("root.pem");
        std::fs::write(&ca_file, root.to_pem().expect("pem")).expect("writing root");
        Pki {
            dir,
            root: (root, root_key),
            intermediate: (intermediate, int_key),
            ca_file,
            counter: std::cell::Cell::new(0),
        }
    }

    /// Issues a leaf and writes its files.
    pub fn leaf(&self, spec: &LeafSpec) -> Leaf {
        let n = self.counter.get();
        self.counter.set(n + 1);
        let k = key(spec.key);
        let issuer = match spec.issuer {
            Issuer::Intermediate => Some((&self.intermediate.0, &self.intermediate.1)),
            Issuer::Root => Some((&self.root.0, &self.root.1)),
            Issuer::Itself => None,
        };
        let cert = build(
            &CertSpec {
                cn: &spec.cn,
                sans: &spec.sans,
                not_before: spec.not_before_days,
                not_after: spec.not_after_days,
                ca: false,
                digest: (spec.digest)(),
                flags: (
                    spec.server_auth,
                    spec.digital_signature,
                    spec.authority_key_id,
                    spec.must_staple,
                ),
            },
            &k,
            issuer,
        );
        let leaf_pem = cert.to_pem().expect("pem");
        let mut full = leaf_pem.clone();
        if spec.issuer == Issuer::Intermediate {
            full.extend(self.intermediate.0.to_pem().expect("pem"));
        }
        let paths = Leaf {
            cert: self.dir.join(&format!("leaf{n}.pem")),
            fullchain: self.dir.join(&format!("leaf{n}-fullchain.pem")),
            key: self.dir.join(&format!("leaf{n}.key")),
        };
        std::fs::write(&paths.cert, leaf_pem).expect("leaf");
        std::fs::write(&paths.fullchain, full).expect("fullchain");
        std::fs::write(&paths.key, k.private_key_to_pem_pkcs8().expect("key")).expect("key");
        paths
    }

    /// A client certificate signed by the intermediate, and the CA file a
    /// server needs to verify it.
    pub fn client_leaf(&self, name: &str) -> Leaf {
        let mut spec = LeafSpec::new(name);
        spec.sans = vec![];
        self.leaf(&spec)
    }

    /// A DER OCSP response for `leaf` (issued by the intermediate), made by
    /// `openssl ocsp` as the intermediate's responder: status good, or
    /// revoked; signed by a key nobody trusts when `stranger` is set.
    pub fn ocsp_response(&self, leaf: &Leaf, revoked: bool, stranger: bool) -> PathBuf {
        let n = self.counter.get();
        self.counter.set(n + 1);
        let int_pem = self.dir.join("intermediate.pem");
        let int_key = self.dir.join("intermediate.key");
        std::fs::write(&int_pem, self.intermediate.0.to_pem().expect("pem")).expect("int");
        std::fs::write(
            &int_key,
            self.intermediate.1.private_key_to_pem_pkcs8().expect("key"),
        )
        .expect("int key");
        let cert = X509::from_pem(&std::fs::read(&leaf.cert).expect("leaf")).expect("leaf pem");
        let serial = cert
            .serial_number()
            .to_bn()
            .and_then(|b| b.to_hex_str().map(|h| h.to_string()))
            .expect("serial");
        let (status, revocation) = if revoked {
            ("R", "260101000000Z")
        } else {
            ("V", "")
        };
        let index = self.dir.join(&format!("ocsp-index{n}.txt"));
        std::fs::write(
            &index,
            format!("{status}\t491231235959Z\t{revocation}\t{serial}\tunknown\t/CN=x\n"),
        )
        .expect("index");
        let (signer, signer_key) = if stranger {
            let key = key(Key::EcP256);
            let cert = build(
                &CertSpec {
                    cn: "stranger",
                    sans: &[],
                    not_before: -1,
                    not_after: 30,
                    ca: true,
                    digest: MessageDigest::sha256(),
                    flags: (true, true, true, false),
                },
                &key,
                None,
            );
            let (c, k) = (self.dir.join("stranger.pem"), self.dir.join("stranger.key"));
            std::fs::write(&c, cert.to_pem().expect("pem")).expect("stranger");
            std::fs::write(&k, key.private_key_to_pem_pkcs8().expect("key")).expect("key");
            (c, k)
        } else {
            (int_pem.clone(), int_key.clone())
        };
        let out = self.dir.join(&format!("ocsp{n}.der"));
        let status = std::process::Command::new("openssl")
            .args(["ocsp", "-index"])
            .arg(&index)
            .arg("-rsigner")
            .arg(&signer)
            .arg("-rkey")
            .arg(&signer_key)
            .arg("-CA")
            .arg(&int_pem)
            .arg("-issuer")
            .arg(&int_pem)
            .arg("-cert")
            .arg(&leaf.cert)
            .arg("-respout")
            .arg(&out)
            .args(["-ndays", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("running openssl ocsp");
        assert!(status.success() && out.exists(), "openssl ocsp failed");
        out
    }

    /// Root + intermediate, for servers verifying client certificates.
    pub fn ca_bundle(&self) -> PathBuf {
        let path = self.dir.join("bundle.pem");
        let mut pem = self.intermediate.0.to_pem().expect("pem");
        pem.extend(self.root.0.to_pem().expect("pem"));
        std::fs::write(&path, pem).expect("bundle");
        path
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}
