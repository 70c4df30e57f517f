//! Which server block serves a connection, by the server's own rules.
//!
//! nginx (docs: "How nginx processes a request", "Server names"): the
//! blocks listening on the connection's address:port, a specific address
//! beating a wildcard one; among them the exact name, then the longest
//! leading wildcard, then the longest trailing wildcard, then the first
//! matching regex; otherwise the `default_server`, otherwise the first
//! block of that listen.
//!
//! Apache (docs: "Name-based Virtual Host Support"): the vhosts whose
//! address best matches the connection (IP beats `*`, an explicit port
//! beats `*`); the first whose ServerName/ServerAlias matches, otherwise the
//! first of the set.

use std::net::IpAddr;

use super::{ListenSpec, ServerBlock, ServerConfig, ServerKind};

/// The outcome of [`ServerConfig::select`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection<'a> {
    /// The block that serves the connection (its certificate is sent).
    pub block: &'a ServerBlock,
    /// True when no name chose the block: there was no SNI, or it matched
    /// no `server_name`/`ServerName`/`ServerAlias`, so the address:port's
    /// default block was used (the sni-default-certificate situation).
    pub by_default: bool,
    /// The address:port's default block. For nginx before 1.29.2 its
    /// `ssl_protocols` decide the TLS version, because OpenSSL fixes the
    /// version before the SNI callback switches servers.
    pub default_block: &'a ServerBlock,
    /// A regex `server_name` (`~...`) among the candidates was not
    /// evaluated: the agent has no regex engine (the `regex` crate is not a
    /// dependency), so a regex server may in truth have won over a
    /// fallback. Lower the confidence of a sni-default-certificate finding.
    pub regex_skipped: bool,
}

impl ServerConfig {
    /// Blocks with a listen on `port` (any address; apache `*` ports included).
    pub fn blocks_on_port(&self, port: u16) -> Vec<&ServerBlock> {
        self.blocks
            .iter()
            .filter(|b| b.listens.iter().any(|l| port_matches(l, port)))
            .collect()
    }

    /// The blocks a connection to `local_addr:port` is routed between by
    /// name (nginx's server blocks, apache's name-based vhosts for that
    /// address:port), config order.
    pub fn listener_blocks(&self, local_addr: Option<IpAddr>, port: u16) -> Vec<&ServerBlock> {
        let local = local_addr.map(unmap);
        self.candidates(local, port)
            .into_iter()
            .map(|(b, _)| b)
            .collect()
    }

    /// The block that serves a TLS connection to `local_addr:port` asking
    /// for `sni`. `local_addr` is the server-side address of the
    /// connection (None when unknown: then wildcard listens are assumed).
    /// None when no block accepts connections there.
    pub fn select(
        &self,
        local_addr: Option<IpAddr>,
        port: u16,
        sni: Option<&str>,
    ) -> Option<Selection<'_>> {
        let local = local_addr.map(unmap);
        let candidates = self.candidates(local, port);
        let (first, _) = candidates.first().copied()?;
        let default_block = match self.kind {
            ServerKind::Nginx => candidates
                .iter()
                .find(|(_, listen)| listen.default_server)
                .map(|(b, _)| *b)
                .unwrap_or(first),
            ServerKind::Apache => first,
        };
        let regex_present = self.kind == ServerKind::Nginx
            && candidates.iter().any(|(b, _)| {
                b.server_names
                    .iter()
                    .any(|n| n.value.trim_start().starts_with('~'))
            });
        let fallback = Selection {
            block: default_block,
            by_default: true,
            default_block,
            regex_skipped: false,
        };
        let Some(host) = sni.map(normalize_host).filter(|h| !h.is_empty()) else {
            // No SNI: OpenSSL never calls the servername callback, so the
            // default block serves (nginx and mod_ssl alike).
            return Some(fallback);
        };
        let blocks: Vec<&ServerBlock> = candidates.iter().map(|(b, _)| *b).collect();
        let chosen = match self.kind {
            ServerKind::Nginx => select_nginx(&blocks, &host),
            ServerKind::Apache => blocks
                .iter()
                .copied()
                .find(|b| b.server_names.iter().any(|n| name_matches(&n.value, &host))),
        };
        Some(match chosen {
            Some(block) => Selection {
                block,
                by_default: false,
                default_block,
                regex_skipped: false,
            },
            None => Selection {
                regex_skipped: regex_present,
                ..fallback
            },
        })
    }

    /// Blocks (with the listen that matched) accepting connections on
    /// `local:port`, config order, best address-match rank only.
    fn candidates(&self, local: Option<IpAddr>, port: u16) -> Vec<(&ServerBlock, &ListenSpec)> {
        let mut best_rank = 0u8;
        let mut out: Vec<(&ServerBlock, &ListenSpec, u8)> = Vec::new();
        for block in &self.blocks {
            let best = block
                .listens
                .iter()
                .filter_map(|l| rank(self.kind, l, local, port).map(|r| (l, r)))
                .max_by_key(|(_, r)| *r);
            if let Some((listen, r)) = best {
                best_rank = best_rank.max(r);
                out.push((block, listen, r));
            }
        }
        out.into_iter()
            .filter(|(_, _, r)| *r == best_rank)
            .map(|(b, l, _)| (b, l))
            .collect()
    }
}

fn port_matches(listen: &ListenSpec, port: u16) -> bool {
    listen.port == port || listen.port == 0
}

