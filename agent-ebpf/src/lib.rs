//! Types shared by tlsdoctor's eBPF programs and its userspace agent.
//!
//! Everything the kernel sends to userspace is defined here once, `#[repr(C)]`,
//! with explicit padding so both sides agree on the layout. Every event starts
//! with an [`EventHeader`] whose `kind` says which struct follows.
//!
//! The `user` feature adds `aya::Pod` so userspace can read the maps.
#![no_std]

pub mod record_walker;

/// Length of a task's `comm`.
pub const TASK_COMM_LEN: usize = 16;
/// Largest number of bytes one [`DataEvent`] carries; a longer syscall buffer
/// is captured as several events.
pub const DATA_CHUNK: usize = 8192;
/// Most bytes captured per direction of one connection. Enough for a
/// ClientHello, a ServerHello and a TLS 1.2 certificate chain of several large
/// certificates; a direction that needs more is cut off and flagged.
pub const CAPTURE_BUDGET: u32 = 64 * 1024;
/// Bytes kept of a stream that does not start with a TLS record (plain HTTP
/// sent to a TLS port, an HTTP reply to a ClientHello): enough to name the
/// protocol ("GET / HTTP/1.1", "HTTP/1.1 400 Bad Request"), no more.
pub const NON_TLS_SNIPPET: u32 = 24;
/// After the first application-data record of a direction, only the 5-byte
/// headers of this many further records are reported (their sizes tell an
/// encrypted alert from data), and then nothing.
pub const TRAILING_RECORD_HEADERS: u16 = 8;
/// OpenSSL errors kept per SSL call.
pub const MAX_SSL_ERRORS: usize = 4;

/// What follows the [`EventHeader`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// [`ConnEvent`]: a `connect` returned (success, in progress or error).
    Connect = 1,
    /// [`ConnEvent`]: an `accept`/`accept4` returned a new socket.
    Accept = 2,
    /// [`SockStateEvent`]: a tracked socket changed TCP state.
    SockState = 3,
    /// [`DataEvent`]: handshake bytes read from or written to a tracked socket.
    Data = 4,
    /// [`CloseEvent`]: a tracked socket was closed by its process.
    Close = 5,
    /// [`SslEvent`]: an OpenSSL handshake-driving call returned.
    Ssl = 6,
    /// [`ProcEvent`]: a process called `exec`.
    Exec = 7,
    /// [`ProcEvent`]: a process that owned tracked sockets exited.
    Exit = 8,
    /// [`HeldHeader`] and the events one socket's handshake held back in
    /// the kernel, released because it did not end in a confirmed success.
    Held = 9,
}

impl EventKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Connect,
            2 => Self::Accept,
            3 => Self::SockState,
            4 => Self::Data,
            5 => Self::Close,
            6 => Self::Ssl,
            7 => Self::Exec,
            8 => Self::Exit,
            9 => Self::Held,
            _ => return None,
        })
    }
}

/// Starts every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`].
    pub kind: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the event happened.
    pub ts_ns: u64,
    /// Thread id of the task that caused the event.
    pub tid: u32,
    /// Process id (tgid) of the task that caused the event.
    pub tgid: u32,
}

/// An IPv4 or IPv6 endpoint. IPv4 addresses use the first four bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// `AF_INET` (2), `AF_INET6` (10), or 0 when unknown.
    pub family: u16,
    /// Port in host byte order.
    pub port: u16,
    pub addr: [u8; 16],
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// A `connect` that returned, or an `accept` that produced a socket.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnEvent {
    pub header: EventHeader,
    pub fd: i32,
    /// `connect`: 0 or a negative errno (`-EINPROGRESS` for a non-blocking
    /// connect still under way). `accept`: always 0.
    pub ret: i32,
    /// Kernel `struct sock` address: the key of later [`SockStateEvent`]s.
    /// 0 when unknown.
    pub sk: u64,
    /// Local endpoint, when already known (family 0 otherwise).
    pub local: Endpoint,
    /// Remote endpoint: the `connect` destination, or the accepted peer.
    pub remote: Endpoint,
    /// `accept`: the listening socket's fd. `connect`: -1.
    pub listen_fd: i32,
    pub _pad: u32,
    pub comm: [u8; TASK_COMM_LEN],
}

