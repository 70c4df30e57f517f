//! The certificates local servers serve, for
//! `tlsdoctor_certificate_not_after_timestamp_seconds`: the blackbox
//! exporter's `probe_ssl_earliest_cert_expiry`, read from host state
//! instead of a probe, so an expiry is caught weeks before the first
//! handshake fails on it.
//!
//! A scan discovers the running nginx/apache servers and their TLS
//! configs (containers' through their own root), loads each certificate
//! file a TLS block names (`ssl_certificate`, `SSLCertificateFile`, the
//! chain file) and yields one series per certificate in the file, per
//! TLS port of the block. It reads files, so it runs on the blocking pool,
//! never on the capture loop ([`run_scans`]), every
//! `--certificate-scan-seconds`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{CertificateLabels, Metrics};
use crate::evidence::certificates::{CertificateFact, load_pem_chain_in};
use crate::evidence::fsroot::FsRoot;
use crate::evidence::server_config::{DiscoveredConfig, ServerBlock, discover};

/// Certificates read per file (a leaf and its chain; a bundle of hundreds
/// is not what a server serves).
const MAX_PER_FILE: usize = 8;
/// Series per scan: a host with thousands of vhosts still yields a bounded page.
const MAX_SERIES: usize = 4096;

/// One scan's result.
#[derive(Debug, Default, PartialEq)]
pub struct Scan {
    /// Each served certificate and its notAfter (Unix seconds).
    pub served: Vec<(CertificateLabels, i64)>,
    /// Certificate files named by a TLS block that could not be read or parsed.
    pub unreadable: usize,
}

/// Scans the running servers of this host.
pub fn scan() -> Scan {
    scan_configs(&discover())
}

/// [`scan`] of configs already discovered.
pub fn scan_configs(configs: &[DiscoveredConfig]) -> Scan {
    let mut out = Scan::default();
    let mut seen = BTreeSet::new();
    for d in configs.iter().filter(|d| d.running) {
        let Ok(config) = &d.result else { continue };
        for block in config.blocks.iter().filter(|b| b.is_tls()) {
            scan_block(&d.root, block, &mut out, &mut seen);
        }
    }
    out
}

fn scan_block(
    root: &FsRoot,
    block: &ServerBlock,
    out: &mut Scan,
    seen: &mut BTreeSet<CertificateLabels>,
) {
    let mut ports: Vec<u16> = block
        .listens
        .iter()
        .filter(|l| l.ssl)
        .map(|l| l.port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    let server_name = block
        .server_names
        .first()
        .map(|n| n.value.clone())
        .unwrap_or_default();
    let files: Vec<&PathBuf> = block
        .certificate
        .iter()
        .chain(block.extra_certificates.iter())
        .chain(block.chain_file.iter())
        .map(|s| &s.value)
        .collect();
    for file in files {
        let chain = match load_pem_chain_in(root, file) {
            Ok(chain) => chain,
            Err(e) => {
                tracing::debug!(file = %file.display(), error = %crate::text::Chain(&e), "certificate expiry: unreadable");
                out.unreadable += 1;
                continue;
            }
        };
        for der in chain.iter().take(MAX_PER_FILE) {
            let Ok(cert) = CertificateFact::from_der(der) else {
                out.unreadable += 1;
                continue;
            };
            for &port in &ports {
                let labels = CertificateLabels {
                    file: file.display().to_string(),
                    subject: cert.subject.clone(),
                    server_name: server_name.clone(),
                    port,
                };
                if out.served.len() < MAX_SERIES && seen.insert(labels.clone()) {
                    out.served.push((labels, cert.not_after.timestamp()));
                }
            }
        }
    }
}

/// Scans now and then every `every` until `stop` is set, publishing each
/// scan in `metrics`; the scans run on the blocking pool.
pub async fn run_scans(
    metrics: Arc<Metrics>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match tokio::task::spawn_blocking(scan).await {
            Ok(result) => {
                tracing::debug!(
                    certificates = result.served.len(),
                    unreadable = result.unreadable,
                    "certificate expiry scan"
                );
                metrics.set_certificates(&result.served, result.unreadable);
            }
            Err(e) => {
                tracing::warn!(error = %crate::text::Chain(&e), "certificate expiry scan failed")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::server_config::{ServerConfig, ServerKind, nginx};

    /// A self-signed certificate for `name`, valid 30 days, as PEM.
    fn self_signed_pem(name: &str) -> Vec<u8> {
        use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509};
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut subject = x509::X509NameBuilder::new().unwrap();
        subject.append_entry_by_text("CN", name).unwrap();
        let subject = subject.build();
        let mut b = x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&subject).unwrap();
        b.set_issuer_name(&subject).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build().to_pem().unwrap()
    }

    #[test]
    fn every_certificate_of_a_tls_block_per_port() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("site.pem");
        std::fs::write(&cert, self_signed_pem("site.test")).unwrap();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "events {{}}\nhttp {{\n server {{\n  listen 8443 ssl;\n  listen 9443 ssl;\n  listen 8080;\n  server_name site.test www.site.test;\n  ssl_certificate {};\n  ssl_certificate_key {};\n }}\n server {{\n  listen 7443 ssl;\n  ssl_certificate {}/missing.pem;\n }}\n}}\n",
                cert.display(),
                cert.display(),
                dir.path().display()
            ),
        )
        .unwrap();
        let parsed: ServerConfig = nginx::parse(&conf).unwrap();
        let discovered = DiscoveredConfig {
            kind: ServerKind::Nginx,
            main_file: conf.clone(),
            pids: vec![1],
            running: true,
            root: FsRoot::Host,
            result: Ok(parsed),
        };
        let scan = scan_configs(std::slice::from_ref(&discovered));
        let ports: Vec<u16> = scan.served.iter().map(|(l, _)| l.port).collect();
        assert_eq!(ports, vec![8443, 9443], "{scan:?}");
        let (labels, not_after) = &scan.served[0];
        assert_eq!(labels.server_name, "site.test");
        assert_eq!(labels.file, cert.display().to_string());
        assert!(labels.subject.contains("site.test"), "{labels:?}");
        assert!(*not_after > chrono::Utc::now().timestamp());
        assert_eq!(scan.unreadable, 1, "the missing file is counted");
        // A server that is not running serves nothing.
        let stopped = DiscoveredConfig {
            running: false,
            ..discovered
        };
        assert!(scan_configs(&[stopped]).served.is_empty());
    }
}
