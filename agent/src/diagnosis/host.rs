//! The host-state evidence relevant to one failure, gathered from the
//! listener, server-config, certificate, clock and log sources.
//!
//! [`HostState`] reads each source lazily and caches it: server configs come
//! from the discovery worker ([`super::discovery`], re-parsed only when one
//! of their files changed), listeners are rescanned at most every couple of
//! seconds, chain analyses and log tails are reused (bounded in bytes:
//! [`super::host_cache`]), so a flood of failures costs no file I/O per
//! failure.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::catalogue::Cause;
use crate::diagnosis::discovery::{ConfigDiscovery, Snapshot};
use crate::diagnosis::host_cache::{ChainCache, LogFollowers};
use crate::diagnosis::rules::log_text;
use crate::evidence::certificates::{self, AnalysedChain, ChainFinding, ChainReport, TrustStore};
use crate::evidence::clock::{self, ClockState, StepWatch};
use crate::evidence::fsroot::FsRoot;
use crate::evidence::listeners::{ListenCounters, Listener, ListenerTable};
use crate::evidence::logs::{self, LogLine};
use crate::evidence::process::ProcessLoad;

mod load;
mod tls_ports;

use crate::evidence::server_config::{
    self, ConfigProblem, DiscoveredConfig, ServerBlock, ServerConfig,
};
use crate::outcome::{HandshakeOutcome, Role};
use load::LoadCache;

/// Host facts for one failure. Empty for a failure whose server is not on
/// this host (then only wire, OpenSSL and socket evidence count).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub clock: Option<ClockState>,
    /// The server is a process on this host.
    pub server_is_local: bool,
    /// Listening sockets on the server's port, on any address.
    pub listeners_on_port: Vec<Listener>,
    /// Server blocks whose `listen` names the server's port.
    pub blocks_on_port: Vec<ServerBlock>,
    /// The block that serves the requested name (SNI) on that port, by the
    /// server's own selection rules.
    pub selected_block: Option<ServerBlock>,
    /// True when no block names the SNI (or there was no SNI), so the
    /// selection fell back to the port's default block.
    pub selected_by_default: bool,
    /// The server blocks (nginx) or name-based virtual hosts (apache) the
    /// connection's address:port routes between by name. With one there is
    /// nothing to route: a name its certificate lacks is a plain mismatch,
    /// not the default certificate's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routed_blocks: Vec<RoutedBlock>,
    /// The port's default block (its `ssl_protocols` decide the version in
    /// nginx before 1.29.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_block: Option<ServerBlock>,
    /// The analysis of the certificate chain the selected block serves,
    /// checked for the SNI name.
    pub configured_chain: Option<ChainReport>,
    /// The analysis of the chain the wire showed (TLS 1.2), checked for the
    /// SNI name, against this host's trust store.
    pub wire_chain: Option<ChainReport>,
    /// The server's own error-log lines near the failure.
    pub log_lines: Vec<ClassifiedLogLine>,
    pub listen_counters: Option<ListenCounters>,
    /// How much ListenOverflows/ListenDrops rose while this handshake was
    /// attempted (None: no rise, or no earlier reading to compare with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_overflow_rise: Option<ListenCounters>,
    /// The load of the processes behind the listener a handshake died at
    /// before the server answered (its owner and that one's children):
    /// open descriptors against their limit, stopped or not, CPU pressure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listener_load: Vec<ProcessLoad>,
    /// The host's CPU pressure (PSI "some" avg10, percent), read with
    /// `listener_load`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pressure: Option<u32>,
    pub config_problems: Vec<ConfigProblem>,
}

/// One block a listener routes to: its names and where it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedBlock {
    pub names: Vec<String>,
    /// `file:line` of the block.
    pub location: String,
}

/// A server error-log line and the cause its text indicates, when it names
/// one (`rules::log_text`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassifiedLogLine {
    #[serde(flatten)]
    pub line: LogLine,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indicates: Option<Cause>,
}

