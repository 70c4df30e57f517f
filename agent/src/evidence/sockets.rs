//! Socket evidence (S): `connect` results and TCP state changes of a tracked
//! socket, as the syscall and `sock:inet_sock_set_state` tracepoints saw them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketFacts {
    /// `connect` failed (or a non-blocking connect never established): the
    /// errno, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_errno: Option<i32>,
    /// Symbolic name of `connect_errno`, e.g. "ECONNREFUSED".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_error: Option<String>,
    /// TCP state changes, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp_states: Vec<TcpStateFact>,
    /// Who ended the connection first, when seen: "local" or "peer".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
    /// The peer reset the connection (ESTABLISHED -> CLOSE without FIN).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset_by_peer: bool,
    /// The handshake made no progress for the stall timeout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stalled: bool,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpStateFact {
    pub time: DateTime<Utc>,
    pub from: String,
    pub to: String,
}

/// Linux TCP state names (include/net/tcp_states.h).
pub fn tcp_state_name(state: u32) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// Symbolic errno name for the errors a `connect` can return.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ECONNRESET => "ECONNRESET",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EINTR => "EINTR",
        libc::EALREADY => "EALREADY",
        libc::EISCONN => "EISCONN",
        libc::ENETDOWN => "ENETDOWN",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}
