//! Both processes of a handshake that stays on this host.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

type Addr = (IpAddr, u16);
/// (local, remote) of one end.
type Tuple = (Addr, Addr);

/// The recent endpoints of local connections, to name both processes of a
/// handshake that stays on this host.
pub(super) struct TupleIndex {
    /// Tuple -> (pid, comm, when indexed).
    by_tuple: HashMap<Tuple, (u32, String, u64)>,
    order: VecDeque<(Tuple, u64)>,
}

const TUPLE_TTL_NS: u64 = 30_000_000_000;
const TUPLE_MAX: usize = 65536;

impl TupleIndex {
    pub(super) fn new() -> Self {
        TupleIndex {
            by_tuple: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(super) fn insert(
        &mut self,
        local: (IpAddr, u16),
        remote: (IpAddr, u16),
        pid: u32,
        comm: &str,
        now: u64,
    ) {
        let key = (local, remote);
        // Room first: pushing the 65,537th entry would double the deque's
        // allocation (3 MiB more, kept for good) for one slot.
        while self.order.len() >= TUPLE_MAX {
            self.pop_oldest();
        }
        self.by_tuple.insert(key, (pid, comm.to_string(), now));
        self.order.push_back((key, now));
    }

    pub(super) fn expire(&mut self, now: u64) {
        while self
            .order
            .front()
            .is_some_and(|(_, t)| now.saturating_sub(*t) > TUPLE_TTL_NS)
        {
            self.pop_oldest();
        }
    }

    pub(super) fn pop_oldest(&mut self) {
        if let Some((key, t)) = self.order.pop_front()
            && self.by_tuple.get(&key).is_some_and(|(_, _, at)| *at == t)
        {
            self.by_tuple.remove(&key);
        }
    }

    /// The local process at the other end of (local, remote).
    pub(super) fn peer(
        &self,
        local: (IpAddr, u16),
        remote: (IpAddr, u16),
    ) -> Option<(u32, String)> {
        self.by_tuple
            .get(&(remote, local))
            .map(|(pid, comm, _)| (*pid, comm.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_stays_within_its_cap_and_its_allocation() {
        let mut index = TupleIndex::new();
        let ip = IpAddr::from([127, 0, 0, 1]);
        for n in 0..TUPLE_MAX as u64 + 10 {
            let port = (n % 60_000) as u16;
            index.insert((ip, port), (ip, 443), 7, "client", n);
        }
        assert_eq!(index.order.len(), TUPLE_MAX);
        assert!(index.order.capacity() < 2 * TUPLE_MAX);
        // The newest entries are kept, the oldest gone.
        let newest = ((TUPLE_MAX as u64 + 9) % 60_000) as u16;
        assert_eq!(
            index.peer((ip, 443), (ip, newest)),
            Some((7, "client".to_string()))
        );
    }
}
