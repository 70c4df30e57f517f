//! The filesystem a server sees. A server in a container (another mount
//! namespace) names files as the container sees them: its
//! `/etc/nginx/nginx.conf` is not the host's. Every file of such a server
//! -- config, includes, certificates, keys, error logs -- is read through
//! [`FsRoot`], which opens it inside that server's root; the paths kept
//! and shown stay the container's.
//!
//! Opening `/proc/PID/root/<path>` alone is not enough: the kernel resolves
//! an absolute symlink met on the way against the *reader's* root, so a
//! container's `cert.pem -> /etc/letsencrypt/live/x/fullchain.pem` would be
//! read from the host (or be missing there) -- a misleading answer. Files
//! are therefore opened with `openat2(RESOLVE_IN_ROOT)` relative to the
//! root directory: symlinks and `..` resolve as they do for the server.
//!
//! Fail closed: when `openat2` is missing (Linux before 5.6, or a seccomp
//! filter) or the server's mount namespace cannot be read, its files are
//! not read at all -- a plain lookup would follow its absolute symlinks
//! into the host, and the host's root is not its root. A non-root server's
//! files are looked up with its own credentials ([`Identity`]). Every
//! refusal is an error naming the reason, and counted ([`refusals`]).

use std::ffi::{CString, OsString};
use std::fs::{self, File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tracing::debug;

mod identity;
#[cfg(test)]
mod tests;

pub use identity::Identity;

/// Where a server's paths are rooted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FsRoot {
    /// The agent's own filesystem (same mount namespace, same root).
    #[default]
    Host,
    /// The root of process `pid`, which runs in another mount namespace (a
    /// container) or under another root (chroot); read through
    /// `/proc/PID/root`. `mnt_ns` is the inode of its `/proc/PID/ns/mnt`:
    /// it tells a pid reused by another process from the server.
    /// `reads_as`: the server's credentials when it does not run as root;
    /// its files are looked up with them.
    Process {
        pid: u32,
        mnt_ns: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reads_as: Option<Identity>,
    },
    /// A directory standing in for `/` (tests; an unpacked image).
    Dir { path: PathBuf },
    /// The root of process `pid` could not be told apart from the host's
    /// (its mount namespace or root is not readable): nothing is read
    /// through it, since reading the host's files in its place would
    /// describe the wrong server.
    Unreadable { pid: u32, reason: String },
}

/// Why a server's root could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum FsRootError {
    #[error(
        "pid {pid} has exited since it was found: the files of its container can no longer be read"
    )]
    ProcessGone { pid: u32 },
    #[error("cannot enter the filesystem of pid {pid} ({})", proc_root(*pid).display())]
    Unreachable {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot open {} as a root directory", path.display())]
    BadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the filesystem of pid {pid} is not read: {reason}")]
    Refused { pid: u32, reason: String },
}

impl From<FsRootError> for io::Error {
    fn from(e: FsRootError) -> io::Error {
        // Never NotFound: callers say "no such file" for that, and a gone
        // process is not a missing file.
        let kind = match &e {
            FsRootError::ProcessGone { .. } => io::ErrorKind::Other,
            FsRootError::Refused { .. } => io::ErrorKind::PermissionDenied,
            FsRootError::Unreachable { source, .. } | FsRootError::BadDir { source, .. } => {
                match source.kind() {
                    io::ErrorKind::NotFound => io::ErrorKind::Other,
                    kind => kind,
                }
            }
        };
        io::Error::new(kind, e)
    }
}

/// Most paths a rooted glob keeps between components, and most entries it
/// lists of one directory: bounds a hostile `/*/*/*/*` include.
pub const MAX_GLOB_PATHS: usize = 10_000;

/// At most `max` entries of a directory ([`FsRoot::read_dir`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<PathBuf>,
    /// The directory held more entries than were listed.
    pub truncated: bool,
}

