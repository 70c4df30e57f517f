//! Both ends of one handshake, one root cause.
//!
//! When client and server are both on this host the agent records each end
//! (same ClientHello random), diagnosed from that end's facts. The ends can
//! disagree: the client's OpenSSL says its verify failed on a weak key while
//! the server, which only received alert 42 (bad_certificate), guesses a
//! certificate that is not yet valid. The sink thread holds such an outcome
//! for a moment ([`HOLD`]) until its other end arrives, then [`reconcile`]s
//! the pair: the end with the stronger evidence decides, the other adopts
//! its diagnosis (keeping what it had concluded alone as an alternative).
//! A wire-only end's guess at a failure that the other end's OpenSSL saw
//! complete (a GnuTLS or Go client's TLS 1.3 close read as an abort) is no
//! failure at all.
//!
//! Strength of an end's evidence, strongest first: its own X.509 verify
//! result; its own OpenSSL reason (not a received alert); OpenSSL's view of
//! an alert it received; the wire alone. Equal strength goes to the higher
//! confidence, then to the more specific class. `unknown` never wins over a
//! named cause.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::diagnosis::{Alternative, Cause, Confidence, Evidence, Source};
use crate::evidence::openssl::received_alert;
use crate::outcome::{HandshakeOutcome, HandshakeResult, Role};

/// How long an outcome waits for its other end. Both ends of a local
/// handshake conclude within about a second of each other (assembly lingers
/// 0.3 s after a failure, 1.5 s after a completion).
pub const HOLD: Duration = Duration::from_secs(3);
/// How often the sink thread looks for outcomes held long enough.
pub const TICK: Duration = Duration::from_millis(250);
/// Outcomes held at most; past it the oldest is released unpaired.
const MAX_HELD: usize = 4096;

/// Outcomes waiting for their other end, by ClientHello random.
#[derive(Default)]
pub struct Pairing {
    held: HashMap<String, (Instant, HandshakeOutcome)>,
    order: VecDeque<(Instant, String)>,
    /// Pairs whose ends disagreed and were reconciled.
    pub reconciled: u64,
    /// Wire-only failures the other end's OpenSSL saw succeed.
    pub not_failures: u64,
}

/// The key pairing an outcome with its other end: the ClientHello random,
/// when the other end is a process on this host (its pid is known).
fn pair_key(outcome: &HandshakeOutcome) -> Option<String> {
    let peer = match outcome.role {
        Role::Client => &outcome.server,
        Role::Server => &outcome.client,
    };
    peer.pid?;
    let random = &outcome.tls.client_hello.as_ref()?.random;
    (!random.is_empty()).then(|| random.clone())
}

impl Pairing {
    /// Takes a diagnosed outcome. Returns what is ready for the sinks: the
    /// outcome itself when it has no other end to wait for, both ends
    /// (reconciled) when this completes a pair, nothing while it waits.
    pub fn offer(&mut self, outcome: HandshakeOutcome, now: Instant) -> Vec<HandshakeOutcome> {
        let Some(key) = pair_key(&outcome) else {
            return vec![outcome];
        };
        if let Some((_, other)) = self.held.get(&key)
            && other.role != outcome.role
            && let Some((_, mut other)) = self.held.remove(&key)
        {
            let mut outcome = outcome;
            match reconcile(&mut outcome, &mut other) {
                Reconciled::Agreed => {}
                Reconciled::Adopted => self.reconciled += 1,
                Reconciled::NotAFailure => self.not_failures += 1,
            }
            return vec![other, outcome];
        }
        let mut out = Vec::new();
        // The same end twice (a retried handshake reusing a random is not
        // a thing; a duplicate is): release the first.
        if let Some((_, old)) = self.held.remove(&key) {
            out.push(old);
        }
        if self.held.len() >= MAX_HELD {
            out.extend(self.release_oldest());
        }
        self.order.push_back((now, key.clone()));
        self.held.insert(key, (now, outcome));
        out
    }

    /// Outcomes that waited [`HOLD`] without their other end.
    pub fn due(&mut self, now: Instant) -> Vec<HandshakeOutcome> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < HOLD {
                break;
            }
            out.extend(self.release_oldest());
        }
        out
    }

    /// Everything held (shutdown).
    pub fn drain(&mut self) -> Vec<HandshakeOutcome> {
        self.order.clear();
        self.held.drain().map(|(_, (_, o))| o).collect()
    }

    fn release_oldest(&mut self) -> Option<HandshakeOutcome> {
        while let Some((at, key)) = self.order.pop_front() {
            // Entries of keys already paired (or re-held later) are stale.
            if self
                .held
                .get(&key)
                .is_some_and(|(held_at, _)| *held_at == at)
            {
                return self.held.remove(&key).map(|(_, o)| o);
            }
        }
        None
    }

    /// Outcomes waiting now.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// What [`reconcile`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconciled {
    /// Nothing to do: the ends agree (or neither failed).
    Agreed,
    /// One end adopted the other's diagnosis.
    Adopted,
    /// A wire-only end's failure was a success by the other end's OpenSSL.
    NotAFailure,
}

