//! X.509 certificates as enrollments carry them (§5.3): PEM (Node, Java), base64 DER (.NET) or base64 of the
//! PEM text (Azure's C service client), and the `X509CertificateInfo` every response shows (§1.5): names
//! most specific first (`CN=…, OU=…, O=…, C=…`), thumbprints SHA-1 / SHA-256 of the DER in upper-case hex
//! without separators, the .NET convention Azure's portal shows (§4.3, §10.6).
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

/// The DER of a certificate given as PEM, as base64 DER (.NET), or as base64 of the PEM text (Azure's C
/// service client). Every place that accepts a certificate reads it through here or [`decode_bundle`].
pub fn decode_certificate(text: &str) -> Result<Vec<u8>, DpsError> {
    let t = text.trim();
    if t.starts_with("-----BEGIN") {
        return decode_pem(t);
    }
    let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = B64.decode(compact).map_err(|_| DpsError::invalid(NOT_A_CERTIFICATE))?;
    match pem_text(&bytes) {
        Some(pem) => decode_pem(pem),
        None => Ok(bytes),
    }
}

const NOT_A_CERTIFICATE: &str = "the certificate is neither PEM, base64-encoded DER nor base64-encoded PEM";

/// The one CERTIFICATE block of a PEM text.
fn decode_pem(t: &str) -> Result<Vec<u8>, DpsError> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(t.as_bytes()).map_err(|e| DpsError::invalid(format!("the certificate is not valid PEM: {e}")))?;
    if pem.label != "CERTIFICATE" {
        return Err(DpsError::invalid(format!("expected a CERTIFICATE PEM block, found {}", pem.label)));
    }
    Ok(pem.contents)
}

/// Decoded base64 that is itself PEM text (a DER certificate starts with 0x30, never with `-`).
fn pem_text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok().map(str::trim).filter(|t| t.starts_with("-----BEGIN"))
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn time(t: ASN1Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.timestamp(), 0)
}

/// A distinguished name as Azure shows it in `subjectName` / `issuerName`: the most specific RDN first
/// (`CN=…, OU=…, O=…, C=…`, the order of .NET's `X500DistinguishedName.Name`), comma + space between RDNs,
/// ` + ` inside a multi-valued one. A certificate stores its RDNs the other way round (`C` first).
pub fn azure_name(name: &X509Name<'_>) -> String {
    let mut rdns: Vec<_> = name.iter().cloned().collect();
    rdns.reverse();
    X509Name::new(rdns, name.as_raw()).to_string()
}

/// Parses a certificate into the info Azure returns with it (names in [`azure_name`]'s order; the times are
/// whole seconds, see `dps_proto::X509CertificateInfo`).
pub fn certificate_info(text: &str) -> Result<X509CertificateInfo, DpsError> {
    certificate_info_der(&decode_certificate(text)?)
}

/// [`certificate_info`] of DER bytes.
pub fn certificate_info_der(der: &[u8]) -> Result<X509CertificateInfo, DpsError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| DpsError::invalid(format!("the certificate does not parse: {e}")))?;
    Ok(X509CertificateInfo {
        subject_name: azure_name(cert.subject()),
        sha1_thumbprint: hex_upper(&Sha1::digest(der)),
        sha256_thumbprint: hex_upper(&Sha256::digest(der)),
        issuer_name: azure_name(cert.issuer()),
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

/// Every certificate of a bundle: PEM blocks (any number, other blocks ignored), the same PEM text in
/// base64, one base64 DER, or raw DER bytes.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<Vec<u8>>, DpsError> {
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    match text {
        Some(t) if t.contains("-----BEGIN") => decode_pem_bundle(t),
        Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=\r\n ".contains(&b)) => {
            let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
            let decoded = B64.decode(compact).map_err(|_| DpsError::invalid(NOT_A_CERTIFICATE))?;
            match pem_text(&decoded) {
                Some(pem) => decode_pem_bundle(pem),
                None => Ok(vec![decoded]),
            }
        }
        _ if bytes.first() == Some(&0x30) => Ok(vec![bytes.to_vec()]),
        _ => Err(DpsError::invalid("no certificate found: expected PEM, base64 DER, base64 PEM or DER")),
    }
}

