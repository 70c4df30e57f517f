//! Listener evidence (H): every listening TCP socket with its bind address,
//! owning process, accept-queue depth, and the kernel's listen-overflow
//! counters (procfs: /proc/net/tcp{,6}, /proc/PID/fd, /proc/net/netstat).
//!
//! IMPLEMENTATION PENDING (helper).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// Bind address (0.0.0.0 / :: for a wildcard).
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Connections waiting in the accept queue now.
    pub accept_queue: u32,
    /// The queue's limit (listen backlog).
    pub backlog: u32,
}

/// TcpExt counters bearing on handshakes that never reach the server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenCounters {
    pub listen_overflows: u64,
    pub listen_drops: u64,
}
