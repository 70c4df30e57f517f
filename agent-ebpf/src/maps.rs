//! Maps shared by the hook families, and the small helpers every hook uses.

use agent_ebpf::{
    COUNTER_COUNT, ConnEvent, Counter, DataEvent, Endpoint, EventHeader, EventKind, MAX_SSL_ERRORS,
    SslError, TrackedSock,
};
use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};

/// The agent's own process: never observed (its probes would observe themselves).
#[unsafe(no_mangle)]
pub static AGENT_TGID: Global<u32> = Global::new(0);

/// Every event to userspace. Size set by userspace at load.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

/// Sockets a `connect`/`accept` created, keyed by `sock_key(tgid, fd)`.
/// A plain hash map (not LRU) so that a full map is counted, never a silent
/// eviction of a connection in progress; userspace removes entries of exited
/// processes.
#[map]
pub static TRACKED: HashMap<u64, TrackedSock> = HashMap::with_max_entries(65536, 0);

/// What a syscall's entry saw, for its exit, keyed by pid_tgid.
#[map]
pub static ARGS: HashMap<u64, SysArgs> = HashMap::with_max_entries(16384, 0);

/// `struct sock` address -> owning `sock_key`, for TCP state events and
/// (socket mechanism) socket I/O; [`SK_OWNER_PENDING_ACCEPT`] for a
/// server-side connection no process has done I/O on yet.
#[map]
pub static SK_OWNER: LruHashMap<u64, u64> = LruHashMap::with_max_entries(65536, 0);

/// `SK_OWNER` value of an established server-side connection whose owner
/// is not known yet (socket mechanism: its first I/O names it). No real
/// `sock_key` has it (it would be fd -1 of pid 2^32 - 1).
pub const SK_OWNER_PENDING_ACCEPT: u64 = u64::MAX;

/// Socket mechanism: the endpoints of a [`SK_OWNER_PENDING_ACCEPT`]
/// connection, by `struct sock` address, for the Accept event its first
/// I/O sends.
#[map]
pub static PENDING_ACCEPTS: LruHashMap<u64, PendingAccept> = LruHashMap::with_max_entries(16384, 0);

/// Server-side connections that became ESTABLISHED, keyed by the peer's
/// normalized endpoint, waiting for the `accept` that hands them to a process.
#[map]
pub static PEER_TUPLE: LruHashMap<PeerKey, PendingAccept> = LruHashMap::with_max_entries(16384, 0);

/// The OpenSSL call each thread is inside, keyed by pid_tgid. Freed by the
/// call's return probe, or by the thread's exit when it dies inside the
/// call; LRU so that a return no probe saw cannot leak an entry for good.
#[map]
pub static SSL_CALLS: LruHashMap<u64, SslCall> = LruHashMap::with_max_entries(16384, 0);

/// Per `SSL*`: its socket and whether its handshake completed. LRU: no
/// probe on `SSL_free` (a trap per connection); a reused `SSL*` is told
/// apart by `SSL_set_fd` or by its I/O on another socket.
#[map]
pub static SSL_STATE: LruHashMap<SslKey, SslState> = LruHashMap::with_max_entries(65536, 0);

/// Processes that own tracked sockets (their exit is reported).
#[map]
pub static TGID_ACTIVE: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16384, 0);

/// Scratch space too large for the 512-byte BPF stack.
#[map]
pub static DATA_SCRATCH: PerCpuArray<DataEvent> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static SSL_SCRATCH: PerCpuArray<SslCall> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static CONN_SCRATCH: PerCpuArray<ConnEvent> = PerCpuArray::with_max_entries(1, 0);

pub const ARGS_CONNECT: u8 = 1;
pub const ARGS_ACCEPT: u8 = 2;
pub const ARGS_IO: u8 = 3;

/// A syscall's arguments, stashed at entry for its exit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SysArgs {
    /// `ARGS_*`.
    pub kind: u8,
    /// `agent_ebpf::Syscall` for I/O.
    pub syscall: u8,
    /// `agent_ebpf::Direction` for I/O.
    pub direction: u8,
    /// I/O: `buf` is an iovec array of `len` entries.
    pub vectored: u8,
    pub fd: i32,
    /// I/O: user buffer. Accept: peer sockaddr. Connect: unused.
    pub buf: u64,
    /// I/O: buffer length, or the number of iovecs.
    pub len: u64,
    /// Connect: the socket, from the SYN_SENT transition.
    pub sk: u64,
    /// Connect: the destination.
    pub remote: Endpoint,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct PeerKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad: [u8; 6],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingAccept {
    pub sk: u64,
    pub local: Endpoint,
    pub remote: Endpoint,
    /// Socket mechanism: the peer closed (`ESTABLISHED -> CLOSE_WAIT`)
    /// before the first I/O named the owner; that I/O replays it.
    pub peer_closed: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SslKey {
    pub tgid: u32,
    pub _pad: u32,
    pub ptr: u64,
}

/// `SslState.flags`: the handshake completed.
pub const SSL_STATE_DONE: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SslState {
    pub fd: i32,
    pub flags: u32,
}

/// The OpenSSL call a thread is inside.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SslCall {
    pub ssl: u64,
    pub entry_ts: u64,
    pub fd: i32,
    pub verify_result: i32,
    pub func: u8,
    /// Nesting (`SSL_connect` calls `SSL_do_handshake`).
    pub depth: u8,
    pub error_count: u8,
    /// `agent_ebpf::SSL_FLAG_*`.
    pub flags: u8,
    pub errors: [SslError; MAX_SSL_ERRORS],
}

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(p) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU counter slot; no other program writes it on this CPU.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
pub fn header(kind: EventKind) -> EventHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    EventHeader {
        kind: kind as u32,
        _pad: 0,
        // SAFETY: a helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        tid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
    }
}

/// True for the agent itself.
#[inline(always)]
pub fn is_self(tgid: u32) -> bool {
    tgid == AGENT_TGID.load()
}

/// Reserves a typed event, counting a full ring buffer.
#[inline(always)]
pub fn reserve<T: 'static>() -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        count(Counter::RingbufFull);
    }
    entry
}

/// Marks a process as owning tracked state, so its exit is reported.
#[inline(always)]
pub fn mark_active(tgid: u32) {
    let _ = TGID_ACTIVE.insert(tgid, 1u8, 0);
}
