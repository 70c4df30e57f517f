//! Socket lifecycle: which process and fd own a TCP socket, its TCP state
//! changes (`sock:inet_sock_set_state`), and its end.
//!
//! A socket is tracked, keyed by (tgid, fd), from its connect or its
//! accept. Its kernel `struct sock` address links that key to TCP state
//! events, which carry the full 4-tuple, and to socket I/O. Two ways,
//! one per capture mechanism:
//!
//! - **socket** (`sock_tcp_state`, no syscall tracepoint at all: while one
//!   is attached, every syscall on the host takes the slow path). A
//!   connect is seen at its `SYN_SENT` transition, which runs inside the
//!   connecting thread's `connect(2)`: the fd is that syscall's first
//!   argument, from the task's registers. Its outcome comes from the
//!   following transitions (`ESTABLISHED`; `CLOSE`: refused, timed out).
//!   A server-side connection is marked at `SYN_RECV -> ESTABLISHED`; its
//!   first socket I/O, in the process that accepted it, names the owner
//!   and fd (`adopt_accepted`), whatever `accept` was called with and
//!   whenever it was called. The end: a transition inside the owner's
//!   `close(2)` of that fd is its close; `CLOSE` ends the tracking.
//! - **syscalls** (the fallback, `inet_sock_set_state` with the
//!   `connect`/`accept`/`close` syscall tracepoints), as before: the
//!   `SYN_SENT` transition links fd and sock for the `connect` exit, and
//!   the accepted socket's sock is found by its peer address, which
//!   `accept` writes back (not followed: `accept` with a NULL address).

use agent_ebpf::{
    AF_INET, AF_INET6, CloseEvent, Counter, Endpoint, EventKind, ROLE_CLIENT, ROLE_SERVER,
    SockStateEvent, TASK_COMM_LEN, TrackedSock, sock_key, tcp_state,
};
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_user_buf},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::held;
use crate::maps::{
    ARGS, ARGS_ACCEPT, ARGS_CONNECT, CONN_SCRATCH, PEER_TUPLE, PENDING_ACCEPTS, PeerKey,
    PendingAccept, SK_OWNER, SK_OWNER_PENDING_ACCEPT, SysArgs, TRACKED, count, header, is_self,
    mark_active,
};
use crate::syscall::{
    NR_CLOSE, NR_CONNECT, NR_SENDMSG, NR_SENDTO, SYSCALL_ARG0, SYSCALL_ARG1, SYSCALL_RET,
    is_socket_io, syscall_regs,
};

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
const TCP_FIN_WAIT1: i32 = tcp_state::FIN_WAIT1 as i32;
const TCP_LAST_ACK: i32 = tcp_state::LAST_ACK as i32;
const TCP_CLOSE_WAIT: i32 = tcp_state::CLOSE_WAIT as i32;
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
    let key = sock_key(tgid, args.fd);
    if ret == 0 || ret == -EINPROGRESS {
        let tracked = TrackedSock {
            sk: args.sk,
            role: ROLE_CLIENT,
            ..Default::default()
        };
        if TRACKED.insert(key, tracked, 0).is_err() {
            count(Counter::TrackedMapFull);
            return Ok(());
        }
        start_holding(key);
        mark_active(tgid);
    }
    emit_conn(
        key,
        EventKind::Connect,
        ConnFields {
            fd: args.fd,
            ret: ret as i32,
            sk: args.sk,
            local: Endpoint::default(),
            remote: args.remote,
            listen_fd: -1,
        },
    );
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
        local_port: local.port,
        ..Default::default()
    };
    if TRACKED.insert(skey, tracked, 0).is_err() {
        count(Counter::TrackedMapFull);
        return Ok(());
    }
    if sk != 0 {
        let _ = SK_OWNER.insert(sk, skey, 0);
    }
    start_holding(skey);
    mark_active(tgid);
    emit_conn(
        skey,
        EventKind::Accept,
        ConnFields {
            fd,
            ret: 0,
            sk,
            local,
            remote,
            listen_fd: args.fd,
        },
    );
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
    held::release(key);
    emit_close(key, fd as i32);
    Ok(())
}

/// The fallback mechanism's TCP state hook (with the `connect`, `accept`
/// and `close` syscall tracepoints).
#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let _ = on_tcp_state(&ctx, false);
    0
}