/// How long cached sources are trusted before they are checked again.
/// (Server configs are the discovery worker's: every
/// [`DISCOVER_EVERY`](super::discovery::DISCOVER_EVERY).)
#[derive(Clone, Debug)]
pub struct HostStateConfig {
    pub listeners_every: Duration,
    /// A configured chain's analysis (it depends on the time: expiry).
    pub chain_ttl: Duration,
    /// Re-read an error log's tail at most this often.
    pub log_every: Duration,
    /// Log lines this close to a failure count as about it.
    pub log_window: chrono::Duration,
}

impl Default for HostStateConfig {
    fn default() -> Self {
        HostStateConfig {
            listeners_every: Duration::from_secs(2),
            chain_ttl: Duration::from_secs(30),
            log_every: Duration::from_millis(500),
            // nginx stamps whole seconds; a wider window mixes up clients
            // that share an address.
            log_window: chrono::Duration::seconds(2),
        }
    }
}

struct Timed<T> {
    at: Instant,
    value: T,
}

/// Lazily read, cached host state.
pub struct HostState {
    config: HostStateConfig,
    /// Where server configs come from (the agent's worker).
    discovery: ConfigDiscovery,
    /// The discovery in use; its generation tells when configs changed.
    configs: Option<Arc<Snapshot>>,
    /// When a wait for a fresh discovery last ran out (a slow, possibly
    /// hostile, config tree): later failures ask without waiting for a while.
    rediscover_timed_out: Option<Instant>,
    /// When a failure last waited for a fresh discovery.
    rediscovered_at: Option<Instant>,
    listeners: Option<Timed<ListenerTable>>,
    trust: Option<Result<TrustStore, String>>,
    /// Configured chains analysed, by the filesystem they are in (two
    /// containers may both have /etc/nginx/cert.pem) and files; checked for
    /// each name from the one analysis.
    chains: ChainCache<(FsRoot, Vec<PathBuf>)>,
    /// Served chains (DER) analysed, by chain.
    wire_chains: ChainCache<Vec<Vec<u8>>>,
    logs: LogFollowers,
    local_addrs: Option<Timed<Vec<IpAddr>>>,
    clock: Option<Timed<Option<ClockState>>>,
    /// The clock's first observation this boot, when `agent run` keeps no
    /// learned state (`diagnosis::learned`).
    step_watch: StepWatch,
    load: LoadCache,
    /// Whether a listening process maps a TLS library, by pid.
    tls_library: HashMap<u32, Timed<Option<String>>>,
}

impl Default for HostState {
    fn default() -> Self {
        HostState::new(HostStateConfig::default())
    }
}

/// Bounds on what one failure carries from the logs and configs.
const MAX_LOG_LINES: usize = 12;
const MAX_CONFIG_PROBLEMS: usize = 20;
/// How long a failure the cached configs do not explain waits for a fresh
/// discovery (the worker's parses stop at their own time budget).
const REDISCOVER_WAIT: Duration = Duration::from_secs(6);
/// After such a wait ran out, failures only ask for a discovery, without
/// waiting, for this long: a slow tree must not hold up the sink thread
/// at every failure.
const REDISCOVER_BACKOFF: Duration = Duration::from_secs(30);

impl HostState {
    pub fn new(config: HostStateConfig) -> HostState {
        HostState::with_discovery(config, ConfigDiscovery::shared().clone())
    }

    /// Host state reading server configs from `discovery`.
    pub fn with_discovery(config: HostStateConfig, discovery: ConfigDiscovery) -> HostState {
        let (chain_ttl, log_every) = (config.chain_ttl, config.log_every);
        HostState {
            config,
            discovery,
            configs: None,
            rediscover_timed_out: None,
            rediscovered_at: None,
            listeners: None,
            trust: None,
            chains: ChainCache::new(chain_ttl),
            wire_chains: ChainCache::new(chain_ttl),
            logs: LogFollowers::new(log_every, log_text::NOTE),
            local_addrs: None,
            clock: None,
            step_watch: StepWatch::default(),
            load: LoadCache::default(),
            tls_library: HashMap::new(),
        }
    }

