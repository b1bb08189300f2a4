//! The structured view of a certificate chain: what `dps cert inspect` prints and the console's chain
//! inspector shows. Every member of every certificate, then one verdict for the chain (leaf first, up to a
//! root in the bundle or else its last certificate).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::service::opt_time;

/// One certificate, as `openssl x509 -text` would describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateDetails {
    /// RFC 4514-style distinguished name, e.g. `CN=device-1, O=Contoso`.
    pub subject: String,
    pub issuer: String,
    /// Upper-case hex, no separators.
    pub serial_number: String,
    /// 1, 2 or 3.
    pub version: i32,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_time")]
    pub not_before_utc: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_time")]
    pub not_after_utc: Option<DateTime<Utc>>,
    /// `DNS:host`, `IP:10.0.0.1`, `email:a@b`, `URI:…`, `DirName:…`, `RID:…`, `othername:<oid>`.
    #[serde(default)]
    pub subject_alternative_names: Vec<String>,
    /// RFC 5280 names: `digitalSignature`, `keyCertSign`, `cRLSign`, …
    #[serde(default)]
    pub key_usage: Vec<String>,
    /// `clientAuth`, `serverAuth`, … or the dotted OID of an unnamed purpose.
    #[serde(default)]
    pub extended_key_usage: Vec<String>,
    /// Absent when the certificate has no basic constraints extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_constraints: Option<BasicConstraints>,
    /// SHA-1 of the DER, upper-case hex without separators (what Azure's portal shows).
    pub sha1_thumbprint: String,
    pub sha256_thumbprint: String,
    /// e.g. `ECDSA P-256`, `RSA 2048`, `Ed25519`.
    pub public_key_algorithm: String,
    /// e.g. `ecdsa-with-SHA256`, `sha256WithRSAEncryption`.
    pub signature_algorithm: String,
    /// Subject and issuer are the same name.
    pub self_signed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BasicConstraints {
    pub ca: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_len_constraint: Option<u32>,
}

/// A bundle's certificates (leaf first, as given) and whether they form a valid chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainReport {
    pub certificates: Vec<CertificateDetails>,
    pub verdict: ChainVerdict,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainVerdict {
    pub valid: bool,
    /// Subject of the certificate the chain was verified up to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<String>,
    /// Why the chain does not verify (empty when valid).
    #[serde(default)]
    pub problems: Vec<String>,
    /// Remarks that do not make the chain invalid (a self-signed device certificate, no root in the bundle,
    /// certificates that are not part of the chain).
    #[serde(default)]
    pub notes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_camel_case_and_times_in_azure_format() {
        let t = DateTime::from_timestamp(1_700_000_000, 0);
        let r = ChainReport {
            certificates: vec![CertificateDetails {
                subject: "CN=a".into(),
                not_before_utc: t,
                basic_constraints: Some(BasicConstraints { ca: true, path_len_constraint: Some(0) }),
                ..Default::default()
            }],
            verdict: ChainVerdict { valid: true, anchor: Some("CN=a".into()), ..Default::default() },
        };
        let v = serde_json::to_value(&r).expect("serialises");
        assert_eq!(v["certificates"][0]["notBeforeUtc"], "2023-11-14T22:13:20.0000000Z");
        assert_eq!(v["certificates"][0]["basicConstraints"]["pathLenConstraint"], 0);
        assert_eq!(v["certificates"][0]["subjectAlternativeNames"], serde_json::json!([]));
        assert_eq!(v["verdict"]["anchor"], "CN=a");
        let back: ChainReport = serde_json::from_value(v).expect("deserialises");
        assert_eq!(back, r);
    }
}
