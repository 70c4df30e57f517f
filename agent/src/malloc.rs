//! glibc's malloc, set for a process that runs for months next to the
//! host's real work, and asked to give back what a burst left free.

use std::time::{Duration, Instant};

/// Fixed thresholds, set first thing in `main`. By default glibc raises its
/// mmap threshold to the size of the largest block freed (up to 32 MiB) and
/// its trim threshold to twice that: after the coverage worker freed the
/// symbol tables of one large binary, every later large buffer came from
/// the arenas, and a thread's arena is never trimmed below its top chunk by
/// `malloc_trim` (glibc 2.36 trims only the main arena's top): the release
/// agent kept 5–10 MiB of free memory resident idle (BENCHMARKS.md,
/// "Failure flood and agent memory"). Fixed values turn the adjustment
/// off: blocks of 128 KiB and more are mapped and unmapped on their own,
/// and a heap whose free top passes 128 KiB shrinks.
pub fn tune() {
    #[cfg(target_env = "gnu")]
    {
        const THRESHOLD: libc::c_int = 128 * 1024;
        // SAFETY: mallopt only sets glibc's malloc parameters; called first
        // thing in main, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
        }
    }
}

/// Gives back to the system the free pages inside glibc's arenas (the
/// holes a burst of connections leaves between blocks still in use, which
/// no threshold returns). Takes each arena's lock while it walks its free
/// lists: call it after a burst, not per event.
pub fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim only walks and trims glibc's own arenas.
        unsafe { libc::malloc_trim(0) };
    }
}

/// How often a busy thread gives freed memory back, at most.
pub const RELEASE_EVERY: Duration = Duration::from_secs(10);

/// Calls [`release_freed_memory`] at most every [`RELEASE_EVERY`], and only
/// when work was done since the last time.
#[derive(Debug)]
pub struct Releaser {
    last: Instant,
    worked: bool,
}

impl Default for Releaser {
    fn default() -> Self {
        Releaser {
            last: Instant::now(),
            worked: false,
        }
    }
}

impl Releaser {
    /// Notes that `n` items were handled; releases when one is due.
    /// Returns whether it released.
    pub fn after(&mut self, n: usize) -> bool {
        let due = self.due(n, Instant::now());
        if due {
            release_freed_memory();
        }
        due
    }

    /// Whether a release is due at `now` with `n` more items handled; if
    /// so, counts it as done.
    fn due(&mut self, n: usize, now: Instant) -> bool {
        self.worked |= n > 0;
        if !self.worked || now.saturating_duration_since(self.last) < RELEASE_EVERY {
            return false;
        }
        self.last = now;
        self.worked = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_at_most_every_period_and_only_after_work() {
        let start = Instant::now();
        let mut r = Releaser {
            last: start,
            worked: false,
        };
        assert!(!r.due(5, start + Duration::from_secs(1)), "too soon");
        assert!(r.due(0, start + RELEASE_EVERY), "work since the last");
        let later = start + RELEASE_EVERY * 3;
        assert!(!r.due(0, later), "no work since: nothing to give back");
        assert!(r.due(1, later));
        assert!(!r.due(1, later + Duration::from_secs(1)));
    }
}