/// The socket mechanism's TCP state hook: it also learns connects and
/// closes (no syscall tracepoint).
#[tracepoint]
pub fn sock_tcp_state(ctx: TracePointContext) -> u32 {
    let _ = on_tcp_state(&ctx, true);
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

#[inline(always)]
fn on_tcp_state(ctx: &TracePointContext, socket_mechanism: bool) -> Result<(), i64> {
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
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let family: u16 = unsafe { ctx.read_at(SS_FAMILY)? };
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let sport: u16 = unsafe { ctx.read_at(SS_SPORT)? };
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let dport: u16 = unsafe { ctx.read_at(SS_DPORT)? };

    if new == TCP_SYN_SENT {
        // Runs inside the connecting thread's `connect`.
        if socket_mechanism {
            let remote = endpoint(ctx, family, dport, SS_DADDR, SS_DADDR_V6);
            register_connect(sk, remote);
        } else {
            link_connect(sk);
        }
        return Ok(());
    }

    if old == TCP_SYN_RECV && new == TCP_ESTABLISHED {
        // A server-side connection, before any process accepted it.
        let local = endpoint(ctx, family, sport, SS_SADDR, SS_SADDR_V6);
        let remote = endpoint(ctx, family, dport, SS_DADDR, SS_DADDR_V6);
        let pending = PendingAccept {
            sk,
            local,
            remote,
            peer_closed: 0,
            _pad: 0,
        };
        if socket_mechanism {
            let _ = PENDING_ACCEPTS.insert(sk, pending, 0);
            let _ = SK_OWNER.insert(sk, SK_OWNER_PENDING_ACCEPT, 0);
        } else {
            let _ = PEER_TUPLE.insert(peer_key(&remote), pending, 0);
        }
        return Ok(());
    }

    // SAFETY: the map value is copied out at once.
    let Some(owner) = (unsafe { SK_OWNER.get(sk) }).copied() else {
        return Ok(());
    };
    if new == TCP_CLOSE && (!socket_mechanism || owner == SK_OWNER_PENDING_ACCEPT) {
        let _ = SK_OWNER.remove(sk);
    }
    if owner == SK_OWNER_PENDING_ACCEPT {
        // Over before any process did I/O on it.
        if new == TCP_CLOSE {
            let _ = PENDING_ACCEPTS.remove(sk);
        } else if new == TCP_CLOSE_WAIT
            && let Some(pending) = PENDING_ACCEPTS.get_ptr_mut(sk)
        {
            // A client that sent its ClientHello and closed before the
            // server's first read: the adopting I/O replays it.
            // SAFETY: a live map value the verifier checked; writers on other CPUs can only make it stale, not invalid.
            unsafe { (*pending).peer_closed = 1 };
        }
        return Ok(());
    }
    let owner_tgid = (owner >> 32) as u32;
    let owner_fd = owner as u32 as i32;
    if new != TCP_ESTABLISHED && new != TCP_CLOSE_WAIT {
        // The connection is ending before its handshake was confirmed:
        // userspace decides, from everything held so far. Not at the
        // peer's FIN (CLOSE_WAIT): a server that answers and closes at once
        // has its reply and its FIN queued together, and the reply, still
        // to be read, may be what confirms the handshake.
        held::release(owner);
    }
    if socket_mechanism && (new == TCP_CLOSE || new == TCP_FIN_WAIT1 || new == TCP_LAST_ACK) {
        // Sent before the state event: userspace must know the socket was
        // closed by its process when it reads SYN_SENT -> CLOSE (a connect
        // abandoned, not refused).
        let closed = closed_by_owner(owner_tgid, owner_fd);
        if closed {
            emit_close(owner, owner_fd);
            untrack(owner, sk);
        }
        if new == TCP_CLOSE && (closed || !tracks(owner, sk)) {
            let _ = SK_OWNER.remove(sk);
        }
        // A socket over (reset, timed out) that its process has not closed
        // stays followed: the process may still read what was queued before
        // the reset (gnutls-serv reads a client's Finished after the
        // client's close reset the connection). Userspace untracks it once
        // it concluded the connection.
    }
    held::emit(
        owner,
        &SockStateEvent {
            header: header(EventKind::SockState),
            sk,
            owner_tgid,
            owner_fd,
            old_state: old as u32,
            new_state: new as u32,
            local: endpoint(ctx, family, sport, SS_SADDR, SS_SADDR_V6),
            remote: endpoint(ctx, family, dport, SS_DADDR, SS_DADDR_V6),
        },
    );
    Ok(())
}

/// Fallback: the `connect` syscall hooks stashed its fd; link it to the
/// socket for the exit.
#[inline(always)]
fn link_connect(sk: u64) {
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
}

/// Socket mechanism: a connect, seen at its `SYN_SENT` transition inside
/// the connecting thread's `connect(2)` (or a TCP Fast Open `sendto` /
/// `sendmsg`), whose first argument is the fd. Tracked from here; the
/// Connect event says "in progress": the transitions that follow decide.
#[inline(always)]
fn register_connect(sk: u64, remote: Endpoint) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if is_self(tgid) {
        return;
    }
    let fd = match syscall_regs() {
        Some(regs) if matches!(regs.orig_ax, NR_CONNECT | NR_SENDTO | NR_SENDMSG) => regs.di as i32,
        _ => {
            count(Counter::ConnectUnattributed);
            return;
        }
    };
    let key = sock_key(tgid, fd);
    if !track(key, sk, ROLE_CLIENT, 0) {
        return;
    }
    emit_conn(
        key,
        EventKind::Connect,
        ConnFields {
            fd,
            ret: -(EINPROGRESS as i32),
            sk,
            local: Endpoint::default(),
            remote,
            listen_fd: -1,
        },
    );
}

