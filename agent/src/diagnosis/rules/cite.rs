//! Evidence sentences: each fact cited the same way by every rule, with its
//! source letter and, for host facts, the file:line it came from.

use crate::diagnosis::{Evidence, Source};
use crate::evidence::certificates::{ChainFinding, ChainReport};
use crate::evidence::logs::LogLine;
use crate::evidence::openssl::{OpensslErrorFact, VerifyResultFact, reason};
use crate::evidence::server_config::Setting;
use crate::outcome::Role;

/// Evidence for a setting: "ssl_protocols TLSv1.2 TLSv1.3" at its file:line.
pub fn setting_evidence<T>(
    name: &str,
    setting: &Setting<T>,
    value: impl std::fmt::Display,
) -> Evidence {
    Evidence::new(Source::Host, format!("{name} {value}")).at(setting.location())
}

pub fn log_evidence(line: &LogLine) -> Evidence {
    Evidence::new(
        Source::Host,
        format!("server log [{}]: {}", line.level, line.text.trim()),
    )
    .at(format!("{}:{}", line.file, line.line))
}

pub fn ssl_error_evidence(role: Role, error: &OpensslErrorFact) -> Evidence {
    let lib = match error.lib {
        reason::LIB_SSL => "SSL",
        reason::LIB_X509 => "X509",
        reason::LIB_PEM => "PEM",
        reason::LIB_SYS => "system",
        _ => "lib",
    };
    let function = error
        .function
        .as_deref()
        .map(|f| format!(" in {f}"))
        .unwrap_or_default();
    Evidence::new(
        Source::Openssl,
        format!(
            "{}'s OpenSSL error \"{}\" ({lib} reason {}){function}",
            role.as_str(),
            error.text,
            error.reason
        ),
    )
}

pub fn verify_evidence(role: Role, verify: &VerifyResultFact) -> Evidence {
    let whose = match role {
        Role::Client => "the server's",
        Role::Server => "the client's",
    };
    Evidence::new(
        Source::Openssl,
        format!(
            "{}'s OpenSSL verified {whose} certificate: X509 error {} \"{}\"",
            role.as_str(),
            verify.code,
            verify.text
        ),
    )
}

/// Evidence for a chain finding, located at the file the report read (or
/// "wire" for a chain captured on the wire).
pub fn finding_evidence(report: &ChainReport, finding: &ChainFinding) -> Evidence {
    let (source, origin) = if report.source == "wire" {
        (Source::Wire, "the chain the server sent".to_string())
    } else {
        (Source::Host, report.source.clone())
    };
    let text = match finding {
        ChainFinding::MissingIntermediate { issuer } => format!(
            "{origin} holds {} certificate(s); the leaf's issuer \"{issuer}\" is neither in it nor a trust anchor",
            report.certificates.len()
        ),
        ChainFinding::WrongOrder => format!("{origin} is not in leaf-to-root order"),
        ChainFinding::UntrustedRoot { root } => {
            format!("{origin} ends in root \"{root}\", which the trust store does not hold")
        }
        ChainFinding::SelfSignedLeaf { subject } => {
            format!("{origin}: leaf \"{subject}\" is self-signed and not trusted")
        }
        ChainFinding::Expired {
            index,
            subject,
            not_after,
        } => format!(
            "{origin}: certificate #{index} \"{subject}\" expired at {}",
            not_after.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        ChainFinding::NotYetValid {
            index,
            subject,
            not_before,
        } => format!(
            "{origin}: certificate #{index} \"{subject}\" is not valid before {}",
            not_before.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        ChainFinding::NameMismatch { name, sans } => format!(
            "{origin}: the leaf does not cover \"{name}\" (it names {})",
            if sans.is_empty() {
                "no SANs".to_string()
            } else {
                sans.join(", ")
            }
        ),
        ChainFinding::WeakKey {
            index,
            subject,
            key_type,
            bits,
        } => format!(
            "{origin}: certificate #{index} \"{subject}\" has a weak {bits}-bit {key_type} key"
        ),
        ChainFinding::WeakSignature {
            index,
            subject,
            algorithm,
        } => {
            format!("{origin}: certificate #{index} \"{subject}\" is signed with weak {algorithm}")
        }
        ChainFinding::Unreadable { path, error } => {
            format!("{path} cannot be used: {error}")
        }
    };
    Evidence::new(source, text)
}

/// Roughly how long a span is, for sentences ("3 days", "2 hours").
pub fn human_duration(span: chrono::TimeDelta) -> String {
    let secs = span.num_seconds().unsigned_abs();
    match secs {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3_600 => format!("{} hours", s / 3_600),
        s if s >= 2 * 60 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}
