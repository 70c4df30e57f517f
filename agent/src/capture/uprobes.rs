//! OpenSSL uprobes, from userspace: which program attaches where in a TLS
//! file ([`plan`], pure), and attaching/detaching those plans
//! ([`Capture::apply_coverage`], on the capture loop: a few
//! `perf_event_open` calls; finding, opening and reading the files happens
//! on the coverage worker, `capture::coverage`).
//!
//! Every uprobe hit is a trap (~0.9 µs), so a plan probes as little as a
//! handshake needs:
//! - `SSL_do_handshake`, entry and return; `SSL_connect`/`SSL_accept` only
//!   where they do not reach it (a static build that inlined it);
//! - errors where libssl raises them: at its own PLT stubs for
//!   `ERR_set_error`/`ERR_vset_error` (`ERR_put_error` in 1.1), so that the
//!   errors libcrypto raises and clears in every successful handshake
//!   (decoders, ~9 per OpenSSL 3 handshake) never trap; at the functions
//!   themselves where there is no stub (a static build, `-fno-plt`);
//! - `X509_STORE_CTX_get_error` as an entry probe that reads `ctx->error`
//!   at the offset its own code loads (one trap, not an entry and a
//!   return), the return probe where the code is not that simple;
//! - `SSL_set_fd`: the socket of a call that fails before any I/O.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsRawFd;

use aya::Ebpf;
use aya::programs::UProbe;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope};
use serde::Serialize;
use tracing::{debug, info, warn};

use super::elf::{self, Flavor, TlsImage};
use super::tls_libs::{FileId, FileStamp, LibKind};
use super::{Capture, CaptureError, program_mut};

/// Every uprobe program of `agent-ebpf/src/openssl.rs`.
const PROGRAMS: &[&str] = &[
    "ssl_do_handshake",
    "ssl_do_handshake_ret",
    "ssl_connect",
    "ssl_connect_ret",
    "ssl_accept",
    "ssl_accept_ret",
    "ssl_set_fd",
    "err_vset_error",
    "err_put_error",
    "x509_store_ctx_get_error",
    "x509_store_ctx_get_error_ret",
];

/// Loads every uprobe program (attached later, per file); returns how many.
pub(super) fn load_programs(ebpf: &mut Ebpf) -> Result<usize, CaptureError> {
    for &program in PROGRAMS {
        let up: &mut UProbe = program_mut(ebpf, program)?;
        up.load()
            .map_err(|source| CaptureError::Program { program, source })?;
    }
    Ok(PROGRAMS.len())
}

/// One uprobe to attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbePlan {
    pub program: &'static str,
    /// What it is on, for people: `SSL_do_handshake`, `ERR_vset_error@plt`.
    pub target: String,
    /// File offset.
    pub offset: u64,
    /// `bpf_get_attach_cookie()`: the field offset of an accessor probe.
    pub cookie: Option<u64>,
}

/// Everything to attach to one file.
#[derive(Debug)]
pub struct FilePlan {
    pub id: FileId,
    pub stamp: FileStamp,
    pub kind: LibKind,
    pub flavor: Option<Flavor>,
    /// The path it was found at, for people.
    pub path: String,
    /// How it was opened (`/proc/PID/root/...`, a host path).
    pub via: String,
    /// The descriptor everything attaches through (`/proc/self/fd/N`).
    pub file: std::fs::File,
    pub probes: Vec<ProbePlan>,
    /// What is deliberately not probed, or could not be, and why.
    pub skipped: BTreeMap<String, String>,
}

/// What the coverage worker asks the capture loop to do.
#[derive(Debug)]
pub enum CoverageAction {
    /// Attach a file's probes (replacing any it had).
    Attach(Box<FilePlan>),
    /// Detach a file's probes: no process maps it any more, or its
    /// contents changed in place.
    Detach { id: FileId, why: String },
    /// The worker's first full scan is done.
    ScanDone,
}

/// Where libssl's errors are caught, from what the file offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorSource {
    /// At this file's own PLT stubs.
    Plt,
    /// At the functions, defined in this file (OpenSSL linked in).
    Functions,
    /// Imported without a stub (`-fno-plt`, not x86_64): the libcrypto it
    /// uses must be probed at its functions.
    Libcrypto,
}

/// What [`plan`] decided for one file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Planned {
    pub probes: Vec<ProbePlan>,
    pub skipped: BTreeMap<String, String>,
    /// A libssl whose errors must be caught in its libcrypto.
    pub needs_libcrypto_errors: bool,
}

/// The file's kind, from what it defines.
pub fn kind_of(image: &TlsImage) -> LibKind {
    match (image.has_ssl(), image.has_crypto()) {
        (true, true) => LibKind::SslAndCrypto,
        (true, false) => LibKind::Ssl,
        _ => LibKind::Crypto,
    }
}

