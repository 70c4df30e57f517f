//! Kubernetes pod metadata for journal records and spans.
//!
//! Two sources, used together:
//!
//! * the cgroup path of each process (`crate::evidence::cgroup`): container
//!   id, often the runtime, and the pod UID — always, in or out of a cluster,
//!   with no API call;
//! * the API server, only inside a cluster: pod name and namespace by UID,
//!   container name (and runtime) by container id. A background thread lists
//!   and watches the pods of this node only (`fieldSelector=spec.nodeName=`),
//!   into a [`PodIndex`] that the sink thread reads under a read lock held
//!   for a lookup. A pod the index does not hold yet (just started, watch
//!   down) leaves the names absent; nothing waits for the API server.
//!
//! Off the cluster (`KUBERNETES_SERVICE_HOST` unset and `--k8s-metadata`
//! left at `auto`) nothing here starts and the agent runs as before.

pub mod index;
pub mod watch;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use serde::Serialize;

pub use index::PodIndex;

use crate::outcome::HandshakeOutcome;

/// `--k8s-metadata`: when to ask the API server for pod names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// In a cluster (`KUBERNETES_SERVICE_HOST` set): the pod's service
    /// account. Elsewhere: off.
    #[default]
    Auto,
    /// Always: kubeconfig (`KUBECONFIG`, `~/.kube/config`), else the
    /// in-cluster service account.
    On,
    Off,
}

/// Where the client's configuration comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// Service-account token and CA, `KUBERNETES_SERVICE_HOST`/`_PORT`.
    InCluster,
    /// kubeconfig first, then in-cluster.
    Infer,
}

/// What `agent run` does about the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// No API calls; the reason, for the log.
    Off(&'static str),
    /// Watch the pods of `node`.
    Watch { node: String, source: ConfigSource },
}

/// Decides from the flag and the environment; pure, so the off-cluster case
/// is tested without a cluster. Without a node name nothing is watched: the
/// alternative, listing every pod of the cluster from every node, is what
/// the node-scoped watch exists to avoid.
pub fn plan(mode: Mode, service_host: Option<&str>, node: Option<&str>) -> Plan {
    let service_host = service_host.filter(|h| !h.trim().is_empty());
    let node = node.map(str::trim).filter(|n| !n.is_empty());
    let source = match (mode, service_host) {
        (Mode::Off, _) => return Plan::Off("--k8s-metadata off"),
        (Mode::Auto, None) => return Plan::Off("not in a Kubernetes cluster"),
        (Mode::Auto, Some(_)) => ConfigSource::InCluster,
        (Mode::On, _) => ConfigSource::Infer,
    };
    match node {
        Some(node) => Plan::Watch {
            node: node.to_string(),
            source,
        },
        None => Plan::Off("K8S_NODE_NAME is not set (the downward API's spec.nodeName)"),
    }
}

/// The plan for this process's environment and flags. `NODE_NAME` is
/// accepted as for the OTLP resource's `k8s.node.name`.
pub fn plan_from_env(mode: Mode, node_flag: Option<&str>) -> Plan {
    let env = |k: &str| std::env::var(k).ok();
    let node = node_flag.map(str::to_string).or_else(|| env("NODE_NAME"));
    plan(
        mode,
        env("KUBERNETES_SERVICE_HOST").as_deref(),
        node.as_deref(),
    )
}

/// The index and the watch's counters, shared by the watch thread (writer)
/// and the sink thread (reader).
#[derive(Default)]
pub struct PodMetadata {
    pub(crate) index: RwLock<PodIndex>,
    node: String,
    events: AtomicU64,
    errors: AtomicU64,
    synced: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// The watch's health, in the status file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct K8sStatus {
    pub node: String,
    /// A complete list has been received since start.
    pub synced: bool,
    pub pods: usize,
    pub containers: usize,
    pub watch_events: u64,
    /// List/watch errors (the watch retries with backoff).
    pub watch_errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl PodMetadata {
    pub fn new(node: &str) -> PodMetadata {
        PodMetadata {
            node: node.to_string(),
            ..Default::default()
        }
    }

    /// Names the pods and containers of both ends, as far as the index
    /// knows them.
    pub fn enrich(&self, outcome: &mut HandshakeOutcome) {
        // Only endpoints with something to look up: most are host processes
        // or remote peers, and they need no lock.
        let wanted = |e: &crate::outcome::Endpoint| e.container_id.is_some() || e.k8s.is_some();
        if !wanted(&outcome.client) && !wanted(&outcome.server) {
            return;
        }
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.enrich(&mut outcome.client);
        index.enrich(&mut outcome.server);
    }

    pub fn status(&self) -> K8sStatus {
        let (pods, containers) = {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            (index.pods(), index.containers())
        };
        K8sStatus {
            node: self.node.clone(),
            synced: self.synced.load(Ordering::Relaxed),
            pods,
            containers,
            watch_events: self.events.load(Ordering::Relaxed),
            watch_errors: self.errors.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
        }
    }

    fn note_error(&self, error: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{K8sPod, sample_failure};

    #[test]
    fn off_the_cluster_nothing_starts() {
        assert_eq!(
            plan(Mode::Auto, None, None),
            Plan::Off("not in a Kubernetes cluster")
        );
        // A node name alone (set by hand, or by another tool) is not a cluster.
        assert!(matches!(plan(Mode::Auto, None, Some("n1")), Plan::Off(_)));
        assert!(matches!(
            plan(Mode::Auto, Some(" "), Some("n1")),
            Plan::Off(_)
        ));
        assert!(matches!(
            plan(Mode::Off, Some("10.0.0.1"), Some("n1")),
            Plan::Off(_)
        ));
    }

    #[test]
    fn in_the_cluster_the_service_account_watches_its_node() {
        assert_eq!(
            plan(Mode::Auto, Some("10.96.0.1"), Some("node-a")),
            Plan::Watch {
                node: "node-a".into(),
                source: ConfigSource::InCluster
            }
        );
        assert_eq!(
            plan(Mode::On, None, Some("node-a")),
            Plan::Watch {
                node: "node-a".into(),
                source: ConfigSource::Infer
            }
        );
        // Never the whole cluster: no node name, no watch.
        for mode in [Mode::Auto, Mode::On] {
            assert!(
                matches!(plan(mode, Some("10.96.0.1"), None), Plan::Off(_)),
                "{mode:?}"
            );
            assert!(matches!(
                plan(mode, Some("10.96.0.1"), Some("")),
                Plan::Off(_)
            ));
        }
    }

    #[test]
    fn enrich_names_both_ends_and_skips_host_processes() {
        let meta = PodMetadata::new("node-a");
        if let Ok(mut index) = meta.index.write() {
            index.upsert(&index::tests::pod(
                index::tests::UID_A,
                "shop",
                "web-0",
                &[("nginx", index::tests::id('a'))],
            ));
        }
        let mut outcome = sample_failure();
        let untouched = outcome.clone();
        meta.enrich(&mut outcome);
        assert_eq!(outcome, untouched);

        outcome.server.container_id = Some(index::tests::id('a'));
        outcome.server.k8s = Some(K8sPod {
            pod_uid: Some(index::tests::UID_A.into()),
            ..Default::default()
        });
        meta.enrich(&mut outcome);
        assert_eq!(
            outcome.server.k8s.as_ref().and_then(|k| k.pod.as_deref()),
            Some("web-0")
        );
        assert_eq!(outcome.client.k8s, None);
        let status = meta.status();
        assert_eq!((status.pods, status.containers), (1, 1));
        assert_eq!(status.node, "node-a");
    }
}
