//! Diagnosis of finished outcomes (PENDING: rules and host-state merge).

use crate::outcome::HandshakeOutcome;

#[derive(Default)]
pub struct Diagnoser {}

impl Diagnoser {
    pub fn new() -> Self {
        Diagnoser {}
    }

    pub fn diagnose(&mut self, _outcome: &mut HandshakeOutcome) {}
}
