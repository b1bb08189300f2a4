//! Certificate issuance from a CSR (§1.4 `csr`, §1.5 `issuedCertificateChain`; device API 2025-07-01-preview
//! and the stable 2026-04-01). An enrollment or group names a credential policy (`credentialPolicyName`); the
//! policy names the issuing CA — the service's local CA, or a CA uploaded with its key (sealed at rest) — the
//! validity, and the key types a CSR may carry.
//!
//! When, and with which answers (choices where Azure's behaviour is unverified, README "Certificates from a
//! CSR"):
//! - at register, after attestation (nothing unauthenticated is parsed): the api-version must know `csr`, the
//!   CSR must be base64 DER PKCS#10 whose signature verifies, CN = registration id, a key the policy allows —
//!   else 400 with 400011; no policy named, or none of that name: 400 with 400012;
//! - at the assignment, once the hub is chosen and the device created there: the certificate is signed and
//!   logged (`CredentialStore::record_issued`), then written with the outcome; the device reads the chain in
//!   `registrationState.issuedCertificateChain` (its certificate, the issuing CA, its chain). A failed or
//!   disabled registration issues nothing.
//!
//! `csr.rs` reads and checks a request, `issue.rs` signs; this file holds the policies' rules.

pub mod csr;
pub mod issue;

use std::sync::Arc;

use dps_proto::credentials::{CSR_API_VERSION, MAX_VALIDITY_DAYS};
use dps_proto::{CredentialPolicy, IssuedCertificate, IssuerKind};

pub use csr::CheckedCsr;
pub use issue::{Issued, IssuingCa, Subject};

use crate::error::{DpsError, ErrorKind};
use crate::model::{new_etag, Precondition};
use crate::ports::{CredentialStore, StoreError, StoredCredentialPolicy};
use crate::Clock;

/// The most issued certificates one listing returns.
pub const MAX_LISTED: usize = 1000;

/// Credential policies and issuance: the store, the local CA (absent when its key is not on this instance, as
/// with a cluster's shared CA file) and the clock.
#[derive(Clone)]
pub struct Credentials {
    pub store: Arc<dyn CredentialStore>,
    pub local_ca: Option<Arc<IssuingCa>>,
    pub clock: Arc<dyn Clock>,
}

