//! Test fixtures: handshake outcomes and host state as the agent records
//! them, built to mirror what OpenSSL 3.0, nginx 1.22 and curl 7.88 really
//! emit (see docs/catalogue.md, "What the wire shows and hides"). Reason
//! and verify texts come from the live library, exactly as the uprobes
//! record them.
//!
//! Two vantage points: `Case::client()` is a local curl talking to a remote
//! server (host facts empty), `Case::server()` a local nginx serving a
//! remote client (host facts filled in by the `with_*` helpers).

// Test code (built for `cfg(test)` and the `test-support` feature): a
// fixture that does not parse is a broken test, said at once.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};

use crate::diagnosis::host::{ClassifiedLogLine, HostFacts};
use crate::diagnosis::{Cause, Diagnosis, Facts, diagnose};
use crate::evidence::certificates::{CertificateFact, ChainFinding, ChainReport};
use crate::evidence::clock::ClockState;
use crate::evidence::listeners::{ListenCounters, Listener};
use crate::evidence::logs::LogLine;
use crate::evidence::openssl::{
    OpensslErrorFact, SslCallFact, VerifyResultFact, alert_name, reason, reason_text, verify_text,
};
use crate::evidence::server_config::{ListenSpec, ServerBlock, ServerKind, Setting};
use crate::evidence::sockets::TcpStateFact;
use crate::evidence::wire::{
    AlertFact, ClientHelloFacts, EncryptedRecordFact, MessageFact, NonTlsFact, ServerHelloFacts,
    TlsFacts,
};
use crate::outcome::{Endpoint, HandshakeOutcome, Role, sample_failure};

use super::Rule;

/// The fixed "now" of every fixture: the failure time.
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-10T12:00:00Z")
        .expect("fixture time")
        .with_timezone(&Utc)
}

pub fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("fixture address")
}

pub const SITE: &str = "site.example";
pub const NGINX_SITE: &str = "/etc/nginx/sites-enabled/site";
pub const SITE_CERT: &str = "/etc/nginx/certs/site.crt";
pub const SITE_KEY: &str = "/etc/nginx/certs/site.key";

/// A leaf for `cn` issued by `issuer`, valid ±90 days around `now()`.
pub fn leaf(cn: &str, issuer: &str, sans: &[&str]) -> CertificateFact {
    CertificateFact {
        subject: format!("CN={cn}"),
        issuer: format!("CN={issuer}"),
        common_name: Some(cn.to_string()),
        sans: sans.iter().map(|s| s.to_string()).collect(),
        serial: "04:5e:9a".to_string(),
        not_before: now() - days(30),
        not_after: now() + days(60),
        self_signed: cn == issuer,
        is_ca: false,
        key_type: "RSA".to_string(),
        key_bits: Some(2048),
        signature_algorithm: "sha256WithRSAEncryption".to_string(),
        sha256: format!("{:0>64}", hex::encode(cn.as_bytes())),
    }
}

/// site.example's leaf, issued by the intermediate "Lab Intermediate CA".
pub fn site_leaf() -> CertificateFact {
    leaf(SITE, "Lab Intermediate CA", &[SITE, "www.site.example"])
}

pub fn intermediate() -> CertificateFact {
    let mut c = leaf("Lab Intermediate CA", "Lab Root CA", &[]);
    c.is_ca = true;
    c.not_after = now() + days(3000);
    c
}

pub fn valid_between(mut c: CertificateFact, from: TimeDelta, to: TimeDelta) -> CertificateFact {
    c.not_before = now() + from;
    c.not_after = now() + to;
    c.sha256 = format!("{:0>64}", hex::encode(format!("{}{from}{to}", c.subject)));
    c
}

/// A chain report of `source` (a path or "wire"), checked for `site.example`.
pub fn report(
    source: &str,
    certificates: Vec<CertificateFact>,
    verify_code: i32,
    findings: Vec<ChainFinding>,
) -> ChainReport {
    ChainReport {
        source: source.to_string(),
        certificates,
        verify_code,
        verify_text: verify_text(verify_code),
        name: Some(SITE.to_string()),
        findings,
    }
}

