//! [`Managed`]: what the management layer needs of an enrollment document beyond [`Enrollment`] — where it lives
//! in the store, the checks that belong to one kind alone, and the quota class it counts in. Everything else
//! (`enrollments.rs`) is written once for both.

use async_trait::async_trait;
use dps_proto::{
    AttestationType, DeviceRegistrationState, Enrollment, EnrollmentGroup, EnrollmentGroupId, IndividualEnrollment, RegistrationId,
};

use crate::error::DpsError;
use crate::limits::Quota;
use crate::model::{Page, PageRequest, Precondition};
use crate::ports::{EnrollmentStore, StoreResult};

/// What a new document counts against: Azure counts individual enrollments, and X.509 and symmetric-key groups
/// apart (§9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaClass {
    Individual,
    Group { x509: bool },
}

impl QuotaClass {
    pub fn quota(self) -> Quota {
        match self {
            Self::Individual => Quota::IndividualEnrollments,
            Self::Group { .. } => Quota::EnrollmentGroups,
        }
    }
}

#[async_trait]
pub trait Managed: Enrollment {
    /// Checks the document's own members (the id's syntax; an individual's device id).
    fn check_own(&self) -> Result<(), DpsError>;
    /// The registration state an individual enrollment shows on reads (never stored); `None` for a group.
    fn registration_state(&mut self) -> Option<&mut Option<DeviceRegistrationState>>;
    fn quota_class(&self) -> QuotaClass;

    async fn load(store: &dyn EnrollmentStore, id: &str) -> StoreResult<Option<Self>>;
    async fn save(store: &dyn EnrollmentStore, e: Self, pre: Precondition) -> StoreResult<Self>;
    async fn save_all(store: &dyn EnrollmentStore, items: Vec<(Self, Precondition)>) -> StoreResult<Vec<StoreResult<Self>>>;
    async fn remove(store: &dyn EnrollmentStore, id: &str, pre: Precondition) -> StoreResult<()>;
    async fn query(store: &dyn EnrollmentStore, page: PageRequest) -> StoreResult<Page<Self>>;
}

fn invalid(e: impl std::fmt::Display) -> DpsError {
    DpsError::invalid(e.to_string())
}

#[async_trait]
impl Managed for IndividualEnrollment {
    fn check_own(&self) -> Result<(), DpsError> {
        RegistrationId::try_from(self.registration_id.as_str()).map_err(invalid)?;
        self.device_id.as_deref().map_or(Ok(()), super::check_device_id)
    }
    fn registration_state(&mut self) -> Option<&mut Option<DeviceRegistrationState>> {
        Some(&mut self.registration_state)
    }
    fn quota_class(&self) -> QuotaClass {
        QuotaClass::Individual
    }

    async fn load(store: &dyn EnrollmentStore, id: &str) -> StoreResult<Option<Self>> {
        store.get_enrollment(id).await
    }
    async fn save(store: &dyn EnrollmentStore, e: Self, pre: Precondition) -> StoreResult<Self> {
        store.put_enrollment(e, pre).await
    }
    async fn save_all(store: &dyn EnrollmentStore, items: Vec<(Self, Precondition)>) -> StoreResult<Vec<StoreResult<Self>>> {
        store.put_enrollments(items).await
    }
    async fn remove(store: &dyn EnrollmentStore, id: &str, pre: Precondition) -> StoreResult<()> {
        store.delete_enrollment(id, pre).await
    }
    async fn query(store: &dyn EnrollmentStore, page: PageRequest) -> StoreResult<Page<Self>> {
        store.query_enrollments(page).await
    }
}

#[async_trait]
impl Managed for EnrollmentGroup {
    fn check_own(&self) -> Result<(), DpsError> {
        EnrollmentGroupId::try_from(self.enrollment_group_id.as_str()).map(drop).map_err(invalid)
    }
    fn registration_state(&mut self) -> Option<&mut Option<DeviceRegistrationState>> {
        None
    }
    fn quota_class(&self) -> QuotaClass {
        QuotaClass::Group { x509: self.attestation.kind == AttestationType::X509 }
    }

    async fn load(store: &dyn EnrollmentStore, id: &str) -> StoreResult<Option<Self>> {
        store.get_group(id).await
    }
    async fn save(store: &dyn EnrollmentStore, g: Self, pre: Precondition) -> StoreResult<Self> {
        store.put_group(g, pre).await
    }
    async fn save_all(store: &dyn EnrollmentStore, items: Vec<(Self, Precondition)>) -> StoreResult<Vec<StoreResult<Self>>> {
        store.put_groups(items).await
    }
    async fn remove(store: &dyn EnrollmentStore, id: &str, pre: Precondition) -> StoreResult<()> {
        store.delete_group(id, pre).await
    }
    async fn query(store: &dyn EnrollmentStore, page: PageRequest) -> StoreResult<Page<Self>> {
        store.query_groups(page).await
    }
}
