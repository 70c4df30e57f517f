//! Connection and handshake assembly: kernel events in, one
//! [`HandshakeOutcome`] per handshake end out.
//!
//! Connections are keyed by (tgid, fd) while open, and by their kernel socket
//! while closing (TCP state changes such as a RST can arrive after `close`).
//! An outcome is decided by the strongest evidence present: OpenSSL's own
//! verdict, then the wire (an alert, a non-TLS reply, both sides past the
//! handshake), then the socket (refused, reset, closed, stalled).

pub mod conn;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use agent_ebpf::{ConnEvent, SockStateEvent, SslEvent, SslFunc, sock_key};
use chrono::{DateTime, Utc};

use crate::capture::events::{KernelEvent, c_str, endpoint_addr};
use crate::diagnosis::Diagnosis;
use crate::evidence::process::{ProcessCache, ProcessInfo};
use crate::evidence::wire::TlsFacts;
use crate::outcome::{Endpoint, HandshakeOutcome, HandshakeResult, Role};

use conn::{Conn, Decision};

const EINPROGRESS: i32 = 115;
/// How recent a thread's handshake I/O must be for an OpenSSL error raised
/// outside a followed call to be tied to it (a TLS 1.3 server's rejection of
/// a client certificate follows the client's last handshake bytes at once).
const OUTSIDE_WINDOW_NS: u64 = 2_000_000_000;
use agent_ebpf::tcp_state::SYN_SENT as TCP_SYN_SENT;

/// Converts the kernel's monotonic timestamps to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// realtime - monotonic, nanoseconds.
    offset_ns: i128,
}

impl WallClock {
    /// Reads both clocks now (call once per batch of events: the offset
    /// moves when the wall clock is stepped).
    pub fn now() -> WallClock {
        WallClock {
            offset_ns: realtime_ns() - i128::from(monotonic_ns()),
        }
    }

    pub fn wall(&self, mono_ns: u64) -> DateTime<Utc> {
        let ns = i128::from(mono_ns) + self.offset_ns;
        let secs = ns.div_euclid(1_000_000_000) as i64;
        let nanos = ns.rem_euclid(1_000_000_000) as u32;
        DateTime::from_timestamp(secs, nanos).unwrap_or_default()
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

fn realtime_ns() -> i128 {
    clock_ns(libc::CLOCK_REALTIME)
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Ports where a refused or failed connection counts as a TLS failure even
/// though no TLS byte was exchanged.
#[derive(Clone, Debug)]
pub struct TlsPorts {
    ports: std::collections::BTreeSet<u16>,
    /// Of those, the ones learned from local servers' ServerHellos.
    learned: std::collections::BTreeSet<u16>,
}

impl TlsPorts {
    /// Well-known TLS ports (IANA) plus common TLS service ports.
    pub const WELL_KNOWN: &'static [u16] = &[
        443, 465, 563, 636, 853, 989, 990, 992, 993, 994, 995, 2376, 4443, 5061, 5986, 6443, 8443,
        8883, 9443, 10250,
    ];

    pub fn new(extra: impl IntoIterator<Item = u16>) -> TlsPorts {
        TlsPorts {
            ports: Self::WELL_KNOWN.iter().copied().chain(extra).collect(),
            learned: std::collections::BTreeSet::new(),
        }
    }

    /// Ports learned from local servers' ServerHellos (kept across
    /// restarts by `diagnosis::learned`).
    pub fn learned(&self) -> Vec<u16> {
        self.learned.iter().copied().collect()
    }

    pub fn add(&mut self, port: u16) {
        self.ports.insert(port);
    }

    pub fn contains(&self, port: u16) -> bool {
        self.ports.contains(&port)
    }
}

impl Default for TlsPorts {
    fn default() -> Self {
        TlsPorts::new([])
    }
}

/// Ports that host state found not to serve TLS (shared with the diagnosis
/// thread), so that plain traffic stops being offered for confirmation.
#[derive(Debug, Default)]
pub struct PlainPorts {
    ports: std::sync::Mutex<HashMap<u16, std::time::Instant>>,
}

/// How long a "not TLS" verdict on a port stands (a server may be
/// reconfigured).
const PLAIN_PORT_TTL: Duration = Duration::from_secs(60);

impl PlainPorts {
    pub fn mark(&self, port: u16) {
        if let Ok(mut ports) = self.ports.lock() {
            ports.insert(port, std::time::Instant::now());
        }
    }

    pub fn contains(&self, port: u16) -> bool {
        let Ok(mut ports) = self.ports.lock() else {
            return false;
        };
        match ports.get(&port) {
            Some(at) if at.elapsed() < PLAIN_PORT_TTL => true,
            Some(_) => {
                ports.remove(&port);
                false
            }
            None => false,
        }
    }
}

/// Timing and size limits of assembly.
#[derive(Clone, Debug)]
pub struct AssemblyConfig {
    /// A handshake that makes no progress for this long is reported stalled.
    pub stall_timeout: Duration,
    /// A connect with no answer to its SYN for this long is concluded
    /// (longer than the kernel's own SYN retries, whose end says timed out).
    pub connect_timeout: Duration,
    /// After a completed handshake, how long to watch for a late rejection.
    pub settle: Duration,
    /// After a failure, how long to wait for the alert and close that follow.
    pub linger: Duration,
    /// After `close`, how long to wait for the last TCP state changes.
    pub close_linger: Duration,
    /// Most connections followed at once; more are counted and not followed.
    pub max_connections: usize,
}

impl Default for AssemblyConfig {
    fn default() -> Self {
        AssemblyConfig {
            stall_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(150),
            settle: Duration::from_millis(1500),
            linger: Duration::from_millis(300),
            close_linger: Duration::from_millis(50),
            max_connections: 65536,
        }
    }
}

/// What assembly counted instead of reporting.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AssemblyStats {
    /// Connections that never exchanged a TLS byte and involved no OpenSSL
    /// call (plain HTTP, databases, health checks).
    pub not_tls: u64,
    /// Connections whose client sent nothing before closing (TCP health
    /// checks, port probes): no handshake was attempted.
    pub empty: u64,
    /// Failed connects to ports host state recently found not to serve TLS.
    pub connect_failures_not_tls: u64,
    /// Connections not followed because `max_connections` was reached.
    pub over_capacity: u64,
    /// Events for sockets the agent does not follow (opened before it started).
    pub untracked_events: u64,
    /// Connections that exchanged only non-TLS bytes, or whose connect
    /// failed, to a port not known either way, offered to host state to
    /// confirm whether their port serves TLS.
    pub tentative: u64,
    /// TLS ports learned from local servers' ServerHellos.
    pub learned_tls_ports: u64,
    /// Successful handshakes.
    pub successes: u64,
    /// Of those, the ones only counted, by role: no outcome was built for
    /// them (no `--show-success`, not sampled for export).
    pub successes_counted_only: RoleCounts,
    /// Failed handshakes.
    pub failures: u64,
    /// OpenSSL errors raised outside a followed call (inside `SSL_read`,
    /// say) tied to their thread's connection.
    pub openssl_outside_attributed: u64,
    /// Such errors with no connection to tie them to (no recent handshake
    /// I/O on that thread, or a server thread whose handshakes all run
    /// inside followed calls): counted, not reported.
    pub openssl_outside_unattributed: u64,
}

/// A count per role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RoleCounts {
    pub client: u64,
    pub server: u64,
}

