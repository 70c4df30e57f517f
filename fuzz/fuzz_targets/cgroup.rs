//! `cgroup::parse` (/proc/PID/cgroup) and `cgroup::parse_path`. Invariants:
//! no panic; a container id is 64 lower-case hex digits taken from the
//! input (in any case: ids are lower-cased).
#![no_main]

use agent::evidence::cgroup;
use libfuzzer_sys::fuzz_target;
use tlsdoctor_fuzz::arm_allocation_cap;

fuzz_target!(|data: &[u8]| {
    arm_allocation_cap();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for info in [cgroup::parse(text), cgroup::parse_path(text)] {
        if let Some(id) = &info.container_id {
            assert_eq!(id.len(), 64, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{id}"
            );
            assert!(
                text.to_ascii_lowercase().contains(id.as_str()),
                "{id} is not in the input"
            );
        }
        if let Some(path) = &info.path {
            assert!(path.len() <= text.len(), "a path longer than its input");
        }
    }
});
