//! A store fake for this crate's unit tests: symmetric-key and X.509 groups in memory, no individual
//! enrollments, CAs or hubs; it counts how often the group list is read (what caches must save).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use dps_proto::{CaCertificate, EnrollmentGroup, IndividualEnrollment, LinkedHub};

use crate::model::{Page, PageRequest, Precondition};
use crate::ports::{CertificateStore, ConfigVersion, EnrollmentStore, HubStore, StoreError, StoreResult, TpmChallenge, TpmChallengeStore};

#[derive(Default)]
pub struct FakeStore {
    pub symmetric: Vec<EnrollmentGroup>,
    pub x509: Vec<EnrollmentGroup>,
    pub group_reads: AtomicUsize,
    pub version: AtomicU64,
}

/// A symmetric-key group whose keys are `primary` and `secondary` (base64).
pub fn symmetric_group(id: &str, primary: &str, secondary: &str) -> EnrollmentGroup {
    serde_json::from_value(serde_json::json!({
        "enrollmentGroupId": id,
        "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": primary, "secondaryKey": secondary } }
    }))
    .unwrap_or_else(|e| panic!("a group document: {e}"))
}

fn unsupported<T>() -> StoreResult<T> {
    Err(StoreError::backend("not in the fake"))
}

#[async_trait]
impl EnrollmentStore for FakeStore {
    async fn get_enrollment(&self, _: &str) -> StoreResult<Option<IndividualEnrollment>> {
        Ok(None)
    }
    async fn put_enrollment(&self, _: IndividualEnrollment, _: Precondition) -> StoreResult<IndividualEnrollment> {
        unsupported()
    }
    async fn delete_enrollment(&self, _: &str, _: Precondition) -> StoreResult<()> {
        unsupported()
    }
    async fn query_enrollments(&self, _: PageRequest) -> StoreResult<Page<IndividualEnrollment>> {
        unsupported()
    }
    async fn get_group(&self, id: &str) -> StoreResult<Option<EnrollmentGroup>> {
        Ok(self.symmetric.iter().chain(&self.x509).find(|g| g.enrollment_group_id.eq_ignore_ascii_case(id)).cloned())
    }
    async fn put_group(&self, _: EnrollmentGroup, _: Precondition) -> StoreResult<EnrollmentGroup> {
        unsupported()
    }
    async fn delete_group(&self, _: &str, _: Precondition) -> StoreResult<()> {
        unsupported()
    }
    async fn query_groups(&self, _: PageRequest) -> StoreResult<Page<EnrollmentGroup>> {
        unsupported()
    }
    async fn symmetric_key_groups(&self) -> StoreResult<Vec<EnrollmentGroup>> {
        self.group_reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.symmetric.clone())
    }
    async fn x509_groups(&self) -> StoreResult<Vec<EnrollmentGroup>> {
        Ok(self.x509.clone())
    }
}

#[async_trait]
impl CertificateStore for FakeStore {
    async fn list_cas(&self) -> StoreResult<Vec<CaCertificate>> {
        Ok(Vec::new())
    }
    async fn get_ca(&self, _: &str) -> StoreResult<Option<CaCertificate>> {
        Ok(None)
    }
    async fn put_ca(&self, _: CaCertificate, _: Precondition) -> StoreResult<CaCertificate> {
        unsupported()
    }
    async fn delete_ca(&self, _: &str, _: Precondition) -> StoreResult<()> {
        unsupported()
    }
}

#[async_trait]
impl HubStore for FakeStore {
    async fn list_hubs(&self) -> StoreResult<Vec<LinkedHub>> {
        Ok(Vec::new())
    }
    async fn put_hub(&self, _: LinkedHub) -> StoreResult<()> {
        unsupported()
    }
    async fn delete_hub(&self, _: &str) -> StoreResult<()> {
        unsupported()
    }
}

#[async_trait]
impl TpmChallengeStore for FakeStore {
    async fn put_tpm_challenge(&self, _: &TpmChallenge) -> StoreResult<()> {
        unsupported()
    }
    async fn get_tpm_challenge(&self, _: &str) -> StoreResult<Option<TpmChallenge>> {
        Ok(None)
    }
    async fn claim_tpm_challenge(&self, _: &str, _: &str) -> StoreResult<bool> {
        unsupported()
    }
    async fn purge_tpm_challenges(&self, _: chrono::DateTime<chrono::Utc>) -> StoreResult<u64> {
        unsupported()
    }
}

impl ConfigVersion for FakeStore {
    fn config_version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }
}

/// The fake behind an `Arc`, as `ConfigCache::new` takes it.
pub fn shared(store: FakeStore) -> Arc<FakeStore> {
    Arc::new(store)
}
