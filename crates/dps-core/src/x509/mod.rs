//! X.509 certificates as enrollments carry them (§5.3): PEM (C, Node, Java) or base64 DER (.NET), and
//! the `X509CertificateInfo` every response shows (§1.5). Thumbprints are SHA-1 / SHA-256 of the DER in
//! upper-case hex without separators, the .NET convention Azure's portal shows (§4.3, §10.6).
//!
//! - [`chain`]: path validation of a device chain up to an enrollment group's (or a verified CA's) certificate;
//! - [`inspect`]: the structured view of a chain for `dps cert inspect` and the console's chain inspector.

pub mod chain;
pub mod inspect;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use dps_proto::X509CertificateInfo;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

use crate::error::DpsError;

/// The DER of a certificate given as PEM or as base64 DER.
pub fn decode_certificate(text: &str) -> Result<Vec<u8>, DpsError> {
    let t = text.trim();
    if t.starts_with("-----BEGIN") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(t.as_bytes())
            .map_err(|e| DpsError::invalid(format!("the certificate is not valid PEM: {e}")))?;
        if pem.label != "CERTIFICATE" {
            return Err(DpsError::invalid(format!("expected a CERTIFICATE PEM block, found {}", pem.label)));
        }
        return Ok(pem.contents);
    }
    let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(compact).map_err(|_| DpsError::invalid("the certificate is neither PEM nor base64-encoded DER"))
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn time(t: ASN1Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.timestamp(), 0)
}

/// Parses a certificate into the info Azure returns with it.
pub fn certificate_info(text: &str) -> Result<X509CertificateInfo, DpsError> {
    let der = decode_certificate(text)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| DpsError::invalid(format!("the certificate does not parse: {e}")))?;
    Ok(X509CertificateInfo {
        subject_name: cert.subject().to_string(),
        sha1_thumbprint: hex_upper(&Sha1::digest(&der)),
        sha256_thumbprint: hex_upper(&Sha256::digest(&der)),
        issuer_name: cert.issuer().to_string(),
        not_before_utc: time(cert.validity().not_before),
        not_after_utc: time(cert.validity().not_after),
        serial_number: hex_upper(cert.raw_serial()),
        version: i32::try_from(cert.version().0).unwrap_or(2) + 1,
    })
}

/// Fills `info` of every certificate in an X.509 attestation; refuses certificates that do not parse.
pub fn fill_infos(x: &mut dps_proto::X509Attestation) -> Result<(), DpsError> {
    for certs in [x.client_certificates.as_mut(), x.signing_certificates.as_mut()].into_iter().flatten() {
        for (slot, name) in [(certs.primary.as_mut(), "primary"), (certs.secondary.as_mut(), "secondary")] {
            let Some(c) = slot else { continue };
            match c.certificate.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                Some(text) => {
                    c.info = Some(certificate_info(text).map_err(|e| DpsError::invalid(format!("{name} certificate: {}", e.message)))?)
                }
                None => c.info = None,
            }
        }
    }
    Ok(())
}

/// Every certificate of a bundle: PEM blocks (any number, other blocks ignored), or one base64 DER, or raw
/// DER bytes.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<Vec<u8>>, DpsError> {
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    match text {
        Some(t) if t.contains("-----BEGIN") => {
            let mut out = Vec::new();
            for pem in x509_parser::pem::Pem::iter_from_buffer(t.as_bytes()) {
                let pem = pem.map_err(|e| DpsError::invalid(format!("the PEM data is malformed: {e}")))?;
                if pem.label == "CERTIFICATE" {
                    out.push(pem.contents);
                }
            }
            if out.is_empty() {
                return Err(DpsError::invalid("the PEM data holds no CERTIFICATE block"));
            }
            Ok(out)
        }
        Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=\r\n ".contains(&b)) => {
            Ok(vec![decode_certificate(t)?])
        }
        _ if bytes.first() == Some(&0x30) => Ok(vec![bytes.to_vec()]),
        _ => Err(DpsError::invalid("no certificate found: expected PEM, base64 DER or DER")),
    }
}

/// The subject common name of a certificate, if it has one.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
    Some(cn)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBpDCCAUmgAwIBAgIUIX/VMw24OqCHZIkRRFaIvwp862MwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTc3ZjLXg1MDktZWM1MTU2NGM0NzAeFw0yNjExMjYwODQ1MDFa
Fw0yNjEyMjYwODQ1MDFaMB4xHDAaBgNVBAMME3N2Yy14NTA5LWVjNTE1NjRjNDcw
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQwRSJIAPZwrvxkXqHUiutohexG8CZg
WdCyEk+QJ1QPc2inFOluphYPJHlGl8F5go/d0wGX+NvNuv5HQG8RoHtjo2UwYzAd
BgNVHQ4EFgQUAuK5Ca0vJW8mqq+XtL4D4LCMZXMwHwYDVR0jBBgwFoAUAuK5Ca0v
JW8mqq+XtL4D4LCMZXMwDAYDVR0TAQH/BAIwADATBgNVHSUEDDAKBggrBgEFBQcD
AjAKBggqhkjOPQQDAgNJADBGAiEA1FPD0SBp8Pliy68WmJ9om45GvG0Hm1dnB4hU
g3Ukyi8CIQCrsqeYDJsb6JaEFu4LFA4Nb/YgSULIQ+tSD2WJKwyJkw==
-----END CERTIFICATE-----";

    #[test]
    fn pem_and_base64_der_give_the_same_info() {
        let a = certificate_info(PEM).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.subject_name, "CN=svc-x509-ec51564c47");
        assert_eq!(a.issuer_name, a.subject_name);
        assert_eq!(a.version, 3);
        assert_eq!(a.sha1_thumbprint, "790CDB3A1E47A44EF83EF69900FAA11F32563AC2"); // openssl x509 -fingerprint -sha1
        assert_eq!(a.sha256_thumbprint.len(), 64);
        assert_eq!(a.serial_number, "217FD5330DB83AA087648911445688BF0A7CEB63");
        let der = decode_certificate(PEM).unwrap_or_default();
        assert_eq!(certificate_info(&B64.encode(der)).ok(), Some(a));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(certificate_info("not a certificate").is_err());
        assert!(certificate_info("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----").is_err());
        assert!(certificate_info(&B64.encode(b"hello")).is_err());
    }
}