/// A TCP state change of a socket a `connect`/`accept` registered.
///
/// Happens in any context (often softirq), so the header's task is not the
/// socket's owner: `owner_tgid`/`owner_fd` are.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockStateEvent {
    pub header: EventHeader,
    pub sk: u64,
    pub owner_tgid: u32,
    pub owner_fd: i32,
    /// Linux TCP states (`TCP_ESTABLISHED` = 1 … `TCP_CLOSING` = 11).
    pub old_state: u32,
    pub new_state: u32,
    pub local: Endpoint,
    pub remote: Endpoint,
}

/// Data direction, from the observed process's point of view.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Written by this process (`write`, `send*`).
    Egress = 0,
    /// Read by this process (`read`, `recv*`).
    Ingress = 1,
}

/// This chunk ends the capture of its direction because the first
/// application-data record began.
pub const DATA_FLAG_APPDATA: u8 = 1 << 0;
/// The stream does not start with a TLS record; `data` holds its first bytes.
pub const DATA_FLAG_NOT_TLS: u8 = 1 << 1;
/// The direction used up [`CAPTURE_BUDGET`]; later bytes are not captured.
pub const DATA_FLAG_BUDGET: u8 = 1 << 2;
/// `data` holds only 5-byte record headers (type, version, length) of
/// records that followed the first application-data record.
pub const DATA_FLAG_HEADERS_ONLY: u8 = 1 << 3;
/// The kernel could not read (part of) the user buffer: bytes are missing.
pub const DATA_FLAG_READ_FAILED: u8 = 1 << 4;

/// Bytes of a tracked socket's handshake, as the process read or wrote them.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DataEvent {
    pub header: EventHeader,
    pub fd: i32,
    /// A [`Direction`].
    pub direction: u8,
    /// `DATA_FLAG_*`.
    pub flags: u8,
    /// A [`Syscall`].
    pub syscall: u8,
    pub _pad: u8,
    /// Offset of `data[0]` in this direction's byte stream: a gap between two
    /// events means bytes were not captured.
    pub stream_offset: u32,
    /// Valid bytes in `data`.
    pub len: u32,
    /// Bytes the syscall moved in total.
    pub syscall_len: u32,
    pub data: [u8; DATA_CHUNK],
}

/// Size of a [`DataEvent`] without its payload.
pub const DATA_EVENT_HEADER_LEN: usize = core::mem::offset_of!(DataEvent, data);

/// The syscall that moved a [`DataEvent`]'s bytes.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    Read = 1,
    Write = 2,
    Recvfrom = 3,
    Sendto = 4,
    Recvmsg = 5,
    Sendmsg = 6,
    Readv = 7,
    Writev = 8,
}

/// A tracked socket closed by `close`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CloseEvent {
    pub header: EventHeader,
    pub fd: i32,
    pub _pad: u32,
}

/// The OpenSSL entry point an [`SslEvent`] reports.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslFunc {
    DoHandshake = 1,
    Connect = 2,
    Accept = 3,
    /// Not a call: an error (or a failed verify result) raised on a thread
    /// outside any followed call, e.g. inside `SSL_read`, which is not
    /// probed. Userspace attributes it to the thread's connection.
    Outside = 4,
}

impl SslFunc {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::DoHandshake,
            2 => Self::Connect,
            3 => Self::Accept,
            4 => Self::Outside,
            _ => return None,
        })
    }
}

/// One error OpenSSL raised (`ERR_vset_error`/`ERR_put_error`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SslError {
    /// `ERR_LIB_SSL` (20) or `ERR_LIB_X509` (11).
    pub lib: u32,
    pub reason: u32,
    /// Source line (OpenSSL 1.1's `ERR_put_error` passes it), 0 if unknown.
    pub line: u32,
    pub _pad: u32,
}

pub const ERR_LIB_X509: u32 = 11;
pub const ERR_LIB_SSL: u32 = 20;

/// `SslEvent.flags`: the SSL object had completed a handshake before this call.
pub const SSL_FLAG_HANDSHAKE_DONE_BEFORE: u8 = 1 << 0;
/// `SslEvent.flags`: more errors were raised than [`MAX_SSL_ERRORS`].
pub const SSL_FLAG_ERRORS_TRUNCATED: u8 = 1 << 1;
/// `SslEvent.flags`: `verify_result` holds a value `X509_STORE_CTX_get_error`
/// returned during the call.
pub const SSL_FLAG_VERIFY_RESULT: u8 = 1 << 2;

