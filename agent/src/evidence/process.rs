//! Process evidence (H): comm, executable and container of a process, read
//! from procfs once per process and cached (a busy server accepts thousands
//! of connections a second; its identity does not change between them).

use std::collections::HashMap;
use std::fs;

use serde::{Deserialize, Serialize};

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
            .ok()
            .and_then(|text| cgroup_path(&text));
        let container_id = cgroup.as_deref().and_then(container_id);
        Some(ProcessInfo {
            pid,
            comm: comm.trim_end().to_string(),
            exe,
            cgroup,
            container_id,
        })
    }
}

/// The unified (v2) cgroup path, else the first controller's.
fn cgroup_path(text: &str) -> Option<String> {
    let mut first = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(_controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" {
            return Some(path.to_string());
        }
        first.get_or_insert_with(|| path.to_string());
    }
    first
}

/// A 64-hex-digit container id in a cgroup path, as runtimes name them:
/// `/docker/<id>`, `.../cri-containerd-<id>.scope`, `.../crio-<id>.scope`,
/// `.../libpod-<id>.scope`, `/kubepods/.../<id>`.
pub fn container_id(cgroup: &str) -> Option<String> {
    cgroup.rsplit('/').find_map(|segment| {
        let segment = segment.strip_suffix(".scope").unwrap_or(segment);
        let candidate = segment.rsplit(['-', ':']).next().unwrap_or(segment);
        (candidate.len() == 64 && candidate.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| candidate.to_ascii_lowercase())
    })
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

    /// Forget a process (it exec'd a new image, or exited).
    pub fn forget(&mut self, pid: u32) {
        self.entries.remove(&pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_from_runtime_cgroup_paths() {
        let id = "3f4e2b1a9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
        for path in [
            format!("/docker/{id}"),
            format!("/system.slice/cri-containerd-{id}.scope"),
            format!("/kubepods.slice/kubepods-burstable.slice/crio-{id}.scope"),
            format!("/machine.slice/libpod-{id}.scope"),
            format!("/kubepods/besteffort/pod1234/{id}"),
        ] {
            assert_eq!(container_id(&path).as_deref(), Some(id), "{path}");
        }
        assert_eq!(
            container_id("/user.slice/user-0.slice/session-1.scope"),
            None
        );
    }

    #[test]
    fn unified_cgroup_is_preferred() {
        let text = "12:cpu:/a\n0::/system.slice/nginx.service\n";
        assert_eq!(
            cgroup_path(text).as_deref(),
            Some("/system.slice/nginx.service")
        );
        assert_eq!(cgroup_path("3:memory:/x\n").as_deref(), Some("/x"));
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
