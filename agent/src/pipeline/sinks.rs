//! The outputs of `agent run`: the sink thread (diagnosis, then console,
//! journal, OTLP and metrics), the metrics and health endpoint, and the pod
//! watch. Outcomes reach the sink thread through a bounded queue, so a slow
//! disk or collector never stalls the reading of the ring buffer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};

use anyhow::Context as _;
use tracing::{debug, info, warn};

use crate::assembly::PlainPorts;
use crate::config::RunConfig;
use crate::health::Health;
use crate::k8s::watch::PodWatch;
use crate::outcome::{HandshakeOutcome, HandshakeResult};
use crate::queue_budget::{QUEUE_BYTES, QueueBudget};
use crate::sinks::console::Console;
use crate::sinks::journal::Journal;
use crate::sinks::metrics::Metrics;
use crate::sinks::otlp::{OtlpConfig, OtlpExporter};

use super::queue::OutcomeQueue;

/// Counters the sink thread keeps for the status file.
#[derive(Default)]
pub struct SinkCounters {
    pub journal_errors: AtomicU64,
    pub journal_records: AtomicU64,
    pub journal_rotated_out: AtomicU64,
    pub spans_dropped: AtomicU64,
    /// Tentative outcomes host state showed to be plain traffic.
    pub not_tls_confirmed: AtomicU64,
}

/// Everything downstream of assembly, started and stopped together.
pub struct Outputs {
    /// The way to the sink thread.
    pub queue: OutcomeQueue,
    pub counters: Arc<SinkCounters>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Ports host state found not to serve TLS (written by the sink thread).
    pub plain_ports: Arc<PlainPorts>,
    /// Raised when stdout's reader went away (EPIPE): the agent stops.
    pub stdout_closed: Arc<tokio::sync::Notify>,
    pub pod_watch: Option<PodWatch>,
    /// OTLP success sampling ratio (0 without an exporter).
    pub sample_ratio: f64,
    sink_thread: std::thread::JoinHandle<()>,
    stop_endpoint: tokio::sync::watch::Sender<bool>,
}

impl Outputs {
    /// Opens the journal, starts the OTLP exporter, the pod watch (in a
    /// cluster), the metrics and health endpoint and the sink thread.
    pub async fn start(config: &RunConfig, mechanism: &'static str) -> anyhow::Result<Outputs> {
        // Liveness and readiness (`/healthz`, `/readyz` beside `/metrics`).
        let health = Arc::new(Health::new());
        // An unwritable journal is reported and retried, never fatal.
        let journal = Journal::open(
            &config.journal,
            config.journal_max_mib * 1024 * 1024,
            Some(health.clone()),
        );
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
        let pod_watch = start_pod_watch(config);
        let metrics = Arc::new(Metrics::with_labels(&config.metrics.metrics_labels));
        metrics.set_capture_mechanism(mechanism);
        let (stop_endpoint, stopped) = tokio::sync::watch::channel(false);
        if let Some(addr) = config.metrics.metrics_addr {
            serve_metrics(addr, metrics.clone(), health.clone(), stopped.clone()).await?;
            if config.metrics.certificate_scan_seconds > 0 {
                tokio::spawn(crate::sinks::metrics::certificates::run_scans(
                    metrics.clone(),
                    std::time::Duration::from_secs(config.metrics.certificate_scan_seconds),
                    stopped,
                ));
            }
        }
        // Bounded in outcomes and bytes, not batches: a batch can hold
        // thousands. Each batch travels with the bytes it took.
        let (tx, rx) = sync_channel::<(Vec<HandshakeOutcome>, usize)>(1024);
        let queued = Arc::new(QueueBudget::new(config.queue, QUEUE_BYTES));
        let counters = Arc::new(SinkCounters::default());
        let plain_ports = Arc::new(PlainPorts::default());
        let stdout_closed = Arc::new(tokio::sync::Notify::new());
        let sinks = Sinks {
            journal,
            exporter,
            metrics: metrics.clone(),
            console: config.console(),
            pods: pod_watch.as_ref().map(|w| w.metadata()),
            stdout_closed: stdout_closed.clone(),
        };
        let sink_thread = {
            let counters = counters.clone();
            let plain = plain_ports.clone();
            let queued = queued.clone();
            std::thread::Builder::new()
                .name("tlsdoctor-sinks".into())
                .spawn(move || sink_loop(rx, sinks, &counters, &plain, &queued))
                .context("starting the sink thread")?
        };
        Ok(Outputs {
            queue: OutcomeQueue {
                tx: Some(tx),
                queued,
                dropped: 0,
                warned_at: None,
                ports: config.ports.clone(),
            },
            counters,
            metrics,
            health,
            plain_ports,
            stdout_closed,
            pod_watch,
            sample_ratio,
            sink_thread,
            stop_endpoint,
        })
    }

