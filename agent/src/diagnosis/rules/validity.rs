//! certificate-expired, certificate-not-yet-valid and clock-skew: a
//! certificate outside its validity window, or a clock that makes a good
//! certificate look so.
//!
//! Who judged the dates matters. This host's OpenSSL (verify 9/10) and the
//! host's chain analysis use this host's clock: clock-skew refines the other
//! two (see `diagnosis::REFINEMENTS`) only when the clock readings show it
//! off by about the gap (`rules::clock::judge`); an unsynchronized clock
//! alone, seconds off at most, is a note in the date verdict's evidence. A
//! remote peer's alert uses the peer's clock: when this host's synchronized
//! clock finds the served chain valid, the peer's clock is the suspect.
//! Alert 45 (certificate_expired) names expiry; not-yet-valid has no alert
//! of its own — OpenSSL sends 42 (bad_certificate), as for a name mismatch,
//! so host state must decide.

use chrono::{DateTime, TimeDelta, Utc};

use crate::diagnosis::{Cause, Confidence, Diagnosis, Evidence, Facts, Source};
use crate::evidence::certificates::{CertificateFact, ChainFinding};
use crate::evidence::openssl::{VerifyResultFact, verify};
use crate::outcome::Role;

use super::cite::human_duration;
use super::clock::{self, ClockJudgement, Verdict};
use super::signals::SeenAlert;
use super::{certificate_file, headline};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    Expired,
    NotYetValid,
}

impl Window {
    fn verify_code(self) -> i32 {
        match self {
            Window::Expired => verify::CERT_HAS_EXPIRED,
            Window::NotYetValid => verify::CERT_NOT_YET_VALID,
        }
    }

    fn finding_matches(self, finding: &ChainFinding) -> bool {
        match self {
            Window::Expired => matches!(finding, ChainFinding::Expired { .. }),
            Window::NotYetValid => matches!(finding, ChainFinding::NotYetValid { .. }),
        }
    }

    fn outside(self, cert: &CertificateFact, at: DateTime<Utc>) -> bool {
        match self {
            Window::Expired => cert.not_after < at,
            Window::NotYetValid => cert.not_before > at,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Window::Expired => "expired",
            Window::NotYetValid => "not yet valid",
        }
    }

    fn verdict(self) -> Verdict {
        match self {
            Window::Expired => Verdict::Expired,
            Window::NotYetValid => Verdict::NotYetValid,
        }
    }

    /// How far `at` is outside `cert`'s window on this side.
    fn gap(self, cert: &CertificateFact, at: DateTime<Utc>) -> Option<TimeDelta> {
        match self {
            Window::Expired => (at > cert.not_after).then(|| at - cert.not_after),
            Window::NotYetValid => (at < cert.not_before).then(|| cert.not_before - at),
        }
    }
}

/// Whose certificate failed the date check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Whose {
    Server,
    Client,
}

/// What the facts say about one validity window.
struct WindowSignals<'a> {
    /// This host's OpenSSL judged the dates (with this host's clock).
    local_verify: Option<(&'a VerifyResultFact, Whose)>,
    /// The date-specific alert (45 for expiry) from the peer that judged.
    specific_alert: Option<(SeenAlert, Whose)>,
    /// bad_certificate (42) or certificate_unknown (46) from the client: an
    /// alert naming no reason, shared with a name mismatch or a weak key.
    shared_alert: Option<SeenAlert>,
    /// Host chain analysis and wire leaf dates, both against this host's clock.
    chain: Vec<Evidence>,
    /// The certificate whose dates are in question, for sentences.
    cert: Option<CertificateFact>,
    /// Index in the chain of that certificate (0 = leaf).
    index: usize,
}

impl WindowSignals<'_> {
    fn any(&self) -> bool {
        self.local_verify.is_some()
            || self.specific_alert.is_some()
            || self.shared_alert.is_some()
            || !self.chain.is_empty()
    }

    /// How the clock readings bear on this verdict, when it was reached
    /// with this host's clock (a local verify result or the host's chain
    /// analysis) and the clock cannot vouch for dates on its own.
    fn clock_judgement(&self, f: &Facts, window: Window) -> Option<ClockJudgement> {
        let clock = f.host.clock.as_ref()?;
        let judged_here = self.local_verify.is_some() || !self.chain.is_empty();
        if !judged_here {
            return None;
        }
        let gap = self.cert.as_ref().and_then(|c| window.gap(c, f.when()));
        let judgement = clock::judge(clock, window.verdict(), gap);
        (judgement.explains.is_some() || clock::untrustworthy(clock)).then_some(judgement)
    }

    fn whose(&self) -> Whose {
        self.local_verify
            .map(|(_, w)| w)
            .or(self.specific_alert.map(|(_, w)| w))
            .unwrap_or(Whose::Server)
    }
}

