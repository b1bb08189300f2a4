//! CA certificates (upload, proof of possession), the chain inspector, and certificate issuance from a CSR (credential
//! policies and the certificates issued).

use dps_proto::{CaCertificate, CertificateVerification, ChainReport, CredentialPolicy, IssuedCertificate};
use serde::Deserialize;
use serde_json::json;

use super::{decode, seg, ApiClient, ApiError};

/// `POST /certificates/{name}/generateVerificationCode` answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationCode {
    #[serde(default)]
    pub verification_code: Option<String>,
}

impl ApiClient {
    /// `GET /certificates`.
    pub async fn cas(&self) -> Result<Vec<CaCertificate>, ApiError> {
        self.get_json("/certificates", &[]).await
    }

    /// `PUT /certificates/{name}` with a PEM (or base64 DER); `trusted` skips proof of possession.
    pub async fn put_ca(&self, name: &str, certificate: &str, trusted: bool) -> Result<CaCertificate, ApiError> {
        let body = json!({ "certificate": certificate, "isVerified": trusted });
        self.send_json("PUT", &format!("/certificates/{}", seg(name)), &body).await
    }

    /// `DELETE /certificates/{name}`.
    pub async fn delete_ca(&self, name: &str) -> Result<(), ApiError> {
        self.send_unit("DELETE", &format!("/certificates/{}", seg(name)), &[], None).await
    }

    /// `POST /certificates/{name}/generateVerificationCode` → the code the proof certificate's CN must carry.
    pub async fn generate_verification_code(&self, name: &str) -> Result<VerificationCode, ApiError> {
        let r = self.call("POST", &format!("/certificates/{}/generateVerificationCode", seg(name)), &[], &[], None).await?;
        decode(&r)
    }

    /// `POST /certificates/{name}/verify` with the proof-of-possession certificate.
    pub async fn verify_ca(&self, name: &str, certificate: &str) -> Result<CaCertificate, ApiError> {
        let body = CertificateVerification { certificate: certificate.to_string() };
        self.send_json("POST", &format!("/certificates/{}/verify", seg(name)), &body).await
    }

    /// `POST /certificates/inspect` with PEM text (any number of certificates) → every certificate and a verdict.
    pub async fn inspect(&self, pem: &str) -> Result<ChainReport, ApiError> {
        let body = CertificateVerification { certificate: pem.to_string() };
        self.send_json("POST", "/certificates/inspect", &body).await
    }

    /// `GET /credentialPolicies`.
    pub async fn credential_policies(&self) -> Result<Vec<CredentialPolicy>, ApiError> {
        self.get_json("/credentialPolicies", &[]).await
    }

    /// `PUT /credentialPolicies/{name}`.
    pub async fn put_credential_policy(&self, policy: &CredentialPolicy) -> Result<CredentialPolicy, ApiError> {
        self.send_json("PUT", &format!("/credentialPolicies/{}", seg(&policy.name)), policy).await
    }

    /// `DELETE /credentialPolicies/{name}`.
    pub async fn delete_credential_policy(&self, name: &str) -> Result<(), ApiError> {
        self.send_unit("DELETE", &format!("/credentialPolicies/{}", seg(name)), &[], None).await
    }

    /// `GET /issuedCertificates`, the newest first; of one device when `registration_id` is not blank.
    pub async fn issued_certificates(&self, registration_id: &str) -> Result<Vec<IssuedCertificate>, ApiError> {
        let id = registration_id.trim();
        let mut query = vec![("top", "200".to_owned())];
        if !id.is_empty() {
            query.push(("registrationId", id.to_owned()));
        }
        self.get_json("/issuedCertificates", &query).await
    }
}
