//! Holding a socket's events in the kernel until its handshake is decided.
//!
//! From its connect or accept, a tracked socket's events (connect/accept,
//! TCP states, handshake bytes, OpenSSL results) go to its entry in `HELD`
//! instead of the ring buffer. When the handshake is confirmed successful
//! (`TrackedSock::confirmed`: both sides exchanged application data, no
//! alert) the entry is dropped and the socket forgotten: a success costs
//! userspace nothing but a counter. Anything else releases the entry to the
//! ring buffer as one [`EventKind::Held`] record, in order, and the socket's
//! later events stream as before: a failure, an alert, the socket's end, bytes
//! that are not TLS, a full entry, or (from userspace) a hold that lasted too
//! long.
//!
//! Only when userspace asks (`HOLD_SUCCESSES`): with `--show-success` or
//! success sampling every event streams, as it must for userspace to see
//! successes.

use agent_ebpf::{
    Counter, DataEvent, EventHeader, EventKind, HELD_CAPACITY, HELD_DATA_SIZE, HELD_EVENT_MAX,
    HeldEntry, HeldHeader, ROLE_CLIENT, TrackedSock,
};
use aya_ebpf::{
    Global,
    bindings::BPF_F_NO_PREALLOC,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated},
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray},
};

use core::ffi::c_void;

use crate::io::opaque;
use crate::maps::{EVENTS, SK_OWNER, TRACKED, count};

/// Set by userspace at load: 1 to hold events and drop confirmed successes.
#[unsafe(no_mangle)]
pub static HOLD_SUCCESSES: Global<u32> = Global::new(0);

/// Sockets holding events at once; a socket that finds the map full
/// streams (counted).
const HELD_SOCKETS: u32 = 4096;

/// One socket's held events.
#[repr(C)]
pub struct HeldEvents {
    pub head: HeldHeader,
    pub data: [u8; HELD_DATA_SIZE],
}

/// Held events by `sock_key`. Not preallocated: memory follows the
/// handshakes in flight, not the map's size.
#[map]
static HELD: HashMap<u64, HeldEvents> = HashMap::with_max_entries(HELD_SOCKETS, BPF_F_NO_PREALLOC);

/// When each socket began holding (`bpf_ktime_get_ns`), by `sock_key`:
/// userspace releases holds that last too long (a stalled handshake has no
/// event that would).
#[map]
static HELD_SINCE: HashMap<u64, u64> = HashMap::with_max_entries(HELD_SOCKETS, 0);

/// The held socket each thread last did I/O on: an OpenSSL error raised
/// outside a followed call releases it first, so that userspace sees the
/// connection before the error it ties to it.
#[map]
static THREAD_HELD: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16384, 0);

/// Local ports of servers whose handshakes the kernel confirmed: userspace
/// learns them as TLS ports (a later refused or plain-text connection there
/// is a TLS failure).
#[map]
static SERVED_TLS_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(1024, 0);

/// The initial value of a new entry (only its header is read).
#[map]
static HELD_SCRATCH: PerCpuArray<HeldEvents> = PerCpuArray::with_max_entries(1, 0);

/// Starts holding `key`'s events, when userspace asked for it. Returns
/// whether the socket holds.
#[inline(always)]
pub fn start(key: u64) -> bool {
    if HOLD_SUCCESSES.load() == 0 {
        return false;
    }
    let Some(scratch) = HELD_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: the per-CPU scratch slot; nothing else uses it while this
    // program runs on this CPU.
    let scratch = unsafe { &mut *scratch };
    scratch.head = HeldHeader {
        header: EventHeader {
            kind: EventKind::Held as u32,
            _pad: 0,
            ts_ns: 0,
            tid: 0,
            tgid: (key >> 32) as u32,
        },
        key,
        len: 0,
        count: 0,
    };
    if HELD.insert(key, &*scratch, 0).is_err() {
        count(Counter::HeldMapFull);
        return false;
    }
    if HELD_SINCE.insert(key, now_ns(), 0).is_err() {
        // Without a start time userspace could not release a stall: do not hold.
        let _ = HELD.remove(key);
        count(Counter::HeldMapFull);
        return false;
    }
    true
}

/// Sends one fixed-size event of `key`'s socket: into its hold, or to the
/// ring buffer.
#[inline(always)]
pub fn emit<T: 'static>(key: u64, event: &T) {
    if hold(key, (event as *const T).cast(), size_of::<T>() as u32) {
        return;
    }
    if EVENTS.output::<T>(event, 0).is_err() {
        count(Counter::RingbufFull);
    }
}

/// Sends a data event of `key`'s socket: its first `size` bytes (at most
/// the whole event).
#[inline(always)]
pub fn emit_data(key: u64, event: &DataEvent, size: usize) -> bool {
    let event = (event as *const DataEvent).cast::<u8>();
    if hold(key, event, size as u32) {
        return true;
    }
    output_bounded::<{ size_of::<DataEvent>() }>(event, size)
}

