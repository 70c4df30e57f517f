//! The export thread's loop: batches, retries within the timeout,
//! drop counting, and the warnings when the collector is down.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::sync::mpsc;

use super::*;

/// Warning state of the export loop: one warning when exports start
/// failing, one line when they recover, reminders at most every
/// [`REMINDER_INTERVAL`], nothing per failed batch.
#[derive(Debug, Default)]
pub(super) struct ExportHealth {
    pub(super) failing_since: Option<Instant>,
    /// Total drops (queue full + failed) when the failure began, so the
    /// recovery line can say how many spans the outage cost.
    pub(super) dropped_at_start: u64,
    pub(super) last_warning: Option<Instant>,
    pub(super) warned: bool,
}

/// Flapping collectors get at most one "started failing" warning this often.
pub(super) const WARN_INTERVAL: Duration = Duration::from_secs(60);
/// While the collector stays down, a reminder this often.
pub(super) const REMINDER_INTERVAL: Duration = Duration::from_secs(600);

#[derive(Debug, PartialEq, Eq)]
pub(super) enum ExportHealthChange {
    Quiet,
    StartedFailing,
    StillFailing { lost: u64, for_: Duration },
    Recovered { lost: u64, after: Duration },
}

impl ExportHealth {
    /// A batch of `spans` failed; `dropped_total` counts them already.
    pub(super) fn on_failure(
        &mut self,
        now: Instant,
        spans: u64,
        dropped_total: u64,
    ) -> ExportHealthChange {
        let due = |interval| {
            self.last_warning
                .is_none_or(|t| now.saturating_duration_since(t) >= interval)
        };
        match self.failing_since {
            None => {
                self.failing_since = Some(now);
                self.dropped_at_start = dropped_total.saturating_sub(spans);
                self.warned = due(WARN_INTERVAL);
                if self.warned {
                    self.last_warning = Some(now);
                    ExportHealthChange::StartedFailing
                } else {
                    ExportHealthChange::Quiet
                }
            }
            Some(since) if due(REMINDER_INTERVAL) => {
                self.last_warning = Some(now);
                self.warned = true;
                ExportHealthChange::StillFailing {
                    lost: dropped_total.saturating_sub(self.dropped_at_start),
                    for_: now.saturating_duration_since(since),
                }
            }
            Some(_) => ExportHealthChange::Quiet,
        }
    }

    pub(super) fn on_success(&mut self, now: Instant, dropped_total: u64) -> ExportHealthChange {
        let Some(since) = self.failing_since.take() else {
            return ExportHealthChange::Quiet;
        };
        let lost = dropped_total.saturating_sub(self.dropped_at_start);
        if std::mem::take(&mut self.warned) {
            ExportHealthChange::Recovered {
                lost,
                after: now.saturating_duration_since(since),
            }
        } else {
            ExportHealthChange::Quiet
        }
    }
}

pub(super) struct Worker<E> {
    pub(super) exporter: E,
    pub(super) spans: mpsc::Receiver<SpanData>,
    pub(super) control: mpsc::UnboundedReceiver<Control>,
    pub(super) counters: Arc<Counters>,
    pub(super) batch: Vec<SpanData>,
    pub(super) max_batch: usize,
    pub(super) max_queue: usize,
    pub(super) scheduled_delay: Duration,
    pub(super) export_timeout: Duration,
    pub(super) shutdown_timeout: Duration,
    /// The shutdown deadline, as soon as shutdown() is called.
    pub(super) stop: tokio::sync::watch::Receiver<Option<Instant>>,
    /// `stop`'s sender still exists (watching a closed channel would spin).
    pub(super) stop_open: bool,
    pub(super) health: ExportHealth,
    pub(super) endpoint: String,
}

impl<E: SpanExporter> Worker<E> {
    pub(super) async fn run(mut self) {
        let mut tick = tokio::time::interval(self.scheduled_delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Control first, so a shutdown is not starved by a busy queue.
                biased;
                control = self.control.recv() => match control {
                    Some(Control::Flush(ack)) => {
                        self.drain(None).await;
                        let _ = ack.send(());
                    }
                    Some(Control::Shutdown { deadline }) => {
                        self.finish(deadline).await;
                        return;
                    }
                    // The OtlpExporter was dropped without shutdown().
                    None => {
                        self.finish(Instant::now() + self.shutdown_timeout).await;
                        return;
                    }
                },
                span = self.spans.recv() => match span {
                    Some(span) => {
                        self.batch.push(span);
                        if self.batch.len() >= self.max_batch {
                            self.export_batch(None).await;
                        }
                    }
                    None => {
                        self.finish(Instant::now() + self.shutdown_timeout).await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    if !self.batch.is_empty() {
                        self.export_batch(None).await;
                    }
                }
            }
        }
    }

