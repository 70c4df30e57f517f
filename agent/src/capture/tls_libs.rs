//! Finding the files processes run code from, and opening them safely.
//!
//! Uprobes attach to a file (an inode), not to a process: attaching once to
//! `/usr/lib/x86_64-linux-gnu/libssl.so.3` covers every process that maps it,
//! including ones that start later. Any executable mapping may hold a TLS
//! library: a shared libssl, or OpenSSL linked into the executable itself
//! (Node.js, anything that vendors it); `capture::elf` tells them apart by
//! their symbols.
//!
//! A process's files are named by `/proc/PID/maps`, a path in the process's
//! own mount namespace that the process controls. Such a path is opened once,
//! with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` below
//! `/proc/PID/root` (an absolute symlink in a container resolves inside the
//! container, never to a host file), and the descriptor is checked against
//! the mapping's device and inode; everything after (symbols, attach) goes
//! through that descriptor. `/proc/PID/maps` is streamed with caps, its paths
//! kept as bytes (a non-UTF-8 name is no way to avoid being probed).

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Which parts of a TLS stack a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LibKind {
    /// libssl: the handshake entry points.
    Ssl,
    /// libcrypto: the error queue and X.509 verification.
    Crypto,
    /// Both, in one file: OpenSSL linked into an executable or library.
    SslAndCrypto,
}

/// A file as identified by the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FileId {
    pub dev: u64,
    pub inode: u64,
}

/// What changes when a file is rewritten in place (same inode): a uprobe at
/// an offset of the old contents must not stay on the new ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileStamp {
    pub fn of(meta: &fs::Metadata) -> FileStamp {
        FileStamp {
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

/// Classifies a mapped file name as an OpenSSL shared library.
pub fn lib_kind(path: &str) -> Option<LibKind> {
    let name = path.rsplit('/').next().unwrap_or(path);
    // "libssl.so.3", "libssl.so.1.1", "libssl3.so" is NSS (not OpenSSL).
    if name.starts_with("libssl.so") {
        Some(LibKind::Ssl)
    } else if name.starts_with("libcrypto.so") {
        Some(LibKind::Crypto)
    } else {
        None
    }
}

/// One file a process maps with execute permission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedFile {
    pub id: FileId,
    /// The path in the process's mount namespace, as `/proc/PID/maps` shows
    /// it (bytes: Linux paths need not be UTF-8), without " (deleted)".
    pub path: Vec<u8>,
    /// `/proc/PID/maps` marks it " (deleted)": the path now names another
    /// file, or none.
    pub deleted: bool,
    /// The mapping's address range (`start-end` in hex), for
    /// `/proc/PID/map_files`.
    pub range: String,
}

impl MappedFile {
    /// The path for people (lossy where it is not UTF-8).
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// Limits on reading one `/proc/PID/maps`: a process controls how many
/// mappings it has (up to `vm.max_map_count`) and how long their paths are.
#[derive(Clone, Copy, Debug)]
pub struct MapsLimits {
    /// Bytes read at most.
    pub max_bytes: u64,
    /// Distinct executable files kept at most.
    pub max_files: usize,
}

impl Default for MapsLimits {
    fn default() -> Self {
        MapsLimits {
            // 65,530 mappings (the default vm.max_map_count) of 4 KiB paths
            // are ~270 MB: read in a stream, never held, and cut here.
            max_bytes: 64 * 1024 * 1024,
            max_files: 4096,
        }
    }
}

/// The executable files one process maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessMaps {
    pub files: Vec<MappedFile>,
    /// Why the listing is incomplete (a limit was reached), if it is.
    pub truncated: Option<String>,
}

/// Parses one line of `/proc/PID/maps` into an executable file mapping.
/// Anonymous, special (`[heap]`) and non-executable mappings give `None`.
fn parse_maps_line(line: &[u8]) -> Option<MappedFile> {
    // "start-end perms offset major:minor inode   path": the path is the
    // rest of the line after the fifth field and its padding.
    let mut rest = line;
    let mut fields: [&[u8]; 5] = [&[]; 5];
    for field in &mut fields {
        let start = rest.iter().position(|b| *b != b' ')?;
        rest = &rest[start..];
        let end = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
        *field = &rest[..end];
        rest = &rest[end..];
    }
    let [range, perms, _offset, dev, inode] = fields;
    if perms.get(2) != Some(&b'x') {
        return None;
    }
    let start = rest.iter().position(|b| *b != b' ')?;
    let mut path = &rest[start..];
    if path.first() != Some(&b'/') {
        return None;
    }
    const DELETED: &[u8] = b" (deleted)";
    let deleted = path.ends_with(DELETED);
    if deleted {
        path = &path[..path.len() - DELETED.len()];
    }
    let dev = std::str::from_utf8(dev).ok()?;
    let (major, minor) = dev.split_once(':')?;
    let major = u32::from_str_radix(major, 16).ok()?;
    let minor = u32::from_str_radix(minor, 16).ok()?;
    let inode = std::str::from_utf8(inode).ok()?.parse::<u64>().ok()?;
    if inode == 0 {
        return None;
    }
    Some(MappedFile {
        id: FileId {
            dev: libc::makedev(major, minor),
            inode,
        },
        path: path.to_vec(),
        deleted,
        range: String::from_utf8_lossy(range).into_owned(),
    })
}

/// Reads the executable files of a `/proc/PID/maps` stream, each once,
/// within `limits`. Lines longer than a path can be are skipped whole.
pub fn read_maps(reader: impl Read, limits: MapsLimits) -> std::io::Result<ProcessMaps> {
    // A maps line: ~75 bytes of fields and a path of at most PATH_MAX.
    const MAX_LINE: u64 = 4096 + 256;
    let mut reader = BufReader::new(reader.take(limits.max_bytes));
    let mut out = ProcessMaps::default();
    let mut seen = std::collections::HashSet::new();
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let n = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') && n as u64 == MAX_LINE {
            // Not a maps line; skip to its end.
            let mut sink = Vec::new();
            (&mut reader)
                .take(MAX_LINE * 64)
                .read_until(b'\n', &mut sink)?;
            continue;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if let Some(file) = parse_maps_line(&line)
            && seen.insert(file.id)
        {
            if out.files.len() >= limits.max_files {
                out.truncated = Some(format!(
                    "more than {} executable files mapped; the rest not examined",
                    limits.max_files
                ));
                break;
            }
            out.files.push(file);
        }
    }
    if out.truncated.is_none() && reader.get_ref().limit() == 0 {
        out.truncated = Some(format!(
            "/proc/PID/maps longer than {} bytes; the rest not examined",
            limits.max_bytes
        ));
    }
    Ok(out)
}

