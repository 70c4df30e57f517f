//! TCP: connect each address within the step timeout and say how it ended.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::evidence::sockets::{SocketFacts, errno_name};

use super::report::{AddressProbe, TcpResult};

/// Classifies a failed `connect`: the catalogue cares whether the SYN was
/// refused (a reset), unanswered, or had no route.
pub fn classify(error: &io::Error) -> (TcpResult, Option<i32>, String) {
    let errno = error.raw_os_error().or(match error.kind() {
        // std's connect_timeout reports its own deadline without an errno.
        io::ErrorKind::TimedOut => Some(libc::ETIMEDOUT),
        io::ErrorKind::ConnectionRefused => Some(libc::ECONNREFUSED),
        _ => None,
    });
    let result = match errno {
        Some(libc::ECONNREFUSED) => TcpResult::Refused,
        Some(libc::ETIMEDOUT) => TcpResult::TimedOut,
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) | Some(libc::ENETDOWN) => {
            TcpResult::Unreachable
        }
        _ => TcpResult::Error,
    };
    let text = errno.map(errno_name).unwrap_or_else(|| error.to_string());
    (result, errno, text)
}

/// Connects to `addr` within `timeout`.
pub fn connect(addr: SocketAddr, timeout: Duration) -> (AddressProbe, Option<TcpStream>) {
    let start = Instant::now();
    let result = TcpStream::connect_timeout(&addr, timeout.max(Duration::from_millis(1)));
    let connect_ms = Some(start.elapsed().as_millis() as u64);
    match result {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            (
                AddressProbe {
                    address: addr,
                    tcp: TcpResult::Connected,
                    errno: None,
                    error: None,
                    connect_ms,
                },
                Some(stream),
            )
        }
        Err(e) => {
            let (tcp, errno, error) = classify(&e);
            (
                AddressProbe {
                    address: addr,
                    tcp,
                    errno,
                    error: Some(error),
                    connect_ms,
                },
                None,
            )
        }
    }
}

/// An address the total timeout left untried.
pub fn not_tried(addr: SocketAddr) -> AddressProbe {
    AddressProbe {
        address: addr,
        tcp: TcpResult::NotTried,
        errno: None,
        error: None,
        connect_ms: None,
    }
}

/// The socket facts of a failed connect, as the capture would record them.
pub fn failed_connect_facts(probe: &AddressProbe) -> SocketFacts {
    SocketFacts {
        connect_errno: probe.errno,
        connect_error: probe.error.clone(),
        ..SocketFacts::default()
    }
}

/// "refused (ECONNREFUSED)" and the like, for sentences.
pub fn describe(probe: &AddressProbe) -> String {
    let what = match probe.tcp {
        TcpResult::Connected => "connected",
        TcpResult::Refused => "refused",
        TcpResult::Unreachable => "unreachable",
        TcpResult::TimedOut => "timed out",
        TcpResult::Error => "failed",
        TcpResult::NotTried => "not tried",
    };
    match &probe.error {
        Some(e) => format!("{what} ({e})"),
        None => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_errno() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(
            classify(&refused),
            (
                TcpResult::Refused,
                Some(libc::ECONNREFUSED),
                "ECONNREFUSED".into()
            )
        );
        let unreach = io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        assert_eq!(classify(&unreach).0, TcpResult::Unreachable);
        let timeout = io::Error::new(io::ErrorKind::TimedOut, "connection timed out");
        assert_eq!(
            classify(&timeout),
            (
                TcpResult::TimedOut,
                Some(libc::ETIMEDOUT),
                "ETIMEDOUT".into()
            )
        );
        let other = io::Error::other("strange");
        assert_eq!(classify(&other), (TcpResult::Error, None, "strange".into()));
    }

    #[test]
    fn a_closed_loopback_port_is_refused() {
        // Bind then drop: the port is (almost certainly) closed right after.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (probe, stream) = connect(addr, Duration::from_secs(2));
        assert!(stream.is_none());
        assert_eq!(probe.tcp, TcpResult::Refused);
        assert_eq!(describe(&probe), "refused (ECONNREFUSED)");
        assert_eq!(
            failed_connect_facts(&probe).connect_errno,
            Some(libc::ECONNREFUSED)
        );
    }
}
