//! The export loop's health and delivery, with a fake exporter.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::outcome::Role;

use super::super::*;
use super::*;

// --- health ------------------------------------------------------------------------

#[test]
fn health_warns_once_and_reports_recovery() {
    let mut h = ExportHealth::default();
    let t = Instant::now();
    // `dropped` is the running total of drops, queue-full ones included.
    let mut dropped = 5;
    assert_eq!(h.on_success(t, dropped), ExportHealthChange::Quiet);
    dropped += 10;
    assert_eq!(
        h.on_failure(t, 10, dropped),
        ExportHealthChange::StartedFailing
    );
    for n in 1..100 {
        dropped += 3; // one failed, two refused at the full queue
        assert_eq!(
            h.on_failure(t + Duration::from_secs(n), 1, dropped),
            ExportHealthChange::Quiet
        );
    }
    dropped += 1;
    assert_eq!(
        h.on_failure(t + REMINDER_INTERVAL, 1, dropped),
        ExportHealthChange::StillFailing {
            lost: 10 + 99 * 3 + 1,
            for_: REMINDER_INTERVAL
        }
    );
    let back = t + REMINDER_INTERVAL + Duration::from_secs(5);
    dropped += 2;
    assert_eq!(
        h.on_success(back, dropped),
        ExportHealthChange::Recovered {
            lost: 10 + 99 * 3 + 1 + 2,
            after: REMINDER_INTERVAL + Duration::from_secs(5)
        }
    );
    assert_eq!(h.on_success(back, dropped), ExportHealthChange::Quiet);
    // Flapping within WARN_INTERVAL stays quiet, recovery included.
    dropped += 1;
    assert_eq!(
        h.on_failure(back + Duration::from_secs(1), 1, dropped),
        ExportHealthChange::Quiet
    );
    assert_eq!(
        h.on_success(back + Duration::from_secs(2), dropped),
        ExportHealthChange::Quiet
    );
    // Later, a new outage warns again and counts from its own start.
    let later = back + WARN_INTERVAL + Duration::from_secs(1);
    dropped += 4;
    assert_eq!(
        h.on_failure(later, 4, dropped),
        ExportHealthChange::StartedFailing
    );
    assert!(matches!(
        h.on_success(later, dropped),
        ExportHealthChange::Recovered { lost: 4, .. }
    ));
}

// --- the export loop, with a fake exporter ----------------------------------------

#[derive(Clone, Debug, Default)]
struct Fake {
    received: Arc<Mutex<Vec<SpanData>>>,
    failing: Arc<AtomicBool>,
    /// Exports never answer (a collector that accepts and stalls).
    hang: Arc<AtomicBool>,
    resource: Arc<Mutex<Option<Resource>>>,
}

impl Fake {
    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

impl SpanExporter for Fake {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(OTelSdkError::InternalFailure("connection refused".into()));
        }
        self.received.lock().unwrap().extend(batch);
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        *self.resource.lock().unwrap() = Some(resource.clone());
    }
}

fn fake_config() -> OtlpConfig {
    OtlpConfig {
        endpoint: Some("http://fake".into()),
        max_queue_size: 16,
        max_export_batch_size: 4,
        scheduled_delay: Duration::from_millis(50),
        timeout: Duration::from_millis(200),
        shutdown_timeout: Duration::from_millis(500),
        ..OtlpConfig::default()
    }
}

fn start(fake: &Fake, config: OtlpConfig) -> OtlpExporter {
    let fake = fake.clone();
    OtlpExporter::start(config, move || Ok(fake)).unwrap()
}

#[test]
fn exports_failures_and_sampled_successes() {
    let fake = Fake::default();
    let exporter = start(
        &fake,
        OtlpConfig {
            sample_success_ratio: 0.0,
            ..fake_config()
        },
    );
    for _ in 0..5 {
        exporter.export(&chain_incomplete_failure());
    }
    exporter.export(&success(Role::Client, Some(RANDOM.into())));
    assert!(exporter.flush(Duration::from_secs(5)));
    assert_eq!(fake.count(), 5);
    let stats = exporter.stats();
    assert_eq!(stats.exported, 5);
    assert_eq!(stats.not_sampled, 1);
    assert_eq!(exporter.dropped(), 0);
    let resource = fake.resource.lock().unwrap().clone().unwrap();
    assert!(
        resource
            .get(&opentelemetry::Key::new("service.name"))
            .is_some()
    );
    exporter.shutdown();

    let fake = Fake::default();
    let exporter = start(
        &fake,
        OtlpConfig {
            sample_success_ratio: 1.0,
            ..fake_config()
        },
    );
    exporter.export(&success(Role::Client, Some(RANDOM.into())));
    // The scheduled delay sends a partial batch without a flush.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.count() < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(fake.count(), 1);
    exporter.shutdown();
}

