//! The service's input rules, checked in the browser before a request is sent.
//!
//! Each check matches what the service enforces (`dps-proto` ids, `dps-core` management, `dps-crypto` keys),
//! so a value accepted here is not refused there for its shape. Messages are meant for a person.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use dps_proto::{EnrollmentGroupId, RegistrationId};

/// A registration id (1–128 characters: letters, digits and `- . _ :`, ending with a letter, a digit or `-`).
/// Ids are case-insensitive for look-up; the service keeps the bytes as typed.
pub fn registration_id(s: &str) -> Result<(), String> {
    RegistrationId::try_from(s).map(|_| ()).map_err(|e| e.to_string())
}

/// An enrollment group id (the same rules as a registration id).
pub fn group_id(s: &str) -> Result<(), String> {
    EnrollmentGroupId::try_from(s).map(|_| ()).map_err(|e| e.to_string())
}

/// Characters a device id may hold besides ASCII letters and digits (IoT Hub's rule).
pub const DEVICE_ID_PUNCTUATION: &str = "-.+%_#*?!(),:=@$'";

/// A device id: 1–128 characters, letters, digits and `- . + % _ # * ? ! ( ) , : = @ $ '`.
pub fn device_id(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("device id must not be empty (leave the field blank to use the registration id)".into());
    }
    if s.len() > 128 {
        return Err("device id is longer than 128 characters".into());
    }
    match s.chars().find(|c| !(c.is_ascii_alphanumeric() || DEVICE_ID_PUNCTUATION.contains(*c))) {
        Some(bad) => Err(format!("device id contains the character {bad:?}; allowed: letters, digits and {DEVICE_ID_PUNCTUATION}")),
        None => Ok(()),
    }
}

/// A linked hub's host name as the service accepts it: 1–253 characters, letters, digits and `- . : _`.
pub fn hub_host_name(s: &str) -> Result<(), String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("hub host name must not be empty".into());
    }
    if s.len() > 253 {
        return Err("hub host name is longer than 253 characters".into());
    }
    match s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'))) {
        Some(bad) => Err(format!("hub host name '{s}' contains the character {bad:?}; allowed: letters, digits and - . : _")),
        None => Ok(()),
    }
}

/// A symmetric key: standard base64 of 16–64 bytes. Returns the key's bytes.
pub fn symmetric_key(s: &str) -> Result<Vec<u8>, String> {
    let bytes = B64.decode(s.trim()).map_err(|_| "the key is not valid base64".to_owned())?;
    if !(16..=64).contains(&bytes.len()) {
        return Err(format!("the key is {} bytes long; it must be 16 to 64 bytes (base64 of 24 to 88 characters)", bytes.len()));
    }
    Ok(bytes)
}

/// How a certificate was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateEncoding {
    /// One or more `-----BEGIN CERTIFICATE-----` blocks.
    Pem,
    /// A single DER certificate in base64, no armour.
    Base64Der,
}

/// What [`certificate`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSniff {
    pub encoding: CertificateEncoding,
    /// DER bytes of each certificate found, in order.
    pub ders: Vec<Vec<u8>>,
}

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// Sniffs a certificate: PEM (every CERTIFICATE block, other blocks ignored) or one base64 DER. Only the
/// outer DER structure is checked (a SEQUENCE of the stated length); the service parses the certificate.
pub fn certificate(text: &str) -> Result<CertificateSniff, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("paste a certificate (PEM, or base64 DER)".into());
    }
    if t.contains("-----BEGIN") {
        let mut ders = Vec::new();
        let mut rest = t;
        while let Some(start) = rest.find(PEM_BEGIN) {
            let after = &rest[start + PEM_BEGIN.len()..];
            let end = after.find(PEM_END).ok_or("a CERTIFICATE block has no END line")?;
            let body: String = after[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let der = B64.decode(body).map_err(|_| format!("certificate {} of the PEM is not valid base64", ders.len() + 1))?;
            check_der(&der).map_err(|e| format!("certificate {} of the PEM: {e}", ders.len() + 1))?;
            ders.push(der);
            rest = &after[end + PEM_END.len()..];
        }
        if ders.is_empty() {
            return Err("the PEM holds no CERTIFICATE block (a private key or a CSR is not a certificate)".into());
        }
        return Ok(CertificateSniff { encoding: CertificateEncoding::Pem, ders });
    }
    let body: String = t.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = B64.decode(body).map_err(|_| "not a certificate: neither PEM nor base64 DER".to_owned())?;
    check_der(&der)?;
    Ok(CertificateSniff { encoding: CertificateEncoding::Base64Der, ders: vec![der] })
}

