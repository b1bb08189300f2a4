//! A device's certificate signing request (§1.4 `csr`): base64 DER PKCS#10, no PEM armour; its signature must
//! verify with its own key (proof that the device holds it), its subject CN must be the registration id, and its
//! key must be one a [`KeyType`] names. Nothing else of the request is used: requested extensions (a CA flag,
//! other names) are ignored, the issued certificate's contents are the service's (`issue.rs`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use dps_proto::KeyType;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::error::{DpsError, ErrorKind};

/// The longest `csr` read, in base64 characters: an RSA 4096 request is about 1,700.
pub const MAX_CSR_CHARS: usize = 8 * 1024;

/// A request whose signature verified, with what issuance needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCsr {
    /// The request's SubjectPublicKeyInfo, DER: the issued certificate's key.
    pub public_key: Vec<u8>,
    pub key_type: KeyType,
    pub common_name: String,
}

fn refused(m: impl Into<String>) -> DpsError {
    DpsError::new(ErrorKind::CertificateRequestInvalid, m)
}

/// Decodes and checks `csr` for `registration_id` (CN compared without regard to ASCII case, as registration
/// ids are).
pub fn check(csr: &str, registration_id: &str) -> Result<CheckedCsr, DpsError> {
    if csr.len() > MAX_CSR_CHARS {
        return Err(refused(format!("the csr is longer than {MAX_CSR_CHARS} characters")));
    }
    let compact: String = csr.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.starts_with("-----BEGIN") {
        return Err(refused("the csr must be base64 DER (PKCS#10) without PEM armour"));
    }
    let der = B64.decode(compact).map_err(|_| refused("the csr is not base64"))?;
    let (rest, req) =
        X509CertificationRequest::from_der(&der).map_err(|_| refused("the csr is not a DER PKCS#10 certification request"))?;
    if !rest.is_empty() {
        return Err(refused("the csr has bytes after its certification request"));
    }
    let info = &req.certification_request_info;
    // The key first: a key too weak to verify (RSA 1024) is refused for what it is.
    let key_type = key_type(&info.subject_pki)?;
    req.verify_signature().map_err(|_| refused("the csr's signature does not verify with its public key"))?;
    let common_name = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| refused("the csr's subject has no common name (CN)"))?
        .to_owned();
    if !common_name.eq_ignore_ascii_case(registration_id) {
        return Err(refused(format!(
            "the csr's common name '{}' is not the registration id '{}'",
            dps_proto::truncate_for_display(&common_name),
            dps_proto::truncate_for_display(registration_id)
        )));
    }
    Ok(CheckedCsr { public_key: info.subject_pki.raw.to_vec(), key_type, common_name })
}

/// The key type of a SubjectPublicKeyInfo, or why it has none this service issues for.
fn key_type(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<KeyType, DpsError> {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_SIG_ED25519 {
        return Ok(KeyType::Ed25519);
    }
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => Ok(KeyType::EcP256),
            Some(c) if c == OID_NIST_EC_P384 => Ok(KeyType::EcP384),
            Some(c) => Err(refused(format!("the csr's elliptic curve {c} is not P-256 or P-384"))),
            None => Err(refused("the csr's EC key names no curve")),
        };
    }
    if *alg == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => rsa.key_size(),
            _ => return Err(refused("the csr's RSA key does not parse")),
        };
        return match bits {
            2048 => Ok(KeyType::Rsa2048),
            3072 => Ok(KeyType::Rsa3072),
            4096 => Ok(KeyType::Rsa4096),
            n => Err(refused(format!("the csr's RSA key has {n} bits; 2048, 3072 or 4096 are issued for"))),
        };
    }
    Err(refused(format!("the csr's key algorithm {alg} is not EC, RSA or Ed25519")))
}

/// Whether `allowed` lists the request's key.
pub fn check_key_type(csr: &CheckedCsr, allowed: &[KeyType], policy: &str) -> Result<(), DpsError> {
    if allowed.contains(&csr.key_type) {
        return Ok(());
    }
    let names: Vec<&str> = allowed.iter().map(|k| k.label()).collect();
    Err(refused(format!(
        "the csr's key is {}; the credential policy '{}' allows {}",
        csr.key_type.label(),
        dps_proto::truncate_for_display(policy),
        if names.is_empty() { "none".to_owned() } else { names.join(", ") }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};

    pub(crate) fn csr_of(cn: &str, key: &KeyPair) -> String {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("constructs");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        let csr = params.serialize_request(key).expect("serialize request");
        B64.encode(csr.der())
    }

    #[test]
    fn a_good_request_gives_its_key_and_type() {
        let key = KeyPair::generate().expect("generates a key");
        let c = check(&csr_of("Dev-1", &key), "dev-1").expect("check");
        assert_eq!((c.key_type, c.common_name.as_str()), (KeyType::EcP256, "Dev-1"));
        assert_eq!(c.public_key, key.subject_public_key_info());
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("generate for");
        assert_eq!(check(&csr_of("d", &p384), "d").map(|c| c.key_type), Ok(KeyType::EcP384));
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("generate for");
        assert_eq!(check(&csr_of("d", &ed), "d").map(|c| c.key_type), Ok(KeyType::Ed25519));
    }

    #[test]
    fn bad_requests_are_refused_with_400011() {
        let key = KeyPair::generate().expect("generates a key");
        let good = csr_of("dev-1", &key);
        let mut der = B64.decode(&good).expect("decodes");
        let last = der.len() - 1;
        der[last] ^= 0x01; // the signature's last byte
        for (csr, id, says) in [
            (good.clone(), "dev-2", "is not the registration id"),
            (B64.encode(&der), "dev-1", "signature does not verify"),
            ("not base64!".to_owned(), "dev-1", "not base64"),
            (B64.encode(b"\x30\x03\x02\x01\x00"), "dev-1", "not a DER PKCS#10"),
            (format!("-----BEGIN CERTIFICATE REQUEST-----\n{good}\n-----END CERTIFICATE REQUEST-----"), "dev-1", "without PEM armour"),
            ("A".repeat(MAX_CSR_CHARS + 1), "dev-1", "longer than"),
        ] {
            let e = check(&csr, id).err().unwrap_or_else(|| panic!("accepted: {says}"));
            assert_eq!((e.kind, e.code()), (ErrorKind::CertificateRequestInvalid, 400011));
            assert!(e.message.contains(says), "{}", e.message);
        }
    }

    #[test]
    fn the_policy_names_the_keys_it_allows() {
        let key = KeyPair::generate().expect("generates a key");
        let c = check(&csr_of("d", &key), "d").expect("check");
        assert!(check_key_type(&c, &KeyType::DEFAULT, "p").is_ok());
        let e = check_key_type(&c, &[KeyType::Rsa2048], "p").err().unwrap_or_else(|| panic!("accepted"));
        assert!(e.message.contains("ECDSA P-256") && e.message.contains("allows RSA 2048"), "{}", e.message);
    }
}
