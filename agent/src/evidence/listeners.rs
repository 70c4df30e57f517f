//! Listener evidence (H): every listening TCP socket with its bind address,
//! owning process, accept-queue depth, and the kernel's listen-overflow
//! counters (procfs: /proc/net/tcp{,6}, /proc/PID/fd, /proc/net/netstat).
//!
//! Everything is read in the agent's own network namespace: listeners inside
//! containers with their own namespace are not seen.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use procfs::ProcError;
use procfs::net::TcpState;
use procfs::process::FDTarget;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// Bind address (0.0.0.0 / :: for a wildcard).
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Connections waiting in the accept queue now.
    pub accept_queue: u32,
    /// The queue's limit (listen backlog); 0 when it could not be read.
    pub backlog: u32,
    /// For an IPv6 socket: `IPV6_V6ONLY` as the kernel reports it
    /// (sock_diag). False means a `::` socket also takes IPv4. None for
    /// IPv4 sockets, or when it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v6only: Option<bool>,
}

/// TcpExt counters bearing on handshakes that never reach the server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenCounters {
    pub listen_overflows: u64,
    pub listen_drops: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("cannot read {what}")]
    Proc {
        what: &'static str,
        #[source]
        source: ProcError,
    },
}

/// The host's listening TCP sockets at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerTable {
    pub listeners: Vec<Listener>,
    pub counters: ListenCounters,
    /// What could not be read (vanished or unreadable processes, missing
    /// tables); the scan goes on without it.
    pub problems: Vec<String>,
    /// /proc/sys/net/ipv6/bindv6only: the default for `IPV6_V6ONLY`, used
    /// when a socket's own flag could not be read.
    pub bindv6only: bool,
}

/// Largest /proc text file read (netstat is ~3 KiB).
const MAX_PROC_FILE: u64 = 1 << 20;
/// Pids named in one problem line.
const MAX_PIDS_SHOWN: usize = 10;

impl ListenerTable {
    /// Reads the listening sockets, their owners and the counters.
    pub fn scan() -> Result<ListenerTable, ListenerError> {
        let mut table = ListenerTable::default();
        let v4 = procfs::net::tcp().map_err(|source| ListenerError::Proc {
            what: "/proc/net/tcp",
            source,
        })?;
        let v6 = match procfs::net::tcp6() {
            Ok(entries) => entries,
            Err(e) => {
                // Normal when IPv6 is disabled.
                table.problems.push(format!(
                    "/proc/net/tcp6 unreadable: {e}",
                    e = crate::text::Chain(&e)
                ));
                Vec::new()
            }
        };
        for entry in v4.into_iter().chain(v6) {
            if entry.state != TcpState::Listen {
                continue;
            }
            table.listeners.push(Listener {
                addr: entry.local_address.ip(),
                port: entry.local_address.port(),
                inode: entry.inode,
                pid: None,
                comm: None,
                exe: None,
                // For a listening socket /proc's rx_queue is the accept
                // queue; the backlog is only in sock_diag (below).
                accept_queue: entry.rx_queue,
                backlog: 0,
                v6only: None,
            });
        }

        table.bindv6only = read_small("/proc/sys/net/ipv6/bindv6only")
            .map(|s| s.trim() == "1")
            .unwrap_or(false);
        for (family, name, ipv6) in [
            (libc::AF_INET, "IPv4", false),
            (libc::AF_INET6, "IPv6", true),
        ] {
            if !table.listeners.iter().any(|l| l.addr.is_ipv6() == ipv6) {
                continue;
            }
            match diag_listeners(family) {
                Ok(info) => {
                    for l in table
                        .listeners
                        .iter_mut()
                        .filter(|l| l.addr.is_ipv6() == ipv6)
                    {
                        if let Some(d) = info.get(&l.inode) {
                            l.backlog = d.backlog;
                            l.v6only = d.v6only;
                        }
                    }
                }
                Err(e) => table.problems.push(format!(
                    "sock_diag for {name} failed ({e}): backlogs unknown (0){}",
                    if ipv6 {
                        ", IPV6_V6ONLY assumed from bindv6only"
                    } else {
                        ""
                    }
                )),
            }
        }

        table.find_owners();

        match read_small("/proc/net/netstat") {
            Ok(text) => match parse_netstat(&text) {
                Some(counters) => table.counters = counters,
                None => table.problems.push(
                    "/proc/net/netstat has no TcpExt ListenOverflows/ListenDrops".to_string(),
                ),
            },
            Err(e) => table.problems.push(format!(
                "/proc/net/netstat unreadable: {e}",
                e = crate::text::Chain(&e)
            )),
        }
        Ok(table)
    }

