//! Diagnosis of finished outcomes: host facts (cached) plus the rules, and
//! one root cause for both ends of a local handshake (`pairing`).

use std::time::Instant;

use crate::diagnosis::host::HostState;
use crate::diagnosis::pairing::Pairing;
use crate::diagnosis::rules::after_handshake;
use crate::diagnosis::{Facts, diagnose};
use crate::evidence::certificates::CertificateCache;
use crate::outcome::{HandshakeOutcome, HandshakeResult};

/// Diagnoses failures as they come, reusing the cached host state.
#[derive(Default)]
pub struct Diagnoser {
    host: HostState,
    certificates: CertificateCache,
    pairing: Pairing,
}

impl Diagnoser {
    pub fn new() -> Self {
        Diagnoser::default()
    }

    /// Names the cause of a failure. A success is left as it is unless host
    /// state shows it failed after the handshake (then it becomes a
    /// failure, diagnosed).
    /// Returns false for a tentative outcome whose port host state shows not
    /// to serve TLS: it was plain traffic, not a failure.
    pub fn diagnose(&mut self, outcome: &mut HandshakeOutcome) -> bool {
        if outcome.tentative {
            if !self.host.port_serves_tls(outcome) {
                return false;
            }
            outcome.tentative = false;
        }
        if !outcome.is_failure() {
            // A handshake both ends completed can still have failed one
            // layer up (curl's own name check, nginx's ssl_verify_client):
            // the wire says when to look, host state decides.
            if !after_handshake::worth_checking(outcome) {
                return true;
            }
            let host = self.host.facts_for(outcome);
            let failed = after_handshake::failed(&Facts {
                outcome,
                host: &host,
            });
            if failed {
                outcome.result = HandshakeResult::Failure;
                let diagnosis = diagnose(&Facts {
                    outcome,
                    host: &host,
                });
                outcome.set_diagnosis(diagnosis);
            }
            return true;
        }
        let host = self.host.facts_for(outcome);
        let diagnosis = diagnose(&Facts {
            outcome,
            host: &host,
        });
        outcome.set_diagnosis(diagnosis);
        true
    }

    /// Fills a (sampled, exported) success's certificate facts.
    pub fn parse_certificates(&mut self, outcome: &mut HandshakeOutcome) {
        outcome.tls.parse_certificates(&mut self.certificates);
    }

    pub fn host_state(&mut self) -> &mut HostState {
        &mut self.host
    }

    /// Hands a diagnosed outcome to the pairing of a handshake's two ends:
    /// returns what is ready for the sinks now (the outcome, both reconciled
    /// ends, or nothing while it waits for its other end).
    pub fn pair(&mut self, outcome: HandshakeOutcome) -> Vec<HandshakeOutcome> {
        self.pairing.offer(outcome, Instant::now())
    }

    /// Outcomes that waited long enough for their other end.
    pub fn pairs_due(&mut self) -> Vec<HandshakeOutcome> {
        self.pairing.due(Instant::now())
    }

    /// Every outcome still waiting (shutdown).
    pub fn pairs_drain(&mut self) -> Vec<HandshakeOutcome> {
        self.pairing.drain()
    }
}