/// Roots refused because a process's namespace or root could not be read.
static REFUSED_ROOTS: AtomicU64 = AtomicU64::new(0);
/// Lookups refused because `openat2` is missing.
static OPENAT2_MISSING: AtomicU64 = AtomicU64::new(0);

/// What [`FsRoot`] refused to read, since start: counted so that a blind
/// spot shows in the status, not only in the error of one server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Refusals {
    /// Processes whose root could not be told apart from the host's.
    pub unreadable_roots: u64,
    /// Lookups inside a root refused because `openat2` is missing.
    pub openat2_missing: u64,
    /// Lookups refused because the agent could not take a server's
    /// credentials (CAP_SETUID/CAP_SETGID missing).
    pub identity_refused: u64,
}

/// The refusals counted so far.
pub fn refusals() -> Refusals {
    Refusals {
        unreadable_roots: REFUSED_ROOTS.load(Ordering::Relaxed),
        openat2_missing: OPENAT2_MISSING.load(Ordering::Relaxed),
        identity_refused: identity::refused_lookups(),
    }
}

/// A process's mount namespace inode and root directory (dev, inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct View {
    mnt_ns: u64,
    root: (u64, u64),
}

/// Whose root a process has, from the agent's view and its: `Ok(None)`
/// for the agent's own, `Ok(Some(mnt_ns))` for another, `Err(reason)`
/// when either cannot be read -- then nothing may be assumed.
fn classify(own: io::Result<View>, theirs: io::Result<View>) -> Result<Option<u64>, String> {
    let own = own.map_err(|e| {
        format!(
            "the agent's own mount namespace is not readable: {e}",
            e = crate::text::Chain(&e)
        )
    })?;
    let theirs = theirs.map_err(|e| {
        format!("its mount namespace or root is not readable ({e}); the host's files are not read in its place", e = crate::text::Chain(&e))
    })?;
    Ok((own != theirs).then_some(theirs.mnt_ns))
}

fn proc_root(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root"))
}

/// Inode of a process's mount namespace.
fn mnt_ns(proc_dir: &str) -> io::Result<u64> {
    fs::metadata(format!("{proc_dir}/ns/mnt")).map(|m| m.ino())
}

/// (dev, inode) of a process's root directory.
fn root_id(proc_dir: &str) -> io::Result<(u64, u64)> {
    fs::metadata(format!("{proc_dir}/root")).map(|m| (m.dev(), m.ino()))
}

impl FsRoot {
    /// The filesystem process `pid` sees: [`FsRoot::Host`] when it shares
    /// the agent's mount namespace and root, else its `/proc/PID/root`
    /// (looked up with its credentials when it does not run as root). When
    /// that cannot be told -- the process is gone, or its namespace link is
    /// hidden from the agent -- [`FsRoot::Unreadable`]: refused, counted,
    /// never the host's root in its place.
    pub fn of_process(pid: u32) -> FsRoot {
        let theirs = format!("/proc/{pid}");
        let view = |dir: &str| -> io::Result<View> {
            Ok(View {
                mnt_ns: mnt_ns(dir)?,
                root: root_id(dir)?,
            })
        };
        let root = match classify(view("/proc/self"), view(&theirs)) {
            Ok(None) => FsRoot::Host,
            Ok(Some(mnt_ns)) => match Identity::of_process(pid) {
                Ok(id) => FsRoot::Process {
                    pid,
                    mnt_ns,
                    reads_as: (!id.is_root()).then_some(id),
                },
                Err(e) => FsRoot::Unreadable {
                    pid,
                    reason: format!(
                        "its credentials are not readable: {e}",
                        e = crate::text::Chain(&e)
                    ),
                },
            },
            Err(reason) => FsRoot::Unreadable { pid, reason },
        };
        if let FsRoot::Unreadable { reason, .. } = &root {
            REFUSED_ROOTS.fetch_add(1, Ordering::Relaxed);
            debug!(pid, reason, "root not readable: its files are not read");
        }
        root
    }

