//! Assembly limits, counters, and which successes become outcomes.

use std::time::Duration;

use super::conn::Conn;
use super::may_fail_after_handshake;
use crate::outcome::Role;

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
    /// Events inside a held record that could not be decoded (the rest of
    /// the record is still read where it can be).
    pub undecodable_held_events: u64,
}

/// A count per role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RoleCounts {
    pub client: u64,
    pub server: u64,
}

impl RoleCounts {
    pub(super) fn bump(&mut self, role: Role) {
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
    pub(super) fn wants(&self, conn: &Conn) -> bool {
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