/// How strong an end's evidence for its diagnosis is (higher wins).
fn strength(o: &HandshakeOutcome) -> (u8, Confidence, std::cmp::Reverse<usize>) {
    let ssl = &o.openssl;
    let own_verify = ssl.verify_result.as_ref().is_some_and(|v| v.code != 0);
    let own_reason = ssl
        .errors
        .iter()
        .any(|e| received_alert(e.lib, e.reason).is_none());
    let rank = if o.cause == Cause::Unknown {
        0
    } else if own_verify {
        4
    } else if own_reason {
        3
    } else if !ssl.calls.is_empty() || !ssl.errors.is_empty() {
        2
    } else {
        1
    };
    (
        rank,
        o.diagnosis.confidence,
        std::cmp::Reverse(o.cause.specificity()),
    )
}

/// The handshake completed by this end's OpenSSL.
fn openssl_completed(o: &HandshakeOutcome) -> bool {
    o.openssl.errors.is_empty()
        && o.openssl.calls.iter().any(|c| {
            c.ret == 1
                && matches!(
                    c.function.as_str(),
                    "SSL_do_handshake" | "SSL_accept" | "SSL_connect"
                )
        })
}

/// A failure inferred from the wire alone, naming no precise mechanism.
fn wire_only_guess(o: &HandshakeOutcome) -> bool {
    o.openssl.calls.is_empty()
        && o.openssl.errors.is_empty()
        && matches!(o.cause, Cause::HandshakeAborted | Cause::Unknown)
        && o.diagnosis.confidence < Confidence::High
}

/// A client end that closed the connection itself before it received the
/// ServerHello: it never saw the server's certificate.
fn left_before_the_certificate(o: &HandshakeOutcome) -> bool {
    o.role == Role::Client
        && o.tls.server_hello.is_none()
        && o.socket.closed_by.as_deref() == Some("local")
}

/// Causes that need the client to have judged the server's certificate: a
/// server end guessing one from a client that left without a word is wrong
/// when the client's own end shows it left before the certificate came.
fn about_the_certificate(cause: Cause) -> bool {
    matches!(
        cause,
        Cause::ChainIncomplete
            | Cause::UntrustedRoot
            | Cause::CertificateExpired
            | Cause::CertificateNotYetValid
            | Cause::ClockSkew
            | Cause::HostnameMismatch
            | Cause::SniDefaultCertificate
            | Cause::WeakCryptoRejected
    )
}

fn end_name(o: &HandshakeOutcome) -> String {
    let end = o.local();
    match (&end.comm, end.pid) {
        (Some(comm), Some(pid)) => format!("{comm}[{pid}]"),
        _ => format!("the {}", o.role.as_str()),
    }
}

/// Gives both ends of one handshake one root cause (see the module docs).
pub fn reconcile(a: &mut HandshakeOutcome, b: &mut HandshakeOutcome) -> Reconciled {
    match (a.is_failure(), b.is_failure()) {
        (false, false) => Reconciled::Agreed,
        (true, false) => success_overrules(a, b),
        (false, true) => success_overrules(b, a),
        (true, true) => {
            if a.cause == b.cause {
                return Reconciled::Agreed;
            }
            if left_before_the_certificate(a) && about_the_certificate(b.cause) {
                adopt(b, a);
            } else if left_before_the_certificate(b) && about_the_certificate(a.cause) {
                adopt(a, b);
            } else if strength(a) >= strength(b) {
                adopt(b, a);
            } else {
                adopt(a, b);
            }
            Reconciled::Adopted
        }
    }
}

/// `failed`'s wire-only guess is no failure when `succeeded`'s OpenSSL
/// completed the handshake.
fn success_overrules(failed: &mut HandshakeOutcome, succeeded: &HandshakeOutcome) -> Reconciled {
    if !(wire_only_guess(failed) && openssl_completed(succeeded)) {
        return Reconciled::Agreed;
    }
    failed.result = HandshakeResult::Success;
    let mut note = crate::diagnosis::Diagnosis::new(
        Cause::Unknown,
        Confidence::Low,
        format!(
            "not a failure: {}'s OpenSSL completed this handshake (same ClientHello random)",
            end_name(succeeded)
        ),
    );
    note.evidence.push(Evidence::new(
        Source::Openssl,
        format!(
            "the {} end ({}) returned 1 from its handshake call",
            succeeded.role.as_str(),
            end_name(succeeded)
        ),
    ));
    failed.set_diagnosis(note);
    Reconciled::NotAFailure
}