    /// Maps listener inodes to processes by walking /proc/*/fd. A socket
    /// shared by several processes (a server's master and workers) gets the
    /// lowest pid, usually the master.
    fn find_owners(&mut self) {
        let mut wanted: HashSet<u64> = self.listeners.iter().map(|l| l.inode).collect();
        if wanted.is_empty() {
            return;
        }
        let processes = match procfs::process::all_processes() {
            Ok(p) => p,
            Err(e) => {
                self.problems
                    .push(format!("/proc unreadable: {e}", e = crate::text::Chain(&e)));
                return;
            }
        };
        let mut owners: HashMap<u64, u32> = HashMap::new();
        let mut vanished = 0usize;
        let mut denied: Vec<i32> = Vec::new();
        let mut found: Vec<procfs::process::Process> = Vec::new();
        for process in processes {
            if wanted.is_empty() {
                break;
            }
            let process = match process {
                Ok(p) => p,
                Err(_) => {
                    vanished += 1;
                    continue;
                }
            };
            let fds = match process.fd() {
                Ok(fds) => fds,
                Err(ProcError::PermissionDenied(_)) => {
                    denied.push(process.pid());
                    continue;
                }
                Err(_) => {
                    vanished += 1;
                    continue;
                }
            };
            let mut owns_one = false;
            for fd in fds.flatten() {
                if let FDTarget::Socket(inode) = fd.target
                    && wanted.remove(&inode)
                    && let Ok(pid) = u32::try_from(process.pid())
                {
                    owners.insert(inode, pid);
                    owns_one = true;
                }
            }
            if owns_one {
                found.push(process);
            }
        }
        let mut names: HashMap<u32, (Option<String>, Option<String>)> = HashMap::new();
        for process in &found {
            let Ok(pid) = u32::try_from(process.pid()) else {
                continue;
            };
            let comm = process.stat().ok().map(|s| s.comm);
            let exe = process.exe().ok().map(|p| p.display().to_string());
            names.insert(pid, (comm, exe));
        }
        for l in &mut self.listeners {
            if let Some(&pid) = owners.get(&l.inode) {
                l.pid = Some(pid);
                if let Some((comm, exe)) = names.get(&pid) {
                    l.comm = comm.clone();
                    l.exe = exe.clone();
                }
            }
        }
        if vanished > 0 {
            self.problems
                .push(format!("{vanished} processes exited during the scan"));
        }
        if !denied.is_empty() {
            let shown: Vec<String> = denied
                .iter()
                .take(MAX_PIDS_SHOWN)
                .map(i32::to_string)
                .collect();
            let more = if denied.len() > MAX_PIDS_SHOWN {
                ", ..."
            } else {
                ""
            };
            self.problems.push(format!(
                "{} processes' fds not readable (permission denied): pids {}{more}",
                denied.len(),
                shown.join(", ")
            ));
        }
        if !wanted.is_empty() {
            self.problems.push(format!(
                "{} listening sockets have no process found (owner in another pid namespace, or exited)",
                wanted.len()
            ));
        }
    }

    /// Listeners on `port`, on any address.
    pub fn on_port(&self, port: u16) -> Vec<&Listener> {
        self.listeners.iter().filter(|l| l.port == port).collect()
    }

