//! `agent run`: kernel events → assembly → diagnosis → sinks.
//!
//! One task owns the capture and the connection table (no locks on the hot
//! path); finished outcomes go through a bounded queue to a sink thread that
//! diagnoses and writes them, so a slow disk or collector never stalls the
//! reading of the ring buffer. What cannot be queued is counted and reported.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::io::unix::AsyncFd;
use tracing::{debug, info, warn};

use crate::assembly::{
    Assembler, AssemblyStats, PlainPorts, RoleCounts, SuccessPolicy, TlsPorts, WallClock,
    monotonic_ns,
};
use crate::capture::coverage::{CoverageWorker, UncoveredProcess};
use crate::capture::events::{self, KernelEvent};
use crate::capture::{Capture, LibraryReport, MechanismReport};
use crate::config::RunConfig;
use crate::health::Health;
use crate::outcome::{HandshakeOutcome, HandshakeResult};
use crate::queue_budget::{QUEUE_BYTES, QueueBudget};
use crate::sinks::console::Console;
use crate::sinks::journal::Journal;
use crate::sinks::metrics::Metrics;
use crate::sinks::otlp::{OtlpConfig, OtlpExporter};

/// Records read from the ring per wake-up before ticking again, so a flood
/// cannot starve timeouts.
const MAX_RECORDS_PER_WAKE: usize = 8192;
const TICK: Duration = Duration::from_millis(100);
/// How long records accumulate in the ring after a non-empty batch.
const BATCH_INTERVAL: Duration = Duration::from_millis(2);
const STATUS_EVERY: Duration = Duration::from_secs(5);

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

/// Counters shared with the sink thread.
#[derive(Default)]
struct Shared {
    journal_errors: AtomicU64,
    journal_records: AtomicU64,
    journal_rotated_out: AtomicU64,
    spans_dropped: AtomicU64,
    /// Tentative outcomes host state showed to be plain traffic.
    not_tls_confirmed: AtomicU64,
}

