//! Evidence sources: one module per source. Each reads its facts; none
//! decides a cause (that is `diagnosis`). Evidence is the leaf of the
//! crate: nothing here imports `catalogue`, `outcome`, `diagnosis` or
//! anything above them (`tests::evidence_is_a_leaf` keeps it so).

pub mod certificates;
pub mod cgroup;
pub mod clock;
pub mod fsroot;
pub mod listeners;
pub mod logs;
pub mod openssl;
pub mod process;
pub mod server_config;
pub mod sockets;
pub mod wire;

use serde::{Deserialize, Serialize};

/// Which end of the handshake the observed process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Client,
    Server,
}

impl Role {
    pub fn peer(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}