/// Parses `/proc/PID/maps` text into the OpenSSL shared libraries it maps
/// (by file name), each once.
pub fn parse_maps(maps: &str) -> Vec<(LibKind, FileId, String)> {
    let mut found: BTreeMap<FileId, (LibKind, String)> = BTreeMap::new();
    for line in maps.lines() {
        let Some(file) = parse_maps_line(line.as_bytes()) else {
            continue;
        };
        let path = file.display();
        if let Some(kind) = lib_kind(&path) {
            found.entry(file.id).or_insert((kind, path));
        }
    }
    found
        .into_iter()
        .map(|(id, (kind, path))| (kind, id, path))
        .collect()
}

/// Why a process is not covered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "kebab-case")]
pub enum Coverage {
    /// Its TLS library is probed.
    Covered,
    /// It maps no OpenSSL code (it may use another TLS stack: Go, Java,
    /// rustls; then only wire evidence is seen).
    NoTlsLibrary,
    /// It maps TLS code the agent could not probe.
    Unsupported(String),
    /// It exited before it could be inspected.
    Exited,
    /// Its memory map could not be read.
    Unreadable(String),
}

/// The executable files of one process.
pub fn files_of(pid: u32) -> Result<ProcessMaps, Coverage> {
    let maps_path = format!("/proc/{pid}/maps");
    let gone = |e: &std::io::Error| {
        // A process that exits while being read gives ESRCH.
        e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
    };
    let file = match File::open(&maps_path) {
        Ok(f) => f,
        Err(e) if gone(&e) => return Err(Coverage::Exited),
        Err(e) => {
            return Err(Coverage::Unreadable(format!(
                "{maps_path}: {e}",
                e = crate::text::Chain(&e)
            )));
        }
    };
    match read_maps(file, MapsLimits::default()) {
        Ok(maps) => Ok(maps),
        Err(e) if gone(&e) => Err(Coverage::Exited),
        Err(e) => Err(Coverage::Unreadable(format!(
            "{maps_path}: {e}",
            e = crate::text::Chain(&e)
        ))),
    }
}

/// Why a mapped file could not be opened as the file the process maps.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the process exited")]
    Exited,
    #[error("{0}")]
    Io(String),
    #[error("openat2 is not available here ({0}); refusing to resolve container paths without it")]
    NoOpenat2(std::io::Error),
    #[error("{path} in the process's root is another file (device/inode differ); not probed")]
    NotTheMappedFile { path: String },
}

/// A file opened once, the very one a process maps.
#[derive(Debug)]
pub struct OpenedFile {
    pub file: File,
    pub id: FileId,
    pub stamp: FileStamp,
    /// How it was reached, for the status file.
    pub via: String,
}

