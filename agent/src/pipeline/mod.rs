//! `agent run`: kernel events → assembly → diagnosis → sinks.
//!
//! One task owns the capture and the connection table (no locks on the hot
//! path); finished outcomes go through a bounded queue to a sink thread that
//! diagnoses and writes them (`sinks.rs`), so a slow disk or collector never
//! stalls the reading of the ring buffer. What cannot be queued is counted
//! and reported (`status.rs`).

mod queue;
mod sinks;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use tokio::io::unix::{AsyncFd, AsyncFdReadyMutGuard};
use tracing::{debug, info, warn};

use crate::assembly::{Assembler, RoleCounts, SuccessPolicy, TlsPorts, WallClock, monotonic_ns};
use crate::capture::coverage::CoverageWorker;
use crate::capture::events::{self, KernelEvent};
use crate::capture::uprobes::CoverageAction;
use crate::capture::{Capture, held};
use crate::config::RunConfig;
use crate::outcome::HandshakeOutcome;

use sinks::Outputs;
pub use status::Status;
use status::StatusSources;

/// Records read from the ring per wake-up before ticking again, so a flood
/// cannot starve timeouts.
const MAX_RECORDS_PER_WAKE: usize = 8192;
const TICK: Duration = Duration::from_millis(100);
/// How long records accumulate in the ring after a non-empty batch.
const BATCH_INTERVAL: Duration = Duration::from_millis(2);
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// How often holds are checked for staleness.
const HOLD_SCAN_EVERY: Duration = Duration::from_millis(500);

type Ring = AsyncFd<RingBuf<MapData>>;
/// What the coverage worker asks the capture task to attach or detach.
type CoverageActions = tokio::sync::mpsc::UnboundedReceiver<CoverageAction>;

pub async fn run(config: RunConfig) -> anyhow::Result<()> {
    let options = config.capture_options()?;
    let mut capture = Capture::load(&options).context("loading the eBPF programs")?;
    let status = Status::new(&config, &capture);
    // TLS files are found, opened and read on the coverage worker's thread;
    // the capture task only attaches what it plans.
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
    let outputs = Outputs::start(&config, capture.mechanism().mechanism.as_str()).await?;

    let ring = capture.take_events()?;
    // SAFETY: the ring buffer owns its map fd for the AsyncFd's lifetime.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("polling the ring buffer: {e}"))?;

    let mut tls_ports = TlsPorts::new(config.tls_ports.iter().copied());
    crate::diagnosis::learned::open_beside(&config.journal);
    for port in crate::diagnosis::learned::sync(&[]) {
        tls_ports.add(port);
    }
    let mut assembler = Assembler::new(config.assembly(), tls_ports, outputs.plain_ports.clone());
    assembler.set_success_policy(success_policy(config.show_success, outputs.sample_ratio));

    let mut pipeline = Pipeline {
        config,
        capture,
        coverage,
        assembler,
        outputs,
        status,
        decode_errors: BTreeMap::new(),
        lost_reported: 0,
        losses_seen: 0,
        successes_reported: RoleCounts::default(),
        hold_successes: options.hold_successes,
        last_hold_scan: 0,
        held_released: 0,
        stale_holds_released: 0,
    };
    pipeline
        .run_until_stopped(&mut ring, &mut coverage_actions)
        .await?;
    pipeline.shutdown();
    Ok(())
}

/// The capture task's state: what the event loop's branches work on.
struct Pipeline {
    config: RunConfig,
    capture: Capture,
    coverage: CoverageWorker,
    assembler: Assembler,
    outputs: Outputs,
    status: Status,
    /// Ring-buffer records that could not be decoded, by error.
    decode_errors: BTreeMap<String, u64>,
    /// Ring-buffer losses already logged.
    lost_reported: u64,
    /// Losses seen so far (ring buffer full, outcome queue full): a rise is
    /// reported by /readyz as a warning for a while.
    losses_seen: u64,
    /// Counted-only successes already added to the metrics.
    successes_reported: RoleCounts,
    /// Whether the kernel decides successes (and holds handshakes).
    hold_successes: bool,
    /// When holds were last scanned for staleness (monotonic ns).
    last_hold_scan: u64,
    /// Held records handed to assembly (released by the kernel or here).
    held_released: u64,
    /// Of those, the ones released here because they lasted too long.
    stale_holds_released: u64,
}

