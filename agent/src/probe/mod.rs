//! The active probe behind `agent diagnose HOST:PORT [--sni NAME] [--ca FILE]`:
//! "the local SSL Labs". It connects to the target like a default modern
//! client, names the root cause that client hits with the same rules the
//! agent applies to captured failures, and lists every other problem it
//! finds (weak protocols, chains some clients cannot build, certificates
//! about to expire, what SNI-less clients get).
//!
//! Steps, each bounded by `ProbeOptions::timeout` and all by
//! `ProbeOptions::total_timeout`:
//! 1. resolve the target, TCP-connect every address (refused? unreachable?
//!    timed out?);
//! 2. the default client's handshake (TLS 1.2–1.3, OpenSSL defaults, verification on);
//!    when the server asks for a client certificate, a second connection
//!    sends a request to see whether it insists;
//! 3. side by side on a few threads: TLS 1.0–1.3 each alone, a handshake
//!    without SNI, and (unless `quick`) every cipher suite and group per
//!    version and six real clients' ClientHellos (see `profiles`);
//! 4. the served chain analysed against the client's anchors, and checked
//!    as scanners do (key usage, EKU, stapling, SCTs, key identifiers);
//! 5. a failure becomes a [`HandshakeOutcome`](crate::outcome::HandshakeOutcome)
//!    (role client) with host facts when the target is local, and
//!    [`diagnosis::diagnose`](crate::diagnosis::diagnose) names the cause.
//!
//! A running agent sees these connections. `agent run` ignores only its own
//! pid, so `agent diagnose` probes appear in its journal as failures of a
//! process called `agent`, unless filtered. To make them recognisable, every
//! socket of a probe is opened by a thread named [`PROBE_THREAD_NAME`]:
//! the eBPF hooks read the thread's comm (`bpf_get_current_comm`) at each
//! syscall, so a capture-side filter can drop events whose comm is
//! `tlsdoctor-probe` before they reach user space. (The capture does not
//! filter them today; the outcome records the probe builds name that comm
//! too.)

mod assemble;
mod cause;
mod certs;
mod client_cert;
mod clients;
mod connect;
pub mod display;
mod findings;
mod handshake;
pub mod hello;
pub mod iana;
mod matrix;
mod parallel;
mod pool;
pub mod profiles;
pub mod report;
mod request;
mod run;
mod suites;
mod tap;
mod target;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::diagnosis::host::HostState;
use crate::evidence::certificates::CertError;

pub use findings::EXPIRY_WARNING_DAYS;
pub use handshake::MAX_KEPT_CERTIFICATES;
pub use report::{
    AcceptedSuite, AddressProbe, CertificateCheck, CertificateChecks, ClientCertificateCheck,
    ClientSimulation, EnumerationStatus, FailureKind, Finding, HandshakeSummary, OcspStaple,
    ProbeReport, ProtocolProbe, ProtocolStatus, SCHEMA_VERSION, Severity, SniProbe, TcpResult,
    TrustCheck, Verdict, VersionSuites,
};

/// The name of the thread that opens every probe socket (15 bytes: the
/// kernel's comm holds 15 plus NUL).
pub const PROBE_THREAD_NAME: &str = "tlsdoctor-probe";

/// Default time for one step (a connect, a handshake).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time for the whole probe.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(30);

/// What to probe and how long to wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOptions {
    /// `host:port` or `[v6]:port` (a bare host means port 443).
    pub target: String,
    /// The SNI to send and the name to verify; default: the target's host
    /// when it is a name (none for an address, as clients do).
    pub sni: Option<String>,
    /// Trust only the certificates in this PEM file (as curl's `--cacert`)
    /// instead of the system store.
    pub ca: Option<PathBuf>,
    /// Per step: a connect, a handshake (default 5 s).
    pub timeout: Duration,
    /// The whole probe (default 30 s). Steps that would start past it are
    /// skipped and the report says so.
    pub total_timeout: Duration,
    /// Skip the cipher-suite and group enumeration and the client
    /// simulation (`--quick`): the default client, the version matrix, the
    /// SNI check and the certificate checks only.
    pub quick: bool,
}

impl ProbeOptions {
    /// Options for `target` with the default timeouts.
    pub fn new(target: impl Into<String>) -> ProbeOptions {
        ProbeOptions {
            target: target.into(),
            sni: None,
            ca: None,
            timeout: DEFAULT_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            quick: false,
        }
    }
}

/// How far the probe is, for a progress line: `stage` just finished, as
/// the `done`-th of `total` steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub stage: &'static str,
    pub done: usize,
    pub total: usize,
}

/// Why there is no report at all. A server that fails (refuses, stalls,
/// sends garbage) is not an error: it gets a report with a root cause.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("invalid target {target:?}: {reason}")]
    InvalidTarget { target: String, reason: String },
    #[error("invalid SNI {sni:?}: {reason}")]
    InvalidSni { sni: String, reason: String },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("cannot use the CA file {}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: CertError,
    },
    #[error("timeouts must be positive (step {step:?}, total {total:?})")]
    InvalidTimeout { step: Duration, total: Duration },
    #[error("OpenSSL could not set up a client")]
    Openssl(#[from] openssl::error::ErrorStack),
    #[error("the probe failed internally: {0}")]
    Internal(String),
}

/// The probe's time: one deadline per step, within the total.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    total_deadline: Instant,
    step: Duration,
}

impl Budget {
    pub(crate) fn new(step: Duration, total: Duration) -> Budget {
        Budget {
            total_deadline: Instant::now() + total,
            step,
        }
    }

    /// The deadline of a step starting now; `None` once the total is spent.
    pub(crate) fn step_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        (now < self.total_deadline).then(|| (now + self.step).min(self.total_deadline))
    }

    /// Time a step starting now may take (zero once the total is spent).
    pub(crate) fn step_time(&self) -> Duration {
        self.step_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }
}

/// Probes `options.target` as a default client would, and says why that
/// client fails (if it does) and what else is wrong.
///
/// With `host`, and when the target is served from this host, the root
/// cause names the local process and the config line to change (the rules
/// read the listeners, server configs, logs and clock through it). With
/// `None` no host state is read: the verdict comes from the network alone.
///
/// Runs on a thread named [`PROBE_THREAD_NAME`] (see the module docs) and
/// returns within about `total_timeout` (plus host-state reading): every
/// socket operation has a deadline, and the resolver runs on a helper
/// thread that is abandoned when it does not answer in time.
pub fn probe(
    options: &ProbeOptions,
    host: Option<&mut HostState>,
) -> Result<ProbeReport, ProbeError> {
    probe_with_progress(options, host, &|_| {})
}

/// [`probe`], telling `progress` as each step ends (from the probe's
/// threads).
pub fn probe_with_progress(
    options: &ProbeOptions,
    host: Option<&mut HostState>,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<ProbeReport, ProbeError> {
    if options.timeout.is_zero() || options.total_timeout.is_zero() {
        return Err(ProbeError::InvalidTimeout {
            step: options.timeout,
            total: options.total_timeout,
        });
    }
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name(PROBE_THREAD_NAME.to_string())
            .spawn_scoped(scope, move || run::run(options, host, progress))
            .map_err(|e| {
                ProbeError::Internal(format!(
                    "cannot start the probe thread: {e}",
                    e = crate::text::Chain(&e)
                ))
            })?;
        worker
            .join()
            .map_err(|_| ProbeError::Internal("the probe thread panicked".to_string()))?
    })
}

#[cfg(test)]
mod tests;