fn setting<T>(value: T, line: u32) -> Setting<T> {
    Setting {
        value,
        file: PathBuf::from(NGINX_SITE),
        line,
    }
}

/// `server { listen 443 ssl; server_name site.example; ssl_certificate ...; }`
/// in /etc/nginx/sites-enabled/site, lines 1-20.
pub fn nginx_block() -> ServerBlock {
    ServerBlock {
        kind: ServerKind::Nginx,
        file: PathBuf::from(NGINX_SITE),
        line: 1,
        listens: vec![ListenSpec {
            addr: None,
            port: 443,
            ssl: true,
            default_server: false,
            file: PathBuf::from(NGINX_SITE),
            line: 2,
        }],
        server_names: vec![setting(SITE.to_string(), 3)],
        certificate: Some(setting(PathBuf::from(SITE_CERT), 12)),
        certificate_key: Some(setting(PathBuf::from(SITE_KEY), 13)),
        chain_file: None,
        protocols: Some(setting(vec!["TLSv1.2".into(), "TLSv1.3".into()], 14)),
        ciphers: Some(setting("HIGH:!aNULL:!MD5".to_string(), 15)),
        verify_client: None,
        client_ca: None,
        error_log: Some(setting(PathBuf::from("/var/log/nginx/error.log"), 18)),
        log_level: Some(setting("info".to_string(), 18)),
        extra_certificates: Vec::new(),
        extra_certificate_keys: Vec::new(),
        root: Default::default(),
    }
}

/// The default server of port 443 in /etc/nginx/sites-enabled/default:
/// `listen 443 ssl default_server; server_name default.example;`.
pub fn default_block() -> ServerBlock {
    let file = PathBuf::from("/etc/nginx/sites-enabled/default");
    ServerBlock {
        kind: ServerKind::Nginx,
        file: file.clone(),
        line: 1,
        listens: vec![ListenSpec {
            addr: None,
            port: 443,
            ssl: true,
            default_server: true,
            file: file.clone(),
            line: 2,
        }],
        server_names: vec![Setting {
            value: "default.example".to_string(),
            file: file.clone(),
            line: 3,
        }],
        certificate: Some(Setting {
            value: PathBuf::from("/etc/nginx/certs/default.crt"),
            file: file.clone(),
            line: 6,
        }),
        certificate_key: Some(Setting {
            value: PathBuf::from("/etc/nginx/certs/default.key"),
            file: file.clone(),
            line: 7,
        }),
        chain_file: None,
        protocols: None,
        ciphers: None,
        verify_client: None,
        client_ca: None,
        error_log: None,
        log_level: None,
        extra_certificates: Vec::new(),
        extra_certificate_keys: Vec::new(),
        root: Default::default(),
    }
}

pub fn listener(addr: &str, port: u16) -> Listener {
    Listener {
        addr: ip(addr),
        port,
        inode: 31337,
        pid: Some(812),
        comm: Some("nginx".to_string()),
        exe: Some("/usr/sbin/nginx".to_string()),
        accept_queue: 0,
        v6only: None,
        backlog: 511,
    }
}

pub fn clock(synchronized: bool) -> ClockState {
    ClockState {
        now: now(),
        synchronized,
        status: if synchronized {
            vec!["STA_PLL".to_string(), "STA_NANO".to_string()]
        } else {
            vec!["STA_UNSYNC".to_string()]
        },
        max_error_us: if synchronized { 12_000 } else { 16_000_000 },
        est_error_us: if synchronized { 400 } else { 16_000_000 },
        offset_us: 0,
    }
}

/// One failure and its host state, built step by step.
#[derive(Clone, Debug)]
pub struct Case {
    pub outcome: HandshakeOutcome,
    pub host: HostFacts,
}

fn outcome(role: Role, client: Endpoint, server: Endpoint) -> HandshakeOutcome {
    HandshakeOutcome {
        id: "fixture".to_string(),
        time: now(),
        end_time: now(),
        role,
        client,
        server,
        tls: TlsFacts {
            sni: Some(SITE.to_string()),
            ..TlsFacts::default()
        },
        host: Some("fixture-host".to_string()),
        ..sample_failure()
    }
}

