//! Handshake capture: the bytes a tracked socket's syscalls moved, through
//! the direction's record walker, which keeps handshake records and drops
//! application data ([`capture`]).
//!
//! Two hook families feed it. `sock_io.rs` (the default, Linux 6.3+) hooks
//! socket I/O only. This file also holds the fallback: the read/write family
//! of syscall tracepoints, where every hooked syscall on an untracked fd
//! costs one map lookup at entry and one at exit, and on a tracked fd the
//! entry stashes the user buffer for the exit.

use agent_ebpf::record_walker::{
    Cursor, HeaderSource, MAX_RECORDS_PER_CHUNK, MAX_TRAILING_BYTES, RECORD_HEADER_LEN, Verdict,
    WalkerState, compact_headers,
};
use agent_ebpf::{
    Counter, DATA_CHUNK, DATA_EVENT_HEADER_LEN, DATA_FLAG_BUDGET, DATA_FLAG_NOT_TLS,
    DATA_FLAG_READ_FAILED, DataEvent, Direction, EventKind, Syscall, TrackedSock, sock_key,
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated},
    macros::{map, tracepoint},
    maps::PerCpuArray,
    programs::TracePointContext,
};

use core::ffi::c_void;

use crate::held;
use crate::maps::{ARGS, ARGS_IO, DATA_SCRATCH, SSL_CALLS, SysArgs, TRACKED, count, header};
use crate::syscall::{SYSCALL_ARG0, SYSCALL_ARG1, SYSCALL_ARG2, SYSCALL_ARG3, SYSCALL_RET};

/// Chunks copied per syscall (a chunk lies within one buffer or iovec);
/// beyond that the walker skips the bytes. The chunk step runs under
/// `bpf_loop`, so the verifier checks it once whatever the count. GnuTLS
/// writes each record of a flight as its own iovec: a TLS 1.2 flight with a
/// certificate request is five, a TLS 1.3 one seven.
const MAX_CHUNKS: u32 = 16;

/// How the syscall passes its buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    /// `(fd, buf, len)`.
    Flat,
    /// `(fd, struct user_msghdr *, flags)`.
    Msghdr,
    /// `(fd, struct iovec *, iovcnt)`.
    Iovec,
}

pub const MSG_PEEK: u64 = 2;

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
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let fd: u64 = unsafe { ctx.read_at(SYSCALL_ARG0)? };
    let fd = fd as i32;
    // SAFETY: the map value is copied out at once.
    let Some(tracked) = (unsafe { TRACKED.get(sock_key((pid_tgid >> 32) as u32, fd)) }) else {
        return Ok(());
    };
    count(Counter::TrackedSyscalls);
    if tracked.held != 0 {
        held::note_thread_io(sock_key((pid_tgid >> 32) as u32, fd));
    }
    // I/O inside an OpenSSL call names that call's socket.
    if let Some(call) = SSL_CALLS.get_ptr_mut(pid_tgid) {
        // SAFETY: a live map value the verifier checked; writers on other CPUs can only make it stale, not invalid.
        unsafe { (*call).fd = fd };
    }
    if tracked.walkers[direction as usize].done() {
        return Ok(());
    }
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let arg1: u64 = unsafe { ctx.read_at(SYSCALL_ARG1)? };
    // SAFETY: a field of the tracepoint's record, at the offset its format gives.
    let arg2: u64 = unsafe { ctx.read_at(SYSCALL_ARG2)? };
    // A peek is read again later (nginx peeks at the first byte to spot
    // plain HTTP): capturing it would duplicate stream bytes.
    let flags: u64 = match syscall {
        // SAFETY: a field of the tracepoint's record, at the offset its format gives.
        Syscall::Recvfrom => unsafe { ctx.read_at(SYSCALL_ARG3)? },
        Syscall::Recvmsg => arg2,
        _ => 0,
    };
    if flags & MSG_PEEK != 0 {
        return Ok(());
    }
    let segments = segments_of(buffer, arg1, arg2)?;
    let args = SysArgs {
        kind: ARGS_IO,
        syscall: syscall as u8,
        direction: direction as u8,
        vectored: segments.vectored as u8,
        fd,
        buf: segments.base,
        len: segments.len,
        sk: 0,
        remote: Default::default(),
    };
    if ARGS.insert(pid_tgid, args, 0).is_err() {
        count(Counter::ArgsMapFull);
    }
    Ok(())
}

