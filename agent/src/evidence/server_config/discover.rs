//! Finding the nginx and apache installations on this host: the running
//! ones from /proc (their command lines name the config they use), plus
//! the distribution default configs no running server uses (a config that
//! names a port while its server is down is evidence for port-not-listening).
//!
//! A server in another mount namespace (a container) is read through its
//! own root ([`FsRoot`]): its config, includes, certificates and logs are
//! the ones it sees, under the paths it names them by.
//!
//! [`discover_with`] keeps each installation's parse in a
//! [`DiscoveryCache`] and reuses it while the fingerprint of its files
//! (identity, size and mtime of every file read and directory listed)
//! holds: a steady host costs a listing of /proc and some `stat`s per
//! discovery, not a parse.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tracing::debug;

use super::{ConfigError, ServerConfig, ServerKind, apache, fingerprint_and_newest, nginx};
use crate::evidence::fsroot::FsRoot;

/// One installation found on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredConfig {
    pub kind: ServerKind,
    pub main_file: PathBuf,
    /// The master/parent process first, then its children (workers also
    /// hold the listening sockets). Empty when not running.
    pub pids: Vec<u32>,
    pub running: bool,
    /// The filesystem the server sees: [`FsRoot::Host`] unless it runs in
    /// a container; `main_file` and every path of the parse are its.
    pub root: FsRoot,
    /// The parse, or why the main file could not be read.
    pub result: Result<ServerConfig, String>,
}

/// What one discovery did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiscoveryStats {
    /// Installations found (running and default configs).
    pub installations: usize,
    /// Parsed, because they were new or one of their files changed.
    pub parsed: usize,
    /// Reused from the last discovery: none of their files changed.
    pub reused: usize,
    /// Parses that stopped at their read budget (some files not read).
    pub over_budget: usize,
    /// Servers whose filesystem could not be told apart from the host's:
    /// nothing of theirs was read.
    pub unreadable_roots: usize,
    /// Installations whose main config file could not be read.
    pub unread: usize,
    pub elapsed_ms: u64,
}

/// Parses kept between discoveries, reused while their files are unchanged.
#[derive(Debug, Default)]
pub struct DiscoveryCache {
    entries: HashMap<CacheKey, Cached>,
}

/// One installation: its kind, filesystem, main file and the options that
/// came from outside the files (command line, environment).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CacheKey {
    kind: ServerKind,
    root: FsRoot,
    main_file: PathBuf,
    options: u64,
}

#[derive(Debug)]
struct Cached {
    /// None: a file changed while it was parsed; parse again next time.
    fingerprint: Option<u64>,
    config: ServerConfig,
}

/// A file written this recently may have changed during the parse that
/// read it (mtimes are not a clock): such a parse is not reused.
const SETTLE: Duration = Duration::from_secs(2);

impl DiscoveryCache {
    /// The parse for `key`: the cached one while its fingerprint holds,
    /// else `parse()` (kept for next time when it succeeded).
    fn parse(
        &mut self,
        key: CacheKey,
        kept: &mut HashMap<CacheKey, Cached>,
        stats: &mut DiscoveryStats,
        parse: impl FnOnce() -> Result<ServerConfig, ConfigError>,
    ) -> Result<ServerConfig, ConfigError> {
        if let Some(cached) = self.entries.remove(&key) {
            let (now, _) = fingerprint_and_newest(&cached.config);
            if cached.fingerprint == Some(now) {
                stats.reused += 1;
                let config = cached.config.clone();
                kept.insert(key, cached);
                return Ok(config);
            }
        }
        stats.parsed += 1;
        let started = SystemTime::now();
        let result = parse();
        if let Ok(config) = &result {
            let (print, newest) = fingerprint_and_newest(config);
            let settled = newest.is_none_or(|t| t + SETTLE < started);
            kept.insert(
                key,
                Cached {
                    fingerprint: settled.then_some(print),
                    config: config.clone(),
                },
            );
        }
        result
    }
}

/// A digest of the options that come from outside the files.
fn options_digest(parts: &[&dyn std::fmt::Debug]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for part in parts {
        format!("{part:?}").hash(&mut hasher);
    }
    hasher.finish()
}

#[derive(Clone, Debug)]
struct Proc {
    pid: u32,
    ppid: u32,
    comm: String,
}

/// Every nginx master and apache parent on the host with its parsed
/// config, then the host's default config paths that exist and that no
/// running server of the same kind uses (`running: false`).
///
/// Processes in other mount namespaces (containers) are reported with the
/// paths as they see them, read through `/proc/PID/root`; a master without
/// `-c` there uses the default config inside its container.
pub fn discover() -> Vec<DiscoveredConfig> {
    discover_with(&mut DiscoveryCache::default()).0
}