/// An OpenSSL call that finished a handshake, failed one, or raised SSL/X509
/// errors.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SslEvent {
    pub header: EventHeader,
    /// The `SSL*`.
    pub ssl: u64,
    /// When the call was entered.
    pub entry_ts_ns: u64,
    /// The socket the call did I/O on (or was bound to), -1 when unknown.
    pub fd: i32,
    /// The call's return value.
    pub ret: i32,
    /// An [`SslFunc`].
    pub func: u8,
    /// `SSL_FLAG_*`.
    pub flags: u8,
    /// Valid entries in `errors`.
    pub error_count: u8,
    pub _pad: u8,
    /// `X509_STORE_CTX_get_error()` during the call (an `X509_V_ERR_*`), when
    /// `SSL_FLAG_VERIFY_RESULT` is set.
    pub verify_result: i32,
    pub errors: [SslError; MAX_SSL_ERRORS],
}

/// A process event.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcEvent {
    pub header: EventHeader,
    pub comm: [u8; TASK_COMM_LEN],
}

/// Per-CPU counters the kernel side keeps; userspace sums and reports them.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Events lost because the ring buffer was full.
    RingbufFull = 0,
    /// Sockets not tracked because the tracking map was full.
    TrackedMapFull = 1,
    /// Syscall arguments not stashed because the per-thread map was full.
    ArgsMapFull = 2,
    /// Reads of user memory that failed (bytes not captured).
    ReadUserFailed = 3,
    /// Directions cut off at `CAPTURE_BUDGET`.
    CaptureBudget = 4,
    /// Fallback mechanism: accepted sockets whose peer address was not in
    /// the tuple map.
    AcceptTupleMissing = 5,
    /// OpenSSL calls not followed because the per-thread map was full.
    SslCallMapFull = 6,
    /// OpenSSL errors dropped past `MAX_SSL_ERRORS` in one call.
    SslErrorsTruncated = 7,
    /// OpenSSL calls that returned <= 0 without raising an error
    /// (WANT_READ/WANT_WRITE of non-blocking sockets): not reported.
    SslWouldBlock = 8,
    /// Data events emitted.
    DataEvents = 9,
    /// Syscalls on tracked sockets.
    TrackedSyscalls = 10,
    /// `recvmsg`/`sendmsg`/`readv`/`writev` with more than one iovec (up to
    /// 4 chunks across them are captured; bytes past those are skipped).
    MultiIovec = 11,
    /// I/O on a tracked socket the socket hook cannot read: not made by
    /// read/write/readv/writev/recv*/send* (io_uring, sendfile, splice,
    /// sendmmsg, a 32-bit process). Its bytes are skipped.
    SocketIoUnattributed = 12,
    /// Socket mechanism: TCP connects not made by `connect(2)` (io_uring,
    /// a 32-bit process): their fd is unknown, so they are not followed.
    ConnectUnattributed = 13,
    /// Socket mechanism: accepted connections whose first I/O was not one
    /// of the read/write/send/recv syscalls (io_uring, sendfile, splice):
    /// their fd is unknown, so they are not followed.
    AcceptUnattributed = 14,
    /// Client-side handshakes the kernel confirmed as successful: their
    /// events were dropped in the kernel, unread by userspace.
    ConfirmedClient = 15,
    /// Server-side handshakes the kernel confirmed as successful.
    ConfirmedServer = 16,
    /// Sockets whose held events were released to userspace (a failure, an
    /// end or a stall before a confirmed success).
    HeldReleased = 17,
    /// Releases because the socket's hold buffer was full (its later events
    /// stream as they happen).
    HeldOverflow = 18,
    /// Sockets not held because the hold map was full: their events stream
    /// as they happen (nothing is lost; they cost what they cost before).
    HeldMapFull = 19,
}

pub const COUNTER_COUNT: u32 = 20;

