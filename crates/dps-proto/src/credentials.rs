//! Certificate issuance from a CSR (device API 2025-07-01-preview and 2026-04-01, `dps-protocol.md` §1.4–1.5):
//! the credential policies an enrollment names (`credentialPolicyName`), and the certificates issued under them.
//!
//! Azure keeps credential policies in Azure Device Registry; this service keeps them itself, under
//! `/credentialPolicies/{name}` of the service API (an extension: the shape below is this service's own).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::service::opt_time;
use crate::X509CertificateInfo;

/// The first device api-version whose register body may carry `csr`.
pub const CSR_API_VERSION: &str = "2025-07-01-preview";

/// Who signs the certificates of a policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum IssuerKind {
    /// The service's local root CA (`ca.pem` in the data directory), the one devices already trust for TLS.
    #[default]
    Local,
    /// A CA uploaded with the policy (`certificate` + `privateKey`); its key is sealed at rest.
    Uploaded,
}

deserialize_case_insensitive!(IssuerKind { Local => "local", Uploaded => "uploaded" });

/// The public keys a CSR may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyType {
    EcP256,
    EcP384,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    Ed25519,
}

deserialize_case_insensitive!(KeyType {
    EcP256 => "ecP256",
    EcP384 => "ecP384",
    Rsa2048 => "rsa2048",
    Rsa3072 => "rsa3072",
    Rsa4096 => "rsa4096",
    Ed25519 => "ed25519",
});

impl KeyType {
    pub const ALL: [KeyType; 6] = [Self::EcP256, Self::EcP384, Self::Rsa2048, Self::Rsa3072, Self::Rsa4096, Self::Ed25519];
    /// What a policy allows unless it says: the NIST curves and RSA of 2048 bits or more.
    pub const DEFAULT: [KeyType; 5] = [Self::EcP256, Self::EcP384, Self::Rsa2048, Self::Rsa3072, Self::Rsa4096];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcP256 => "ecP256",
            Self::EcP384 => "ecP384",
            Self::Rsa2048 => "rsa2048",
            Self::Rsa3072 => "rsa3072",
            Self::Rsa4096 => "rsa4096",
            Self::Ed25519 => "ed25519",
        }
    }

    /// As people say it: `ECDSA P-256`, `RSA 2048`…
    pub fn label(self) -> &'static str {
        match self {
            Self::EcP256 => "ECDSA P-256",
            Self::EcP384 => "ECDSA P-384",
            Self::Rsa2048 => "RSA 2048",
            Self::Rsa3072 => "RSA 3072",
            Self::Rsa4096 => "RSA 4096",
            Self::Ed25519 => "Ed25519",
        }
    }
}

/// Days an issued certificate is valid unless the policy says.
pub const DEFAULT_VALIDITY_DAYS: u32 = 30;
/// The longest validity a policy may set (ten years).
pub const MAX_VALIDITY_DAYS: u32 = 3650;

fn default_validity() -> u32 {
    DEFAULT_VALIDITY_DAYS
}

fn default_key_types() -> Vec<KeyType> {
    KeyType::DEFAULT.to_vec()
}

/// `CredentialPolicy`: how certificates are issued to devices of the enrollments that name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialPolicy {
    /// Taken from the path when absent.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub issuer: IssuerKind,
    /// `uploaded`: the issuing CA's certificate, PEM, then any intermediates up to its root (the chain devices
    /// receive after their own certificate). Absent for `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// `uploaded`: the issuing CA's private key (PKCS#8 or SEC1 PEM). Write only: never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// Days from issuance (1 to 3,650; never past the issuing CA's own expiry).
    #[serde(default = "default_validity")]
    pub validity_days: u32,
    /// The public keys a CSR may carry.
    #[serde(default = "default_key_types")]
    pub key_types: Vec<KeyType>,
    /// Read only: the issuing CA's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_info: Option<X509CertificateInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_time")]
    pub created_date_time_utc: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_time")]
    pub last_updated_date_time_utc: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl CredentialPolicy {
    /// A policy of `name` with the defaults: the local CA, 30 days, the default key types.
    pub fn local(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            issuer: IssuerKind::Local,
            certificate: None,
            private_key: None,
            validity_days: DEFAULT_VALIDITY_DAYS,
            key_types: default_key_types(),
            issuer_info: None,
            created_date_time_utc: None,
            last_updated_date_time_utc: None,
            etag: None,
        }
    }
}

/// A certificate the service issued: the issuance log (`GET /issuedCertificates`), written before the device
/// is told, and the summary the registration record keeps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCertificate {
    pub registration_id: String,
    pub credential_policy_name: String,
    /// The operation the certificate was issued for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// Subject, issuer, thumbprints, validity and serial number (upper-case hex).
    pub info: X509CertificateInfo,
    /// `ecP256`, `rsa2048`… the CSR's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<KeyType>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_time")]
    pub issued_date_time_utc: Option<DateTime<Utc>>,
    /// The issued certificate, PEM (public).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_fills_in_its_defaults_and_reads_names_in_any_case() {
        let p: CredentialPolicy = serde_json::from_str(r#"{"name":"line-1"}"#).expect("parses");
        assert_eq!(p, CredentialPolicy::local("line-1"));
        let p: CredentialPolicy =
            serde_json::from_str(r#"{"issuer":"UPLOADED","keyTypes":["EcP384","RSA4096"],"validityDays":7}"#).expect("parses");
        assert_eq!((p.issuer, p.key_types, p.validity_days), (IssuerKind::Uploaded, vec![KeyType::EcP384, KeyType::Rsa4096], 7));
        assert!(serde_json::from_str::<CredentialPolicy>(r#"{"keyTypes":["dsa1024"]}"#).is_err());
    }

    #[test]
    fn key_type_names_round_trip() {
        for k in KeyType::ALL {
            let s = serde_json::to_string(&k).unwrap_or_default();
            assert_eq!(s, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<KeyType>(&s).ok(), Some(k));
        }
    }
}
