//! The TLS client configuration every connector uses: the system's roots plus the linked hub's
//! `caCertificate` (a private CA, e.g. a local stand-in or a self-hosted broker).

use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use tracing::warn;

/// The certificates of a `caCertificate` PEM; at least one, all parseable.
pub(crate) fn parse_ca(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("caCertificate is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("caCertificate holds no PEM certificate".into());
    }
    let mut store = rustls::RootCertStore::empty();
    for c in &certs {
        store.add(c.clone()).map_err(|e| format!("caCertificate cannot be used as a trust anchor: {e}"))?;
    }
    Ok(certs)
}

/// The system's roots, read once (a missing or partly unreadable store is logged, not fatal: a
/// `caCertificate` may be all a hub needs).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            warn!(error = %e, "cannot read some of the system's root certificates");
        }
        found.certs
    })
}

/// A client configuration trusting the system's roots and `ca_pem`.
pub(crate) fn client_config(ca_pem: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(pem) = ca_pem {
        for c in parse_ca(pem)? {
            roots.add(c).map_err(|e| format!("caCertificate cannot be used as a trust anchor: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