/// Socket mechanism: the first I/O on an accepted connection, in the
/// process that accepted it: the syscall's first argument is its fd.
/// Tracks it and sends its Accept event; returns its `sock_key`.
#[inline(always)]
pub fn adopt_accepted(sk: u64) -> Option<u64> {
    // SAFETY: the map value is copied out at once.
    let pending = (unsafe { PENDING_ACCEPTS.get(sk) }).copied();
    let _ = PENDING_ACCEPTS.remove(sk);
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let fd = match syscall_regs() {
        Some(regs) if is_socket_io(regs.orig_ax) => regs.di as i32,
        _ => {
            count(Counter::AcceptUnattributed);
            let _ = SK_OWNER.remove(sk);
            return None;
        }
    };
    let Some(pending) = pending else {
        let _ = SK_OWNER.remove(sk);
        return None;
    };
    if is_self(tgid) {
        let _ = SK_OWNER.remove(sk);
        return None;
    }
    let key = sock_key(tgid, fd);
    if !track(key, sk, ROLE_SERVER, pending.local.port) {
        let _ = SK_OWNER.remove(sk);
        return None;
    }
    emit_conn(
        key,
        EventKind::Accept,
        ConnFields {
            fd,
            ret: 0,
            sk,
            local: pending.local,
            remote: pending.remote,
            listen_fd: -1,
        },
    );
    if pending.peer_closed != 0 {
        // The peer already left: nothing to confirm.
        held::release(key);
        held::emit(
            key,
            &SockStateEvent {
                header: header(EventKind::SockState),
                sk,
                owner_tgid: tgid,
                owner_fd: fd,
                old_state: TCP_ESTABLISHED as u32,
                new_state: TCP_CLOSE_WAIT as u32,
                local: pending.local,
                remote: pending.remote,
            },
        );
    }
    Some(key)
}

/// Starts tracking `sk` as `key`'s socket, holding its events; false
/// (counted) when the map is full.
#[inline(always)]
fn track(key: u64, sk: u64, role: u32, local_port: u16) -> bool {
    let tracked = TrackedSock {
        sk,
        role,
        local_port,
        ..Default::default()
    };
    if TRACKED.insert(key, tracked, 0).is_err() {
        count(Counter::TrackedMapFull);
        return false;
    }
    let _ = SK_OWNER.insert(sk, key, 0);
    start_holding(key);
    mark_active((key >> 32) as u32);
    true
}

/// Holds a newly tracked socket's events, when userspace asked for it.
#[inline(always)]
fn start_holding(key: u64) {
    if held::start(key)
        && let Some(tracked) = TRACKED.get_ptr_mut(key)
    {
        // SAFETY: a live map value the verifier checked.
        unsafe { (*tracked).held = 1 };
    }
}

/// Stops tracking `owner`'s socket, if it still is `sk` (the fd may have
/// been reused since).
#[inline(always)]
fn untrack(owner: u64, sk: u64) {
    if tracks(owner, sk) {
        let _ = TRACKED.remove(owner);
    }
}

/// Whether `owner` is tracked as socket `sk`.
#[inline(always)]
fn tracks(owner: u64, sk: u64) -> bool {
    // SAFETY: the map value is only read.
    (unsafe { TRACKED.get(owner) }).is_some_and(|t| t.sk == sk)
}

/// True when the current task is the owner closing `fd` (`close(2)`): the
/// state change happens inside that call.
#[inline(always)]
fn closed_by_owner(owner_tgid: u32, fd: i32) -> bool {
    if (bpf_get_current_pid_tgid() >> 32) as u32 != owner_tgid {
        return false;
    }
    syscall_regs().is_some_and(|regs| regs.orig_ax == NR_CLOSE && regs.di as i32 == fd)
}

/// What a connect or accept event says, besides its header and comm.
struct ConnFields {
    fd: i32,
    ret: i32,
    sk: u64,
    local: Endpoint,
    remote: Endpoint,
    listen_fd: i32,
}

/// Sends a connect or accept event, built in per-CPU scratch: on the stack
/// it pushed the fallback's `accept` exit past the 512-byte combined stack
/// of Linux 6.1's verifier.
#[inline(always)]
fn emit_conn(key: u64, kind: EventKind, f: ConnFields) {
    let Some(ev) = CONN_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU scratch slot; nothing else uses it while this
    // program runs on this CPU.
    let ev = unsafe { &mut *ev };
    ev.header = header(kind);
    ev.fd = f.fd;
    ev.ret = f.ret;
    ev.sk = f.sk;
    ev.local = f.local;
    ev.remote = f.remote;
    ev.listen_fd = f.listen_fd;
    ev._pad = 0;
    ev.comm = comm();
    held::emit(key, &*ev);
}

#[inline(always)]
fn emit_close(key: u64, fd: i32) {
    held::emit(
        key,
        &CloseEvent {
            header: header(EventKind::Close),
            fd,
            _pad: 0,
        },
    );
}