    /// Exports the current batch and what is queued now (not what keeps
    /// arriving meanwhile, so a flush under load still ends).
    async fn drain(&mut self, deadline: Option<Instant>) {
        let mut budget = self.max_queue;
        while budget > 0 {
            match self.spans.try_recv() {
                Ok(span) => {
                    budget -= 1;
                    self.batch.push(span);
                    if self.batch.len() >= self.max_batch {
                        self.export_batch(deadline).await;
                    }
                }
                Err(_) => break,
            }
        }
        if !self.batch.is_empty() {
            self.export_batch(deadline).await;
        }
    }

    async fn finish(&mut self, deadline: Instant) {
        // New spans are refused (and counted) from here on.
        self.spans.close();
        self.drain(Some(deadline)).await;
        // Whatever is left did not make it before the deadline.
        let mut left = std::mem::take(&mut self.batch).len() as u64;
        while self.spans.try_recv().is_ok() {
            left += 1;
        }
        if left > 0 {
            self.counters
                .dropped_export_failed
                .fetch_add(left, Ordering::Relaxed);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = self.exporter.shutdown_with_timeout(remaining) {
            tracing::debug!(error = %crate::text::Chain(&e), "OTLP exporter shutdown");
        }
    }

    fn dropped_total(&self) -> u64 {
        self.counters.dropped_queue_full.load(Ordering::Relaxed)
            + self.counters.dropped_export_failed.load(Ordering::Relaxed)
    }

    async fn export_batch(&mut self, deadline: Option<Instant>) {
        let batch = std::mem::take(&mut self.batch);
        let n = batch.len() as u64;
        if n == 0 {
            return;
        }
        // The exporter bounds itself by the configured timeout; this outer
        // bound also covers a transport that ignores it. A shutdown arriving
        // meanwhile shortens it, so an export stuck on a collector that
        // swallows packets cannot hold shutdown() past its deadline.
        let started = Instant::now();
        let mut until = started + self.export_timeout + Duration::from_secs(1);
        if let Some(d) = deadline {
            until = until.min(d);
        }
        let export = self.exporter.export(batch);
        let mut export = std::pin::pin!(export);
        let result = loop {
            if let Some(d) = *self.stop.borrow() {
                until = until.min(d);
            }
            if Instant::now() >= until {
                break Err(format!("no answer within {:?}", until - started));
            }
            tokio::select! {
                done = &mut export => break done.map_err(|e| crate::text::Chain(&e).to_string()),
                _ = tokio::time::sleep_until(until.into()) => {}
                changed = self.stop.changed(), if self.stop_open => {
                    // The exporter is gone: finish() comes next, bounded.
                    self.stop_open = changed.is_ok();
                }
            }
        };
        let now = Instant::now();
        match result {
            Ok(()) => {
                self.counters.exported.fetch_add(n, Ordering::Relaxed);
                if let ExportHealthChange::Recovered { lost, after } =
                    self.health.on_success(now, self.dropped_total())
                {
                    tracing::info!(
                        endpoint = %self.endpoint,
                        "OTLP export recovered after {:.0?}; {lost} spans were lost meanwhile",
                        after
                    );
                }
            }
            Err(error) => {
                self.counters
                    .dropped_export_failed
                    .fetch_add(n, Ordering::Relaxed);
                match self.health.on_failure(now, n, self.dropped_total()) {
                    ExportHealthChange::StartedFailing => tracing::warn!(
                        endpoint = %self.endpoint,
                        %error,
                        "OTLP export failing; spans are dropped until the collector answers \
                         (one more line when it recovers)"
                    ),
                    ExportHealthChange::StillFailing { lost, for_ } => tracing::warn!(
                        endpoint = %self.endpoint,
                        %error,
                        "OTLP export still failing after {:.0?}; {lost} spans lost so far",
                        for_
                    ),
                    _ => tracing::debug!(endpoint = %self.endpoint, %error, "OTLP export failed"),
                }
            }
        }
    }
}