impl RoleCounts {
    fn bump(&mut self, role: Role) {
        match role {
            Role::Client => self.client += 1,
            Role::Server => self.server += 1,
        }
    }
}

/// Decides from a ClientHello random (hex) and a role whether a success is
/// sampled.
pub type SampleSuccess = std::sync::Arc<dyn Fn(&str, Role) -> bool + Send + Sync>;

/// Which successful handshakes become outcomes. The others are only
/// counted: building an outcome (endpoints, names, facts) and handing it to
/// the sink thread is most of what a handshake costs the agent, and a
/// success is neither journaled nor diagnosed.
#[derive(Clone, Default)]
pub struct SuccessPolicy {
    /// Every success (`--show-success`, `agent diagnose --watch`).
    pub all: bool,
    /// Successes this returns true for, given the ClientHello random (hex)
    /// and the role: OTLP success sampling, decided as the exporter does.
    pub sample: Option<SampleSuccess>,
}

impl SuccessPolicy {
    fn wants(&self, conn: &Conn) -> bool {
        if self.all || may_fail_after_handshake(conn.wire.facts()) {
            return true;
        }
        let Some(sample) = &self.sample else {
            return false;
        };
        conn.wire
            .facts()
            .client_hello
            .as_ref()
            .is_some_and(|ch| sample(&ch.random, conn.role))
    }
}

impl std::fmt::Debug for SuccessPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SuccessPolicy")
            .field("all", &self.all)
            .field("sampled", &self.sample.is_some())
            .finish()
    }
}

type Addr = (IpAddr, u16);
/// (local, remote) of one end.
type Tuple = (Addr, Addr);

/// The recent endpoints of local connections, to name both processes of a
/// handshake that stays on this host.
struct TupleIndex {
    /// Tuple -> (pid, comm, when indexed).
    by_tuple: HashMap<Tuple, (u32, String, u64)>,
    order: VecDeque<(Tuple, u64)>,
}

const TUPLE_TTL_NS: u64 = 30_000_000_000;
const TUPLE_MAX: usize = 65536;