/// Appends to `key`'s hold, if it holds; releases it when it is full.
/// True when the event was held.
#[inline(always)]
fn hold(key: u64, event: *const u8, size: u32) -> bool {
    let Some(held) = HELD.get_ptr_mut(key) else {
        return false;
    };
    // SAFETY: a live map value; the socket's events come from its own
    // hooks, which a second CPU can only race into staleness.
    if append(unsafe { &mut *held }, event, size) {
        return true;
    }
    count(Counter::HeldOverflow);
    release(key);
    false
}

/// Releases `key`'s held events (if any) to the ring buffer; its later
/// events stream.
#[inline(always)]
pub fn release(key: u64) {
    let Some(held) = HELD.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: a live map value the verifier checked.
    let held = unsafe { &mut *held };
    let len = held.head.len as usize;
    if held.head.count > 0 && len <= HELD_DATA_SIZE {
        held.head.header.ts_ns = now_ns();
        let pid_tgid = bpf_get_current_pid_tgid();
        held.head.header.tid = pid_tgid as u32;
        let size = size_of::<HeldHeader>() + len;
        output_bounded::<{ size_of::<HeldEvents>() }>(
            (&held.head as *const HeldHeader).cast(),
            size,
        );
    }
    let _ = HELD.remove(key);
    let _ = HELD_SINCE.remove(key);
    count(Counter::HeldReleased);
    if let Some(tracked) = TRACKED.get_ptr_mut(key) {
        // SAFETY: a live map value the verifier checked.
        unsafe { (*tracked).held = 0 };
    }
}

/// Drops a confirmed success: its held events, and the socket's tracking
/// (its later I/O costs one failed lookup). False, changing nothing, when
/// the hold is gone: userspace took it (deleting the entry is what decides
/// who owns the connection, atomically).
#[inline(always)]
pub fn confirm(key: u64, tracked: &TrackedSock) -> bool {
    if HELD.remove(key).is_err() {
        return false;
    }
    let _ = HELD_SINCE.remove(key);
    if tracked.role == ROLE_CLIENT {
        count(Counter::ConfirmedClient);
    } else {
        count(Counter::ConfirmedServer);
        let port = tracked.local_port;
        // SAFETY: the map value is only tested for presence.
        if port != 0 && unsafe { SERVED_TLS_PORTS.get(port) }.is_none() {
            let _ = SERVED_TLS_PORTS.insert(port, 1u8, 0);
        }
    }
    let sk = tracked.sk;
    let _ = TRACKED.remove(key);
    if sk != 0 {
        let _ = SK_OWNER.remove(sk);
    }
    true
}

/// Remembers that this thread did I/O on held socket `key`.
#[inline(always)]
pub fn note_thread_io(key: u64) {
    let _ = THREAD_HELD.insert(bpf_get_current_pid_tgid(), key, 0);
}

/// Releases the held socket this thread last did I/O on, if it still holds.
#[inline(always)]
pub fn release_thread_socket() {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the map value is copied out at once.
    let Some(&key) = (unsafe { THREAD_HELD.get(pid_tgid) }) else {
        return;
    };
    let _ = THREAD_HELD.remove(pid_tgid);
    release(key);
}

#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: a helper without preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// Appends one event; false when the entry is full or the event too large.
#[inline(always)]
fn append(held: &mut HeldEvents, event: *const u8, size: u32) -> bool {
    let off = held.head.len as usize;
    if off >= HELD_CAPACITY || size as usize > HELD_EVENT_MAX || size == 0 {
        return false;
    }
    // The mask restates `off < HELD_CAPACITY` in a form every verifier
    // keeps, hidden from LLVM, which would drop it as redundant.
    let off = opaque(off as u64) as usize & (HELD_CAPACITY - 1);
    let entry_len = size_of::<HeldEntry>();
    // SAFETY: `off + 8 <= HELD_DATA_SIZE` (the mask above).
    unsafe {
        core::ptr::write_unaligned(
            held.data.as_mut_ptr().wrapping_add(off).cast::<u64>(),
            size as u64,
        )
    };
    let size = opaque(size as u64) as usize;
    if size > HELD_EVENT_MAX {
        return false;
    }
    let dst = held.data.as_mut_ptr().wrapping_add(off + entry_len);
    // SAFETY: `off + 8 + size <= HELD_CAPACITY + 8 + HELD_EVENT_MAX <=
    // HELD_DATA_SIZE`; the source is an event this program built (stack or
    // per-CPU scratch), read with the fault-tolerant helper.
    let read = unsafe {
        generated::bpf_probe_read_kernel(dst.cast(), size as u32, event as *const c_void)
    };
    if read != 0 {
        return false;
    }
    held.head.len = (off + entry_len + size.next_multiple_of(8)) as u32;
    held.head.count += 1;
    true
}

/// Outputs `size` bytes of an object of `MAX` bytes at `event`; false
/// when the ring buffer is full (counted).
#[inline(always)]
fn output_bounded<const MAX: usize>(event: *const u8, size: usize) -> bool {
    let size = opaque(size as u64) as usize;
    if size > MAX {
        return false;
    }
    // SAFETY: `event` is an object of `MAX` bytes (a map value) and
    // `size <= MAX`.
    let bytes = unsafe { core::slice::from_raw_parts(event, size) };
    if EVENTS.output::<[u8]>(bytes, 0).is_err() {
        count(Counter::RingbufFull);
        return false;
    }
    true
}