impl Counter {
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::RingbufFull,
        Counter::TrackedMapFull,
        Counter::ArgsMapFull,
        Counter::ReadUserFailed,
        Counter::CaptureBudget,
        Counter::AcceptTupleMissing,
        Counter::SslCallMapFull,
        Counter::SslErrorsTruncated,
        Counter::SslWouldBlock,
        Counter::DataEvents,
        Counter::TrackedSyscalls,
        Counter::MultiIovec,
        Counter::SocketIoUnattributed,
        Counter::ConnectUnattributed,
        Counter::AcceptUnattributed,
        Counter::ConfirmedClient,
        Counter::ConfirmedServer,
        Counter::HeldReleased,
        Counter::HeldOverflow,
        Counter::HeldMapFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Counter::RingbufFull => "ringbuf_full",
            Counter::TrackedMapFull => "tracked_map_full",
            Counter::ArgsMapFull => "args_map_full",
            Counter::ReadUserFailed => "read_user_failed",
            Counter::CaptureBudget => "capture_budget_exhausted",
            Counter::AcceptTupleMissing => "accept_tuple_missing",
            Counter::SslCallMapFull => "ssl_call_map_full",
            Counter::SslErrorsTruncated => "ssl_errors_truncated",
            Counter::SslWouldBlock => "ssl_would_block",
            Counter::DataEvents => "data_events",
            Counter::TrackedSyscalls => "tracked_syscalls",
            Counter::MultiIovec => "multi_iovec",
            Counter::SocketIoUnattributed => "socket_io_unattributed",
            Counter::ConnectUnattributed => "connect_unattributed",
            Counter::AcceptUnattributed => "accept_unattributed",
            Counter::ConfirmedClient => "confirmed_success_client",
            Counter::ConfirmedServer => "confirmed_success_server",
            Counter::HeldReleased => "held_released",
            Counter::HeldOverflow => "held_overflow",
            Counter::HeldMapFull => "held_map_full",
        }
    }
}

/// Linux TCP states (`include/net/tcp_states.h`), as `inet_sock_set_state`
/// and [`SockStateEvent`] carry them.
pub mod tcp_state {
    pub const ESTABLISHED: u32 = 1;
    pub const SYN_SENT: u32 = 2;
    pub const SYN_RECV: u32 = 3;
    pub const FIN_WAIT1: u32 = 4;
    pub const FIN_WAIT2: u32 = 5;
    pub const TIME_WAIT: u32 = 6;
    pub const CLOSE: u32 = 7;
    pub const CLOSE_WAIT: u32 = 8;
    pub const LAST_ACK: u32 = 9;
    pub const LISTEN: u32 = 10;
    pub const CLOSING: u32 = 11;
}

/// Key of a tracked socket: process and file descriptor.
#[inline(always)]
pub fn sock_key(tgid: u32, fd: i32) -> u64 {
    ((tgid as u64) << 32) | (fd as u32 as u64)
}

/// Map names userspace looks up.
pub mod map_names {
    pub const EVENTS: &str = "EVENTS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const TRACKED: &str = "TRACKED";
    pub const IGNORED_TGIDS: &str = "IGNORED_TGIDS";
    pub const HELD: &str = "HELD";
    pub const HELD_SINCE: &str = "HELD_SINCE";
    pub const SERVED_TLS_PORTS: &str = "SERVED_TLS_PORTS";
    /// Global: 1 when successes are confirmed and dropped in the kernel.
    pub const HOLD_SUCCESSES: &str = "HOLD_SUCCESSES";
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for Endpoint {}
    unsafe impl aya::Pod for EventHeader {}
    unsafe impl aya::Pod for ConnEvent {}
    unsafe impl aya::Pod for SockStateEvent {}
    unsafe impl aya::Pod for DataEvent {}
    unsafe impl aya::Pod for CloseEvent {}
    unsafe impl aya::Pod for SslEvent {}
    unsafe impl aya::Pod for ProcEvent {}
    unsafe impl aya::Pod for crate::record_walker::WalkerState {}
    unsafe impl aya::Pod for crate::TrackedSock {}
    unsafe impl aya::Pod for crate::HeldHeader {}
}

