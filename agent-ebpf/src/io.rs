//! Handshake capture: the read/write family of syscalls on tracked sockets.
//!
//! Every hooked syscall on an untracked fd costs one map lookup at entry and
//! one at exit. On a tracked fd the entry stashes the user buffer; the exit
//! copies what the syscall moved, chunk by chunk, through the direction's
//! record walker, which keeps handshake records and drops application data.

use agent_ebpf::record_walker::{
    Cursor, HeaderSource, MAX_RECORDS_PER_CHUNK, MAX_TRAILING_BYTES, RECORD_HEADER_LEN, Verdict,
    WalkerState, compact_headers,
};
use agent_ebpf::{
    Counter, DATA_CHUNK, DATA_EVENT_HEADER_LEN, DATA_FLAG_READ_FAILED, DataEvent, Direction,
    EventKind, Syscall, TrackedSock, sock_key,
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated},
    macros::{map, tracepoint},
    maps::PerCpuArray,
    programs::TracePointContext,
};

use core::ffi::c_void;

use crate::maps::{
    ARGS, ARGS_IO, DATA_SCRATCH, EVENTS, SSL_CALLS, SysArgs, TRACKED, count, header,
};
use crate::syscall::{SYSCALL_ARG0, SYSCALL_ARG1, SYSCALL_ARG2, SYSCALL_ARG3, SYSCALL_RET};

/// Chunks copied per syscall; beyond that the walker skips the bytes.
const MAX_CHUNKS: u32 = 4;

/// How the syscall passes its buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Buffer {
    /// `(fd, buf, len)`.
    Flat,
    /// `(fd, struct user_msghdr *, flags)`.
    Msghdr,
    /// `(fd, struct iovec *, iovcnt)`.
    Iovec,
}

const MSG_PEEK: u64 = 2;

// struct user_msghdr: msg_iov at 16, msg_iovlen at 24.
const MSGHDR_IOV: u64 = 16;
const MSGHDR_IOVLEN: u64 = 24;

macro_rules! io_hooks {
    ($enter:ident, $exit:ident, $syscall:expr, $direction:expr, $buffer:expr) => {
        #[tracepoint]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            let _ = enter(&ctx, $syscall, $direction, $buffer);
            0
        }

        #[tracepoint]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            let _ = exit(&ctx);
            0
        }
    };
}

io_hooks!(
    sys_enter_read,
    sys_exit_read,
    Syscall::Read,
    Direction::Ingress,
    Buffer::Flat
);
io_hooks!(
    sys_enter_write,
    sys_exit_write,
    Syscall::Write,
    Direction::Egress,
    Buffer::Flat
);
io_hooks!(
    sys_enter_recvfrom,
    sys_exit_recvfrom,
    Syscall::Recvfrom,
    Direction::Ingress,
    Buffer::Flat
);
io_hooks!(
    sys_enter_sendto,
    sys_exit_sendto,
    Syscall::Sendto,
    Direction::Egress,
    Buffer::Flat
);
io_hooks!(
    sys_enter_recvmsg,
    sys_exit_recvmsg,
    Syscall::Recvmsg,
    Direction::Ingress,
    Buffer::Msghdr
);
io_hooks!(
    sys_enter_sendmsg,
    sys_exit_sendmsg,
    Syscall::Sendmsg,
    Direction::Egress,
    Buffer::Msghdr
);
io_hooks!(
    sys_enter_readv,
    sys_exit_readv,
    Syscall::Readv,
    Direction::Ingress,
    Buffer::Iovec
);
io_hooks!(
    sys_enter_writev,
    sys_exit_writev,
    Syscall::Writev,
    Direction::Egress,
    Buffer::Iovec
);