fn window_signals<'a>(f: &Facts<'a>, window: Window) -> WindowSignals<'a> {
    let code = [window.verify_code()];
    let local_verify = f
        .server_cert_verify(&code)
        .map(|v| (v, Whose::Server))
        .or_else(|| {
            f.client_cert_verify()
                .filter(|v| v.code == window.verify_code())
                .map(|v| (v, Whose::Client))
        });
    let specific_alert = match window {
        Window::Expired => f
            .alert_from(Role::Client, &[45])
            .map(|a| (a, Whose::Server))
            .or_else(|| {
                f.alert_from(Role::Server, &[45])
                    .map(|a| (a, Whose::Client))
            }),
        Window::NotYetValid => None,
    };
    // An alert that names no reason: OpenSSL sends 42 for a certificate not
    // yet valid (and for a name mismatch or a weak key); Go sends 42 and
    // JSSE 46 for every verification failure, an expired certificate too.
    // OpenSSL checks the name before the dates: with a name gap shown too,
    // an alert 42 is no sign of expiry.
    let name_gap = !f
        .findings(|x| matches!(x, ChainFinding::NameMismatch { .. }))
        .is_empty();
    let shared_alert = match window {
        Window::NotYetValid => f.alert_from(Role::Client, &[42, 46]),
        Window::Expired if !name_gap => f.alert_from(Role::Client, &[42, 46]),
        Window::Expired => None,
    };

    let mut chain = Vec::new();
    let mut cert = None;
    let mut index = 0;
    let setting = f.certificate_setting().map(|(_, s)| s.location());
    for (report, finding) in f.findings(|x| window.finding_matches(x)) {
        let e = super::cite::finding_evidence(report, finding);
        chain.push(match (&setting, report.source.as_str()) {
            (Some(location), source) if source != "wire" => e.at(location.clone()),
            _ => e,
        });
        if cert.is_none() {
            index = match finding {
                ChainFinding::Expired { index, .. } | ChainFinding::NotYetValid { index, .. } => {
                    *index
                }
                _ => 0,
            };
            cert = report.certificates.get(index).cloned();
        }
    }
    if let Some(leaf) = f.wire_leaf().filter(|c| window.outside(c, f.when())) {
        chain.push(Evidence::new(
            Source::Wire,
            format!(
                "the leaf the server sent (\"{}\") is valid {} to {}; the failure happened at {}",
                leaf.subject,
                leaf.not_before.format("%Y-%m-%d"),
                leaf.not_after.format("%Y-%m-%d"),
                f.when().format("%Y-%m-%d %H:%M UTC")
            ),
        ));
        if cert.is_none() {
            cert = Some(leaf.clone());
            index = 0;
        }
    }
    WindowSignals {
        local_verify,
        specific_alert,
        shared_alert,
        chain,
        cert,
        index,
    }
}

/// The served chain is inside its window by this host's clock. What the wire
/// showed was served for certain; the configured file only if the running
/// server has loaded it, so it comes last.
fn served_chain_valid_here(f: &Facts) -> bool {
    let wire = &f.outcome.tls.server_certificates;
    let certs: Vec<&CertificateFact> = if !wire.is_empty() {
        wire.iter().collect()
    } else if let Some(report) = f
        .host
        .wire_chain
        .as_ref()
        .or(f.host.configured_chain.as_ref())
    {
        report.certificates.iter().collect()
    } else {
        Vec::new()
    };
    !certs.is_empty()
        && certs
            .iter()
            .all(|c| c.not_before <= f.when() && f.when() <= c.not_after)
}

