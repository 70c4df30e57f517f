//! Handshake capture from socket I/O only (Linux 6.3+): raw tracepoints on
//! `sock:sock_send_length` and `sock:sock_recv_length`.
//!
//! These fire in `sock_sendmsg`/`sock_recvmsg`, after the bytes moved, for
//! socket I/O only: reads and writes of files, pipes and terminals are not
//! hooked at all. An untracked socket costs one map lookup (its `struct
//! sock` in `SK_OWNER`). On a tracked one the user buffer comes from the
//! syscall's own registers (`bpf_task_pt_regs`): the syscall number says how
//! to read them (flat buffer, iovec array, msghdr). I/O that was not made by
//! one of those syscalls (io_uring, sendfile/splice, sendmmsg, a 32-bit
//! process) is counted (`socket_io_unattributed`) and its bytes skipped.

use agent_ebpf::{Counter, Direction, Syscall, sock_key};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel, generated},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};

use crate::io::{Buffer, Io, MSG_PEEK, capture, segments_of, walker_of};
use crate::maps::{SK_OWNER, SSL_CALLS, TRACKED, count};

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

/// The syscall registers the capture needs (x86_64 `struct pt_regs`, an ABI:
/// `r10` at 56 through `orig_ax` at 120, 8 bytes each).
#[repr(C)]
#[derive(Clone, Copy)]
struct SyscallRegs {
    r10: u64,
    r9: u64,
    r8: u64,
    ax: u64,
    cx: u64,
    dx: u64,
    si: u64,
    di: u64,
    orig_ax: u64,
}

const PT_REGS_R10: usize = 56;

// x86_64 syscall numbers.
const NR_READ: u64 = 0;
const NR_WRITE: u64 = 1;
const NR_READV: u64 = 19;
const NR_WRITEV: u64 = 20;
const NR_SENDTO: u64 = 44;
const NR_RECVFROM: u64 = 45;
const NR_SENDMSG: u64 = 46;
const NR_RECVMSG: u64 = 47;

#[inline(always)]
fn on_sock_io(ctx: &RawTracePointContext, direction: Direction) {
    // TP_PROTO(const struct sock *sk, int ret, int flags).
    let sk: u64 = ctx.arg(0);
    // SAFETY: the map value is copied out at once.
    let Some(&owner) = (unsafe { SK_OWNER.get(sk) }) else {
        return;
    };
    let Some(tracked) = TRACKED.get_ptr_mut(owner) else {
        return;
    };
    // SAFETY: a live map value; only this program writes it on this CPU.
    let tracked = unsafe { &mut *tracked };
    if tracked.sk != sk {
        // The fd was reused for another socket since.
        return;
    }
    count(Counter::TrackedSyscalls);
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
    capture(tracked, &io);
}

/// Bytes the hook cannot read: the direction's walker skips them (inside a
/// record body it keeps its place; across a header it stops).
#[inline(always)]
fn skip_unattributed(tracked: &mut agent_ebpf::TrackedSock, direction: Direction, n: u64) {
    count(Counter::SocketIoUnattributed);
    walker_of(tracked, direction as u8).skip(n as u32);
}

/// The current task's syscall registers.
#[inline(always)]
fn syscall_regs() -> Option<SyscallRegs> {
    // SAFETY: helpers with no preconditions; the returned pointer is only
    // read through the fault-tolerant probe-read helper.
    let regs = unsafe {
        let task = generated::bpf_get_current_task_btf();
        generated::bpf_task_pt_regs(task)
    };
    if regs == 0 {
        return None;
    }
    let at = (regs as u64 + PT_REGS_R10 as u64) as *const SyscallRegs;
    // SAFETY: a kernel address read with the fault-tolerant helper.
    unsafe { bpf_probe_read_kernel(at) }.ok()
}
