//! The target: `host:port` or `[v6]:port` parsed, then resolved to every
//! address, within the step timeout.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::Duration;

use super::ProbeError;

/// Default port when the target names none.
pub const DEFAULT_PORT: u16 = 443;
/// Addresses kept from a resolution: a name with dozens of A records is
/// probed on its first few, as clients do.
pub const MAX_ADDRESSES: usize = 8;

/// A parsed target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// A host name, or an address without brackets.
    pub host: String,
    pub port: u16,
    /// The host is an address literal (no DNS, and clients send no SNI).
    pub ip: Option<IpAddr>,
}

fn invalid(target: &str, reason: impl Into<String>) -> ProbeError {
    ProbeError::InvalidTarget {
        target: target.to_string(),
        reason: reason.into(),
    }
}

fn parse_port(target: &str, port: &str) -> Result<u16, ProbeError> {
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid(
            target,
            format!("\"{port}\" is not a port (1-65535)"),
        )),
        Ok(p) => Ok(p),
    }
}

/// Whether `name` can be a DNS host name (letters, digits, `-`, `_` and
/// dots; at most 253 characters).
pub fn plausible_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// Parses `host:port`, `[v6]:port`, a bare host or address (port 443), and
/// tolerates an `https://` prefix and a trailing path.
pub fn parse(target: &str) -> Result<Target, ProbeError> {
    let mut text = target.trim();
    if let Some(rest) = text.strip_prefix("https://") {
        text = rest;
    }
    if let Some((authority, _path)) = text.split_once('/') {
        text = authority;
    }
    if text.is_empty() {
        return Err(invalid(target, "empty"));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid(target, "unclosed '['"))?;
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| invalid(target, format!("\"{inside}\" is not an IPv6 address")))?;
        let port = match after {
            "" => DEFAULT_PORT,
            _ => match after.strip_prefix(':') {
                Some(p) => parse_port(target, p)?,
                None => return Err(invalid(target, "expected ':' after ']'")),
            },
        };
        return Ok(Target {
            host: ip.to_string(),
            port,
            ip: Some(IpAddr::V6(ip)),
        });
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Target {
            host: ip.to_string(),
            port: DEFAULT_PORT,
            ip: Some(ip),
        });
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => {
            return Err(invalid(
                target,
                "an IPv6 address with a port needs brackets: [addr]:port",
            ));
        }
        Some((host, port)) => (host, parse_port(target, port)?),
        None => (text, DEFAULT_PORT),
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Target {
            host: ip.to_string(),
            port,
            ip: Some(ip),
        });
    }
    if !plausible_host_name(host) {
        return Err(invalid(target, format!("\"{host}\" is not a host name")));
    }
    Ok(Target {
        host: host.to_string(),
        port,
        ip: None,
    })
}

/// Every address of the target (at most [`MAX_ADDRESSES`], duplicates
/// dropped, resolver order kept). The system resolver has no timeout of
/// its own, so it runs on a helper thread that is abandoned past `timeout`.
pub fn resolve(target: &Target, timeout: Duration) -> Result<Vec<SocketAddr>, ProbeError> {
    if let Some(ip) = target.ip {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let (tx, rx) = mpsc::channel();
    let query = (target.host.clone(), target.port);
    let spawned = std::thread::Builder::new()
        .name("probe-resolve".into())
        .spawn(move || {
            let result = query
                .to_socket_addrs()
                .map(|addrs| addrs.collect::<Vec<_>>());
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(ProbeError::Resolve {
            host: target.host.clone(),
            reason: format!(
                "cannot start the resolver thread: {e}",
                e = crate::text::Chain(&e)
            ),
        });
    }
    let found = match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(e)) => {
            return Err(ProbeError::Resolve {
                host: target.host.clone(),
                reason: crate::text::Chain(&e).to_string(),
            });
        }
        Err(_) => {
            return Err(ProbeError::Resolve {
                host: target.host.clone(),
                reason: format!("no answer within {} ms", timeout.as_millis()),
            });
        }
    };
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for a in found {
        if !addrs.contains(&a) && addrs.len() < MAX_ADDRESSES {
            addrs.push(a);
        }
    }
    if addrs.is_empty() {
        return Err(ProbeError::Resolve {
            host: target.host.clone(),
            reason: "no address".to_string(),
        });
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Target {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn host_and_port_forms() {
        let t = ok("site.example:8443");
        assert_eq!(
            (t.host.as_str(), t.port, t.ip),
            ("site.example", 8443, None)
        );
        let t = ok("site.example");
        assert_eq!(t.port, 443);
        let t = ok("https://site.example:444/path?q");
        assert_eq!((t.host.as_str(), t.port), ("site.example", 444));
        let t = ok("127.0.0.1:443");
        assert_eq!(t.ip, Some("127.0.0.1".parse().unwrap()));
        let t = ok("[::1]:8443");
        assert_eq!((t.host.as_str(), t.port), ("::1", 8443));
        assert_eq!(t.ip, Some("::1".parse().unwrap()));
        let t = ok("[2001:db8::1]");
        assert_eq!(t.port, 443);
        let t = ok("::1");
        assert_eq!((t.host.as_str(), t.port), ("::1", 443));
    }

    #[test]
    fn bad_targets_are_refused_with_a_reason() {
        for bad in [
            "",
            "host:",
            "host:0",
            "host:65536",
            "host:https",
            "[::1",
            "[::1]x",
            "[nothex]:1",
            "2001:db8::1:443:x",
            "bad host:443",
            "a..b:443",
            "nul\0:443",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        let e = parse("fe80::1:443x").map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("brackets"), "{e}");
    }

    #[test]
    fn literal_addresses_resolve_to_themselves() {
        let t = ok("192.0.2.7:853");
        let addrs = resolve(&t, Duration::from_secs(1)).unwrap();
        assert_eq!(addrs, vec!["192.0.2.7:853".parse().unwrap()]);
    }

    #[test]
    fn localhost_resolves() {
        let t = ok("localhost:443");
        let addrs = resolve(&t, Duration::from_secs(5)).unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
