//! `apache_env::parse_envvars`: a shell file read, never run. Invariants:
//! no panic, each value within MAX_VALUE_BYTES and all within
//! MAX_TOTAL_BYTES, only names the file assigns.
#![no_main]

use agent::evidence::server_config::apache::{MAX_TOTAL_BYTES, MAX_VALUE_BYTES, parse_envvars};
use libfuzzer_sys::fuzz_target;
use tlsdoctor_fuzz::arm_allocation_cap;

fuzz_target!(|data: &[u8]| {
    arm_allocation_cap();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_envvars(text);
    let mut total = 0;
    for (name, value) in &parsed.vars {
        assert!(
            value.len() <= MAX_VALUE_BYTES,
            "{name}: {} bytes",
            value.len()
        );
        assert!(
            text.contains(&format!("{name}=")),
            "{name} is not assigned in the file"
        );
        total += value.len();
    }
    assert!(total <= MAX_TOTAL_BYTES, "{total} bytes in all");
});
