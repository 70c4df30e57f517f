//! One rule per catalogue class: plain functions from facts to a diagnosis.
//!
//! A rule answers "does this failure look like my class, how sure am I, and
//! what is the proof and the fix?" and returns `None` when its evidence is
//! absent. It never reads anything: the facts hold all it may use, so a
//! flood of failures is diagnosed without touching the host again. The
//! engine (`diagnosis::diagnose`) runs every rule and picks the best.
//!
//! A new cause is one function here plus its tests, and one line in `RULES`.

mod aborted;
pub mod after_handshake;
mod chain;
mod cite;
pub mod clock;
mod connection;
mod directives;
pub mod log_text;
mod matching;
mod names;
mod negotiation;
mod plaintext;
pub mod signals;
mod unknown;
mod validity;

#[cfg(any(test, feature = "test-support"))]
pub mod fixtures;
#[cfg(test)]
mod tests;

use crate::diagnosis::{Cause, Diagnosis, Facts};
use crate::evidence::server_config::Setting;
use crate::outcome::Role;

pub use unknown::unknown;

/// A rule: `Some` when the facts show its class.
pub type Rule = fn(&Facts) -> Option<Diagnosis>;

/// Every rule, with the class it diagnoses. `unknown` is not here: the engine
/// falls back to it when none of these fires.
pub const RULES: &[(Cause, Rule)] = &[
    (Cause::ChainIncomplete, chain::chain_incomplete),
    (Cause::UntrustedRoot, chain::untrusted_root),
    (Cause::HostnameMismatch, names::hostname_mismatch),
    (Cause::SniDefaultCertificate, names::sni_default_certificate),
    (Cause::CertificateExpired, validity::certificate_expired),
    (
        Cause::CertificateNotYetValid,
        validity::certificate_not_yet_valid,
    ),
    (Cause::ClockSkew, validity::clock_skew),
    (
        Cause::ProtocolVersionMismatch,
        negotiation::protocol_version_mismatch,
    ),
    (Cause::NoSharedCipher, negotiation::no_shared_cipher),
    (Cause::WeakCryptoRejected, negotiation::weak_crypto_rejected),
    (
        Cause::ClientCertificateRequired,
        negotiation::client_certificate_required,
    ),
    (Cause::PortNotListening, connection::port_not_listening),
    (
        Cause::ListenerBoundToLoopback,
        connection::listener_bound_to_loopback,
    ),
    (
        Cause::ServerCannotLoadCertificate,
        connection::server_cannot_load_certificate,
    ),
    (Cause::HandshakeAborted, aborted::handshake_aborted),
    (Cause::PlaintextToTlsPort, plaintext::plaintext_to_tls_port),
    (Cause::TlsToPlaintextPort, plaintext::tls_to_plaintext_port),
];

/// Who failed to talk to whom, for the start of a summary:
/// "curl[4242] → site.example:443 (10.0.0.5)" seen from a local client,
/// "nginx[812] serving site.example:443 to 10.0.0.9" from a local server.
pub(crate) fn headline(f: &Facts) -> String {
    match f.role() {
        Role::Client => format!("{} → {}", f.process(Role::Client), f.target()),
        Role::Server => {
            let client = f
                .outcome
                .client
                .ip
                .map(|ip| format!(" to {ip}"))
                .unwrap_or_default();
            format!("{} serving {}{client}", f.process(Role::Server), f.target())
        }
    }
}

/// The server's certificate file as a remediation names it:
/// "/etc/nginx/certs/site.crt (ssl_certificate at /etc/nginx/sites-enabled/site:12)",
/// with the setting's location for `fix_location`.
pub(crate) struct CertificateFile {
    pub described: String,
    pub location: String,
    pub reload: &'static str,
}

pub(crate) fn certificate_file(f: &Facts) -> Option<CertificateFile> {
    let (directive, setting) = f.certificate_setting()?;
    let kind = f.server_kind()?;
    Some(CertificateFile {
        described: describe_setting(directive, setting),
        location: setting.location(),
        reload: directives::reload_command(kind),
    })
}

/// "/path (directive at file:line)".
pub(crate) fn describe_setting(directive: &str, setting: &Setting<std::path::PathBuf>) -> String {
    format!(
        "{} ({directive} at {})",
        setting.value.display(),
        setting.location()
    )
}
