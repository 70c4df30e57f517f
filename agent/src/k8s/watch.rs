//! The list/watch of this node's pods, on a thread of its own.
//!
//! The thread has its own single-threaded tokio runtime, as the OTLP
//! exporter does: decoding a node's pod list (hundreds of kilobytes of JSON)
//! must not delay the loop that reads the kernel's ring buffer. kube-runtime's
//! `watcher` lists (from the API server's cache: `resourceVersion=0`), then
//! watches from the list's resource version, relists when the watch expires,
//! and retries failures with exponential backoff (0.8 s to 30 s, jittered).
//! Errors are counted; the first of an outage is logged as a warning, the
//! recovery as info. Nothing here is fatal to the agent.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;
use kube::{Api, Client, Config};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::index::IndexUpdater;
use super::{ConfigSource, PodMetadata};

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
    #[error("Kubernetes client")]
    Client(#[from] kube::Error),
    #[error("starting the pod watch thread")]
    Thread(#[from] std::io::Error),
}

/// The running watch. Dropping it (or [`PodWatch::stop`]) ends the thread.
pub struct PodWatch {
    metadata: Arc<PodMetadata>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PodWatch {
    /// Starts watching `node`'s pods. Fails only if the thread cannot be
    /// created; configuration and API errors are counted in the status and
    /// logged from the thread.
    pub fn start(node: &str, source: ConfigSource) -> Result<PodWatch, WatchError> {
        let metadata = Arc::new(PodMetadata::new(node));
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = {
            let metadata = metadata.clone();
            let node = node.to_string();
            std::thread::Builder::new()
                .name("tlsdoctor-k8s".into())
                .spawn(move || watch_thread(node, source, metadata, stop_rx))?
        };
        Ok(PodWatch {
            metadata,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn metadata(&self) -> Arc<PodMetadata> {
        self.metadata.clone()
    }

    /// Ends the watch and waits for its thread (it stops at once: the watch
    /// is dropped mid-request).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("the pod watch thread panicked");
        }
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn watch_thread(
    node: String,
    source: ConfigSource,
    metadata: Arc<PodMetadata>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %crate::text::Chain(&e), "pod metadata off: cannot start the watch runtime");
            metadata.note_error(crate::text::Chain(&e).to_string());
            return;
        }
    };
    runtime.block_on(async move {
        let client = match client(source).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %crate::text::Chain(&e), "pod metadata off: no Kubernetes client (pod names are not looked up; container ids and pod UIDs still are)");
                metadata.note_error(crate::text::Chain(&e).to_string());
                return;
            }
        };
        tokio::select! {
            () = watch_pods(client, &node, &metadata) => {}
            _ = stop => debug!("pod watch stopped"),
        }
    });
}

async fn client(source: ConfigSource) -> Result<Client, WatchError> {
    let config = match source {
        ConfigSource::InCluster => Config::incluster()
            .map_err(|e| WatchError::Config(crate::text::Chain(&e).to_string()))?,
        ConfigSource::Infer => Config::infer()
            .await
            .map_err(|e| WatchError::Config(crate::text::Chain(&e).to_string()))?,
    };
    Ok(Client::try_from(config)?)
}

