//! port-not-listening vs listener-bound-to-loopback vs
//! server-cannot-load-certificate, and handshake-aborted.

use super::scenario;
use crate::diagnosis::rules::aborted::handshake_aborted;
use crate::diagnosis::rules::connection::{
    KEY_VALUES_MISMATCH, listener_bound_to_loopback, port_not_listening,
    server_cannot_load_certificate,
};
use crate::diagnosis::rules::fixtures::*;
use crate::diagnosis::{Cause, Confidence, Source};
use crate::evidence::openssl::{reason, reason_text};
use crate::outcome::Role;

#[test]
fn the_key_mismatch_text_is_the_library_text() {
    assert_eq!(
        reason_text(reason::LIB_X509, reason::X509_KEY_VALUES_MISMATCH),
        KEY_VALUES_MISMATCH
    );
}

#[test]
fn nothing_listening_where_the_config_says_listen_is_a_down_service() {
    let case = scenario(Cause::PortNotListening);
    assert!(case.rule(listener_bound_to_loopback).is_none());
    assert!(case.rule(server_cannot_load_certificate).is_none());
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::PortNotListening);
    assert_eq!(d.confidence, Confidence::High);
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/site:2")
    );
    assert!(d.summary.contains("`listen 443 ssl`"), "{}", d.summary);
    assert!(d.summary.contains("nginx is down or has not been reloaded"));
    assert!(d.evidence.iter().any(
        |e| e.source == Source::Socket && e.fact.contains("10.0.0.5:443 failed: ECONNREFUSED")
    ));
}

#[test]
fn a_refusal_from_a_remote_server_is_medium() {
    let d = Case::client().connect_refused().diagnose();
    assert_eq!(d.cause, Cause::PortNotListening);
    assert_eq!(d.confidence, Confidence::Medium);
    assert!(d.remediation.contains("firewall"));
}

#[test]
fn a_listener_on_loopback_only_refuses_the_public_address() {
    let case = scenario(Cause::ListenerBoundToLoopback);
    assert!(case.rule(port_not_listening).is_none());
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::ListenerBoundToLoopback);
    assert_eq!(d.confidence, Confidence::High);
    assert!(
        d.summary.contains("only on 127.0.0.1, not on 10.0.0.5"),
        "{}",
        d.summary
    );
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/site:2")
    );
    assert!(
        d.remediation.starts_with("Change `listen 127.0.0.1:8443`"),
        "{}",
        d.remediation
    );
}

#[test]
fn wildcard_listeners_accept_every_address() {
    for addr in ["0.0.0.0", "::", "10.0.0.5"] {
        let case = scenario(Cause::ListenerBoundToLoopback).listeners(vec![listener(addr, 8443)]);
        assert!(case.rule(listener_bound_to_loopback).is_none(), "{addr}");
        // A listener that would have accepted: refused by a restart or a
        // firewall, which port-not-listening names at low confidence.
        let d = case.rule(port_not_listening).expect("fires");
        assert_eq!(d.confidence, Confidence::Low, "{addr}");
    }
}

#[test]
fn an_unloadable_certificate_explains_why_nothing_listens() {
    let case = scenario(Cause::ServerCannotLoadCertificate);
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::ServerCannotLoadCertificate);
    assert_eq!(d.confidence, Confidence::High);
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/site:12")
    );
    assert!(
        d.summary
            .contains("cannot load /etc/nginx/certs/site.crt (No such file or directory)"),
        "{}",
        d.summary
    );
    let refined = d
        .alternatives
        .iter()
        .find(|a| a.cause == Cause::PortNotListening)
        .expect("port-not-listening refined");
    assert!(refined.why.starts_with("nothing listens because"));
    assert!(
        d.evidence
            .iter()
            .any(|e| e.location.as_deref() == Some("/var/log/nginx/error.log:41"))
    );
    assert!(
        d.evidence
            .iter()
            .any(|e| e.location.as_deref() == Some("/etc/nginx/sites-enabled/site:12"))
    );
}

#[test]
fn a_key_mismatch_points_at_the_key_directive() {
    let d = scenario(Cause::PortNotListening)
        .with_host(|h| h.selected_block = Some(nginx_block()))
        .log(
            12,
            "emerg",
            "SSL_CTX_use_PrivateKey(\"/etc/nginx/certs/site.key\") failed (SSL: error:05800074:x509 certificate routines::key values mismatch)",
            Some(Cause::ServerCannotLoadCertificate),
        )
        .diagnose();
    assert_eq!(d.cause, Cause::ServerCannotLoadCertificate);
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/site:13")
    );
    assert!(
        d.summary.contains("private key does not match"),
        "{}",
        d.summary
    );
}

#[test]
fn a_certificate_log_line_with_a_live_listener_is_not_cannot_load() {
    // The old nginx keeps serving after a failed reload: whatever failed
    // this handshake, it was not a missing listener.
    let case =
        scenario(Cause::ServerCannotLoadCertificate).listeners(vec![listener("0.0.0.0", 443)]);
    assert!(case.rule(server_cannot_load_certificate).is_none());
}