/// Where a syscall's bytes are in user memory: one flat buffer, or an array
/// of `count` iovecs.
#[derive(Clone, Copy)]
pub struct Segments {
    /// The buffer, or the iovec array.
    pub base: u64,
    /// The buffer's length, or the number of iovecs.
    pub len: u64,
    pub vectored: bool,
}

/// The segments of a syscall's buffer arguments (`arg1`, `arg2`).
#[inline(always)]
pub fn segments_of(buffer: Buffer, arg1: u64, arg2: u64) -> Result<Segments, i64> {
    Ok(match buffer {
        Buffer::Flat => Segments {
            base: arg1,
            len: arg2,
            vectored: false,
        },
        Buffer::Msghdr => {
            // SAFETY: a user pointer the syscall was given, read with the
            // fault-tolerant helper.
            let iov: u64 = unsafe { bpf_probe_read_user((arg1 + MSGHDR_IOV) as *const u64)? };
            // SAFETY: as above.
            let iovlen: u64 = unsafe { bpf_probe_read_user((arg1 + MSGHDR_IOVLEN) as *const u64)? };
            Segments {
                base: iov,
                len: iovlen,
                vectored: true,
            }
        }
        Buffer::Iovec => Segments {
            base: arg1,
            len: arg2,
            vectored: true,
        },
    })
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
        if n == 0 {
            return true;
        }
        // `n` is the smaller of two registers. Verifiers before 6.8 learn
        // nothing from comparing two registers, so on 6.1 its bound is lost
        // ("R2 unbounded memory access"). An explicit mask right before the
        // call bounds it for every verifier; hidden from LLVM first, which
        // knows n <= 5 and would drop the mask. The 8-byte buffer takes
        // what the mask allows.
        let size = opaque(n as u64) & (HEADER_READ_MAX as u64 - 1);
        if size as usize > RECORD_HEADER_LEN {
            return false;
        }
        let mut tmp = [0u8; HEADER_READ_MAX];
        let src = (self.base + pos as u64) as *const c_void;
        // SAFETY: user memory, read with the fault-tolerant helper into a
        // HEADER_READ_MAX-byte buffer; size < HEADER_READ_MAX by the mask.
        let ok = unsafe {
            generated::bpf_probe_read_user(tmp.as_mut_ptr().cast(), size as u32, src) == 0
        };
        if let Some(head) = tmp.first_chunk::<RECORD_HEADER_LEN>() {
            *dst = *head;
        }
        ok
    }
}

/// A record header's read size is masked to below this (a power of two
/// above `RECORD_HEADER_LEN`).
const HEADER_READ_MAX: usize = 8;