    pub fn is_host(&self) -> bool {
        matches!(self, FsRoot::Host)
    }

    /// The process whose root this is.
    pub fn pid(&self) -> Option<u32> {
        match self {
            FsRoot::Process { pid, .. } | FsRoot::Unreadable { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// Whether the process this root belongs to is still the one found
    /// (same pid, same mount namespace). Other roots are always alive.
    pub fn is_alive(&self) -> bool {
        match self {
            FsRoot::Process {
                pid, mnt_ns: ns, ..
            } => mnt_ns(&format!("/proc/{pid}")).is_ok_and(|now| now == *ns),
            FsRoot::Unreadable { pid, .. } => Path::new(&format!("/proc/{pid}")).exists(),
            FsRoot::Host | FsRoot::Dir { .. } => true,
        }
    }

    /// Whether two roots are the same filesystem view (two processes of one
    /// container are).
    pub fn same_view(&self, other: &FsRoot) -> bool {
        match (self, other) {
            (
                FsRoot::Process {
                    mnt_ns: a, pid: p, ..
                },
                FsRoot::Process {
                    mnt_ns: b, pid: q, ..
                },
            ) => {
                // One namespace may hold several roots (chroots): compare
                // roots too when the namespace is shared.
                a == b
                    && (p == q
                        || root_id(&format!("/proc/{p}")).ok()
                            == root_id(&format!("/proc/{q}")).ok())
            }
            _ => self == other,
        }
    }

    /// Where a path of this root is, for people: "in the container of pid
    /// 1234". None on the host.
    pub fn context(&self) -> Option<String> {
        match self {
            FsRoot::Host => None,
            FsRoot::Process { pid, .. } => Some(format!("in the container of pid {pid}")),
            FsRoot::Dir { path } => Some(format!("under {}", path.display())),
            FsRoot::Unreadable { pid, .. } => Some(format!("of pid {pid}")),
        }
    }

    /// The directory this root is read through (`/proc/PID/root`).
    pub fn base(&self) -> Option<PathBuf> {
        match self {
            FsRoot::Host | FsRoot::Unreadable { .. } => None,
            FsRoot::Process { pid, .. } => Some(proc_root(*pid)),
            FsRoot::Dir { path } => Some(path.clone()),
        }
    }

    /// The credentials lookups in this root use, when not the agent's.
    fn reads_as(&self) -> Option<&Identity> {
        match self {
            FsRoot::Process { reads_as, .. } => reads_as.as_ref(),
            _ => None,
        }
    }

    /// `path` as seen from the host: `/proc/PID/root/<path>` (lexically;
    /// for display and logs only -- open files with [`FsRoot::open`]).
    pub fn host_view(&self, path: &Path) -> PathBuf {
        match self.base() {
            None => path.to_path_buf(),
            Some(base) => {
                let inner = normalize(path);
                base.join(inner.strip_prefix("/").unwrap_or(&inner))
            }
        }
    }

    /// The root directory, opened: checks that the process is still the one
    /// found (its pid not reused).
    fn open_base(&self) -> Result<Option<OwnedFd>, FsRootError> {
        match self {
            FsRoot::Host => Ok(None),
            FsRoot::Unreadable { pid, reason } => Err(FsRootError::Refused {
                pid: *pid,
                reason: reason.clone(),
            }),
            FsRoot::Dir { path } => {
                open_dir_path(path)
                    .map(Some)
                    .map_err(|source| FsRootError::BadDir {
                        path: path.clone(),
                        source,
                    })
            }
            FsRoot::Process {
                pid, mnt_ns: ns, ..
            } => {
                let pid = *pid;
                let gone = |e: &io::Error| {
                    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
                };
                let fd = open_dir_path(&proc_root(pid)).map_err(|source| {
                    if gone(&source) {
                        FsRootError::ProcessGone { pid }
                    } else {
                        FsRootError::Unreachable { pid, source }
                    }
                })?;
                match mnt_ns(&format!("/proc/{pid}")) {
                    Ok(now) if now == *ns => Ok(Some(fd)),
                    // Another process has the pid now (or the server
                    // moved namespaces): its files are not the server's.
                    Ok(_) => Err(FsRootError::ProcessGone { pid }),
                    Err(e) if gone(&e) => Err(FsRootError::ProcessGone { pid }),
                    Err(source) => Err(FsRootError::Unreachable { pid, source }),
                }
            }
        }
    }

    /// Opens a file for reading. Never blocks on a FIFO (O_NONBLOCK has no
    /// effect on regular files); callers check the file type.
    pub fn open(&self, path: &Path) -> io::Result<File> {
        let flags = libc::O_NONBLOCK | libc::O_NOCTTY;
        match self.open_base()? {
            None => fs::OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(path),
            Some(base) => {
                open_in(&base, path, libc::O_RDONLY | flags, self.reads_as()).map(File::from)
            }
        }
    }

    /// The metadata of a file (symlinks followed inside the root).
    pub fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        match self.open_base()? {
            None => fs::metadata(path),
            // O_PATH: no open of the file itself (a FIFO, a device), just
            // the lookup; fstat works on it.
            Some(base) => {
                File::from(open_in(&base, path, libc::O_PATH, self.reads_as())?).metadata()
            }
        }
    }

    pub fn is_dir(&self, path: &Path) -> bool {
        self.metadata(path).is_ok_and(|m| m.is_dir())
    }

    pub fn exists(&self, path: &Path) -> bool {
        self.metadata(path).is_ok()
    }

    /// At most `max` entries of a directory, as paths of this root, in
    /// the order the directory yields them (unsorted). `truncated` says
    /// there were more: a directory of a million entries is not listed
    /// whole to find a few config files.
    pub fn read_dir(&self, dir: &Path, max: usize) -> io::Result<Listing> {
        let (reader, _fd) = match self.open_base()? {
            None => (fs::read_dir(dir)?, None),
            Some(base) => {
                let fd = open_in(
                    &base,
                    dir,
                    libc::O_RDONLY | libc::O_DIRECTORY,
                    self.reads_as(),
                )?;
                // The descriptor's /proc/self/fd link is the directory the
                // root resolution found (and the server may list), whatever
                // its host-side path.
                let reader = fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
                (reader, Some(fd))
            }
        };
        let mut names: Vec<OsString> = Vec::new();
        let mut truncated = false;
        for entry in reader {
            let Ok(entry) = entry else { continue };
            if names.len() >= max {
                truncated = true;
                break;
            }
            names.push(entry.file_name());
        }
        Ok(Listing {
            entries: names.into_iter().map(|n| dir.join(n)).collect(),
            truncated,
        })
    }

    /// The path with symlinks resolved where possible, to tell two names
    /// of one file apart (include loops). Inside a root, lexical only.
    pub fn canonical(&self, path: &Path) -> PathBuf {
        match self {
            FsRoot::Host => fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            _ => normalize(path),
        }
    }

    /// Whether two paths of this root are one file.
    pub fn same_file(&self, a: &Path, b: &Path) -> bool {
        if a == b {
            return true;
        }
        match (self.metadata(a), self.metadata(b)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        }
    }

    /// Expands a glob pattern (absolute, as the server would) into the
    /// matching paths of this root, sorted per directory as glob(3) sorts.
    /// An unreadable directory on the way is an `Err` entry, as the glob
    /// crate reports it; so is a directory with more than
    /// [`MAX_GLOB_PATHS`] entries (only that many are looked at).
    pub fn glob(
        &self,
        pattern: &str,
        options: glob::MatchOptions,
    ) -> Result<Vec<Result<PathBuf, String>>, glob::PatternError> {
        // One component at a time, listing directories through the root
        // with a cap: the glob crate walks real paths (absolute symlinks on
        // the way would leave a container's root) and reads whole
        // directories before any cap applies.
        let mut current: Vec<PathBuf> = vec![PathBuf::from("/")];
        let mut errors = Vec::new();
        // Entries a wildcard matched were listed, so they exist (a dangling
        // symlink among them is kept, as glob(3) keeps it); a literal last
        // component must be looked up.
        let mut listed = false;
        for comp in normalize(Path::new(pattern)).components() {
            let Component::Normal(name) = comp else {
                continue; // the root
            };
            let text = name.to_string_lossy();
            if !text.contains(['*', '?', '[']) {
                current = current.into_iter().map(|d| d.join(name)).collect();
                listed = false;
                continue;
            }
            let compiled = glob::Pattern::new(&text)?;
            let mut next = Vec::new();
            for dir in &current {
                if !self.is_dir(dir) {
                    continue;
                }
                let mut entries = match self.read_dir(dir, MAX_GLOB_PATHS) {
                    Ok(listing) => {
                        if listing.truncated {
                            errors.push(Err(format!(
                                "`{}` holds more than {MAX_GLOB_PATHS} entries; only {MAX_GLOB_PATHS} were looked at",
                                dir.display()
                            )));
                        }
                        listing.entries
                    }
                    Err(e) => {
                        errors.push(Err(format!("attempting to read `{}`: {e}", dir.display())));
                        continue;
                    }
                };
                entries.sort();
                next.extend(entries.into_iter().filter(|p| {
                    p.file_name()
                        .is_some_and(|n| compiled.matches_with(&n.to_string_lossy(), options))
                }));
                if next.len() > MAX_GLOB_PATHS {
                    break;
                }
            }
            current = next;
            listed = true;
        }
        let mut out: Vec<Result<PathBuf, String>> = current
            .into_iter()
            .filter(|p| listed || self.exists(p))
            .map(Ok)
            .collect();
        out.extend(errors);
        Ok(out)
    }
}

/// `path` with `.` and `..` resolved lexically, absolute; `..` stops at
/// the root, as the kernel stops it at a process's root.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for comp in path.components() {
        match comp {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
        }
    }
    out
}

fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(path)?;
    Ok(OwnedFd::from(file))
}

/// `struct open_how` of linux/openat2.h (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `path` beneath `base` as if `base` were `/`: absolute symlinks and
/// `..` stay inside it; magic links (/proc/PID/fd/N, /proc/PID/root inside
/// the container) are refused, as they could lead anywhere. With
/// `reads_as`, the lookup runs with those credentials.
fn open_in(
    base: &OwnedFd,
    path: &Path,
    flags: i32,
    reads_as: Option<&Identity>,
) -> io::Result<OwnedFd> {
    let inner = normalize(path);
    let rel = inner.strip_prefix("/").unwrap_or(&inner);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c_path = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    // Held until the lookup is done; dropping it restores the thread.
    let _assumed = reads_as.map(Identity::assume).transpose()?;
    // openat2 fails with EAGAIN when a rename or mount raced the lookup.
    for _ in 0..8 {
        // SAFETY: the path is NUL-terminated and `how` is a live open_how of
        // the size passed; the returned descriptor is owned below.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                base.as_raw_fd(),
                c_path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("bad descriptor"))?;
            // SAFETY: the kernel just returned this descriptor to us.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) => continue,
            Some(libc::ENOSYS) => {
                OPENAT2_MISSING.fetch_add(1, Ordering::Relaxed);
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "openat2 is not available (Linux before 5.6, or a seccomp filter): \
                     files inside another root are not read, since a plain lookup would \
                     follow their absolute symlinks into the host",
                ));
            }
            _ => return Err(err),
        }
    }
    Err(io::Error::other(
        "the path kept changing while it was looked up",
    ))
}