#[inline(always)]
fn enter(
    ctx: &TracePointContext,
    syscall: Syscall,
    direction: Direction,
    buffer: Buffer,
) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let fd: u64 = unsafe { ctx.read_at(SYSCALL_ARG0)? };
    let fd = fd as i32;
    let Some(tracked) = (unsafe { TRACKED.get(sock_key((pid_tgid >> 32) as u32, fd)) }) else {
        return Ok(());
    };
    count(Counter::TrackedSyscalls);
    // I/O inside an OpenSSL call names that call's socket.
    if let Some(call) = SSL_CALLS.get_ptr_mut(pid_tgid) {
        unsafe { (*call).fd = fd };
    }
    if tracked.walkers[direction as usize].done() {
        return Ok(());
    }
    let arg1: u64 = unsafe { ctx.read_at(SYSCALL_ARG1)? };
    let arg2: u64 = unsafe { ctx.read_at(SYSCALL_ARG2)? };
    // A peek is read again later (nginx peeks at the first byte to spot
    // plain HTTP): capturing it would duplicate stream bytes.
    let flags: u64 = match syscall {
        Syscall::Recvfrom => unsafe { ctx.read_at(SYSCALL_ARG3)? },
        Syscall::Recvmsg => arg2,
        _ => 0,
    };
    if flags & MSG_PEEK != 0 {
        return Ok(());
    }
    let (buf, len) = match buffer {
        Buffer::Flat => (arg1, arg2),
        Buffer::Msghdr => {
            let iov: u64 = unsafe { bpf_probe_read_user((arg1 + MSGHDR_IOV) as *const u64)? };
            let iovlen: u64 = unsafe { bpf_probe_read_user((arg1 + MSGHDR_IOVLEN) as *const u64)? };
            first_iovec(iov, iovlen)?
        }
        Buffer::Iovec => first_iovec(arg1, arg2)?,
    };
    let args = SysArgs {
        kind: ARGS_IO,
        syscall: syscall as u8,
        direction: direction as u8,
        _pad: 0,
        fd,
        buf,
        len,
        sk: 0,
        remote: Default::default(),
    };
    if ARGS.insert(pid_tgid, args, 0).is_err() {
        count(Counter::ArgsMapFull);
    }
    Ok(())
}

/// Base and length of the first iovec. Later ones are not captured (TLS
/// stacks write a record flight from one buffer); the walker skips them.
#[inline(always)]
fn first_iovec(iov: u64, iovlen: u64) -> Result<(u64, u64), i64> {
    if iov == 0 || iovlen == 0 {
        return Ok((0, 0));
    }
    if iovlen > 1 {
        count(Counter::MultiIovec);
    }
    let base: u64 = unsafe { bpf_probe_read_user(iov as *const u64)? };
    let len: u64 = unsafe { bpf_probe_read_user((iov + 8) as *const u64)? };
    Ok((base, len))
}

/// The loop state of one chunk's walk. It lives in a per-CPU map, not on the
/// stack: values loaded from maps are opaque to the verifier, so successive
/// `bpf_loop` iterations converge instead of being explored one by one.
#[repr(C)]
pub struct WalkLoop {
    key: u64,
    direction: u32,
    _pad: u32,
    source: UserSource,
    cursor: Cursor,
    headers: [u8; MAX_TRAILING_BYTES],
}

#[map]
static WALK_LOOP: PerCpuArray<WalkLoop> = PerCpuArray::with_max_entries(1, 0);

/// Record headers read straight from the syscall's user buffer.
#[repr(C)]
struct UserSource {
    base: u64,
}

impl HeaderSource for UserSource {
    #[inline(always)]
    fn read(&self, pos: u32, n: usize, dst: &mut [u8; RECORD_HEADER_LEN]) -> bool {
        let n = if n > RECORD_HEADER_LEN {
            RECORD_HEADER_LEN
        } else {
            n
        };
        if n == 0 {
            return true;
        }
        let src = (self.base + pos as u64) as *const c_void;
        unsafe { generated::bpf_probe_read_user(dst.as_mut_ptr().cast(), n as u32, src) == 0 }
    }
}

