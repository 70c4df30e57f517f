//! Evidence sources: one module per source. Each reads its facts; none
//! decides a cause (that is `diagnosis`).

pub mod certificates;
pub mod cgroup;
pub mod clock;
pub mod fsroot;
pub mod host;
pub mod listeners;
pub mod logs;
pub mod openssl;
pub mod process;
pub mod server_config;
pub mod sockets;
pub mod wire;
