//! Server-config discovery on a worker thread of its own.
//!
//! Discovery lists every process, and parses nginx/apache config trees a
//! container may have written to be as costly as possible. It never runs on
//! the capture loop nor inline on the sink thread: a worker runs
//! [`server_config::discover_with`] every [`DISCOVER_EVERY`] (sooner when
//! asked), reusing the parses whose files did not change, each parse within
//! its byte and time budget ([`server_config::ReadBudget`]), and publishes
//! a [`Snapshot`]. Readers take the last snapshot without waiting for the
//! worker ([`ConfigDiscovery::latest`], [`ConfigDiscovery::tls_ports`]);
//! only the very first read waits for the first discovery, bounded.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{debug, warn};

use crate::evidence::fsroot::{self, Refusals};
use crate::evidence::server_config::{self, DiscoveredConfig, DiscoveryCache, DiscoveryStats};

/// How often the worker discovers when nobody asks.
pub const DISCOVER_EVERY: Duration = Duration::from_secs(5);
/// Least time between two discoveries, however often one is asked for (a
/// flood of failures at an unknown port asks at every failure).
pub const DISCOVER_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// How long the first reader waits for the first discovery. A parse stops
/// at its own time budget; this bounds a host with many installations.
pub const FIRST_WAIT: Duration = Duration::from_secs(10);

/// One discovery's result.
#[derive(Debug)]
pub struct Snapshot {
    pub configs: Vec<DiscoveredConfig>,
    pub stats: DiscoveryStats,
    /// When this discovery started: a reader that needs configs newer than
    /// some moment waits for a snapshot started after it.
    pub started: Instant,
    /// Changes when the configs differ from the previous snapshot's.
    pub generation: u64,
}

impl Snapshot {
    /// Ports the configs declare as TLS, sorted.
    pub fn tls_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .configs
            .iter()
            .filter_map(|d| d.result.as_ref().ok())
            .flat_map(|cfg| cfg.blocks.iter())
            .flat_map(|b| b.listens.iter())
            .filter(|l| l.ssl)
            .map(|l| l.port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// The discovery part of `status.json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiscoveryStatus {
    /// Discoveries run since start.
    pub runs: u64,
    /// The last discovery.
    pub last: DiscoveryStats,
    /// What the agent refused to read (unreadable roots, no `openat2`, a
    /// server's credentials it could not take), since start.
    pub refused: Refusals,
}

/// What a discovery run does: the real one, or a test's.
pub type DiscoverFn = Box<dyn FnMut() -> (Vec<DiscoveredConfig>, DiscoveryStats) + Send>;

/// A handle on the discovery worker (cheap to clone).
#[derive(Clone)]
pub struct ConfigDiscovery {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Signalled when a snapshot is published or a discovery requested.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    latest: Option<Arc<Snapshot>>,
    /// A reader asked for a discovery sooner than the period.
    requested: bool,
    runs: u64,
    /// The worker could not be started: readers do not wait for it.
    dead: bool,
}

impl ConfigDiscovery {
    /// The agent's discovery worker, started on first use.
    pub fn shared() -> &'static ConfigDiscovery {
        static SHARED: OnceLock<ConfigDiscovery> = OnceLock::new();
        SHARED.get_or_init(|| {
            let mut cache = DiscoveryCache::default();
            ConfigDiscovery::start(
                DISCOVER_EVERY,
                Box::new(move || server_config::discover_with(&mut cache)),
            )
        })
    }

    /// Starts a worker running `discover` every `every`, and when asked.
    pub fn start(every: Duration, discover: DiscoverFn) -> ConfigDiscovery {
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let worker = inner.clone();
        let spawned = std::thread::Builder::new()
            .name("tlsdoctor-discovery".into())
            .spawn(move || run(&worker, every, discover));
        if let Err(e) = spawned {
            warn!(error = %crate::text::Chain(&e), "the config discovery worker did not start: no server configs");
            lock(&inner.state).dead = true;
        }
        ConfigDiscovery { inner }
    }

    /// The last snapshot; the first call waits (at most [`FIRST_WAIT`])
    /// for the first discovery.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        let state = lock(&self.inner.state);
        if state.latest.is_some() || state.dead {
            return state.latest.clone();
        }
        let (state, _) = self
            .inner
            .changed
            .wait_timeout_while(state, FIRST_WAIT, |s| s.latest.is_none() && !s.dead)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.latest.clone()
    }

    /// A snapshot of a discovery that started at or after `since`, waiting
    /// for it at most `timeout` (then the last one). Asks the worker for
    /// it; the worker runs at most every [`DISCOVER_AT_MOST_EVERY`].
    pub fn fresh_since(&self, since: Instant, timeout: Duration) -> Option<Arc<Snapshot>> {
        let mut state = lock(&self.inner.state);
        let fresh = |s: &State| s.latest.as_ref().is_some_and(|l| l.started >= since);
        if fresh(&state) || state.dead {
            return state.latest.clone();
        }
        state.requested = true;
        self.inner.changed.notify_all();
        let (state, _) = self
            .inner
            .changed
            .wait_timeout_while(state, timeout, |s| !fresh(s) && !s.dead)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.latest.clone()
    }

    /// Asks for a discovery soon, without waiting for it.
    pub fn request(&self) {
        lock(&self.inner.state).requested = true;
        self.inner.changed.notify_all();
    }

    /// Ports the last discovery's configs declare as TLS (empty before
    /// the first, which the first call waits for).
    pub fn tls_ports(&self) -> Vec<u16> {
        self.latest().map(|s| s.tls_ports()).unwrap_or_default()
    }

    /// Runs and the last run's numbers, for the status file.
    pub fn status(&self) -> DiscoveryStatus {
        let state = lock(&self.inner.state);
        DiscoveryStatus {
            runs: state.runs,
            last: state
                .latest
                .as_ref()
                .map(|s| s.stats.clone())
                .unwrap_or_default(),
            refused: fsroot::refusals(),
        }
    }
}

