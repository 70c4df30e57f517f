//! The HTTP endpoint: `/metrics`, and `/healthz`, `/readyz` when given the
//! agent's [`Health`]. It has no authentication, so it is meant to be bound
//! to loopback or the node's own address (the DaemonSet binds the pod's
//! host IP), and it bounds what any client can hold: at most
//! [`MAX_CONNECTIONS`] at once (more are closed unanswered, and counted),
//! each given [`HEADER_TIMEOUT`] to send its request and
//! [`CONNECTION_TIMEOUT`] in all, one request per connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::{CONTENT_TYPE, METRICS_PATH, Metrics};
use crate::health::{self, Health};

/// Connections served at once; a scraper and the kubelet's probes need a
/// few.
pub const MAX_CONNECTIONS: usize = 16;
/// Time a client has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection is kept, whatever it does.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

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
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin, and keep serving.
                    tracing::warn!(error = %crate::text::Chain(&e), "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            // Full: closed at once rather than queued, so that idle
            // connections cannot pile up behind the cap either.
            metrics.inc_connections_refused();
            drop(stream);
            continue;
        };
        let metrics = Arc::clone(&metrics);
        let health = health.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let metrics = Arc::clone(&metrics);
                let health = health.clone();
                async move { Ok::<_, Infallible>(respond(&metrics, health.as_deref(), &req)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                // A client that never finishes its request must not hold a
                // connection.
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %crate::text::Chain(&e), "metrics connection")
                }
                Err(_) => tracing::debug!("metrics connection cut after {CONNECTION_TIMEOUT:?}"),
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