#[test]
fn a_reset_after_the_client_hello_is_handshake_aborted() {
    let d = scenario(Cause::HandshakeAborted).diagnose();
    assert_eq!(d.cause, Cause::HandshakeAborted);
    assert_eq!(d.confidence, Confidence::Medium);
    assert!(
        d.summary
            .contains("the server reset the connection before the ServerHello"),
        "{}",
        d.summary
    );
}

#[test]
fn listen_queue_overflow_makes_handshake_aborted_certain() {
    let d = Case::client()
        .server_at("10.0.0.5", 443)
        .client_hello(&["TLS 1.2", "TLS 1.3"])
        .established(517, 0)
        .stalled()
        .closed_by("local")
        .with_host(|h| {
            h.server_is_local = true;
            let mut l = listener("0.0.0.0", 443);
            l.accept_queue = 512;
            l.backlog = 511;
            h.listeners_on_port = vec![l];
            h.blocks_on_port = vec![nginx_block()];
        })
        .listen_overflows(1200)
        .diagnose();
    assert_eq!(d.cause, Cause::HandshakeAborted);
    assert_eq!(d.confidence, Confidence::High);
    assert!(
        d.evidence
            .iter()
            .any(|e| e.fact.contains("ListenOverflows +1200"))
    );
    assert!(
        d.evidence
            .iter()
            .any(|e| e.fact.contains("is full (512/511"))
    );
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/site:2")
    );
    assert!(d.remediation.contains("`listen 443 ssl backlog=4096`"));
}

#[test]
fn an_abort_after_server_hello_is_only_a_low_guess() {
    let d = Case::client()
        .tls13()
        .established(517, 1400)
        .encrypted(Role::Server, 1200, false)
        .reset_by_peer()
        .diagnose();
    assert_eq!(d.cause, Cause::HandshakeAborted);
    assert_eq!(d.confidence, Confidence::Low);
}

#[test]
fn a_visible_alert_is_never_handshake_aborted() {
    let case = scenario(Cause::NoSharedCipher)
        .established(200, 7)
        .closed_by("local");
    assert!(case.rule(handshake_aborted).is_none());
    let case = scenario(Cause::Unknown).established(517, 7).reset_by_peer();
    assert!(case.rule(handshake_aborted).is_none());
}

/// A server whose accept queue is full: later SYNs are dropped, the
/// client's connect times out (seen from the client only: the server never
/// accepted). Recorded as handshake-aborted with the queue as evidence.
#[test]
fn a_connect_timing_out_at_a_full_accept_queue_is_handshake_aborted() {
    let full = |queue: u32| {
        move |h: &mut crate::diagnosis::host::HostFacts| {
            h.server_is_local = true;
            let mut l = listener("127.0.0.1", 4433);
            l.comm = Some("openssl".into());
            l.accept_queue = queue;
            l.backlog = 1;
            h.listeners_on_port = vec![l];
        }
    };
    let d = Case::client()
        .server_at("127.0.0.1", 4433)
        .connect_timed_out()
        .with_host(full(2))
        .listen_overflows(26)
        .diagnose();
    assert_eq!(d.cause, Cause::HandshakeAborted, "{d:#?}");
    assert_eq!(d.confidence, Confidence::High);
    assert!(
        d.summary.contains("accept queue is full (2/1)"),
        "{}",
        d.summary
    );
    assert!(d.evidence.iter().any(|e| e.fact.contains("timed out")));
    assert!(
        d.evidence
            .iter()
            .any(|e| e.fact.contains("ListenOverflows +26"))
    );
    assert!(d.remediation.contains("somaxconn"), "{}", d.remediation);
    // Not a refusal: nothing says port-not-listening.
    assert!(!causes(&d).contains(&Cause::PortNotListening));

    // A timeout with nothing to show why stays unexplained (unknown keeps
    // the errno).
    let d = Case::client()
        .server_at("127.0.0.1", 4433)
        .connect_timed_out()
        .with_host(full(0))
        .diagnose();
    assert_eq!(d.cause, Cause::Unknown, "{d:#?}");
    assert!(d.evidence.iter().any(|e| e.fact.contains("ETIMEDOUT")));
}

fn load(
    pid: u32,
    comm: &str,
    open: u64,
    limit: u64,
    state: char,
) -> crate::evidence::process::ProcessLoad {
    crate::evidence::process::ProcessLoad {
        pid,
        comm: comm.into(),
        state,
        open_fds: Some(open),
        fd_limit: Some(limit),
        cpu_pressure: None,
    }
}

