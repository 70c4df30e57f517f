//! Root causes: the engine that runs the rules over a failure's facts. The
//! classes and the shape of a diagnosis are the catalogue's
//! (`crate::catalogue`, re-exported here).

pub mod checks;
pub mod discovery;
pub mod engine;
pub mod host;
mod host_cache;
pub mod rules;

pub use crate::catalogue::{
    Alternative, Cause, Confidence, Diagnosis, Evidence, SPECIFICITY, Source,
};
use crate::diagnosis::host::HostFacts;
use crate::outcome::HandshakeOutcome;

/// What the rules read: one handshake outcome (wire, OpenSSL and socket
/// facts, from the observed end) and the host state around it (empty when
/// the server is not on this host).
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub outcome: &'a HandshakeOutcome,
    pub host: &'a HostFacts,
}

/// Pairs `(refining, refined, why)`: when both fire, the refining cause
/// explains why the refined one's evidence appeared, so it wins whatever the
/// two confidences are, and the refined one stays as an alternative with
/// this why. (Each refining rule fires only on the state that makes it the
/// explanation: clock-skew only with an untrustworthy clock or a peer whose
/// judgement this host's synchronized clock contradicts; sni-default only
/// when the default block served or no SNI was sent; cannot-load only with
/// its certificate unreadable or logged as such.)
pub const REFINEMENTS: &[(Cause, Cause, &str)] = &[
    (
        Cause::ClockSkew,
        Cause::CertificateExpired,
        "the certificate only looks expired if the clock is wrong; if the clock is in fact right, it really is expired and must be renewed",
    ),
    (
        Cause::ClockSkew,
        Cause::CertificateNotYetValid,
        "the certificate only looks not yet valid if the clock is wrong; if the clock is in fact right, it really is post-dated",
    ),
    (
        Cause::SniDefaultCertificate,
        Cause::HostnameMismatch,
        "the name does not match because the default server's certificate was served",
    ),
    (
        Cause::ServerCannotLoadCertificate,
        Cause::PortNotListening,
        "nothing listens because the server could not load its certificate",
    ),
];

/// Names the root cause of a failed handshake.
///
/// Precedence, in order:
/// 1. every rule in `rules::RULES` runs; none firing gives `unknown`, which
///    keeps every raw fact in its evidence;
/// 2. a cause refined by another that also fired (`REFINEMENTS`) steps
///    aside, whatever its confidence;
/// 3. of the rest, the highest confidence wins, ties going to the more
///    specific class (`SPECIFICITY`);
/// 4. every other cause that fired is attached as an alternative with its
///    why, after the alternatives the winning rule named itself.
///
/// Successes get a trivial diagnosis: the engine is meant for failures.
pub fn diagnose(facts: &Facts) -> Diagnosis {
    if !facts.outcome.is_failure() {
        return Diagnosis::new(
            Cause::Unknown,
            Confidence::Low,
            "the handshake succeeded: nothing to diagnose",
        );
    }
    let fired: Vec<Diagnosis> = rules::RULES
        .iter()
        .filter_map(|(_, rule)| rule(facts))
        .collect();
    if fired.is_empty() {
        return rules::unknown(facts);
    }
    let refined_by = |d: &Diagnosis| {
        REFINEMENTS
            .iter()
            .find(|(refining, refined, _)| {
                *refined == d.cause && fired.iter().any(|o| o.cause == *refining)
            })
            .map(|(_, _, why)| *why)
    };
    let (mut ranked, stepped_aside): (Vec<&Diagnosis>, Vec<&Diagnosis>) =
        fired.iter().partition(|d| refined_by(d).is_none());
    ranked.sort_by_key(|d| (std::cmp::Reverse(d.confidence), d.cause.specificity()));
    let Some((&winner, others)) = ranked.split_first() else {
        // Refinement never removes every candidate (a refining cause is
        // itself never refined), but fall back honestly if the table changes.
        return rules::unknown(facts);
    };
    let mut diagnosis = winner.clone();
    let mut alternatives = std::mem::take(&mut diagnosis.alternatives);
    for other in stepped_aside {
        alternatives.push(Alternative {
            cause: other.cause,
            why: format!(
                "{} ({})",
                refined_by(other).unwrap_or_default(),
                other.summary
            ),
        });
    }
    for other in others {
        alternatives.push(Alternative {
            cause: other.cause,
            why: format!(
                "also fits, {} confidence: {}",
                confidence_word(other.confidence),
                other.summary
            ),
        });
    }
    let mut seen = vec![diagnosis.cause];
    alternatives.retain(|a| {
        let first = !seen.contains(&a.cause);
        seen.push(a.cause);
        first
    });
    diagnosis.alternatives = alternatives;
    note_container(&mut diagnosis, facts);
    diagnosis
}

/// When the files a diagnosis cites belong to a containerised server, says
/// so: the paths are the container's, and the fix is made inside it (or in
/// the image or volume it comes from), not on the host.
fn note_container(diagnosis: &mut Diagnosis, facts: &Facts) {
    let Some(block) = &facts.host.selected_block else {
        return;
    };
    let (Some(context), Some(base)) = (block.root.context(), block.root.base()) else {
        return;
    };
    let cites_files = diagnosis.fix_location.is_some()
        || diagnosis
            .evidence
            .iter()
            .any(|e| e.source == Source::Host && e.location.is_some());
    if !cites_files {
        return;
    }
    diagnosis.evidence.push(Evidence::new(
        Source::Host,
        format!(
            "the server runs {context}: its files are named as it sees them, read through {}",
            base.display()
        ),
    ));
    if diagnosis.fix_location.is_some() && !diagnosis.remediation.is_empty() {
        diagnosis.remediation = format!(
            "{} (the file is {context}: change it there, or in the image or volume it comes from)",
            diagnosis.remediation
        );
    }
}

fn confidence_word(confidence: Confidence) -> &'static str {
    match confidence {
        Confidence::Low => "low",
        Confidence::Medium => "medium",
        Confidence::High => "high",
    }
}