/// The mutex's state, even after a panic elsewhere poisoned it (the state
/// is replaced whole, never left half-written).
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The worker: discover, publish, sleep until the period ends or a reader
/// asks (but at least [`DISCOVER_AT_MOST_EVERY`]).
fn run(inner: &Inner, every: Duration, mut discover: DiscoverFn) {
    let mut generation = 0u64;
    loop {
        let started = Instant::now();
        lock(&inner.state).requested = false;
        let (configs, stats) = discover();
        debug!(
            installations = stats.installations,
            parsed = stats.parsed,
            reused = stats.reused,
            elapsed_ms = stats.elapsed_ms,
            "server configs discovered"
        );
        {
            let mut state = lock(&inner.state);
            let same = state
                .latest
                .as_ref()
                .is_some_and(|last| last.configs == configs);
            if !same {
                generation += 1;
            }
            state.latest = Some(Arc::new(Snapshot {
                configs,
                stats,
                started,
                generation,
            }));
            state.runs += 1;
            inner.changed.notify_all();
        }
        // Rest at least the minimum gap, then until the period ends or a
        // reader asks.
        let gap_end = started + DISCOVER_AT_MOST_EVERY.min(every);
        std::thread::sleep(gap_end.saturating_duration_since(Instant::now()));
        let period_end = started + every;
        let mut state = lock(&inner.state);
        while !state.requested {
            let left = period_end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = inner
                .changed
                .wait_timeout(state, left)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    use crate::evidence::fsroot::FsRoot;
    use crate::evidence::server_config::{ServerConfig, ServerKind};

    fn one_config(port: u16) -> Vec<DiscoveredConfig> {
        let mut block = crate::diagnosis::rules::fixtures::nginx_block();
        for l in &mut block.listens {
            l.port = port;
            l.ssl = true;
        }
        let mut cfg = ServerConfig::new(ServerKind::Nginx, "/etc/nginx/nginx.conf".into());
        cfg.blocks.push(block);
        vec![DiscoveredConfig {
            kind: ServerKind::Nginx,
            main_file: "/etc/nginx/nginx.conf".into(),
            pids: vec![1],
            running: true,
            root: FsRoot::Host,
            result: Ok(cfg),
        }]
    }

    /// A discovery that stalls (a hostile config tree) holds up nobody:
    /// readers get the last result at once, and a fresh one when it comes.
    #[test]
    fn a_stalled_discovery_does_not_stall_its_readers() {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let mut calls = 0u16;
        let discovery = ConfigDiscovery::start(
            Duration::from_millis(10),
            Box::new(move || {
                calls += 1;
                if calls > 1 {
                    // The second run stalls until the test lets it go.
                    let _ = release_rx.recv();
                }
                (one_config(8440 + calls), DiscoveryStats::default())
            }),
        );
        // The first read waits for the first discovery.
        assert_eq!(discovery.tls_ports(), vec![8441]);
        let first = discovery.latest().unwrap();
        // The worker is now stuck in its second run; readers are not. A
        // thread stands in for the capture loop and must answer at once.
        let reader = discovery.clone();
        let (answer_tx, answer_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..1000 {
                let _ = answer_tx.send(reader.tls_ports());
            }
        });
        for _ in 0..1000 {
            let ports = answer_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("a reader blocked behind a stalled discovery");
            assert_eq!(ports, vec![8441]);
        }
        // Asking for a fresh one waits at most as long as it is told to.
        let asked = Instant::now();
        let stale = discovery
            .fresh_since(asked, Duration::from_millis(50))
            .unwrap();
        assert_eq!(stale.generation, first.generation);
        // Released, every later run returns at once.
        drop(release_tx);
        let fresh = discovery
            .fresh_since(asked, Duration::from_secs(30))
            .unwrap();
        assert!(fresh.started >= asked);
        assert!(fresh.tls_ports()[0] > 8441, "{:?}", fresh.tls_ports());
        assert!(fresh.generation > first.generation);
    }

    #[test]
    fn an_unchanged_discovery_keeps_its_generation() {
        let discovery = ConfigDiscovery::start(
            Duration::from_millis(10),
            Box::new(|| (one_config(9443), DiscoveryStats::default())),
        );
        let first = discovery.latest().unwrap();
        let later = discovery
            .fresh_since(Instant::now(), Duration::from_secs(30))
            .unwrap();
        assert!(later.started > first.started);
        assert_eq!(later.generation, first.generation);
        assert!(discovery.status().runs >= 2);
    }
}
