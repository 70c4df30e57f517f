//! Diagnosis of finished outcomes: host facts (cached) plus the rules.

use crate::diagnosis::{Facts, diagnose};
use crate::evidence::host::HostState;
use crate::outcome::HandshakeOutcome;

/// Diagnoses failures as they come, reusing the cached host state.
#[derive(Default)]
pub struct Diagnoser {
    host: HostState,
}

impl Diagnoser {
    pub fn new() -> Self {
        Diagnoser::default()
    }

    /// Names the cause of a failure (successes are left as they are).
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

    pub fn host_state(&mut self) -> &mut HostState {
        &mut self.host
    }
}
