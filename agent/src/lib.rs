//! tlsdoctor: finds out why TLS handshakes fail on this host.
//!
//! Data flows one way: kernel events (`capture`) → connection and handshake
//! assembly (`assembly`) → evidence (`evidence`) → diagnosis (`diagnosis`) →
//! sinks (`sinks`: journal, OTLP, console). `k8s` names the pods of the
//! processes when the agent runs in a Kubernetes cluster.

pub mod assembly;
pub mod capture;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod diagnosis;
pub mod evidence;
pub mod health;
pub mod k8s;
pub mod malloc;
pub mod outcome;
pub mod pipeline;
pub mod probe;
pub mod queue_budget;
pub mod sinks;
pub mod text;
