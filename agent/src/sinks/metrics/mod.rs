//! The agent's metrics, served in the Prometheus/OpenMetrics text format
//! on `--metrics-addr` (e.g. `127.0.0.1:9464`), path `/metrics`. Names
//! follow the Prometheus naming guide (base units, `_total` counters,
//! `_timestamp_seconds`).
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `tlsdoctor_handshakes_total` | `role`, `result`, `cause` (+ `server_port`, `k8s_namespace` with `--metrics-labels`, failures only) | outcomes; `cause` is the catalogue id of a failure, `none` for a success |
//! | `tlsdoctor_handshake_duration_seconds` | `role`, `result` | histogram, connect/accept to the outcome, of the outcomes *built*: every failure, and only the successes that are built (`--show-success`, `--sample-success`), since the others are counted, not timed |
//! | `tlsdoctor_certificate_not_after_timestamp_seconds` | `file`, `subject`, `server_name`, `port` | end of validity (Unix seconds) of every certificate a running local server's TLS config serves ([`certificates`]) |
//! | `tlsdoctor_certificate_files_unreadable` | | certificate files named by those configs that could not be read at the last scan |
//! | `tlsdoctor_kernel_events_lost_total` | `reason` | events the eBPF side could not hand over (ring buffer full, ...) |
//! | `tlsdoctor_outcomes_dropped_total` | | outcomes dropped because the sink queue was full |
//! | `tlsdoctor_otlp_spans_dropped_total` | | spans the OTLP sink lost (queue full, export failed) |
//! | `tlsdoctor_journal_write_errors_total` | | failed journal writes (the journal unwritable included) |
//! | `tlsdoctor_metrics_connections_refused_total` | | scrapes refused: [`server::MAX_CONNECTIONS`] already open |
//! | `tlsdoctor_build_info` | `version` | always 1 |
//! | `tlsdoctor_capture_mechanism` | `mechanism` | 1 for the mechanism that captures handshake bytes (`socket` or `syscalls`) |
//!
//! The exposition is written by `prometheus-client`, not by hand. The same
//! server answers the health probes (`/healthz`, `/readyz`; see
//! [`crate::health`]) when it is given the agent's [`Health`](crate::health::Health).

pub mod certificates;
pub mod server;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabel as _, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::outcome::HandshakeOutcome;

pub use server::{serve, serve_listener, serve_listener_with_health};

/// The path the metrics are served on.
pub const METRICS_PATH: &str = "/metrics";

/// Content type of [`Metrics::encode`]'s output (OpenMetrics 1.0, which
/// Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Distinct values an opt-in label takes before new ones are counted as
/// `other`: a port scan or a namespace churn cannot grow the series
/// without bound.
pub const MAX_LABEL_VALUES: usize = 64;

/// Upper bounds (seconds) of the handshake duration buckets: 1 ms to 30 s.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Command-line flags of the metrics endpoint, flattened into `agent run`.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args, Serialize)]
pub struct MetricsFlags {
    /// Serve Prometheus metrics at /metrics and the health probes at
    /// /healthz and /readyz on this address, e.g. 127.0.0.1:9464 (a bare
    /// IPv6 address before the port is accepted: `$(HOST_IP):9464`).
    /// Bind the node's own address or loopback rather than 0.0.0.0: the
    /// endpoint has no authentication. Default: no endpoint.
    #[arg(long = "metrics-addr", env = "TLSDOCTOR_METRICS_ADDR", value_name = "ADDR:PORT", value_parser = parse_listen_addr)]
    pub metrics_addr: Option<SocketAddr>,

    /// Extra labels on the failure counter, each bounded to
    /// 64 values (then `other`): `server_port`, `k8s_namespace`.
    #[arg(
        long = "metrics-labels",
        env = "TLSDOCTOR_METRICS_LABELS",
        value_enum,
        value_delimiter = ','
    )]
    pub metrics_labels: Vec<ExtraLabel>,

    /// Re-read the local servers' TLS configs and certificates for the
    /// certificate expiry metric this often (seconds; 0: never). Runs off
    /// the capture loop.
    #[arg(
        long = "certificate-scan-seconds",
        env = "TLSDOCTOR_CERTIFICATE_SCAN_SECONDS",
        default_value_t = 300
    )]
    pub certificate_scan_seconds: u64,
}

/// An opt-in label of `tlsdoctor_handshakes_total` (failures).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
pub enum ExtraLabel {
    /// The server port of the handshake.
    #[value(name = "server_port")]
    #[serde(rename = "server_port")]
    ServerPort,
    /// The Kubernetes namespace of the observed process.
    #[value(name = "k8s_namespace")]
    #[serde(rename = "k8s_namespace")]
    K8sNamespace,
}