    /// The clock, read at most every [`CLOCK_EVERY`], with any step since
    /// its first observation this boot (the agent's learned baseline when
    /// there is one, so a step before a restart counts).
    pub fn clock(&mut self) -> Option<ClockState> {
        if let Some(cached) = &self.clock
            && cached.at.elapsed() < CLOCK_EVERY
        {
            return cached.value.clone();
        }
        let mut state = clock::read().ok();
        if let Some(state) = &mut state {
            match super::learned::global().and_then(|l| l.lock().ok()) {
                Some(mut learned) => {
                    learned.step_watch().observe(state);
                    let watch = learned.step_watch().clone();
                    learned.note_clock(&watch);
                }
                None => self.step_watch.observe(state),
            }
        }
        self.clock = Some(Timed {
            at: Instant::now(),
            value: state.clone(),
        });
        state
    }

    /// The running (and installed) servers' configurations: the discovery
    /// worker's last result (never a parse on this thread).
    pub fn configs(&mut self) -> &[DiscoveredConfig] {
        if let Some(latest) = self.discovery.latest() {
            self.use_snapshot(latest);
        }
        self.configs
            .as_ref()
            .map(|c| c.configs.as_slice())
            .unwrap_or(&[])
    }

    /// Configs from a discovery that started after now, waiting for it at
    /// most [`REDISCOVER_WAIT`]: a server started (or restarted with
    /// another config), or a config was written, since the last one.
    fn rediscover(&mut self) {
        let backing_off = self
            .rediscover_timed_out
            .is_some_and(|at| at.elapsed() < REDISCOVER_BACKOFF);
        if backing_off {
            self.discovery.request();
            return;
        }
        let asked = Instant::now();
        self.rediscovered_at = Some(asked);
        if let Some(fresh) = self.discovery.fresh_since(asked, REDISCOVER_WAIT) {
            if fresh.started < asked {
                self.rediscover_timed_out = Some(Instant::now());
            }
            self.use_snapshot(fresh);
        }
    }