    /// The listener a connection to `ip:port` reaches: one bound to that
    /// exact address, else the family's wildcard, else (for IPv4) a `::`
    /// socket that takes IPv4 too. None means the connection is refused,
    /// even if something listens on the port on another address.
    pub fn accepting(&self, ip: IpAddr, port: u16) -> Option<&Listener> {
        let ip = ip.to_canonical();
        let mut on_port = self.listeners.iter().filter(|l| l.port == port);
        if let Some(l) = on_port.clone().find(|l| l.addr.to_canonical() == ip) {
            return Some(l);
        }
        match ip {
            IpAddr::V4(_) => on_port
                .clone()
                .find(|l| l.addr == IpAddr::V4(Ipv4Addr::UNSPECIFIED))
                .or_else(|| {
                    on_port
                        .find(|l| l.addr == IpAddr::V6(Ipv6Addr::UNSPECIFIED) && self.dual_stack(l))
                }),
            IpAddr::V6(_) => on_port.find(|l| l.addr == IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        }
    }

    /// Whether a `::` listener also accepts IPv4. Its own `IPV6_V6ONLY`
    /// decides when known. Otherwise: not if an IPv4 socket listens on the
    /// same port (a dual-stack `::` bind would have conflicted with it),
    /// else the system default (bindv6only).
    fn dual_stack(&self, listener: &Listener) -> bool {
        match listener.v6only {
            Some(v6only) => !v6only,
            None => {
                !self.bindv6only
                    && !self
                        .listeners
                        .iter()
                        .any(|l| l.port == listener.port && l.addr.is_ipv4())
            }
        }
    }

    /// The process (pid, comm) holding a listening socket, by inode.
    pub fn owner_of_inode(&self, inode: u64) -> Option<(u32, Option<&str>)> {
        self.listeners
            .iter()
            .find(|l| l.inode == inode)
            .and_then(|l| Some((l.pid?, l.comm.as_deref())))
    }
}

fn read_small(path: &str) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_PROC_FILE)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// ListenOverflows and ListenDrops from /proc/net/netstat's "TcpExt:" pair
/// of lines (names, then values).
fn parse_netstat(text: &str) -> Option<ListenCounters> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?.split_whitespace().skip(1);
    let values = lines.next()?.split_whitespace().skip(1);
    let map: HashMap<&str, u64> = names
        .zip(values)
        .filter_map(|(n, v)| Some((n, v.parse().ok()?)))
        .collect();
    Some(ListenCounters {
        listen_overflows: *map.get("ListenOverflows")?,
        listen_drops: *map.get("ListenDrops")?,
    })
}

// sock_diag (linux/inet_diag.h, linux/netlink.h); stable kernel ABI.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
/// inet_diag_msg: family, state, timer, retrans, 48-byte sockid, expires,
/// rqueue, wqueue, uid, inode. For a listener rqueue is the accept queue
/// and wqueue the backlog.
const INET_DIAG_MSG_LEN: usize = 72;
const INET_DIAG_MSG_RQUEUE: usize = 56;
const INET_DIAG_MSG_WQUEUE: usize = 60;
const INET_DIAG_MSG_INODE: usize = 68;
const INET_DIAG_SKV6ONLY: u16 = 11;
/// Responses read before giving up (a dump ends with NLMSG_DONE).
const MAX_DIAG_READS: usize = 100_000;

/// What sock_diag tells about one listening socket that /proc does not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct DiagInfo {
    accept_queue: u32,
    backlog: u32,
    /// IPv6 sockets only.
    v6only: Option<bool>,
}