pub async fn run(config: RunConfig) -> anyhow::Result<()> {
    let options = config.capture_options()?;
    let mut capture = Capture::load(&options).context("loading the eBPF programs")?;
    let mut status = Status {
        agent_pid: std::process::id(),
        started: Some(Utc::now()),
        journal: config.journal.display().to_string(),
        capture: Some(capture.mechanism().clone()),
        ..Default::default()
    };
    // TLS files are found, opened and read on the coverage worker's thread;
    // this loop only attaches what it plans.
    let (coverage, mut coverage_actions) =
        CoverageWorker::start(Duration::from_secs(config.rescan_seconds.max(1)))
            .context("starting the coverage worker")?;
    CoverageWorker::wait_first_scan(&mut coverage_actions, &mut capture).await;
    let first = coverage.status();
    info!(
        covered = first.covered_processes,
        uncovered = first.uncovered.len(),
        "process coverage"
    );

    // Liveness and readiness (`/healthz`, `/readyz` beside `/metrics`).
    let health = Arc::new(Health::new());
    // An unwritable journal is reported and retried, never fatal.
    let journal = Journal::open(
        &config.journal,
        config.journal_max_mib * 1024 * 1024,
        Some(health.clone()),
    );
    let shared = Arc::new(Shared::default());
    let mut sample_ratio = 0.0;
    let exporter = match OtlpConfig::from_env_and_flags(config.otlp.clone())? {
        Some(otlp) => {
            sample_ratio = otlp.sample_success_ratio;
            let exporter = OtlpExporter::new(otlp).context("starting the OTLP exporter")?;
            info!(
                endpoint = exporter.endpoint(),
                "exporting failures over OTLP"
            );
            Some(exporter)
        }
        None => None,
    };
    // Pod names from the API server, in a cluster only; off it, nothing starts.
    let pod_watch =
        match crate::k8s::plan_from_env(config.k8s_metadata, config.k8s_node_name.as_deref()) {
            crate::k8s::Plan::Watch { node, source } => {
                match crate::k8s::watch::PodWatch::start(&node, source) {
                    Ok(watch) => Some(watch),
                    Err(e) => {
                        warn!(error = %crate::text::Chain(&e), "pod metadata off");
                        None
                    }
                }
            }
            crate::k8s::Plan::Off(reason) => {
                debug!(reason, "pod names not looked up");
                None
            }
        };
    let metrics = Arc::new(Metrics::with_labels(&config.metrics.metrics_labels));
    metrics.set_capture_mechanism(capture.mechanism().mechanism.as_str());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = config.metrics.metrics_addr {
        let metrics = metrics.clone();
        let health = health.clone();
        let mut stop = stop_rx.clone();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics endpoint {addr}"))?;
        info!(addr = %addr, "serving Prometheus metrics at /metrics, health at /healthz and /readyz");
        if config.metrics.certificate_scan_seconds > 0 {
            tokio::spawn(crate::sinks::metrics::certificates::run_scans(
                metrics.clone(),
                Duration::from_secs(config.metrics.certificate_scan_seconds),
                stop_rx.clone(),
            ));
        }
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::sinks::metrics::serve_listener_with_health(
                metrics,
                Some(health),
                listener,
                stopped,
            )
            .await
            {
                warn!(error = %crate::text::Chain(&e), "metrics endpoint stopped");
            }
        });
    }
    // Bounded in outcomes and bytes, not batches: a batch can hold
    // thousands. Each batch travels with the bytes it took.
    let (tx, rx) = sync_channel::<(Vec<HandshakeOutcome>, usize)>(1024);
    let queued = Arc::new(QueueBudget::new(config.queue, QUEUE_BYTES));
    let plain_ports = Arc::new(PlainPorts::default());
    let stdout_closed = Arc::new(tokio::sync::Notify::new());
    let sink = {
        let shared = shared.clone();
        let plain = plain_ports.clone();
        let queued_by_sink = queued.clone();
        let sinks = Sinks {
            journal,
            exporter,
            metrics: metrics.clone(),
            console: config.console(),
            pods: pod_watch.as_ref().map(|w| w.metadata()),
            stdout_closed: stdout_closed.clone(),
        };
        std::thread::Builder::new()
            .name("tlsdoctor-sinks".into())
            .spawn(move || sink_loop(rx, sinks, &shared, &plain, &queued_by_sink))
            .context("starting the sink thread")?
    };

    let ring = capture.take_events()?;
    // SAFETY: the ring buffer owns its map fd for the AsyncFd's lifetime.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("polling the ring buffer: {e}"))?;

    let mut tls_ports = TlsPorts::new(config.tls_ports.iter().copied());
    for port in crate::diagnosis::host::configured_tls_ports() {
        tls_ports.add(port);
    }
    let mut assembler = Assembler::new(config.assembly(), tls_ports, plain_ports.clone());
    assembler.set_success_policy(success_policy(config.show_success, sample_ratio));
    let mut successes_reported = RoleCounts::default();
    let mut queue = OutcomeQueue {
        tx: Some(tx),
        queued,
        dropped: 0,
        warned_at: None,
        ports: config.ports.clone(),
    };
    let mut decode_errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut lost_reported = 0u64;

    let mut tick = tokio::time::interval(TICK);
    let mut rescan = tokio::time::interval(Duration::from_secs(config.rescan_seconds.max(1)));
    rescan.tick().await;
    let mut status_timer = tokio::time::interval(STATUS_EVERY);
    let deadline = config
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // Created once: re-creating timers and signal futures on every pass of a
    // busy loop costs more than the events it handles.
    let until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_deadline);
    // After a batch, the next one is collected for a moment instead of
    // waking on every record: under load wake-ups stay bounded, and the
    // first event after a quiet spell is still handled at once.
    let mut collect = false;
    // Losses seen so far (ring buffer full, outcome queue full): a rise is
    // reported by /readyz as a warning for a while.
    let mut losses_seen = 0u64;
    health.set_probed_libraries(probed_libraries(&capture));
    health.heartbeat();
    health.set_attached(true);
    info!(journal = %config.journal.display(), "capturing TLS handshakes");

    loop {
        if collect {
            tokio::time::sleep(BATCH_INTERVAL).await;
        }
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("ring buffer")?;
                let clock = WallClock::now();
                let mut out = Vec::new();
                let mut n = 0;
                while let Some(record) = guard.get_inner_mut().next() {
                    match events::decode(&record) {
                        Ok(event) => {
                            tracing::trace!(?event, "kernel event");
                            handle_side_effects(&event, &coverage);
                            assembler.on_event(&event, &clock, &mut out);
                        }
                        Err(e) => {
                            let count = decode_errors.entry(crate::text::Chain(&e).to_string()).or_default();
                            if *count == 0 {
                                warn!(error = %crate::text::Chain(&e), "undecodable kernel record (counted; logged once)");
                            }
                            *count += 1;
                        }
                    }
                    n += 1;
                    if n >= MAX_RECORDS_PER_WAKE {
                        break;
                    }
                }
                if n < MAX_RECORDS_PER_WAKE {
                    guard.clear_ready();
                }
                health.ring_read(n < MAX_RECORDS_PER_WAKE);
                collect = n > 0;
                queue.send(out);
            }
            _ = tick.tick() => {
                health.heartbeat();
                let mut out = Vec::new();
                let untracked = assembler.tick(monotonic_ns(), &WallClock::now(), &mut out);
                if !untracked.is_empty()
                    && let Err(e) = capture.untrack(&untracked)
                {
                    debug!(error = %crate::text::Chain(&e), "untracking idle sockets");
                }
                queue.send(out);
            }
            Some(action) = coverage_actions.recv() => capture.apply_coverage(action),
            _ = rescan.tick() => {
                for port in crate::diagnosis::host::configured_tls_ports() {
                    assembler.tls_ports_mut().add(port);
                }
            }
            _ = status_timer.tick() => {
                status.updated = Some(Utc::now());
                status.kernel = capture
                    .counters()
                    .map(|c| c.into_iter().map(|(k, v)| (k.name(), v)).collect())
                    .unwrap_or_default();
                for (name, value) in &status.kernel {
                    metrics.set_kernel_counter(name, *value);
                }
                status.spans_dropped = shared.spans_dropped.load(Ordering::Relaxed);
                status.assembly = assembler.stats().clone();
                let counted = status.assembly.successes_counted_only;
                metrics.add_successes("client", counted.client - successes_reported.client);
                metrics.add_successes("server", counted.server - successes_reported.server);
                successes_reported = counted;
                status.dropped_outcomes = queue.dropped;
                metrics.set_outcomes_dropped(queue.dropped);
                status.decode_errors = decode_errors.clone();
                status.journal_errors = shared.journal_errors.load(Ordering::Relaxed);
                status.journal_records = shared.journal_records.load(Ordering::Relaxed);
                status.journal_rotated_out = shared.journal_rotated_out.load(Ordering::Relaxed);
                status.plain_connections = shared.not_tls_confirmed.load(Ordering::Relaxed);
                status.open_connections = assembler.open_connections();
                status.libraries = capture.libraries().cloned().collect();
                let covered = coverage.status();
                status.covered_processes = covered.covered_processes;
                status.coverage = covered.counts;
                status.uncovered = covered.uncovered;
                status.k8s = pod_watch.as_ref().map(|w| w.metadata().status());
                status.discovery = crate::diagnosis::discovery::ConfigDiscovery::shared().status();
                write_status(&config, &status);
                let lost = status.kernel.get("ringbuf_full").copied().unwrap_or(0);
                let losses = lost.saturating_add(queue.dropped);
                if losses > losses_seen {
                    health.lost_events();
                }
                losses_seen = losses;
                health.set_probed_libraries(probed_libraries(&capture));
                if lost > lost_reported {
                    warn!(
                        lost_total = lost,
                        since_last = lost - lost_reported,
                        "kernel events lost: ring buffer full (raise --ringbuf-mib)"
                    );
                    lost_reported = lost;
                }
            }
            _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
            _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
            _ = &mut until_deadline => { info!("duration reached: stopping"); break; }
            _ = stdout_closed.notified() => { info!("stdout closed: stopping"); break; }
        }
    }

    health.set_stopping();
    debug!("draining open connections");
    let mut out = Vec::new();
    assembler.drain(&WallClock::now(), &mut out);
    queue.send(out);
    drop(queue.tx.take());
    let _ = stop_tx.send(true);
    if sink.join().is_err() {
        warn!("the sink thread panicked");
    }
    if let Some(watch) = pod_watch {
        watch.stop();
    }
    status.updated = Some(Utc::now());
    status.assembly = assembler.stats().clone();
    status.dropped_outcomes = queue.dropped;
    status.journal_records = shared.journal_records.load(Ordering::Relaxed);
    status.journal_rotated_out = shared.journal_rotated_out.load(Ordering::Relaxed);
    write_status(&config, &status);
    drop(coverage);
    // Dropping the capture detaches every program and frees the maps.
    let detach_started = std::time::Instant::now();
    debug!("sinks flushed; detaching");
    drop(capture);
    debug!(
        elapsed_ms = detach_started.elapsed().as_millis() as u64,
        "programs detached"
    );
    info!("detached");
    Ok(())
}

