//! OpenSSL uprobes, from userspace: which programs attach to which symbol
//! of which library file, and covering a process's TLS libraries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aya::Ebpf;
use aya::programs::{UProbe, uprobe::UProbeScope};
use serde::Serialize;
use tracing::{debug, info, warn};

use super::tls_libs::{self, Coverage, FileId, LibKind, MappedLibrary};
use super::{Capture, CaptureError, error_chain, program_mut};

/// One uprobe attachment: (program, library, symbol). Symbols missing from a
/// library build (OpenSSL 1.1 has no `ERR_vset_error`, 3.x no
/// `ERR_put_error`) are skipped and listed.
const UPROBES: &[(&str, LibKind, &str)] = &[
    ("ssl_do_handshake", LibKind::Ssl, "SSL_do_handshake"),
    ("ssl_do_handshake_ret", LibKind::Ssl, "SSL_do_handshake"),
    ("ssl_connect", LibKind::Ssl, "SSL_connect"),
    ("ssl_connect_ret", LibKind::Ssl, "SSL_connect"),
    ("ssl_accept", LibKind::Ssl, "SSL_accept"),
    ("ssl_accept_ret", LibKind::Ssl, "SSL_accept"),
    ("ssl_set_fd", LibKind::Ssl, "SSL_set_fd"),
    ("ssl_set_fd", LibKind::Ssl, "SSL_set_rfd"),
    ("ssl_set_bio", LibKind::Ssl, "SSL_set_bio"),
    ("ssl_free", LibKind::Ssl, "SSL_free"),
    ("err_vset_error", LibKind::Crypto, "ERR_vset_error"),
    ("err_put_error", LibKind::Crypto, "ERR_put_error"),
    (
        "x509_store_ctx_get_error_ret",
        LibKind::Crypto,
        "X509_STORE_CTX_get_error",
    ),
    ("bio_new_socket", LibKind::Crypto, "BIO_new_socket"),
    ("bio_new_socket_ret", LibKind::Crypto, "BIO_new_socket"),
];

/// Loads every uprobe program (attached later, per library); returns how many.
pub(super) fn load_programs(ebpf: &mut Ebpf) -> Result<usize, CaptureError> {
    let mut loaded = std::collections::HashSet::new();
    for &(program, _, _) in UPROBES {
        if loaded.insert(program) {
            let up: &mut UProbe = program_mut(ebpf, program)?;
            up.load()
                .map_err(|source| CaptureError::Program { program, source })?;
        }
    }
    Ok(loaded.len())
}

/// What happened when a library file was probed.
#[derive(Clone, Debug, Serialize)]
pub struct LibraryReport {
    pub kind: LibKind,
    pub path: PathBuf,
    pub attached: Vec<&'static str>,
    /// Symbols this build lacks, or attach errors, by symbol.
    pub skipped: BTreeMap<&'static str, String>,
}

impl Capture {
    /// Probes one library file, once per file (device and inode).
    pub fn cover_library(&mut self, kind: LibKind, id: FileId, path: &Path) -> &LibraryReport {
        if !self.libraries.contains_key(&id) {
            let report = attach_library(&mut self.ebpf, kind, path);
            if report.attached.is_empty() {
                warn!(path = %path.display(), skipped = ?report.skipped, "TLS library not probed");
            } else {
                info!(path = %path.display(), attached = report.attached.len(),
                      skipped = report.skipped.len(), "TLS library probed");
            }
            self.libraries.insert(id, report);
        }
        &self.libraries[&id]
    }

    /// Covers a process's libraries, reporting why when it cannot.
    pub fn cover_process(&mut self, pid: u32) -> Coverage {
        let libs: Vec<MappedLibrary> = match tls_libs::libraries_of(pid) {
            Ok(libs) => libs,
            Err(coverage) => return coverage,
        };
        if libs.is_empty() {
            return Coverage::NoTlsLibrary;
        }
        let mut missing = Vec::new();
        for lib in &libs {
            let report = self.cover_library(lib.kind, lib.id, &lib.attach_path);
            if report.attached.is_empty() {
                missing.push(format!("{}: {:?}", lib.path_in_process, report.skipped));
            }
        }
        if libs.iter().any(|l| l.kind == LibKind::Ssl) && missing.is_empty() {
            Coverage::Covered
        } else if missing.is_empty() {
            Coverage::Unsupported("maps libcrypto but no libssl".to_string())
        } else {
            Coverage::Unsupported(missing.join("; "))
        }
    }
}

fn attach_library(ebpf: &mut Ebpf, kind: LibKind, path: &Path) -> LibraryReport {
    let mut report = LibraryReport {
        kind,
        path: path.to_path_buf(),
        attached: Vec::new(),
        skipped: BTreeMap::new(),
    };
    for &(program, lib, symbol) in UPROBES {
        if lib != kind {
            continue;
        }
        let up: &mut UProbe = match program_mut(ebpf, program) {
            Ok(p) => p,
            Err(e) => {
                report.skipped.insert(symbol, e.to_string());
                continue;
            }
        };
        match up.attach(symbol, path, UProbeScope::AllProcesses) {
            Ok(_) => {
                if !report.attached.contains(&symbol) {
                    report.attached.push(symbol);
                }
            }
            Err(e) => {
                debug!(symbol, path = %path.display(), error = %e, "uprobe not attached");
                report.skipped.insert(symbol, error_chain(&e));
            }
        }
    }
    report
}
