//! Connection and handshake assembly: kernel events in, one
//! [`HandshakeOutcome`] per handshake end out.
//!
//! Connections are keyed by (tgid, fd) while open, and by their kernel socket
//! while closing (TCP state changes such as a RST can arrive after `close`).
//! An outcome is decided by the strongest evidence present: OpenSSL's own
//! verdict, then the wire (an alert, a non-TLS reply, both sides past the
//! handshake), then the socket (refused, reset, closed, stalled).

mod clock;
pub mod conn;
mod policy;
mod ports;
#[cfg(test)]
mod tests;
mod tuples;

pub use clock::{WallClock, monotonic_ns};
pub use policy::{AssemblyConfig, AssemblyStats, RoleCounts, SampleSuccess, SuccessPolicy};
pub use ports::{PlainPorts, TlsPorts};
use tuples::TupleIndex;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use agent_ebpf::{ConnEvent, SockStateEvent, SslEvent, SslFunc, sock_key};

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
            KernelEvent::Held(held) => {
                for event in held.events() {
                    match event {
                        Ok(event) => self.on_event(&event, clock, out),
                        Err(e) => {
                            self.stats.undecodable_held_events += 1;
                            tracing::debug!(error = %crate::text::Chain(&e), "undecodable held event");
                        }
                    }
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
            self.tls_ports.learn(port);
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