/// nginx's worker at its descriptor limit: connections queue in the
/// kernel, the ClientHello is never answered, the client gives up.
#[test]
fn a_worker_at_its_fd_limit_makes_clients_give_up() {
    let d = Case::client()
        .server_at("127.0.0.1", 443)
        .client_hello(&["TLS 1.2", "TLS 1.3"])
        .established(517, 0)
        .stalled()
        .closed_by("local")
        .with_host(|h| {
            h.server_is_local = true;
            h.listeners_on_port = vec![listener("0.0.0.0", 443)];
            h.blocks_on_port = vec![nginx_block()];
            h.listener_load = vec![
                load(812, "nginx", 3, 1024, 'S'),
                load(813, "nginx", 20, 20, 'S'),
            ];
        })
        .diagnose();
    assert_eq!(d.cause, Cause::HandshakeAborted);
    assert_eq!(d.confidence, Confidence::High);
    assert!(
        d.summary
            .contains("nginx[813] is at its open-file limit (20)"),
        "{}",
        d.summary
    );
    assert!(d.evidence.iter().any(|e| e.fact.contains("EMFILE")));
    assert!(d.remediation.contains("LimitNOFILE"), "{}", d.remediation);
    assert!(d.remediation.contains("worker_rlimit_nofile"));
}

#[test]
fn a_stopped_or_starved_server_is_named() {
    let case = |p: crate::evidence::process::ProcessLoad, host_pressure: Option<u32>| {
        Case::client()
            .server_at("127.0.0.1", 4433)
            .client_hello(&["TLS 1.3"])
            .established(517, 0)
            .reset_by_peer()
            .with_host(move |h| {
                h.server_is_local = true;
                h.listeners_on_port = vec![listener("127.0.0.1", 4433)];
                h.listener_load = vec![p];
                h.cpu_pressure = host_pressure;
            })
            .diagnose()
    };
    let d = case(load(999, "openssl", 5, 1024, 'T'), None);
    assert_eq!(d.cause, Cause::HandshakeAborted);
    assert_eq!(d.confidence, Confidence::High);
    assert!(d.remediation.contains("kill -CONT"), "{}", d.remediation);
    let mut starved = load(999, "openssl", 5, 1024, 'R');
    starved.cpu_pressure = Some(85);
    let d = case(starved, None);
    assert_eq!(d.confidence, Confidence::Medium);
    assert!(d.evidence.iter().any(|e| e.fact.contains("85%")));
    let d = case(load(999, "openssl", 5, 1024, 'R'), Some(70));
    assert!(
        d.evidence
            .iter()
            .any(|e| e.fact.contains("/proc/pressure/cpu"))
    );
    // An idle, healthy server: the plain medium guess.
    let d = case(load(999, "openssl", 5, 1024, 'S'), Some(3));
    assert_eq!(d.confidence, Confidence::Medium);
    assert!(!d.evidence.iter().any(|e| e.fact.contains("pressure")));
}

#[test]
fn a_client_that_leaves_at_once_is_not_explained_by_load() {
    // python sends its ClientHello and closes within milliseconds on a busy
    // host: it waited for nothing, so CPU pressure there is no cause.
    let case = |waited_ms: i64| {
        let mut case = Case::client()
            .server_at("127.0.0.1", 4433)
            .client_hello(&["TLS 1.3"])
            .established(517, 0)
            .closed_by("local")
            .with_host(|h| {
                h.server_is_local = true;
                h.listeners_on_port = vec![listener("127.0.0.1", 4433)];
                h.listener_load = vec![load(999, "nginx", 5, 1024, 'S')];
                h.cpu_pressure = Some(90);
            });
        case.outcome.end_time = case.outcome.time + chrono::TimeDelta::milliseconds(waited_ms);
        case.diagnose()
    };
    let quick = case(3);
    assert_eq!(quick.cause, Cause::HandshakeAborted);
    assert!(
        !quick.evidence.iter().any(|e| e.fact.contains("pressure")),
        "{quick:#?}"
    );
    assert!(!quick.summary.contains("CPU"), "{}", quick.summary);
    // A client that gave up after waiting seconds: the load is evidence.
    let waited = case(5000);
    assert!(
        waited.evidence.iter().any(|e| e.fact.contains("pressure")),
        "{waited:#?}"
    );
}

/// ListenOverflows is the host's counter: another listener overflowing at
/// the same time must not hide this one's own sign (its process out of
/// descriptors), whose fix is the descriptor limit.
#[test]
fn a_process_at_its_fd_limit_goes_before_the_hosts_overflow_counter() {
    let d = Case::client()
        .server_at("127.0.0.1", 443)
        .client_hello(&["TLS 1.3"])
        .established(517, 0)
        .stalled()
        .closed_by("local")
        .with_host(|h| {
            h.server_is_local = true;
            h.listeners_on_port = vec![listener("127.0.0.1", 443)];
            h.listener_load = vec![load(813, "python3", 33, 32, 'S')];
        })
        .listen_overflows(5)
        .diagnose();
    assert_eq!(d.cause, Cause::HandshakeAborted);
    assert!(
        d.summary.contains("is at its open-file limit (32)"),
        "{}",
        d.summary
    );
    assert!(d.remediation.contains("ulimit -n"), "{}", d.remediation);
    assert!(
        d.evidence
            .iter()
            .any(|e| e.fact.contains("ListenOverflows +5"))
    );
}