impl Case {
    /// A local `curl https://site.example/` to a remote server (203.0.113.10:443).
    pub fn client() -> Case {
        Case {
            outcome: outcome(
                Role::Client,
                Endpoint {
                    ip: Some(ip("10.0.0.9")),
                    port: Some(51514),
                    pid: Some(4242),
                    comm: Some("curl".to_string()),
                    exe: Some("/usr/bin/curl".to_string()),
                    ..Endpoint::default()
                },
                Endpoint {
                    ip: Some(ip("203.0.113.10")),
                    port: Some(443),
                    ..Endpoint::default()
                },
            ),
            host: HostFacts::default(),
        }
    }

    /// A local nginx[812] on 10.0.0.5:443 serving a remote client
    /// (198.51.100.7), with its site block selected for the SNI.
    pub fn server() -> Case {
        let block = nginx_block();
        Case {
            outcome: outcome(
                Role::Server,
                Endpoint {
                    ip: Some(ip("198.51.100.7")),
                    port: Some(50123),
                    ..Endpoint::default()
                },
                Endpoint {
                    ip: Some(ip("10.0.0.5")),
                    port: Some(443),
                    pid: Some(812),
                    comm: Some("nginx".to_string()),
                    exe: Some("/usr/sbin/nginx".to_string()),
                    ..Endpoint::default()
                },
            ),
            host: HostFacts {
                clock: Some(clock(true)),
                server_is_local: true,
                listeners_on_port: vec![listener("0.0.0.0", 443)],
                blocks_on_port: vec![block.clone()],
                selected_block: Some(block),
                ..HostFacts::default()
            },
        }
    }

