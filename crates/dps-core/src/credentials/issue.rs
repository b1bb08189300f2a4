//! Signing a device's certificate: the subject is the CSR's CN (the registration id) and nothing else, the key
//! is the CSR's, the validity the policy's (never past the issuing CA's own), a random 128-bit serial number;
//! an end-entity certificate for TLS client authentication (basic constraints CA:FALSE, digitalSignature — and
//! keyEncipherment for RSA —, clientAuth), with subject and authority key identifiers.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use dps_crypto::Secret;
use dps_proto::{CredentialPolicy, IssuedCertificate, KeyType};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SerialNumber, SubjectPublicKeyInfo,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::csr::CheckedCsr;
use crate::error::DpsError;

/// How far back an issued certificate's validity starts, for devices whose clocks run a little behind.
const BACKDATE: Duration = Duration::minutes(5);

/// A CA that signs devices' certificates: its certificate first, then its chain up to the root (DER), and its
/// private key (PEM: PKCS#8, or what rcgen reads).
#[derive(Clone)]
pub struct IssuingCa {
    chain: Vec<Vec<u8>>,
    key: Secret,
}

impl std::fmt::Debug for IssuingCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuingCa").field("certificates", &self.chain.len()).finish_non_exhaustive()
    }
}

impl IssuingCa {
    /// Checks that `chain` (PEM, the CA first) starts with a CA certificate that `key` belongs to.
    pub fn new(chain_pem: &str, key: Secret) -> Result<Self, DpsError> {
        let chain = crate::x509::decode_bundle(chain_pem.as_bytes())?;
        let first = chain.first().ok_or_else(|| DpsError::invalid("the issuing CA's certificate is missing"))?;
        let (_, cert) =
            X509Certificate::from_der(first).map_err(|e| DpsError::invalid(format!("the issuing CA's certificate does not parse: {e}")))?;
        if !cert.is_ca() {
            return Err(DpsError::invalid("the issuing certificate is not a CA (its basic constraints do not say CA:TRUE)"));
        }
        let pair =
            KeyPair::from_pem(key.expose()).map_err(|e| DpsError::invalid(format!("the issuing CA's private key does not read: {e}")))?;
        if pair.subject_public_key_info() != cert.public_key().raw {
            return Err(DpsError::invalid("the private key is not the issuing CA certificate's key"));
        }
        Ok(Self { chain, key })
    }

    /// The CA's certificate (DER).
    pub fn certificate(&self) -> &[u8] {
        self.chain.first().map(Vec::as_slice).unwrap_or_default()
    }

    /// The CA's expiry.
    fn not_after(&self) -> Option<DateTime<Utc>> {
        let (_, cert) = X509Certificate::from_der(self.certificate()).ok()?;
        DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
    }
}

/// What issuance made: the chain the device receives (base64 DER, its certificate first) and the log entry.
#[derive(Debug, Clone)]
pub struct Issued {
    pub chain: Vec<String>,
    pub certificate: IssuedCertificate,
}

/// Who the certificate is for.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub registration_id: &'a str,
    pub operation_id: &'a str,
}

fn internal(what: &str) -> impl Fn(rcgen::Error) -> DpsError + '_ {
    move |e| DpsError::internal(format!("cannot {what}: {e}"))
}

fn offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime, DpsError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|e| DpsError::internal(format!("a time out of range: {e}")))
}

/// The certificate's contents (everything but its key).
fn params(csr: &CheckedCsr, days: u32, ca_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<CertificateParams, DpsError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, csr.common_name.clone());
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = match csr.key_type {
        KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment],
        _ => vec![KeyUsagePurpose::DigitalSignature],
    };
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    let mut serial = rand::random::<[u8; 16]>();
    serial[0] &= 0x7f; // positive, as RFC 5280 asks
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    let until = now + Duration::days(i64::from(days));
    p.not_before = offset(now - BACKDATE)?;
    p.not_after = offset(ca_until.map_or(until, |ca| ca.min(until)))?;
    Ok(p)
}

