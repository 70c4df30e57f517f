//! Socket lifecycle: `connect`, `accept`/`accept4`, `close` (syscall
//! tracepoints) and TCP state changes (`sock:inet_sock_set_state`).
//!
//! A socket is tracked from the moment a `connect` or `accept` creates it,
//! keyed by (tgid, fd). Its kernel `struct sock` address links the syscall
//! world to TCP state events, which carry the full 4-tuple. Without kprobes or
//! fentry (both unavailable here), the accepted socket's `sock` is found by
//! its peer address: the ESTABLISHED transition of a server-side connection
//! records it, and `accept` reads the peer address the kernel wrote back.

use agent_ebpf::{
    AF_INET, AF_INET6, CloseEvent, ConnEvent, Counter, Endpoint, EventKind, ROLE_CLIENT,
    ROLE_SERVER, SockStateEvent, TASK_COMM_LEN, TrackedSock, sock_key, tcp_state,
};
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_user_buf},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::maps::{
    ARGS, ARGS_ACCEPT, ARGS_CONNECT, PEER_TUPLE, PeerKey, PendingAccept, SK_OWNER, SysArgs,
    TRACKED, count, header, is_self, mark_active, reserve,
};
use crate::syscall::{SYSCALL_ARG0, SYSCALL_ARG1, SYSCALL_RET};

// sock:inet_sock_set_state.
const SS_SKADDR: usize = 8;
const SS_OLDSTATE: usize = 16;
const SS_NEWSTATE: usize = 20;
const SS_SPORT: usize = 24;
const SS_DPORT: usize = 26;
const SS_FAMILY: usize = 28;
const SS_PROTOCOL: usize = 30;
const SS_SADDR: usize = 32;
const SS_DADDR: usize = 36;
const SS_SADDR_V6: usize = 40;
const SS_DADDR_V6: usize = 56;

const IPPROTO_TCP: u16 = 6;
const TCP_ESTABLISHED: i32 = tcp_state::ESTABLISHED as i32;
const TCP_SYN_SENT: i32 = tcp_state::SYN_SENT as i32;
const TCP_SYN_RECV: i32 = tcp_state::SYN_RECV as i32;
const TCP_CLOSE: i32 = tcp_state::CLOSE as i32;
const EINPROGRESS: i64 = 115;

#[inline(always)]
fn comm() -> [u8; TASK_COMM_LEN] {
    bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN])
}

/// Reads a `sockaddr_in`/`sockaddr_in6` from user memory.
#[inline(always)]
fn read_sockaddr(ptr: u64) -> Option<Endpoint> {
    if ptr == 0 {
        return None;
    }
    let mut raw = [0u8; 24];
    // SAFETY: user memory, read with the fault-tolerant helper.
    unsafe { bpf_probe_read_user_buf(ptr as *const u8, &mut raw) }.ok()?;
    let family = u16::from_ne_bytes([raw[0], raw[1]]);
    let port = u16::from_be_bytes([raw[2], raw[3]]);
    let mut ep = Endpoint {
        family,
        port,
        addr: [0; 16],
    };
    match family {
        AF_INET => ep.addr[..4].copy_from_slice(&raw[4..8]),
        // sockaddr_in6: flowinfo at 4..8, address at 8..24.
        AF_INET6 => ep.addr.copy_from_slice(&raw[8..24]),
        _ => return None,
    }
    Some(ep)
}

/// The peer key: IPv4 written as IPv4-mapped IPv6 so that a v4 client of a
/// dual-stack listener matches however each side spells it.
#[inline(always)]
fn peer_key(ep: &Endpoint) -> PeerKey {
    let mut addr = [0u8; 16];
    if ep.family == AF_INET {
        addr[10] = 0xff;
        addr[11] = 0xff;
        addr[12..16].copy_from_slice(&ep.addr[..4]);
    } else {
        addr = ep.addr;
    }
    PeerKey {
        addr,
        port: ep.port,
        _pad: [0; 6],
    }
}

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let _ = try_enter_connect(&ctx);
    0
}

