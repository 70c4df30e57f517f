//! Finding the TLS libraries processes use.
//!
//! Uprobes attach to a file (an inode), not to a process: attaching once to
//! `/usr/lib/x86_64-linux-gnu/libssl.so.3` covers every process that maps it,
//! including ones that start later. Containers bring their own copies, found
//! through `/proc/PID/maps` and opened through `/proc/PID/root`. A process
//! that cannot be covered is reported with the reason.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Which OpenSSL library a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LibKind {
    /// libssl: the handshake entry points.
    Ssl,
    /// libcrypto: the error queue and X.509 verification.
    Crypto,
}

/// A library file as identified by the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FileId {
    pub dev: u64,
    pub inode: u64,
}

/// One TLS library mapped by a process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MappedLibrary {
    pub kind: LibKind,
    pub id: FileId,
    /// The path in the process's mount namespace, as `/proc/PID/maps` shows it.
    pub path_in_process: String,
    /// A path the agent can open that refers to the same file.
    pub attach_path: PathBuf,
}

/// Classifies a mapped file name as a TLS library.
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

/// Parses `/proc/PID/maps` text into the TLS libraries it maps.
///
/// `dev` in maps is `major:minor` in hex; it is turned into the same encoding
/// `stat(2)` uses so the two can be compared.
pub fn parse_maps(maps: &str) -> Vec<(LibKind, FileId, String)> {
    let mut found: BTreeMap<FileId, (LibKind, String)> = BTreeMap::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_range), Some(_perms), Some(_offset), Some(dev), Some(inode)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let Some(path) = fields.next() else { continue };
        let Some(kind) = lib_kind(path) else { continue };
        let (Some((major, minor)), Ok(inode)) = (dev.split_once(':'), inode.parse::<u64>()) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (
            u64::from_str_radix(major, 16),
            u64::from_str_radix(minor, 16),
        ) else {
            continue;
        };
        let id = FileId {
            dev: libc::makedev(major as u32, minor as u32),
            inode,
        };
        found.entry(id).or_insert((kind, path.to_string()));
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
    /// Its TLS libraries are probed.
    Covered,
    /// It maps no OpenSSL library (it may use another TLS stack: Go, Java,
    /// rustls; then only wire evidence is seen).
    NoTlsLibrary,
    /// It maps an OpenSSL library the agent could not probe.
    Unsupported(String),
    /// It exited before it could be inspected.
    Exited,
    /// Its memory map could not be read.
    Unreadable(String),
}

/// The libraries of one process, resolved to paths the agent can open.
pub fn libraries_of(pid: u32) -> Result<Vec<MappedLibrary>, Coverage> {
    let maps_path = format!("/proc/{pid}/maps");
    let maps = match fs::read_to_string(&maps_path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Coverage::Exited),
        // A process that exits while being read gives ESRCH.
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(Coverage::Exited),
        Err(e) => {
            return Err(Coverage::Unreadable(format!(
                "{maps_path}: {e}",
                e = crate::text::Chain(&e)
            )));
        }
    };
    let mut libs = Vec::new();
    for (kind, id, path) in parse_maps(&maps) {
        match resolve_attach_path(pid, &path, id) {
            Some(attach_path) => libs.push(MappedLibrary {
                kind,
                id,
                path_in_process: path,
                attach_path,
            }),
            None => {
                return Err(Coverage::Unsupported(format!(
                    "{path} is mapped but no path to the same file is readable \
                     (tried {path} and /proc/{pid}/root{path})"
                )));
            }
        }
    }
    Ok(libs)
}

/// A path that opens the very file (same device and inode) the process maps.
fn resolve_attach_path(pid: u32, path: &str, id: FileId) -> Option<PathBuf> {
    let candidates = [
        PathBuf::from(path),
        PathBuf::from(format!("/proc/{pid}/root{path}")),
    ];
    candidates.into_iter().find(|p| same_file(p, id))
}

fn same_file(path: &Path, id: FileId) -> bool {
    fs::metadata(path).is_ok_and(|m| m.dev() == id.dev && m.ino() == id.inode)
}

/// The system's own OpenSSL libraries (ld.so's search path), so that
/// processes that load libssl later are covered from the start.
pub fn system_libraries() -> Vec<(LibKind, PathBuf)> {
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
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            // Versioned names only: `libssl.so` is a dev symlink to one of them.
            let Some(kind) = lib_kind(name).filter(|_| name.contains(".so.")) else {
                continue;
            };
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if seen.insert((meta.dev(), meta.ino())) {
                out.push((kind, path));
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
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c000-55d0d000 r--p 00000000 fe:00 1234 /usr/bin/curl
7f00a000-7f00b000 r--p 00000000 fe:00 5555 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f00b000-7f00c000 r-xp 00001000 fe:00 5555 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f00d000-7f00e000 r--p 00000000 fe:00 6666 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f00f000-7f010000 r--p 00000000 00:00 0 [heap]
7f011000-7f012000 r--p 00000000 fe:00 7777 /usr/lib/x86_64-linux-gnu/libssl3.so
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
    fn nss_is_not_openssl() {
        assert_eq!(lib_kind("/usr/lib/libssl3.so"), None);
        assert_eq!(lib_kind("libssl.so.1.1"), Some(LibKind::Ssl));
        assert_eq!(lib_kind("/x/libcrypto.so.3"), Some(LibKind::Crypto));
    }

    #[test]
    fn this_process_maps_resolve_to_openable_paths() {
        // The test binary links the system libssl through the openssl crate.
        let libs = libraries_of(std::process::id()).expect("own maps are readable");
        assert!(libs.iter().any(|l| l.kind == LibKind::Ssl), "{libs:?}");
        for lib in libs {
            assert!(same_file(&lib.attach_path, lib.id));
        }
    }

    #[test]
    fn a_missing_process_is_reported_as_exited() {
        assert_eq!(libraries_of(u32::MAX - 1), Err(Coverage::Exited));
    }
}