/// [`discover`], reusing the parses of `cache` whose files did not change
/// (and keeping this discovery's parses in it for the next).
pub fn discover_with(cache: &mut DiscoveryCache) -> (Vec<DiscoveredConfig>, DiscoveryStats) {
    let started = Instant::now();
    let mut stats = DiscoveryStats::default();
    let mut kept: HashMap<CacheKey, Cached> = HashMap::new();
    let procs = list_processes();
    let by_pid: HashMap<u32, &Proc> = procs.iter().map(|p| (p.pid, p)).collect();
    let mut out: Vec<DiscoveredConfig> = Vec::new();

    for p in &procs {
        let Some(kind) = server_kind(&p.comm) else {
            continue;
        };
        // Workers are children of a process of the same kind; only the
        // master/parent carries the real command line and options.
        let parent_same = by_pid
            .get(&p.ppid)
            .is_some_and(|parent| server_kind(&parent.comm) == Some(kind));
        if parent_same {
            continue;
        }
        let Some(args) = cmdline(p.pid) else {
            continue; // gone, or a kernel thread
        };
        // A worker or cache process whose master died is reparented to
        // init; its title says what it is, and it carries no options.
        if kind == ServerKind::Nginx
            && args.first().is_some_and(|a| {
                a.starts_with("nginx: ") && !a.starts_with("nginx: master process")
            })
        {
            continue;
        }
        let mut pids = vec![p.pid];
        pids.extend(procs.iter().filter(|c| c.ppid == p.pid).map(|c| c.pid));
        let root = FsRoot::of_process(p.pid);
        if !root.is_host() {
            debug!(
                pid = p.pid,
                ?kind,
                "server in another mount namespace: read through its root"
            );
        }
        let (main_file, result) = match kind {
            ServerKind::Nginx => {
                let args = nginx_original_args(&args);
                let main = nginx::config_path_from_cmdline(&args);
                let mut options = nginx::options_from_cmdline(&args);
                options.root = root.clone();
                let key = CacheKey {
                    kind,
                    root: root.clone(),
                    main_file: main.clone(),
                    options: options_digest(&[&options.prefix]),
                };
                let result = cache
                    .parse(key, &mut kept, &mut stats, || {
                        nginx::parse_with(&main, &options)
                    })
                    .map_err(|e| describe(&e, &root));
                (main, result)
            }
            ServerKind::Apache => {
                let main = apache::config_path_from_cmdline_in(&args, &root);
                let mut options = apache::options_from_cmdline(&args);
                options.env = environ(p.pid);
                options.root = root.clone();
                let mut env: Vec<_> = options.env.iter().collect();
                env.sort();
                let key = CacheKey {
                    kind,
                    root: root.clone(),
                    main_file: main.clone(),
                    options: options_digest(&[&options.server_root, &options.defines, &env]),
                };
                let result = cache
                    .parse(key, &mut kept, &mut stats, || {
                        apache::parse_with(&main, &options)
                    })
                    .map_err(|e| describe(&e, &root));
                (main, result)
            }
        };
        // Two masters on one config (rare: a stale master after a failed
        // upgrade) are one installation. The same path in two containers
        // is two.
        if let Some(existing) = out.iter_mut().find(|d| {
            d.kind == kind && d.root.same_view(&root) && root.same_file(&d.main_file, &main_file)
        }) {
            existing.pids.extend(pids);
            continue;
        }
        out.push(DiscoveredConfig {
            kind,
            main_file,
            pids,
            running: true,
            root,
            result,
        });
    }

    let defaults: [(ServerKind, &str); 3] = [
        (ServerKind::Nginx, nginx::DEFAULT_CONFIG),
        (ServerKind::Apache, apache::DEBIAN_CONFIG),
        (ServerKind::Apache, apache::RHEL_CONFIG),
    ];
    for (kind, path) in defaults {
        let path = Path::new(path);
        if !path.exists() {
            continue;
        }
        // A container's /etc/nginx/nginx.conf is not the host's.
        if out.iter().any(|d| {
            d.kind == kind && d.root.is_host() && FsRoot::Host.same_file(&d.main_file, path)
        }) {
            continue;
        }
        let key = CacheKey {
            kind,
            root: FsRoot::Host,
            main_file: path.to_path_buf(),
            options: 0,
        };
        let result = cache
            .parse(key, &mut kept, &mut stats, || match kind {
                ServerKind::Nginx => nginx::parse(path),
                ServerKind::Apache => apache::parse(path),
            })
            .map_err(|e| crate::text::Chain(&e).to_string());
        out.push(DiscoveredConfig {
            kind,
            main_file: path.to_path_buf(),
            pids: Vec::new(),
            running: false,
            root: FsRoot::Host,
            result,
        });
    }
    // Installations not seen this time are forgotten.
    cache.entries = kept;
    stats.installations = out.len();
    for d in &out {
        match (&d.root, &d.result) {
            (FsRoot::Unreadable { .. }, _) => stats.unreadable_roots += 1,
            (_, Err(_)) => stats.unread += 1,
            (_, Ok(cfg)) if cfg.over_budget => stats.over_budget += 1,
            _ => {}
        }
    }
    stats.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    (out, stats)
}

