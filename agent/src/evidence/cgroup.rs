//! Container and pod identity from a process's `/proc/PID/cgroup`.
//!
//! Container runtimes and the kubelet name cgroups after what they run, so
//! the path alone tells the container id, often the runtime, and under
//! Kubernetes the pod UID — with no API call and no privilege beyond reading
//! procfs. The formats recognised (cgroup v1 and v2 alike; v1 files have one
//! line per hierarchy, v2 a single `0::` line):
//!
//! | who | cgroup driver | path |
//! | --- | --- | --- |
//! | kubelet, any runtime | cgroupfs | `/kubepods/besteffort/pod<uid>/<id>`, `/kubepods/burstable/pod<uid>/<id>`, `/kubepods/pod<uid>/<id>` (guaranteed) |
//! | kubelet + containerd | systemd | `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope` |
//! | kubelet + CRI-O | systemd | `.../kubepods-pod<uid>.slice/crio-<id>.scope` (cgroupfs: `.../pod<uid>/crio-<id>`) |
//! | kubelet + docker (cri-dockerd) | systemd | `.../docker-<id>.scope` |
//! | docker | cgroupfs / systemd | `/docker/<id>` / `/system.slice/docker-<id>.scope` |
//! | podman | cgroupfs / systemd | `/libpod_parent/libpod-<id>` / `/machine.slice/libpod-<id>.scope` |
//! | nerdctl (containerd) | systemd | `/system.slice/nerdctl-<id>.scope` |
//!
//! A bare id under a pod (the cgroupfs driver) does not say which runtime
//! made it; the API server's `containerID` (`containerd://<id>`) does, and
//! fills it in later (see `crate::k8s`). Inside a private cgroup namespace
//! the path is `/`: nothing can be said, which is not an error. Runtime
//! helper processes (`crio-conmon-<id>`, `libpod-conmon-<id>`) are not the
//! container and are not taken for it.

/// What a cgroup path says about containers. Everything is optional: a host
/// process has none of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupInfo {
    /// The unified (v2) path, else the first v1 hierarchy's.
    pub path: Option<String>,
    /// Container id: 64 lower-case hex digits.
    pub container_id: Option<String>,
    pub runtime: Option<Runtime>,
    /// Kubernetes pod UID, with dashes (`8d6f...-...`), or the 32 hex digits
    /// the kubelet gives static pods.
    pub pod_uid: Option<String>,
}

/// A container runtime recognised from its cgroup naming.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
}

impl Runtime {
    /// The name used in journal records and as `container.runtime.name`
    /// (the semantic conventions' examples: `docker`, `containerd`).
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
        }
    }

    /// The runtime of a Kubernetes `containerID` scheme (`containerd://...`).
    pub fn from_scheme(scheme: &str) -> Option<Runtime> {
        match scheme {
            "docker" => Some(Runtime::Docker),
            "containerd" => Some(Runtime::Containerd),
            "cri-o" | "crio" => Some(Runtime::CriO),
            "podman" => Some(Runtime::Podman),
            _ => None,
        }
    }
}

/// Parses the text of `/proc/PID/cgroup`. Never fails: unknown layouts
/// simply give fewer fields.
pub fn parse(text: &str) -> CgroupInfo {
    let mut unified = None;
    let mut v1 = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(_controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" {
            unified.get_or_insert(path);
        } else {
            v1.push(path);
        }
    }
    let mut info = CgroupInfo {
        path: unified.or(v1.first().copied()).map(str::to_string),
        ..Default::default()
    };
    // The unified path first; on hybrid hosts it can be `/` (or a systemd
    // session) while the v1 hierarchies hold the container's path, so the
    // first path that names a container wins.
    for path in unified.into_iter().chain(v1) {
        let from_path = parse_path(path);
        if from_path.container_id.is_some() || from_path.pod_uid.is_some() {
            info.container_id = from_path.container_id;
            info.runtime = from_path.runtime;
            info.pod_uid = from_path.pod_uid;
            if info.container_id.is_some() {
                break;
            }
        }
    }
    info
}

/// Container id, runtime and pod UID of one cgroup path (`path` left unset).
pub fn parse_path(path: &str) -> CgroupInfo {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut info = CgroupInfo::default();
    // The innermost container wins: in a kind or docker-in-docker node the
    // outer segment is the node's container, the inner one the pod's.
    for (i, segment) in segments.iter().enumerate().rev() {
        let parent = i.checked_sub(1).and_then(|p| segments.get(p)).copied();
        if let Some((runtime, id)) = container_segment(segment, parent) {
            info.container_id = Some(id);
            info.runtime = runtime;
            break;
        }
    }
    // Pod UIDs only under the kubelet's own hierarchy, so that an unrelated
    // `pod...` directory is never taken for one.
    if segments.iter().any(|s| s.starts_with("kubepods")) {
        info.pod_uid = segments.iter().rev().find_map(|s| pod_segment(s));
    }
    info
}

