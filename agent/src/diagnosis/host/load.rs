//! Host facts about a listener's load, for handshakes that die before the
//! server answers: its accept queue (from the listener table), the
//! kernel's listen-overflow counters rising over the failure, the listening
//! processes' file descriptors against their limit and whether they are
//! stopped, and CPU pressure. Gathered only for such failures, cached
//! briefly, so a flood of timeouts costs a few procfs reads a second.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::diagnosis::host::{HostFacts, HostState};
use crate::evidence::listeners::ListenCounters;
use crate::evidence::process::{ProcessLoad, host_cpu_pressure};
use crate::outcome::HandshakeOutcome;

/// Counter samples kept (one per failure at most every [`SAMPLE_EVERY`]).
const MAX_SAMPLES: usize = 64;
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// A sample older than this before the failure's start says nothing about
/// the failure.
const SAMPLE_HORIZON: chrono::TimeDelta = chrono::TimeDelta::seconds(120);
/// How long a process's load is reused.
const LOAD_TTL: Duration = Duration::from_secs(1);
/// Processes whose load is read per listener (a master and its workers).
const MAX_PROCESSES: usize = 16;

/// Whether a failure looks like one a loaded server causes: the connect
/// never completed, or the connection ended (closed, reset, stalled) before
/// any ServerHello.
pub fn died_before_the_server_answered(outcome: &HandshakeOutcome) -> bool {
    let tls = &outcome.tls;
    let answered = tls.server_hello.is_some()
        || tls.negotiated_version.is_some()
        || tls.non_tls.is_some()
        || !tls.alerts.is_empty();
    let socket = &outcome.socket;
    let ended = socket.connect_errno.is_some()
        || socket.reset_by_peer
        || socket.stalled
        || socket.closed_by.is_some();
    ended && !answered
}

/// The cached readings.
#[derive(Default)]
pub struct LoadCache {
    /// (when read, wall time, counters).
    samples: VecDeque<(Instant, DateTime<Utc>, ListenCounters)>,
    loads: HashMap<u32, (Instant, Vec<ProcessLoad>)>,
    pressure: Option<(Instant, Option<u32>)>,
}

impl LoadCache {
    /// Records the counters as read now (the listener table's).
    pub fn sample(&mut self, counters: &ListenCounters, now: DateTime<Utc>) {
        if self
            .samples
            .back()
            .is_some_and(|(at, _, c)| at.elapsed() < SAMPLE_EVERY && c == counters)
        {
            return;
        }
        self.samples
            .push_back((Instant::now(), now, counters.clone()));
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
    }

    /// How much the counters rose from the last sample taken before
    /// `since` (within the horizon) to the latest one. None without such a
    /// pair of samples, or when nothing rose.
    pub fn rise_since(&self, since: DateTime<Utc>) -> Option<ListenCounters> {
        let (_, _, latest) = self.samples.back()?;
        let (_, _, before) = self
            .samples
            .iter()
            .rev()
            .find(|(_, t, _)| *t <= since && since - *t <= SAMPLE_HORIZON)?;
        let rise = ListenCounters {
            listen_overflows: latest
                .listen_overflows
                .saturating_sub(before.listen_overflows),
            listen_drops: latest.listen_drops.saturating_sub(before.listen_drops),
        };
        (rise.listen_overflows > 0 || rise.listen_drops > 0).then_some(rise)
    }

    /// The load of `owner` (a listening socket's lowest pid, e.g. an nginx
    /// master) and of its children (the workers that accept).
    pub fn loads(&mut self, owner: u32) -> Vec<ProcessLoad> {
        if let Some((at, loads)) = self.loads.get(&owner)
            && at.elapsed() < LOAD_TTL
        {
            return loads.clone();
        }
        let mut pids = vec![owner];
        pids.extend(children_of(owner).into_iter().take(MAX_PROCESSES - 1));
        let loads: Vec<ProcessLoad> = pids.into_iter().filter_map(ProcessLoad::read).collect();
        if self.loads.len() > 256 {
            self.loads.clear();
        }
        self.loads.insert(owner, (Instant::now(), loads.clone()));
        loads
    }

    /// The host's CPU pressure (PSI), reused for [`LOAD_TTL`].
    pub fn cpu_pressure(&mut self) -> Option<u32> {
        if let Some((at, value)) = self.pressure
            && at.elapsed() < LOAD_TTL
        {
            return value;
        }
        let value = host_cpu_pressure();
        self.pressure = Some((Instant::now(), value));
        value
    }
}

/// Processes whose parent is `pid` (from /proc/*/stat).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid ...": the ppid is the second field after ')'.
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat.get(i + 1..))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out.sort_unstable();
    out
}

impl HostState {
    /// Listen-queue, descriptor and CPU facts for a failure the server never
    /// answered, at the listener that accepts the connection's address.
    pub(super) fn gather_load(
        &mut self,
        outcome: &HandshakeOutcome,
        owner: Option<u32>,
        facts: &mut HostFacts,
    ) {
        if let Some(counters) = &facts.listen_counters {
            self.load.sample(counters, Utc::now());
        }
        if !died_before_the_server_answered(outcome) {
            return;
        }
        facts.listen_overflow_rise = self.load.rise_since(outcome.time);
        if let Some(owner) = owner {
            facts.listener_load = self.load.loads(owner);
        }
        facts.cpu_pressure = self.load.cpu_pressure();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::sample_failure;

    #[test]
    fn counters_rise_over_the_failure_only() {
        let mut cache = LoadCache::default();
        let t0 = Utc::now();
        let c = |o, d| ListenCounters {
            listen_overflows: o,
            listen_drops: d,
        };
        cache.sample(&c(100, 100), t0 - chrono::TimeDelta::seconds(10));
        assert_eq!(cache.rise_since(t0), None);
        cache.sample(&c(126, 126), t0 + chrono::TimeDelta::seconds(5));
        assert_eq!(cache.rise_since(t0), Some(c(26, 26)));
        // No sample before the failure: nothing can be said.
        assert_eq!(cache.rise_since(t0 - chrono::TimeDelta::seconds(60)), None);
    }

    #[test]
    fn only_failures_the_server_never_answered_count() {
        let mut o = sample_failure();
        assert!(!died_before_the_server_answered(&o));
        o.socket.connect_errno = Some(libc::ETIMEDOUT);
        assert!(died_before_the_server_answered(&o));
        o.socket.connect_errno = None;
        o.socket.stalled = true;
        assert!(died_before_the_server_answered(&o));
        o.tls.negotiated_version = Some("TLS 1.3".into());
        assert!(!died_before_the_server_answered(&o));
    }

    #[test]
    fn this_process_and_its_children_are_read() {
        let mut cache = LoadCache::default();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let loads = cache.loads(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(loads.iter().any(|l| l.pid == std::process::id()));
        assert!(loads.iter().any(|l| l.pid == child.id()), "{loads:?}");
    }
}
