//! Process evidence (H): comm, executable and container of a process, read
//! from procfs once per process and cached (a busy server accepts thousands
//! of connections a second; its identity does not change between them);
//! the TLS library a process maps (a listener without a config file is a
//! TLS server when it does); and how loaded a server process is — open file
//! descriptors against its limit, a stopped process, CPU pressure — for
//! handshakes that die before the server answers.

use std::collections::HashMap;
use std::fs;
use std::io::Read as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::cgroup;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub comm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// The process's cgroup v2 path (or the first v1 one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Container id found in the cgroup path (docker, containerd, cri-o,
    /// podman, kubepods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Runtime that named the cgroup (`docker`, `containerd`, `cri-o`,
    /// `podman`), when the path tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    /// Kubernetes pod UID from a kubepods cgroup path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

impl ProcessInfo {
    /// Reads a live process; `None` once it has exited. `comm` from the kernel
    /// event is used when /proc no longer has it.
    pub fn read(pid: u32) -> Option<ProcessInfo> {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let exe = fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.display().to_string());
        let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map(|text| cgroup::parse(&text))
            .unwrap_or_default();
        Some(ProcessInfo {
            pid,
            comm: comm.trim_end().to_string(),
            exe,
            cgroup: cgroup.path,
            container_id: cgroup.container_id,
            container_runtime: cgroup.runtime.map(|r| r.as_str().to_string()),
            pod_uid: cgroup.pod_uid,
        })
    }
}

/// Per-process cache, invalidated on exec and exit.
#[derive(Default)]
pub struct ProcessCache {
    entries: HashMap<u32, ProcessInfo>,
}

/// Bound on cached processes; past it the cache starts over (cheap to refill).
const MAX_CACHED: usize = 65536;

impl ProcessCache {
    /// The process's info, read on first use. `fallback_comm` names a process
    /// that already exited.
    pub fn get(&mut self, pid: u32, fallback_comm: &str) -> ProcessInfo {
        if let Some(info) = self.entries.get(&pid) {
            return info.clone();
        }
        let info = ProcessInfo::read(pid).unwrap_or_else(|| ProcessInfo {
            pid,
            comm: fallback_comm.to_string(),
            ..Default::default()
        });
        if self.entries.len() >= MAX_CACHED {
            self.entries.clear();
        }
        self.entries.insert(pid, info.clone());
        info
    }

    /// The cached info of a process, without reading procfs.
    pub fn cached(&self, pid: u32) -> Option<&ProcessInfo> {
        self.entries.get(&pid)
    }

    /// Forget a process (it exec'd a new image, or exited).
    pub fn forget(&mut self, pid: u32) {
        self.entries.remove(&pid);
    }
}

/// TLS libraries by file name prefix: OpenSSL (and forks installed under
/// its name), GnuTLS, NSS, wolfSSL, mbed TLS.
const TLS_LIBRARIES: [&str; 6] = [
    "libssl.so",
    "libgnutls.so",
    "libssl3.so",
    "libnss3.so",
    "libwolfssl.so",
    "libmbedtls.so",
];
/// Largest maps file read (a process with a huge address space has a long
/// one; the libraries come early).
const MAX_MAPS_BYTES: u64 = 4 << 20;

/// The TLS library a maps file names, by its file name (e.g. "libssl.so.3").
pub fn tls_library_in_maps(maps: &str) -> Option<String> {
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter_map(|path| path.rsplit('/').next())
        .find(|name| TLS_LIBRARIES.iter().any(|lib| name.starts_with(lib)))
        .map(str::to_string)
}

/// The TLS library process `pid` maps, if any (None also when its maps
/// cannot be read).
pub fn maps_tls_library(pid: u32) -> Option<String> {
    let mut text = String::new();
    fs::File::open(format!("/proc/{pid}/maps"))
        .ok()?
        .take(MAX_MAPS_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    tls_library_in_maps(&text)
}

/// How loaded one server process is now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessLoad {
    pub pid: u32,
    pub comm: String,
    /// `/proc/PID/stat` state: 'R', 'S', 'D', 'T' (stopped), ...
    pub state: char,
    /// Open file descriptors (counted up to the limit and a little past).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_fds: Option<u64>,
    /// The soft RLIMIT_NOFILE ("Max open files").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd_limit: Option<u64>,
    /// CPU pressure of the process's cgroup (cgroup v2 `cpu.pressure`, "some"
    /// avg10, whole percent): the share of the last 10 s its tasks waited
    /// for a CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pressure: Option<u32>,
}

impl ProcessLoad {
    /// Reads process `pid`'s load; None once it has exited.
    pub fn read(pid: u32) -> Option<ProcessLoad> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (comm, state) = parse_stat(&stat)?;
        let fd_limit = fs::read_to_string(format!("/proc/{pid}/limits"))
            .ok()
            .and_then(|t| parse_fd_limit(&t));
        let open_fds = count_fds(pid, fd_limit);
        let cpu_pressure = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .map(str::to_string)
            })
            .and_then(|path| {
                let file = Path::new("/sys/fs/cgroup")
                    .join(path.trim_start_matches('/'))
                    .join("cpu.pressure");
                fs::read_to_string(file).ok()
            })
            .and_then(|t| pressure_some_avg10(&t));
        Some(ProcessLoad {
            pid,
            comm,
            state,
            open_fds,
            fd_limit,
            cpu_pressure,
        })
    }

    /// At (or within two of) its open-file limit: accept() fails with EMFILE.
    pub fn at_fd_limit(&self) -> bool {
        matches!((self.open_fds, self.fd_limit), (Some(open), Some(limit)) if open + 2 >= limit)
    }

    /// Stopped (SIGSTOP, a debugger): it accepts and answers nothing.
    pub fn stopped(&self) -> bool {
        matches!(self.state, 'T' | 't')
    }
}

