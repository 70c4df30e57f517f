//! Finding the nginx and apache installations on this host: the running
//! ones from /proc (their command lines name the config they use), plus
//! the distribution default configs no running server uses (a config that
//! names a port while its server is down is evidence for port-not-listening).
//!
//! A server in another mount namespace (a container) is read through its
//! own root ([`FsRoot`]): its config, includes, certificates and logs are
//! the ones it sees, under the paths it names them by.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tracing::debug;

use super::{ServerConfig, ServerKind, apache, nginx};
use crate::evidence::fsroot::FsRoot;

/// One installation found on the host.
#[derive(Clone, Debug)]
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
                let result = nginx::parse_with(&main, &options).map_err(|e| describe(&e, &root));
                (main, result)
            }
            ServerKind::Apache => {
                let main = apache::config_path_from_cmdline_in(&args, &root);
                let mut options = apache::options_from_cmdline(&args);
                options.env = environ(p.pid);
                options.root = root.clone();
                let result = apache::parse_with(&main, &options).map_err(|e| describe(&e, &root));
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
        let result = match kind {
            ServerKind::Nginx => nginx::parse(path),
            ServerKind::Apache => apache::parse(path),
        }
        .map_err(|e| e.to_string());
        out.push(DiscoveredConfig {
            kind,
            main_file: path.to_path_buf(),
            pids: Vec::new(),
            running: false,
            root: FsRoot::Host,
            result,
        });
    }
    out
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
            format!("{e} ({context}, read through {})", base.display())
        }
        _ => e.to_string(),
    }
}
