//! Shared parts of the fuzz targets: an allocation cap that turns unbounded
//! memory use into a crash libFuzzer reports, and the file trees the config
//! targets write from their input.
//!
//! Run with `cargo xtask fuzz` (see docs/robustness.md).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Live heap bytes a target may hold at once. Every input is at most a few
/// hundred KiB (`-max_len`), so a parser that needs more than this for one
/// has a blow-up (like `B=$A$A` doubling): the process aborts and libFuzzer
/// keeps the input. `TLSDOCTOR_FUZZ_ALLOC_CAP_MIB` overrides it.
const DEFAULT_CAP_MIB: usize = 256;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static CAP: AtomicUsize = AtomicUsize::new(0);

/// The system allocator with a cap on live bytes.
pub struct CappedAlloc;

/// Whether `live` bytes break the cap (never before it is armed).
fn breaks_cap(live: usize) -> bool {
    let cap = CAP.load(Ordering::Relaxed);
    cap != 0 && live > cap
}

fn over_cap() -> ! {
    // No allocation here: the allocator is what failed.
    let msg = b"tlsdoctor-fuzz: allocation cap exceeded (live heap bytes)\n";
    // SAFETY: writing a static buffer to stderr.
    unsafe {
        libc_write(2, msg.as_ptr(), msg.len());
    }
    std::process::abort();
}

unsafe extern "C" {
    #[link_name = "write"]
    fn libc_write(fd: i32, buf: *const u8, count: usize) -> isize;
}

// SAFETY: delegates to the system allocator; only counts.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        if breaks_cap(live) {
            over_cap();
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        if breaks_cap(live) {
            over_cap();
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let grow = new_size - layout.size();
            let live = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
            if breaks_cap(live) {
                over_cap();
            }
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: the caller's pointer and layout, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

/// Arms the cap (call once per input, from the target): allocations made
/// before (libFuzzer's own set-up) are not held against it.
pub fn arm_allocation_cap() {
    if CAP.load(Ordering::Relaxed) == 0 {
        // Reading the environment allocates; the cap is not armed yet.
        let mib = std::env::var("TLSDOCTOR_FUZZ_ALLOC_CAP_MIB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(DEFAULT_CAP_MIB);
        CAP.store(mib.max(1) << 20, Ordering::Relaxed);
    }
}

/// Most entries a generated tree has.
const MAX_ENTRIES: usize = 64;
/// Deepest relative path in a tree.
const MAX_DEPTH: usize = 8;

/// A file tree described by a fuzz input:
///
/// ```text
/// === nginx.conf
/// ...contents...
/// === conf.d/a.conf
/// ...
/// === sites/link -> ../conf.d/a.conf
/// ```
///
/// The first entry is the main file. Paths are relative and made of plain
/// components (`..` and empty ones dropped); a `->` entry is a symlink whose
/// target is kept as written (absolute, relative, dangling, a loop: all are
/// what a hostile container can hold).
#[derive(Debug, Default)]
pub struct Tree {
    pub entries: Vec<Entry>,
}

#[derive(Debug)]
pub enum Entry {
    File { path: PathBuf, text: Vec<u8> },
    Symlink { path: PathBuf, target: String },
}

impl Tree {
    pub fn parse(data: &[u8]) -> Tree {
        let mut tree = Tree::default();
        let text = data;
        let mut sections = split_sections(text);
        if sections.is_empty() {
            sections.push((b"main.conf".as_slice(), text));
        }
        for (header, body) in sections.into_iter().take(MAX_ENTRIES) {
            let header = String::from_utf8_lossy(header);
            match header.split_once(" -> ") {
                Some((path, target)) => {
                    if let Some(path) = clean_path(path) {
                        tree.entries.push(Entry::Symlink {
                            path,
                            target: target.trim().to_string(),
                        });
                    }
                }
                None => {
                    if let Some(path) = clean_path(&header) {
                        tree.entries.push(Entry::File {
                            path,
                            text: body.to_vec(),
                        });
                    }
                }
            }
        }
        tree
    }

    /// The main file's path as the server sees it (inside the root).
    pub fn main_file(&self) -> PathBuf {
        let rel = self
            .entries
            .first()
            .map(|e| match e {
                Entry::File { path, .. } | Entry::Symlink { path, .. } => path.clone(),
            })
            .unwrap_or_else(|| PathBuf::from("main.conf"));
        Path::new("/").join(rel)
    }

    /// Writes the tree under `root` (emptied first). Entries that cannot be
    /// written (a file where a directory is needed) are left out.
    pub fn write(&self, root: &Path) {
        let _ = fs::remove_dir_all(root);
        let _ = fs::create_dir_all(root);
        for entry in &self.entries {
            match entry {
                Entry::File { path, text } => {
                    let full = root.join(path);
                    if let Some(dir) = full.parent() {
                        let _ = fs::create_dir_all(dir);
                    }
                    let _ = fs::write(&full, text);
                }
                Entry::Symlink { path, target } => {
                    let full = root.join(path);
                    if let Some(dir) = full.parent() {
                        let _ = fs::create_dir_all(dir);
                    }
                    let _ = std::os::unix::fs::symlink(target, &full);
                }
            }
        }
    }
}

/// `=== header\n` lines split the input; what precedes the first is dropped.
fn split_sections(data: &[u8]) -> Vec<(&[u8], &[u8])> {
    const MARK: &[u8] = b"=== ";
    let mut starts = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let line_end = data[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |i| at + i);
        if data[at..line_end].starts_with(MARK) {
            starts.push((at + MARK.len(), line_end));
        }
        at = line_end + 1;
    }
    let mut out = Vec::new();
    for (i, &(header_start, header_end)) in starts.iter().enumerate() {
        let body_start = (header_end + 1).min(data.len());
        let body_end = starts
            .get(i + 1)
            .map_or(data.len(), |&(next, _)| next - MARK.len());
        out.push((
            &data[header_start..header_end],
            &data[body_start..body_end.max(body_start)],
        ));
    }
    out
}

fn clean_path(raw: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in Path::new(raw.trim()).components() {
        if let Component::Normal(part) = component {
            if part.len() > 64 {
                return None;
            }
            out.push(part);
        }
    }
    let depth = out.components().count();
    (depth > 0 && depth <= MAX_DEPTH).then_some(out)
}

/// A scratch directory for this fuzzing process, on tmpfs when there is one.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("tlsdoctor-fuzz-{tag}-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_parse_files_and_symlinks() {
        let tree = Tree::parse(
            b"=== nginx.conf\ninclude conf.d/*.conf;\n=== conf.d/a.conf\nserver {}\n\
              === ../../etc/x -> /etc/passwd\n=== /abs/../b -> a\n",
        );
        assert_eq!(tree.main_file(), Path::new("/nginx.conf"));
        assert_eq!(tree.entries.len(), 4);
        match &tree.entries[2] {
            Entry::Symlink { path, target } => {
                assert_eq!(path, Path::new("etc/x"));
                assert_eq!(target, "/etc/passwd");
            }
            other => panic!("{other:?}"),
        }
        match &tree.entries[1] {
            Entry::File { path, text } => {
                assert_eq!(path, Path::new("conf.d/a.conf"));
                assert_eq!(text, b"server {}\n");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn input_without_headers_is_the_main_file() {
        let tree = Tree::parse(b"events {}\n");
        assert_eq!(tree.entries.len(), 1);
        assert_eq!(tree.main_file(), Path::new("/main.conf"));
    }
}
