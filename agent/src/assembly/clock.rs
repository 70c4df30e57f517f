//! Kernel monotonic timestamps to wall-clock time.

use chrono::{DateTime, Utc};

/// Converts the kernel's monotonic timestamps to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// realtime - monotonic, nanoseconds.
    offset_ns: i128,
}

impl WallClock {
    /// Reads both clocks now (call once per batch of events: the offset
    /// moves when the wall clock is stepped).
    pub fn now() -> WallClock {
        WallClock {
            offset_ns: realtime_ns() - i128::from(monotonic_ns()),
        }
    }

    pub fn wall(&self, mono_ns: u64) -> DateTime<Utc> {
        let ns = i128::from(mono_ns) + self.offset_ns;
        let secs = ns.div_euclid(1_000_000_000) as i64;
        let nanos = ns.rem_euclid(1_000_000_000) as u32;
        DateTime::from_timestamp(secs, nanos).unwrap_or_default()
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

fn realtime_ns() -> i128 {
    clock_ns(libc::CLOCK_REALTIME)
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}