impl TupleIndex {
    fn new() -> Self {
        TupleIndex {
            by_tuple: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn insert(
        &mut self,
        local: (IpAddr, u16),
        remote: (IpAddr, u16),
        pid: u32,
        comm: &str,
        now: u64,
    ) {
        let key = (local, remote);
        self.by_tuple.insert(key, (pid, comm.to_string(), now));
        self.order.push_back((key, now));
        while self.order.len() > TUPLE_MAX {
            self.pop_oldest();
        }
    }

    fn expire(&mut self, now: u64) {
        while self
            .order
            .front()
            .is_some_and(|(_, t)| now.saturating_sub(*t) > TUPLE_TTL_NS)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((key, t)) = self.order.pop_front()
            && self.by_tuple.get(&key).is_some_and(|(_, _, at)| *at == t)
        {
            self.by_tuple.remove(&key);
        }
    }

    /// The local process at the other end of (local, remote).
    fn peer(&self, local: (IpAddr, u16), remote: (IpAddr, u16)) -> Option<(u32, String)> {
        self.by_tuple
            .get(&(remote, local))
            .map(|(pid, comm, _)| (*pid, comm.clone()))
    }
}

/// The connection table.
pub struct Assembler {
    config: AssemblyConfig,
    tls_ports: TlsPorts,
    plain_ports: std::sync::Arc<PlainPorts>,
    open: HashMap<u64, Conn>,
    /// The keys of `open` by process, so that an exit touches only its own.
    open_by_tgid: HashMap<u32, HashSet<u64>>,
    /// Sockets of exited processes, for the kernel to forget (handed over
    /// by the next [`Assembler::tick`]).
    exited_keys: Vec<u64>,
    /// Closed by their process, waiting `close_linger`, keyed by (socket,
    /// owner): the kernel reuses a freed socket's address at once.
    closing: HashMap<(u64, u64), (Conn, u64)>,
    /// TCP state events that arrived before their connect/accept, by socket.
    early_states: HashMap<u64, Vec<SockStateEvent>>,
    tuples: TupleIndex,
    processes: ProcessCache,
    /// The connection each thread last did handshake I/O on, and when: an
    /// OpenSSL error raised outside a followed call belongs to it.
    thread_conn: HashMap<u32, (u64, u64)>,
    stats: AssemblyStats,
    success_policy: SuccessPolicy,
    host: Option<String>,
    next_id: u64,
}

/// Sockets userspace stopped following; the kernel should forget them too.
pub type Untracked = Vec<u64>;

impl Assembler {
    pub fn new(
        config: AssemblyConfig,
        tls_ports: TlsPorts,
        plain_ports: std::sync::Arc<PlainPorts>,
    ) -> Assembler {
        Assembler {
            config,
            tls_ports,
            plain_ports,
            open: HashMap::new(),
            open_by_tgid: HashMap::new(),
            exited_keys: Vec::new(),
            closing: HashMap::new(),
            early_states: HashMap::new(),
            tuples: TupleIndex::new(),
            processes: ProcessCache::default(),
            thread_conn: HashMap::new(),
            stats: AssemblyStats::default(),
            success_policy: SuccessPolicy::default(),
            host: hostname(),
            next_id: 0,
        }
    }

    /// Which successes become outcomes (default: none, only counted).
    pub fn set_success_policy(&mut self, policy: SuccessPolicy) {
        self.success_policy = policy;
    }

    pub fn stats(&self) -> &AssemblyStats {
        &self.stats
    }

    pub fn tls_ports_mut(&mut self) -> &mut TlsPorts {
        &mut self.tls_ports
    }

    /// Connections currently followed.
    pub fn open_connections(&self) -> usize {
        self.open.len() + self.closing.len()
    }

    /// Applies one kernel event; finished outcomes are appended to `out`.
    pub fn on_event(
        &mut self,
        event: &KernelEvent,
        clock: &WallClock,
        out: &mut Vec<HandshakeOutcome>,
    ) {
        match event {
            KernelEvent::Connect(ev) => self.on_connect(ev, clock, out),
            KernelEvent::Accept(ev) => self.on_accept(ev, clock, out),
            KernelEvent::SockState(ev) => self.on_state(ev, clock),
            KernelEvent::Data(d) => {
                let key = sock_key(d.header.tgid, d.fd);
                match self.open.get_mut(&key) {
                    Some(conn) => {
                        conn.on_data(d, clock);
                        self.note_thread_io(d.header.tid, key, d.header.ts_ns);
                    }
                    None => self.stats.untracked_events += 1,
                }
            }
            KernelEvent::Ssl(ev) if SslFunc::from_u8(ev.func) == Some(SslFunc::Outside) => {
                match self.outside_conn(ev) {
                    Some(conn) => {
                        conn.on_ssl(ev, clock);
                        self.stats.openssl_outside_attributed += 1;
                    }
                    None => self.stats.openssl_outside_unattributed += 1,
                }
            }
            KernelEvent::Ssl(ev) => {
                let conn = (ev.fd >= 0)
                    .then(|| self.open.get_mut(&sock_key(ev.header.tgid, ev.fd)))
                    .flatten();
                match conn {
                    Some(conn) => conn.on_ssl(ev, clock),
                    None => self.stats.untracked_events += 1,
                }
            }
            KernelEvent::Close(ev) => {
                if let Some(mut conn) = self.open_remove(sock_key(ev.header.tgid, ev.fd)) {
                    conn.closed = true;
                    conn.socket
                        .closed_by
                        .get_or_insert_with(|| "local".to_string());
                    conn.last_ns = conn.last_ns.max(ev.header.ts_ns);
                    self.start_closing(conn, ev.header.ts_ns, clock, out);
                }
            }
            KernelEvent::Exec(ev) => self.processes.forget(ev.header.tgid),
            KernelEvent::Exit(ev) => {
                let tgid = ev.header.tgid;
                let keys = self.open_by_tgid.remove(&tgid).unwrap_or_default();
                for key in keys {
                    if let Some(mut conn) = self.open.remove(&key) {
                        conn.closed = true;
                        conn.socket
                            .closed_by
                            .get_or_insert_with(|| "local".to_string());
                        self.exited_keys.push(key);
                        self.start_closing(conn, ev.header.ts_ns, clock, out);
                    }
                }
                self.processes.forget(tgid);
            }
        }
    }

    /// Adds an open connection under `key`.
    fn open_insert(&mut self, key: u64, conn: Conn) {
        self.open_by_tgid
            .entry((key >> 32) as u32)
            .or_default()
            .insert(key);
        self.open.insert(key, conn);
    }

    /// Removes the open connection under `key`.
    fn open_remove(&mut self, key: u64) -> Option<Conn> {
        let conn = self.open.remove(&key)?;
        let tgid = (key >> 32) as u32;
        if let Some(keys) = self.open_by_tgid.get_mut(&tgid) {
            keys.remove(&key);
            if keys.is_empty() {
                self.open_by_tgid.remove(&tgid);
            }
        }
        Some(conn)
    }

    fn note_thread_io(&mut self, tid: u32, key: u64, ts: u64) {
        // Bounded like the process cache: cheap to refill.
        if self.thread_conn.len() >= self.config.max_connections {
            self.thread_conn.clear();
        }
        self.thread_conn.insert(tid, (key, ts));
    }

    /// The connection an OpenSSL error raised outside a followed call belongs
    /// to: the one its thread did handshake I/O on within the last
    /// `OUTSIDE_WINDOW_NS`. Not a server connection whose handshake ran inside
    /// followed calls: a server thread (nginx) serves many connections, and
    /// its errors outside those calls come from established ones.
    fn outside_conn(&mut self, ev: &SslEvent) -> Option<&mut Conn> {
        let &(key, at) = self.thread_conn.get(&ev.header.tid)?;
        if ev.header.ts_ns.saturating_sub(at) > OUTSIDE_WINDOW_NS {
            return None;
        }
        self.open
            .get_mut(&key)
            .filter(|conn| !(conn.ssl_seen && conn.role == Role::Server))
    }

    fn start_closing(
        &mut self,
        conn: Conn,
        closed_at: u64,
        clock: &WallClock,
        out: &mut Vec<HandshakeOutcome>,
    ) {
        let key = (conn.sk, sock_key(conn.tgid, conn.fd));
        if let Some((old, _)) = self.closing.insert(key, (conn, closed_at))
            && let Some(o) = self.conclude(old, clock)
        {
            out.push(o);
        }
    }

    fn process(&mut self, tgid: u32, comm: &[u8]) -> ProcessInfo {
        self.processes.get(tgid, &c_str(comm))
    }

    fn on_connect(&mut self, ev: &ConnEvent, clock: &WallClock, out: &mut Vec<HandshakeOutcome>) {
        let tgid = ev.header.tgid;
        let ts = ev.header.ts_ns;
        let process = self.process(tgid, &ev.comm);
        let mut conn = Conn::new(tgid, ev.fd, Role::Client, ev.sk, ts, process);
        conn.remote = endpoint_addr(&ev.remote);
        if let Some(states) = self.early_states.remove(&ev.sk) {
            // The kernel reuses a freed socket's address at once: states a
            // closed socket left under the same address (its last ones can
            // come after its close was concluded) are not this connection's.
            // Keep this owner's, from the transition that ended its own
            // SYN_SENT (the first state a connect emits) on.
            let mine: Vec<&SockStateEvent> = states
                .iter()
                .filter(|s| s.owner_tgid == tgid && s.owner_fd == ev.fd)
                .collect();
            if let Some(start) = mine.iter().rposition(|s| s.old_state == TCP_SYN_SENT) {
                for s in &mine[start..] {
                    conn.on_state(s, clock);
                }
            }
        }
        if ev.ret < 0 && ev.ret != -EINPROGRESS {
            conn.fail_connect(-ev.ret, ts);
            conn.closed = true;
            let port = conn.remote.map(|(_, p)| p).unwrap_or(0);
            if self.tls_ports.contains(port) {
                out.push(self.finish(conn, clock));
            } else if !self.plain_ports.contains(port) {
                out.push(self.finish_tentative(conn, clock));
            } else {
                self.stats.connect_failures_not_tls += 1;
            }
            return;
        }
        self.insert(conn, clock, out);
    }

    fn on_accept(&mut self, ev: &ConnEvent, clock: &WallClock, out: &mut Vec<HandshakeOutcome>) {
        let tgid = ev.header.tgid;
        let process = self.process(tgid, &ev.comm);
        let mut conn = Conn::new(tgid, ev.fd, Role::Server, ev.sk, ev.header.ts_ns, process);
        conn.local = endpoint_addr(&ev.local).filter(|(_, port)| *port != 0);
        conn.remote = endpoint_addr(&ev.remote);
        conn.established = true;
        self.insert(conn, clock, out);
    }

    fn insert(&mut self, conn: Conn, clock: &WallClock, out: &mut Vec<HandshakeOutcome>) {
        let key = sock_key(conn.tgid, conn.fd);
        // An fd reused without a close we saw: the old connection is over.
        if let Some(old) = self.open_remove(key)
            && let Some(o) = self.conclude(old, clock)
        {
            out.push(o);
        }
        if self.open.len() + self.closing.len() >= self.config.max_connections {
            self.stats.over_capacity += 1;
            return;
        }
        let mut conn = conn;
        index_live(&mut self.tuples, &mut conn);
        self.open_insert(key, conn);
    }

    fn on_state(&mut self, ev: &SockStateEvent, clock: &WallClock) {
        let key = sock_key(ev.owner_tgid, ev.owner_fd);
        if let Some(conn) = self.open.get_mut(&key).filter(|c| c.sk == ev.sk) {
            conn.on_state(ev, clock);
            index_live(&mut self.tuples, conn);
        } else if let Some((conn, _)) = self.closing.get_mut(&(ev.sk, key)) {
            conn.on_state(ev, clock);
        } else {
            // Before its connect event (the SYN was answered inside connect).
            let early = self.early_states.entry(ev.sk).or_default();
            // A connect's first state, or another owner at this socket
            // address: what is kept there was a previous socket's.
            let reused = ev.old_state == TCP_SYN_SENT
                || early
                    .first()
                    .is_some_and(|s| (s.owner_tgid, s.owner_fd) != (ev.owner_tgid, ev.owner_fd));
            if reused {
                early.clear();
            }
            if early.len() < 8 {
                early.push(*ev);
            }
        }
    }

    /// Finishes what is due at `now` (monotonic ns). Returns the sockets
    /// userspace stopped following without a close.
    pub fn tick(
        &mut self,
        now: u64,
        clock: &WallClock,
        out: &mut Vec<HandshakeOutcome>,
    ) -> Untracked {
        let close_linger = self.config.close_linger.as_nanos() as u64;
        let due: Vec<(u64, u64)> = self
            .closing
            .iter()
            .filter(|(_, (_, closed_at))| now.saturating_sub(*closed_at) >= close_linger)
            .map(|(key, _)| *key)
            .collect();
        for key in due {
            if let Some((conn, _)) = self.closing.remove(&key)
                && let Some(o) = self.conclude(conn, clock)
            {
                out.push(o);
            }
        }

        let linger = self.config.linger.as_nanos() as u64;
        let settle = self.config.settle.as_nanos() as u64;
        let stall = self.config.stall_timeout.as_nanos() as u64;
        let connect_stall = self
            .config
            .connect_timeout
            .max(self.config.stall_timeout)
            .as_nanos() as u64;
        let mut untracked = std::mem::take(&mut self.exited_keys);
        let keys: Vec<u64> = self.open.keys().copied().collect();
        for key in keys {
            let Some(conn) = self.open.get(&key) else {
                continue;
            };
            let due = match conn.decision {
                Some((Decision::Failed, at)) => now.saturating_sub(at) >= linger,
                Some((Decision::Completed, at)) => now.saturating_sub(at) >= settle,
                // The socket is over: only its process's late report of
                // the handshake (OpenSSL's errors) can still come.
                None if conn.socket_over_at.is_some() => conn
                    .socket_over_at
                    .is_some_and(|at| now.saturating_sub(at) >= linger),
                // The kernel gives up on an unanswered SYN after about two
                // minutes (tcp_syn_retries): its CLOSE says timed out.
                None if conn.connecting() => now.saturating_sub(conn.last_ns) >= connect_stall,
                None => now.saturating_sub(conn.last_ns) >= stall,
            };
            if !due {
                continue;
            }
            if let Some(mut conn) = self.open_remove(key) {
                // Undecided and still open: stalled. A socket that is
                // over (reset, closed) says why on its own.
                if conn.decision.is_none() && conn.socket_over_at.is_none() {
                    conn.socket.stalled = true;
                }
                untracked.push(key);
                if let Some(o) = self.conclude(conn, clock) {
                    out.push(o);
                }
            }
        }
        self.tuples.expire(now);
        self.early_states.retain(|_, states| {
            states
                .first()
                .is_some_and(|s| now.saturating_sub(s.header.ts_ns) < stall)
        });
        untracked
    }

    /// Everything still open, concluded now (shutdown).
    pub fn drain(&mut self, clock: &WallClock, out: &mut Vec<HandshakeOutcome>) {
        self.open_by_tgid.clear();
        let conns: Vec<Conn> = self
            .open
            .drain()
            .map(|(_, c)| c)
            .chain(self.closing.drain().map(|(_, (c, _))| c))
            .collect();
        for conn in conns {
            if let Some(o) = self.conclude(conn, clock) {
                out.push(o);
            }
        }
    }

    /// An outcome for a connection that involved TLS; `None` otherwise.
    fn conclude(&mut self, conn: Conn, clock: &WallClock) -> Option<HandshakeOutcome> {
        if let (Some(local), Some(remote)) = (conn.local, conn.remote) {
            self.tuples
                .insert(local, remote, conn.tgid, &conn.process.comm, conn.last_ns);
        }
        let client_bytes = match conn.role {
            Role::Client => conn.socket.bytes_sent,
            Role::Server => conn.socket.bytes_received,
        };
        if client_bytes == 0 && !conn.connect_failed && !conn.socket.stalled {
            self.stats.empty += 1;
            return None;
        }
        let facts = conn.wire.facts();
        let spoke_tls = facts.client_hello.is_some()
            || facts.server_hello.is_some()
            || !facts.alerts.is_empty()
            || !facts.messages.is_empty();
        let server_port = match conn.role {
            Role::Client => conn.remote.map(|(_, p)| p),
            Role::Server => conn.local.map(|(_, p)| p),
        };
        // A local server that answered with a ServerHello serves TLS on that
        // port: a later plain-HTTP attempt there is a TLS failure.
        if conn.role == Role::Server
            && facts.server_hello.is_some()
            && let Some(port) = server_port
            && !self.tls_ports.contains(port)
        {
            self.tls_ports.add(port);
            self.tls_ports.learned.insert(port);
            self.stats.learned_tls_ports += 1;
        }
        let tls_port = server_port.is_some_and(|p| self.tls_ports.contains(p));
        let involved_tls = spoke_tls
            || conn.ssl_seen
            || !conn.openssl.errors.is_empty()
            || (tls_port && facts.non_tls.is_some());
        if involved_tls || conn.connect_failed && tls_port {
            return self.finish_or_count(conn, clock);
        }
        // Only non-TLS bytes, or a failed connect, to a port not known either
        // way: plain HTTP to a TLS port that never reached OpenSSL (nginx
        // answers it itself), a refused connect to a TLS port a config names
        // (its server down, or bound to another address), or just plain
        // traffic. Host state decides.
        let undecided = server_port.is_some_and(|p| !self.plain_ports.contains(p));
        if (facts.non_tls.is_some() || conn.connect_failed) && undecided {
            return Some(self.finish_tentative(conn, clock));
        }
        if conn.connect_failed {
            self.stats.connect_failures_not_tls += 1;
        } else {
            self.stats.not_tls += 1;
        }
        None
    }

    /// An outcome host state must confirm: a failure only if its port serves
    /// TLS (see [`HandshakeOutcome::tentative`]).
    fn finish_tentative(&mut self, conn: Conn, clock: &WallClock) -> HandshakeOutcome {
        self.stats.tentative += 1;
        let mut outcome = self.finish(conn, clock);
        outcome.tentative = true;
        outcome
    }

    /// A failure's outcome; a success's only when the success policy wants
    /// it, else the success is counted.
    fn finish_or_count(&mut self, conn: Conn, clock: &WallClock) -> Option<HandshakeOutcome> {
        if !conn_failed(&conn) && !self.success_policy.wants(&conn) {
            self.stats.successes += 1;
            self.stats.successes_counted_only.bump(conn.role);
            return None;
        }
        Some(self.finish(conn, clock))
    }

    fn finish(&mut self, conn: Conn, clock: &WallClock) -> HandshakeOutcome {
        let failed = conn_failed(&conn);
        let result = if failed {
            self.stats.failures += 1;
            HandshakeResult::Failure
        } else {
            self.stats.successes += 1;
            HandshakeResult::Success
        };
        let end_ns = conn
            .decision
            .map(|(_, at)| at)
            .unwrap_or(conn.last_ns)
            .max(conn.start_ns);
        let local_ep = |addr: Option<(IpAddr, u16)>, p: &ProcessInfo| Endpoint {
            ip: addr.map(|a| a.0),
            port: addr.map(|a| a.1),
            pid: Some(p.pid),
            comm: Some(p.comm.clone()),
            exe: p.exe.clone(),
            container_id: p.container_id.clone(),
            container_runtime: p.container_runtime.clone(),
            k8s: pod_of(p),
            cgroup: p.cgroup.clone(),
        };
        let mut peer_ep = Endpoint {
            ip: conn.remote.map(|a| a.0),
            port: conn.remote.map(|a| a.1),
            ..Default::default()
        };
        if let (Some(local), Some(remote)) = (conn.local, conn.remote)
            && let Some((pid, comm)) = self.tuples.peer(local, remote)
        {
            peer_ep.pid = Some(pid);
            peer_ep.comm = Some(comm);
            // The peer's container, when its process is already cached (it
            // is, having a connection of its own): no procfs read here.
            if let Some(p) = self.processes.cached(pid) {
                peer_ep.container_id = p.container_id.clone();
                peer_ep.container_runtime = p.container_runtime.clone();
                peer_ep.k8s = pod_of(p);
            }
        }
        let me = local_ep(conn.local, &conn.process);
        let (client, server) = match conn.role {
            Role::Client => (me, peer_ep),
            Role::Server => (peer_ep, me),
        };
        self.next_id += 1;
        let time = conn.wall_start(clock);
        let tls: TlsFacts = conn.wire.into_facts();
        HandshakeOutcome {
            id: format!("{:x}-{:x}-{}", conn.start_ns, conn.tgid, self.next_id),
            time,
            end_time: clock.wall(end_ns),
            role: conn.role,
            result,
            cause: crate::diagnosis::Cause::Unknown,
            client,
            server,
            tls,
            openssl: conn.openssl,
            socket: conn.socket,
            diagnosis: Diagnosis::undiagnosed(),
            host: self.host.clone(),
            tentative: false,
        }
    }
}

/// Whether a completed handshake may still have failed one layer up, which
/// host state decides on the sink thread (see
/// `diagnosis::rules::after_handshake::worth_checking`, whose conditions
/// this only loosens: the client asked for a name and sent no application
/// data, or a requested client certificate came back empty). Such successes
/// always become outcomes.
fn may_fail_after_handshake(tls: &TlsFacts) -> bool {
    let missing_certificate = tls.certificate_requested && tls.client_certificate_count == Some(0);
    if missing_certificate {
        return true;
    }
    if tls.sni.is_none() {
        return false;
    }
    let client_data = tls
        .encrypted_records
        .iter()
        .filter(|r| r.sender == Role::Client && r.content_type == 23 && !r.probable_alert)
        .count();
    let tls13 = tls.negotiated_version.as_deref() == Some("TLS 1.3");
    let sent_data = if tls13 {
        client_data > 1
    } else {
        client_data > 0
    };
    !sent_data
}

/// Whether a concluded connection's handshake failed: any failure seen, or
/// no completion.
fn conn_failed(conn: &Conn) -> bool {
    let completed =
        conn.ssl_completed || conn.decision.is_some_and(|(d, _)| d == Decision::Completed);
    conn.connect_failed
        || conn.ssl_failed
        || conn.decision.is_some_and(|(d, _)| d == Decision::Failed)
        || !completed
}

/// Makes a connection's process findable by its peer as soon as both
/// endpoints are known (the peer may finish first).
fn index_live(tuples: &mut TupleIndex, conn: &mut Conn) {
    if conn.indexed {
        return;
    }
    if let (Some(local), Some(remote)) = (conn.local, conn.remote) {
        tuples.insert(local, remote, conn.tgid, &conn.process.comm, conn.last_ns);
        conn.indexed = true;
    }
}

/// The pod a process's cgroup names; names come later from the pod index.
fn pod_of(p: &ProcessInfo) -> Option<crate::outcome::K8sPod> {
    p.pod_uid.as_ref().map(|uid| crate::outcome::K8sPod {
        pod_uid: Some(uid.clone()),
        ..Default::default()
    })
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use agent_ebpf::{AF_INET, ConnEvent, Endpoint as Ep, EventHeader, TASK_COMM_LEN, tcp_state};

    use super::*;

    const CURL: u32 = 4_000_001;

    fn header(kind: u32, ts_ns: u64) -> EventHeader {
        EventHeader {
            kind,
            _pad: 0,
            ts_ns,
            tid: CURL,
            tgid: CURL,
        }
    }

    fn v4(addr: [u8; 4], port: u16) -> Ep {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&addr);
        Ep {
            family: AF_INET,
            port,
            addr: bytes,
        }
    }

    fn comm(name: &str) -> [u8; TASK_COMM_LEN] {
        let mut c = [0u8; TASK_COMM_LEN];
        c[..name.len()].copy_from_slice(name.as_bytes());
        c
    }

    /// A blocking `connect` to 127.0.0.1:port that returned `ret`.
    fn connect(port: u16, ret: i32) -> KernelEvent<'static> {
        KernelEvent::Connect(ConnEvent {
            header: header(1, 1_000),
            fd: 5,
            ret,
            sk: 0xffff_0001,
            local: Ep::default(),
            remote: v4([127, 0, 0, 1], port),
            listen_fd: -1,
            _pad: 0,
            comm: comm("curl"),
        })
    }