fn try_enter_connect(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_self((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let fd: u64 = unsafe { ctx.read_at(SYSCALL_ARG0)? };
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let addr: u64 = unsafe { ctx.read_at(SYSCALL_ARG1)? };
    // Only IP sockets: unix-socket connects never reach TCP state.
    let Some(remote) = read_sockaddr(addr) else {
        return Ok(());
    };
    let args = SysArgs {
        kind: ARGS_CONNECT,
        syscall: 0,
        direction: 0,
        vectored: 0,
        fd: fd as i32,
        buf: 0,
        len: 0,
        sk: 0,
        remote,
    };
    if ARGS.insert(pid_tgid, args, 0).is_err() {
        count(Counter::ArgsMapFull);
    }
    Ok(())
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let _ = try_exit_connect(&ctx);
    0
}

fn try_exit_connect(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the map value is copied out at once.
    let Some(args) = (unsafe { ARGS.get(pid_tgid) }).copied() else {
        return Ok(());
    };
    let _ = ARGS.remove(pid_tgid);
    if args.kind != ARGS_CONNECT || args.sk == 0 {
        // Not TCP (no SYN was sent): UDP "connects", address errors.
        return Ok(());
    }
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let ret: i64 = unsafe { ctx.read_at(SYSCALL_RET)? };
    let tgid = (pid_tgid >> 32) as u32;
    if ret == 0 || ret == -EINPROGRESS {
        let tracked = TrackedSock {
            sk: args.sk,
            role: ROLE_CLIENT,
            ..Default::default()
        };
        if TRACKED.insert(sock_key(tgid, args.fd), tracked, 0).is_err() {
            count(Counter::TrackedMapFull);
            return Ok(());
        }
        mark_active(tgid);
    }
    if let Some(mut e) = reserve::<ConnEvent>() {
        e.write(ConnEvent {
            header: header(EventKind::Connect),
            fd: args.fd,
            ret: ret as i32,
            sk: args.sk,
            local: Endpoint::default(),
            remote: args.remote,
            listen_fd: -1,
            _pad: 0,
            comm: comm(),
        });
        e.submit(0);
    }
    Ok(())
}

#[tracepoint]
pub fn sys_enter_accept(ctx: TracePointContext) -> u32 {
    let _ = try_enter_accept(&ctx);
    0
}

#[tracepoint]
pub fn sys_enter_accept4(ctx: TracePointContext) -> u32 {
    let _ = try_enter_accept(&ctx);
    0
}

fn try_enter_accept(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_self((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let fd: u64 = unsafe { ctx.read_at(SYSCALL_ARG0)? };
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let peer: u64 = unsafe { ctx.read_at(SYSCALL_ARG1)? };
    if peer == 0 {
        // The caller does not want the peer address, and without it the
        // connection cannot be matched to its TCP socket.
        return Ok(());
    }
    let args = SysArgs {
        kind: ARGS_ACCEPT,
        syscall: 0,
        direction: 0,
        vectored: 0,
        fd: fd as i32,
        buf: peer,
        len: 0,
        sk: 0,
        remote: Endpoint::default(),
    };
    if ARGS.insert(pid_tgid, args, 0).is_err() {
        count(Counter::ArgsMapFull);
    }
    Ok(())
}

#[tracepoint]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    let _ = try_exit_accept(&ctx);
    0
}

#[tracepoint]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    let _ = try_exit_accept(&ctx);
    0
}

fn try_exit_accept(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the map value is copied out at once.
    let Some(args) = (unsafe { ARGS.get(pid_tgid) }).copied() else {
        return Ok(());
    };
    let _ = ARGS.remove(pid_tgid);
    if args.kind != ARGS_ACCEPT {
        return Ok(());
    }
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let ret: i64 = unsafe { ctx.read_at(SYSCALL_RET)? };
    if ret < 0 {
        return Ok(());
    }
    let Some(remote) = read_sockaddr(args.buf) else {
        // A unix or other non-IP socket.
        return Ok(());
    };
    let key = peer_key(&remote);
    // SAFETY: the map value is copied out at once.
    let (sk, local) = match unsafe { PEER_TUPLE.get(key) } {
        Some(p) => (p.sk, p.local),
        None => {
            count(Counter::AcceptTupleMissing);
            (0, Endpoint::default())
        }
    };
    let _ = PEER_TUPLE.remove(key);
    let tgid = (pid_tgid >> 32) as u32;
    let fd = ret as i32;
    let skey = sock_key(tgid, fd);
    let tracked = TrackedSock {
        sk,
        role: ROLE_SERVER,
        ..Default::default()
    };
    if TRACKED.insert(skey, tracked, 0).is_err() {
        count(Counter::TrackedMapFull);
        return Ok(());
    }
    if sk != 0 {
        let _ = SK_OWNER.insert(sk, skey, 0);
    }
    mark_active(tgid);
    if let Some(mut e) = reserve::<ConnEvent>() {
        e.write(ConnEvent {
            header: header(EventKind::Accept),
            fd,
            ret: 0,
            sk,
            local,
            remote,
            listen_fd: args.fd,
            _pad: 0,
            comm: comm(),
        });
        e.submit(0);
    }
    Ok(())
}

#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let _ = try_enter_close(&ctx);
    0
}

fn try_enter_close(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let fd: u64 = unsafe { ctx.read_at(SYSCALL_ARG0)? };
    let key = sock_key((pid_tgid >> 32) as u32, fd as i32);
    if TRACKED.remove(key).is_err() {
        return Ok(());
    }
    if let Some(mut e) = reserve::<CloseEvent>() {
        e.write(CloseEvent {
            header: header(EventKind::Close),
            fd: fd as i32,
            _pad: 0,
        });
        e.submit(0);
    }
    Ok(())
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let _ = try_set_state(&ctx);
    0
}

#[inline(always)]
fn endpoint(ctx: &TracePointContext, family: u16, port: u16, v4: usize, v6: usize) -> Endpoint {
    let mut ep = Endpoint {
        family,
        port,
        addr: [0; 16],
    };
    if family == AF_INET {
        // SAFETY: a field of the tracepoint's record, at the offset its format gives.
        if let Ok(a) = unsafe { ctx.read_at::<[u8; 4]>(v4) } {
            ep.addr[..4].copy_from_slice(&a);
        }
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    } else if let Ok(a) = unsafe { ctx.read_at::<[u8; 16]>(v6) } {
        ep.addr = a;
    }
    ep
}

fn try_set_state(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let protocol: u16 = unsafe { ctx.read_at(SS_PROTOCOL)? };
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let sk: u64 = unsafe { ctx.read_at(SS_SKADDR)? };
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let old: i32 = unsafe { ctx.read_at(SS_OLDSTATE)? };
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let new: i32 = unsafe { ctx.read_at(SS_NEWSTATE)? };

    if new == TCP_SYN_SENT {
        // Runs inside the connecting thread's `connect`: link fd and sock.
        let pid_tgid = bpf_get_current_pid_tgid();
        if let Some(args) = ARGS.get_ptr_mut(pid_tgid) {
            // SAFETY: a live map value the verifier checked; writers on other CPUs can only make it stale, not invalid.
            let args = unsafe { &mut *args };
            if args.kind == ARGS_CONNECT {
                args.sk = sk;
                let owner = sock_key((pid_tgid >> 32) as u32, args.fd);
                let _ = SK_OWNER.insert(sk, owner, 0);
            }
        }
        return Ok(());
    }

    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let family: u16 = unsafe { ctx.read_at(SS_FAMILY)? };
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let sport: u16 = unsafe { ctx.read_at(SS_SPORT)? };
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let dport: u16 = unsafe { ctx.read_at(SS_DPORT)? };

    if old == TCP_SYN_RECV && new == TCP_ESTABLISHED {
        // A server-side connection, before any process accepted it.
        let local = endpoint(ctx, family, sport, SS_SADDR, SS_SADDR_V6);
        let remote = endpoint(ctx, family, dport, SS_DADDR, SS_DADDR_V6);
        let pending = PendingAccept { sk, local, remote };
        let _ = PEER_TUPLE.insert(peer_key(&remote), pending, 0);
        return Ok(());
    }

    // SAFETY: the map value is copied out at once.
    let Some(owner) = (unsafe { SK_OWNER.get(sk) }).copied() else {
        return Ok(());
    };
    if new == TCP_CLOSE {
        let _ = SK_OWNER.remove(sk);
    }
    if let Some(mut e) = reserve::<SockStateEvent>() {
        e.write(SockStateEvent {
            header: header(EventKind::SockState),
            sk,
            owner_tgid: (owner >> 32) as u32,
            owner_fd: owner as u32 as i32,
            old_state: old as u32,
            new_state: new as u32,
            local: endpoint(ctx, family, sport, SS_SADDR, SS_SADDR_V6),
            remote: endpoint(ctx, family, dport, SS_DADDR, SS_DADDR_V6),
        });
        e.submit(0);
    }
    Ok(())
}
