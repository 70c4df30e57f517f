//! The agent's own counters, served in the Prometheus/OpenMetrics text format
//! on `--metrics-addr` (e.g. `0.0.0.0:9464`), path `/metrics`.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `tlsdoctor_handshakes_total` | `role`, `result`, `cause` | outcomes; `cause` is the catalogue id of a failure, `none` for a success |
//! | `tlsdoctor_kernel_events_lost_total` | `reason` | events the eBPF side could not hand over (ring buffer full, ...) |
//! | `tlsdoctor_otlp_spans_dropped_total` | | spans the OTLP sink lost (queue full, export failed) |
//! | `tlsdoctor_journal_write_errors_total` | | failed journal writes |
//! | `tlsdoctor_build_info` | `version` | always 1 |
//! | `tlsdoctor_capture_mechanism` | `mechanism` | 1 for the mechanism that captures handshake bytes (`socket` or `syscalls`) |
//!
//! The exposition is written by `prometheus-client`, not by hand. The same
//! server answers the health probes (`/healthz`, `/readyz`; see
//! [`crate::health`]) when it is given the agent's [`Health`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::health::{self, Health};
use crate::outcome::HandshakeOutcome;

/// The path the metrics are served on.
pub const METRICS_PATH: &str = "/metrics";

/// Content type of [`Metrics::encode`]'s output (OpenMetrics 1.0, which
/// Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Command-line flag of the metrics endpoint, flattened into `agent run`.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct MetricsFlags {
    /// Serve Prometheus metrics on this address at /metrics, e.g.
    /// 0.0.0.0:9464. Default: no metrics endpoint.
    #[arg(long = "metrics-addr", value_name = "ADDR:PORT")]
    pub metrics_addr: Option<SocketAddr>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    role: &'static str,
    result: &'static str,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KernelLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MechanismLabels {
    mechanism: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// The registry of the agent's counters. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    handshakes: Family<HandshakeLabels, Counter>,
    kernel_lost: Family<KernelLabels, Counter>,
    /// Serializes `set_kernel_counter` so two callers cannot both add the
    /// same delta.
    kernel_lock: Mutex<()>,
    spans_dropped: Counter,
    journal_errors: Counter,
    capture_mechanism: Family<MechanismLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tlsdoctor");
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "handshakes",
            "TLS handshake outcomes seen, by role, result and root cause",
            handshakes.clone(),
        );
        let kernel_lost = Family::<KernelLabels, Counter>::default();
        registry.register(
            "kernel_events_lost",
            "Events the eBPF programs could not hand to user space, by reason",
            kernel_lost.clone(),
        );
        let spans_dropped = Counter::default();
        registry.register(
            "otlp_spans_dropped",
            "Spans the OTLP sink dropped (queue full or export failed)",
            spans_dropped.clone(),
        );
        let journal_errors = Counter::default();
        registry.register(
            "journal_write_errors",
            "Failed writes to the outcome journal",
            journal_errors.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The agent's version", build_info);
        let capture_mechanism = Family::<MechanismLabels, Gauge>::default();
        registry.register(
            "capture_mechanism",
            "1 for the mechanism that captures handshake bytes (socket or syscalls)",
            capture_mechanism.clone(),
        );
        Metrics {
            registry,
            handshakes,
            kernel_lost,
            kernel_lock: Mutex::new(()),
            spans_dropped,
            journal_errors,
            capture_mechanism,
        }
    }

    /// Names the capture mechanism that runs.
    pub fn set_capture_mechanism(&self, mechanism: &'static str) {
        self.capture_mechanism.clear();
        self.capture_mechanism
            .get_or_create(&MechanismLabels { mechanism })
            .set(1);
    }

    /// Counts one outcome.
    pub fn record_outcome(&self, outcome: &HandshakeOutcome) {
        let failure = outcome.is_failure();
        self.handshakes
            .get_or_create(&HandshakeLabels {
                role: outcome.role.as_str(),
                result: if failure { "failure" } else { "success" },
                cause: if failure { outcome.cause.id() } else { "none" },
            })
            .inc();
    }

    /// Counts `n` successful handshakes of `role` (`client`/`server`) that
    /// were only counted, never built into outcomes.
    pub fn add_successes(&self, role: &'static str, n: u64) {
        if n > 0 {
            self.handshakes
                .get_or_create(&HandshakeLabels {
                    role,
                    result: "success",
                    cause: "none",
                })
                .inc_by(n);
        }
    }

    /// Sets the kernel counter `name` (e.g. `ringbuf_full`) to the running
    /// total the eBPF side reports. Prometheus counters only go up: a total
    /// lower than the last one (the programs were reloaded) is taken as a
    /// reset and added whole.
    pub fn set_kernel_counter(&self, name: &str, value: u64) {
        let _guard = self
            .kernel_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let counter = self.kernel_lost.get_or_create(&KernelLabels {
            reason: name.to_string(),
        });
        let current = counter.get();
        let delta = if value >= current {
            value - current
        } else {
            value
        };
        if delta > 0 {
            counter.inc_by(delta);
        }
    }

    /// Adds `n` dropped spans (the increase of
    /// [`OtlpExporter::dropped`](super::otlp::OtlpExporter::dropped) since the
    /// last call).
    pub fn add_spans_dropped(&self, n: u64) {
        if n > 0 {
            self.spans_dropped.inc_by(n);
        }
    }

    pub fn inc_journal_errors(&self) {
        self.journal_errors.inc();
    }

    /// The exposition text (OpenMetrics; see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error would only mean a
        // broken metric, and a partial page still beats no page.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }
}

