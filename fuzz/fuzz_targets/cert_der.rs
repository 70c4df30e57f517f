//! Certificate loading from DER: `CertificateFact::from_der` and
//! `analyze_chain` (OpenSSL's verification plus the agent's own findings)
//! on the certificate alone and as a chain of two. Invariants: no panic;
//! a parsed certificate's digest is the SHA-256 of its bytes.
#![no_main]

use agent::evidence::certificates::{CertificateFact, TrustStore, analyze_chain};
use chrono::{TimeZone as _, Utc};
use libfuzzer_sys::fuzz_target;
use tlsdoctor_fuzz::arm_allocation_cap;

fuzz_target!(|data: &[u8]| {
    arm_allocation_cap();
    if let Ok(fact) = CertificateFact::from_der(data) {
        assert_eq!(fact.sha256.len(), 64, "{}", fact.sha256);
    }
    let Ok(trust) = TrustStore::from_der_certificates(&[data.to_vec()], "fuzz") else {
        return;
    };
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single();
    let Some(now) = now else { return };
    let der = data.to_vec();
    let _ = analyze_chain(
        std::slice::from_ref(&der),
        Some("example.com"),
        now,
        &trust,
        "fuzz",
    );
    let _ = analyze_chain(&[der.clone(), der], Some("192.0.2.1"), now, &trust, "fuzz");
});