/// `weak` takes `strong`'s diagnosis, noting where it came from and keeping
/// its own conclusion as an alternative.
fn adopt(weak: &mut HandshakeOutcome, strong: &HandshakeOutcome) {
    let own = weak.diagnosis.clone();
    let mut diagnosis = strong.diagnosis.clone();
    diagnosis.evidence.insert(
        0,
        Evidence::new(
            Source::Wire,
            format!(
                "the {} end of this handshake ({}, same ClientHello random) has the stronger evidence; it decided the cause",
                strong.role.as_str(),
                end_name(strong)
            ),
        ),
    );
    diagnosis.alternatives.retain(|a| a.cause != own.cause);
    if own.cause != diagnosis.cause {
        diagnosis.alternatives.insert(
            0,
            Alternative {
                cause: own.cause,
                why: format!(
                    "what this end ({}) concluded from its own evidence: {}",
                    end_name(weak),
                    own.summary
                ),
            },
        );
    }
    weak.set_diagnosis(diagnosis);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::rules::fixtures::{Case, SITE_CERT, intermediate, report, site_leaf};
    use crate::evidence::certificates::ChainFinding;
    use crate::evidence::openssl::{reason, verify};

    /// Diagnoses a case and gives both ends the same ClientHello random and
    /// each other's pid, as assembly does for a local pair.
    fn end(case: Case) -> HandshakeOutcome {
        let mut o = case.outcome.clone();
        let d = case.diagnose();
        o.set_diagnosis(d);
        o.client.pid = Some(4242);
        o.server.pid = Some(812);
        if let Some(hello) = &mut o.tls.client_hello {
            hello.random = "ab".repeat(32);
        }
        o
    }

    /// The lab's case: the client's OpenSSL refused a 1024-bit key (X509
    /// 66); the server only saw alert 42 and, with the host's chain
    /// analysis showing a post-dated leaf, guessed not-yet-valid.
    fn weak_key_pair() -> (HandshakeOutcome, HandshakeOutcome) {
        let client = end(Case::client()
            .tls13()
            .client_rejects_certificate(verify::EE_KEY_TOO_SMALL, 42));
        let post_dated = crate::diagnosis::rules::fixtures::valid_between(
            site_leaf(),
            crate::diagnosis::rules::fixtures::days(2),
            crate::diagnosis::rules::fixtures::days(300),
        );
        let server = end(Case::server()
            .tls13()
            .server_receives_alert(42)
            .configured_chain(report(
                SITE_CERT,
                vec![post_dated, intermediate()],
                verify::CERT_NOT_YET_VALID,
                vec![ChainFinding::NotYetValid {
                    index: 0,
                    subject: "CN=site.example".into(),
                    not_before: crate::diagnosis::rules::fixtures::now()
                        + crate::diagnosis::rules::fixtures::days(2),
                }],
            )));
        (client, server)
    }

    #[test]
    fn a_verify_result_beats_an_alert_guess() {
        let (mut client, mut server) = weak_key_pair();
        assert_eq!(client.cause, Cause::WeakCryptoRejected);
        assert_eq!(server.cause, Cause::CertificateNotYetValid);
        assert_eq!(reconcile(&mut server, &mut client), Reconciled::Adopted);
        assert_eq!(server.cause, Cause::WeakCryptoRejected);
        assert_eq!(server.diagnosis.cause, Cause::WeakCryptoRejected);
        assert_eq!(client.cause, Cause::WeakCryptoRejected);
        assert!(
            server.diagnosis.evidence[0].fact.contains("client end"),
            "{:#?}",
            server.diagnosis
        );
        assert_eq!(
            server.diagnosis.alternatives[0].cause,
            Cause::CertificateNotYetValid
        );
        // Symmetric in the order the ends arrive.
        let (mut client, mut server) = weak_key_pair();
        reconcile(&mut client, &mut server);
        assert_eq!(server.cause, Cause::WeakCryptoRejected);
    }

    #[test]
    fn unknown_never_wins_and_agreement_changes_nothing() {
        let mut named = end(Case::client()
            .tls13()
            .client_rejects_certificate(verify::HOSTNAME_MISMATCH, 42));
        let mut unknown = end(Case::server()
            .tls13()
            .call("SSL_do_handshake", -1)
            .ssl_error(reason::ALERT_OFFSET + 46, "ssl3_read_bytes"));
        unknown.set_diagnosis(crate::diagnosis::Diagnosis::new(
            Cause::Unknown,
            Confidence::Low,
            "?",
        ));
        reconcile(&mut unknown, &mut named);
        assert_eq!(unknown.cause, Cause::HostnameMismatch);
        let mut a = named.clone();
        let mut b = named.clone();
        b.role = Role::Server;
        assert_eq!(reconcile(&mut a, &mut b), Reconciled::Agreed);
        assert_eq!(a.diagnosis, named.diagnosis);
    }

    #[test]
    fn a_servers_completed_handshake_overrules_a_wire_only_guess() {
        // GnuTLS (no uprobes) read as aborted; nginx's SSL_do_handshake
        // returned 1.
        let mut client = end(Case::client()
            .tls13()
            .encrypted(Role::Client, 24, true)
            .closed_by("local")
            .established(600, 3000));
        client.openssl = Default::default();
        assert_eq!(client.cause, Cause::HandshakeAborted);
        let mut server = end(Case::server().tls13().call("SSL_do_handshake", 1));
        server.result = HandshakeResult::Success;
        assert_eq!(reconcile(&mut client, &mut server), Reconciled::NotAFailure);
        assert!(!client.is_failure());
        // A failure with OpenSSL evidence of its own stands.
        let mut curl = end(Case::client()
            .tls13()
            .client_rejects_certificate(verify::HOSTNAME_MISMATCH, 42));
        assert_eq!(reconcile(&mut curl, &mut server), Reconciled::Agreed);
        assert!(curl.is_failure());
    }

    #[test]
    fn a_client_that_left_before_the_server_hello_saw_no_certificate() {
        // python sends a ClientHello and closes; nginx, which had answered
        // with a certificate this host does not trust, reads the silent
        // departure as a rejection of it. The client never received it.
        let client = end(Case::client()
            .tls13()
            .client_hello(&["TLS 1.3"])
            .established(517, 0)
            .closed_by("local"));
        let mut client = client;
        client.tls.server_hello = None;
        assert_eq!(client.cause, Cause::HandshakeAborted);
        let mut server = end(Case::server()
            .tls13()
            .closed_by("peer")
            .configured_chain(report(
                SITE_CERT,
                vec![site_leaf(), intermediate()],
                verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
                vec![ChainFinding::UntrustedRoot {
                    root: "CN=Lab Root CA".into(),
                }],
            )));
        server
            .openssl
            .errors
            .push(crate::evidence::openssl::OpensslErrorFact {
                time: crate::diagnosis::rules::fixtures::now(),
                lib: reason::LIB_SSL,
                reason: reason::UNEXPECTED_EOF_WHILE_READING,
                text: "unexpected eof while reading".into(),
                function: None,
                line: None,
            });
        assert_eq!(
            server.cause,
            Cause::UntrustedRoot,
            "{:#?}",
            server.diagnosis
        );
        assert_eq!(reconcile(&mut client, &mut server), Reconciled::Adopted);
        assert_eq!(
            server.cause,
            Cause::HandshakeAborted,
            "{:#?}",
            server.diagnosis
        );
        assert_eq!(client.cause, Cause::HandshakeAborted);
    }

    #[test]
    fn the_sink_holds_an_end_until_its_other_end_arrives() {
        let (client, server) = weak_key_pair();
        let mut pairing = Pairing::default();
        let t0 = Instant::now();
        assert!(pairing.offer(server, t0).is_empty());
        assert_eq!(pairing.held(), 1);
        let both = pairing.offer(client, t0 + Duration::from_millis(400));
        assert_eq!(both.len(), 2);
        assert!(both.iter().all(|o| o.cause == Cause::WeakCryptoRejected));
        assert_eq!(pairing.reconciled, 1);
        assert_eq!(pairing.held(), 0);
        // Alone, an end is released after HOLD.
        let (client, _) = weak_key_pair();
        assert!(pairing.offer(client, t0).is_empty());
        assert!(pairing.due(t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(pairing.due(t0 + HOLD).len(), 1);
        // A remote peer (no pid) is never held.
        let (mut client, _) = weak_key_pair();
        client.server.pid = None;
        assert_eq!(pairing.offer(client, t0).len(), 1);
        // Shutdown releases all.
        let (client, _) = weak_key_pair();
        pairing.offer(client, t0);
        assert_eq!(pairing.drain().len(), 1);
    }

    #[test]
    fn holding_is_bounded() {
        let mut pairing = Pairing::default();
        let t0 = Instant::now();
        let mut released = 0;
        for i in 0..(MAX_HELD + 5) {
            let (mut client, _) = weak_key_pair();
            if let Some(h) = &mut client.tls.client_hello {
                h.random = format!("{i:064x}");
            }
            released += pairing.offer(client, t0).len();
        }
        assert_eq!(pairing.held(), MAX_HELD);
        assert_eq!(released, 5);
    }
}