/// Walks a chunk already copied to `buf` (from user address `user`) for the
/// socket `key`: the per-record step runs under `bpf_loop`, so the verifier
/// checks its body once rather than once per unrolled iteration.
#[inline(always)]
fn walk(
    walker: &mut WalkerState,
    key: u64,
    direction: u32,
    buf: &mut [u8; DATA_CHUNK],
    len: usize,
    user: u64,
) -> Verdict {
    let cursor = match walker.begin(buf, len) {
        Ok(cursor) => cursor,
        Err(verdict) => return verdict,
    };
    let Some(state) = WALK_LOOP.get_ptr_mut(0) else {
        return walker.finish(&cursor);
    };
    let state = unsafe { &mut *state };
    state.key = key;
    state.direction = direction;
    state.source = UserSource { base: user };
    state.cursor = cursor;
    unsafe {
        generated::bpf_loop(
            MAX_RECORDS_PER_CHUNK as u32,
            walk_record as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    let cursor = state.cursor;
    compact_headers(buf, &cursor, &state.headers);
    walker.finish(&cursor)
}

/// The direction's walker, chosen by a branch: indexing by `direction * 24`
/// would leave the verifier a range of offsets instead of two exact ones.
#[inline(always)]
fn walker_of(tracked: &mut TrackedSock, direction: u8) -> &mut WalkerState {
    if direction == Direction::Egress as u8 {
        &mut tracked.walkers[0]
    } else {
        &mut tracked.walkers[1]
    }
}

extern "C" fn walk_record(_index: u32, _ctx: *mut c_void) -> i64 {
    let Some(state) = WALK_LOOP.get_ptr_mut(0) else {
        return 1;
    };
    let state = unsafe { &mut *state };
    let Some(tracked) = TRACKED.get_ptr_mut(state.key) else {
        return 1;
    };
    let walker = unsafe { walker_of(&mut *tracked, state.direction as u8) };
    if walker.step(&mut state.cursor, &state.source, &mut state.headers) {
        0
    } else {
        1
    }
}

#[inline(always)]
fn exit(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(args) = (unsafe { ARGS.get(pid_tgid) }).copied() else {
        return Ok(());
    };
    let _ = ARGS.remove(pid_tgid);
    if args.kind != ARGS_IO {
        return Ok(());
    }
    let ret: i64 = unsafe { ctx.read_at(SYSCALL_RET)? };
    if ret <= 0 {
        return Ok(());
    }
    let tgid = (pid_tgid >> 32) as u32;
    let Some(tracked) = TRACKED.get_ptr_mut(sock_key(tgid, args.fd)) else {
        return Ok(());
    };
    let Some(scratch) = DATA_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    let direction = args.direction;
    let walker = unsafe { walker_of(&mut *tracked, direction) };
    let event: &mut DataEvent = unsafe { &mut *scratch };

    let moved = ret as u64;
    // Bytes of this syscall that are in the first (or only) buffer.
    let visible = if moved < args.len { moved } else { args.len } as u32;
    let mut offset: u32 = 0;
    for _ in 0..MAX_CHUNKS {
        if walker.done() || offset >= visible {
            break;
        }
        let remaining = visible - offset;
        let chunk = if remaining < DATA_CHUNK as u32 {
            remaining
        } else {
            DATA_CHUNK as u32
        };
        let src = (args.buf + offset as u64) as *const core::ffi::c_void;
        let read =
            unsafe { generated::bpf_probe_read_user(event.data.as_mut_ptr().cast(), chunk, src) };
        offset += chunk;
        let mut flags = 0u8;
        let verdict = if read != 0 {
            count(Counter::ReadUserFailed);
            flags |= DATA_FLAG_READ_FAILED;
            let stream_offset = walker.stream_offset;
            walker.skip(chunk);
            Verdict {
                emit_len: 0,
                flags: 0,
                stream_offset,
            }
        } else {
            walk(
                walker,
                sock_key(tgid, args.fd),
                direction as u32,
                &mut event.data,
                chunk as usize,
                src as u64,
            )
        };
        flags |= verdict.flags;
        if verdict.emit_len == 0 && flags == 0 {
            continue;
        }
        event.header = header(EventKind::Data);
        event.fd = args.fd;
        event.direction = args.direction;
        event.flags = flags;
        event.syscall = args.syscall;
        event._pad = 0;
        event.stream_offset = verdict.stream_offset;
        event.len = verdict.emit_len;
        event.syscall_len = moved as u32;
        let mut size = DATA_EVENT_HEADER_LEN + verdict.emit_len as usize;
        if size > core::mem::size_of::<DataEvent>() {
            size = core::mem::size_of::<DataEvent>();
        }
        let bytes =
            unsafe { core::slice::from_raw_parts((event as *const DataEvent).cast::<u8>(), size) };
        if EVENTS.output::<[u8]>(bytes, 0).is_err() {
            count(Counter::RingbufFull);
        } else {
            count(Counter::DataEvents);
        }
    }
    // What the chunks did not cover: past MAX_CHUNKS, or beyond the first iovec.
    if (offset as u64) < moved {
        walker.skip((moved - offset as u64) as u32);
    }
    Ok(())
}
