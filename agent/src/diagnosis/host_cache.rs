//! The bounded caches behind [`HostState`](super::host::HostState): chain
//! analyses and error-log followers. Every bound is in bytes, since a peer
//! or a container decides how large what it sends or writes is; entries
//! that belong to a process that is gone are dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::debug;

use crate::catalogue::Cause;
use crate::evidence::certificates::AnalysedChain;
use crate::evidence::fsroot::FsRoot;
use crate::evidence::logs::LogFollower;

/// Bytes of chain analyses each cache holds.
pub const CHAIN_CACHE_BYTES: usize = 8 << 20;
/// Error logs followed at once; the least recently used goes first.
pub const MAX_LOG_FOLLOWERS: usize = 32;
/// A follower not used for this long is dropped.
pub const FOLLOWER_IDLE: Duration = Duration::from_secs(600);

/// Chain analyses by chain (a served chain's DER, or a configured chain's
/// files), whatever name a client asked for: random SNIs cost one analysis
/// per chain. Each is reused for `ttl` (its date findings may lag by that
/// much). Cleared when over [`CHAIN_CACHE_BYTES`].
pub struct ChainCache<K> {
    entries: HashMap<K, (Instant, AnalysedChain)>,
    bytes: usize,
    ttl: Duration,
}

impl<K: Hash + Eq> ChainCache<K> {
    pub fn new(ttl: Duration) -> Self {
        ChainCache {
            entries: HashMap::new(),
            bytes: 0,
            ttl,
        }
    }

    /// The analysis of `key`, when one younger than the ttl is held.
    pub fn get(&mut self, key: &K) -> Option<&mut AnalysedChain> {
        let ttl = self.ttl;
        self.entries
            .get_mut(key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, chain)| chain)
    }

    /// Keeps `chain` for `key` (`key_bytes`: what the key itself holds)
    /// and returns it.
    pub fn insert(&mut self, key: K, key_bytes: usize, chain: AnalysedChain) -> &mut AnalysedChain {
        let size = key_bytes + chain.heap_bytes();
        if let Some((_, old)) = self.entries.remove(&key) {
            self.bytes = self.bytes.saturating_sub(key_bytes + old.heap_bytes());
        }
        if self.bytes + size > CHAIN_CACHE_BYTES {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        let entry = self.entries.entry(key).or_insert((Instant::now(), chain));
        &mut entry.1
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Bytes held, roughly.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A followed error log.
struct Followed {
    follower: LogFollower<Option<Cause>>,
    /// Last refresh (read of what was appended); None: never read.
    refreshed: Option<Instant>,
    /// Last use by a failure.
    used: Instant,
}

/// Error-log followers by the filesystem and path they read: at most
/// [`MAX_LOG_FOLLOWERS`], each holding at most
/// [`FOLLOWED_BYTES`](crate::evidence::logs::FOLLOWED_BYTES); those of a
/// process that is gone, or unused for [`FOLLOWER_IDLE`], are dropped.
pub struct LogFollowers {
    entries: HashMap<(FsRoot, PathBuf), Followed>,
    refresh_every: Duration,
    note: crate::evidence::logs::Note<Option<Cause>>,
    last_sweep: Instant,
}

/// How often dead and idle followers are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

impl LogFollowers {
    pub fn new(refresh_every: Duration, note: crate::evidence::logs::Note<Option<Cause>>) -> Self {
        LogFollowers {
            entries: HashMap::new(),
            refresh_every,
            note,
            last_sweep: Instant::now(),
        }
    }

    /// The follower of `path` in `root`, refreshed when it is due.
    pub fn follow(&mut self, root: &FsRoot, path: &Path) -> &LogFollower<Option<Cause>> {
        if self.last_sweep.elapsed() >= SWEEP_EVERY {
            self.sweep();
        }
        let key = (root.clone(), path.to_path_buf());
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_LOG_FOLLOWERS {
            self.evict_least_recently_used();
        }
        let every = self.refresh_every;
        let note = self.note;
        let now = Instant::now();
        let entry = self.entries.entry(key).or_insert_with(|| Followed {
            follower: LogFollower::in_root(root, path, note),
            refreshed: None,
            used: now,
        });
        entry.used = now;
        if entry.refreshed.is_none_or(|at| at.elapsed() >= every) {
            if let Err(e) = entry.follower.refresh() {
                debug!(path = %path.display(), root = ?root, error = %crate::text::Chain(&e), "error log not read");
            }
            entry.refreshed = Some(Instant::now());
        }
        &entry.follower
    }

    /// Drops the followers of processes that are gone (a pid's root is
    /// checked against its mount namespace) and those unused for long.
    pub fn sweep(&mut self) {
        self.last_sweep = Instant::now();
        self.entries
            .retain(|(root, _), f| f.used.elapsed() < FOLLOWER_IDLE && root.is_alive());
    }

    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, f)| f.used)
            .map(|(k, _)| k.clone());
        if let Some(key) = oldest {
            self.entries.remove(&key);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes the followers' lines hold, roughly.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.entries.values().map(|f| f.follower.bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::certificates::TrustStore;

    /// Served "chains" a peer made large: the cache holds at most its
    /// byte budget, however many arrive.
    #[test]
    fn chain_analyses_are_bounded_in_bytes() {
        let trust = TrustStore::system().unwrap();
        let mut cache: ChainCache<Vec<Vec<u8>>> = ChainCache::new(Duration::from_secs(30));
        for i in 0..400u32 {
            let mut der = vec![0x30; 64 << 10];
            der[..4].copy_from_slice(&i.to_be_bytes());
            let chain = vec![der];
            let analysed = AnalysedChain::new(&chain, chrono::Utc::now(), &trust, "wire");
            cache.insert(chain, 64 << 10, analysed);
            assert!(cache.bytes() <= CHAIN_CACHE_BYTES, "{}", cache.bytes());
        }
        assert!(cache.len() < 400);
        assert!(cache.len() > 0);
    }

    #[test]
    fn followers_of_gone_processes_and_the_least_used_are_dropped() {
        fn no_note(_: &crate::evidence::logs::LogLine, _: Option<&Option<Cause>>) -> Option<Cause> {
            None
        }
        let mut logs = LogFollowers::new(Duration::from_millis(500), no_note);
        let gone = FsRoot::Process {
            pid: 4_194_304 + 31,
            mnt_ns: 1,
            reads_as: None,
        };
        logs.follow(&gone, Path::new("/var/log/nginx/error.log"));
        logs.follow(&FsRoot::Host, Path::new("/nonexistent/error.log"));
        assert_eq!(logs.len(), 2);
        logs.sweep();
        assert_eq!(logs.len(), 1, "the gone process's follower is dropped");
        // Random log paths (one per container, or a config naming many)
        // cannot grow the set past its cap.
        for i in 0..(MAX_LOG_FOLLOWERS * 3) {
            logs.follow(
                &FsRoot::Host,
                &PathBuf::from(format!("/nonexistent/{i}.log")),
            );
            assert!(logs.len() <= MAX_LOG_FOLLOWERS);
        }
        assert_eq!(logs.bytes(), 0);
    }
}
