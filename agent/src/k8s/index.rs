//! The pod index: pod UID → (namespace, name) and container id →
//! (container name, pod), for the pods of this node, kept current from the
//! API server's watch events. Pure: no I/O, tested with k8s-openapi `Pod`s.

use std::collections::HashMap;
use std::sync::RwLock;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::runtime::watcher::Event;

use crate::evidence::cgroup::Runtime;
use crate::outcome::{Endpoint, K8sPod};

#[derive(Clone, Debug, PartialEq, Eq)]
struct PodEntry {
    namespace: Option<String>,
    name: Option<String>,
    /// Container ids indexed for this pod, to drop them when it changes.
    containers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ContainerEntry {
    pod_uid: String,
    name: String,
    runtime: Option<Runtime>,
}

/// Pods of this node by UID, and their containers by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodIndex {
    pods: HashMap<String, PodEntry>,
    containers: HashMap<String, ContainerEntry>,
}

impl PodIndex {
    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    pub fn containers(&self) -> usize {
        self.containers.len()
    }

    /// Adds or replaces a pod (added or modified). A pod without a UID (never
    /// from a real API server) is ignored.
    pub fn upsert(&mut self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
            return;
        };
        let uid = uid.to_ascii_lowercase();
        self.remove_uid(&uid);
        let mut ids = Vec::new();
        if let Some(status) = &pod.status {
            let statuses = [
                &status.container_statuses,
                &status.init_container_statuses,
                &status.ephemeral_container_statuses,
            ];
            for status in statuses.into_iter().flatten().flatten() {
                for (runtime, id) in container_ids(status) {
                    self.containers.insert(
                        id.clone(),
                        ContainerEntry {
                            pod_uid: uid.clone(),
                            name: status.name.clone(),
                            runtime,
                        },
                    );
                    ids.push(id);
                }
            }
        }
        self.pods.insert(
            uid,
            PodEntry {
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                containers: ids,
            },
        );
    }

    /// Drops a deleted pod and its containers.
    pub fn remove(&mut self, pod: &Pod) {
        if let Some(uid) = pod.metadata.uid.as_deref() {
            self.remove_uid(&uid.to_ascii_lowercase());
        }
    }

    fn remove_uid(&mut self, uid: &str) {
        if let Some(old) = self.pods.remove(uid) {
            for id in old.containers {
                // A container id belongs to one pod; check anyway, so that a
                // stale entry can never take another pod's container away.
                if self.containers.get(&id).is_some_and(|c| c.pod_uid == uid) {
                    self.containers.remove(&id);
                }
            }
        }
    }

    /// Fills in what the index knows about an endpoint's pod and container:
    /// pod name and namespace by the pod UID the cgroup gave (or the
    /// container's pod), container name and runtime by container id. An
    /// endpoint the index does not know is left as it is.
    pub fn enrich(&self, endpoint: &mut Endpoint) {
        let container = endpoint
            .container_id
            .as_deref()
            .and_then(|id| self.containers.get(id));
        let cgroup_uid = endpoint.k8s.as_ref().and_then(|k| k.pod_uid.clone());
        let uid = cgroup_uid.or_else(|| container.map(|c| c.pod_uid.clone()));
        let pod = uid.as_deref().and_then(|u| self.pods.get(u));
        // The container counts only if it is the pod's (the cgroup is the
        // kernel's word on which pod the process is in).
        let container = container.filter(|c| uid.as_deref() == Some(c.pod_uid.as_str()));
        if pod.is_none() && container.is_none() {
            return;
        }
        let k8s = endpoint.k8s.get_or_insert_with(K8sPod::default);
        if k8s.pod_uid.is_none() {
            k8s.pod_uid = uid;
        }
        if let Some(pod) = pod {
            k8s.pod = pod.name.clone();
            k8s.namespace = pod.namespace.clone();
        }
        if let Some(c) = container {
            k8s.container = Some(c.name.clone());
            if endpoint.container_runtime.is_none() {
                endpoint.container_runtime = c.runtime.map(|r| r.as_str().to_string());
            }
        }
    }
}