fn decode_pem_bundle(t: &str) -> Result<Vec<Vec<u8>>, DpsError> {
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
        let a = certificate_info(PEM).expect("certificate info");
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
        // base64 of PEM text that is broken, or of another kind of PEM block.
        assert!(decode_certificate(&B64.encode("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----")).is_err());
        let key = PEM.replace("CERTIFICATE", "PRIVATE KEY");
        let err = decode_certificate(&B64.encode(&key)).err().map(|e| e.message).unwrap_or_default();
        assert!(err.contains("PRIVATE KEY"), "{err}");
        assert!(decode_bundle(B64.encode(&key).as_bytes()).is_err());
        assert!(decode_certificate("").is_err() || certificate_info("").is_err());
        assert!(decode_bundle(b"\x01\x02 not base64 \xff").is_err());
    }

    /// Issue 13 fix 1: PEM (swagger, Node, Java), base64 DER (.NET) and base64 of the PEM text (Azure's C
    /// service client) are one certificate, everywhere a certificate is accepted.
    #[test]
    fn pem_base64_der_and_base64_pem_are_the_same_certificate() {
        let der = decode_certificate(PEM).expect("the PEM fixture decodes");
        assert_eq!(der.first(), Some(&0x30));
        let base64_der = B64.encode(&der);
        let base64_pem = B64.encode(PEM);
        // The C client base64-encodes the PEM it read from a file, trailing newline included.
        let base64_pem_newline = B64.encode(format!("{PEM}\n"));
        for (form, text) in [("PEM", PEM), ("base64 DER", &base64_der), ("base64 PEM", &base64_pem), ("base64 PEM\\n", &base64_pem_newline)]
        {
            assert_eq!(decode_certificate(text).ok().as_deref(), Some(der.as_slice()), "{form}");
            assert_eq!(decode_bundle(text.as_bytes()).ok(), Some(vec![der.clone()]), "bundle, {form}");
            assert_eq!(certificate_info(text).ok().map(|i| i.sha1_thumbprint).as_deref(), Some("790CDB3A1E47A44EF83EF69900FAA11F32563AC2"));
        }
        // A base64 PEM wrapped in lines, and a base64 PEM bundle of two certificates (chain inspector, verify).
        let wrapped: String = base64_pem.as_bytes().chunks(76).map(|c| String::from_utf8_lossy(c).into_owned() + "\r\n").collect();
        assert_eq!(decode_certificate(&wrapped).ok().as_deref(), Some(der.as_slice()));
        let two = B64.encode(format!("{PEM}\n{PEM}\n"));
        assert_eq!(decode_bundle(two.as_bytes()).ok(), Some(vec![der.clone(), der.clone()]));
        // And in an enrollment's attestation (what the management API calls).
        let mut x = dps_proto::X509Attestation {
            client_certificates: Some(dps_proto::X509Certificates {
                primary: Some(dps_proto::X509CertificateWithInfo { certificate: Some(base64_pem), info: None }),
                secondary: Some(dps_proto::X509CertificateWithInfo { certificate: Some(base64_der), info: None }),
            }),
            ..Default::default()
        };
        fill_infos(&mut x).expect("both forms are accepted");
        let certs = x.client_certificates.unwrap_or_default();
        let thumb = |c: Option<dps_proto::X509CertificateWithInfo>| c.and_then(|c| c.info).map(|i| i.sha1_thumbprint);
        assert_eq!(thumb(certs.primary), thumb(certs.secondary));
    }

    /// Issue 13 fix 7: names most specific first, `, ` between RDNs; times in whole seconds.
    #[test]
    fn names_are_in_azures_order() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "US");
        dn.push(rcgen::DnType::OrganizationName, "Contoso");
        dn.push(rcgen::DnType::OrganizationalUnitName, "Plant 7");
        dn.push(rcgen::DnType::CommonName, "device-7");
        params.distinguished_name = dn;
        params.not_before = rcgen::date_time_ymd(2026, 1, 2);
        let key = rcgen::KeyPair::generate().expect("a P-256 key");
        let cert = params.self_signed(&key).expect("a self-signed certificate");
        let der = cert.der().to_vec();
        // The certificate stores C first, as `openssl x509 -nameopt oneline` shows.
        let (_, parsed) = X509Certificate::from_der(&der).expect("rcgen's certificate parses");
        assert_eq!(parsed.subject().to_string(), "C=US, O=Contoso, OU=Plant 7, CN=device-7");

        let info = certificate_info(&cert.pem()).expect("info");
        assert_eq!(info.subject_name, "CN=device-7, OU=Plant 7, O=Contoso, C=US");
        assert_eq!(info.issuer_name, info.subject_name);
        let v = serde_json::to_value(&info).expect("info serialises");
        assert_eq!(v["notBeforeUtc"], "2026-01-02T00:00:00Z");
        assert!(v["notAfterUtc"].as_str().is_some_and(|t| t.len() == 20 && t.ends_with('Z')), "{}", v["notAfterUtc"]);
    }
}