/// The probes for one TLS file. `crypto_errors`: for a file that defines
/// the error functions but no handshake (a shared libcrypto), whether a
/// libssl using it needs them probed there.
pub fn plan(image: &TlsImage, crypto_errors: bool) -> Planned {
    let mut out = Planned::default();
    if image.flavor == Some(Flavor::Boringssl) {
        out.skipped.insert(
            "BoringSSL".to_string(),
            "library numbers and reason codes differ from OpenSSL's; wire evidence only"
                .to_string(),
        );
        return out;
    }
    let at_function = |out: &mut Planned, program: &'static str, name: &'static str, cookie| {
        if let Some(f) = image.functions.get(name) {
            out.probes.push(ProbePlan {
                program,
                target: name.to_string(),
                offset: f.offset,
                cookie,
            });
            true
        } else {
            false
        }
    };
    if image.has_ssl() {
        at_function(&mut out, "ssl_do_handshake", elf::SSL_DO_HANDSHAKE, None);
        at_function(
            &mut out,
            "ssl_do_handshake_ret",
            elf::SSL_DO_HANDSHAKE,
            None,
        );
        for (name, reaches, enter, ret) in [
            (
                elf::SSL_CONNECT,
                image.connect_calls_do_handshake,
                "ssl_connect",
                "ssl_connect_ret",
            ),
            (
                elf::SSL_ACCEPT,
                image.accept_calls_do_handshake,
                "ssl_accept",
                "ssl_accept_ret",
            ),
        ] {
            if reaches {
                out.skipped.insert(
                    name.to_string(),
                    "calls SSL_do_handshake, which is probed".to_string(),
                );
            } else {
                at_function(&mut out, enter, name, None);
                at_function(&mut out, ret, name, None);
            }
        }
        at_function(&mut out, "ssl_set_fd", elf::SSL_SET_FD, None);
        at_function(&mut out, "ssl_set_fd", elf::SSL_SET_RFD, None);
        match error_source(image) {
            ErrorSource::Plt => {
                for (name, program) in [
                    (elf::ERR_SET_ERROR, "err_vset_error"),
                    (elf::ERR_VSET_ERROR, "err_vset_error"),
                    (elf::ERR_PUT_ERROR, "err_put_error"),
                ] {
                    if let Some(&offset) = image.plt.get(name) {
                        out.probes.push(ProbePlan {
                            program,
                            target: format!("{name}@plt"),
                            offset,
                            cookie: None,
                        });
                    }
                }
            }
            ErrorSource::Functions => error_functions(image, &mut out),
            ErrorSource::Libcrypto => out.needs_libcrypto_errors = true,
        }
    } else if crypto_errors {
        error_functions(image, &mut out);
    } else if image.has_crypto() {
        out.skipped.insert(
            "ERR_*".to_string(),
            "libssl raises its errors through its own PLT, probed there".to_string(),
        );
    }
    if let Some(offset) = image.x509_error_offset {
        at_function(
            &mut out,
            "x509_store_ctx_get_error",
            elf::X509_STORE_CTX_GET_ERROR,
            Some(u64::from(offset)),
        );
    } else {
        at_function(
            &mut out,
            "x509_store_ctx_get_error_ret",
            elf::X509_STORE_CTX_GET_ERROR,
            None,
        );
    }
    out
}

/// Where a file with the handshake entry points raises its errors.
pub fn error_source(image: &TlsImage) -> ErrorSource {
    let stubs = [elf::ERR_SET_ERROR, elf::ERR_VSET_ERROR, elf::ERR_PUT_ERROR]
        .iter()
        .any(|f| image.plt.contains_key(f));
    let imported_without_stub = [elf::ERR_SET_ERROR, elf::ERR_VSET_ERROR, elf::ERR_PUT_ERROR]
        .iter()
        .any(|f| image.imports.contains(f) && !image.plt.contains_key(f));
    if image.functions.contains_key(elf::ERR_VSET_ERROR)
        || image.functions.contains_key(elf::ERR_PUT_ERROR)
    {
        // Defined here too (OpenSSL linked in): not every call need pass a
        // stub, the functions catch them all.
        ErrorSource::Functions
    } else if stubs && !imported_without_stub {
        ErrorSource::Plt
    } else {
        ErrorSource::Libcrypto
    }
}