fn store_error(what: String) -> impl Fn(StoreError) -> DpsError {
    move |e| match e {
        StoreError::NotFound => DpsError::new(ErrorKind::NotFound, format!("{what} not found")),
        StoreError::PreconditionFailed => DpsError::new(ErrorKind::PreconditionFailed, format!("{what}: the If-Match etag does not match")),
        StoreError::Conflict => DpsError::new(ErrorKind::Conflict, format!("{what} already exists")),
        StoreError::Backend(detail) => {
            tracing::error!(error = &detail as &(dyn std::error::Error + 'static), "store failure");
            DpsError::new(ErrorKind::Unavailable, "the store is unavailable; try again")
        }
    }
}

/// A policy name: 1–128 letters, digits, `-`, `.`, `_`.
pub fn check_name(name: &str) -> Result<(), DpsError> {
    let ok = !name.is_empty() && name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
    if ok {
        Ok(())
    } else {
        Err(DpsError::invalid(format!("credential policy name '{}' is invalid: 1–128 letters, digits, - . _", name.escape_debug())))
    }
}

impl Credentials {
    fn what(name: &str) -> String {
        format!("credential policy '{}'", name.escape_debug())
    }

    pub async fn list_policies(&self) -> Result<Vec<CredentialPolicy>, DpsError> {
        self.store.list_credential_policies().await.map_err(store_error("credential policies".into()))
    }

    pub async fn get_policy(&self, name: &str) -> Result<CredentialPolicy, DpsError> {
        let stored = self.store.get_credential_policy(name).await.map_err(store_error(Self::what(name)))?;
        stored.map(|s| s.policy).ok_or_else(|| DpsError::new(ErrorKind::NotFound, format!("{} not found", Self::what(name))))
    }

    /// Creates or replaces a policy. An uploaded CA must come with its key the first time; a replacement that
    /// sends the same certificate without a key keeps the stored key.
    pub async fn put_policy(&self, name: &str, mut p: CredentialPolicy, pre: Precondition) -> Result<CredentialPolicy, DpsError> {
        check_name(name)?;
        if !p.name.is_empty() && !p.name.eq_ignore_ascii_case(name) {
            return Err(DpsError::invalid(format!(
                "the body's name '{}' is not '{}' of the path",
                p.name.escape_debug(),
                name.escape_debug()
            )));
        }
        p.name = name.to_owned();
        if !(1..=MAX_VALIDITY_DAYS).contains(&p.validity_days) {
            return Err(DpsError::invalid(format!("validityDays must be 1 to {MAX_VALIDITY_DAYS}")));
        }
        if p.key_types.is_empty() {
            return Err(DpsError::invalid("keyTypes must name at least one key type"));
        }
        p.key_types.dedup();
        let current = self.store.get_credential_policy(name).await.map_err(store_error(Self::what(name)))?;
        let key = self.issuer_of(&mut p, current.as_ref())?;
        let now = self.clock.now();
        p.created_date_time_utc = current.as_ref().and_then(|c| c.policy.created_date_time_utc).or(Some(now));
        p.last_updated_date_time_utc = Some(now);
        p.etag = Some(new_etag());
        self.store
            .put_credential_policy(StoredCredentialPolicy { policy: p.clone(), key }, pre)
            .await
            .map_err(store_error(Self::what(name)))?;
        Ok(p)
    }

    /// Checks the policy's issuer and fills in its info; returns the key to keep.
    fn issuer_of(
        &self,
        p: &mut CredentialPolicy,
        current: Option<&StoredCredentialPolicy>,
    ) -> Result<Option<dps_crypto::Secret>, DpsError> {
        let key = p.private_key.take().map(dps_crypto::Secret::new);
        match p.issuer {
            IssuerKind::Local => {
                if p.certificate.is_some() || key.is_some() {
                    return Err(DpsError::invalid("a policy with the local CA takes no certificate or privateKey (use issuer: uploaded)"));
                }
                p.issuer_info = match &self.local_ca {
                    Some(ca) => Some(crate::x509::certificate_info_der(ca.certificate())?),
                    None => None,
                };
                Ok(None)
            }
            IssuerKind::Uploaded => {
                let pem = p.certificate.as_deref().ok_or_else(|| DpsError::invalid("an uploaded issuer needs its certificate (PEM)"))?;
                let same = current.filter(|c| c.policy.certificate.as_deref() == Some(pem));
                let key = key
                    .or_else(|| same.and_then(|c| c.key.clone()))
                    .ok_or_else(|| DpsError::invalid("an uploaded issuer needs its privateKey (PEM), sealed at rest and never returned"))?;
                let ca = IssuingCa::new(pem, key.clone())?;
                p.issuer_info = Some(crate::x509::certificate_info_der(ca.certificate())?);
                Ok(Some(key))
            }
        }
    }

    pub async fn delete_policy(&self, name: &str, pre: Precondition) -> Result<(), DpsError> {
        self.store.delete_credential_policy(name, pre).await.map_err(store_error(Self::what(name)))
    }

    pub async fn list_issued(&self, registration_id: Option<&str>, limit: usize) -> Result<Vec<IssuedCertificate>, DpsError> {
        self.store.list_issued(registration_id, limit.clamp(1, MAX_LISTED)).await.map_err(store_error("issued certificates".into()))
    }

    /// The stored policy `name` (with an uploaded CA's key), or 400012.
    async fn stored_policy(&self, name: Option<&str>) -> Result<StoredCredentialPolicy, DpsError> {
        let name = name.ok_or_else(|| {
            DpsError::new(ErrorKind::CredentialPolicyMissing, "the device sent a csr, but its enrollment names no credentialPolicyName")
        })?;
        self.store.get_credential_policy(name).await.map_err(store_error(Self::what(name)))?.ok_or_else(|| {
            DpsError::new(ErrorKind::CredentialPolicyMissing, format!("the enrollment's {} does not exist", Self::what(name)))
        })
    }

    /// The CA that signs under `stored`.
    fn issuer(&self, stored: StoredCredentialPolicy) -> Result<(CredentialPolicy, Arc<IssuingCa>), DpsError> {
        let ca = match (stored.policy.issuer, stored.key, &self.local_ca) {
            (IssuerKind::Local, _, Some(local)) => Arc::clone(local),
            (IssuerKind::Local, _, None) => {
                return Err(DpsError::internal(
                    "the local CA's key is not on this instance (a cluster's shared CA): give the policy an uploaded CA",
                ))
            }
            (IssuerKind::Uploaded, Some(key), _) => {
                Arc::new(IssuingCa::new(stored.policy.certificate.as_deref().unwrap_or_default(), key)?)
            }
            (IssuerKind::Uploaded, None, _) => return Err(DpsError::internal("the uploaded CA's key is missing from the store")),
        };
        Ok((stored.policy, ca))
    }

    /// At register: whether `csr` may be issued under the enrollment's policy `policy` (§1.4).
    pub async fn admit(&self, csr: &str, registration_id: &str, policy: Option<&str>, api_version: Option<&str>) -> Result<(), DpsError> {
        if !crate::api_version::knows_csr(api_version) {
            return Err(DpsError::new(
                ErrorKind::CertificateRequestInvalid,
                format!("csr needs api-version {CSR_API_VERSION} or later (this request says {})", api_version.unwrap_or("none")),
            ));
        }
        let checked = csr::check(csr, registration_id)?;
        let p = self.stored_policy(policy).await?.policy;
        csr::check_key_type(&checked, &p.key_types, &p.name)
    }

    /// At the assignment: signs and logs the device's certificate.
    pub async fn issue(&self, csr: &str, subject: Subject<'_>, policy: Option<&str>) -> Result<Issued, DpsError> {
        let checked = csr::check(csr, subject.registration_id)?;
        let (p, ca) = self.issuer(self.stored_policy(policy).await?)?;
        csr::check_key_type(&checked, &p.key_types, &p.name)?;
        let issued = issue::issue(&ca, &checked, &p, subject, self.clock.now())?;
        self.store.record_issued(&issued.certificate).await.map_err(store_error("the issued certificate".into()))?;
        tracing::info!(
            registration_id = subject.registration_id,
            serial = %issued.certificate.info.serial_number,
            policy = %p.name,
            "certificate issued"
        );
        Ok(issued)
    }
}