/// How well a listen matches the connection's address; None = not at all.
/// Higher wins: specific address (4, 3 with a `*` port) over wildcard (2,
/// 1 with a `*` port). When the local address is unknown, any listen on the
/// port is a candidate and wildcards rank above specific addresses.
fn rank(kind: ServerKind, listen: &ListenSpec, local: Option<IpAddr>, port: u16) -> Option<u8> {
    if !port_matches(listen, port) {
        return None;
    }
    let exact_port = listen.port == port;
    let wildcard = listen.addr.is_none_or(|a| a.is_unspecified());
    let Some(local) = local else {
        return Some(match (wildcard, exact_port) {
            (true, true) => 4,
            (true, false) => 3,
            (false, true) => 2,
            (false, false) => 1,
        });
    };
    if wildcard {
        if !family_ok(kind, listen.addr, local) {
            return None;
        }
        Some(if exact_port { 2 } else { 1 })
    } else if listen.addr.map(unmap) == Some(local) {
        Some(if exact_port { 4 } else { 3 })
    } else {
        None
    }
}

/// Whether a wildcard listen accepts a connection to `local`'s family.
/// nginx: no address or 0.0.0.0 is IPv4 only, `[::]` is IPv6 only (nginx
/// sets IPV6_V6ONLY by default). Apache binds dual-stack sockets, so its
/// wildcards take both.
fn family_ok(kind: ServerKind, addr: Option<IpAddr>, local: IpAddr) -> bool {
    match kind {
        ServerKind::Apache => true,
        ServerKind::Nginx => match addr {
            None | Some(IpAddr::V4(_)) => local.is_ipv4(),
            Some(IpAddr::V6(_)) => local.is_ipv6(),
        },
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`: a dual-stack socket reports IPv4 peers so.
fn unmap(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn normalize_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// nginx's name lookup over one address:port's blocks (config order).
fn select_nginx<'a>(blocks: &[&'a ServerBlock], host: &str) -> Option<&'a ServerBlock> {
    // 1. Exact names (`.example.com` also names example.com itself).
    for block in blocks {
        for name in &block.server_names {
            let pattern = name.value.to_ascii_lowercase();
            let exact = pattern.strip_prefix('.').unwrap_or(&pattern);
            if !exact.contains('*') && !exact.starts_with('~') && exact == host {
                return Some(block);
            }
        }
    }
    // 2. Longest leading wildcard (`*.example.com`, `.example.com`); on a
    //    tie the first block wins (nginx warns about the conflict).
    let mut best: Option<(&ServerBlock, usize)> = None;
    for block in blocks {
        for name in &block.server_names {
            let pattern = name.value.to_ascii_lowercase();
            let suffix = if let Some(rest) = pattern.strip_prefix("*.") {
                rest
            } else if let Some(rest) = pattern.strip_prefix('.') {
                rest
            } else {
                continue;
            };
            // At least one label before the suffix: `*.example.com` does
            // not match example.com (the `.example.com` form did, above).
            let below = host
                .strip_suffix(suffix)
                .is_some_and(|head| head.len() > 1 && head.ends_with('.'));
            if below && best.is_none_or(|(_, len)| suffix.len() > len) {
                best = Some((block, suffix.len()));
            }
        }
    }
    if let Some((block, _)) = best {
        return Some(block);
    }
    // 3. Longest trailing wildcard (`mail.*`).
    for block in blocks {
        for name in &block.server_names {
            let pattern = name.value.to_ascii_lowercase();
            let Some(prefix) = pattern.strip_suffix(".*") else {
                continue;
            };
            if prefix.contains('*') || prefix.starts_with('~') {
                continue;
            }
            let above = host
                .strip_prefix(prefix)
                .is_some_and(|tail| tail.len() > 1 && tail.starts_with('.'));
            if above && best.is_none_or(|(_, len)| prefix.len() > len) {
                best = Some((block, prefix.len()));
            }
        }
    }
    // 4. Regex names (`~^www\d+\.example\.net$`) would come next; they are
    //    not evaluated (no regex engine in the dependency tree) and count as
    //    non-matching. `select` reports that through `regex_skipped`.
    best.map(|(block, _)| block)
}

/// Whether a server-name pattern matches `host`, case-insensitively.
///
/// - `~...`: an nginx regex; never matches (not evaluated, see [`Selection::regex_skipped`]).
/// - `.example.com`: example.com and any name below it (nginx).
/// - `*` and `?` wildcards anywhere (`*.example.com`, `mail.*`; apache
///   ServerAlias globs); `*` also spans dots, as in both servers.
/// - apache's `ServerName https://www.example.com:443` form: the scheme and
///   port are ignored.
/// - `_` and the empty name are nginx's catch-all placeholders and match no
///   real host name.
pub fn name_matches(pattern: &str, host: &str) -> bool {
    let host = normalize_host(host);
    let pattern = pattern.trim();
    if pattern.starts_with('~') || host.is_empty() {
        return false;
    }
    let mut pattern = pattern.to_ascii_lowercase();
    if let Some(pos) = pattern.find("://") {
        pattern = pattern.split_off(pos + 3);
    }
    if let Some((name, port)) = pattern.rsplit_once(':')
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && !name.contains(':')
    {
        pattern = name.to_string();
    }
    let pattern = pattern.trim_end_matches('.');
    if pattern.is_empty() {
        return false;
    }
    if let Some(rest) = pattern.strip_prefix('.') {
        return host == rest || host.ends_with(pattern);
    }
    glob_match(pattern.as_bytes(), host.as_bytes())
}

/// `*` / `?` matching without recursion (greedy with backtracking to the
/// last star): linear memory, O(n·m) worst case on names of at most 253 bytes.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}
