//! Process evidence (H): comm, executable and container of a process, read
//! from procfs once per process and cached (a busy server accepts thousands
//! of connections a second; its identity does not change between them).

use std::collections::HashMap;
use std::fs;

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

#[cfg(test)]
mod tests {
    use super::*;

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
