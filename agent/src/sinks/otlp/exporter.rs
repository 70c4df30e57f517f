//! The sink itself: the bounded queue into the export thread, its
//! counters, flush and shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::sync::mpsc;

use crate::outcome::HandshakeOutcome;

use super::*;

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) exported: AtomicU64,
    pub(super) dropped_queue_full: AtomicU64,
    pub(super) dropped_export_failed: AtomicU64,
    pub(super) not_sampled: AtomicU64,
}

/// A snapshot of the exporter's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OtlpStats {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans refused because the queue was full (or the exporter closing).
    pub dropped_queue_full: u64,
    /// Spans in batches whose export failed after the exporter's retries.
    pub dropped_export_failed: u64,
    /// Successful handshakes not exported because of sampling.
    pub not_sampled: u64,
    /// Spans waiting in the queue now.
    pub queued: usize,
}

pub(super) enum Control {
    /// Export everything queued, then answer.
    Flush(std::sync::mpsc::SyncSender<()>),
    /// Export what is queued until `deadline`, shut the exporter down, stop.
    Shutdown { deadline: Instant },
}

/// The OTLP sink. See the module docs.
pub struct OtlpExporter {
    spans: mpsc::Sender<SpanData>,
    control: mpsc::UnboundedSender<Control>,
    /// Tells an export in flight about the shutdown deadline.
    stop: tokio::sync::watch::Sender<Option<Instant>>,
    pub(super) counters: Arc<Counters>,
    sample_success_ratio: f64,
    shutdown_timeout: Duration,
    endpoint: String,
    /// In a Mutex only so the exporter is `Sync` (a std Receiver is not) and
    /// can be shared by the tasks that produce outcomes.
    finished: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("endpoint", &self.endpoint)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl OtlpExporter {
    /// Starts the export thread and builds the OTLP exporter on it. Works
    /// inside or outside a tokio runtime (the export thread has its own, which
    /// tonic needs at build time); blocks only until the exporter is built,
    /// which does not connect (the first export does).
    pub fn new(config: OtlpConfig) -> Result<Self, OtlpError> {
        let build_config = config.clone();
        Self::start(config, move || build_span_exporter(&build_config))
    }

    /// [`new`](Self::new) with any span exporter (tests use fakes).
    pub(crate) fn start<E, F>(config: OtlpConfig, make_exporter: F) -> Result<Self, OtlpError>
    where
        E: SpanExporter + 'static,
        F: FnOnce() -> Result<E, OtlpError> + Send + 'static,
    {
        if !(0.0..=1.0).contains(&config.sample_success_ratio) {
            return Err(OtlpError::Config(format!(
                "success sampling ratio must be between 0 and 1, got {}",
                config.sample_success_ratio
            )));
        }
        let queue = config.max_queue_size.max(1);
        let (span_tx, span_rx) = mpsc::channel(queue);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
        let (init_tx, init_rx) = std::sync::mpsc::sync_channel::<Result<(), OtlpError>>(1);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let counters = Arc::new(Counters::default());
        let endpoint = config.endpoint_url();
        let resource = resource(&config);

        let worker_counters = Arc::clone(&counters);
        let worker_endpoint = endpoint.clone();
        let worker_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("tlsdoctor-otlp".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = init_tx.send(Err(OtlpError::Thread(format!(
                            "cannot create its tokio runtime: {e}",
                            e = crate::text::Chain(&e)
                        ))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    // tonic's lazy channel needs the runtime even to be built.
                    let mut exporter = match make_exporter() {
                        Ok(e) => e,
                        Err(e) => {
                            let _ = init_tx.send(Err(e));
                            return;
                        }
                    };
                    exporter.set_resource(&resource);
                    let _ = init_tx.send(Ok(()));
                    Worker {
                        exporter,
                        spans: span_rx,
                        control: control_rx,
                        counters: worker_counters,
                        batch: Vec::new(),
                        max_batch: worker_config.max_export_batch_size.clamp(1, queue),
                        max_queue: queue,
                        scheduled_delay: worker_config.scheduled_delay,
                        export_timeout: worker_config.timeout,
                        shutdown_timeout: worker_config.shutdown_timeout,
                        stop: stop_rx,
                        stop_open: true,
                        health: ExportHealth::default(),
                        endpoint: worker_endpoint,
                    }
                    .run()
                    .await;
                });
                let _ = done_tx.send(());
            })
            .map_err(|e| OtlpError::Thread(crate::text::Chain(&e).to_string()))?;

        match init_rx.recv() {
            Ok(Ok(())) => Ok(OtlpExporter {
                spans: span_tx,
                control: control_tx,
                stop: stop_tx,
                counters,
                sample_success_ratio: config.sample_success_ratio,
                shutdown_timeout: config.shutdown_timeout,
                endpoint,
                finished: std::sync::Mutex::new(done_rx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(OtlpError::Thread(
                    "the export thread stopped while starting".into(),
                ))
            }
        }
    }

    /// Queues the span of `outcome` for export, unless it is a success that
    /// sampling leaves out. Never blocks: with the queue full the span is
    /// dropped and counted.
    /// Whether [`OtlpExporter::export`] sends this outcome: every failure,
    /// and the successes sampling keeps.
    pub fn wants(&self, outcome: &HandshakeOutcome) -> bool {
        outcome.is_failure()
            || sample_success(
                SpanIds::for_outcome(outcome).trace_id,
                self.sample_success_ratio,
            )
    }

    pub fn export(&self, outcome: &HandshakeOutcome) {
        let ids = SpanIds::for_outcome(outcome);
        if !outcome.is_failure() && !sample_success(ids.trace_id, self.sample_success_ratio) {
            self.counters.not_sampled.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.spans.capacity() == 0 {
            // Skip building a span that cannot be queued anyway.
            self.counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.spans.try_send(outcome_span(outcome, ids)).is_err() {
            self.counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Spans lost so far: queue full plus failed exports. Monotonic; feed
    /// the difference to [`Metrics::add_spans_dropped`](super::metrics::Metrics::add_spans_dropped).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped_queue_full.load(Ordering::Relaxed)
            + self.counters.dropped_export_failed.load(Ordering::Relaxed)
    }

    /// All counters.
    pub fn stats(&self) -> OtlpStats {
        OtlpStats {
            exported: self.counters.exported.load(Ordering::Relaxed),
            dropped_queue_full: self.counters.dropped_queue_full.load(Ordering::Relaxed),
            dropped_export_failed: self.counters.dropped_export_failed.load(Ordering::Relaxed),
            not_sampled: self.counters.not_sampled.load(Ordering::Relaxed),
            queued: self.spans.max_capacity() - self.spans.capacity(),
        }
    }

    /// The collector URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Exports everything queued now and waits up to `timeout` for it.
    /// Blocks the calling thread; `false` when the time ran out.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(1);
        if self.control.send(Control::Flush(ack_tx)).is_err() {
            return false;
        }
        ack_rx.recv_timeout(timeout).is_ok()
    }

    /// Exports what is queued and stops, within
    /// [`OtlpConfig::shutdown_timeout`] (plus a little): with the collector
    /// down it gives up, counts the rest as dropped and returns. Blocks the
    /// calling thread for at most that long; from async code that must not
    /// block, call it through `spawn_blocking`.
    pub fn shutdown(mut self) {
        let deadline = Instant::now() + self.shutdown_timeout;
        // First cut short an export in flight, then ask for the final drain.
        self.stop.send_replace(Some(deadline));
        if self.control.send(Control::Shutdown { deadline }).is_err() {
            return;
        }
        let grace = Duration::from_millis(500);
        let finished = self
            .finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recv_timeout(self.shutdown_timeout + grace);
        match finished {
            Ok(()) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
            Err(_) => {
                // Leave the thread behind: it ends with the process.
                tracing::warn!(
                    endpoint = %self.endpoint,
                    "OTLP export did not finish within {:?}; giving up on the queued spans",
                    self.shutdown_timeout
                );
            }
        }
    }
}