/// Which successes become outcomes: all with `--show-success`, else those
/// the OTLP exporter samples (decided from the ClientHello random exactly as
/// the exporter decides, so both ends of a handshake agree).
fn success_policy(show_success: bool, sample_ratio: f64) -> SuccessPolicy {
    let sample: Option<crate::assembly::SampleSuccess> = (sample_ratio > 0.0).then(|| {
        Arc::new(move |random: &str, role| {
            crate::sinks::otlp::SpanIds::from_client_random(random, role)
                .is_some_and(|ids| crate::sinks::otlp::sample_success(ids.trace_id, sample_ratio))
        }) as crate::assembly::SampleSuccess
    });
    SuccessPolicy {
        all: show_success,
        sample,
    }
}

/// OpenSSL libraries with at least one uprobe attached.
fn probed_libraries(capture: &Capture) -> usize {
    capture
        .libraries()
        .filter(|l| !l.attached.is_empty())
        .count()
}

/// The bounded queue to the sink thread.
struct OutcomeQueue {
    tx: Option<SyncSender<(Vec<HandshakeOutcome>, usize)>>,
    /// Outcomes (at most `--queue`) and bytes sent and not yet handled by
    /// the sink thread.
    queued: Arc<QueueBudget>,
    dropped: u64,
    warned_at: Option<std::time::Instant>,
    /// Only these server ports (`--port`), when set.
    ports: Vec<u16>,
}

