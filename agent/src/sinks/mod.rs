//! Sinks: where a finished [`HandshakeOutcome`](crate::outcome::HandshakeOutcome)
//! goes once diagnosis is done: the local journal (the embedded default), the
//! console, OTLP traces and Prometheus metrics. Each takes outcomes by
//! reference and never blocks the pipeline that produces them.

pub mod console;
pub mod journal;
pub mod metrics;
pub mod otlp;
