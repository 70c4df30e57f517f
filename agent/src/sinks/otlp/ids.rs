//! Trace and span ids derived from the ClientHello random, and the
//! success sampling decided on them.

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

use crate::outcome::{HandshakeOutcome, Role};

/// The ids of one outcome's span (see the module docs for the scheme).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// Set on the server span of a handshake with a ClientHello: the client
    /// span's id.
    pub parent_span_id: Option<SpanId>,
    /// The ids come from the ClientHello random (both ends agree), not from
    /// a random generator.
    pub derived: bool,
}

impl SpanIds {
    /// Ids for `outcome`: derived from its ClientHello random when it has a
    /// valid one, random otherwise.
    pub fn for_outcome(outcome: &HandshakeOutcome) -> SpanIds {
        outcome
            .tls
            .client_hello
            .as_ref()
            .and_then(|ch| SpanIds::from_client_random(&ch.random, outcome.role))
            .unwrap_or_else(SpanIds::random)
    }

    /// Ids derived from a ClientHello random given as hex (32 bytes). `None`
    /// when `random_hex` is not 32 bytes of hex.
    pub fn from_client_random(random_hex: &str, role: Role) -> Option<SpanIds> {
        let random = hex::decode(random_hex.trim()).ok()?;
        if random.len() != 32 {
            return None;
        }
        let trace = openssl::sha::sha256(&random);
        let mut trace_bytes = [0u8; 16];
        trace_bytes.copy_from_slice(&trace[..16]);
        let trace_id = TraceId::from_bytes(non_zero(trace_bytes));
        let client = derived_span_id(b"client", &random);
        Some(match role {
            Role::Client => SpanIds {
                trace_id,
                span_id: client,
                parent_span_id: None,
                derived: true,
            },
            Role::Server => SpanIds {
                trace_id,
                span_id: derived_span_id(b"server", &random),
                parent_span_id: Some(client),
                derived: true,
            },
        })
    }

    /// Random ids, no parent: for outcomes without a ClientHello.
    pub fn random() -> SpanIds {
        let ids = RandomIdGenerator::default();
        SpanIds {
            trace_id: ids.new_trace_id(),
            span_id: ids.new_span_id(),
            parent_span_id: None,
            derived: false,
        }
    }
}

fn derived_span_id(label: &[u8], random: &[u8]) -> SpanId {
    let mut h = openssl::sha::Sha256::new();
    h.update(label);
    h.update(random);
    let digest = h.finish();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    SpanId::from_bytes(non_zero(bytes))
}

/// All-zero ids are invalid in OTLP; nudge the (astronomically unlikely)
/// zero digest prefix so the span is still accepted.
fn non_zero<const N: usize>(mut bytes: [u8; N]) -> [u8; N] {
    if bytes.iter().all(|&b| b == 0) {
        bytes[N - 1] = 1;
    }
    bytes
}

/// Whether a successful handshake with `trace_id` is exported at `ratio`:
/// the same rule as OpenTelemetry's `TraceIdRatioBased` sampler, so every
/// agent (and a collector-side sampler with the same ratio) agrees.
pub fn sample_success(trace_id: TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio.is_nan() || ratio <= 0.0 {
        return false;
    }
    let bytes = trace_id.to_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    (u64::from_be_bytes(low) >> 1) < bound
}
