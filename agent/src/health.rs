//! Liveness and readiness of `agent run`, served beside `/metrics` on
//! `--metrics-addr` (the DaemonSet's probes use them):
//!
//! - [`LIVENESS_PATH`] (`/healthz`): the event loop is alive, i.e. it ticked
//!   within [`LOOP_STALL`] (it ticks every 100 ms whatever the traffic). A
//!   restart helps only there, so nothing else fails liveness.
//! - [`READINESS_PATH`] (`/readyz`): loaded and capturing — the programs
//!   are attached (the tracepoints; uprobes on every OpenSSL library found)
//!   and the loop ticked within [`READY_STALE`]. Nothing else: losses (ring
//!   buffer or outcome queue full within [`LOSS_WINDOW`]), a ring-buffer
//!   backlog (every read for [`BACKLOG_STALL`] left records behind) and an
//!   unwritable journal are listed in the body as warnings, and counted in
//!   `/metrics` and `status.json`, but do not fail it: on a busy node they
//!   come and go, and a not-ready agent would only stall a rolling update
//!   (`maxUnavailable`) without capturing anything more.
//!
//! The event loop writes a few atomics ([`Health`]); the HTTP handler takes a
//! [`HealthSnapshot`] and decides with [`liveness`] / [`readiness`], plain
//! functions of the snapshot (unit-tested below).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const LIVENESS_PATH: &str = "/healthz";
pub const READINESS_PATH: &str = "/readyz";

/// No loop tick for this long: not alive (the loop ticks every 100 ms).
pub const LOOP_STALL: Duration = Duration::from_secs(30);
/// No loop tick for this long: not ready.
pub const READY_STALE: Duration = Duration::from_secs(5);
/// Every read of the ring buffer has hit its batch limit (records left
/// behind) for this long: a growing backlog, a warning.
pub const BACKLOG_STALL: Duration = Duration::from_secs(10);
/// Events lost within this window: a warning.
pub const LOSS_WINDOW: Duration = Duration::from_secs(30);

/// What the event loop reports. Times are milliseconds since `base` plus one
/// (0: never).
#[derive(Debug)]
pub struct Health {
    base: Instant,
    attached: AtomicBool,
    stopping: AtomicBool,
    probed_libraries: AtomicU64,
    heartbeat: AtomicU64,
    last_drained: AtomicU64,
    behind_since: AtomicU64,
    last_loss: AtomicU64,
    /// Why the journal cannot be written, while it cannot.
    journal_problem: Mutex<Option<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    pub fn new() -> Self {
        Health {
            base: Instant::now(),
            attached: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            probed_libraries: AtomicU64::new(0),
            heartbeat: AtomicU64::new(0),
            last_drained: AtomicU64::new(0),
            behind_since: AtomicU64::new(0),
            last_loss: AtomicU64::new(0),
            journal_problem: Mutex::new(None),
        }
    }