impl OutcomeQueue {
    fn send(&mut self, mut batch: Vec<HandshakeOutcome>) {
        if !self.ports.is_empty() {
            batch.retain(|o| o.server.port.is_some_and(|p| self.ports.contains(&p)));
        }
        if batch.is_empty() {
            return;
        }
        if self.tx.is_none() {
            return;
        }
        // Keep what fits; the rest is counted.
        let (bytes, over) = self.queued.admit(&mut batch);
        if over > 0 {
            self.note_dropped(over as u64);
        }
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        let Some(tx) = &self.tx else { return };
        let sent = tx.try_send((batch, bytes));
        if let Err(TrySendError::Full((batch, _)) | TrySendError::Disconnected((batch, _))) = sent {
            self.queued.release(n, bytes);
            self.note_dropped(batch.len() as u64);
        }
    }

    fn note_dropped(&mut self, n: u64) {
        self.dropped += n;
        let quiet = self
            .warned_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10));
        if !quiet {
            warn!(
                dropped_total = self.dropped,
                "outcome queue full: outcomes dropped (counted)"
            );
            self.warned_at = Some(std::time::Instant::now());
        }
    }
}

/// A new process is checked for TLS code after its exec. (An exited
/// process's sockets are handed back by the assembler's next tick, which
/// keeps them by process: no walk of the kernel map.)
fn handle_side_effects(event: &KernelEvent, coverage: &CoverageWorker) {
    if let KernelEvent::Exec(ev) = event {
        coverage.exec(ev.header.tgid);
    }
}

