//! Trace and span ids, and success sampling.

use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample};

use opentelemetry::trace::{SpanId, SpanKind, TraceId};

use crate::outcome::Role;

use super::super::*;
use super::*;

// --- ids and sampling ------------------------------------------------------

#[test]
fn ids_follow_the_documented_scheme() {
    // Expected values computed independently (Python hashlib).
    let client = SpanIds::from_client_random(RANDOM, Role::Client).unwrap();
    let server = SpanIds::from_client_random(RANDOM, Role::Server).unwrap();
    assert_eq!(
        client.trace_id.to_string(),
        "630dcd2966c4336691125448bbb25b4f"
    );
    assert_eq!(client.span_id.to_string(), "4dd31e9f9f156207");
    assert_eq!(client.parent_span_id, None);
    assert_eq!(server.trace_id, client.trace_id);
    assert_eq!(server.span_id.to_string(), "03a4d040fde1aaae");
    assert_eq!(server.parent_span_id, Some(client.span_id));
    assert!(client.derived && server.derived);
    // Hex case and surrounding blanks do not matter.
    let upper = SpanIds::from_client_random(&format!(" {} ", RANDOM.to_uppercase()), Role::Client);
    assert_eq!(upper, Some(client));
}

#[test]
fn ids_without_a_usable_random_are_random() {
    assert_eq!(SpanIds::from_client_random("", Role::Client), None);
    assert_eq!(SpanIds::from_client_random("0011", Role::Client), None);
    assert_eq!(
        SpanIds::from_client_random(&"zz".repeat(32), Role::Client),
        None
    );
    let a = SpanIds::for_outcome(&success(Role::Server, None));
    let b = SpanIds::for_outcome(&success(Role::Server, None));
    assert!(!a.derived);
    assert_eq!(a.parent_span_id, None);
    assert_ne!(a.trace_id, b.trace_id);
    assert_ne!(a.trace_id, TraceId::INVALID);
    assert_ne!(a.span_id, SpanId::INVALID);
}

#[test]
fn sampling_is_deterministic_and_matches_the_sdk_sampler() {
    for ratio in [0.0, 0.01, 0.25, 0.5, 0.9, 1.0] {
        let sdk = Sampler::TraceIdRatioBased(ratio);
        let mut kept = 0;
        for n in 0..4000u32 {
            let random = format!("{:064x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15);
            let ids = SpanIds::from_client_random(&random, Role::Client).unwrap();
            let server = SpanIds::from_client_random(&random, Role::Server).unwrap();
            let decision = sample_success(ids.trace_id, ratio);
            // Both ends decide alike, every time.
            assert_eq!(decision, sample_success(server.trace_id, ratio));
            assert_eq!(decision, sample_success(ids.trace_id, ratio));
            let sdk_decision = sdk
                .should_sample(None, ids.trace_id, "x", &SpanKind::Client, &[], &[])
                .decision;
            assert_eq!(
                decision,
                sdk_decision == SamplingDecision::RecordAndSample,
                "ratio {ratio}"
            );
            kept += u32::from(decision);
        }
        let share = f64::from(kept) / 4000.0;
        assert!((share - ratio).abs() < 0.03, "ratio {ratio}: kept {share}");
    }
    assert!(!sample_success(TraceId::from_bytes([0xff; 16]), f64::NAN));
}