// openat2(2) (linux/openat2.h); libc has the syscall number, not the struct.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// `openat2(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW?, resolve)`.
fn openat2(dirfd: &OwnedFd, path: &[u8], resolve: u64) -> std::io::Result<File> {
    let path = CString::new(path).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: a valid directory fd, a NUL-terminated path and an
    // initialised open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

/// Opens the file a process maps at `mapped`: through its root with
/// `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, or, when the path now
/// names another file (replaced, deleted), through the mapping itself
/// (`/proc/PID/map_files`, a kernel link to the mapped file, no path
/// resolution by the process's rules). The descriptor must be the mapped
/// device and inode, and a regular file.
pub fn open_mapped(pid: u32, mapped: &MappedFile) -> Result<OpenedFile, OpenError> {
    let root = format!("/proc/{pid}/root");
    let root_fd = File::open(&root).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT | libc::ESRCH) => OpenError::Exited,
        _ => OpenError::Io(format!("{root}: {e}")),
    })?;
    let root_fd = OwnedFd::from(root_fd);
    let in_root = if mapped.deleted {
        None
    } else {
        match openat2(
            &root_fd,
            &mapped.path,
            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        ) {
            Ok(f) => Some(f),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                return Err(OpenError::NoOpenat2(e));
            }
            Err(_) => None,
        }
    };
    if let Some(file) = in_root
        && let Ok(opened) = check(file, mapped.id, format!("{root}{}", mapped.display()))
    {
        return Ok(opened);
    }
    // The mapping itself: needs CAP_SYS_ADMIN (the agent has it: uprobes do).
    let link = format!("/proc/{pid}/map_files/{}", mapped.range);
    match File::open(&link) {
        Ok(file) => check(file, mapped.id, link).map_err(|_| OpenError::NotTheMappedFile {
            path: mapped.display(),
        }),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => {
            Err(OpenError::NotTheMappedFile {
                path: mapped.display(),
            })
        }
        Err(e) => Err(OpenError::Io(format!("{link}: {e}"))),
    }
}

fn check(file: File, id: FileId, via: String) -> Result<OpenedFile, ()> {
    let meta = file.metadata().map_err(|_| ())?;
    if !meta.file_type().is_file() || meta.dev() != id.dev || meta.ino() != id.inode {
        return Err(());
    }
    Ok(OpenedFile {
        file,
        id,
        stamp: FileStamp::of(&meta),
        via,
    })
}

/// Opens a host path (the system's own libraries), following symlinks the
/// host owns.
pub fn open_host(path: &Path) -> std::io::Result<OpenedFile> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(OpenedFile {
        id: FileId {
            dev: meta.dev(),
            inode: meta.ino(),
        },
        stamp: FileStamp::of(&meta),
        file,
        via: path.display().to_string(),
    })
}

/// The system's own OpenSSL libraries (ld.so's search path), so that
/// processes that load libssl later are covered from their first handshake.
pub fn system_libraries() -> Vec<PathBuf> {
    let dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/lib64",
        "/lib",
    ];
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            let Some(name) = path.file_name().and_then(OsStr::to_str) else {
                continue;
            };
            // Versioned names only: `libssl.so` is a dev symlink to one of them.
            if lib_kind(name).is_none() || !name.contains(".so.") {
                continue;
            }
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if seen.insert((meta.dev(), meta.ino())) {
                out.push(path);
            }
        }
    }
    out
}

