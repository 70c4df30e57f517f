fn main() -> std::process::ExitCode {
    tune_malloc();
    agent::cli::main()
}

/// glibc's malloc, set for a process that runs for months next to the
/// host's real work. By default glibc raises its mmap threshold to the size
/// of the largest block freed (up to 32 MiB) and its trim threshold to
/// twice that: after the coverage worker freed the symbol tables of one
/// large binary (megabytes, read once), every later large buffer came from
/// the arenas, and a thread's arena is never trimmed below its top chunk by
/// `malloc_trim` (glibc 2.36 trims only the main arena's top): the agent
/// kept 5–10 MiB of free memory resident idle and ~25 MiB after a flood
/// (BENCHMARKS.md, "Failure flood and agent memory"). Fixed thresholds turn
/// the dynamic adjustment off: blocks of 128 KiB and more are mapped and
/// unmapped on their own, and a heap whose free top passes 128 KiB shrinks.
fn tune_malloc() {
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
