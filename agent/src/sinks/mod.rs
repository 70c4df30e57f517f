//! Where outcomes go: the local journal (the embedded default), the console,
//! and (when configured) OTLP and metrics.

pub mod console;
pub mod journal;