/// The error functions themselves: every error of the process traps,
/// libcrypto's raised-and-cleared ones included.
fn error_functions(image: &TlsImage, out: &mut Planned) {
    let mut add = |program: &'static str, name: &'static str| {
        if let Some(f) = image.functions.get(name) {
            out.probes.push(ProbePlan {
                program,
                target: name.to_string(),
                offset: f.offset,
                cookie: None,
            });
        }
    };
    // 3.x: ERR_raise ends in ERR_vset_error, through ERR_set_error unless
    // an optimiser folded one into the other.
    add("err_vset_error", elf::ERR_VSET_ERROR);
    if !image.set_error_calls_vset_error {
        add("err_vset_error", elf::ERR_SET_ERROR);
    }
    add("err_put_error", elf::ERR_PUT_ERROR);
}

/// What happened when a file was probed (status.json `libraries`).
#[derive(Clone, Debug, Serialize)]
pub struct LibraryReport {
    pub kind: LibKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flavor: Option<Flavor>,
    pub path: String,
    /// How the agent opened it.
    pub via: String,
    pub dev: u64,
    pub inode: u64,
    /// Probes attached: `SSL_do_handshake`, `ERR_vset_error@plt`, ...
    pub attached: Vec<String>,
    /// Not probed, deliberately or after an error, with the reason.
    pub skipped: BTreeMap<String, String>,
}