#[test]
fn hung_collector_never_blocks_and_memory_stays_bounded() {
    let fake = Fake::default();
    fake.hang.store(true, Ordering::SeqCst);
    let exporter = start(&fake, fake_config());
    let outcome = chain_incomplete_failure();
    let started = Instant::now();
    for _ in 0..10_000 {
        exporter.export(&outcome);
        assert!(exporter.stats().queued <= 16);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // At most queue + one batch in flight were accepted.
    assert!(
        exporter.dropped() >= 10_000 - 16 - 4,
        "{}",
        exporter.dropped()
    );
    let started = Instant::now();
    exporter.shutdown();
    // shutdown_timeout 500 ms plus its grace.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn shutdown_cuts_a_stuck_export_short() {
    let fake = Fake::default();
    fake.hang.store(true, Ordering::SeqCst);
    let exporter = start(
        &fake,
        OtlpConfig {
            // An export alone could hang for a minute.
            timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_millis(300),
            ..fake_config()
        },
    );
    let counters = Arc::clone(&exporter.counters);
    for _ in 0..10 {
        exporter.export(&chain_incomplete_failure());
    }
    // Let the first batch get stuck in the exporter.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    exporter.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The export thread finished its accounting before shutdown returned:
    // every span is either refused or failed, none silently vanished.
    let lost = counters.dropped_queue_full.load(Ordering::Relaxed)
        + counters.dropped_export_failed.load(Ordering::Relaxed);
    assert_eq!(lost, 10);
}

#[test]
fn failed_exports_are_counted_and_delivery_resumes() {
    let fake = Fake::default();
    fake.failing.store(true, Ordering::SeqCst);
    let exporter = start(&fake, fake_config());
    for _ in 0..8 {
        exporter.export(&chain_incomplete_failure());
    }
    assert!(exporter.flush(Duration::from_secs(5)));
    assert_eq!(exporter.stats().dropped_export_failed, 8);
    assert_eq!(exporter.dropped(), 8);
    fake.failing.store(false, Ordering::SeqCst);
    for _ in 0..3 {
        exporter.export(&chain_incomplete_failure());
    }
    assert!(exporter.flush(Duration::from_secs(5)));
    assert_eq!(fake.count(), 3);
    assert_eq!(exporter.stats().exported, 3);
    exporter.shutdown();
}

#[test]
fn shutdown_exports_what_is_queued() {
    let fake = Fake::default();
    let exporter = start(
        &fake,
        OtlpConfig {
            // Nothing leaves on a timer before shutdown.
            scheduled_delay: Duration::from_secs(3600),
            max_export_batch_size: 16,
            ..fake_config()
        },
    );
    for _ in 0..10 {
        exporter.export(&chain_incomplete_failure());
    }
    exporter.shutdown();
    assert_eq!(fake.count(), 10);
}

#[test]
fn exporter_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<OtlpExporter>();
    shared::<crate::sinks::metrics::Metrics>();
}

#[test]
fn build_errors_surface_from_new() {
    let err = OtlpExporter::start(fake_config(), || -> Result<Fake, OtlpError> {
        Err(OtlpError::Build("no".into()))
    })
    .unwrap_err();
    assert!(matches!(err, OtlpError::Build(_)));
    let bad = OtlpConfig {
        sample_success_ratio: 2.0,
        ..fake_config()
    };
    assert!(matches!(OtlpExporter::new(bad), Err(OtlpError::Config(_))));
}

#[test]
fn ca_file_errors_surface_from_new() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for (protocol, file) in [
        (Protocol::HttpProtobuf, dir.path().join("missing.pem")),
        (Protocol::Grpc, dir.path().join("missing.pem")),
        (Protocol::HttpProtobuf, empty),
    ] {
        let err = OtlpExporter::new(OtlpConfig {
            endpoint: Some("https://127.0.0.1:1/v1/traces".into()),
            protocol,
            certificate: Some(file.clone()),
            ..OtlpConfig::default()
        })
        .unwrap_err();
        assert!(
            matches!(err, OtlpError::Config(_)),
            "{protocol:?} {file:?}: {err}"
        );
    }
}

#[test]
fn real_exporters_build_without_a_collector() {
    // Building connects nowhere: both transports build with nothing
    // listening, and outside any tokio runtime.
    for (protocol, endpoint) in [
        (Protocol::Grpc, "http://127.0.0.1:1"),
        (Protocol::HttpProtobuf, "http://127.0.0.1:1/v1/traces"),
        (Protocol::HttpProtobuf, "https://127.0.0.1:1/v1/traces"),
    ] {
        let exporter = OtlpExporter::new(OtlpConfig {
            endpoint: Some(endpoint.into()),
            protocol,
            headers: vec![("x-tenant".into(), "blue".into())],
            shutdown_timeout: Duration::from_millis(200),
            ..OtlpConfig::default()
        });
        match exporter {
            Ok(e) => e.shutdown(),
            // A machine without system CA certificates cannot do https.
            Err(OtlpError::Build(msg)) if endpoint.starts_with("https") => {
                assert!(msg.contains("CA"), "{msg}")
            }
            Err(e) => panic!("{protocol:?} {endpoint}: {e}"),
        }
    }
}
