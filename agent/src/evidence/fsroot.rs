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

use std::ffi::{CString, OsString};
use std::fs::{self, File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::debug;

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
    Process { pid: u32, mnt_ns: u64 },
    /// A directory standing in for `/` (tests; an unpacked image).
    Dir { path: PathBuf },
}

/// Why a server's root could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum FsRootError {
    #[error(
        "pid {pid} has exited since it was found: the files of its container can no longer be read"
    )]
    ProcessGone { pid: u32 },
    #[error("cannot enter the filesystem of pid {pid} ({}): {source}", proc_root(*pid).display())]
    Unreachable {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot open {} as a root directory: {source}", path.display())]
    BadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl From<FsRootError> for io::Error {
    fn from(e: FsRootError) -> io::Error {
        // Never NotFound: callers say "no such file" for that, and a gone
        // process is not a missing file.
        let kind = match &e {
            FsRootError::ProcessGone { .. } => io::ErrorKind::Other,
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

/// Most paths a rooted glob keeps between components: bounds a hostile
/// `/*/*/*/*` include.
const MAX_GLOB_PATHS: usize = 10_000;

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
    /// the agent's mount namespace and root, else its `/proc/PID/root`.
    /// When that cannot be told (the process is gone, or its namespace link
    /// is hidden from a non-root agent), the host's: what the agent did
    /// before it knew about containers.
    pub fn of_process(pid: u32) -> FsRoot {
        let theirs = format!("/proc/{pid}");
        let (Ok(own_ns), Ok(their_ns)) = (mnt_ns("/proc/self"), mnt_ns(&theirs)) else {
            debug!(
                pid,
                "mount namespace not readable; its files are read from the host"
            );
            return FsRoot::Host;
        };
        let same_root = match (root_id("/proc/self"), root_id(&theirs)) {
            (Ok(a), Ok(b)) => a == b,
            // Not comparable: the namespace decides.
            _ => true,
        };
        if own_ns == their_ns && same_root {
            FsRoot::Host
        } else {
            FsRoot::Process {
                pid,
                mnt_ns: their_ns,
            }
        }
    }

    pub fn is_host(&self) -> bool {
        matches!(self, FsRoot::Host)
    }

    /// The process whose root this is.
    pub fn pid(&self) -> Option<u32> {
        match self {
            FsRoot::Process { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// Whether two roots are the same filesystem view (two processes of one
    /// container are).
    pub fn same_view(&self, other: &FsRoot) -> bool {
        match (self, other) {
            (FsRoot::Process { mnt_ns: a, pid: p }, FsRoot::Process { mnt_ns: b, pid: q }) => {
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
        }
    }

    /// The directory this root is read through (`/proc/PID/root`).
    pub fn base(&self) -> Option<PathBuf> {
        match self {
            FsRoot::Host => None,
            FsRoot::Process { pid, .. } => Some(proc_root(*pid)),
            FsRoot::Dir { path } => Some(path.clone()),
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
            FsRoot::Dir { path } => {
                open_dir_path(path)
                    .map(Some)
                    .map_err(|source| FsRootError::BadDir {
                        path: path.clone(),
                        source,
                    })
            }
            FsRoot::Process { pid, mnt_ns: ns } => {
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
            Some(base) => open_in(&base, path, libc::O_RDONLY | flags).map(File::from),
        }
    }

    /// The metadata of a file (symlinks followed inside the root).
    pub fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        match self.open_base()? {
            None => fs::metadata(path),
            // O_PATH: no open of the file itself (a FIFO, a device), just
            // the lookup; fstat works on it.
            Some(base) => File::from(open_in(&base, path, libc::O_PATH)?).metadata(),
        }
    }

    pub fn is_dir(&self, path: &Path) -> bool {
        self.metadata(path).is_ok_and(|m| m.is_dir())
    }

    pub fn exists(&self, path: &Path) -> bool {
        self.metadata(path).is_ok()
    }

    /// The entries of a directory, as paths of this root, unsorted.
    pub fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let names: Vec<OsString> = match self.open_base()? {
            None => fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect(),
            Some(base) => {
                let fd = open_in(&base, dir, libc::O_RDONLY | libc::O_DIRECTORY)?;
                // The descriptor's /proc/self/fd link is the directory the
                // root resolution found, whatever its host-side path.
                fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))?
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .collect()
            }
        };
        Ok(names.into_iter().map(|n| dir.join(n)).collect())
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
    /// crate reports it.
    pub fn glob(
        &self,
        pattern: &str,
        options: glob::MatchOptions,
    ) -> Result<Vec<Result<PathBuf, String>>, glob::PatternError> {
        if self.is_host() {
            return Ok(glob::glob_with(pattern, options)?
                .map(|r| r.map_err(|e| e.to_string()))
                .collect());
        }
        // The glob crate walks real paths (and absolute symlinks on the way
        // would leave the root): match one component at a time instead,
        // listing directories through the root.
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
                let mut entries = match self.read_dir(dir) {
                    Ok(entries) => entries,
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
/// the container) are refused, as they could lead anywhere.
fn open_in(base: &OwnedFd, path: &Path, flags: i32) -> io::Result<OwnedFd> {
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
            Some(libc::ENOSYS) => return open_lexical(base, rel, flags),
            _ => return Err(err),
        }
    }
    Err(io::Error::other(
        "the path kept changing while it was looked up",
    ))
}

/// Kernels before 5.6 have no openat2: a plain lookup beneath the root
/// (`..` was resolved lexically; an absolute symlink inside resolves
/// against the agent's root, the one case this cannot get right).
fn open_lexical(base: &OwnedFd, rel: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c_path = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: valid descriptor and NUL-terminated path.
    let fd = unsafe { libc::openat(base.as_raw_fd(), c_path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    pub(crate) struct TempRoot(pub PathBuf);

    impl TempRoot {
        pub fn new(tag: &str) -> TempRoot {
            let dir =
                std::env::temp_dir().join(format!("tlsdoctor-fsroot-{}-{tag}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempRoot(dir)
        }
        pub fn write(&self, path: &str, text: &str) {
            let p = self.0.join(path.trim_start_matches('/'));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        pub fn root(&self) -> FsRoot {
            FsRoot::Dir {
                path: self.0.clone(),
            }
        }
    }

    impl Drop for TempRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn read(root: &FsRoot, path: &str) -> io::Result<String> {
        let mut s = String::new();
        root.open(Path::new(path))?.read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn absolute_paths_and_symlinks_resolve_inside_the_root() {
        let t = TempRoot::new("symlinks");
        t.write("/etc/ssl/real.pem", "inside");
        let root = t.root();
        assert_eq!(read(&root, "/etc/ssl/real.pem").unwrap(), "inside");
        // An absolute symlink, as containers have them: resolved in the
        // root, not on the host.
        std::os::unix::fs::symlink("/etc/ssl/real.pem", t.0.join("etc/ssl/link.pem")).unwrap();
        assert_eq!(read(&root, "/etc/ssl/link.pem").unwrap(), "inside");
        // A symlink to a host file does not reach it.
        std::os::unix::fs::symlink("/etc/hostname", t.0.join("etc/host")).unwrap();
        assert_eq!(
            read(&root, "/etc/host").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        // `..` stops at the root.
        assert_eq!(read(&root, "/../../etc/ssl/real.pem").unwrap(), "inside");
        std::os::unix::fs::symlink("../../../../../../etc/hostname", t.0.join("up")).unwrap();
        assert!(read(&root, "/up").is_err());
        // The host itself is unchanged.
        assert!(
            read(&FsRoot::Host, "/etc/hostname").is_ok() || !Path::new("/etc/hostname").exists()
        );
    }

    #[test]
    fn metadata_read_dir_and_glob_under_a_root() {
        let t = TempRoot::new("glob");
        t.write("/etc/nginx/conf.d/b.conf", "b");
        t.write("/etc/nginx/conf.d/a.conf", "a");
        t.write("/etc/nginx/conf.d/.hidden.conf", "h");
        t.write("/etc/nginx/conf.d/notes.txt", "n");
        let root = t.root();
        assert!(root.is_dir(Path::new("/etc/nginx/conf.d")));
        assert!(root.exists(Path::new("/etc/nginx/conf.d/a.conf")));
        assert!(!root.exists(Path::new("/etc/nginx/conf.d/zzz.conf")));
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let found: Vec<PathBuf> = root
            .glob("/etc/nginx/conf.d/*.conf", options)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            found,
            vec![
                PathBuf::from("/etc/nginx/conf.d/a.conf"),
                PathBuf::from("/etc/nginx/conf.d/b.conf")
            ]
        );
        let deep: Vec<PathBuf> = root
            .glob("/etc/*/conf.d/a.*", options)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(deep, vec![PathBuf::from("/etc/nginx/conf.d/a.conf")]);
        assert!(root.glob("/nowhere/*.conf", options).unwrap().is_empty());
        assert!(root.same_file(
            Path::new("/etc/nginx/conf.d/a.conf"),
            Path::new("/etc/nginx/../nginx/conf.d/a.conf")
        ));
    }

    #[test]
    fn a_gone_process_and_a_bad_root_are_errors_not_panics() {
        // Pid numbers this high are never handed out (pid_max <= 2^22).
        let gone = FsRoot::Process {
            pid: 4_194_304 + 17,
            mnt_ns: 1,
        };
        let e = gone.open(Path::new("/etc/nginx/nginx.conf")).unwrap_err();
        assert_ne!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("has exited"), "{e}");
        assert!(gone.metadata(Path::new("/")).is_err());
        let bad = FsRoot::Dir {
            path: PathBuf::from("/nonexistent-tlsdoctor-root"),
        };
        assert!(bad.open(Path::new("/x")).is_err());
        assert_eq!(
            gone.host_view(Path::new("/etc/../etc/nginx/nginx.conf")),
            PathBuf::from("/proc/4194321/root/etc/nginx/nginx.conf")
        );
    }

    #[test]
    fn our_own_process_is_on_the_host() {
        assert_eq!(FsRoot::of_process(std::process::id()), FsRoot::Host);
        assert!(FsRoot::Host.context().is_none());
    }
}