    fn assembler(plain: Arc<PlainPorts>) -> Assembler {
        Assembler::new(AssemblyConfig::default(), TlsPorts::default(), plain)
    }

    #[test]
    fn a_refused_connect_to_an_unknown_port_is_left_to_host_state() {
        let plain = Arc::new(PlainPorts::default());
        let mut a = assembler(plain.clone());
        let clock = WallClock::now();
        let mut out = Vec::new();
        // A port only a config (written at any time) may name as TLS.
        a.on_event(&connect(38_443, -libc::ECONNREFUSED), &clock, &mut out);
        assert_eq!(out.len(), 1);
        let o = &out[0];
        assert!(o.tentative, "host state decides whether 38443 serves TLS");
        assert_eq!(o.socket.connect_error.as_deref(), Some("ECONNREFUSED"));
        assert_eq!(o.server.port, Some(38_443));
        assert_eq!(a.stats().tentative, 1);

        // Once host state said the port is plain, its refusals are counted.
        plain.mark(38_443);
        out.clear();
        a.on_event(&connect(38_443, -libc::ECONNREFUSED), &clock, &mut out);
        assert!(out.is_empty());
        assert_eq!(a.stats().connect_failures_not_tls, 1);

        // A well-known TLS port needs no confirmation.
        a.on_event(&connect(443, -libc::ECONNREFUSED), &clock, &mut out);
        assert_eq!(out.len(), 1);
        assert!(!out[0].tentative);
    }