    /// Closes the queue, waits for the sink thread to write what is in it
    /// (the OTLP exporter's shutdown is bounded), stops the endpoint and
    /// the pod watch.
    pub fn stop(mut self) {
        self.queue.close();
        let _ = self.stop_endpoint.send(true);
        if self.sink_thread.join().is_err() {
            warn!("the sink thread panicked");
        }
        if let Some(watch) = self.pod_watch {
            watch.stop();
        }
    }
}

/// Pod names from the API server, in a cluster only; off it, nothing starts.
fn start_pod_watch(config: &RunConfig) -> Option<PodWatch> {
    match crate::k8s::plan_from_env(config.k8s_metadata, config.k8s_node_name.as_deref()) {
        crate::k8s::Plan::Watch { node, source } => match PodWatch::start(&node, source) {
            Ok(watch) => Some(watch),
            Err(e) => {
                warn!(error = %crate::text::Chain(&e), "pod metadata off");
                None
            }
        },
        crate::k8s::Plan::Off(reason) => {
            debug!(reason, "pod names not looked up");
            None
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `stop` turns true.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint {addr}"))?;
    info!(addr = %addr, "serving Prometheus metrics at /metrics, health at /healthz and /readyz");
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
    Ok(())
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
    counters: &SinkCounters,
    plain_ports: &PlainPorts,
    queued: &QueueBudget,
) {
    let mut diagnoser = crate::diagnosis::engine::Diagnoser::new();
    let mut journal_warned = false;
    let mut console_closed = false;
    let mut spans_dropped = 0;
    // A flood's connections are freed in a different order than they came:
    // what it leaves free between live blocks goes back every 10 s.
    let mut releaser = crate::malloc::Releaser::default();
    // Both ends of a local handshake wait for each other briefly (one root
    // cause for the pair): the loop wakes to release those held long enough.
    let mut open = true;
    while open {
        let (batch, bytes) = match rx.recv_timeout(crate::diagnosis::pairing::TICK) {
            Ok(received) => received,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => (Vec::new(), 0),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                open = false;
                (Vec::new(), 0)
            }
        };
        let n = batch.len();
        releaser.after(n);
        let mut ready = Vec::new();
        for mut outcome in batch {
            if let Some(pods) = &sinks.pods {
                pods.enrich(&mut outcome);
            }
            if !diagnoser.diagnose(&mut outcome) {
                // Plain traffic on a port that does not serve TLS.
                if let Some(port) = outcome.server.port {
                    plain_ports.mark(port);
                }
                counters.not_tls_confirmed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            ready.extend(diagnoser.pair(outcome));
        }
        ready.extend(if open {
            diagnoser.pairs_due()
        } else {
            diagnoser.pairs_drain()
        });
        for mut outcome in ready {
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
                counters.journal_errors.fetch_add(1, Ordering::Relaxed);
                sinks.metrics.inc_journal_errors();
                if !journal_warned {
                    warn!(error = %crate::text::Chain(&e), "journal write failed (counted; logged once)");
                    journal_warned = true;
                }
            }
        }
        queued.release(n, bytes);
        counters
            .journal_records
            .store(sinks.journal.appended, Ordering::Relaxed);
        counters
            .journal_rotated_out
            .store(sinks.journal.rotated_out, Ordering::Relaxed);
        if let Some(exporter) = &sinks.exporter {
            let now = exporter.dropped();
            if now > spans_dropped {
                sinks.metrics.add_spans_dropped(now - spans_dropped);
                spans_dropped = now;
                counters.spans_dropped.store(now, Ordering::Relaxed);
            }
        }
    }
    if let Some(exporter) = sinks.exporter.take() {
        // Bounded: returns within the exporter's shutdown timeout even when
        // the collector is gone.
        exporter.shutdown();
    }
}
