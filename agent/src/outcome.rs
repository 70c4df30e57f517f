//! One finished (or failed) handshake as seen from one end on this host: the
//! record the journal stores, the OTLP exporter turns into a span and the CLI
//! prints.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::{Cause, Diagnosis};
pub use crate::evidence::Role;
use crate::evidence::openssl::OpensslFacts;
use crate::evidence::sockets::SocketFacts;
use crate::evidence::wire::TlsFacts;

/// Did the handshake complete?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandshakeResult {
    Success,
    Failure,
}

/// One end of the connection. Process fields are set when that end is a
/// process on this host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Container id parsed from the process's cgroup path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Runtime of that container (`docker`, `containerd`, `cri-o`,
    /// `podman`), from the cgroup path or the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    /// Kubernetes pod of the process: the UID from the cgroup path, names
    /// from the API server when the agent runs in a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8sPod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

/// Where a process runs in Kubernetes. Each field is set when known: the
/// pod UID comes from the cgroup path alone, the names need the API server
/// (and a pod the agent's index already holds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct K8sPod {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The container's name in the pod spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// A handshake outcome: the facts, and the diagnosis of a failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandshakeOutcome {
    /// Unique per outcome on this host.
    pub id: String,
    /// When the connection attempt began (connect/accept).
    pub time: DateTime<Utc>,
    /// When the outcome was decided.
    pub end_time: DateTime<Utc>,
    pub role: Role,
    pub result: HandshakeResult,
    /// Catalogue id of the root cause (`unknown` when none fits).
    pub cause: Cause,
    pub client: Endpoint,
    pub server: Endpoint,
    pub tls: TlsFacts,
    pub openssl: OpensslFacts,
    pub socket: SocketFacts,
    pub diagnosis: Diagnosis,
    /// Host name of the machine that observed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// No TLS byte was exchanged: this is a failure only if the port serves
    /// TLS, which host state must confirm (plain HTTP to an nginx TLS port
    /// never reaches OpenSSL; a refused connect to a port only a config
    /// names as TLS). Never journaled.
    #[serde(skip)]
    pub tentative: bool,
}

impl HandshakeOutcome {
    /// The endpoint of the observed process.
    pub fn local(&self) -> &Endpoint {
        match self.role {
            Role::Client => &self.client,
            Role::Server => &self.server,
        }
    }

    pub fn is_failure(&self) -> bool {
        self.result == HandshakeResult::Failure
    }

    /// Sets the diagnosis and keeps `cause` in step with it.
    pub fn set_diagnosis(&mut self, diagnosis: Diagnosis) {
        self.cause = diagnosis.cause;
        self.diagnosis = diagnosis;
    }
}

/// A representative failure for tests of the sinks, rules and state:
/// tests build their outcomes from it (`..sample_failure()`), so a new
/// field is filled in here only.
#[cfg(any(test, feature = "test-support"))]
pub fn sample_failure() -> HandshakeOutcome {
    let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    HandshakeOutcome {
        id: "sample".to_string(),
        time: t,
        end_time: t,
        role: Role::Client,
        result: HandshakeResult::Failure,
        cause: Cause::Unknown,
        client: Endpoint {
            ip: Some(IpAddr::from([127, 0, 0, 1])),
            port: Some(40000),
            pid: Some(4242),
            comm: Some("curl".into()),
            ..Default::default()
        },
        server: Endpoint {
            ip: Some(IpAddr::from([127, 0, 0, 1])),
            port: Some(8443),
            ..Default::default()
        },
        tls: TlsFacts::default(),
        openssl: OpensslFacts::default(),
        socket: SocketFacts::default(),
        diagnosis: Diagnosis::undiagnosed(),
        host: None,
        tentative: false,
    }
}