/// The container ids of a status: the running one and the one it replaced
/// (`lastState.terminated`): a failure of the previous instance can still be
/// in the pipeline when the restart is reported.
fn container_ids(status: &ContainerStatus) -> Vec<(Option<Runtime>, String)> {
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.container_id.as_deref());
    [status.container_id.as_deref(), last]
        .into_iter()
        .flatten()
        .filter_map(parse_container_id)
        .collect()
}

/// `containerd://<id>`, `cri-o://<id>`, `docker://<id>` → (runtime, id), the
/// id lower-case as cgroup paths have it.
pub fn parse_container_id(text: &str) -> Option<(Option<Runtime>, String)> {
    let (runtime, id) = match text.split_once("://") {
        Some((scheme, id)) => (Runtime::from_scheme(scheme), id),
        None => (None, text),
    };
    let id = id.trim();
    (!id.is_empty()).then(|| (runtime, id.to_ascii_lowercase()))
}

/// Applies the watcher's events to the shared index. A relist (`Init` …
/// `InitDone`) is built aside and swapped in whole, so lookups keep the old
/// index meanwhile and pods deleted while the watch was down disappear.
#[derive(Default)]
pub struct IndexUpdater {
    relist: Option<PodIndex>,
}

impl IndexUpdater {
    /// Applies one event; true when it completed a (re)list.
    pub fn apply(&mut self, event: Event<Pod>, index: &RwLock<PodIndex>) -> bool {
        // A writer that panicked left a consistent map (every update is one
        // insert or remove); keep using it rather than stop enriching.
        let write = || index.write().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Init => self.relist = Some(PodIndex::default()),
            Event::InitApply(pod) => match &mut self.relist {
                Some(relist) => relist.upsert(&pod),
                None => write().upsert(&pod),
            },
            Event::InitDone => {
                if let Some(relist) = self.relist.take() {
                    *write() = relist;
                }
                return true;
            }
            Event::Apply(pod) => write().upsert(&pod),
            Event::Delete(pod) => write().remove(&pod),
        }
        false
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    pub const UID_A: &str = "5f9c2a4e-1b7d-4c3a-9e8f-0a1b2c3d4e5f";
    pub const UID_B: &str = "11111111-2222-3333-4444-555555555555";

