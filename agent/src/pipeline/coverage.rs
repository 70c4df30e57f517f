//! Which processes' TLS libraries are probed, and why the others are not.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;

use tracing::{info, warn};

use crate::capture::Capture;
use crate::capture::tls_libs::{self, Coverage, FileId};

use super::status::UncoveredProcess;

/// Which processes are covered, and why the others are not.
#[derive(Default)]
pub struct CoverageTracker {
    pub covered: HashMap<u32, ()>,
    pub uncovered: BTreeMap<u32, UncoveredProcess>,
    /// Counts of the last full scan, by coverage kind.
    pub counts: BTreeMap<&'static str, u64>,
}

/// Most uncovered processes listed in the status file.
const MAX_UNCOVERED_LISTED: usize = 512;

impl CoverageTracker {
    /// Probes the system's TLS libraries, then every running process's.
    pub fn start(capture: &mut Capture) -> CoverageTracker {
        for (kind, path) in tls_libs::system_libraries() {
            if let Ok(meta) = std::fs::metadata(&path) {
                let id = FileId {
                    dev: meta.dev(),
                    inode: meta.ino(),
                };
                capture.cover_library(kind, id, &path);
            }
        }
        let mut coverage = CoverageTracker::default();
        coverage.scan_all(capture);
        info!(
            covered = coverage.covered.len(),
            uncovered = coverage.uncovered.len(),
            "process coverage"
        );
        coverage
    }

    pub fn scan_all(&mut self, capture: &mut Capture) {
        let pids = tls_libs::all_pids();
        let alive: std::collections::HashSet<u32> = pids.iter().copied().collect();
        self.covered.retain(|pid, _| alive.contains(pid));
        self.uncovered.retain(|pid, _| alive.contains(pid));
        let mut counts = BTreeMap::new();
        for pid in pids {
            if pid != std::process::id() {
                let kind = self.check(capture, pid);
                *counts.entry(kind).or_insert(0) += 1;
            }
        }
        self.counts = counts;
    }

    /// Covers one process; returns its coverage kind.
    pub fn check(&mut self, capture: &mut Capture, pid: u32) -> &'static str {
        let coverage = capture.cover_process(pid);
        let kind = match &coverage {
            Coverage::Covered => "covered",
            Coverage::NoTlsLibrary => "no-tls-library",
            Coverage::Exited => "exited",
            Coverage::Unsupported(_) => "unsupported",
            Coverage::Unreadable(_) => "unreadable",
        };
        match coverage {
            Coverage::Covered => {
                self.uncovered.remove(&pid);
                self.covered.insert(pid, ());
            }
            // Not using OpenSSL is normal (Go, Java, shells): wire evidence only.
            Coverage::NoTlsLibrary | Coverage::Exited => {
                self.uncovered.remove(&pid);
            }
            other => {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|c| c.trim().to_string())
                    .unwrap_or_default();
                if !self.uncovered.contains_key(&pid) {
                    warn!(pid, comm = %comm, coverage = ?other, "process not covered");
                }
                if self.uncovered.len() < MAX_UNCOVERED_LISTED {
                    self.uncovered.insert(
                        pid,
                        UncoveredProcess {
                            comm,
                            coverage: other,
                        },
                    );
                }
            }
        }
        kind
    }
}