/// Backlog and `IPV6_V6ONLY` of every listening TCP socket of `family`, by
/// inode, from the kernel's sock_diag interface (what `ss -l` reads).
fn diag_listeners(family: libc::c_int) -> std::io::Result<HashMap<u64, DiagInfo>> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // A dump always ends, but never block the agent on it.
    let timeout = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: valid fd, pointer to a timeval of the given size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }

    let mut req = Vec::with_capacity(NLMSG_HDRLEN + 56);
    req.extend(((NLMSG_HDRLEN + 56) as u32).to_ne_bytes());
    req.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend((NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend(1u32.to_ne_bytes()); // seq
    req.extend(0u32.to_ne_bytes()); // pid
    req.push(family as u8);
    req.push(libc::IPPROTO_TCP as u8);
    req.push(0); // idiag_ext: SKV6ONLY comes without asking
    req.push(0);
    req.extend((1u32 << agent_ebpf::tcp_state::LISTEN).to_ne_bytes());
    req.extend([0u8; 48]); // inet_diag_sockid: any
    // SAFETY: zeroed sockaddr_nl is valid; family set; pid 0 = kernel.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: buffer and address are valid for the given lengths.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }

    let mut info = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..MAX_DIAG_READS {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let data = buf.get(..n as usize).unwrap_or_default();
        match parse_diag_messages(data, &mut info)? {
            DiagProgress::More => continue,
            DiagProgress::Done => return Ok(info),
        }
    }
    Err(std::io::Error::other("sock_diag dump did not end"))
}

enum DiagProgress {
    More,
    Done,
}

fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses one datagram of netlink messages into `info`.
fn parse_diag_messages(
    mut data: &[u8],
    info: &mut HashMap<u64, DiagInfo>,
) -> std::io::Result<DiagProgress> {
    let malformed = || std::io::Error::other("malformed sock_diag message");
    while data.len() >= NLMSG_HDRLEN {
        let len = ne_u32(data, 0).ok_or_else(malformed)? as usize;
        let kind = ne_u16(data, 4).ok_or_else(malformed)?;
        if len < NLMSG_HDRLEN || len > data.len() {
            return Err(malformed());
        }
        let payload = data.get(NLMSG_HDRLEN..len).ok_or_else(malformed)?;
        match kind {
            NLMSG_DONE => return Ok(DiagProgress::Done),
            NLMSG_ERROR => {
                let errno = ne_u32(payload, 0).map(|e| -(e as i32)).unwrap_or(libc::EIO);
                return Err(std::io::Error::from_raw_os_error(errno));
            }
            SOCK_DIAG_BY_FAMILY => {
                if let (Some(inode), Some(accept_queue), Some(backlog)) = (
                    ne_u32(payload, INET_DIAG_MSG_INODE),
                    ne_u32(payload, INET_DIAG_MSG_RQUEUE),
                    ne_u32(payload, INET_DIAG_MSG_WQUEUE),
                ) {
                    let entry = info.entry(u64::from(inode)).or_default();
                    entry.accept_queue = accept_queue;
                    entry.backlog = backlog;
                    let mut attrs = payload.get(INET_DIAG_MSG_LEN..).unwrap_or_default();
                    // rtattr: u16 len, u16 type, payload, padded to 4.
                    while let (Some(alen), Some(atype)) = (ne_u16(attrs, 0), ne_u16(attrs, 2)) {
                        let alen = alen as usize;
                        if alen < 4 {
                            break;
                        }
                        if atype == INET_DIAG_SKV6ONLY
                            && let Some(&v) = attrs.get(4)
                        {
                            entry.v6only = Some(v != 0);
                        }
                        attrs = attrs.get(align4(alen)..).unwrap_or_default();
                    }
                }
            }
            _ => {}
        }
        data = data.get(align4(len)..).unwrap_or_default();
    }
    Ok(DiagProgress::More)
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn listener(addr: &str, port: u16, v6only: Option<bool>) -> Listener {
        Listener {
            addr: addr.parse().unwrap(),
            port,
            inode: port as u64 * 10 + addr.len() as u64,
            pid: Some(42),
            comm: Some("nginx".to_string()),
            exe: None,
            accept_queue: 0,
            backlog: 511,
            v6only,
        }
    }

    fn table(listeners: Vec<Listener>, bindv6only: bool) -> ListenerTable {
        ListenerTable {
            listeners,
            bindv6only,
            ..ListenerTable::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_listener_does_not_accept_other_addresses() {
        let t = table(vec![listener("127.0.0.1", 443, None)], false);
        assert!(t.accepting(ip("10.0.0.5"), 443).is_none());
        assert!(t.accepting(ip("::1"), 443).is_none());
        assert_eq!(t.accepting(ip("127.0.0.1"), 443).map(|l| l.port), Some(443));
        // A v4-mapped address is the IPv4 one.
        assert!(t.accepting(ip("::ffff:127.0.0.1"), 443).is_some());
        assert!(t.accepting(ip("127.0.0.1"), 8443).is_none());
        assert_eq!(t.on_port(443).len(), 1);
        assert!(t.on_port(80).is_empty());
    }

    #[test]
    fn wildcards_and_exact_binds() {
        let t = table(
            vec![
                listener("0.0.0.0", 443, None),
                listener("10.0.0.5", 443, None),
            ],
            false,
        );
        // The exact bind wins over the wildcard, as in the kernel.
        assert_eq!(
            t.accepting(ip("10.0.0.5"), 443).unwrap().addr,
            ip("10.0.0.5")
        );
        assert_eq!(
            t.accepting(ip("192.0.2.1"), 443).unwrap().addr,
            ip("0.0.0.0")
        );
        assert!(t.accepting(ip("2001:db8::1"), 443).is_none());
        let t = table(vec![listener("::1", 443, Some(true))], false);
        assert!(t.accepting(ip("::1"), 443).is_some());
        assert!(t.accepting(ip("127.0.0.1"), 443).is_none());
        assert!(t.accepting(ip("2001:db8::1"), 443).is_none());
    }

    #[test]
    fn v6_wildcard_takes_ipv4_only_when_dual_stack() {
        // The socket's own flag decides.
        let dual = table(vec![listener("::", 443, Some(false))], true);
        assert!(dual.accepting(ip("10.0.0.5"), 443).is_some());
        assert!(dual.accepting(ip("2001:db8::1"), 443).is_some());
        let only = table(vec![listener("::", 443, Some(true))], false);
        assert!(only.accepting(ip("10.0.0.5"), 443).is_none());
        assert!(only.accepting(ip("2001:db8::1"), 443).is_some());
        // Unknown flag: the sysctl default...
        let unknown = table(vec![listener("::", 443, None)], false);
        assert!(unknown.accepting(ip("10.0.0.5"), 443).is_some());
        let unknown = table(vec![listener("::", 443, None)], true);
        assert!(unknown.accepting(ip("10.0.0.5"), 443).is_none());
        // ...unless an IPv4 socket on the port shows the :: one is v6-only.
        let split = table(
            vec![listener("::", 443, None), listener("127.0.0.1", 443, None)],
            false,
        );
        assert!(split.accepting(ip("10.0.0.5"), 443).is_none());
        assert!(split.accepting(ip("127.0.0.1"), 443).is_some());
    }

    #[test]
    fn owner_by_inode() {
        let l = listener("0.0.0.0", 443, None);
        let inode = l.inode;
        let t = table(vec![l], false);
        assert_eq!(t.owner_of_inode(inode), Some((42, Some("nginx"))));
        assert_eq!(t.owner_of_inode(1), None);
    }

    #[test]
    fn netstat_counters() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPHPHits\n\
                    TcpExt: 0 7 9 100\n\
                    IpExt: InNoRoutes\n\
                    IpExt: 0\n";
        assert_eq!(
            parse_netstat(text),
            Some(ListenCounters {
                listen_overflows: 7,
                listen_drops: 9
            })
        );
        assert_eq!(parse_netstat("TcpExt: A B\nTcpExt: 1 2\n"), None);
        assert_eq!(parse_netstat(""), None);
        assert_eq!(parse_netstat("TcpExt: ListenOverflows ListenDrops\n"), None);
    }

    #[test]
    fn diag_parser_survives_garbage() {
        let mut info = HashMap::new();
        assert!(parse_diag_messages(&[0xff; 40], &mut info).is_err());
        assert!(matches!(
            parse_diag_messages(&[1, 2, 3], &mut info),
            Ok(DiagProgress::More)
        ));
        // A message whose attributes run past its end is cut, not read over.
        let mut msg = Vec::new();
        msg.extend(((NLMSG_HDRLEN + INET_DIAG_MSG_LEN + 8) as u32).to_ne_bytes());
        msg.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        msg.extend([0u8; 10]);
        let mut payload = vec![0u8; INET_DIAG_MSG_LEN];
        payload[INET_DIAG_MSG_INODE..].copy_from_slice(&77u32.to_ne_bytes());
        payload[INET_DIAG_MSG_WQUEUE..INET_DIAG_MSG_WQUEUE + 4]
            .copy_from_slice(&511u32.to_ne_bytes());
        msg.extend(payload);
        msg.extend(5u16.to_ne_bytes());
        msg.extend(INET_DIAG_SKV6ONLY.to_ne_bytes());
        msg.extend([1u8, 0, 0, 0]);
        assert!(matches!(
            parse_diag_messages(&msg, &mut info),
            Ok(DiagProgress::More)
        ));
        assert_eq!(
            info.get(&77),
            Some(&DiagInfo {
                accept_queue: 0,
                backlog: 511,
                v6only: Some(true)
            })
        );
    }

    /// A listening IPv4 loopback socket with an explicit backlog (std has
    /// no way to choose it).
    fn listen_with_backlog(backlog: i32) -> (OwnedFd, u16) {
        // SAFETY: plain socket/bind/listen calls on a fresh descriptor this
        // function owns, with pointers to locals that outlive the calls.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0);
            let fd = OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(
                libc::bind(
                    fd.as_raw_fd(),
                    (&addr as *const libc::sockaddr_in).cast(),
                    len
                ),
                0
            );
            assert_eq!(libc::listen(fd.as_raw_fd(), backlog), 0);
            let mut len = len;
            assert_eq!(
                libc::getsockname(
                    fd.as_raw_fd(),
                    (&mut addr as *mut libc::sockaddr_in).cast(),
                    &mut len
                ),
                0
            );
            (fd, u16::from_be(addr.sin_port))
        }
    }

    #[test]
    fn scan_finds_this_process_listeners() {
        let (_custom, custom_port) = listen_with_backlog(77);
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = TcpListener::bind("[::]:0").unwrap();
        let v4_port = v4.local_addr().unwrap().port();
        let v6_port = v6.local_addr().unwrap().port();
        // Two connections wait, never accepted: the accept queue shows them.
        let _c1 = TcpStream::connect(("127.0.0.1", v4_port)).unwrap();
        let _c2 = TcpStream::connect(("127.0.0.1", v4_port)).unwrap();

        let t = ListenerTable::scan().unwrap();
        let me = std::process::id();
        let exe = std::env::current_exe().unwrap().display().to_string();

        let l = t.on_port(v4_port);
        assert_eq!(l.len(), 1, "{t:?}");
        let l = l[0];
        assert_eq!(l.addr, ip("127.0.0.1"));
        assert_eq!(l.pid, Some(me), "{:?}", t.problems);
        assert_eq!(l.exe.as_deref(), Some(exe.as_str()));
        assert!(l.comm.is_some());
        assert_eq!(l.accept_queue, 2);
        assert!(l.backlog > 0);
        assert_eq!(l.v6only, None);
        assert!(t.accepting(ip("127.0.0.1"), v4_port).is_some());
        assert!(t.accepting(ip("10.0.0.5"), v4_port).is_none());
        assert_eq!(t.owner_of_inode(l.inode).map(|o| o.0), Some(me));

        let l = t.on_port(custom_port);
        assert_eq!(l.len(), 1, "{t:?}");
        assert_eq!(l[0].backlog, 77);
        assert_eq!(l[0].pid, Some(me));

        let l = t.on_port(v6_port);
        assert_eq!(l.len(), 1, "{t:?}");
        let l = l[0];
        assert_eq!(l.addr, ip("::"));
        assert_eq!(l.pid, Some(me));
        // std does not set IPV6_V6ONLY: the system default applies.
        assert_eq!(l.v6only, Some(t.bindv6only), "{:?}", t.problems);
        assert_eq!(
            t.accepting(ip("10.0.0.5"), v6_port).is_some(),
            !t.bindv6only
        );
    }
}
