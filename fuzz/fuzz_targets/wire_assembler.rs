//! `WireAssembler::push` fed kernel chunks of both directions with gaps,
//! repeats, offset wrap-around, split headers and any flags, then
//! `progress`, `into_facts` and `parse_certificates`. Invariants: no
//! panic, memory under the cap, a failure stays a failure, every list of
//! the facts within its cap, the served chain no larger than the input,
//! no more certificates than DER blobs, and the facts serialize (they are
//! what the journal and OTLP get).
#![no_main]

use agent::evidence::certificates::CertificateCache;
use agent::evidence::wire::{Chunk, TlsFacts, WireAssembler, WireProgress};
use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use tlsdoctor_fuzz::arm_allocation_cap;
use tlsdoctor_fuzz::wire::chunk_ops;

/// The caps of `agent::evidence::wire` (one more line for "more not
/// listed").
const MAX_ANOMALIES: usize = 32 + 1;
const MAX_MESSAGES: usize = 64;
const MAX_ALERTS: usize = 32;
const MAX_ENCRYPTED_RECORDS: usize = 64;

fn check_caps(facts: &TlsFacts) {
    assert!(
        facts.anomalies.len() <= MAX_ANOMALIES,
        "{:?}",
        facts.anomalies
    );
    assert!(facts.messages.len() <= MAX_MESSAGES);
    assert!(facts.alerts.len() <= MAX_ALERTS);
    assert!(facts.encrypted_records.len() <= MAX_ENCRYPTED_RECORDS);
}

fuzz_target!(|data: &[u8]| {
    arm_allocation_cap();
    let start = Utc.timestamp_opt(1_750_000_000, 0).single().unwrap();
    let mut wire = WireAssembler::new();
    let mut failed = false;
    for (i, op) in chunk_ops(data).into_iter().enumerate() {
        wire.push(Chunk {
            time: start + chrono::Duration::milliseconds(i as i64),
            sender: op.sender,
            stream_offset: op.stream_offset,
            flags: op.flags,
            bytes: op.bytes,
        });
        let progress = wire.progress();
        assert!(
            !failed || progress == WireProgress::Failed,
            "a failed handshake became {progress:?}"
        );
        failed = progress == WireProgress::Failed;
        check_caps(wire.facts());
    }
    let mut facts = wire.into_facts();
    let der: usize = facts.server_chain_der.iter().map(Vec::len).sum();
    assert!(
        der <= data.len(),
        "{der} bytes of DER from {} of input",
        data.len()
    );
    let mut cache = CertificateCache::default();
    facts.parse_certificates(&mut cache);
    assert!(facts.server_certificates.len() <= facts.server_chain_der.len());
    check_caps(&facts);
    serde_json::to_vec(&facts).expect("the facts serialize");
});
