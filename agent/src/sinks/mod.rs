//! Sinks: where a finished [`HandshakeOutcome`](crate::outcome::HandshakeOutcome)
//! goes once diagnosis is done. Each sink takes outcomes by reference and must
//! never block the pipeline that produces them.

pub mod metrics;
pub mod otlp;
