//! The TLS client configuration every outbound HTTPS client of the gateway uses (providers, MCP
//! servers, the OTLP exporter): the ring provider, rustls' safe protocol versions, and trust in
//! the Mozilla roots plus the host's own (corporate CAs); a host certificate that cannot be
//! read is skipped. Reading the host's roots touches the filesystem: call it off the request
//! path.

use std::sync::Arc;

/// A fresh client configuration (see the module documentation).
pub fn client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