impl Pipeline {
    /// The event loop, until a signal, `--duration` or a closed stdout.
    async fn run_until_stopped(
        &mut self,
        ring: &mut Ring,
        coverage_actions: &mut CoverageActions,
    ) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(TICK);
        let mut rescan =
            tokio::time::interval(Duration::from_secs(self.config.rescan_seconds.max(1)));
        rescan.tick().await;
        let mut status_timer = tokio::time::interval(STATUS_EVERY);
        let deadline = self
            .config
            .duration
            .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        // Created once: re-creating timers and signal futures on every pass
        // of a busy loop costs more than the events it handles.
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(until_deadline);
        let stdout_closed = self.outputs.stdout_closed.clone();
        // After a batch, the next one is collected for a moment instead of
        // waking on every record: under load wake-ups stay bounded, and the
        // first event after a quiet spell is still handled at once.
        let mut collect = false;
        let health = self.outputs.health.clone();
        health.set_probed_libraries(self.probed_libraries());
        health.heartbeat();
        health.set_attached(true);
        info!(journal = %self.config.journal.display(), "capturing TLS handshakes");

        loop {
            if collect {
                tokio::time::sleep(BATCH_INTERVAL).await;
            }
            tokio::select! {
                guard = ring.readable_mut() => {
                    collect = self.read_ring(guard.context("ring buffer")?) > 0;
                }
                _ = tick.tick() => self.on_tick(),
                Some(action) = coverage_actions.recv() => self.capture.apply_coverage(action),
                _ = rescan.tick() => self.on_rescan(),
                _ = status_timer.tick() => self.on_status_timer(),
                _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
                _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
                _ = &mut until_deadline => { info!("duration reached: stopping"); break; }
                _ = stdout_closed.notified() => { info!("stdout closed: stopping"); break; }
            }
        }
        Ok(())
    }

    /// Reads up to [`MAX_RECORDS_PER_WAKE`] records into assembly and queues
    /// what they finished. Returns the records read.
    fn read_ring(&mut self, mut guard: AsyncFdReadyMutGuard<'_, RingBuf<MapData>>) -> usize {
        let clock = WallClock::now();
        let mut out = Vec::new();
        let mut n = 0;
        while let Some(record) = guard.get_inner_mut().next() {
            self.on_record(&record, &clock, &mut out);
            n += 1;
            if n >= MAX_RECORDS_PER_WAKE {
                break;
            }
        }
        if n < MAX_RECORDS_PER_WAKE {
            guard.clear_ready();
        }
        self.outputs.health.ring_read(n < MAX_RECORDS_PER_WAKE);
        self.outputs.queue.send(out);
        n
    }

    /// One ring-buffer record (or a released hold) into assembly.
    fn on_record(&mut self, record: &[u8], clock: &WallClock, out: &mut Vec<HandshakeOutcome>) {
        match events::decode(record) {
            Ok(event) => {
                tracing::trace!(?event, "kernel event");
                if matches!(event, KernelEvent::Held(_)) {
                    self.held_released += 1;
                }
                self.note_exec(&event);
                self.assembler.on_event(&event, clock, out);
            }
            Err(e) => {
                let count = self
                    .decode_errors
                    .entry(crate::text::Chain(&e).to_string())
                    .or_default();
                if *count == 0 {
                    warn!(error = %crate::text::Chain(&e), "undecodable kernel record (counted; logged once)");
                }
                *count += 1;
            }
        }
    }

    /// Holds the kernel kept past [`held::RELEASE_AFTER`] (a stalled
    /// handshake has no event that would release it), and the server ports
    /// of the successes it confirmed.
    fn scan_holds(&mut self, now: u64, clock: &WallClock, out: &mut Vec<HandshakeOutcome>) {
        if now.saturating_sub(self.last_hold_scan) < HOLD_SCAN_EVERY.as_nanos() as u64 {
            return;
        }
        self.last_hold_scan = now;
        let before = now.saturating_sub(held::RELEASE_AFTER.as_nanos() as u64);
        match self.capture.release_stale_holds(before) {
            Ok(records) => {
                self.stale_holds_released += records.len() as u64;
                for record in records {
                    self.on_record(&record, clock, out);
                }
            }
            Err(e) => debug!(error = %crate::text::Chain(&e), "releasing stale holds"),
        }
        // Ports of local servers whose successes the kernel confirmed:
        // learned as soon as userspace would have learned them from the
        // ServerHello of a success it concluded itself.
        match self.capture.served_tls_ports() {
            Ok(ports) => {
                for port in ports {
                    self.assembler.tls_ports_mut().learn_served(port);
                }
            }
            Err(e) => debug!(error = %crate::text::Chain(&e), "reading the served TLS ports"),
        }
    }

    /// A new process is checked for TLS code after its exec, by the
    /// coverage worker. (An exited process's sockets are handed back by the
    /// assembler's next tick, which keeps them by process: no walk of the
    /// kernel map.)
    fn note_exec(&mut self, event: &KernelEvent) {
        if let KernelEvent::Exec(ev) = event {
            self.coverage.exec(ev.header.tgid);
        }
    }

    /// Timeouts of assembly.
    fn on_tick(&mut self) {
        self.outputs.health.heartbeat();
        let mut out = Vec::new();
        let now = monotonic_ns();
        let clock = WallClock::now();
        self.scan_holds(now, &clock, &mut out);
        let untracked = self.assembler.tick(now, &clock, &mut out);
        if !untracked.is_empty()
            && let Err(e) = self.capture.untrack(&untracked)
        {
            debug!(error = %crate::text::Chain(&e), "untracking idle sockets");
        }
        self.outputs.queue.send(out);
    }

    /// The periodic scan of TLS ports (the coverage worker rescans
    /// processes on its own clock).
    fn on_rescan(&mut self) {
        let served_hello = self.assembler.tls_ports_mut().learned();
        for port in crate::diagnosis::learned::sync(&served_hello) {
            self.assembler.tls_ports_mut().add(port);
        }
    }

    fn refresh_status(&mut self) {
        self.status.refresh(StatusSources {
            capture: &self.capture,
            assembler: &self.assembler,
            coverage: &self.coverage,
            sinks: &self.outputs.counters,
            dropped_outcomes: self.outputs.queue.dropped,
            holds: self.hold_status(),
            decode_errors: &self.decode_errors,
            k8s: self
                .outputs
                .pod_watch
                .as_ref()
                .map(|w| w.metadata().status()),
        });
    }

    /// status.json, the metrics that mirror it, readiness and loss warnings.
    fn on_status_timer(&mut self) {
        self.refresh_status();
        self.status.write(&self.config);
        let metrics = &self.outputs.metrics;
        for (name, value) in &self.status.kernel {
            metrics.set_kernel_counter(name, *value);
        }
        // Successes userspace only counted, and the ones the kernel
        // confirmed and dropped.
        let kernel = |name| self.status.kernel.get(name).copied().unwrap_or(0);
        let mut counted = self.status.assembly.successes_counted_only;
        counted.client += kernel("confirmed_success_client");
        counted.server += kernel("confirmed_success_server");
        let reported = self.successes_reported;
        metrics.add_successes("client", counted.client.saturating_sub(reported.client));
        metrics.add_successes("server", counted.server.saturating_sub(reported.server));
        self.successes_reported = counted;
        metrics.set_outcomes_dropped(self.outputs.queue.dropped);

        let health = &self.outputs.health;
        let lost = self.status.kernel.get("ringbuf_full").copied().unwrap_or(0);
        let losses = lost.saturating_add(self.outputs.queue.dropped);
        if losses > self.losses_seen {
            health.lost_events();
        }
        self.losses_seen = losses;
        health.set_probed_libraries(self.probed_libraries());
        if lost > self.lost_reported {
            warn!(
                lost_total = lost,
                since_last = lost - self.lost_reported,
                "kernel events lost: ring buffer full (raise --ringbuf-mib)"
            );
            self.lost_reported = lost;
        }
    }

    /// Concludes what is open, lets the sink thread write it, writes the
    /// final status and detaches.
    fn shutdown(mut self) {
        self.outputs.health.set_stopping();
        debug!("draining open connections");
        let mut out = Vec::new();
        let clock = WallClock::now();
        // Every hold still in the kernel, so that its handshake is concluded
        // with the rest (bounded: each pass takes up to a few hundred).
        for _ in 0..64 {
            match self.capture.release_stale_holds(u64::MAX) {
                Ok(records) if !records.is_empty() => {
                    for record in records {
                        self.on_record(&record, &clock, &mut out);
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    debug!(error = %crate::text::Chain(&e), "releasing holds at shutdown");
                    break;
                }
            }
        }
        self.assembler.drain(&clock, &mut out);
        self.outputs.queue.send(out);
        // The sink thread's counters outlive it, for the final status.
        let counters = self.outputs.counters.clone();
        let dropped_outcomes = self.outputs.queue.dropped;
        let holds = self.hold_status();
        let k8s = self
            .outputs
            .pod_watch
            .as_ref()
            .map(|w| w.metadata().status());
        let Pipeline {
            config,
            capture,
            coverage,
            assembler,
            outputs,
            mut status,
            decode_errors,
            ..
        } = self;
        outputs.stop();
        status.refresh(StatusSources {
            capture: &capture,
            assembler: &assembler,
            coverage: &coverage,
            sinks: &counters,
            dropped_outcomes,
            holds,
            decode_errors: &decode_errors,
            k8s,
        });
        status.write(&config);
        // The worker first: it plans no more attachments.
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
    }

    fn hold_status(&self) -> status::HoldStatus {
        status::HoldStatus {
            enabled: self.hold_successes,
            records_read: self.held_released,
            stale_released: self.stale_holds_released,
        }
    }

    /// OpenSSL libraries with at least one uprobe attached.
    fn probed_libraries(&self) -> usize {
        self.capture
            .libraries()
            .filter(|l| !l.attached.is_empty())
            .count()
    }
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