/// Lists and watches the pods of `node` into `metadata`'s index, for ever
/// (the watcher retries by itself).
pub async fn watch_pods(client: Client, node: &str, metadata: &PodMetadata) {
    let pods: Api<Pod> = Api::all(client);
    let mut config = watcher::Config::default()
        .fields(&format!("spec.nodeName={node}"))
        // Served from the API server's cache, not etcd: every node of the
        // cluster lists at start, and a DaemonSet restarts all at once.
        .any_semantic();
    // One node's pods (at most a few hundred) need no paging, and kube
    // drops `resourceVersion=0` from paged lists, which would send every
    // list to etcd.
    config.page_size = None;
    let stream = watcher(pods, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut updater = IndexUpdater::default();
    let mut failing = false;
    info!(node, "watching this node's pods for pod metadata");
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                metadata.events.fetch_add(1, Ordering::Relaxed);
                if updater.apply(event, &metadata.index) {
                    metadata.synced.store(true, Ordering::Relaxed);
                    let pods = metadata.index.read().map(|i| i.pods()).unwrap_or(0);
                    if failing {
                        info!(pods, "pod watch recovered");
                        failing = false;
                    } else {
                        debug!(pods, "pod list received");
                    }
                }
            }
            Err(e) => {
                metadata.note_error(crate::text::Chain(&e).to_string());
                if failing {
                    debug!(error = %crate::text::Chain(&e), "pod watch still failing");
                } else {
                    warn!(error = %crate::text::Chain(&e), "pod watch failed; retrying with backoff (counted; logged once per outage)");
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The list/watch against a stand-in API server: plain HTTP on
    //! 127.0.0.1, answering the list with a `PodList` and the watch with a
    //! stream of events. No real API server is used.

    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;
    use crate::k8s::index::tests::{UID_A, UID_B, id, pod};
    use crate::outcome::{Endpoint, K8sPod};

    fn pod_json(uid: &str, name: &str, container: (&str, char), rv: u32) -> serde_json::Value {
        let mut pod = pod(
            uid,
            "shop",
            name,
            &[(container.0, format!("containerd://{}", id(container.1)))],
        );
        pod.metadata.resource_version = Some(rv.to_string());
        serde_json::to_value(&pod).unwrap_or_default()
    }

    async fn serve(listener: TcpListener, requests: Arc<Mutex<Vec<String>>>) {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let requests = requests.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let target = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                let first_watch = {
                    let Ok(mut r) = requests.lock() else { return };
                    r.push(target.clone());
                    r.iter().filter(|t| t.contains("watch=true")).count() == 1
                };
                if !target.contains("watch=true") {
                    let list = serde_json::json!({
                        "apiVersion": "v1",
                        "kind": "PodList",
                        "metadata": {"resourceVersion": "100"},
                        "items": [pod_json(UID_A, "web-0", ("nginx", 'a'), 90)],
                    })
                    .to_string();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{list}",
                        list.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                    return;
                }
                // The watch: a chunked stream of one JSON event per line.
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                if first_watch {
                    let events = [
                        ("ADDED", pod_json(UID_B, "db-0", ("pg", 'b'), 101)),
                        ("MODIFIED", pod_json(UID_A, "web-0", ("nginx", 'c'), 102)),
                        ("DELETED", pod_json(UID_B, "db-0", ("pg", 'b'), 103)),
                        ("ADDED", pod_json(UID_B, "db-1", ("pg", 'd'), 104)),
                    ];
                    for (kind, object) in events {
                        let line =
                            format!("{}\n", serde_json::json!({"type": kind, "object": object}));
                        let chunk = format!("{:x}\r\n{line}\r\n", line.len());
                        let _ = conn.write_all(chunk.as_bytes()).await;
                    }
                }
                // Held open, as a real watch is, until the test ends.
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    }

    fn lookup(metadata: &PodMetadata, container: char) -> Option<K8sPod> {
        let mut ep = Endpoint {
            container_id: Some(id(container)),
            ..Default::default()
        };
        metadata
            .index
            .read()
            .map(|i| i.enrich(&mut ep))
            .unwrap_or_default();
        ep.k8s
    }

    #[tokio::test(flavor = "current_thread")]
    async fn lists_then_watches_this_nodes_pods_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let server = tokio::spawn(serve(listener, requests.clone()));

        let uri: hyper::Uri = format!("http://{addr}")
            .parse()
            .unwrap_or_else(|e| panic!("uri: {e}"));
        let client = Client::try_from(Config::new(uri)).unwrap_or_else(|e| panic!("client: {e}"));
        let metadata = PodMetadata::new("node-a");
        let done = |m: &PodMetadata| {
            lookup(m, 'c').and_then(|k| k.container).as_deref() == Some("nginx")
                && lookup(m, 'd').and_then(|k| k.pod).as_deref() == Some("db-1")
                && lookup(m, 'b').is_none()
        };
        let watched = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::select! {
                () = watch_pods(client, "node-a", &metadata) => {}
                () = async {
                    while !done(&metadata) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                } => {}
            }
        })
        .await;
        server.abort();
        let requests = requests.lock().map(|r| r.clone()).unwrap_or_default();
        assert!(
            watched.is_ok(),
            "index never reached the expected state; requests: {requests:?}; status: {:?}",
            metadata.status()
        );

        // The list then the watch, both for this node's pods only, across
        // all namespaces, the watch from the list's resource version.
        assert!(requests.len() >= 2, "{requests:?}");
        for r in &requests[..2] {
            assert!(r.starts_with("/api/v1/pods?"), "{r}");
            assert!(r.contains("fieldSelector=spec.nodeName%3Dnode-a"), "{r}");
        }
        assert!(!requests[0].contains("watch=true"), "{}", requests[0]);
        assert!(requests[0].contains("resourceVersion=0"), "{}", requests[0]);
        assert!(!requests[0].contains("limit="), "{}", requests[0]);
        assert!(requests[1].contains("watch=true"), "{}", requests[1]);
        assert!(
            requests[1].contains("resourceVersion=100"),
            "{}",
            requests[1]
        );

        let status = metadata.status();
        assert!(status.synced);
        assert_eq!(status.pods, 2);
        assert_eq!(status.watch_errors, 0, "{status:?}");
        // The restarted container's name and runtime, the pod's names.
        let web = lookup(&metadata, 'c').unwrap_or_default();
        assert_eq!(web.pod.as_deref(), Some("web-0"));
        assert_eq!(web.namespace.as_deref(), Some("shop"));
        assert_eq!(web.pod_uid.as_deref(), Some(UID_A));
        // The first instance of nginx left with the MODIFIED event (its
        // status had no lastState).
        assert_eq!(lookup(&metadata, 'a'), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unreachable_api_server_is_counted_not_fatal() {
        // A port nothing listens on: bind, then close.
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("bind: {e}"));
            l.local_addr().unwrap_or_else(|e| panic!("addr: {e}"))
        };
        let uri: hyper::Uri = format!("http://{addr}")
            .parse()
            .unwrap_or_else(|e| panic!("uri: {e}"));
        let client = Client::try_from(Config::new(uri)).unwrap_or_else(|e| panic!("client: {e}"));
        let metadata = PodMetadata::new("node-a");
        let _ = tokio::time::timeout(
            Duration::from_secs(3),
            watch_pods(client, "node-a", &metadata),
        )
        .await;
        let status = metadata.status();
        assert!(status.watch_errors >= 1, "{status:?}");
        assert!(!status.synced);
        assert!(status.last_error.is_some());
        assert_eq!(status.pods, 0);
    }
}