    fn state(
        owner_fd: i32,
        owner_tgid: u32,
        old: u32,
        new: u32,
        local_port: u16,
        ts: u64,
    ) -> KernelEvent<'static> {
        KernelEvent::SockState(SockStateEvent {
            header: header(3, ts),
            sk: 0xffff_0001,
            owner_tgid,
            owner_fd,
            old_state: old,
            new_state: new,
            local: v4([127, 0, 0, 1], local_port),
            remote: v4([127, 0, 0, 1], 443),
        })
    }

    #[test]
    fn states_a_previous_socket_left_at_the_same_address_are_not_the_new_ones() {
        // Seen end to end: a closed socket's last states (CLOSE_WAIT ->
        // LAST_ACK -> CLOSE) arrived after its close was concluded and were
        // kept by socket address; curl's new socket got that address and
        // inherited them -- with the old local port, so its peer could not
        // be matched to nginx's side of the connection.
        let mut a = assembler(Arc::new(PlainPorts::default()));
        let clock = WallClock::now();
        let mut out = Vec::new();
        for (old, new) in [(8, 9), (9, 7)] {
            a.on_event(&state(9, 77, old, new, 42_931, 500), &clock, &mut out);
        }
        // More leftovers than the per-address bound keeps.
        for fd in 10..20 {
            a.on_event(&state(fd, 78, 1, 7, 42_932, 550), &clock, &mut out);
        }
        // The same owner's earlier life at this address, then this connect's
        // SYN_SENT -> CLOSE (refused inside a blocking connect).
        a.on_event(&state(5, CURL, 1, 7, 40_000, 600), &clock, &mut out);
        a.on_event(&state(5, CURL, 2, 7, 36_864, 900), &clock, &mut out);
        a.on_event(&connect(443, -libc::ECONNREFUSED), &clock, &mut out);
        assert_eq!(out.len(), 1);
        let o = &out[0];
        assert_eq!(o.client.port, Some(36_864), "{o:#?}");
        let states: Vec<(&str, &str)> = o
            .socket
            .tcp_states
            .iter()
            .map(|s| (s.from.as_str(), s.to.as_str()))
            .collect();
        assert_eq!(states, [("SYN_SENT", "CLOSE")]);
    }

    #[test]
    fn a_nonblocking_connect_refused_by_a_reset_is_left_to_host_state() {
        let mut a = assembler(Arc::new(PlainPorts::default()));
        let clock = WallClock::now();
        let mut out = Vec::new();
        a.on_event(&connect(38_444, -EINPROGRESS), &clock, &mut out);
        assert!(out.is_empty());
        // SYN_SENT -> CLOSE: the SYN was answered with a reset.
        a.on_event(
            &KernelEvent::SockState(SockStateEvent {
                header: header(3, 2_000),
                sk: 0xffff_0001,
                owner_tgid: CURL,
                owner_fd: 5,
                old_state: 2,
                new_state: 7,
                local: v4([127, 0, 0, 1], 51_000),
                remote: v4([127, 0, 0, 1], 38_444),
            }),
            &clock,
            &mut out,
        );
        a.on_event(
            &KernelEvent::Close(agent_ebpf::CloseEvent {
                header: header(5, 3_000),
                fd: 5,
                _pad: 0,
            }),
            &clock,
            &mut out,
        );
        a.tick(10_000_000_000, &clock, &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert!(out[0].tentative);
        assert_eq!(out[0].socket.connect_errno, Some(libc::ECONNREFUSED));
    }

    /// A TCP state change of curl's socket (fd 5) to 127.0.0.1:443.
    fn curl_state(old: u32, new: u32, ts: u64) -> KernelEvent<'static> {
        KernelEvent::SockState(SockStateEvent {
            header: header(3, ts),
            sk: 0xffff_0001,
            owner_tgid: CURL,
            owner_fd: 5,
            old_state: old,
            new_state: new,
            local: v4([127, 0, 0, 1], 51_000),
            remote: v4([127, 0, 0, 1], 443),
        })
    }

    #[test]
    fn a_connect_its_process_gave_up_on_timed_out_rather_than_was_refused() {
        // The socket mechanism's order: the close inside close(2) comes
        // before the SYN_SENT -> CLOSE it caused, 200 ms after the SYN.
        let mut a = assembler(Arc::new(PlainPorts::default()));
        let clock = WallClock::now();
        let mut out = Vec::new();
        a.on_event(&connect(443, -EINPROGRESS), &clock, &mut out);
        a.on_event(&close(200_000_000), &clock, &mut out);
        a.on_event(
            &curl_state(tcp_state::SYN_SENT, tcp_state::CLOSE, 200_000_100),
            &clock,
            &mut out,
        );
        a.tick(1_000_000_000, &clock, &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].socket.connect_errno, Some(libc::ETIMEDOUT));
    }

    #[test]
    fn a_connect_without_an_answer_waits_for_the_kernel_to_give_up() {
        let mut a = assembler(Arc::new(PlainPorts::default()));
        let clock = WallClock::now();
        let mut out = Vec::new();
        a.on_event(&connect(443, -EINPROGRESS), &clock, &mut out);
        // Past the stall timeout: still connecting, not concluded.
        a.tick(30_000_000_000, &clock, &mut out);
        assert!(out.is_empty(), "{out:#?}");
        assert_eq!(a.open_connections(), 1);
        // The kernel's SYN retries end in CLOSE: timed out.
        a.on_event(
            &curl_state(tcp_state::SYN_SENT, tcp_state::CLOSE, 127_000_000_000),
            &clock,
            &mut out,
        );
        a.tick(128_000_000_000, &clock, &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].socket.connect_errno, Some(libc::ETIMEDOUT));
        assert!(!out[0].socket.stalled);
    }

    #[test]
    fn a_reset_connection_is_concluded_without_waiting_for_its_close() {
        // The socket mechanism sees no close(2) of a socket that is already
        // in CLOSE: the reset ends it.
        let mut a = assembler(Arc::new(PlainPorts::default()));
        let clock = WallClock::now();
        let mut out = Vec::new();
        a.on_event(&connect(443, -EINPROGRESS), &clock, &mut out);
        a.on_event(
            &curl_state(tcp_state::SYN_SENT, tcp_state::ESTABLISHED, 2_000),
            &clock,
            &mut out,
        );
        a.on_event(&client_hello(3_000), &clock, &mut out);
        a.on_event(
            &curl_state(tcp_state::ESTABLISHED, tcp_state::CLOSE, 4_000),
            &clock,
            &mut out,
        );
        a.tick(100_000_000, &clock, &mut out);
        assert!(out.is_empty(), "waits a moment for OpenSSL's own verdict");
        a.tick(1_000_000_000, &clock, &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        let o = &out[0];
        assert_eq!(o.result, HandshakeResult::Failure);
        assert!(o.socket.reset_by_peer && !o.socket.stalled, "{o:#?}");
    }

    /// An error OpenSSL raised on `tid` outside a followed call (in
    /// `SSL_read`, which is not probed): certificate verify failed.
    fn outside_error(tid: u32, ts_ns: u64) -> KernelEvent<'static> {
        let none = agent_ebpf::SslError {
            lib: 0,
            reason: 0,
            line: 0,
            _pad: 0,
        };
        let mut errors = [none; agent_ebpf::MAX_SSL_ERRORS];
        errors[0] = agent_ebpf::SslError {
            lib: agent_ebpf::ERR_LIB_SSL,
            reason: 134,
            line: 0,
            _pad: 0,
        };
        KernelEvent::Ssl(Box::new(SslEvent {
            header: EventHeader {
                kind: 6,
                _pad: 0,
                ts_ns,
                tid,
                tgid: CURL,
            },
            ssl: 0,
            entry_ts_ns: ts_ns,
            fd: -1,
            ret: 0,
            func: SslFunc::Outside as u8,
            flags: 0,
            error_count: 1,
            _pad: 0,
            verify_result: 0,
            errors,
        }))
    }

    #[test]
    fn an_error_outside_a_followed_call_belongs_to_its_threads_connection() {
        let mut a = assembler(Arc::new(PlainPorts::default()));
        let clock = WallClock::now();
        let mut out = Vec::new();
        a.on_event(&connect(443, 0), &clock, &mut out);
        // The start of a ClientHello, written by curl's thread.
        a.on_event(
            &KernelEvent::Data(crate::capture::events::DataRecord {
                header: header(4, 2_000),
                fd: 5,
                direction: agent_ebpf::Direction::Egress,
                flags: 0,
                syscall: 0,
                stream_offset: 0,
                syscall_len: 5,
                bytes: &[0x16, 0x03, 0x01, 0x00, 0x40],
            }),
            &clock,
            &mut out,
        );
        // Another thread of the process, and a stale one, own nothing.
        a.on_event(&outside_error(CURL + 1, 3_000), &clock, &mut out);
        a.on_event(
            &outside_error(CURL, 3_000 + 5_000_000_000),
            &clock,
            &mut out,
        );
        assert_eq!(a.stats().openssl_outside_unattributed, 2);
        a.on_event(&outside_error(CURL, 4_000), &clock, &mut out);
        assert_eq!(a.stats().openssl_outside_attributed, 1);
        a.on_event(
            &KernelEvent::Close(agent_ebpf::CloseEvent {
                header: header(5, 5_000),
                fd: 5,
                _pad: 0,
            }),
            &clock,
            &mut out,
        );
        a.tick(10_000_000_000, &clock, &mut out);
        assert_eq!(out.len(), 1, "{:#?}", a.stats());
        let o = &out[0];
        assert_eq!(o.result, HandshakeResult::Failure, "{o:#?}");
        assert_eq!(o.openssl.errors.len(), 1);
        assert!(o.openssl.calls.is_empty(), "no followed call is invented");
    }

    /// A completed `SSL_connect` on curl's socket (fd 5).
    fn handshake_done(ts_ns: u64) -> KernelEvent<'static> {
        let none = agent_ebpf::SslError {
            lib: 0,
            reason: 0,
            line: 0,
            _pad: 0,
        };
        KernelEvent::Ssl(Box::new(SslEvent {
            header: header(6, ts_ns),
            ssl: 0x5511,
            entry_ts_ns: ts_ns,
            fd: 5,
            ret: 1,
            func: SslFunc::Connect as u8,
            flags: 0,
            error_count: 0,
            _pad: 0,
            verify_result: 0,
            errors: [none; agent_ebpf::MAX_SSL_ERRORS],
        }))
    }

    fn close(ts_ns: u64) -> KernelEvent<'static> {
        KernelEvent::Close(agent_ebpf::CloseEvent {
            header: header(5, ts_ns),
            fd: 5,
            _pad: 0,
        })
    }

    fn client_hello_start(ts_ns: u64) -> KernelEvent<'static> {
        KernelEvent::Data(crate::capture::events::DataRecord {
            header: header(4, ts_ns),
            fd: 5,
            direction: agent_ebpf::Direction::Egress,
            flags: 0,
            syscall: 0,
            stream_offset: 0,
            syscall_len: 5,
            bytes: &[0x16, 0x03, 0x01, 0x00, 0x40],
        })
    }

    /// A whole (minimal) TLS 1.2 ClientHello record: one suite, no
    /// extensions.
    const MINIMAL_CLIENT_HELLO: [u8; 50] = {
        let mut b = [0u8; 50];
        let head = [
            0x16, 0x03, 0x01, 0x00, 0x2d, 0x01, 0x00, 0x00, 0x29, 0x03, 0x03,
        ];
        let mut i = 0;
        while i < head.len() {
            b[i] = head[i];
            i += 1;
        }
        // 32 bytes of random, then: no session id, one suite, no compression.
        let tail = [0x00, 0x00, 0x02, 0xc0, 0x2f, 0x01, 0x00];
        let mut j = 0;
        while j < tail.len() {
            b[43 + j] = tail[j];
            j += 1;
        }
        b
    };

    /// curl's whole ClientHello in one write.
    fn client_hello(ts_ns: u64) -> KernelEvent<'static> {
        KernelEvent::Data(crate::capture::events::DataRecord {
            header: header(4, ts_ns),
            fd: 5,
            direction: agent_ebpf::Direction::Egress,
            flags: 0,
            syscall: 0,
            stream_offset: 0,
            syscall_len: MINIMAL_CLIENT_HELLO.len() as u32,
            bytes: &MINIMAL_CLIENT_HELLO,
        })
    }

    #[test]
    fn a_success_is_only_counted_unless_the_policy_wants_it() {
        for all in [false, true] {
            let mut a = assembler(Arc::new(PlainPorts::default()));
            a.set_success_policy(SuccessPolicy { all, sample: None });
            let clock = WallClock::now();
            let mut out = Vec::new();
            a.on_event(&connect(443, 0), &clock, &mut out);
            a.on_event(&client_hello_start(2_000), &clock, &mut out);
            a.on_event(&handshake_done(3_000), &clock, &mut out);
            a.on_event(&close(4_000), &clock, &mut out);
            a.tick(10_000_000_000, &clock, &mut out);
            assert_eq!(a.stats().successes, 1);
            if all {
                assert_eq!(out.len(), 1);
                assert_eq!(out[0].result, HandshakeResult::Success);
                assert_eq!(a.stats().successes_counted_only, RoleCounts::default());
            } else {
                assert!(out.is_empty(), "{out:#?}");
                assert_eq!(a.stats().successes_counted_only.client, 1);
            }
        }
    }

    #[test]
    fn a_success_that_may_have_failed_one_layer_up_becomes_an_outcome() {
        // The client asked for a name and left without a request: host
        // state must decide (see diagnosis::rules::after_handshake).
        let mut tls = TlsFacts {
            sni: Some("site.test".to_string()),
            ..TlsFacts::default()
        };
        assert!(may_fail_after_handshake(&tls));
        tls.negotiated_version = Some("TLS 1.2".to_string());
        tls.encrypted_records
            .push(crate::evidence::wire::EncryptedRecordFact {
                time: None,
                sender: Role::Client,
                content_type: 23,
                length: 100,
                probable_alert: false,
            });
        assert!(!may_fail_after_handshake(&tls), "the client sent a request");
        tls.certificate_requested = true;
        tls.client_certificate_count = Some(0);
        assert!(may_fail_after_handshake(&tls));
    }

    #[test]
    fn an_exit_concludes_and_untracks_only_its_own_sockets() {
        let mut a = assembler(Arc::new(PlainPorts::default()));
        let clock = WallClock::now();
        let mut out = Vec::new();
        a.on_event(&connect(443, 0), &clock, &mut out);
        let mut other = connect(443, 0);
        if let KernelEvent::Connect(ev) = &mut other {
            ev.header.tgid = CURL + 7;
            ev.sk = 0xffff_0002;
        }
        a.on_event(&other, &clock, &mut out);
        a.on_event(
            &KernelEvent::Exit(agent_ebpf::ProcEvent {
                header: header(8, 5_000),
                comm: comm("curl"),
            }),
            &clock,
            &mut out,
        );
        let untracked = a.tick(6_000, &clock, &mut out);
        assert_eq!(untracked, vec![sock_key(CURL, 5)]);
        assert_eq!(a.open.len(), 1, "the other process's socket stays open");
    }
}