    fn use_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        let changed = self
            .configs
            .as_ref()
            .is_none_or(|c| c.generation != snapshot.generation);
        if changed {
            // A changed config may serve other certificates.
            self.chains.clear();
        }
        self.configs = Some(snapshot);
    }

    /// How old the configs in use are (their discovery's start).
    fn configs_age(&self) -> Option<Duration> {
        self.configs.as_ref().map(|c| c.started.elapsed())
    }

    /// The configs in hand answer for `outcome`: their discovery is recent,
    /// and began after the connection did (one that began before may
    /// predate the server, started a moment before the connection) or a
    /// failure waited for one a moment ago (a flood of failures at an
    /// unknown port must not wait for a discovery each).
    fn configs_answer(&self, outcome: &HandshakeOutcome) -> bool {
        let connection_age = (chrono::Utc::now() - outcome.time)
            .to_std()
            .unwrap_or_default();
        let waited_lately = self
            .rediscovered_at
            .is_some_and(|at| at.elapsed() < REDISCOVER_AGAIN_AFTER);
        self.configs_age()
            .is_some_and(|age| age < REDISCOVER_AFTER && (age < connection_age || waited_lately))
    }

    pub fn listeners(&mut self) -> Option<&ListenerTable> {
        let stale = self
            .listeners
            .as_ref()
            .is_none_or(|l| l.at.elapsed() >= self.config.listeners_every);
        if stale {
            match ListenerTable::scan() {
                Ok(table) => {
                    self.listeners = Some(Timed {
                        at: Instant::now(),
                        value: table,
                    })
                }
                Err(e) => debug!(error = %crate::text::Chain(&e), "listener scan failed"),
            }
        }
        self.listeners.as_ref().map(|l| &l.value)
    }

    /// The system trust store, loaded once.
    pub fn trust(&mut self) -> Result<&TrustStore, &str> {
        system_trust(&mut self.trust)
    }

    /// Addresses of this host's interfaces.
    fn local_addrs(&mut self) -> &[IpAddr] {
        let stale = self
            .local_addrs
            .as_ref()
            .is_none_or(|a| a.at.elapsed() >= Duration::from_secs(30));
        if stale {
            self.local_addrs = Some(Timed {
                at: Instant::now(),
                value: read_local_addrs(),
            });
        }
        self.local_addrs
            .as_ref()
            .map(|a| a.value.as_slice())
            .unwrap_or(&[])
    }

    fn is_local(&mut self, ip: IpAddr) -> bool {
        ip.is_loopback() || ip.is_unspecified() || self.local_addrs().contains(&ip)
    }

    /// The analysis of a configured chain (cached per files, checked for
    /// the name).
    fn configured_chain(
        &mut self,
        block: &ServerBlock,
        name: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<ChainReport> {
        let mut files: Vec<PathBuf> = Vec::new();
        if let Some(cert) = &block.certificate {
            files.push(cert.value.clone());
        }
        if let Some(chain) = &block.chain_file {
            files.push(chain.value.clone());
        }
        if files.is_empty() {
            return None;
        }
        let key = (block.root.clone(), files.clone());
        if let Some(cached) = self.chains.get(&key)
            && let Ok(trust) = system_trust(&mut self.trust)
        {
            return Some(cached.report_for(name, trust));
        }
        let source = files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ");
        let mut der = Vec::new();
        let mut unreadable = Vec::new();
        for file in &files {
            match certificates::load_pem_chain_in(&block.root, file) {
                Ok(mut certs) => der.append(&mut certs),
                Err(e) => unreadable.push(ChainFinding::Unreadable {
                    path: file.display().to_string(),
                    error: in_context(crate::text::Chain(&e).to_string(), &block.root),
                }),
            }
        }
        let trust = match system_trust(&mut self.trust) {
            Ok(trust) => trust,
            Err(e) => {
                return Some(ChainReport {
                    source: source.clone(),
                    certificates: Vec::new(),
                    verify_code: -1,
                    verify_text: format!("system trust store unavailable: {e}"),
                    name: name.map(str::to_string),
                    findings: unreadable,
                });
            }
        };
        let mut analysed = AnalysedChain::new(&der, now, trust, &source);
        // The file-level reason beats "empty chain".
        analysed.replace_unreadable(unreadable);
        let key_bytes = files.iter().map(|f| f.as_os_str().len()).sum();
        Some(
            self.chains
                .insert(key, key_bytes, analysed)
                .report_for(name, trust),
        )
    }

    /// The analysis of a served chain, cached per chain (whatever the
    /// name): a server sends the same chain to every client, and verifying
    /// it (parsing, signatures) is the expensive part of a failure's host
    /// facts. An analysis is reused for `chain_ttl` (its date findings may
    /// lag by that much).
    fn wire_chain(
        &mut self,
        chain: &[Vec<u8>],
        name: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<ChainReport> {
        let trust = system_trust(&mut self.trust).ok()?;
        let key = chain.to_vec();
        if let Some(cached) = self.wire_chains.get(&key) {
            return Some(cached.report_for(name, trust));
        }
        let analysed = AnalysedChain::new(chain, now, trust, "wire");
        let key_bytes = chain.iter().map(Vec::len).sum();
        Some(
            self.wire_chains
                .insert(key, key_bytes, analysed)
                .report_for(name, trust),
        )
    }

    /// An error log's follower, refreshed (it reads what was appended) at
    /// most every `log_every`.
    fn log_follower(
        &mut self,
        root: &FsRoot,
        path: &std::path::Path,
    ) -> &logs::LogFollower<Option<Cause>> {
        self.logs.follow(root, path)
    }

    /// Gathers the host facts for one outcome.
    pub fn facts_for(&mut self, outcome: &HandshakeOutcome) -> HostFacts {
        let mut facts = HostFacts {
            clock: self.clock(),
            ..Default::default()
        };
        let server_ip = outcome.server.ip;
        let Some(port) = outcome.server.port else {
            return facts;
        };
        facts.server_is_local = outcome.role == Role::Server
            || outcome.server.pid.is_some()
            || server_ip.is_some_and(|ip| self.is_local(ip));
        let sni = outcome.tls.sni.clone();
        let now = outcome.end_time;

        // The chain the wire showed, against this host's trust store.
        if !outcome.tls.server_chain_der.is_empty() {
            facts.wire_chain = self.wire_chain(&outcome.tls.server_chain_der, sni.as_deref(), now);
        }
        if !facts.server_is_local {
            return facts;
        }

        let mut accepting_owner = None;
        if let Some(table) = self.listeners() {
            facts.listeners_on_port = table.on_port(port).into_iter().cloned().collect();
            facts.listen_counters = Some(table.counters.clone());
            accepting_owner = server_ip
                .and_then(|ip| table.accepting(ip, port))
                .and_then(|l| l.pid);
        }
        self.gather_load(outcome, accepting_owner, &mut facts);
        let listener_pids: Vec<u32> = facts
            .listeners_on_port
            .iter()
            .filter_map(|l| l.pid)
            .collect();

        // The server config that serves this port: the running one owning the
        // listener first, then any (running or installed) that names the port.
        let covered = configs_cover(self.configs(), port, &facts.listeners_on_port);
        if !covered && !self.configs_answer(outcome) {
            // A server started (or restarted with another config), or a
            // config was written, since the last discovery.
            self.rediscover();
        }
        // Borrowed, not cloned: only the blocks this failure needs are copied.
        let snapshot = self.configs.clone();
        let configs = snapshot.as_ref().map_or(&[][..], |c| c.configs.as_slice());
        let mut chosen: Option<&ServerConfig> = None;
        for d in configs {
            let Ok(cfg) = &d.result else { continue };
            if cfg.blocks_on_port(port).is_empty() {
                continue;
            }
            let owns_listener = d.pids.iter().any(|p| listener_pids.contains(p));
            if chosen.is_none() || owns_listener {
                chosen = Some(cfg);
            }
            if owns_listener {
                break;
            }
        }
        let mut selected_block = None;
        if let Some(cfg) = chosen {
            facts.blocks_on_port = cfg.blocks_on_port(port).into_iter().cloned().collect();
            facts.routed_blocks = cfg
                .listener_blocks(server_ip, port)
                .into_iter()
                .map(|b| RoutedBlock {
                    names: b.server_names.iter().map(|n| n.value.clone()).collect(),
                    location: b.location(),
                })
                .collect();
            if let Some(sel) = cfg.select(server_ip, port, sni.as_deref()) {
                facts.selected_by_default = sel.by_default;
                facts.default_block = Some(sel.default_block.clone());
                selected_block = Some(sel.block.clone());
            }
            facts.config_problems = cfg
                .problems
                .iter()
                .take(MAX_CONFIG_PROBLEMS)
                .cloned()
                .collect();
        }
        if let Some(block) = &selected_block {
            facts.configured_chain = self.configured_chain(block, sni.as_deref(), now);
            // Error logs: the block's, else every log of the installation.
            let mut log_files: Vec<PathBuf> =
                block.error_log.iter().map(|s| s.value.clone()).collect();
            if log_files.is_empty() {
                log_files = facts
                    .blocks_on_port
                    .iter()
                    .filter_map(|b| b.error_log.as_ref().map(|s| s.value.clone()))
                    .collect();
                log_files.dedup();
            }
            facts.log_lines = self.log_lines_for(&block.root, &log_files, outcome, now);
        }
        facts.selected_block = selected_block;
        facts
    }

    /// Log lines about this failure: near its time and naming its client, plus
    /// recent lines saying the server could not load its certificate.
    fn log_lines_for(
        &mut self,
        root: &FsRoot,
        files: &[PathBuf],
        outcome: &HandshakeOutcome,
        now: DateTime<Utc>,
    ) -> Vec<ClassifiedLogLine> {
        let client_ip = outcome.client.ip.map(|ip| ip.to_string());
        // Apache names the client as ip:port.
        let client_prefix = client_ip.as_ref().map(|ip| format!("{ip}:"));
        let window = self.config.log_window;
        // Load failures are said at start-up, possibly well before the
        // failure; not hours before.
        let load_window = chrono::Duration::minutes(30);
        let oldest = now - window.max(load_window);
        let mut out = Vec::new();
        for file in files {
            if !file.is_absolute() {
                continue; // "stderr", syslog targets
            }
            // Newest first: a busy log's older lines are never looked at.
            for (line, &indicates) in self.log_follower(root, file).noted_lines().rev() {
                let Some(t) = line.time else { continue };
                if t < oldest {
                    break;
                }
                let near = (t - now).abs() <= window;
                let ours = match (&line.client, &client_ip, &client_prefix) {
                    (Some(c), Some(ip), Some(prefix)) => c == ip || c.starts_with(prefix.as_str()),
                    (None, _, _) => true,
                    _ => false,
                };
                let load_failure = indicates == Some(Cause::ServerCannotLoadCertificate);
                if (near && ours) || load_failure {
                    out.push(ClassifiedLogLine {
                        line: line.clone(),
                        indicates,
                    });
                    if out.len() >= MAX_LOG_LINES * 4 {
                        break;
                    }
                }
            }
        }
        out.reverse();
        // The most recent ones are the most telling.
        if out.len() > MAX_LOG_LINES {
            out.drain(..out.len() - MAX_LOG_LINES);
        }
        out
    }
}

/// The system trust store in `slot`, loaded on first use.
fn system_trust(slot: &mut Option<Result<TrustStore, String>>) -> Result<&TrustStore, &str> {
    slot.get_or_insert_with(|| TrustStore::system().map_err(|e| crate::text::Chain(&e).to_string()))
        .as_ref()
        .map_err(String::as_str)
}

/// An error about a file of `root`, saying whose filesystem it is in when
/// that is not the host's.
fn in_context(error: String, root: &FsRoot) -> String {
    match root.context() {
        Some(context) => format!("{error} ({context})"),
        None => error,
    }
}

/// How long a clock reading is reused (its offsets are compared with gaps
/// of minutes and more).
const CLOCK_EVERY: Duration = Duration::from_secs(1);

/// How soon discovery may run again for a failure the cached configs do not
/// cover (a flood of failures at an unknown port costs one discovery a
/// second).
const REDISCOVER_AFTER: Duration = Duration::from_secs(1);
/// How soon a failure may wait for a discovery again when the last one
/// began before its connection.
const REDISCOVER_AGAIN_AFTER: Duration = Duration::from_millis(250);

/// Whether the discovered configs can describe a failure on `port`: when a
/// web server (nginx, apache) listens there, one of them is that process's;
/// when nothing listens, one of them names the port. Otherwise a server
/// started, restarted with another config, or a config was written since the
/// last discovery. Other programs' listeners (s_server, a Go service) have
/// no config to find.
fn configs_cover(configs: &[DiscoveredConfig], port: u16, listeners: &[Listener]) -> bool {
    let servers: Vec<u32> = listeners
        .iter()
        .filter(|l| {
            l.comm
                .as_deref()
                .is_some_and(|c| server_config::server_kind(c).is_some())
        })
        .filter_map(|l| l.pid)
        .collect();
    if !servers.is_empty() {
        return configs
            .iter()
            .any(|d| d.pids.iter().any(|p| servers.contains(p)));
    }
    if !listeners.is_empty() {
        return true;
    }
    configs
        .iter()
        .filter_map(|d| d.result.as_ref().ok())
        .any(|cfg| !cfg.blocks_on_port(port).is_empty())
}

/// Ports the local servers' configs declare as TLS: the discovery
/// worker's last result, so the capture loop never parses a config. The
/// first call waits (bounded) for the worker's first discovery.
pub fn configured_tls_ports() -> Vec<u16> {
    ConfigDiscovery::shared().tls_ports()
}

/// Interface addresses from /proc (IPv6) and the routing table's local
/// entries (IPv4): enough to tell "this host" from a remote peer.
fn read_local_addrs() -> Vec<IpAddr> {
    let mut addrs = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in text.lines() {
            if let Some(hex) = line.split_whitespace().next()
                && let Ok(bytes) = hex::decode(hex)
                && let Ok(octets) = <[u8; 16]>::try_from(bytes.as_slice())
            {
                addrs.push(IpAddr::from(octets));
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") {
        // "|-- 10.0.0.5" followed by "/32 host LOCAL" marks a local address.
        let mut last: Option<IpAddr> = None;
        for line in text.lines() {
            let t = line.trim();
            if let Some(rest) = t.strip_prefix("|-- ") {
                last = rest.parse().ok();
            } else if t.contains("host LOCAL")
                && let Some(ip) = last
                && !addrs.contains(&ip)
            {
                addrs.push(ip);
            }
        }
    }
    addrs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_interface_addresses_are_local() {
        let mut host = HostState::default();
        assert!(host.is_local("127.0.0.1".parse().unwrap()));
        assert!(host.is_local("::1".parse().unwrap()));
        assert!(!host.is_local("192.0.2.77".parse().unwrap()));
        assert!(!read_local_addrs().is_empty());
    }

    fn nginx_config(pids: Vec<u32>) -> DiscoveredConfig {
        let block = crate::diagnosis::rules::fixtures::nginx_block();
        let mut cfg = ServerConfig::new(
            server_config::ServerKind::Nginx,
            "/etc/nginx/nginx.conf".into(),
        );
        cfg.blocks.push(block);
        DiscoveredConfig {
            kind: server_config::ServerKind::Nginx,
            main_file: "/etc/nginx/nginx.conf".into(),
            running: !pids.is_empty(),
            pids,
            root: crate::evidence::fsroot::FsRoot::Host,
            result: Ok(cfg),
        }
    }

    #[test]
    fn configs_that_miss_the_failures_server_call_for_discovery() {
        use crate::diagnosis::rules::fixtures::listener;
        let running = [nginx_config(vec![812, 813])];
        // nginx[812] listens on 443 and its config names it.
        assert!(configs_cover(&running, 443, &[listener("0.0.0.0", 443)]));
        // An nginx started since the last discovery.
        let mut new_nginx = listener("127.0.0.1", 8443);
        new_nginx.pid = Some(4711);
        assert!(!configs_cover(&running, 8443, &[new_nginx.clone()]));
        assert!(!configs_cover(&[], 8443, &[new_nginx]));
        // Nothing listens: covered only if a config names the port (a
        // config written since, for a server that is down, is not yet).
        assert!(configs_cover(&running, 443, &[]));
        assert!(!configs_cover(&running, 9443, &[]));
        // Another program's listener: no config to find.
        let mut s_server = listener("127.0.0.1", 4433);
        s_server.comm = Some("openssl".into());
        s_server.pid = Some(999);
        assert!(configs_cover(&[], 4433, &[s_server]));
    }

    #[test]
    fn a_remote_server_gets_no_host_state() {
        let mut host = HostState::default();
        let mut o = crate::outcome::sample_failure();
        o.server.ip = Some("192.0.2.77".parse().unwrap());
        o.server.port = Some(443);
        let facts = host.facts_for(&o);
        assert!(!facts.server_is_local);
        assert!(facts.listeners_on_port.is_empty());
        assert!(facts.clock.is_some());
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    /// A system CA certificate, as a one-certificate "served chain".
    fn some_chain() -> Vec<Vec<u8>> {
        let bundle = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap();
        let first = openssl::x509::X509::stack_from_pem(&bundle).unwrap();
        vec![first[0].to_der().unwrap()]
    }

    /// Clients with random SNIs (a scanner, an attacker) cost one analysis
    /// of the chain, not one per name; each still gets its own name check.
    #[test]
    fn random_snis_share_one_chain_analysis() {
        let mut host = HostState::default();
        let chain = some_chain();
        let now = Utc::now();
        for i in 0..500 {
            let name = format!("r{i:04}.example.test");
            let report = host.wire_chain(&chain, Some(&name), now).unwrap();
            assert_eq!(report.name.as_deref(), Some(name.as_str()));
            assert!(
                report
                    .findings
                    .iter()
                    .any(|f| matches!(f, ChainFinding::NameMismatch { name: n, .. } if *n == name))
            );
        }
        assert_eq!(host.wire_chains.len(), 1);
    }
}