    fn stamp(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// The tracepoints are attached and the ring buffer is polled.
    pub fn set_attached(&self, attached: bool) {
        self.attached.store(attached, Ordering::Relaxed);
    }

    /// OpenSSL libraries with at least one uprobe attached.
    pub fn set_probed_libraries(&self, n: usize) {
        self.probed_libraries.store(n as u64, Ordering::Relaxed);
    }

    /// The event loop is alive (called on every tick).
    pub fn heartbeat(&self) {
        self.heartbeat.store(self.stamp(), Ordering::Relaxed);
    }

    /// One read of the ring buffer ended; `emptied` when it read everything
    /// there was, false when it stopped at its batch limit.
    pub fn ring_read(&self, emptied: bool) {
        let now = self.stamp();
        if emptied {
            self.last_drained.store(now, Ordering::Relaxed);
            self.behind_since.store(0, Ordering::Relaxed);
        } else {
            let _ =
                self.behind_since
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Events were lost (ring buffer full, outcome queue full).
    pub fn lost_events(&self) {
        self.last_loss.store(self.stamp(), Ordering::Relaxed);
    }

    /// The journal cannot be written (`Some(why)`), or can again (`None`).
    pub fn set_journal_problem(&self, problem: Option<String>) {
        *self
            .journal_problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = problem;
    }

    /// The agent is stopping (SIGTERM): no longer ready.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        let now = self.stamp();
        let ago = |a: &AtomicU64| match a.load(Ordering::Relaxed) {
            0 => None,
            t => Some(Duration::from_millis(now.saturating_sub(t))),
        };
        HealthSnapshot {
            since_start: self.base.elapsed(),
            attached: self.attached.load(Ordering::Relaxed),
            stopping: self.stopping.load(Ordering::Relaxed),
            probed_libraries: self.probed_libraries.load(Ordering::Relaxed),
            since_heartbeat: ago(&self.heartbeat),
            since_drained: ago(&self.last_drained),
            behind_for: ago(&self.behind_since),
            since_loss: ago(&self.last_loss),
            journal_problem: self
                .journal_problem
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }
}

/// One reading of [`Health`], relative to now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub since_start: Duration,
    pub attached: bool,
    pub stopping: bool,
    pub probed_libraries: u64,
    pub since_heartbeat: Option<Duration>,
    /// Since the last read that emptied the ring buffer.
    pub since_drained: Option<Duration>,
    /// How long reads have been leaving records behind.
    pub behind_for: Option<Duration>,
    pub since_loss: Option<Duration>,
    pub journal_problem: Option<String>,
}

/// A decision and why, one reason a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    pub reasons: Vec<String>,
}

impl Verdict {
    /// The response body: `ok` or `not ok`, then the reasons.
    pub fn body(&self) -> String {
        let mut out = String::from(if self.ok { "ok\n" } else { "not ok\n" });
        for r in &self.reasons {
            out.push_str(r);
            out.push('\n');
        }
        out
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Liveness: the event loop ticked within [`LOOP_STALL`] (or the agent
/// started less than that ago and has not ticked yet).
pub fn liveness(s: &HealthSnapshot) -> Verdict {
    match s.since_heartbeat {
        Some(d) if d <= LOOP_STALL => Verdict {
            ok: true,
            reasons: vec![format!("event loop ticked {} ago", secs(d))],
        },
        Some(d) => Verdict {
            ok: false,
            reasons: vec![format!(
                "event loop stalled: last tick {} ago (limit {})",
                secs(d),
                secs(LOOP_STALL)
            )],
        },
        None if s.since_start <= LOOP_STALL => Verdict {
            ok: true,
            reasons: vec!["starting: event loop not ticked yet".into()],
        },
        None => Verdict {
            ok: false,
            reasons: vec![format!(
                "event loop never ticked in {}",
                secs(s.since_start)
            )],
        },
    }
}

/// Readiness: attached and the loop alive and recent. Every failed
/// condition is listed; losses, a backlog and an unwritable journal follow
/// as `warning:` lines without failing it.
pub fn readiness(s: &HealthSnapshot) -> Verdict {
    let mut problems = Vec::new();
    if s.stopping {
        problems.push("stopping".to_string());
    }
    if !s.attached {
        problems.push("eBPF programs not attached yet".to_string());
    }
    match s.since_heartbeat {
        Some(d) if d <= READY_STALE => {}
        Some(d) => problems.push(format!(
            "event loop last ticked {} ago (limit {})",
            secs(d),
            secs(READY_STALE)
        )),
        None => problems.push("event loop not started".to_string()),
    }
    let mut reasons = if problems.is_empty() {
        let drained = match s.since_drained {
            Some(d) => format!("ring buffer emptied {} ago", secs(d)),
            None => "ring buffer empty since start".to_string(),
        };
        vec![
            format!(
                "tracepoints attached; uprobes on {} OpenSSL libraries",
                s.probed_libraries
            ),
            drained,
        ]
    } else {
        problems.clone()
    };
    reasons.extend(warnings(s).into_iter().map(|w| format!("warning: {w}")));
    Verdict {
        ok: problems.is_empty(),
        reasons,
    }
}

/// What an operator should know that does not make the agent unready.
fn warnings(s: &HealthSnapshot) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(d) = s.behind_for
        && d > BACKLOG_STALL
    {
        out.push(format!(
            "ring buffer backlog: every read for {} left records behind",
            secs(d)
        ));
    }
    if let Some(d) = s.since_loss
        && d <= LOSS_WINDOW
    {
        out.push(format!(
            "events lost {} ago (ring buffer or outcome queue full; counted in /metrics and status.json)",
            secs(d)
        ));
    }
    if let Some(why) = &s.journal_problem {
        out.push(format!(
            "journal not written: {why} (failures still go to the other sinks; counted in tlsdoctor_journal_write_errors_total)"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A running, attached agent that ticked 100 ms ago.
    fn healthy() -> HealthSnapshot {
        HealthSnapshot {
            since_start: Duration::from_secs(60),
            attached: true,
            stopping: false,
            probed_libraries: 2,
            since_heartbeat: Some(ms(100)),
            since_drained: Some(ms(300)),
            behind_for: None,
            since_loss: None,
            journal_problem: None,
        }
    }

    #[test]
    fn a_ticking_attached_agent_is_live_and_ready() {
        let s = healthy();
        assert!(liveness(&s).ok);
        let r = readiness(&s);
        assert!(r.ok, "{r:?}");
        assert!(r.body().starts_with("ok\n"), "{}", r.body());
        assert!(r.body().contains("uprobes on 2 OpenSSL libraries"));
    }

    #[test]
    fn a_stalled_loop_is_dead_and_not_ready() {
        let s = HealthSnapshot {
            since_heartbeat: Some(LOOP_STALL + ms(1)),
            ..healthy()
        };
        let l = liveness(&s);
        assert!(!l.ok);
        assert!(l.body().starts_with("not ok\n"));
        assert!(!readiness(&s).ok);
        // Slow but not stalled: alive, yet not ready.
        let s = HealthSnapshot {
            since_heartbeat: Some(READY_STALE + ms(1)),
            ..healthy()
        };
        assert!(liveness(&s).ok);
        assert!(!readiness(&s).ok);
    }

    #[test]
    fn starting_is_live_until_the_stall_limit_and_never_ready() {
        let s = HealthSnapshot {
            since_start: ms(500),
            attached: false,
            since_heartbeat: None,
            since_drained: None,
            ..healthy()
        };
        assert!(liveness(&s).ok);
        let r = readiness(&s);
        assert!(!r.ok);
        assert!(
            r.reasons.iter().any(|x| x.contains("not attached")),
            "{r:?}"
        );
        assert!(r.reasons.iter().any(|x| x.contains("not started")), "{r:?}");
        let s = HealthSnapshot {
            since_start: LOOP_STALL + ms(1),
            ..s
        };
        assert!(!liveness(&s).ok);
    }

    #[test]
    fn a_backlog_is_a_warning_not_unready() {
        let brief = HealthSnapshot {
            behind_for: Some(BACKLOG_STALL),
            ..healthy()
        };
        assert!(
            !readiness(&brief).body().contains("warning"),
            "a burst is fine"
        );
        let lasting = HealthSnapshot {
            behind_for: Some(BACKLOG_STALL + ms(1)),
            ..healthy()
        };
        let r = readiness(&lasting);
        assert!(r.ok, "still capturing: {r:?}");
        assert!(
            r.body().contains("warning: ring buffer backlog"),
            "{}",
            r.body()
        );
        assert!(liveness(&lasting).ok, "a restart would not help");
    }

    #[test]
    fn losses_and_an_unwritable_journal_are_warnings_not_unready() {
        let recent = HealthSnapshot {
            since_loss: Some(ms(2_000)),
            journal_problem: Some("permission denied".into()),
            ..healthy()
        };
        let r = readiness(&recent);
        assert!(r.ok, "losses must not stall a rolling update: {r:?}");
        assert!(r.body().starts_with("ok\n"), "{}", r.body());
        assert!(r.body().contains("warning: events lost"), "{}", r.body());
        assert!(
            r.body()
                .contains("warning: journal not written: permission denied"),
            "{}",
            r.body()
        );
        let old = HealthSnapshot {
            since_loss: Some(LOSS_WINDOW + ms(1)),
            ..healthy()
        };
        assert!(!readiness(&old).body().contains("warning"));
    }

    #[test]
    fn stopping_is_not_ready_and_every_problem_is_listed() {
        let s = HealthSnapshot {
            stopping: true,
            attached: false,
            since_loss: Some(ms(1)),
            ..healthy()
        };
        let r = readiness(&s);
        assert!(!r.ok);
        assert_eq!(r.reasons.len(), 3, "two problems and a warning: {r:?}");
        assert!(r.reasons[2].starts_with("warning: events lost"), "{r:?}");
    }

    #[test]
    fn the_recorder_feeds_the_snapshot() {
        let h = Health::new();
        let s = h.snapshot();
        assert!(!s.attached && s.since_heartbeat.is_none() && s.behind_for.is_none());
        h.set_attached(true);
        h.set_probed_libraries(3);
        h.heartbeat();
        h.ring_read(false);
        let s = h.snapshot();
        assert!(s.attached);
        assert_eq!(s.probed_libraries, 3);
        assert!(s.since_heartbeat.is_some());
        assert!(s.behind_for.is_some(), "a read that left records behind");
        h.ring_read(true);
        let s = h.snapshot();
        assert!(s.behind_for.is_none(), "an emptying read ends the backlog");
        assert!(s.since_drained.is_some());
        h.lost_events();
        assert!(
            readiness(&h.snapshot())
                .body()
                .contains("warning: events lost")
        );
        h.set_journal_problem(Some("read-only file system".into()));
        assert!(h.snapshot().journal_problem.is_some());
        h.set_journal_problem(None);
        assert!(h.snapshot().journal_problem.is_none());
        h.set_stopping();
        assert!(h.snapshot().stopping);
    }
}