/// Serves `metrics` on `addr` at [`METRICS_PATH`] until `shutdown`
/// completes. Errors only when the address cannot be bound.
pub async fn serve(
    metrics: Arc<Metrics>,
    addr: SocketAddr,
    shutdown: impl Future,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving metrics at {METRICS_PATH}");
    serve_listener(metrics, listener, shutdown).await
}

/// [`serve`] on a listener bound by the caller (e.g. to port 0).
pub async fn serve_listener(
    metrics: Arc<Metrics>,
    listener: TcpListener,
    shutdown: impl Future,
) -> std::io::Result<()> {
    serve_listener_with_health(metrics, None, listener, shutdown).await
}

/// [`serve_listener`], answering [`health::LIVENESS_PATH`] and
/// [`health::READINESS_PATH`] from `health` too (404 without it).
pub async fn serve_listener_with_health(
    metrics: Arc<Metrics>,
    health: Option<Arc<Health>>,
    listener: TcpListener,
    shutdown: impl Future,
) -> std::io::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin, and keep serving.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let metrics = Arc::clone(&metrics);
        let health = health.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let metrics = Arc::clone(&metrics);
                let health = health.clone();
                async move { Ok::<_, Infallible>(respond(&metrics, health.as_deref(), &req)) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                // A scraper that never finishes its request must not hold a
                // connection forever.
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "metrics connection");
            }
        });
    }
}