/// `ADDR:PORT`, `[V6]:PORT`, or a bare IPv6 address then `:PORT` (what
/// `$(HOST_IP):9464` expands to on an IPv6 node).
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (ip, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: expected ADDR:PORT, e.g. 127.0.0.1:9464"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{s:?}: {ip:?} is not an IP address"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{s:?}: {port:?} is not a port"))?;
    Ok(SocketAddr::new(ip, port))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct HandshakeLabels {
    role: &'static str,
    result: &'static str,
    cause: &'static str,
    /// Only with `--metrics-labels`, and only on failures.
    server_port: Option<String>,
    k8s_namespace: Option<String>,
}

impl EncodeLabelSet for HandshakeLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("role", self.role).encode(encoder.encode_label())?;
        ("result", self.result).encode(encoder.encode_label())?;
        ("cause", self.cause).encode(encoder.encode_label())?;
        if let Some(port) = &self.server_port {
            ("server_port", port.as_str()).encode(encoder.encode_label())?;
        }
        if let Some(ns) = &self.k8s_namespace {
            ("k8s_namespace", ns.as_str()).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    role: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KernelLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MechanismLabels {
    mechanism: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// One certificate of a local server's config (see [`certificates`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct CertificateLabels {
    /// The file, as the server names it.
    pub file: String,
    pub subject: String,
    /// The block's first server name (`""` when it has none).
    pub server_name: String,
    pub port: u16,
}

/// Distinct values seen for one opt-in label, up to [`MAX_LABEL_VALUES`].
#[derive(Debug, Default)]
struct BoundedValues(Mutex<HashSet<String>>);

impl BoundedValues {
    /// `value` while fewer than the cap are known (or it is one of them),
    /// else `other`.
    fn admit(&self, value: String) -> String {
        let mut seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(&value) || seen.len() < MAX_LABEL_VALUES {
            seen.insert(value.clone());
            value
        } else {
            "other".to_string()
        }
    }
}

/// The registry of the agent's metrics. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    handshakes: Family<HandshakeLabels, Counter>,
    durations: Family<DurationLabels, Histogram, fn() -> Histogram>,
    extra_labels: Vec<ExtraLabel>,
    ports_seen: BoundedValues,
    namespaces_seen: BoundedValues,
    certificates: Family<CertificateLabels, Gauge>,
    certificate_files_unreadable: Gauge,
    kernel_lost: Family<KernelLabels, Counter>,
    /// Serializes `set_kernel_counter` so two callers cannot both add the
    /// same delta.
    kernel_lock: Mutex<()>,
    outcomes_dropped: Counter,
    spans_dropped: Counter,
    journal_errors: Counter,
    connections_refused: Counter,
    capture_mechanism: Family<MechanismLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_labels(&[])
    }

    /// The registry, with `extra` labels on failures (`--metrics-labels`).
    pub fn with_labels(extra: &[ExtraLabel]) -> Self {
        let mut registry = Registry::with_prefix("tlsdoctor");
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "handshakes",
            "TLS handshake outcomes seen, by role, result and root cause",
            handshakes.clone(),
        );
        let durations =
            Family::<DurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register_with_unit(
            "handshake_duration",
            "Connect or accept to the handshake's outcome, of the outcomes built: every failure, successes only when built (--show-success, --sample-success)",
            prometheus_client::registry::Unit::Seconds,
            durations.clone(),
        );
        let certificates = Family::<CertificateLabels, Gauge>::default();
        registry.register_with_unit(
            "certificate_not_after_timestamp",
            "End of validity (Unix time) of each certificate a running local server's TLS config serves",
            prometheus_client::registry::Unit::Seconds,
            certificates.clone(),
        );
        let certificate_files_unreadable = Gauge::default();
        registry.register(
            "certificate_files_unreadable",
            "Certificate files named by local TLS configs that could not be read at the last scan",
            certificate_files_unreadable.clone(),
        );
        let kernel_lost = Family::<KernelLabels, Counter>::default();
        registry.register(
            "kernel_events_lost",
            "Events the eBPF programs could not hand to user space, by reason",
            kernel_lost.clone(),
        );
        let outcomes_dropped = Counter::default();
        registry.register(
            "outcomes_dropped",
            "Outcomes dropped because the queue to diagnosis and the sinks was full",
            outcomes_dropped.clone(),
        );
        let spans_dropped = Counter::default();
        registry.register(
            "otlp_spans_dropped",
            "Spans the OTLP sink dropped (queue full or export failed)",
            spans_dropped.clone(),
        );
        let journal_errors = Counter::default();
        registry.register(
            "journal_write_errors",
            "Failed writes to the outcome journal",
            journal_errors.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "metrics_connections_refused",
            "Connections to this endpoint closed unanswered: too many were open",
            connections_refused.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The agent's version", build_info);
        let capture_mechanism = Family::<MechanismLabels, Gauge>::default();
        registry.register(
            "capture_mechanism",
            "1 for the mechanism that captures handshake bytes (socket or syscalls)",
            capture_mechanism.clone(),
        );
        Metrics {
            registry,
            handshakes,
            durations,
            extra_labels: extra.to_vec(),
            ports_seen: BoundedValues::default(),
            namespaces_seen: BoundedValues::default(),
            certificates,
            certificate_files_unreadable,
            kernel_lost,
            kernel_lock: Mutex::new(()),
            outcomes_dropped,
            spans_dropped,
            journal_errors,
            connections_refused,
            capture_mechanism,
        }
    }

    /// Names the capture mechanism that runs.
    pub fn set_capture_mechanism(&self, mechanism: &'static str) {
        self.capture_mechanism.clear();
        self.capture_mechanism
            .get_or_create(&MechanismLabels { mechanism })
            .set(1);
    }

    /// Counts one outcome and times it.
    pub fn record_outcome(&self, outcome: &HandshakeOutcome) {
        let failure = outcome.is_failure();
        let result = if failure { "failure" } else { "success" };
        let extra = |label: ExtraLabel| failure && self.extra_labels.contains(&label);
        let server_port = extra(ExtraLabel::ServerPort).then(|| {
            self.ports_seen.admit(
                outcome
                    .server
                    .port
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            )
        });
        let k8s_namespace = extra(ExtraLabel::K8sNamespace).then(|| {
            let ns = outcome
                .local()
                .k8s
                .as_ref()
                .and_then(|k| k.namespace.clone())
                .unwrap_or_default();
            // No namespace (a host process) is not a value to bound.
            if ns.is_empty() {
                ns
            } else {
                self.namespaces_seen.admit(ns)
            }
        });
        self.handshakes
            .get_or_create(&HandshakeLabels {
                role: outcome.role.as_str(),
                result,
                cause: if failure { outcome.cause.id() } else { "none" },
                server_port,
                k8s_namespace,
            })
            .inc();
        if let Ok(d) = (outcome.end_time - outcome.time).to_std() {
            self.durations
                .get_or_create(&DurationLabels {
                    role: outcome.role.as_str(),
                    result,
                })
                .observe(d.as_secs_f64());
        }
    }

    /// Counts `n` successful handshakes of `role` (`client`/`server`) that
    /// were only counted, never built into outcomes (so never timed).
    pub fn add_successes(&self, role: &'static str, n: u64) {
        if n > 0 {
            self.handshakes
                .get_or_create(&HandshakeLabels {
                    role,
                    result: "success",
                    cause: "none",
                    server_port: None,
                    k8s_namespace: None,
                })
                .inc_by(n);
        }
    }

    /// Replaces the certificate expiry series with `served` (one scan's
    /// result), and the count of files that could not be read.
    pub fn set_certificates(&self, served: &[(CertificateLabels, i64)], unreadable: usize) {
        self.certificates.clear();
        for (labels, not_after) in served {
            self.certificates.get_or_create(labels).set(*not_after);
        }
        self.certificate_files_unreadable
            .set(i64::try_from(unreadable).unwrap_or(i64::MAX));
    }

    /// Sets the kernel counter `name` (e.g. `ringbuf_full`) to the running
    /// total the eBPF side reports. Prometheus counters only go up: a total
    /// lower than the last one (the programs were reloaded) is taken as a
    /// reset and added whole.
    pub fn set_kernel_counter(&self, name: &str, value: u64) {
        let _guard = self
            .kernel_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let counter = self.kernel_lost.get_or_create(&KernelLabels {
            reason: name.to_string(),
        });
        let current = counter.get();
        let delta = if value >= current {
            value - current
        } else {
            value
        };
        if delta > 0 {
            counter.inc_by(delta);
        }
    }

    /// Sets the dropped-outcome counter to the running total `value`.
    pub fn set_outcomes_dropped(&self, value: u64) {
        let current = self.outcomes_dropped.get();
        if value > current {
            self.outcomes_dropped.inc_by(value - current);
        }
    }

    /// Adds `n` dropped spans (the increase of
    /// [`OtlpExporter::dropped`](super::otlp::OtlpExporter::dropped) since the
    /// last call).
    pub fn add_spans_dropped(&self, n: u64) {
        if n > 0 {
            self.spans_dropped.inc_by(n);
        }
    }

    pub fn inc_journal_errors(&self) {
        self.journal_errors.inc();
    }

    fn inc_connections_refused(&self) {
        self.connections_refused.inc();
    }

    /// The exposition text (OpenMetrics; see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error would only mean a
        // broken metric, and a partial page still beats no page.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %crate::text::Chain(&e), "encoding metrics");
        }
        out
    }
}
