//! Reading a server's files as the server would: with its filesystem user
//! and group ids and its supplementary groups.
//!
//! The agent runs as root; a container's server often does not. Read as
//! root, a config of a non-root container could `include` a file only root
//! may read (its `/etc/shadow`, a mounted secret) and the agent would parse
//! it on the container's behalf. So every lookup inside such a root is done
//! with the server's credentials: the calling thread switches its own
//! fsuid, fsgid and groups for the length of one `openat2` and switches
//! back ([`Identity::assume`]). Linux keeps credentials per thread; the raw
//! system calls are used because glibc's `setgroups` changes every thread
//! of the process.
//!
//! Taking another fsuid needs CAP_SETUID and CAP_SETGID. Without them the
//! file is not read at all (the lookup fails with a clear error), rather
//! than read as root.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tracing::warn;

/// The credentials the kernel checks a server's file accesses with.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// Filesystem user id (the fourth `Uid:` field of /proc/PID/status).
    pub uid: u32,
    /// Filesystem group id.
    pub gid: u32,
    /// Supplementary groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<u32>,
}

/// Lookups refused because the agent could not take a server's identity.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// How many file lookups were refused because the agent could not read as
/// the server's user (no CAP_SETUID/CAP_SETGID), since start.
pub fn refused_lookups() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// Most supplementary groups taken over (the kernel's NGROUPS_MAX).
const MAX_GROUPS: usize = 65_536;

impl Identity {
    /// The filesystem identity of process `pid`.
    pub fn of_process(pid: u32) -> io::Result<Identity> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Identity::from_status(&status).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid}/status has no Uid/Gid lines"),
            )
        })
    }

    /// Parses the `Uid:`, `Gid:` and `Groups:` lines of /proc/PID/status.
    pub fn from_status(status: &str) -> Option<Identity> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|rest| rest.split_whitespace().collect::<Vec<_>>())
        };
        // Real, effective, saved, filesystem.
        let fs_id = |name: &str| -> Option<u32> { field(name)?.get(3)?.parse().ok() };
        let groups = field("Groups:")
            .unwrap_or_default()
            .iter()
            .take(MAX_GROUPS)
            .map(|g| g.parse().ok())
            .collect::<Option<Vec<u32>>>()?;
        Some(Identity {
            uid: fs_id("Uid:")?,
            gid: fs_id("Gid:")?,
            groups,
        })
    }

    /// Whether this identity passes every permission check root passes
    /// (the agent then reads as itself).
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Switches the calling thread to this identity until the guard is
    /// dropped. Fails (and counts the refusal) when the agent may not take
    /// it.
    pub(super) fn assume(&self) -> io::Result<Assumed> {
        let previous = Assumed::current()?;
        let refuse = |what: &str| {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "cannot read as the server's user (uid {}, gid {}): {what}; its files are not read as root instead",
                    self.uid, self.gid
                ),
            )
        };
        // From here on the guard restores whatever was changed.
        let guard = previous;
        if guard.groups != self.groups {
            set_groups(&self.groups).map_err(|e| {
                refuse(&format!(
                    "setgroups: {e} (CAP_SETGID needed)",
                    e = crate::text::Chain(&e)
                ))
            })?;
        }
        set_fsgid(self.gid);
        if set_fsgid(u32::MAX) != self.gid {
            return Err(refuse("setfsgid was refused (CAP_SETGID needed)"));
        }
        set_fsuid(self.uid);
        if set_fsuid(u32::MAX) != self.uid {
            return Err(refuse("setfsuid was refused (CAP_SETUID needed)"));
        }
        Ok(guard)
    }
}

/// The thread's credentials before [`Identity::assume`]; restored on drop.
pub(super) struct Assumed {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

impl Assumed {
    fn current() -> io::Result<Assumed> {
        Ok(Assumed {
            // An invalid id changes nothing and returns the current one.
            uid: set_fsuid(u32::MAX),
            gid: set_fsgid(u32::MAX),
            groups: get_groups()?,
        })
    }
}

impl Drop for Assumed {
    fn drop(&mut self) {
        // The uid first: back at fsuid 0 the capabilities it cleared
        // return. Failing here leaves the thread with fewer rights, never
        // more; say so.
        set_fsuid(self.uid);
        set_fsgid(self.gid);
        let groups_ok =
            get_groups().is_ok_and(|g| g == self.groups) || set_groups(&self.groups).is_ok();
        if set_fsuid(u32::MAX) != self.uid || set_fsgid(u32::MAX) != self.gid || !groups_ok {
            warn!("could not restore this thread's credentials after reading a server's files");
        }
    }
}

/// `setfsuid(2)`: returns the previous fsuid.
fn set_fsuid(uid: u32) -> u32 {
    // SAFETY: setfsuid takes a plain integer and touches no memory.
    let previous = unsafe { libc::syscall(libc::SYS_setfsuid, uid) };
    previous as u32
}

/// `setfsgid(2)`: returns the previous fsgid.
fn set_fsgid(gid: u32) -> u32 {
    // SAFETY: setfsgid takes a plain integer and touches no memory.
    let previous = unsafe { libc::syscall(libc::SYS_setfsgid, gid) };
    previous as u32
}

/// The calling thread's supplementary groups.
fn get_groups() -> io::Result<Vec<u32>> {
    // SAFETY: a size of 0 asks for the count only; no memory is written.
    let n = unsafe { libc::syscall(libc::SYS_getgroups, 0, std::ptr::null_mut::<libc::gid_t>()) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    let mut groups = vec![0 as libc::gid_t; n];
    // SAFETY: the buffer holds `n` gid_t, the size passed.
    let got = unsafe { libc::syscall(libc::SYS_getgroups, n, groups.as_mut_ptr()) };
    let got = usize::try_from(got).map_err(|_| io::Error::last_os_error())?;
    groups.truncate(got);
    Ok(groups)
}

/// `setgroups(2)` for the calling thread only (the raw system call; glibc's
/// wrapper changes every thread).
fn set_groups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: the pointer and length describe a live slice of gid_t (u32).
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_filesystem_ids_and_groups() {
        let status = "Name:\tnginx\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t77\n\
                      Uid:\t101\t101\t101\t102\nGid:\t103\t103\t103\t104\nFDSize:\t64\n\
                      Groups:\t103 4 27 \n";
        let id = Identity::from_status(status).unwrap();
        assert_eq!(
            id,
            Identity {
                uid: 102,
                gid: 104,
                groups: vec![103, 4, 27]
            }
        );
        assert!(!id.is_root());
        let root =
            Identity::from_status("Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n").unwrap();
        assert!(root.is_root());
        assert!(root.groups.is_empty());
        assert!(Identity::from_status("Uid:\t0\t0\nGid:\t0\t0\t0\t0\n").is_none());
        assert!(
            Identity::from_status("Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\tx\n").is_none()
        );
        assert!(Identity::from_status("").is_none());
    }

    #[test]
    fn our_own_identity_is_read_from_proc() {
        let ours = Identity::of_process(std::process::id()).unwrap();
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        assert_eq!((ours.uid, ours.gid), (uid, gid));
    }
}
