//! `capture::tls_libs::parse_maps`: /proc/PID/maps of any process.
//! Invariants: no panic; every library found is named in the input, is of
//! the kind its name says, and is listed once per file.
#![no_main]

use std::collections::HashSet;

use agent::capture::tls_libs::{lib_kind, parse_maps};
use libfuzzer_sys::fuzz_target;
use tlsdoctor_fuzz::arm_allocation_cap;

fuzz_target!(|data: &[u8]| {
    arm_allocation_cap();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let found = parse_maps(text);
    let mut ids = HashSet::new();
    for (kind, id, path) in &found {
        assert!(text.contains(path.as_str()), "{path} is not in the input");
        assert_eq!(lib_kind(path), Some(*kind), "{path}");
        assert!(ids.insert((id.dev, id.inode)), "{path} listed twice");
    }
});