/// A container's own cgroup segment: `<prefix>-<id>[.scope]`,
/// `<slice>:<prefix>:<id>` or a bare `<id>`.
fn container_segment(segment: &str, parent: Option<&str>) -> Option<(Option<Runtime>, String)> {
    let segment = segment.strip_suffix(".scope").unwrap_or(segment);
    let (prefix, id) = if let Some((rest, id)) = segment.rsplit_once(':') {
        // `kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>`, the
        // systemd-driver cgroupsPath some runtimes use as the name itself.
        (rest.rsplit(':').next(), id)
    } else if let Some((prefix, id)) = segment.rsplit_once('-') {
        (Some(prefix), id)
    } else {
        (None, segment)
    };
    if !is_container_id(id) {
        return None;
    }
    let runtime = match prefix {
        // The runtime's monitor process for that container, not the container.
        Some(p) if p.ends_with("conmon") => return None,
        Some("docker") => Some(Runtime::Docker),
        Some("cri-containerd" | "nerdctl") => Some(Runtime::Containerd),
        Some("crio") => Some(Runtime::CriO),
        Some("libpod") => Some(Runtime::Podman),
        Some(_) => None,
        // Docker's cgroupfs driver: `/docker/<id>`. Under a pod, a bare id
        // may be any runtime's.
        None if parent == Some("docker") => Some(Runtime::Docker),
        None => None,
    };
    Some((runtime, id.to_ascii_lowercase()))
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `pod<uid>` (cgroupfs) or `kubepods[-<qos>]-pod<uid_underscored>.slice`
/// (systemd); the UID with dashes.
fn pod_segment(segment: &str) -> Option<String> {
    // `<slice>:<prefix>:<id>` names the pod in its slice part.
    let segment = segment.split(':').next().unwrap_or(segment);
    let segment = segment.strip_suffix(".slice").unwrap_or(segment);
    let uid = match segment.strip_prefix("pod") {
        // cgroupfs: the UID keeps its dashes.
        Some(uid) => uid,
        // systemd separates words with `-`, so the UID (whose dashes became
        // underscores) is the last word.
        None => segment.rsplit('-').next()?.strip_prefix("pod")?,
    };
    let uid = uid.replace('_', "-").to_ascii_lowercase();
    is_pod_uid(&uid).then_some(uid)
}

/// A UUID (`8-4-4-4-12` hex digits), or the 32 hex digits of a static pod's
/// UID (the kubelet hashes the manifest).
fn is_pod_uid(s: &str) -> bool {
    let hex = |part: &str| part.bytes().all(|b| b.is_ascii_hexdigit());
    if s.len() == 32 {
        return hex(s);
    }
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && hex(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "3f4e2b1a9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    const UID: &str = "5f9c2a4e-1b7d-4c3a-9e8f-0a1b2c3d4e5f";
    const UID_: &str = "5f9c2a4e_1b7d_4c3a_9e8f_0a1b2c3d4e5f";

    fn v2(path: &str) -> CgroupInfo {
        parse(&format!("0::{path}\n"))
    }

    fn expect(info: &CgroupInfo, runtime: Option<Runtime>, pod: Option<&str>) {
        assert_eq!(info.container_id.as_deref(), Some(CID), "{info:?}");
        assert_eq!(info.runtime, runtime, "{info:?}");
        assert_eq!(info.pod_uid.as_deref(), pod, "{info:?}");
    }

    #[test]
    fn kubepods_cgroupfs_driver_every_qos_class() {
        for qos in ["besteffort/", "burstable/", ""] {
            let path = format!("/kubepods/{qos}pod{UID}/{CID}");
            // cgroup v1 (one line per hierarchy) and v2 alike.
            let v1 = parse(&format!(
                "12:memory:{path}\n11:cpu,cpuacct:{path}\n1:name=systemd:{path}\n"
            ));
            expect(&v1, None, Some(UID));
            assert_eq!(v1.path.as_deref(), Some(path.as_str()));
            expect(&v2(&path), None, Some(UID));
        }
        // CRI-O with the cgroupfs driver prefixes the id.
        expect(
            &v2(&format!("/kubepods/burstable/pod{UID}/crio-{CID}")),
            Some(Runtime::CriO),
            Some(UID),
        );
    }

    #[test]
    fn kubepods_systemd_driver_per_runtime() {
        for (scope, runtime) in [
            (format!("cri-containerd-{CID}.scope"), Runtime::Containerd),
            (format!("crio-{CID}.scope"), Runtime::CriO),
            (format!("docker-{CID}.scope"), Runtime::Docker),
        ] {
            let burstable = format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/{scope}"
            );
            expect(&v2(&burstable), Some(runtime), Some(UID));
            let besteffort = format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/{scope}"
            );
            expect(&v2(&besteffort), Some(runtime), Some(UID));
            // Guaranteed pods sit right under kubepods.slice.
            let guaranteed = format!("/kubepods.slice/kubepods-pod{UID_}.slice/{scope}");
            expect(&v2(&guaranteed), Some(runtime), Some(UID));
        }
    }

    #[test]
    fn systemd_cgroups_path_with_colons() {
        let path = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice:cri-containerd:{CID}"
        );
        expect(&v2(&path), Some(Runtime::Containerd), Some(UID));
    }

    #[test]
    fn static_pod_uid_is_a_hash() {
        let uid = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e";
        let info = v2(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{CID}.scope"
        ));
        expect(&info, Some(Runtime::Containerd), Some(uid));
    }

    #[test]
    fn plain_docker_podman_and_nerdctl() {
        expect(&v2(&format!("/docker/{CID}")), Some(Runtime::Docker), None);
        expect(
            &v2(&format!("/system.slice/docker-{CID}.scope")),
            Some(Runtime::Docker),
            None,
        );
        // cgroup v1 docker: every hierarchy names the container.
        let v1 = parse(&format!(
            "12:pids:/docker/{CID}\n11:memory:/docker/{CID}\n0::/system.slice/containerd.service\n"
        ));
        expect(&v1, Some(Runtime::Docker), None);
        // `path` stays the unified one, as before.
        assert_eq!(v1.path.as_deref(), Some("/system.slice/containerd.service"));
        expect(
            &v2(&format!("/machine.slice/libpod-{CID}.scope")),
            Some(Runtime::Podman),
            None,
        );
        expect(
            &v2(&format!("/libpod_parent/libpod-{CID}")),
            Some(Runtime::Podman),
            None,
        );
        expect(
            &v2(&format!("/system.slice/nerdctl-{CID}.scope")),
            Some(Runtime::Containerd),
            None,
        );
        // Rootless docker under a user's systemd.
        expect(
            &v2(&format!(
                "/user.slice/user-1000.slice/user@1000.service/docker-{CID}.scope"
            )),
            Some(Runtime::Docker),
            None,
        );
    }

    #[test]
    fn nested_node_container_yields_the_pod_container() {
        // kind: the node is a docker container, the pod's container inside.
        let node = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let info = v2(&format!(
            "/docker/{node}/kubepods/besteffort/pod{UID}/{CID}"
        ));
        expect(&info, None, Some(UID));
    }

    #[test]
    fn paths_relative_to_the_readers_cgroup_namespace() {
        // The agent's pod has a private cgroup namespace: other cgroups show
        // relative to it.
        expect(
            &v2(&format!(
                "/../../kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope"
            )),
            Some(Runtime::Containerd),
            Some(UID),
        );
        // A sibling container of the agent's own pod: no pod segment.
        expect(
            &v2(&format!("/../cri-containerd-{CID}.scope")),
            Some(Runtime::Containerd),
            None,
        );
    }

    #[test]
    fn conmon_is_not_the_container() {
        for path in [
            format!("/machine.slice/libpod-conmon-{CID}.scope"),
            format!("/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{CID}.scope"),
        ] {
            assert_eq!(v2(&path).container_id, None, "{path}");
        }
    }

    #[test]
    fn pod_sandbox_and_pod_level_cgroups_give_only_the_uid() {
        let info = v2(&format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"
        ));
        assert_eq!(info.container_id, None);
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
    }

    #[test]
    fn host_processes_and_cgroup_namespaces_give_nothing() {
        for text in [
            "0::/\n",
            "0::/system.slice/nginx.service\n",
            "0::/user.slice/user-0.slice/session-1.scope\n",
            // cgroup v1 in a private cgroup namespace.
            "12:memory:/\n11:cpu,cpuacct:/\n1:name=systemd:/\n",
            "",
            "garbage without colons\n",
        ] {
            let info = parse(text);
            assert_eq!(info.container_id, None, "{text:?}");
            assert_eq!(info.runtime, None, "{text:?}");
            assert_eq!(info.pod_uid, None, "{text:?}");
        }
        assert_eq!(parse("0::/\n").path.as_deref(), Some("/"));
        assert_eq!(parse("").path, None);
    }

    #[test]
    fn not_fooled_by_look_alikes() {
        // A `pod...` directory outside kubepods, short ids, bad UIDs.
        assert_eq!(
            v2(&format!("/system.slice/pod{UID}/x")).pod_uid,
            None,
            "outside kubepods"
        );
        assert_eq!(v2("/docker/3f4e2b1a").container_id, None);
        assert_eq!(
            v2(&format!("/kubepods/besteffort/pod{}/{CID}", "not-a-uid")).pod_uid,
            None
        );
        let upper = CID.to_ascii_uppercase();
        assert_eq!(
            v2(&format!("/docker/{upper}")).container_id.as_deref(),
            Some(CID)
        );
    }

    #[test]
    fn unified_cgroup_is_preferred_as_path() {
        let text = "12:cpu:/a\n0::/system.slice/nginx.service\n";
        assert_eq!(
            parse(text).path.as_deref(),
            Some("/system.slice/nginx.service")
        );
        assert_eq!(parse("3:memory:/x\n").path.as_deref(), Some("/x"));
    }

    #[test]
    fn runtime_names_and_schemes() {
        for r in [
            Runtime::Docker,
            Runtime::Containerd,
            Runtime::CriO,
            Runtime::Podman,
        ] {
            assert_eq!(Runtime::from_scheme(r.as_str()), Some(r));
        }
        assert_eq!(Runtime::from_scheme("crio"), Some(Runtime::CriO));
        assert_eq!(Runtime::from_scheme("rkt"), None);
    }
}