/// `v`, unknown to LLVM from here on (a volatile read), so that the bounds
/// checks the verifier needs after it are not optimized away as redundant.
#[inline(always)]
pub fn opaque(v: u64) -> u64 {
    // SAFETY: reads a local that is initialized and aligned.
    unsafe { core::ptr::read_volatile(&v) }
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
    // SAFETY: a live map value the verifier checked; writers on other CPUs can only make it stale, not invalid.
    let state = unsafe { &mut *state };
    state.key = key;
    state.direction = direction;
    state.source = UserSource { base: user };
    state.cursor = cursor;
    // SAFETY: the callback has the signature bpf_loop expects and takes no context.
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
pub fn walker_of(tracked: &mut TrackedSock, direction: u8) -> &mut WalkerState {
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
    // SAFETY: a live map value the verifier checked; writers on other CPUs can only make it stale, not invalid.
    let state = unsafe { &mut *state };
    let Some(tracked) = TRACKED.get_ptr_mut(state.key) else {
        return 1;
    };
    // SAFETY: a live map value the verifier checked; writers on other CPUs can only make it stale, not invalid.
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
    // SAFETY: the map value is copied out at once.
    let Some(args) = (unsafe { ARGS.get(pid_tgid) }).copied() else {
        return Ok(());
    };
    let _ = ARGS.remove(pid_tgid);
    if args.kind != ARGS_IO {
        return Ok(());
    }
    // SAFETY: the exit record's return slot, per the tracepoint format.
    let ret: i64 = unsafe { ctx.read_at(SYSCALL_RET)? };
    if ret <= 0 {
        return Ok(());
    }
    let tgid = (pid_tgid >> 32) as u32;
    let key = sock_key(tgid, args.fd);
    let Some(tracked) = TRACKED.get_ptr_mut(key) else {
        return Ok(());
    };
    let io = Io {
        key,
        fd: args.fd,
        direction: args.direction,
        syscall: args.syscall,
        segments: Segments {
            base: args.buf,
            len: args.len,
            vectored: args.vectored != 0,
        },
        moved: ret as u64,
    };
    capture(tracked, &io);
    Ok(())
}

/// One syscall's worth of bytes on a tracked socket.
pub struct Io {
    /// The socket's `sock_key`.
    pub key: u64,
    pub fd: i32,
    /// A [`Direction`].
    pub direction: u8,
    /// A [`Syscall`].
    pub syscall: u8,
    pub segments: Segments,
    /// Bytes the syscall moved (> 0).
    pub moved: u64,
}

/// Iovecs followed per syscall; bytes in later ones are skipped.
const MAX_IOVECS: u64 = MAX_CHUNKS as u64;

/// Where one syscall's capture stands between chunks. Like [`WalkLoop`] it
/// lives in a per-CPU map so that the chunk step runs under `bpf_loop` and
/// is verified once, not once per unrolled iteration.
#[repr(C)]
pub struct CaptureLoop {
    key: u64,
    fd: i32,
    direction: u8,
    syscall: u8,
    vectored: u8,
    /// Set when the capture of this syscall is over.
    stop: u8,
    /// The flat buffer, or the iovec array.
    base: u64,
    /// The buffer's length, or the number of iovecs.
    len: u64,
    moved: u64,
    /// The current segment (the flat buffer, or iovec `iov_index`).
    seg_base: u64,
    seg_len: u64,
    seg_offset: u64,
    iov_index: u64,
    /// Bytes of the syscall looked at so far.
    done: u64,
}

#[map]
static CAPTURE_LOOP: PerCpuArray<CaptureLoop> = PerCpuArray::with_max_entries(1, 0);

/// Copies what a syscall moved on a tracked socket, chunk by chunk and
/// iovec by iovec, through the direction's record walker, and emits what
/// the walker keeps.
#[inline(always)]
///
/// `tracked` is a raw pointer, never a reference held across the loop: the
/// loop's callback updates the same map value through its own lookup, and
/// a `&mut` held here would let the compiler keep stale copies of its
/// fields (the success decision read a record count from before the loop).
pub fn capture(tracked: *mut TrackedSock, io: &Io) {
    let Some(state) = CAPTURE_LOOP.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU slot; nothing else uses it while this program
    // runs on this CPU.
    let state = unsafe { &mut *state };
    let (client_data_before, server_large_before) = {
        // SAFETY: a live map value the caller looked up; this borrow ends
        // before the loop.
        let tracked = unsafe { &*tracked };
        (
            tracked.client_sent_data(),
            tracked.server_walker().large_records,
        )
    };
    let (seg_base, seg_len) = if io.segments.vectored {
        if io.segments.len > 1 {
            count(Counter::MultiIovec);
        }
        read_iovec(io.segments.base, 0, io.segments.len)
    } else {
        (io.segments.base, io.segments.len)
    };
    *state = CaptureLoop {
        key: io.key,
        fd: io.fd,
        direction: io.direction,
        syscall: io.syscall,
        vectored: io.segments.vectored as u8,
        stop: 0,
        base: io.segments.base,
        len: io.segments.len,
        moved: io.moved,
        seg_base,
        seg_len,
        seg_offset: 0,
        iov_index: 0,
        done: 0,
    };
    // SAFETY: the callback has the signature bpf_loop expects and takes no
    // context (its state is in CAPTURE_LOOP).
    unsafe {
        generated::bpf_loop(
            MAX_CHUNKS,
            capture_chunk as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    // SAFETY: the same live map value, borrowed anew after the loop wrote it.
    let tracked = unsafe { &mut *tracked };
    // What the chunks did not cover: past MAX_CHUNKS or MAX_IOVECS.
    let (done, moved) = (state.done, state.moved);
    if done < moved {
        walker_of(tracked, io.direction).skip((moved - done) as u32);
    }
    tracked.note_server_records(server_large_before, client_data_before);
    decide(tracked, io.key);
}

/// After a capture on a held socket: a confirmed success is dropped; an
/// alert releases the socket to userspace.
#[inline(always)]
fn decide(tracked: &mut TrackedSock, key: u64) {
    if tracked.held == 0 {
        return;
    }
    if tracked.confirmed() {
        // A copy: confirming deletes the map value `tracked` points into.
        let confirmed = *tracked;
        if !held::confirm(key, &confirmed) {
            // Userspace took the hold (it lasted too long): it follows the
            // connection now, and must see it end.
            tracked.held = 0;
        }
    } else if tracked.client_walker().alerts != 0 || tracked.server_walker().alerts != 0 {
        held::release(key);
    }
}

/// One chunk of [`capture`]: 0 to go on, 1 to stop.
extern "C" fn capture_chunk(_index: u32, _ctx: *mut c_void) -> i64 {
    let Some(state) = CAPTURE_LOOP.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: the per-CPU slot [`capture`] filled.
    let state = unsafe { &mut *state };
    let Some(tracked) = TRACKED.get_ptr_mut(state.key) else {
        return 1;
    };
    // SAFETY: a live map value; only this program writes it on this CPU.
    let walker = walker_of(unsafe { &mut *tracked }, state.direction);
    if walker.done() || state.done >= state.moved {
        return 1;
    }
    if state.seg_offset >= state.seg_len {
        // This segment is used up: on to the next iovec, if any (an empty
        // one ends the capture of this syscall).
        state.iov_index += 1;
        if state.vectored == 0 || state.iov_index >= state.len || state.iov_index >= MAX_IOVECS {
            return 1;
        }
        (state.seg_base, state.seg_len) = read_iovec(state.base, state.iov_index, state.len);
        state.seg_offset = 0;
        if state.seg_len == 0 {
            return 1;
        }
    }
    let Some(scratch) = DATA_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: the per-CPU scratch slot; nothing else uses it while this
    // program runs on this CPU.
    let event: &mut DataEvent = unsafe { &mut *scratch };
    let mut chunk = state.seg_len - state.seg_offset;
    if chunk > state.moved - state.done {
        chunk = state.moved - state.done;
    }
    if chunk > DATA_CHUNK as u64 {
        chunk = DATA_CHUNK as u64;
    }
    let chunk = chunk as u32;
    let src = (state.seg_base + state.seg_offset) as *const c_void;
    // SAFETY: copies at most DATA_CHUNK bytes into the scratch event's
    // DATA_CHUNK-byte buffer; the user address is read fault-tolerantly.
    let read =
        unsafe { generated::bpf_probe_read_user(event.data.as_mut_ptr().cast(), chunk, src) };
    state.seg_offset += chunk as u64;
    state.done += chunk as u64;
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
            state.key,
            state.direction as u32,
            &mut event.data,
            chunk as usize,
            src as u64,
        )
    };
    flags |= verdict.flags;
    if verdict.emit_len == 0 && flags == 0 {
        return 0;
    }
    event.header = header(EventKind::Data);
    event.fd = state.fd;
    event.direction = state.direction;
    event.flags = flags;
    event.syscall = state.syscall;
    event._pad = 0;
    event.stream_offset = verdict.stream_offset;
    event.len = verdict.emit_len;
    event.syscall_len = state.moved as u32;
    let mut size = DATA_EVENT_HEADER_LEN + verdict.emit_len as usize;
    if size > core::mem::size_of::<DataEvent>() {
        size = core::mem::size_of::<DataEvent>();
    }
    if held::emit_data(state.key, event, size) {
        count(Counter::DataEvents);
    }
    if flags & (DATA_FLAG_NOT_TLS | DATA_FLAG_BUDGET | DATA_FLAG_READ_FAILED) != 0 {
        // Not a handshake the kernel can confirm: userspace decides.
        held::release(state.key);
    }
    0
}

/// Base and length of iovec `index` of an array of `count`; (0, 0) when
/// unreadable.
#[inline(always)]
fn read_iovec(iov: u64, index: u64, count: u64) -> (u64, u64) {
    if iov == 0 || index >= count {
        return (0, 0);
    }
    let at = iov + index * 16;
    // SAFETY: user memory the syscall was given, read fault-tolerantly.
    let base = unsafe { bpf_probe_read_user(at as *const u64) }.unwrap_or(0);
    // SAFETY: as above.
    let len = unsafe { bpf_probe_read_user((at + 8) as *const u64) }.unwrap_or(0);
    if base == 0 { (0, 0) } else { (base, len) }
}