/// The server software a process name belongs to (nginx, apache2/httpd).
pub fn server_kind(comm: &str) -> Option<ServerKind> {
    match comm {
        "nginx" => Some(ServerKind::Nginx),
        "apache2" | "httpd" => Some(ServerKind::Apache),
        _ => None,
    }
}

fn list_processes() -> Vec<Proc> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(Result::ok)
        .filter_map(|p| {
            // A process may exit between listing and reading: skip it.
            let stat = p.stat().ok()?;
            Some(Proc {
                pid: u32::try_from(stat.pid).ok()?,
                ppid: u32::try_from(stat.ppid).ok()?,
                comm: stat.comm,
            })
        })
        .collect()
}

fn cmdline(pid: u32) -> Option<Vec<String>> {
    let process = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
    let args = process.cmdline().ok()?;
    (!args.is_empty()).then_some(args)
}

fn environ(pid: u32) -> HashMap<String, String> {
    let Some(process) = i32::try_from(pid)
        .ok()
        .and_then(|pid| procfs::process::Process::new(pid).ok())
    else {
        return HashMap::new();
    };
    process
        .environ()
        .map(|env| {
            env.into_iter()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// nginx rewrites its master's argv into one string, "nginx: master
/// process /usr/sbin/nginx -c /etc/nginx/nginx.conf -g daemon on;". Recover
/// the original words from it (split on whitespace: a config path with a
/// space is not recovered). A master that kept its argv (master_process
/// off) is returned as is.
pub(crate) fn nginx_original_args(cmdline: &[String]) -> Vec<String> {
    if let [single] = cmdline
        && let Some(rest) = single.strip_prefix("nginx: master process ")
    {
        return rest.split_whitespace().map(str::to_string).collect();
    }
    cmdline.to_vec()
}

/// Why a main config could not be read, saying where it was looked for
/// when that is not the host's filesystem.
fn describe(e: &super::ConfigError, root: &FsRoot) -> String {
    match (root.context(), root.base()) {
        (Some(context), Some(base)) => {
            format!(
                "{e} ({context}, read through {})",
                base.display(),
                e = crate::text::Chain(e)
            )
        }
        _ => crate::text::Chain(e).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::fs::File;

    fn key(main: &Path) -> CacheKey {
        CacheKey {
            kind: ServerKind::Nginx,
            root: FsRoot::Host,
            main_file: main.to_path_buf(),
            options: 0,
        }
    }

    /// Sets a file's mtime well in the past, as for a config written long
    /// before the agent looked.
    fn age(path: &Path) {
        let past = SystemTime::now() - Duration::from_secs(3600);
        File::open(path).unwrap().set_modified(past).unwrap();
    }

    #[test]
    fn a_parse_is_reused_until_one_of_its_files_changes() {
        let dir = std::env::temp_dir().join(format!("tlsdoctor-dcache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        let main = dir.join("nginx.conf");
        std::fs::write(&main, "http { include conf.d/*.conf; }\n").unwrap();
        let site = dir.join("conf.d/site.conf");
        std::fs::write(&site, "server { listen 8443 ssl; }\n").unwrap();
        for p in [&main, &site, &dir.join("conf.d")] {
            age(p);
        }
        let mut cache = DiscoveryCache::default();
        let parses = Cell::new(0);
        let round = |cache: &mut DiscoveryCache| {
            let mut kept = HashMap::new();
            let mut stats = DiscoveryStats::default();
            let config = cache
                .parse(key(&main), &mut kept, &mut stats, || {
                    parses.set(parses.get() + 1);
                    nginx::parse(&main)
                })
                .unwrap();
            cache.entries = kept;
            (config, stats)
        };
        let (first, stats) = round(&mut cache);
        assert_eq!((stats.parsed, stats.reused), (1, 0));
        let (again, stats) = round(&mut cache);
        assert_eq!((stats.parsed, stats.reused), (0, 1));
        assert_eq!(again, first);
        assert_eq!(parses.get(), 1);
        // An edited include is parsed again.
        std::fs::write(&site, "server { listen 9443 ssl; }\n").unwrap();
        age(&site);
        age(&dir.join("conf.d"));
        let (edited, stats) = round(&mut cache);
        assert_eq!((stats.parsed, stats.reused), (1, 0));
        assert_eq!(edited.blocks[0].listens[0].port, 9443);
        // So is a file added where a glob looks.
        let added = dir.join("conf.d/more.conf");
        std::fs::write(&added, "server { listen 10443 ssl; }\n").unwrap();
        age(&added);
        age(&dir.join("conf.d"));
        let (grown, _) = round(&mut cache);
        assert_eq!(grown.blocks.len(), 2);
        assert_eq!(parses.get(), 3);
        // A file written moments ago may change under the parse: not
        // reused until it has settled.
        std::fs::write(&site, "server { listen 11443 ssl; }\n").unwrap();
        round(&mut cache);
        let (_, stats) = round(&mut cache);
        assert_eq!(stats.parsed, 1, "a fresh file is parsed again");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
