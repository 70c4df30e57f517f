//! The host-state evidence relevant to one failure, gathered from the
//! listener, server-config, certificate, clock and log sources.

use serde::{Deserialize, Serialize};

use crate::evidence::certificates::ChainReport;
use crate::evidence::clock::ClockState;
use crate::evidence::listeners::{ListenCounters, Listener};
use crate::evidence::logs::LogLine;
use crate::evidence::server_config::{ConfigProblem, ServerBlock};

/// Host facts for one failure. Empty for a failure whose server is not on
/// this host (then only wire, OpenSSL and socket evidence count).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub clock: Option<ClockState>,
    /// The server is a process on this host.
    pub server_is_local: bool,
    /// Listening sockets on the server's port, on any address.
    pub listeners_on_port: Vec<Listener>,
    /// Server blocks whose `listen` names the server's port.
    pub blocks_on_port: Vec<ServerBlock>,
    /// The block that serves the requested name (SNI) on that port, by the
    /// server's own selection rules.
    pub selected_block: Option<ServerBlock>,
    /// True when no block names the SNI (or there was no SNI), so the
    /// selection fell back to the port's default block.
    pub selected_by_default: bool,
    /// The analysis of the certificate chain the selected block serves,
    /// checked for the SNI name.
    pub configured_chain: Option<ChainReport>,
    /// The analysis of the chain the wire showed (TLS 1.2), checked for the
    /// SNI name, against this host's trust store.
    pub wire_chain: Option<ChainReport>,
    /// The server's own error-log lines near the failure.
    pub log_lines: Vec<LogLine>,
    pub listen_counters: Option<ListenCounters>,
    pub config_problems: Vec<ConfigProblem>,
}

/// Ports the local servers' configs declare as TLS (PENDING: server-config merge).
pub fn configured_tls_ports() -> Vec<u16> {
    Vec::new()
}