/// What the kernel keeps per tracked socket (map `TRACKED`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrackedSock {
    /// `struct sock` address, 0 when unknown.
    pub sk: u64,
    /// 1 = client (`connect`), 2 = server (`accept`).
    pub role: u32,
    /// Server side: the local (listening) port, for the ports known to
    /// serve TLS; 0 when unknown.
    pub local_port: u16,
    /// 1 while the socket's events are held in the kernel (map `HELD`).
    pub held: u8,
    /// 1 once the server sent application data after the client's (see
    /// [`TrackedSock::confirmed`]).
    pub server_replied: u8,
    /// Indexed by [`Direction`].
    pub walkers: [record_walker::WalkerState; 2],
}

pub const ROLE_CLIENT: u32 = 1;
pub const ROLE_SERVER: u32 = 2;

impl TrackedSock {
    /// The walker of what the client sent.
    #[inline(always)]
    pub fn client_walker(&self) -> &record_walker::WalkerState {
        // Egress of a client, ingress of a server.
        if self.role == ROLE_CLIENT {
            &self.walkers[0]
        } else {
            &self.walkers[1]
        }
    }

    /// The walker of what the server sent.
    #[inline(always)]
    pub fn server_walker(&self) -> &record_walker::WalkerState {
        if self.role == ROLE_CLIENT {
            &self.walkers[1]
        } else {
            &self.walkers[0]
        }
    }

    /// The client sent application data after its handshake: in TLS 1.2
    /// its first application-data record, in TLS 1.3 (where its Finished is
    /// an application-data record too) its second. TLS 1.2 is told by the
    /// client's handshake records after its ClientHello (ClientKeyExchange,
    /// its encrypted Finished), which TLS 1.3 never sends in that form.
    #[inline(always)]
    pub fn client_sent_data(&self) -> bool {
        let client = self.client_walker();
        let needed = if client.hello_flags & record_walker::HELLO_LATER_HANDSHAKE != 0 {
            1
        } else {
            2
        };
        client.app_records >= needed
    }

    /// Records that the server's walker just counted `server_large_before
    /// -> now` application-data records longer than any alert; they are a
    /// reply when the client had sent data before them.
    #[inline(always)]
    pub fn note_server_records(&mut self, server_large_before: u8, client_data_before: bool) {
        if client_data_before && self.server_walker().large_records > server_large_before {
            self.server_replied = 1;
        }
    }

    /// The handshake is over and succeeded on both sides, as surely as
    /// userspace would conclude and then only count it: the client sent
    /// application data, the server answered with more, no alert went
    /// either way, and the client sent no certificate in the clear (a TLS
    /// 1.2 server that asked for one may still reject its absence one layer
    /// up, which host state decides). Everything else (failures, stalls,
    /// connections that end before both sides spoke) is left to userspace.
    #[inline(always)]
    pub fn confirmed(&self) -> bool {
        let client = self.client_walker();
        let server = self.server_walker();
        self.server_replied != 0
            && client.alerts == 0
            && server.alerts == 0
            && client.hello_flags & record_walker::HELLO_CERTIFICATE_OR_UNKNOWN == 0
    }
}

/// Starts a [`EventKind::Held`] record: `len` bytes of entries follow, each
/// an 8-byte [`HeldEntry`] and one event (itself starting with an
/// [`EventHeader`]) padded to 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HeldHeader {
    pub header: EventHeader,
    /// The socket's `sock_key`.
    pub key: u64,
    /// Bytes of entries that follow.
    pub len: u32,
    /// Entries that follow.
    pub count: u32,
}

/// Precedes each event in a held record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HeldEntry {
    /// The event's length (without padding).
    pub len: u32,
    pub _pad: u32,
}

/// Bytes of events a socket holds before it releases them and streams.
/// Enough for a ClientHello and a TLS 1.3 ServerHello with room to spare,
/// and a TLS 1.2 certificate chain of a few kilobytes. A power of two.
pub const HELD_CAPACITY: usize = 8192;
/// The largest event one entry can carry.
pub const HELD_EVENT_MAX: usize = DATA_EVENT_HEADER_LEN + DATA_CHUNK;
/// Size of the entry area: an entry may begin anywhere below
/// [`HELD_CAPACITY`] and carry the largest event.
pub const HELD_DATA_SIZE: usize =
    HELD_CAPACITY + size_of::<HeldEntry>() + HELD_EVENT_MAX.next_multiple_of(8);
