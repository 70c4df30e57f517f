//! Which ports count as TLS, and which host state found plain.

use std::collections::HashMap;
use std::time::Duration;

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

    /// A port a local server was seen answering with a ServerHello.
    pub(super) fn learn(&mut self, port: u16) {
        self.add(port);
        self.learned.insert(port);
    }

    /// A port where the kernel confirmed a local server's successful
    /// handshake (which userspace never saw).
    pub fn learn_served(&mut self, port: u16) {
        if !self.contains(port) {
            self.learn(port);
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
