//! Which tentative outcomes are TLS failures: the host's side of the
//! question assembly cannot answer alone (a connection with only non-TLS
//! bytes, or a failed connect, to a port it does not know).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::evidence::listeners::Listener;
use crate::evidence::process::maps_tls_library;
use crate::evidence::server_config::DiscoveredConfig;
use crate::outcome::{HandshakeOutcome, Role};

use super::load::died_before_the_server_answered;
use super::{HostState, Timed};

impl HostState {
    /// Whether a tentative outcome (only non-TLS bytes, or a failed connect,
    /// to a port assembly does not know) is a TLS failure: a local server
    /// config serves TLS on the port, or the port served a ServerHello
    /// before (learned); and for a connect that failed or a connection the
    /// server never answered, also a listener on the port bound to other
    /// addresses only (a record in its own right), a listening process that
    /// maps a TLS library (`openssl s_server`, a Node or C service without
    /// a config file), or a listener under load (a full accept queue, a
    /// process at its descriptor limit or stopped). Plain bytes to a port
    /// known only from a mapped library stay plain: plenty of plain
    /// services map libssl. An unknown port makes discovery run again (at
    /// most once a second): the server may have started a moment ago.
    pub fn port_serves_tls(&mut self, outcome: &HandshakeOutcome) -> bool {
        let (Some(ip), Some(port)) = (outcome.server.ip, outcome.server.port) else {
            return false;
        };
        if outcome.role != Role::Server && !self.is_local(ip) {
            return false;
        }
        let learned = crate::diagnosis::learned::global()
            .and_then(|l| l.lock().ok())
            .is_some_and(|l| l.served_hello_ports().contains(&port));
        if learned {
            return true;
        }
        let never_answered =
            outcome.tls.non_tls.is_none() && died_before_the_server_answered(outcome);
        if never_answered && self.config_less_tls_listener(outcome, ip, port) {
            return true;
        }
        let serves = |configs: &[DiscoveredConfig]| {
            configs
                .iter()
                .filter_map(|d| d.result.as_ref().ok())
                .flat_map(|cfg| cfg.blocks_on_port(port))
                .any(|b| b.listens.iter().any(|l| l.port == port && l.ssl))
        };
        if serves(self.configs()) {
            return true;
        }
        if self.configs_answer(outcome) {
            return false;
        }
        self.rediscover();
        serves(self.configs.as_ref().map_or(&[], |c| c.configs.as_slice()))
    }

    /// The listener side of [`HostState::port_serves_tls`] for a connect
    /// that failed or a connection the server never answered.
    fn config_less_tls_listener(
        &mut self,
        outcome: &HandshakeOutcome,
        ip: IpAddr,
        port: u16,
    ) -> bool {
        let Some(table) = self.listeners() else {
            return false;
        };
        let on_port: Vec<Listener> = table.on_port(port).into_iter().cloned().collect();
        if on_port.is_empty() {
            return false;
        }
        let accepting = table.accepting(ip, port).cloned();
        let refused = outcome.socket.connect_errno == Some(libc::ECONNREFUSED);
        // Listening, but not on the address the client used.
        if refused && accepting.is_none() {
            return true;
        }
        let pids: Vec<u32> = on_port.iter().filter_map(|l| l.pid).collect();
        if pids
            .into_iter()
            .any(|pid| self.tls_library_of(pid).is_some())
        {
            return true;
        }
        let Some(listener) = accepting else {
            return false;
        };
        let queue_full = listener.backlog > 0 && listener.accept_queue >= listener.backlog;
        let loaded = listener.pid.is_some_and(|owner| {
            self.load
                .loads(owner)
                .iter()
                .any(|l| l.at_fd_limit() || l.stopped())
        });
        queue_full || loaded
    }

    /// The TLS library process `pid` maps (cached for a minute: a server's
    /// libraries do not change while it runs).
    fn tls_library_of(&mut self, pid: u32) -> Option<String> {
        if let Some(cached) = self.tls_library.get(&pid)
            && cached.at.elapsed() < Duration::from_secs(60)
        {
            return cached.value.clone();
        }
        let value = maps_tls_library(pid);
        if self.tls_library.len() > 4096 {
            self.tls_library.clear();
        }
        self.tls_library.insert(
            pid,
            Timed {
                at: Instant::now(),
                value: value.clone(),
            },
        );
        value
    }
}