fn respond<B>(
    metrics: &Metrics,
    health: Option<&Health>,
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    let simple = |status: StatusCode, body: &'static str| {
        let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *resp.status_mut() = status;
        resp
    };
    let path = req.uri().path();
    let probe = match (path, health) {
        (health::LIVENESS_PATH, Some(h)) => Some(health::liveness(&h.snapshot())),
        (health::READINESS_PATH, Some(h)) => Some(health::readiness(&h.snapshot())),
        _ => None,
    };
    if probe.is_none() && path != METRICS_PATH {
        return simple(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = simple(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        resp.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return resp;
    }
    if let Some(verdict) = probe {
        let mut resp = Response::new(Full::new(Bytes::from(verdict.body())));
        if !verdict.ok {
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return resp;
    }
    let mut resp = Response::new(Full::new(Bytes::from(metrics.encode())));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::{Cause, Confidence, Diagnosis};
    use crate::outcome::sample_failure;
    use crate::outcome::{Endpoint, HandshakeResult, Role};
    use chrono::Utc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn outcome(role: Role, result: HandshakeResult, cause: Cause) -> HandshakeOutcome {
        HandshakeOutcome {
            id: "t".into(),
            time: Utc::now(),
            end_time: Utc::now(),
            role,
            result,
            cause,
            client: Endpoint::default(),
            server: Endpoint::default(),
            diagnosis: Diagnosis::new(cause, Confidence::High, "x"),
            ..sample_failure()
        }
    }

    #[test]
    fn exposition_text() {
        let m = Metrics::new();
        m.record_outcome(&outcome(
            Role::Client,
            HandshakeResult::Failure,
            Cause::UntrustedRoot,
        ));
        m.record_outcome(&outcome(
            Role::Client,
            HandshakeResult::Failure,
            Cause::UntrustedRoot,
        ));
        m.record_outcome(&outcome(
            Role::Server,
            HandshakeResult::Success,
            Cause::Unknown,
        ));
        m.set_kernel_counter("ringbuf_full", 7);
        m.set_kernel_counter("ringbuf_full", 12);
        m.set_kernel_counter("ringbuf_full", 12);
        m.add_spans_dropped(3);
        m.add_spans_dropped(0);
        m.inc_journal_errors();
        let text = m.encode();
        let has = |line: &str| {
            assert!(
                text.lines().any(|l| l == line),
                "missing line {line:?} in:\n{text}"
            )
        };
        has("# TYPE tlsdoctor_handshakes counter");
        has(
            "tlsdoctor_handshakes_total{role=\"client\",result=\"failure\",cause=\"untrusted-root\"} 2",
        );
        has("tlsdoctor_handshakes_total{role=\"server\",result=\"success\",cause=\"none\"} 1");
        has("tlsdoctor_kernel_events_lost_total{reason=\"ringbuf_full\"} 12");
        has("tlsdoctor_otlp_spans_dropped_total 3");
        has("tlsdoctor_journal_write_errors_total 1");
        has(&format!(
            "tlsdoctor_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ));
        assert_eq!(text.lines().last(), Some("# EOF"));
    }

    #[test]
    fn kernel_counter_reset_is_added() {
        let m = Metrics::new();
        m.set_kernel_counter("map_full", 10);
        // The programs were reloaded and count from zero again.
        m.set_kernel_counter("map_full", 4);
        assert!(
            m.encode()
                .contains("tlsdoctor_kernel_events_lost_total{reason=\"map_full\"} 14")
        );
    }

    async fn raw_get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let metrics = Arc::new(Metrics::new());
        metrics.record_outcome(&outcome(
            Role::Client,
            HandshakeResult::Failure,
            Cause::ClockSkew,
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_listener(Arc::clone(&metrics), listener, stop_rx));

        let response = raw_get(addr, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response
                .to_ascii_lowercase()
                .contains(&format!("content-type: {CONTENT_TYPE}")),
            "{response}"
        );
        assert!(
            response.contains(
                "tlsdoctor_handshakes_total{role=\"client\",result=\"failure\",cause=\"clock-skew\"} 1"
            ),
            "{response}"
        );
        // Counts move between scrapes.
        metrics.inc_journal_errors();
        let response = raw_get(addr, "/metrics").await;
        assert!(
            response.contains("tlsdoctor_journal_write_errors_total 1"),
            "{response}"
        );

        let response = raw_get(addr, "/").await;
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");
        // No health given: no probes.
        let response = raw_get(addr, "/readyz").await;
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");

        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops on shutdown")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn serves_health_probes() {
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_listener_with_health(
            metrics,
            Some(Arc::clone(&health)),
            listener,
            stop_rx,
        ));

        // Started, not attached: alive, not ready.
        let response = raw_get(addr, "/healthz").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let response = raw_get(addr, "/readyz").await;
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
        assert!(response.contains("not attached"), "{response}");

        health.set_attached(true);
        health.heartbeat();
        let response = raw_get(addr, "/readyz").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("\r\n\r\nok\ntracepoints attached; uprobes on 0 OpenSSL libraries\nring buffer empty since start\n"), "{response}");

        health.lost_events();
        let response = raw_get(addr, "/readyz").await;
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
        // /metrics still served alongside.
        let response = raw_get(addr, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");

        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops on shutdown")
            .unwrap()
            .unwrap();
    }
}
