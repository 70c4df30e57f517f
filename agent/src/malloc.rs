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
        self.worked |= n > 0;
        if !self.worked || self.last.elapsed() < RELEASE_EVERY {
            return false;
        }
        release_freed_memory();
        self.last = Instant::now();
        self.worked = false;
        true
    }
}
