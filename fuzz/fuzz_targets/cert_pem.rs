//! Certificate loading from a PEM file inside a container's root:
//! `load_pem_chain_in`, then `analyze_chain` on what it loaded. Invariants:
//! no panic; no more certificates than the file has BEGIN lines.
#![no_main]

use std::path::Path;

use agent::evidence::certificates::{TrustStore, analyze_chain, load_pem_chain_in};
use agent::evidence::fsroot::FsRoot;
use chrono::{TimeZone as _, Utc};
use libfuzzer_sys::fuzz_target;
use tlsdoctor_fuzz::{arm_allocation_cap, scratch_dir};

fuzz_target!(|data: &[u8]| {
    arm_allocation_cap();
    let root = scratch_dir("pem");
    let _ = std::fs::create_dir_all(&root);
    if std::fs::write(root.join("chain.pem"), data).is_err() {
        return;
    }
    let fsroot = FsRoot::Dir { path: root };
    let Ok(ders) = load_pem_chain_in(&fsroot, Path::new("/chain.pem")) else {
        return;
    };
    let begins = data.windows(11).filter(|w| w == b"-----BEGIN ").count();
    assert!(
        ders.len() <= begins,
        "{} certificates from {begins} BEGIN lines",
        ders.len()
    );
    let Ok(trust) = TrustStore::from_der_certificates(&[], "fuzz") else {
        return;
    };
    let Some(now) = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single() else {
        return;
    };
    let _ = analyze_chain(&ders, Some("localhost"), now, &trust, "/chain.pem");
});
