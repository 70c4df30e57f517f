//! Reading certificate files: bounded, regular files only, PEM blocks
//! other than certificates skipped undecoded.

use std::io::Read;
use std::path::{Path, PathBuf};

use openssl::x509::X509;

use crate::evidence::fsroot::FsRoot;

use super::*;

/// Reads a whole regular file, refusing anything larger than `limit` (and
/// FIFOs or devices, which could block or never end).
pub(super) fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, CertError> {
    read_capped_in(&FsRoot::Host, path, limit)
}

/// [`read_capped`] of a file of `root`; errors name the path as `root`
/// names it.
fn read_capped_in(root: &FsRoot, path: &Path, limit: u64) -> Result<Vec<u8>, CertError> {
    let shown = path.display().to_string();
    let io = |source| CertError::Io {
        path: shown.clone(),
        source,
    };
    let file = root.open(path).map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(CertError::NotAFile { path: shown });
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(CertError::TooLarge { path: shown, limit });
    }
    Ok(bytes)
}

/// The DER of every `CERTIFICATE` block in `pem`, in order. Other blocks
/// (private keys above all) are skipped without being decoded.
pub(super) fn pem_certificates(pem: &[u8], path: &str) -> Result<Vec<Vec<u8>>, CertError> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const END: &[u8] = b"-----END ";
    let mut out = Vec::new();
    // Some(body) while inside a CERTIFICATE block; `skipping` inside others.
    let mut body: Option<String> = None;
    let mut skipping = false;
    for raw in pem.split(|&b| b == b'\n') {
        let line = raw.trim_ascii();
        if line.starts_with(BEGIN) {
            let is_cert = line == b"-----BEGIN CERTIFICATE-----";
            body = is_cert.then(String::new);
            skipping = !is_cert;
        } else if line.starts_with(END) {
            if let Some(b64) = body.take() {
                let index = out.len();
                let bad = |reason: String| CertError::BadPem {
                    path: path.to_string(),
                    index,
                    reason,
                };
                let der = openssl::base64::decode_block(&b64)
                    .map_err(|e| bad(format!("bad base64: {e}", e = crate::text::Chain(&e))))?;
                X509::from_der(&der)
                    .map_err(|e| bad(format!("bad DER: {e}", e = crate::text::Chain(&e))))?;
                out.push(der);
            }
            skipping = false;
        } else if skipping {
            continue;
        } else if let Some(b64) = body.as_mut() {
            let text = std::str::from_utf8(line).map_err(|_| CertError::BadPem {
                path: path.to_string(),
                index: out.len(),
                reason: "non-ASCII byte in base64 body".to_string(),
            })?;
            b64.push_str(text);
        }
    }
    if body.is_some() {
        return Err(CertError::BadPem {
            path: path.to_string(),
            index: out.len(),
            reason: "no END CERTIFICATE line".to_string(),
        });
    }
    Ok(out)
}

/// Every `CERTIFICATE` block of a PEM file, as DER, in file order. Private
/// key blocks in the same file are skipped, never decoded or kept.
pub fn load_pem_chain(path: &Path) -> Result<Vec<Vec<u8>>, CertError> {
    load_pem_chain_in(&FsRoot::Host, path)
}

/// [`load_pem_chain`] of a file of `root` (a containerised server's
/// certificate, named as the server names it).
pub fn load_pem_chain_in(root: &FsRoot, path: &Path) -> Result<Vec<Vec<u8>>, CertError> {
    let bytes = read_capped_in(root, path, MAX_CHAIN_FILE)?;
    let shown = path.display().to_string();
    let chain = pem_certificates(&bytes, &shown)?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate { path: shown });
    }
    Ok(chain)
}

/// Certificates of an OpenSSL hashed directory: only files named like
/// `1a2b3c4d.0`, the only ones OpenSSL's lookup can find.
pub(super) fn load_hashed_dir(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    // The cap counts entries looked at, not only those kept: a directory
    // of a million other files is not walked to its end.
    let mut paths: Vec<PathBuf> = entries
        .take(MAX_DIR_FILES)
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_hashed_name)
        })
        .collect();
    paths.sort();
    let mut certs = Vec::new();
    for path in paths {
        if let Ok(bytes) = read_capped(&path, MAX_CHAIN_FILE) {
            let shown = path.display().to_string();
            certs.extend(pem_certificates(&bytes, &shown).unwrap_or_default());
        }
    }
    certs
}

pub(super) fn is_hashed_name(name: &str) -> bool {
    match name.split_once('.') {
        Some((hash, n)) => {
            hash.len() == 8
                && hash.bytes().all(|b| b.is_ascii_hexdigit())
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}