/// The uprobe links of one file, by program.
type Links = Vec<(&'static str, UProbeLinkId)>;

/// The probes attached to each file.
#[derive(Default)]
pub(super) struct AttachedFiles {
    files: HashMap<FileId, (LibraryReport, Links)>,
}

impl AttachedFiles {
    pub(super) fn reports(&self) -> impl Iterator<Item = &LibraryReport> {
        self.files.values().map(|(r, _)| r)
    }
}

impl Capture {
    /// Carries out what the coverage worker decided: a few
    /// `perf_event_open` calls per file, through its open descriptor.
    pub fn apply_coverage(&mut self, action: CoverageAction) {
        match action {
            CoverageAction::Attach(plan) => {
                self.detach_file(plan.id);
                let (report, links) = attach_plan(&mut self.ebpf, &plan);
                if report.attached.is_empty() {
                    warn!(path = %plan.path, skipped = ?report.skipped, "TLS library not probed");
                } else {
                    info!(path = %plan.path, via = %plan.via, attached = ?report.attached,
                          "TLS library probed");
                }
                self.libraries.files.insert(plan.id, (report, links));
            }
            CoverageAction::Detach { id, why } => {
                if let Some(path) = self.detach_file(id) {
                    info!(path = %path, why = %why, "TLS file's probes detached");
                }
            }
            CoverageAction::ScanDone => {}
        }
    }

    fn detach_file(&mut self, id: FileId) -> Option<String> {
        let (report, links) = self.libraries.files.remove(&id)?;
        for (program, link) in links {
            let detached = program_mut::<UProbe>(&mut self.ebpf, program).and_then(|p| {
                p.detach(link)
                    .map_err(|source| CaptureError::Program { program, source })
            });
            if let Err(e) = detached {
                warn!(program, path = %report.path, error = %crate::text::Chain(&e), "detaching a uprobe");
            }
        }
        Some(report.path)
    }
}

fn attach_plan(ebpf: &mut Ebpf, plan: &FilePlan) -> (LibraryReport, Links) {
    let mut report = LibraryReport {
        kind: plan.kind,
        flavor: plan.flavor,
        path: plan.path.clone(),
        via: plan.via.clone(),
        dev: plan.id.dev,
        inode: plan.id.inode,
        attached: Vec::new(),
        skipped: plan.skipped.clone(),
    };
    // The kernel resolves this path in the agent's own fd table: the file
    // opened and checked by the worker, whatever its path names now.
    let target = format!("/proc/self/fd/{}", plan.file.as_raw_fd());
    let mut links = Vec::new();
    for probe in &plan.probes {
        let label = format!("{} ({})", probe.target, probe.program);
        let attached = program_mut::<UProbe>(ebpf, probe.program).and_then(|up| {
            up.attach(
                UProbeAttachPoint {
                    location: UProbeAttachLocation::AbsoluteOffset(probe.offset),
                    cookie: probe.cookie,
                },
                &target,
                UProbeScope::AllProcesses,
            )
            .map_err(|source| CaptureError::Program {
                program: probe.program,
                source,
            })
        });
        match attached {
            Ok(link) => {
                links.push((probe.program, link));
                report.attached.push(label);
            }
            Err(e) => {
                debug!(probe = %label, path = %plan.path, error = %crate::text::Chain(&e), "uprobe not attached");
                report
                    .skipped
                    .insert(label, crate::text::Chain(&e).to_string());
            }
        }
    }
    (report, links)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::elf::Function;

    fn f(offset: u64) -> Function {
        Function {
            addr: offset,
            size: 16,
            offset,
        }
    }

    fn shared_libssl() -> TlsImage {
        let mut image = TlsImage {
            flavor: Some(Flavor::Openssl3),
            connect_calls_do_handshake: true,
            accept_calls_do_handshake: true,
            ..Default::default()
        };
        for (name, off) in [
            (elf::SSL_DO_HANDSHAKE, 0x100),
            (elf::SSL_CONNECT, 0x200),
            (elf::SSL_ACCEPT, 0x300),
            (elf::SSL_SET_FD, 0x400),
        ] {
            image.functions.insert(name, f(off));
        }
        image.imports = vec![
            elf::ERR_SET_ERROR,
            elf::ERR_VSET_ERROR,
            elf::X509_STORE_CTX_GET_ERROR,
        ];
        image.plt.insert(elf::ERR_SET_ERROR, 0x10);
        image.plt.insert(elf::ERR_VSET_ERROR, 0x20);
        image
    }

    fn targets(p: &Planned) -> Vec<String> {
        p.probes
            .iter()
            .map(|p| format!("{}:{}", p.program, p.target))
            .collect()
    }

    #[test]
    fn a_shared_libssl_traps_on_its_own_errors_and_one_handshake_call() {
        let p = plan(&shared_libssl(), false);
        assert_eq!(
            targets(&p),
            [
                "ssl_do_handshake:SSL_do_handshake",
                "ssl_do_handshake_ret:SSL_do_handshake",
                "ssl_set_fd:SSL_set_fd",
                "err_vset_error:ERR_set_error@plt",
                "err_vset_error:ERR_vset_error@plt",
            ]
        );
        assert!(!p.needs_libcrypto_errors);
        assert!(p.skipped.contains_key("SSL_connect"));
    }

    #[test]
    fn without_a_plt_stub_the_errors_are_caught_in_libcrypto() {
        let mut image = shared_libssl();
        image.plt.clear();
        let p = plan(&image, false);
        assert!(p.needs_libcrypto_errors);
        assert!(!targets(&p).iter().any(|t| t.contains("ERR_")));
        // One stub of two: the other path would be missed, so libcrypto too.
        let mut image = shared_libssl();
        image.plt.remove(elf::ERR_VSET_ERROR);
        assert!(plan(&image, false).needs_libcrypto_errors);
    }

    fn libcrypto(offset: Option<u32>) -> TlsImage {
        let mut image = TlsImage {
            flavor: Some(Flavor::Openssl3),
            set_error_calls_vset_error: true,
            x509_error_offset: offset,
            ..Default::default()
        };
        image.functions.insert(elf::ERR_VSET_ERROR, f(0x500));
        image.functions.insert(elf::ERR_SET_ERROR, f(0x600));
        image
            .functions
            .insert(elf::X509_STORE_CTX_GET_ERROR, f(0x700));
        image
    }

    #[test]
    fn a_libcrypto_reads_the_verify_result_at_entry_and_errors_only_when_needed() {
        let p = plan(&libcrypto(Some(0xb0)), false);
        assert_eq!(
            targets(&p),
            ["x509_store_ctx_get_error:X509_STORE_CTX_get_error"]
        );
        assert_eq!(p.probes[0].cookie, Some(0xb0));
        let p = plan(&libcrypto(None), true);
        assert_eq!(
            targets(&p),
            [
                "err_vset_error:ERR_vset_error",
                "x509_store_ctx_get_error_ret:X509_STORE_CTX_get_error",
            ]
        );
    }

    #[test]
    fn openssl_linked_into_an_executable_probes_its_functions() {
        let mut image = libcrypto(Some(0xb0));
        image.set_error_calls_vset_error = false;
        image.functions.insert(elf::SSL_DO_HANDSHAKE, f(0x100));
        image.functions.insert(elf::SSL_CONNECT, f(0x200));
        let p = plan(&image, false);
        assert_eq!(kind_of(&image), LibKind::SslAndCrypto);
        assert_eq!(
            targets(&p),
            [
                "ssl_do_handshake:SSL_do_handshake",
                "ssl_do_handshake_ret:SSL_do_handshake",
                "ssl_connect:SSL_connect",
                "ssl_connect_ret:SSL_connect",
                "err_vset_error:ERR_vset_error",
                "err_vset_error:ERR_set_error",
                "x509_store_ctx_get_error:X509_STORE_CTX_get_error",
            ]
        );
    }

    #[test]
    fn boringssl_is_recognised_and_left_to_the_wire() {
        let mut image = shared_libssl();
        image.flavor = Some(Flavor::Boringssl);
        let p = plan(&image, false);
        assert!(p.probes.is_empty());
        assert!(p.skipped.contains_key("BoringSSL"));
    }
}