/// Every process id under /proc.
pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            std::str::from_utf8(e.file_name().as_bytes())
                .ok()?
                .parse()
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c000-55d0d000 r-xp 00000000 fe:00 1234 /usr/bin/curl
7f00a000-7f00b000 r--p 00000000 fe:00 5555 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f00b000-7f00c000 r-xp 00001000 fe:00 5555 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f00d000-7f00e000 r-xp 00000000 fe:00 6666 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f00f000-7f010000 r-xp 00000000 00:00 0 [heap]
7f011000-7f012000 r-xp 00000000 fe:00 7777 /usr/lib/x86_64-linux-gnu/libssl3.so
7f013000-7f014000 r-xp 00000000 fe:00 8888 /opt/app/lib with spaces.so (deleted)
garbage line
";

    #[test]
    fn maps_yield_each_openssl_library_once() {
        let libs = parse_maps(MAPS);
        assert_eq!(libs.len(), 2);
        assert_eq!(libs[0].0, LibKind::Ssl);
        assert_eq!(libs[0].1.inode, 5555);
        assert_eq!(libs[0].1.dev, libc::makedev(0xfe, 0));
        assert_eq!(libs[1].0, LibKind::Crypto);
    }

    #[test]
    fn executable_mappings_are_kept_once_with_their_whole_path() {
        let maps = read_maps(MAPS.as_bytes(), MapsLimits::default()).unwrap();
        let names: Vec<String> = maps.files.iter().map(MappedFile::display).collect();
        assert_eq!(
            names,
            [
                "/usr/bin/curl",
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
                "/usr/lib/x86_64-linux-gnu/libssl3.so",
                "/opt/app/lib with spaces.so",
            ]
        );
        assert!(maps.files[4].deleted);
        assert_eq!(maps.files[1].range, "7f00b000-7f00c000");
        assert_eq!(maps.truncated, None);
    }

    #[test]
    fn a_non_utf8_path_is_kept_not_dropped() {
        let mut line =
            b"7f00b000-7f00c000 r-xp 00001000 fe:00 99 /srv/ct/lib\xff\xfe/libssl.so.3\n".to_vec();
        line.extend_from_slice(
            b"7f00d000-7f00e000 r-xp 00000000 fe:00 6666 /usr/lib/libcrypto.so.3\n",
        );
        let maps = read_maps(&line[..], MapsLimits::default()).unwrap();
        assert_eq!(maps.files.len(), 2);
        assert_eq!(maps.files[0].path, b"/srv/ct/lib\xff\xfe/libssl.so.3");
        assert_eq!(maps.files[0].id.inode, 99);
    }

    #[test]
    fn huge_maps_are_cut_at_the_limits_and_say_so() {
        let mut text = String::new();
        for i in 0..10_000u32 {
            text.push_str(&format!(
                "7f{i:06x}000-7f{i:06x}fff r-xp 00000000 fe:00 {} /x/{}\n",
                i + 1,
                "a".repeat(200)
            ));
        }
        let limits = MapsLimits {
            max_bytes: 64 * 1024,
            max_files: 100_000,
        };
        let maps = read_maps(text.as_bytes(), limits).unwrap();
        assert!(maps.files.len() < 400, "{}", maps.files.len());
        assert!(maps.truncated.as_deref().unwrap().contains("longer than"));
        let limits = MapsLimits {
            max_bytes: u64::MAX,
            max_files: 10,
        };
        let maps = read_maps(text.as_bytes(), limits).unwrap();
        assert_eq!(maps.files.len(), 10);
        assert!(maps.truncated.as_deref().unwrap().contains("more than 10"));
        // A line longer than any path is skipped, the next one still read.
        let long = format!(
            "7f0-7f1 r-xp 0 fe:00 5 /{}\n7f2-7f3 r-xp 0 fe:00 6 /ok\n",
            "b".repeat(10_000)
        );
        let maps = read_maps(long.as_bytes(), MapsLimits::default()).unwrap();
        assert_eq!(maps.files.len(), 1);
        assert_eq!(maps.files[0].path, b"/ok");
    }

    #[test]
    fn nss_is_not_openssl() {
        assert_eq!(lib_kind("/usr/lib/libssl3.so"), None);
        assert_eq!(lib_kind("libssl.so.1.1"), Some(LibKind::Ssl));
        assert_eq!(lib_kind("/x/libcrypto.so.3"), Some(LibKind::Crypto));
    }

    #[test]
    fn this_process_libssl_opens_as_the_mapped_file() {
        // The test binary links the system libssl through the openssl crate.
        openssl_sys::init();
        let maps = files_of(std::process::id()).expect("own maps are readable");
        let ssl = maps
            .files
            .iter()
            .find(|f| lib_kind(&f.display()) == Some(LibKind::Ssl))
            .expect("libssl is mapped");
        let opened = open_mapped(std::process::id(), ssl).expect("opens");
        assert_eq!(opened.id, ssl.id);
        assert!(opened.via.contains("/root/"), "{}", opened.via);
    }

    #[test]
    fn a_path_that_now_names_another_file_is_opened_through_the_mapping() {
        openssl_sys::init();
        let maps = files_of(std::process::id()).expect("own maps are readable");
        let mut ssl = maps
            .files
            .iter()
            .find(|f| lib_kind(&f.display()) == Some(LibKind::Ssl))
            .expect("libssl is mapped")
            .clone();
        // As if the library had been replaced on disk: the path is another file.
        ssl.path = b"/etc/hostname".to_vec();
        let opened = open_mapped(std::process::id(), &ssl).expect("opens via map_files");
        assert_eq!(opened.id, ssl.id);
        assert!(opened.via.contains("/map_files/"), "{}", opened.via);
        // A path that is another file and a range that maps nothing: refused.
        ssl.range = "1000-2000".to_string();
        assert!(matches!(
            open_mapped(std::process::id(), &ssl),
            Err(OpenError::NotTheMappedFile { .. })
        ));
    }

    #[test]
    fn a_missing_process_is_reported_as_exited() {
        assert_eq!(files_of(u32::MAX - 1), Err(Coverage::Exited));
    }
}
