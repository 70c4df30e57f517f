//! Handshake capture from socket I/O only (Linux 6.3+): raw tracepoints on
//! `sock:sock_send_length` and `sock:sock_recv_length`.
//!
//! These fire in `sock_sendmsg`/`sock_recvmsg`, after the bytes moved, for
//! socket I/O only: reads and writes of files, pipes and terminals are not
//! hooked at all. An untracked socket costs one map lookup (its `struct
//! sock` in `SK_OWNER`). The first I/O on an accepted connection names its
//! process and fd (see `sock.rs`: no `accept` hook). On a tracked one the user buffer comes from the
//! syscall's own registers (`bpf_task_pt_regs`): the syscall number says how
//! to read them (flat buffer, iovec array, msghdr). I/O that was not made by
//! one of those syscalls (io_uring, sendfile/splice, sendmmsg, a 32-bit
//! process) is counted (`socket_io_unattributed`) and its bytes skipped.

use agent_ebpf::{Counter, Direction, Syscall, sock_key};
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::raw_tracepoint, programs::RawTracePointContext,
};

use crate::held;
use crate::io::{Buffer, Io, MSG_PEEK, capture, segments_of, walker_of};
use crate::maps::{SK_OWNER, SK_OWNER_PENDING_ACCEPT, SSL_CALLS, TRACKED, count};
use crate::sock::adopt_accepted;
use crate::syscall::{
    NR_READ, NR_READV, NR_RECVFROM, NR_RECVMSG, NR_SENDMSG, NR_SENDTO, NR_WRITE, NR_WRITEV,
    syscall_regs,
};

#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn sock_send_length(ctx: RawTracePointContext) -> i32 {
    on_sock_io(&ctx, Direction::Egress);
    0
}

#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn sock_recv_length(ctx: RawTracePointContext) -> i32 {
    on_sock_io(&ctx, Direction::Ingress);
    0
}

#[inline(always)]
fn on_sock_io(ctx: &RawTracePointContext, direction: Direction) {
    // TP_PROTO(const struct sock *sk, int ret, int flags).
    let sk: u64 = ctx.arg(0);
    // SAFETY: the map value is copied out at once.
    let Some(&owner) = (unsafe { SK_OWNER.get(sk) }) else {
        return;
    };
    // An accepted connection's first I/O names its owner and fd.
    let owner = if owner == SK_OWNER_PENDING_ACCEPT {
        match adopt_accepted(sk) {
            Some(owner) => owner,
            None => return,
        }
    } else {
        owner
    };
    let Some(tracked_ptr) = TRACKED.get_ptr_mut(owner) else {
        return;
    };
    // SAFETY: a live map value; only this program writes it on this CPU.
    // Not held across `capture`, which takes the pointer.
    let tracked = unsafe { &mut *tracked_ptr };
    if tracked.sk != sk {
        // The fd was reused for another socket since.
        return;
    }
    count(Counter::TrackedSyscalls);
    if tracked.held != 0 {
        held::note_thread_io(owner);
    }
    let fd = owner as u32 as i32;
    let pid_tgid = bpf_get_current_pid_tgid();
    // I/O inside an OpenSSL call names that call's socket, even when it
    // would block (a non-blocking handshake's EAGAIN).
    if (pid_tgid >> 32) == (owner >> 32)
        && let Some(call) = SSL_CALLS.get_ptr_mut(pid_tgid)
    {
        // SAFETY: a live map value of this thread.
        unsafe { (*call).fd = fd };
    }
    let ret: i64 = ctx.arg::<i32>(1) as i64;
    if ret <= 0 {
        return;
    }
    let flags: u64 = ctx.arg::<i32>(2) as u32 as u64;
    // A peek is read again later (nginx peeks at the first byte to spot
    // plain HTTP): capturing it would duplicate stream bytes.
    if direction == Direction::Ingress && flags & MSG_PEEK != 0 {
        return;
    }
    if walker_of(tracked, direction as u8).done() {
        return;
    }
    let Some(regs) = syscall_regs() else {
        skip_unattributed(tracked, direction, ret as u64);
        return;
    };
    let (syscall, buffer) = match regs.orig_ax {
        NR_READ => (Syscall::Read, Buffer::Flat),
        NR_WRITE => (Syscall::Write, Buffer::Flat),
        NR_RECVFROM => (Syscall::Recvfrom, Buffer::Flat),
        NR_SENDTO => (Syscall::Sendto, Buffer::Flat),
        NR_RECVMSG => (Syscall::Recvmsg, Buffer::Msghdr),
        NR_SENDMSG => (Syscall::Sendmsg, Buffer::Msghdr),
        NR_READV => (Syscall::Readv, Buffer::Iovec),
        NR_WRITEV => (Syscall::Writev, Buffer::Iovec),
        _ => {
            skip_unattributed(tracked, direction, ret as u64);
            return;
        }
    };
    let Ok(segments) = segments_of(buffer, regs.si, regs.dx) else {
        skip_unattributed(tracked, direction, ret as u64);
        return;
    };
    let io = Io {
        key: sock_key((owner >> 32) as u32, fd),
        fd,
        direction: direction as u8,
        syscall: syscall as u8,
        segments,
        moved: ret as u64,
    };
    capture(tracked_ptr, &io);
}

/// Bytes the hook cannot read: the direction's walker skips them (inside a
/// record body it keeps its place; across a header it stops).
#[inline(always)]
fn skip_unattributed(tracked: &mut agent_ebpf::TrackedSock, direction: Direction, n: u64) {
    count(Counter::SocketIoUnattributed);
    walker_of(tracked, direction as u8).skip(n as u32);
}