/// Size of a value of the `HELD` map: a [`HeldHeader`] and the entry area.
pub const HELD_VALUE_SIZE: usize = size_of::<HeldHeader>() + HELD_DATA_SIZE;

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use record_walker::WalkerState;

    fn record(content_type: u8, first: u8, body_len: usize) -> Vec<u8> {
        let mut r = std::vec![content_type, 3, 3, (body_len >> 8) as u8, body_len as u8];
        r.extend(core::iter::repeat_n(first, body_len));
        r
    }

    /// Feeds one side's bytes through the socket's walker for that side,
    /// as the kernel's capture does (with the server-reply bookkeeping).
    fn send(sock: &mut TrackedSock, from_client: bool, bytes: &[u8]) {
        let client_data_before = sock.client_sent_data();
        let server_large_before = sock.server_walker().large_records;
        let egress = from_client == (sock.role == ROLE_CLIENT);
        let walker: &mut WalkerState = &mut sock.walkers[if egress { 0 } else { 1 }];
        let mut buf = bytes.to_vec();
        walker.walk(&mut buf, bytes.len());
        sock.note_server_records(server_large_before, client_data_before);
    }

    fn tls13(role: u32, client_data: bool, server_reply: usize) -> TrackedSock {
        let mut s = TrackedSock {
            role,
            ..Default::default()
        };
        send(&mut s, true, &record(22, 1, 400)); // ClientHello
        let mut flight = record(22, 2, 90); // ServerHello
        flight.extend(record(20, 1, 1));
        flight.extend(record(23, 0, 40)); // EncryptedExtensions
        flight.extend(record(23, 0, 900)); // Certificate...Finished
        send(&mut s, false, &flight);
        let mut fin = record(20, 1, 1);
        fin.extend(record(23, 0, 53)); // Finished
        send(&mut s, true, &fin);
        send(&mut s, false, &record(23, 0, 250)); // NewSessionTicket
        if client_data {
            // `GET / HTTP/1.0` and the blank line: 35 bytes, as many as a
            // JSSE alert, yet after the Finished only 19 is an alert.
            send(&mut s, true, &record(23, 0, 35));
        }
        send(&mut s, false, &record(23, 0, server_reply));
        s
    }

    #[test]
    fn tls13_success_is_confirmed_once_the_server_answers_the_clients_data() {
        for role in [ROLE_CLIENT, ROLE_SERVER] {
            assert!(tls13(role, true, 200).confirmed(), "role {role}");
            // A ticket before the client's data is no answer to it.
            assert!(!tls13(role, false, 200).confirmed(), "role {role}");
            // An alert-sized answer may be the server's rejection (JSSE
            // pads its alerts to 35 bytes).
            assert!(!tls13(role, true, 19).confirmed(), "role {role}");
            assert!(!tls13(role, true, 35).confirmed(), "role {role}");
        }
    }

    fn tls12(client_certificate: bool, alert: bool) -> TrackedSock {
        let mut s = TrackedSock {
            role: ROLE_SERVER,
            ..Default::default()
        };
        send(&mut s, true, &record(22, 1, 300));
        send(&mut s, false, &record(22, 2, 1500)); // ServerHello..Done
        let mut flight = Vec::new();
        if client_certificate {
            flight.extend(record(22, 11, 7)); // an empty Certificate
        }
        flight.extend(record(22, 16, 37)); // ClientKeyExchange
        flight.extend(record(20, 1, 1));
        flight.extend(record(22, 0x5a, 40)); // Finished (encrypted)
        send(&mut s, true, &flight);
        let mut flight = record(20, 1, 1);
        flight.extend(record(22, 0x33, 40));
        send(&mut s, false, &flight);
        send(&mut s, true, &record(23, 0, 120)); // GET /
        if alert {
            send(&mut s, false, &record(21, 0, 26));
        }
        send(&mut s, false, &record(23, 0, 400));
        s
    }

    #[test]
    fn tls12_success_needs_one_data_record_each_way_and_no_certificate_or_alert() {
        assert!(tls12(false, false).confirmed());
        assert!(!tls12(true, false).confirmed());
        assert!(!tls12(false, true).confirmed());
    }

    #[test]
    fn nothing_is_confirmed_before_both_sides_spoke() {
        let s = TrackedSock {
            role: ROLE_CLIENT,
            ..Default::default()
        };
        assert!(!s.confirmed());
    }
}
