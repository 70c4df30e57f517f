//! `status.json`: the agent's health and coverage, refreshed from the same
//! sources every few seconds and once more at shutdown.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::debug;

use crate::assembly::{Assembler, AssemblyStats};
use crate::capture::{Capture, LibraryReport, MechanismReport};
use crate::config::RunConfig;

use super::sinks::SinkCounters;
use crate::capture::coverage::{CoverageWorker, UncoveredProcess};

/// What became of the handshakes the kernel held.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct HoldStatus {
    /// Whether successes are decided and dropped in the kernel (off with
    /// `--show-success` or success sampling).
    pub enabled: bool,
    /// Held records read into assembly.
    pub records_read: u64,
    /// Of those, holds userspace released because they lasted too long
    /// (stalled or slow handshakes).
    pub stale_released: u64,
}

/// Health and coverage, written to the status file.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub agent_pid: u32,
    pub started: Option<DateTime<Utc>>,
    pub updated: Option<DateTime<Utc>>,
    pub journal: String,
    /// How handshake bytes are captured (`socket` or `syscalls`), and why
    /// not `socket` when it is not.
    pub capture: Option<MechanismReport>,
    /// Kernel-side counters (ring buffer full, map full, ...).
    pub kernel: BTreeMap<&'static str, u64>,
    pub assembly: AssemblyStats,
    /// Handshakes the kernel held and released to userspace (see
    /// `held_released` in `kernel` for the kernel's count).
    pub holds: HoldStatus,
    /// Outcomes dropped because the sink queue was full.
    pub dropped_outcomes: u64,
    /// Ring-buffer records that could not be decoded, by error.
    pub decode_errors: BTreeMap<String, u64>,
    pub journal_errors: u64,
    /// Failures appended to the journal since start.
    pub journal_records: u64,
    /// Journal records deleted by rotation (`--journal-max-mib`) since start.
    pub journal_rotated_out: u64,
    /// OTLP spans dropped (queue full or collector unreachable).
    pub spans_dropped: u64,
    /// Connections with only non-TLS bytes whose port host state showed not
    /// to serve TLS.
    pub plain_connections: u64,
    pub open_connections: usize,
    pub libraries: Vec<LibraryReport>,
    /// Processes whose TLS library could not be probed, with the reason.
    pub uncovered: BTreeMap<u32, UncoveredProcess>,
    pub covered_processes: usize,
    /// Processes seen at the last scan, by coverage (`covered`,
    /// `no-tls-library`: wire evidence only, `exited`, `unsupported`,
    /// `unreadable`).
    pub coverage: BTreeMap<&'static str, u64>,
    /// The pod watch, when the agent runs in a Kubernetes cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k8s: Option<crate::k8s::K8sStatus>,
    /// Server-config discovery: its last run, and what was refused.
    pub discovery: crate::diagnosis::discovery::DiscoveryStatus,
}

/// Where every refreshed field of [`Status`] comes from.
pub struct StatusSources<'a> {
    pub capture: &'a Capture,
    pub assembler: &'a Assembler,
    pub coverage: &'a CoverageWorker,
    pub sinks: &'a SinkCounters,
    pub dropped_outcomes: u64,
    pub holds: HoldStatus,
    pub decode_errors: &'a BTreeMap<String, u64>,
    pub k8s: Option<crate::k8s::K8sStatus>,
}

impl Status {
    /// A status for an agent started now with `capture`.
    pub fn new(config: &RunConfig, capture: &Capture) -> Status {
        Status {
            agent_pid: std::process::id(),
            started: Some(Utc::now()),
            journal: config.journal.display().to_string(),
            capture: Some(capture.mechanism().clone()),
            ..Default::default()
        }
    }

    /// Refreshes every field that changes while the agent runs: the
    /// periodic write and the final one at shutdown both go through here,
    /// so the last status.json is as fresh as any other.
    pub fn refresh(&mut self, from: StatusSources<'_>) {
        self.updated = Some(Utc::now());
        self.kernel = from
            .capture
            .counters()
            .map(|c| c.into_iter().map(|(k, v)| (k.name(), v)).collect())
            .unwrap_or_default();
        self.assembly = from.assembler.stats().clone();
        self.dropped_outcomes = from.dropped_outcomes;
        self.holds = from.holds;
        self.decode_errors = from.decode_errors.clone();
        let sinks = from.sinks;
        self.journal_errors = sinks.journal_errors.load(Ordering::Relaxed);
        self.journal_records = sinks.journal_records.load(Ordering::Relaxed);
        self.journal_rotated_out = sinks.journal_rotated_out.load(Ordering::Relaxed);
        self.spans_dropped = sinks.spans_dropped.load(Ordering::Relaxed);
        self.plain_connections = sinks.not_tls_confirmed.load(Ordering::Relaxed);
        self.open_connections = from.assembler.open_connections();
        self.libraries = from.capture.libraries().cloned().collect();
        let covered = from.coverage.status();
        self.covered_processes = covered.covered_processes;
        self.coverage = covered.counts;
        self.uncovered = covered.uncovered;
        self.k8s = from.k8s;
        self.discovery = crate::diagnosis::discovery::ConfigDiscovery::shared().status();
    }

    /// Writes the status file atomically (a temp file renamed over it).
    pub fn write(&self, config: &RunConfig) {
        let path = config.status_path();
        let tmp = path.with_extension("json.tmp");
        let result = serde_json::to_vec_pretty(self)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::sinks::journal::write_private(&tmp, &bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            debug!(path = %path.display(), error = %crate::text::Chain(&e), "writing the status file");
        }
    }
}