/// Checks that `der` is exactly one DER SEQUENCE (what a certificate is on the outside).
fn check_der(der: &[u8]) -> Result<(), String> {
    let bad = || "the data is not a DER certificate".to_owned();
    if der.len() < 2 || der[0] != 0x30 {
        return Err(bad());
    }
    let (len, header) = match der[1] {
        n if n < 0x80 => (usize::from(n), 2),
        0x81..=0x84 => {
            let count = usize::from(der[1] & 0x7f);
            let bytes = der.get(2..2 + count).ok_or_else(bad)?;
            (bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), 2 + count)
        }
        _ => return Err(bad()),
    };
    if header + len != der.len() {
        return Err("the certificate's DER data is truncated or has trailing bytes".into());
    }
    Ok(())
}

/// A JSON object (as the initial twin's tags and desired properties must be).
pub fn json_object(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err("must be a JSON object ({ … })".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// A custom allocation webhook: an absolute `https://` (or `http://`) URL with a host.
pub fn webhook_url(s: &str) -> Result<(), String> {
    let s = s.trim();
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).ok_or("the webhook URL must start with https://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("the webhook URL has no host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_ids_follow_the_service() {
        for ok in ["dev1", "Dev1", "a.b_c:d-", "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6", &"x".repeat(128)] {
            assert!(registration_id(ok).is_ok(), "{ok}");
            assert!(group_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "dev 1", "dev/1", "dév", "dev.", "dev_", "dev:", &"x".repeat(129)] {
            assert!(registration_id(bad).is_err(), "{bad}");
        }
        assert!(registration_id("dev 1").err().is_some_and(|e| e.contains("' '")));
    }

    #[test]
    fn device_ids_allow_iot_hub_punctuation() {
        for ok in ["dev1", "a-.+%_#*?!(),:=@$'z", &"d".repeat(128)] {
            assert!(device_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "ü", &"d".repeat(129)] {
            assert!(device_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hub_host_names() {
        assert!(hub_host_name("hub-a.example.net").is_ok());
        assert!(hub_host_name("localhost:8883").is_ok());
        assert!(hub_host_name("").is_err());
        assert!(hub_host_name("hub a").is_err());
        assert!(hub_host_name(&"h".repeat(254)).is_err());
    }

    #[test]
    fn keys_are_base64_of_16_to_64_bytes() {
        assert_eq!(symmetric_key(&B64.encode([7u8; 16])).map(|k| k.len()), Ok(16));
        assert_eq!(symmetric_key(&format!(" {} ", B64.encode([7u8; 64]))).map(|k| k.len()), Ok(64));
        assert!(symmetric_key(&B64.encode([7u8; 15])).is_err());
        assert!(symmetric_key(&B64.encode([7u8; 65])).is_err());
        assert!(symmetric_key("not base64!").is_err());
    }

    /// A DER SEQUENCE of `n` content bytes, long-form length when needed.
    fn der(n: usize) -> Vec<u8> {
        let mut v = vec![0x30];
        if n < 0x80 {
            v.push(n as u8);
        } else {
            v.extend([0x82, (n >> 8) as u8, n as u8]);
        }
        v.extend(std::iter::repeat_n(0x02, n));
        v
    }

    fn pem(der: &[u8]) -> String {
        let b = B64.encode(der);
        let lines: Vec<&str> = b.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("UTF-8")).collect();
        format!("{PEM_BEGIN}\n{}\n{PEM_END}\n", lines.join("\n"))
    }

    #[test]
    fn certificates_are_sniffed() {
        let one = der(300);
        let two = der(20);
        let p = certificate(&pem(&one)).expect("certificate");
        assert_eq!(p.encoding, CertificateEncoding::Pem);
        assert_eq!(p.ders, vec![one.clone()]);
        let chain = format!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{}{}", pem(&one), pem(&two));
        assert_eq!(certificate(&chain).map(|s| s.ders.len()), Ok(2));
        let b = certificate(&B64.encode(&two)).expect("certificate");
        assert_eq!(b.encoding, CertificateEncoding::Base64Der);
        assert!(certificate("").is_err());
        assert!(certificate("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err());
        assert!(certificate(&B64.encode(&one[..100])).is_err(), "truncated");
        assert!(certificate(&B64.encode(b"hello world")).is_err());
        assert!(certificate(&format!("{PEM_BEGIN}\n{}\n", B64.encode(&two))).is_err(), "no END line");
    }

    #[test]
    fn json_objects_and_urls() {
        assert!(json_object(r#"{"a":1}"#).is_ok());
        assert!(json_object("[1]").is_err());
        assert!(json_object("{").is_err());
        assert!(webhook_url("https://fn.example.net/api/alloc?code=x").is_ok());
        assert!(webhook_url("ftp://x").is_err());
        assert!(webhook_url("https:///x").is_err());
    }
}
