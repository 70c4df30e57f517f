//! The `opentelemetry-otlp` exporter for the configured transport (gRPC or
//! HTTP/protobuf, TLS, headers).

use std::sync::Arc;

use hyper::header::{HeaderName, HeaderValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};

use super::*;

/// Sets the configured headers on every OTLP/HTTP request, after the
/// exporter crate added its own: `opentelemetry-otlp` re-reads
/// `OTEL_EXPORTER_OTLP_HEADERS` and would otherwise override a `--otlp-header`
/// with the same name.
#[derive(Debug)]
struct HeaderClient {
    inner: Box<dyn HttpClient>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

#[async_trait::async_trait]
impl HttpClient for HeaderClient {
    async fn send_bytes(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        for (k, v) in &self.headers {
            request.headers_mut().insert(k.clone(), v.clone());
        }
        self.inner.send_bytes(request).await
    }
}

pub(super) fn build_span_exporter(
    config: &OtlpConfig,
) -> Result<opentelemetry_otlp::SpanExporter, OtlpError> {
    let endpoint = config.endpoint_url();
    let headers = config
        .headers
        .iter()
        .map(|(k, v)| validate_header(k, v))
        .collect::<Result<Vec<_>, _>>()?;
    let https = endpoint.starts_with("https://");
    let ca_pem = match (&config.certificate, https) {
        (Some(path), true) => Some(std::fs::read(path).map_err(|e| {
            OtlpError::Config(format!("cannot read OTLP CA file {}: {e}", path.display()))
        })?),
        _ => None,
    };
    let built = match config.protocol {
        Protocol::Grpc => {
            let mut metadata = Vec::with_capacity(headers.len());
            for (k, v) in &headers {
                let key = tonic::metadata::AsciiMetadataKey::from_bytes(k.as_str().as_bytes())
                    .map_err(|_| {
                        OtlpError::Config(format!("{k} cannot be sent as gRPC metadata"))
                    })?;
                let value = v
                    .to_str()
                    .ok()
                    .and_then(|v| tonic::metadata::AsciiMetadataValue::try_from(v).ok())
                    .ok_or_else(|| {
                        OtlpError::Config(format!("value of {k} cannot be sent as gRPC metadata"))
                    })?;
                metadata.push((key, value));
            }
            let metadata = Arc::new(metadata);
            // Runs after the crate's own metadata (which includes
            // OTEL_EXPORTER_OTLP_HEADERS), so the flags win here too.
            let interceptor = move |mut req: tonic::Request<()>| {
                for (k, v) in metadata.iter() {
                    req.metadata_mut().insert(k.clone(), v.clone());
                }
                Ok(req)
            };
            let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            if https {
                use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
                // The crate's default TLS config has no trust anchors at all:
                // give it the configured CA file, or the system's roots.
                let tls = match &ca_pem {
                    Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
                    None => ClientTlsConfig::new().with_native_roots(),
                };
                builder = builder.with_tls_config(tls);
            }
            builder
                .with_endpoint(endpoint)
                .with_timeout(config.timeout)
                .with_interceptor(interceptor)
                .build()
        }
        Protocol::HttpProtobuf => {
            let inner: Box<dyn HttpClient> = if https {
                let builder = match &ca_pem {
                    Some(pem) => hyper_rustls::HttpsConnectorBuilder::new()
                        .with_tls_config(tls_config_trusting(pem, config.certificate.as_deref())?),
                    None => hyper_rustls::HttpsConnectorBuilder::new()
                        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
                        .map_err(|e| {
                            OtlpError::Build(format!(
                                "no usable system CA certificates: {e}",
                                e = crate::text::Chain(&e)
                            ))
                        })?,
                };
                let connector = builder.https_only().enable_http1().build();
                Box::new(opentelemetry_http::hyper::HyperClient::new(
                    connector,
                    config.timeout,
                    None,
                ))
            } else {
                Box::new(
                    opentelemetry_http::hyper::HyperClient::with_default_connector(
                        config.timeout,
                        None,
                    ),
                )
            };
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint)
                .with_timeout(config.timeout)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(HeaderClient { inner, headers })
                .build()
        }
    };
    built.map_err(|e| OtlpError::Build(crate::text::Chain(&e).to_string()))
}

/// A rustls client configuration trusting exactly the certificates in `pem`.
fn tls_config_trusting(
    pem: &[u8],
    path: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, OtlpError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let name = path.map(|p| p.display().to_string()).unwrap_or_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| {
            OtlpError::Config(format!(
                "OTLP CA file {name}: {e}",
                e = crate::text::Chain(&e)
            ))
        })?;
        roots.add(cert).map_err(|e| {
            OtlpError::Config(format!(
                "OTLP CA file {name}: {e}",
                e = crate::text::Chain(&e)
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(OtlpError::Config(format!(
            "OTLP CA file {name} holds no PEM certificate"
        )));
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| OtlpError::Build(crate::text::Chain(&e).to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