fn validity_rule(f: &Facts, window: Window) -> Option<Diagnosis> {
    let s = window_signals(f, window);
    if !s.any() {
        return None;
    }
    let mut evidence = Vec::new();
    let confidence = validity_confidence(f, &s, window, &mut evidence)?;
    evidence.extend(s.chain.iter().cloned());
    // The verdict was this host's clock's: say what that clock is worth
    // (clock-skew, which refines this class, fires when it explains it).
    if let Some(judgement) = s.clock_judgement(f, window)
        && judgement.explains.is_none()
    {
        evidence.extend(judgement.note());
    }

    let whose = s.whose();
    let cause = match window {
        Window::Expired => Cause::CertificateExpired,
        Window::NotYetValid => Cause::CertificateNotYetValid,
    };
    let which = match (whose, s.index) {
        (Whose::Client, _) => "the client's certificate".to_string(),
        (Whose::Server, 0) => "the server's certificate".to_string(),
        (Whose::Server, i) => format!("certificate #{i} of the server's chain (an intermediate)"),
    };
    let dates = s
        .cert
        .as_ref()
        .map(|c| match window {
            Window::Expired => format!(" (notAfter {})", c.not_after.format("%Y-%m-%d %H:%M UTC")),
            Window::NotYetValid => {
                format!(" (notBefore {})", c.not_before.format("%Y-%m-%d %H:%M UTC"))
            }
        })
        .unwrap_or_default();

    // A renewed file that the running server has not loaded: the wire shows
    // an expired leaf, the configured file a different, valid one.
    let stale = match (window, f.wire_leaf(), f.configured_leaf()) {
        (Window::Expired, Some(served), Some(on_disk)) => {
            served.sha256 != on_disk.sha256
                && window.outside(served, f.when())
                && !window.outside(on_disk, f.when())
        }
        _ => false,
    };

    let summary = if stale {
        format!(
            "{}: the server still serves an expired certificate{dates}; the renewed one on disk has not been loaded",
            headline(f)
        )
    } else {
        format!("{}: {which} is {}{dates}", headline(f), window.words())
    };
    let mut diagnosis = Diagnosis::new(cause, confidence, summary).with_evidence(evidence);
    diagnosis = with_validity_fix(f, diagnosis, whose, window, s.index, stale, &dates);
    if confidence == Confidence::Low && window == Window::NotYetValid {
        diagnosis = diagnosis
            .or_maybe(
                Cause::HostnameMismatch,
                "OpenSSL clients send bad_certificate (42) for a name mismatch too",
            )
            .or_maybe(
                Cause::WeakCryptoRejected,
                "and for a certificate key too weak for their security level",
            );
    }
    Some(diagnosis)
}

/// How sure a date verdict is, from whose judgement it is (this host's
/// verify result, the peer's alert, the host's chain analysis); `None` when
/// nothing says the dates are the problem. Pushes the deciding evidence.
fn validity_confidence(
    f: &Facts,
    s: &WindowSignals,
    window: Window,
    evidence: &mut Vec<Evidence>,
) -> Option<Confidence> {
    let rejection = f.server_certificate_rejection();
    let confidence = if let Some((v, _)) = s.local_verify {
        evidence.push(f.verify_evidence(v));
        Confidence::High
    } else if let Some((alert, whose)) = s.specific_alert {
        evidence.push(alert.evidence());
        // The peer says expired while this host's synchronized clock finds
        // the served chain valid: the peer's clock is the suspect (clock-skew).
        let contradicted =
            whose == Whose::Server && f.trustworthy_clock().is_some() && served_chain_valid_here(f);
        if contradicted {
            Confidence::Low
        } else {
            Confidence::High
        }
    } else if !s.chain.is_empty() {
        if let Some(alert) = s.shared_alert {
            evidence.push(alert.evidence());
            Confidence::High
        } else if !rejection.is_empty() {
            // Rejected for another stated reason (unknown_ca, X509 20):
            // the dates are a second problem, not necessarily this one.
            evidence.extend(rejection);
            Confidence::Medium
        } else if f.client_gave_up_after_server_hello() {
            Confidence::Low
        } else {
            return None;
        }
    } else if let Some(alert) = s.shared_alert {
        // bad_certificate alone: only without host analysis to contradict it
        // and without a verify result of the client's naming another reason.
        if f.chain_reports().next().is_some()
            || f.server_cert_verify_any().is_some()
            || window != Window::NotYetValid
        {
            return None;
        }
        evidence.push(alert.evidence());
        Confidence::Low
    } else {
        return None;
    };
    Some(confidence)
}