/// The host's CPU pressure (`/proc/pressure/cpu`, "some" avg10, whole
/// percent).
pub fn host_cpu_pressure() -> Option<u32> {
    fs::read_to_string("/proc/pressure/cpu")
        .ok()
        .and_then(|t| pressure_some_avg10(&t))
}

/// comm and state from `/proc/PID/stat` ("pid (comm) S ..."; comm may hold
/// spaces and parentheses, so it ends at the last ')').
fn parse_stat(stat: &str) -> Option<(String, char)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let state = stat.get(close + 1..)?.trim_start().chars().next()?;
    Some((comm, state))
}

/// The soft limit of "Max open files" in `/proc/PID/limits`.
fn parse_fd_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// "some avg10=12.34 avg60=..." → 12 (percent).
fn pressure_some_avg10(text: &str) -> Option<u32> {
    let value: f64 = text
        .lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|w| w.strip_prefix("avg10="))?
        .parse()
        .ok()?;
    (value.is_finite() && value >= 0.0).then(|| value.min(100.0) as u32)
}

/// Entries of `/proc/PID/fd`, counted up to a little past `limit` (a
/// process with a million descriptors is not walked to the end).
fn count_fds(pid: u32, limit: Option<u64>) -> Option<u64> {
    let cap = limit.unwrap_or(1 << 20).saturating_add(16);
    let entries = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut n = 0u64;
    for _ in entries.flatten() {
        n += 1;
        if n >= cap {
            break;
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_libraries_are_found_in_maps() {
        let maps = "55d0 r-xp 00000000 fe:00 1 /usr/bin/python3.11\n\
                    7f00 r--p 00000000 fe:00 2 /usr/lib/x86_64-linux-gnu/libc.so.6\n\
                    7f01 r--p 00000000 fe:00 3 /usr/lib/x86_64-linux-gnu/libssl.so.3\n";
        assert_eq!(tls_library_in_maps(maps).as_deref(), Some("libssl.so.3"));
        let gnutls = "7f01 r--p 00000000 fe:00 3 /usr/lib/x86_64-linux-gnu/libgnutls.so.30\n";
        assert_eq!(
            tls_library_in_maps(gnutls).as_deref(),
            Some("libgnutls.so.30")
        );
        assert_eq!(
            tls_library_in_maps("7f00 r--p 0 fe:00 2 /usr/lib/libc.so.6\n"),
            None
        );
        assert_eq!(tls_library_in_maps("garbage"), None);
        // The test binary links the system libssl through the openssl crate.
        let _ = openssl::version::version();
        assert!(maps_tls_library(std::process::id()).is_some());
    }

    #[test]
    fn load_facts_parse() {
        assert_eq!(
            parse_stat("42 (my (odd) comm) T 1 2 3"),
            Some(("my (odd) comm".to_string(), 'T'))
        );
        assert_eq!(parse_stat("nonsense"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20                   1048576              files\n";
        assert_eq!(parse_fd_limit(limits), Some(20));
        assert_eq!(
            parse_fd_limit("Max open files unlimited unlimited files"),
            None
        );
        assert_eq!(
            pressure_some_avg10(
                "some avg10=61.50 avg60=20.00 avg300=5.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
            ),
            Some(61)
        );
        assert_eq!(pressure_some_avg10(""), None);
        let full = ProcessLoad {
            open_fds: Some(19),
            fd_limit: Some(20),
            state: 'S',
            ..Default::default()
        };
        assert!(full.at_fd_limit());
        assert!(!full.stopped());
        let roomy = ProcessLoad {
            open_fds: Some(5),
            ..full.clone()
        };
        assert!(!roomy.at_fd_limit());
        assert!(
            ProcessLoad {
                state: 'T',
                ..roomy
            }
            .stopped()
        );
    }

    #[test]
    fn this_process_load_reads() {
        let load = ProcessLoad::read(std::process::id()).unwrap();
        assert!(load.open_fds.is_some_and(|n| n >= 3), "{load:?}");
        assert!(load.fd_limit.is_some(), "{load:?}");
        assert!(!load.at_fd_limit());
        assert!(!load.stopped());
        assert_eq!(ProcessLoad::read(u32::MAX - 3), None);
    }

    #[test]
    fn reads_this_process_and_caches_it() {
        let me = std::process::id();
        let info = ProcessInfo::read(me).expect("own /proc entry");
        assert!(!info.comm.is_empty());
        assert!(info.exe.is_some());
        let mut cache = ProcessCache::default();
        assert_eq!(cache.get(me, "x"), info);
        assert_eq!(cache.get(u32::MAX - 3, "gone").comm, "gone");
    }
}