/// Signs `csr`'s key for `subject` under `policy` with `ca`.
pub fn issue(
    ca: &IssuingCa,
    csr: &CheckedCsr,
    policy: &CredentialPolicy,
    subject: Subject<'_>,
    now: DateTime<Utc>,
) -> Result<Issued, DpsError> {
    let key = KeyPair::from_pem(ca.key.expose()).map_err(internal("read the issuing CA's key"))?;
    let issuer = Issuer::from_ca_cert_der(&ca.certificate().into(), key).map_err(internal("read the issuing CA's certificate"))?;
    let public_key = SubjectPublicKeyInfo::from_der(&csr.public_key).map_err(internal("read the csr's public key"))?;
    let cert = params(csr, policy.validity_days, ca.not_after(), now)?.signed_by(&public_key, &issuer).map_err(internal("sign"))?;
    let der = cert.der().to_vec();
    let mut chain = vec![B64.encode(&der)];
    chain.extend(ca.chain.iter().map(|c| B64.encode(c)));
    let certificate = IssuedCertificate {
        registration_id: subject.registration_id.to_owned(),
        credential_policy_name: policy.name.clone(),
        operation_id: Some(subject.operation_id.to_owned()),
        info: crate::x509::certificate_info_der(&der)?,
        key_type: Some(csr.key_type),
        issued_date_time_utc: Some(now),
        certificate: Some(cert.pem()),
    };
    Ok(Issued { chain, certificate })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::csr;
    use rcgen::BasicConstraints;

    pub(crate) fn test_ca(days: i64) -> (String, KeyPair) {
        let key = KeyPair::generate().expect("generates a key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("constructs");
        p.distinguished_name.push(DnType::CommonName, "Issuing CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        (p.self_signed(&key).expect("self-signs").pem(), key)
    }

    fn checked(id: &str) -> CheckedCsr {
        let key = KeyPair::generate().expect("generates a key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("constructs");
        p.distinguished_name.push(DnType::CommonName, id);
        // A request for a CA certificate: the service ignores what a CSR asks beyond its subject and key.
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let der = p.serialize_request(&key).expect("serialize request");
        csr::check(&B64.encode(der.der()), id).expect("check")
    }

    #[test]
    fn the_issued_certificate_is_the_devices_leaf_under_the_ca() {
        let (pem, key) = test_ca(3650);
        let ca = IssuingCa::new(&pem, Secret::new(key.serialize_pem())).expect("constructs");
        let csr = checked("dev-1");
        let now = crate::Clock::now(&crate::SystemClock);
        let issued =
            issue(&ca, &csr, &CredentialPolicy::local("p"), Subject { registration_id: "dev-1", operation_id: "op" }, now).expect("issue");
        assert_eq!(issued.chain.len(), 2);
        let der = B64.decode(&issued.chain[0]).expect("decodes");
        let (_, leaf) = X509Certificate::from_der(&der).expect("from der");
        assert_eq!(leaf.subject().to_string(), "CN=dev-1");
        assert_eq!(leaf.issuer().to_string(), "CN=Issuing CA");
        assert!(!leaf.is_ca(), "a CSR asking for CA:TRUE gets an end-entity certificate");
        assert_eq!(leaf.public_key().raw, csr.public_key.as_slice());
        let days = (leaf.validity().not_after.timestamp() - now.timestamp()) / 86_400;
        assert_eq!(days, 30);
        let (_, ca_cert) = X509Certificate::from_der(ca.certificate()).expect("from der");
        assert!(leaf.verify_signature(Some(ca_cert.public_key())).is_ok());
        assert_eq!(issued.certificate.info.subject_name, "CN=dev-1");
        assert_eq!(issued.certificate.key_type, Some(KeyType::EcP256));
    }

    #[test]
    fn validity_stops_at_the_cas_expiry() {
        let (pem, key) = test_ca(10);
        let ca = IssuingCa::new(&pem, Secret::new(key.serialize_pem())).expect("constructs");
        let issued = issue(
            &ca,
            &checked("d"),
            &CredentialPolicy::local("p"),
            Subject { registration_id: "d", operation_id: "o" },
            crate::Clock::now(&crate::SystemClock),
        )
        .expect("issue");
        assert_eq!(issued.certificate.info.not_after_utc.map(|t| t.timestamp()), ca.not_after().map(|t| t.timestamp()));
    }

    #[test]
    fn an_issuing_ca_must_be_a_ca_with_its_own_key() {
        let (pem, key) = test_ca(10);
        let other = KeyPair::generate().expect("generates a key");
        let e = IssuingCa::new(&pem, Secret::new(other.serialize_pem())).err().unwrap_or_else(|| panic!("accepted"));
        assert!(e.message.contains("not the issuing CA certificate's key"), "{}", e.message);
        let mut leaf = CertificateParams::new(vec!["x".to_owned()]).expect("constructs");
        leaf.is_ca = IsCa::ExplicitNoCa;
        let leaf = leaf.self_signed(&key).expect("self-signs").pem();
        let e = IssuingCa::new(&leaf, Secret::new(key.serialize_pem())).err().unwrap_or_else(|| panic!("accepted"));
        assert!(e.message.contains("not a CA"), "{}", e.message);
    }
}