    pub fn id(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    fn status(name: &str, id: Option<String>, last: Option<String>) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            container_id: id,
            last_state: last.map(|l| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    container_id: Some(l),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A pod with one container per (name, containerID).
    pub fn pod(uid: &str, ns: &str, name: &str, containers: &[(&str, String)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(
                    containers
                        .iter()
                        .map(|(n, id)| status(n, Some(id.clone()), None))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn endpoint(container: Option<String>, pod_uid: Option<&str>) -> Endpoint {
        Endpoint {
            pid: Some(1),
            container_id: container,
            k8s: pod_uid.map(|u| K8sPod {
                pod_uid: Some(u.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn k8s(index: &PodIndex, ep: &Endpoint) -> Endpoint {
        let mut ep = ep.clone();
        index.enrich(&mut ep);
        ep
    }

    #[test]
    fn container_id_schemes() {
        let a = id('a');
        for (text, runtime) in [
            (format!("containerd://{a}"), Some(Runtime::Containerd)),
            (format!("cri-o://{a}"), Some(Runtime::CriO)),
            (format!("docker://{a}"), Some(Runtime::Docker)),
            (format!("rkt://{a}"), None),
            (a.clone(), None),
        ] {
            assert_eq!(
                parse_container_id(&text),
                Some((runtime, a.clone())),
                "{text}"
            );
        }
        assert_eq!(
            parse_container_id(&format!("containerd://{}", a.to_uppercase())),
            Some((Some(Runtime::Containerd), a.clone()))
        );
        assert_eq!(parse_container_id("containerd://"), None);
        assert_eq!(parse_container_id(""), None);
    }

    #[test]
    fn added_pod_names_its_processes() {
        let mut index = PodIndex::default();
        index.upsert(&pod(
            UID_A,
            "shop",
            "web-0",
            &[
                ("nginx", format!("containerd://{}", id('a'))),
                ("sidecar", format!("containerd://{}", id('b'))),
            ],
        ));
        assert_eq!((index.pods(), index.containers()), (1, 2));

        // Pod UID and container id from the cgroup: everything.
        let ep = k8s(&index, &endpoint(Some(id('a')), Some(UID_A)));
        assert_eq!(
            ep.k8s,
            Some(K8sPod {
                pod: Some("web-0".into()),
                namespace: Some("shop".into()),
                pod_uid: Some(UID_A.into()),
                container: Some("nginx".into()),
            })
        );
        // The runtime the cgroupfs path could not tell.
        assert_eq!(ep.container_runtime.as_deref(), Some("containerd"));

        // Container id only (no kubepods in the path): the pod through it.
        let ep = k8s(&index, &endpoint(Some(id('b')), None));
        let meta = ep.k8s.unwrap_or_default();
        assert_eq!(meta.pod_uid.as_deref(), Some(UID_A));
        assert_eq!(meta.pod.as_deref(), Some("web-0"));
        assert_eq!(meta.container.as_deref(), Some("sidecar"));

        // Pod UID only (the pause container, a container not reported yet).
        let ep = k8s(&index, &endpoint(Some(id('f')), Some(UID_A)));
        let meta = ep.k8s.unwrap_or_default();
        assert_eq!(meta.pod.as_deref(), Some("web-0"));
        assert_eq!(meta.container, None);
    }

    #[test]
    fn unknown_pods_and_host_processes_stay_as_they_are() {
        let mut index = PodIndex::default();
        index.upsert(&pod(UID_A, "shop", "web-0", &[("nginx", id('a'))]));
        for ep in [
            endpoint(None, None),
            endpoint(Some(id('c')), None),
            endpoint(Some(id('c')), Some(UID_B)),
        ] {
            assert_eq!(k8s(&index, &ep), ep);
        }
        // A runtime the cgroup path named is kept.
        let mut ep = endpoint(Some(id('a')), Some(UID_A));
        ep.container_runtime = Some("cri-o".into());
        assert_eq!(k8s(&index, &ep).container_runtime.as_deref(), Some("cri-o"));
    }

    #[test]
    fn container_of_another_pod_is_not_taken() {
        let mut index = PodIndex::default();
        index.upsert(&pod(UID_A, "shop", "web-0", &[("nginx", id('a'))]));
        index.upsert(&pod(UID_B, "shop", "db-0", &[]));
        let meta = k8s(&index, &endpoint(Some(id('a')), Some(UID_B)))
            .k8s
            .unwrap_or_default();
        assert_eq!(meta.pod.as_deref(), Some("db-0"));
        assert_eq!(meta.container, None);
    }

    #[test]
    fn modified_pod_replaces_its_containers_and_keeps_the_last_instance() {
        let mut index = PodIndex::default();
        index.upsert(&pod(UID_A, "shop", "web-0", &[("nginx", id('a'))]));
        // Restarted: new id, the old one in lastState.terminated.
        let mut restarted = pod(UID_A, "shop", "web-0", &[]);
        if let Some(pod_status) = restarted.status.as_mut() {
            pod_status.container_statuses = Some(vec![status_restarted()]);
        }
        index.upsert(&restarted);
        assert_eq!(index.pods(), 1);
        for c in ['a', 'b'] {
            let meta = k8s(&index, &endpoint(Some(id(c)), None))
                .k8s
                .unwrap_or_default();
            assert_eq!(meta.container.as_deref(), Some("nginx"), "{c}");
        }
        // Restarted again: the first instance is gone.
        index.upsert(&pod(UID_A, "shop", "web-0", &[("nginx", id('c'))]));
        assert_eq!(index.containers(), 1);
        assert_eq!(k8s(&index, &endpoint(Some(id('a')), None)).k8s, None);
    }

    fn status_restarted() -> ContainerStatus {
        status(
            "nginx",
            Some(format!("containerd://{}", id('b'))),
            Some(format!("containerd://{}", id('a'))),
        )
    }

    #[test]
    fn init_and_ephemeral_containers_are_indexed() {
        let mut p = pod(UID_A, "shop", "web-0", &[]);
        if let Some(pod_status) = p.status.as_mut() {
            pod_status.init_container_statuses = Some(vec![status(
                "migrate",
                Some(format!("cri-o://{}", id('d'))),
                None,
            )]);
            pod_status.ephemeral_container_statuses = Some(vec![status(
                "debugger",
                Some(format!("cri-o://{}", id('e'))),
                None,
            )]);
        }
        let mut index = PodIndex::default();
        index.upsert(&p);
        let ep = k8s(&index, &endpoint(Some(id('d')), None));
        assert_eq!(ep.container_runtime.as_deref(), Some("cri-o"));
        assert_eq!(ep.k8s.and_then(|k| k.container).as_deref(), Some("migrate"));
        let ep = k8s(&index, &endpoint(Some(id('e')), None));
        assert_eq!(
            ep.k8s.and_then(|k| k.container).as_deref(),
            Some("debugger")
        );
    }

    #[test]
    fn pending_pod_without_status_and_pod_without_uid() {
        let mut index = PodIndex::default();
        let mut pending = pod(UID_A, "shop", "web-0", &[]);
        pending.status = None;
        index.upsert(&pending);
        assert_eq!((index.pods(), index.containers()), (1, 0));
        let mut no_uid = pod(UID_B, "shop", "x", &[("c", id('a'))]);
        no_uid.metadata.uid = None;
        index.upsert(&no_uid);
        index.remove(&no_uid);
        assert_eq!((index.pods(), index.containers()), (1, 0));
    }

    #[test]
    fn watch_events_add_modify_delete_and_relist() {
        let shared = RwLock::new(PodIndex::default());
        let mut updater = IndexUpdater::default();
        let a = pod(UID_A, "shop", "web-0", &[("nginx", id('a'))]);
        let b = pod(UID_B, "shop", "db-0", &[("pg", id('b'))]);

        // Initial list: applied when done, not before.
        assert!(!updater.apply(Event::Init, &shared));
        assert!(!updater.apply(Event::InitApply(a.clone()), &shared));
        assert_eq!(shared.read().map(|i| i.pods()).unwrap_or(9), 0);
        assert!(updater.apply(Event::InitDone, &shared));
        assert_eq!(shared.read().map(|i| i.pods()).unwrap_or(9), 1);

        // Added, then deleted.
        updater.apply(Event::Apply(b.clone()), &shared);
        assert_eq!(shared.read().map(|i| i.containers()).unwrap_or(9), 2);
        updater.apply(Event::Delete(b.clone()), &shared);
        assert_eq!(shared.read().map(|i| i.containers()).unwrap_or(9), 1);

        // Relist after a broken watch: b came and a went meanwhile. The old
        // index serves lookups until the relist is complete.
        updater.apply(Event::Init, &shared);
        updater.apply(Event::InitApply(b.clone()), &shared);
        let during = shared.read().map(|i| i.clone()).unwrap_or_default();
        assert!(k8s(&during, &endpoint(Some(id('a')), None)).k8s.is_some());
        updater.apply(Event::InitDone, &shared);
        let after = shared.read().map(|i| i.clone()).unwrap_or_default();
        assert_eq!(k8s(&after, &endpoint(Some(id('a')), None)).k8s, None);
        let meta = k8s(&after, &endpoint(Some(id('b')), None))
            .k8s
            .unwrap_or_default();
        assert_eq!(meta.pod.as_deref(), Some("db-0"));
    }
}