fn write_status(config: &RunConfig, status: &Status) {
    let path = config.status_path();
    let tmp = path.with_extension("json.tmp");
    let result = serde_json::to_vec_pretty(status)
        .map_err(std::io::Error::other)
        .and_then(|bytes| crate::sinks::journal::write_private(&tmp, &bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = result {
        debug!(path = %path.display(), error = %crate::text::Chain(&e), "writing the status file");
    }
}

/// What the sink thread writes to.
struct Sinks {
    journal: Journal,
    exporter: Option<OtlpExporter>,
    metrics: Arc<Metrics>,
    /// What is printed on stdout (`--console`, the watch's filters).
    console: Console,
    /// Pod names by UID and container id (in a Kubernetes cluster).
    pods: Option<Arc<crate::k8s::PodMetadata>>,
    /// Raised when stdout's reader went away (EPIPE): the agent stops.
    stdout_closed: Arc<tokio::sync::Notify>,
}

/// The sink thread: diagnosis, then console, journal, OTLP and metrics.
fn sink_loop(
    rx: Receiver<(Vec<HandshakeOutcome>, usize)>,
    mut sinks: Sinks,
    shared: &Shared,
    plain_ports: &PlainPorts,
    queued: &QueueBudget,
) {
    let mut diagnoser = crate::diagnosis::engine::Diagnoser::new();
    let mut journal_warned = false;
    let mut console_closed = false;
    let mut spans_dropped = 0;
    while let Ok((batch, bytes)) = rx.recv() {
        let n = batch.len();
        for mut outcome in batch {
            if let Some(pods) = &sinks.pods {
                pods.enrich(&mut outcome);
            }
            if !diagnoser.diagnose(&mut outcome) {
                // Plain traffic on a port that does not serve TLS.
                if let Some(port) = outcome.server.port {
                    plain_ports.mark(port);
                }
                shared.not_tls_confirmed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            sinks.metrics.record_outcome(&outcome);
            if let Some(exporter) = &sinks.exporter {
                // Failures were parsed for diagnosis; a sampled success
                // carries its certificate too.
                if exporter.wants(&outcome) {
                    diagnoser.parse_certificates(&mut outcome);
                    exporter.export(&outcome);
                }
            }
            if !console_closed
                && sinks.console.wants(&outcome)
                && let Err(e) = sinks.console.print(&outcome)
            {
                // `agent run | head`: the reader left. Stop as Unix tools
                // do, through the same graceful path as SIGTERM.
                console_closed = true;
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    sinks.stdout_closed.notify_one();
                } else {
                    warn!(error = %crate::text::Chain(&e), "console output failed; the console is off");
                }
            }
            if outcome.result == HandshakeResult::Failure
                && let Err(e) = sinks.journal.append(&outcome)
            {
                shared.journal_errors.fetch_add(1, Ordering::Relaxed);
                sinks.metrics.inc_journal_errors();
                if !journal_warned {
                    warn!(error = %crate::text::Chain(&e), "journal write failed (counted; logged once)");
                    journal_warned = true;
                }
            }
        }
        queued.release(n, bytes);
        shared
            .journal_records
            .store(sinks.journal.appended, Ordering::Relaxed);
        shared
            .journal_rotated_out
            .store(sinks.journal.rotated_out, Ordering::Relaxed);
        if let Some(exporter) = &sinks.exporter {
            let now = exporter.dropped();
            if now > spans_dropped {
                sinks.metrics.add_spans_dropped(now - spans_dropped);
                spans_dropped = now;
                shared.spans_dropped.store(now, Ordering::Relaxed);
            }
        }
    }
    if let Some(exporter) = sinks.exporter.take() {
        // Bounded: returns within the exporter's shutdown timeout even when
        // the collector is gone.
        exporter.shutdown();
    }
}
