//! Values of apache directives that mod_ssl and httpd evaluate themselves:
//! `Listen`/`<VirtualHost>` addresses and `SSLProtocol` word lists.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Listen / VirtualHost addresses: `443`, `*:443`, `_default_:443`, `*`,
/// `192.0.2.1:8443`, `[::1]:443`, `192.0.2.1` (any port), `localhost:443`.
/// Port 0 stands for `*` (any port), which only a VirtualHost may use.
pub(super) fn parse_address(spec: &str, vhost: bool) -> Result<(Vec<Option<IpAddr>>, u16), String> {
    let parse_port = |p: &str| -> Result<u16, String> {
        if vhost && p == "*" {
            return Ok(0);
        }
        match p.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err("invalid port".to_string()),
        }
    };
    let (host, port) = if let Some(rest) = spec.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "unterminated IPv6 address".to_string())?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() && vhost => 0,
            None => return Err("port required".into()),
        };
        let addr: Ipv6Addr = host
            .parse()
            .map_err(|_| "invalid IPv6 address".to_string())?;
        return Ok((vec![Some(IpAddr::V6(addr))], port));
    } else if !vhost && spec.bytes().all(|b| b.is_ascii_digit()) {
        return Ok((vec![None], parse_port(spec)?));
    } else {
        match spec.rsplit_once(':') {
            Some((host, port)) => (host, parse_port(port)?),
            None if vhost => (spec, 0),
            None => return Err("port required".into()),
        }
    };
    let addrs = if host == "*" || host.eq_ignore_ascii_case("_default_") {
        vec![None]
    } else if let Ok(v4) = host.parse::<Ipv4Addr>() {
        vec![Some(IpAddr::V4(v4))]
    } else if host.eq_ignore_ascii_case("localhost") {
        vec![
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]
    } else {
        return Err(
            "a host name is resolved by httpd at startup; the agent does not resolve it, ignored"
                .to_string(),
        );
    };
    Ok((addrs, port))
}

/// mod_ssl's `SSLProtocol` evaluation (`ssl_cmd_protocol_parse`): a word
/// without `+`/`-` *replaces* what came before (httpd warns AH02532), `+`
/// adds, `-` removes; `all` is TLSv1 to TLSv1.3 with an OpenSSL built
/// without SSLv3 (Debian, RHEL). Returns the enabled versions, oldest
/// first, and httpd's warnings/errors for the words.
pub(crate) fn protocol_set(words: &[String]) -> (Vec<String>, Vec<String>) {
    const NAMES: [&str; 5] = ["SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
    const ALL: [bool; 5] = [false, true, true, true, true];
    let mut set = [false; 5];
    let mut warnings = Vec::new();
    for word in words {
        let (action, name) = match word.chars().next() {
            Some(c @ ('+' | '-')) => (Some(c), word.get(1..).unwrap_or("")),
            _ => (None, word.as_str()),
        };
        let this: [bool; 5] = if name.eq_ignore_ascii_case("all") {
            ALL
        } else if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) {
            let mut one = [false; 5];
            if let Some(slot) = one.get_mut(i) {
                *slot = true;
            }
            one
        } else {
            warnings.push(
                "SSLProtocol: an illegal protocol name: httpd refuses the config".to_string(),
            );
            continue;
        };
        match action {
            Some('-') => {
                for (s, t) in set.iter_mut().zip(this) {
                    *s &= !t;
                }
            }
            Some(_) => {
                for (s, t) in set.iter_mut().zip(this) {
                    *s |= t;
                }
            }
            None => {
                if set.iter().any(|s| *s) {
                    warnings.push(format!(
                        "SSLProtocol: protocol \"{word}\" overrides already set parameter(s); a +/- prefix is probably missing"
                    ));
                }
                set = this;
            }
        }
    }
    let enabled = NAMES
        .iter()
        .zip(set)
        .filter(|(_, on)| *on)
        .map(|(n, _)| n.to_string())
        .collect();
    (enabled, warnings)
}
