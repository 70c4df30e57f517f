//! `agent run` settings. Each is a flag with an environment variable of the
//! same meaning (`TLSDOCTOR_*`; the OTLP ones fall back to the standard
//! `OTEL_*` variables), and may be set in a config file (`--config`, TOML
//! or YAML; [`file`]). Precedence: flag > environment > file > default.
//! Every default is documented on its field; `agent run --print-config`
//! shows the effective values and where each came from ([`print`]).
//! docs/configuration.md lists them all.

pub mod file;
pub mod print;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::assembly::AssemblyConfig;
use crate::capture::CaptureOptions;
use crate::sinks::console::{Console, ConsoleFilter, ConsoleMode};

#[derive(Args, Clone, Debug, Serialize)]
pub struct RunConfig {
    /// Journal file: every failure as one JSON line.
    #[arg(long, env = "TLSDOCTOR_JOURNAL", default_value = crate::sinks::journal::DEFAULT_PATH)]
    pub journal: PathBuf,

    /// Rotate the journal past this many MiB (one old generation is kept).
    #[arg(long, env = "TLSDOCTOR_JOURNAL_MAX_MIB", default_value_t = 100)]
    pub journal_max_mib: u64,

    /// Status file (coverage, counters), rewritten every few seconds; default:
    /// `status.json` beside the journal.
    #[arg(long, env = "TLSDOCTOR_STATUS")]
    pub status: Option<PathBuf>,

    /// Print successful handshakes too (they are never journaled).
    #[arg(long, env = "TLSDOCTOR_SHOW_SUCCESS")]
    pub show_success: bool,

    /// What is printed on stdout per outcome: `text` (one line for
    /// people), `json` (one JSON object per line, the journal's schema) or
    /// `off`.
    #[arg(long, env = "TLSDOCTOR_CONSOLE", value_enum, default_value_t = ConsoleMode::Text)]
    pub console: ConsoleMode,

    /// Which outcomes the console shows (set by `agent diagnose --watch`'s
    /// filters; everything for `agent run`).
    #[arg(skip)]
    #[serde(skip)]
    pub console_filter: ConsoleFilter,

    /// A handshake that makes no progress for this many seconds is reported stalled.
    #[arg(long, env = "TLSDOCTOR_STALL_SECONDS", default_value_t = 10)]
    pub stall_seconds: u64,

    /// Extra ports that serve TLS (beyond the well-known ones and those the
    /// local servers' configs declare), for refused connections.
    #[arg(long = "tls-port", env = "TLSDOCTOR_TLS_PORTS", value_delimiter = ',')]
    pub tls_ports: Vec<u16>,

    /// Kernel ring buffer, MiB (a power of two).
    #[arg(long, env = "TLSDOCTOR_RINGBUF_MIB", default_value_t = 4)]
    pub ringbuf_mib: u32,

    /// Outcomes queued for diagnosis and export before new ones are dropped
    /// (and counted).
    #[arg(long, env = "TLSDOCTOR_QUEUE", default_value_t = 16384)]
    pub queue: usize,

    /// Rescan all processes for new TLS library files this often (seconds);
    /// new processes are also checked when they exec.
    #[arg(long, env = "TLSDOCTOR_RESCAN_SECONDS", default_value_t = 30)]
    pub rescan_seconds: u64,

    /// eBPF-side log level (aya-log): off, error, warn, info, debug, trace.
    #[arg(long, env = "TLSDOCTOR_EBPF_LOG", default_value = "off")]
    pub ebpf_log: String,

    /// How handshake bytes are captured: `socket` (hooks on socket I/O only,
    /// Linux 6.3+) or `syscalls` (the read/write syscall tracepoints, which
    /// every process's I/O pays for). Default: `socket` where the kernel
    /// allows it, else `syscalls`; status.json says which runs and why.
    #[arg(long = "capture", env = "TLSDOCTOR_CAPTURE", value_enum)]
    pub capture: Option<crate::capture::CaptureMechanism>,

    /// Only report handshakes whose server port is one of these (default: all).
    #[arg(long = "port", env = "TLSDOCTOR_PORTS", value_delimiter = ',')]
    pub ports: Vec<u16>,

    /// Stop after this many seconds (tests, demos); default: run until signalled.
    #[arg(long, env = "TLSDOCTOR_DURATION")]
    pub duration: Option<u64>,

    /// Pod and namespace names from the Kubernetes API server: `auto` (only
    /// when KUBERNETES_SERVICE_HOST is set, with the pod's service account),
    /// `on` (kubeconfig, else the service account) or `off`. Container ids
    /// and pod UIDs come from cgroup paths in every mode.
    #[arg(long, env = "TLSDOCTOR_K8S_METADATA", value_enum, default_value_t = crate::k8s::Mode::Auto)]
    pub k8s_metadata: crate::k8s::Mode,

    /// This node's name (the downward API's `spec.nodeName`; `NODE_NAME` is
    /// read too): only this node's pods are watched.
    #[arg(long, env = "K8S_NODE_NAME")]
    pub k8s_node_name: Option<String>,

    /// OTLP export (off unless an endpoint is set by flag or OTEL_* variable).
    /// `--print-config` shows the resolved settings, header values redacted.
    #[command(flatten)]
    #[serde(skip)]
    pub otlp: crate::sinks::otlp::OtlpFlags,

    /// Prometheus metrics endpoint (off by default).
    #[command(flatten)]
    #[serde(flatten)]
    pub metrics: crate::sinks::metrics::MetricsFlags,
}

impl RunConfig {
    pub fn status_path(&self) -> PathBuf {
        self.status.clone().unwrap_or_else(|| {
            self.journal
                .parent()
                .map(|d| d.join("status.json"))
                .unwrap_or_else(|| PathBuf::from("status.json"))
        })
    }

    pub fn capture_options(&self) -> anyhow::Result<CaptureOptions> {
        let bytes = self
            .ringbuf_mib
            .checked_mul(1024 * 1024)
            .filter(|b| b.is_power_of_two());
        let Some(ringbuf_bytes) = bytes else {
            anyhow::bail!(
                "--ringbuf-mib must be a power of two, got {}",
                self.ringbuf_mib
            );
        };
        let ebpf_log_level = match self.ebpf_log.as_str() {
            "off" => None,
            "error" => Some(aya_log::Level::Error),
            "warn" => Some(aya_log::Level::Warn),
            "info" => Some(aya_log::Level::Info),
            "debug" => Some(aya_log::Level::Debug),
            "trace" => Some(aya_log::Level::Trace),
            other => anyhow::bail!("--ebpf-log: unknown level {other:?}"),
        };
        // Successes are dropped in the kernel unless some are wanted: all
        // (--show-success) or a sample for OTLP. A configuration error here
        // is reported when the exporter starts.
        let sampled = crate::sinks::otlp::OtlpConfig::from_env_and_flags(self.otlp.clone())
            .ok()
            .flatten()
            .is_some_and(|otlp| otlp.sample_success_ratio > 0.0);
        Ok(CaptureOptions {
            ringbuf_bytes,
            ebpf_log_level,
            mechanism: self.capture,
            hold_successes: !self.show_success && !sampled,
        })
    }

    /// The console sink these settings ask for.
    pub fn console(&self) -> Console {
        Console::new(self.console, self.show_success, self.console_filter.clone())
    }

    pub fn assembly(&self) -> AssemblyConfig {
        AssemblyConfig {
            stall_timeout: Duration::from_secs(self.stall_seconds.max(1)),
            ..AssemblyConfig::default()
        }
    }
}