    pub fn facts(&self) -> Facts<'_> {
        Facts {
            outcome: &self.outcome,
            host: &self.host,
        }
    }

    pub fn diagnose(&self) -> Diagnosis {
        diagnose(&self.facts())
    }

    pub fn rule(&self, rule: Rule) -> Option<Diagnosis> {
        rule(&self.facts())
    }

    // ---- wire ----

    pub fn sni(mut self, sni: Option<&str>) -> Self {
        self.outcome.tls.sni = sni.map(str::to_string);
        self
    }

    /// A ClientHello offering `versions` (e.g. ["TLS 1.2", "TLS 1.3"]).
    pub fn client_hello(mut self, versions: &[&str]) -> Self {
        let versions: Vec<String> = versions.iter().map(|v| v.to_string()).collect();
        let tls13 = versions.iter().any(|v| v == "TLS 1.3");
        self.outcome.tls.offered_versions = versions.clone();
        self.outcome.tls.client_hello = Some(ClientHelloFacts {
            time: Some(now()),
            legacy_version: if tls13 {
                "TLS 1.2".to_string()
            } else {
                versions.last().cloned().unwrap_or_default()
            },
            supported_versions: if tls13 { versions } else { Vec::new() },
            cipher_suites: vec![
                "TLS_AES_256_GCM_SHA384".to_string(),
                "TLS_AES_128_GCM_SHA256".to_string(),
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".to_string(),
            ],
            supported_groups: vec!["x25519".to_string(), "secp256r1".to_string()],
            random: "ab".repeat(32),
            ..ClientHelloFacts::default()
        });
        self.outcome.tls.messages.push(MessageFact {
            time: Some(now()),
            sender: Role::Client,
            message: "ClientHello".to_string(),
        });
        self
    }

    pub fn cipher_suites(mut self, suites: &[&str]) -> Self {
        if let Some(hello) = &mut self.outcome.tls.client_hello {
            hello.cipher_suites = suites.iter().map(|s| s.to_string()).collect();
        }
        self
    }

    pub fn server_hello(mut self, version: &str) -> Self {
        self.outcome.tls.negotiated_version = Some(version.to_string());
        self.outcome.tls.server_hello = Some(ServerHelloFacts {
            time: Some(now()),
            version: version.to_string(),
            cipher_suite: if version == "TLS 1.3" {
                "TLS_AES_256_GCM_SHA384".to_string()
            } else {
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".to_string()
            },
            random: "cd".repeat(32),
            ..ServerHelloFacts::default()
        });
        self.outcome.tls.messages.push(MessageFact {
            time: Some(now()),
            sender: Role::Server,
            message: "ServerHello".to_string(),
        });
        self
    }

    /// ClientHello (1.2 + 1.3) and ServerHello choosing TLS 1.3.
    pub fn tls13(self) -> Self {
        self.client_hello(&["TLS 1.2", "TLS 1.3"])
            .server_hello("TLS 1.3")
    }

    /// ClientHello and ServerHello at TLS 1.2, the server's Certificate
    /// message holding `certs` (visible in clear in 1.2).
    pub fn tls12_with_certs(mut self, certs: Vec<CertificateFact>) -> Self {
        self = self.client_hello(&["TLS 1.2"]).server_hello("TLS 1.2");
        self.outcome.tls.server_certificates = certs;
        self.outcome.tls.messages.push(MessageFact {
            time: Some(now()),
            sender: Role::Server,
            message: "Certificate".to_string(),
        });
        self
    }

    pub fn alert(mut self, sender: Role, code: u8) -> Self {
        let alert = AlertFact {
            time: Some(now()),
            sender,
            level: "fatal".to_string(),
            description: alert_name(code).to_string(),
            code,
        };
        if self.outcome.tls.alert.is_none() {
            self.outcome.tls.alert = Some(alert.clone());
        }
        self.outcome.tls.alerts.push(alert);
        self
    }

    pub fn encrypted(mut self, sender: Role, length: u16, probable_alert: bool) -> Self {
        self.outcome
            .tls
            .encrypted_records
            .push(EncryptedRecordFact {
                time: Some(now()),
                sender,
                content_type: 23,
                length,
                probable_alert,
            });
        self
    }

    pub fn non_tls(mut self, sender: Role, kind: &str, description: &str) -> Self {
        self.outcome.tls.non_tls = Some(NonTlsFact {
            sender,
            kind: kind.to_string(),
            description: description.to_string(),
        });
        self
    }

    pub fn certificate_requested(mut self, client_sent: Option<usize>) -> Self {
        self.outcome.tls.certificate_requested = true;
        self.outcome.tls.client_certificate_count = client_sent;
        self
    }

    // ---- OpenSSL ----

    pub fn call(mut self, function: &str, ret: i32) -> Self {
        self.outcome.openssl.calls.push(SslCallFact {
            time: now(),
            function: function.to_string(),
            ret,
        });
        self
    }

    /// An error-queue entry with the library's own text.
    pub fn error(mut self, lib: u32, code: u32, function: &str) -> Self {
        let text = reason_text(lib, code);
        self.outcome.openssl.reasons.push(text.clone());
        self.outcome.openssl.errors.push(OpensslErrorFact {
            time: now(),
            lib,
            reason: code,
            text,
            function: Some(function.to_string()),
            line: None,
        });
        self
    }

    pub fn ssl_error(self, code: u32, function: &str) -> Self {
        self.error(reason::LIB_SSL, code, function)
    }

    pub fn verify(mut self, code: i32) -> Self {
        self.outcome.openssl.verify_result = Some(VerifyResultFact {
            code,
            text: verify_text(code),
        });
        self
    }

    /// curl's client failing in `tls_post_process_server_certificate` with
    /// verify result `code`, and sending `alert` in clear (OpenSSL clients
    /// do, even in TLS 1.3).
    pub fn client_rejects_certificate(self, code: i32, alert: u8) -> Self {
        self.call("SSL_connect", -1)
            .ssl_error(
                reason::CERTIFICATE_VERIFY_FAILED,
                "tls_post_process_server_certificate",
            )
            .verify(code)
            .alert(Role::Client, alert)
    }

    /// nginx's `SSL_do_handshake` failing on the client's alert: the wire
    /// shows it in clear, the error queue as reason 1000 + alert.
    pub fn server_receives_alert(self, alert: u8) -> Self {
        self.call("SSL_do_handshake", -1)
            .ssl_error(reason::ALERT_OFFSET + u32::from(alert), "ssl3_read_bytes")
            .alert(Role::Client, alert)
    }

    // ---- sockets ----

    pub fn connect_refused(mut self) -> Self {
        self.outcome.socket.connect_errno = Some(libc::ECONNREFUSED);
        self.outcome.socket.connect_error = Some("ECONNREFUSED".to_string());
        self.outcome.socket.tcp_states = vec![
            TcpStateFact {
                time: now(),
                from: "CLOSE".to_string(),
                to: "SYN_SENT".to_string(),
            },
            TcpStateFact {
                time: now(),
                from: "SYN_SENT".to_string(),
                to: "CLOSE".to_string(),
            },
        ];
        self
    }

    pub fn established(mut self, sent: u64, received: u64) -> Self {
        self.outcome.socket.tcp_states.push(TcpStateFact {
            time: now(),
            from: "SYN_SENT".to_string(),
            to: "ESTABLISHED".to_string(),
        });
        self.outcome.socket.bytes_sent = sent;
        self.outcome.socket.bytes_received = received;
        self
    }

    /// "local" or "peer", relative to the observed process.
    pub fn closed_by(mut self, who: &str) -> Self {
        self.outcome.socket.closed_by = Some(who.to_string());
        self
    }

    pub fn reset_by_peer(mut self) -> Self {
        self.outcome.socket.reset_by_peer = true;
        self.outcome.socket.closed_by = Some("peer".to_string());
        self
    }

    pub fn stalled(mut self) -> Self {
        self.outcome.socket.stalled = true;
        self
    }

    pub fn server_at(mut self, addr: &str, port: u16) -> Self {
        self.outcome.server.ip = Some(ip(addr));
        self.outcome.server.port = Some(port);
        self
    }

    // ---- host ----

    pub fn with_host(mut self, edit: impl FnOnce(&mut HostFacts)) -> Self {
        edit(&mut self.host);
        self
    }

    pub fn configured_chain(self, r: ChainReport) -> Self {
        self.with_host(|h| h.configured_chain = Some(r))
    }

    pub fn wire_chain(self, r: ChainReport) -> Self {
        self.with_host(|h| h.wire_chain = Some(r))
    }

    pub fn clock(self, synchronized: bool) -> Self {
        self.with_host(|h| h.clock = Some(clock(synchronized)))
    }

    pub fn listeners(self, listeners: Vec<Listener>) -> Self {
        self.with_host(|h| h.listeners_on_port = listeners)
    }

    pub fn edit_block(self, edit: impl Fn(&mut ServerBlock)) -> Self {
        self.with_host(|h| {
            if let Some(b) = &mut h.selected_block {
                edit(b);
            }
            for b in &mut h.blocks_on_port {
                edit(b);
            }
        })
    }

    /// An nginx error-log line at `line` of /var/log/nginx/error.log.
    pub fn log(self, line: u64, level: &str, text: &str, indicates: Option<Cause>) -> Self {
        self.with_host(|h| {
            h.log_lines.push(ClassifiedLogLine {
                line: LogLine {
                    file: "/var/log/nginx/error.log".to_string(),
                    line,
                    time: Some(now()),
                    level: level.to_string(),
                    text: text.to_string(),
                    client: Some("198.51.100.7".to_string()),
                },
                indicates,
            })
        })
    }

    pub fn listen_overflows(self, overflows: u64) -> Self {
        self.with_host(|h| {
            h.listen_counters = Some(ListenCounters {
                listen_overflows: overflows,
                listen_drops: overflows,
            })
        })
    }
}

/// The cause that wins, and all causes that fired (winner first).
pub fn causes(d: &Diagnosis) -> Vec<Cause> {
    std::iter::once(d.cause)
        .chain(d.alternatives.iter().map(|a| a.cause))
        .collect()
}
