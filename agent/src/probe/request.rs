//! The client-certificate check: when the server asked for a certificate
//! and the handshake completed without one, a second connection sends a
//! request, as a client would, to see whether the server insists (an alert,
//! an HTTP 400) or serves it anyway.

use super::handshake::Attempt;
use super::report::ClientCertificateCheck;
use super::target::Target;

/// `GET /` as curl sends it, for the client-certificate check.
pub(super) fn http_request(target: &Target, name: &str) -> Vec<u8> {
    let host = if name.contains(':') {
        format!("[{name}]")
    } else {
        name.to_string()
    };
    let host = if target.port == 443 {
        host
    } else {
        format!("{host}:{}", target.port)
    };
    format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tlsdoctor-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// The reply's status line and whether it refuses for want of a certificate.
pub(super) fn http_verdict(reply: &[u8]) -> Option<(String, bool)> {
    let text = String::from_utf8_lossy(reply);
    let status_line = text.lines().next()?.trim().to_string();
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    let refused = (400..500).contains(&code) && text.to_ascii_lowercase().contains("certificate");
    Some((status_line, refused))
}

/// The phrase of an HTML error page that names the reason (nginx: "No
/// required SSL certificate was sent").
pub(super) fn certificate_phrase(reply: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(reply);
    text.split(['<', '>', '\n'])
        .map(str::trim)
        .find(|s| s.to_ascii_lowercase().contains("certificate") && s.len() < 200)
        .map(str::to_string)
}

fn received_alert(attempt: &Attempt) -> Option<u8> {
    attempt
        .errors
        .iter()
        .find_map(|e| crate::evidence::openssl::received_alert(e.lib, e.reason))
}

/// Does the server insist on the certificate it asked for?
pub(super) fn client_certificate_check(
    standard: &Attempt,
    request: Option<&Attempt>,
) -> Option<ClientCertificateCheck> {
    let issuers = standard.certificate_request.clone()?;
    let check = |required, how: String| ClientCertificateCheck {
        required,
        how,
        acceptable_issuers: issuers.clone(),
    };
    if !standard.completed {
        let how = match received_alert(standard) {
            Some(code) => format!(
                "the server asked for a certificate, got none and ended the handshake with alert {} ({code})",
                crate::evidence::openssl::alert_name(code)
            ),
            None => {
                "the server asked for a certificate, got none and ended the handshake".to_string()
            }
        };
        return Some(check(Some(true), how));
    }
    let Some(request) = request else {
        return Some(check(
            None,
            "not checked: the total timeout was reached".to_string(),
        ));
    };
    if let Some(code) = received_alert(request) {
        return Some(check(
            Some(true),
            format!(
                "the handshake completed without a certificate, then the server sent alert {} ({code})",
                crate::evidence::openssl::alert_name(code)
            ),
        ));
    }
    if !request.completed {
        return Some(check(
            Some(true),
            format!(
                "without a certificate the handshake failed: {}",
                request.failure().unwrap_or_default()
            ),
        ));
    }
    match request
        .reply
        .as_deref()
        .and_then(|r| http_verdict(r).map(|v| (r, v)))
    {
        Some((reply, (status, true))) => Some(check(
            Some(true),
            format!(
                "the server answered the request with `{status}`{}",
                certificate_phrase(reply)
                    .map(|p| format!(" (\"{p}\")"))
                    .unwrap_or_default()
            ),
        )),
        Some((_, (status, false))) => Some(check(
            Some(false),
            format!("the server answered the request without a certificate: `{status}`"),
        )),
        None => Some(check(
            None,
            format!(
                "the server did not answer the request ({})",
                request
                    .failure()
                    .or_else(|| request.io_error.clone())
                    .unwrap_or_else(|| "it closed the connection".to_string())
            ),
        )),
    }
}
