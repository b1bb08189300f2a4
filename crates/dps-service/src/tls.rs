//! The TLS server configuration of every device and service listener: TLS 1.2 and 1.3 (the Python SDK
//! speaks only 1.2), the aws-lc-rs provider.
//!
//! Client certificates are *requested, never required* (§4.3, §8): the TLS layer accepts any chain — the
//! handshake still proves the client holds the leaf's private key, since its CertificateVerify signature is
//! checked — and hands the chain to attestation, which decides against the enrollment list. So a refused
//! certificate reaches the device as a DPS error (401002) instead of a TLS alert.

use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

/// Accepts any client certificate chain; checks only the handshake signature.
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `alpn`: the protocols offered (HTTPS: h2 and http/1.1; MQTT: none, so any client ALPN is ignored).
pub fn server_config(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(AnyClientCertificate { algorithms: provider.signature_verification_algorithms });
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the server certificate does not match its key")?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// The client's certificate chain (DER, leaf first) from an accepted TLS connection.
pub fn peer_chain(conn: &rustls::ServerConnection) -> Option<Arc<Vec<Vec<u8>>>> {
    let certs = conn.peer_certificates()?;
    (!certs.is_empty()).then(|| Arc::new(certs.iter().map(|c| c.as_ref().to_vec()).collect()))
}

/// Accepts TCP connections until `shutdown` turns true. Each connection gets its own task, which completes
/// the TLS handshake within `handshake_timeout` and runs what `make` built for it (called in the accept loop,
/// so it may borrow the caller's state) with the stream and the client's certificate chain.
pub async fn accept_loop<M, S, Fut>(
    what: &'static str,
    listener: tokio::net::TcpListener,
    tls: Arc<ServerConfig>,
    handshake_timeout: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut make: M,
) where
    M: FnMut(std::net::SocketAddr) -> S,
    S: FnOnce(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, Option<Arc<Vec<Vec<u8>>>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "{what} accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, serve) = (acceptor.clone(), make(peer));
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let chain = peer_chain(stream.get_ref().1);
                            serve(stream, chain).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "{what} TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "{what} TLS handshake timed out"),
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// The stream every bounded listener's connection runs on: TLS over [`crate::bounds::Deadlines`].
pub type BoundedStream = tokio_rustls::server::TlsStream<crate::bounds::Deadlines<tokio::net::TcpStream>>;

/// [`accept_loop`] with a listener's bounds: a connection over its caps is closed at accept, before TLS; the
/// others run on [`crate::bounds::Deadlines`] (write and idle deadlines) and hold their permit until their task
/// ends.
pub async fn accept_bounded<M, S, Fut>(
    what: &'static str,
    listener: tokio::net::TcpListener,
    tls: Arc<ServerConfig>,
    bounds: crate::bounds::ListenerBounds,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut make: M,
) where
    M: FnMut(std::net::SocketAddr) -> S,
    S: FnOnce(BoundedStream, Option<Arc<Vec<Vec<u8>>>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "{what} accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(permit) = bounds.caps.admit(peer.ip()) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let tcp = crate::bounds::Deadlines::new(tcp, bounds.write_timeout, bounds.idle_timeout);
        let (acceptor, serve, handshake) = (acceptor.clone(), make(peer), bounds.handshake_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let chain = peer_chain(stream.get_ref().1);
                    serve(stream, chain).await
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "{what} TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "{what} TLS handshake timed out"),
            }
        });
    }
}