/// The fix: load the renewed file, renew or replace the certificate (named
/// where the host shows it), or have the peer's operator do so.
fn with_validity_fix(
    f: &Facts,
    diagnosis: Diagnosis,
    whose: Whose,
    window: Window,
    index: usize,
    stale: bool,
    dates: &str,
) -> Diagnosis {
    match (whose, certificate_file(f)) {
        (Whose::Server, Some(cert)) if stale => diagnosis
            .fix(format!(
                "{} already holds a certificate valid until {}, but the running server still serves the old one: {}.",
                cert.described,
                f.configured_leaf()
                    .map(|c| c.not_after.format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
                cert.reload
            ))
            .fix_at(Some(cert.location)),
        (Whose::Server, Some(cert)) => {
            let action = match (window, index) {
                (Window::Expired, 0) => "Renew the certificate".to_string(),
                (Window::Expired, _) => {
                    "Replace the expired intermediate with the CA's current one".to_string()
                }
                (Window::NotYetValid, _) => {
                    "Install a certificate that is valid now (or wait until its notBefore)".to_string()
                }
            };
            diagnosis
                .fix(format!(
                    "{action} in {}, then {}. If the certificate's dates look right, check the clock of the side that rejected it (timedatectl).",
                    cert.described, cert.reload
                ))
                .fix_at(Some(cert.location))
        }
        (Whose::Server, None) => diagnosis.fix(format!(
            "The certificate of {} is {}{dates}: its operator must replace it. If the date looks wrong, check the clock of the side that judged it (timedatectl).",
            f.target(),
            window.words()
        )),
        (Whose::Client, _) => diagnosis.fix(format!(
            "Issue the client a new certificate{} — the one it presents is {}.",
            if window == Window::Expired { "" } else { " that is valid now" },
            window.words()
        )),
    }
}

pub fn certificate_expired(f: &Facts) -> Option<Diagnosis> {
    validity_rule(f, Window::Expired)
}

pub fn certificate_not_yet_valid(f: &Facts) -> Option<Diagnosis> {
    validity_rule(f, Window::NotYetValid)
}

/// How far the failure time is outside a certificate's window, in words.
fn distance(cert: &CertificateFact, at: DateTime<Utc>) -> Option<String> {
    if at > cert.not_after {
        Some(format!(
            "{} after its notAfter",
            human_duration(at - cert.not_after)
        ))
    } else if at < cert.not_before {
        Some(format!(
            "{} before its notBefore",
            human_duration(cert.not_before - at)
        ))
    } else {
        None
    }
}

pub fn clock_skew(f: &Facts) -> Option<Diagnosis> {
    let expired = window_signals(f, Window::Expired);
    let not_yet = window_signals(f, Window::NotYetValid);
    let gave_up_or_rejected =
        !f.server_certificate_rejection().is_empty() || f.client_gave_up_after_server_hello();
    // Date verdicts reached with THIS host's clock, tied to this failure,
    // and a clock shown off by about the gap.
    let judged_here = [(Window::Expired, &expired), (Window::NotYetValid, &not_yet)]
        .into_iter()
        .filter(|(_, s)| s.local_verify.is_some() || (!s.chain.is_empty() && gave_up_or_rejected))
        .find_map(|(window, s)| {
            let judgement = s.clock_judgement(f, window)?;
            let confidence = judgement.explains?;
            Some((window, s, judgement, confidence))
        });

    if let Some((window, signals, judgement, confidence)) = judged_here {
        // A remote client, with a clock of its own, calling the certificate
        // expired corroborates the dates rather than the skew.
        let remote_agrees = f.role() == Role::Server
            && f.outcome.client.pid.is_none()
            && f.alert_from(Role::Client, &[45]).is_some();
        if remote_agrees {
            return None;
        }
        let mut evidence = judgement.evidence;
        if let Some((v, _)) = signals.local_verify {
            evidence.push(f.verify_evidence(v));
        }
        evidence.extend(signals.chain.iter().cloned());
        let how_far = signals
            .cert
            .as_ref()
            .and_then(|c| distance(c, f.when()))
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        let summary = format!(
            "{}: this host's clock is off and read {}; the certificate only looks {} by it{how_far}",
            headline(f),
            f.when().format("%Y-%m-%d %H:%M UTC"),
            window.words()
        );
        return Some(
            Diagnosis::new(Cause::ClockSkew, confidence, summary)
                .with_evidence(evidence)
                .fix(
                    "Set this host's clock right: check `timedatectl` and `chronyc tracking`, enable NTP (`timedatectl set-ntp true`, or start chronyd/systemd-timesyncd), then retry. If the clock is in fact right, the certificate itself must be replaced.",
                ),
        );
    }

    // The remote client called the certificate expired, but this host's
    // synchronized clock finds the whole served chain valid.
    if f.role() == Role::Server
        && let Some(alert) = f.alert_from(Role::Client, &[45])
        && let Some(clock) = f.trustworthy_clock()
        && served_chain_valid_here(f)
    {
        let client = f
            .outcome
            .client
            .ip
            .map(|ip| format!(" ({ip})"))
            .unwrap_or_default();
        let mut evidence = vec![alert.evidence(), clock::adjtimex_evidence(clock)];
        if let Some(leaf) = f.configured_leaf().or(f.wire_leaf()) {
            evidence.push(Evidence::new(
                Source::Host,
                format!(
                    "the served leaf \"{}\" is valid {} to {} by this host's clock",
                    leaf.subject,
                    leaf.not_before.format("%Y-%m-%d"),
                    leaf.not_after.format("%Y-%m-%d")
                ),
            ));
        }
        return Some(
            Diagnosis::new(
                Cause::ClockSkew,
                Confidence::Medium,
                format!(
                    "{}: the client{client} says the certificate expired, but it is valid by this host's synchronized clock: the client's clock is probably wrong",
                    headline(f)
                ),
            )
            .with_evidence(evidence)
            .fix(format!(
                "Fix the clock on the client{client} (enable NTP there); the server's certificate is fine."
            )),
        );
    }
    None
}
