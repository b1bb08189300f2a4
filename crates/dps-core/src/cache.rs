//! Read-through caches of what every registration reads: individual enrollments (also the answer "none",
//! which every device of a group gets first), enrollment groups with their keys decoded, linked hubs and CA
//! certificates. [`ConfigCache`] wraps the stores and implements the same traits, so the engine and the
//! service API use it without knowing.
//!
//! Invalidation is driven by the store: it changes its [`ConfigVersion`] after every committed write of these
//! entities (by any process sharing the database), and an entry is used only while the version is the one it
//! was read under. An entry is tagged with the version read *before* its load, so a load that raced a write is
//! never trusted after the write's version change — no lock is held across a store call, and a write is
//! visible to every read that starts after the write returned. Writes go straight to the store.
//!
//! Individual enrollments are bounded ([`ENROLLMENT_ENTRIES`], S3-FIFO eviction by `quick_cache`); the lists
//! (groups, hubs, CAs) are kept whole — each is what the service holds of that kind, read whole today.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use dps_proto::{CaCertificate, EnrollmentGroup, IndividualEnrollment, LinkedHub};

use crate::model::{Page, PageRequest, Precondition};
use crate::ports::{CertificateStore, ConfigVersion, EnrollmentStore, GroupKeys, HubStore, StoreResult};

/// How many individual enrollments (or known absences) are kept.
pub const ENROLLMENT_ENTRIES: usize = 50_000;

type Tagged<T> = (u64, T);

/// One cached value of a whole list, with the version it was read under.
struct Slot<T: ?Sized>(RwLock<Option<Tagged<Arc<T>>>>);

impl<T: ?Sized> Default for Slot<T> {
    fn default() -> Self {
        Self(RwLock::new(None))
    }
}

impl<T: ?Sized> Slot<T> {
    fn get(&self, version: u64) -> Option<Arc<T>> {
        let guard = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_ref().filter(|(v, _)| *v == version).map(|(_, t)| Arc::clone(t))
    }

    fn put(&self, version: u64, value: Arc<T>) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((version, value));
    }

    async fn read_through<F>(&self, version: &dyn ConfigVersion, load: F) -> StoreResult<Arc<T>>
    where
        F: std::future::Future<Output = StoreResult<Arc<T>>>,
    {
        let v = version.config_version();
        if let Some(hit) = self.get(v) {
            return Ok(hit);
        }
        let value = load.await?;
        self.put(v, Arc::clone(&value));
        Ok(value)
    }
}

/// The stores a registration reads, behind caches.
pub struct ConfigCache {
    enrollments: Arc<dyn EnrollmentStore>,
    certificates: Arc<dyn CertificateStore>,
    hubs: Arc<dyn HubStore>,
    version: Arc<dyn ConfigVersion>,
    // Values behind `Arc`: a cache slot is as large as its value type, and most entries of `individual` are
    // "no such enrollment" (group devices looked up by id): inline enrollments made each ~1.5 KB.
    individual: quick_cache::sync::Cache<String, Tagged<Option<Arc<IndividualEnrollment>>>>,
    groups: quick_cache::sync::Cache<String, Tagged<Option<Arc<EnrollmentGroup>>>>,
    group_keys: Slot<[GroupKeys]>,
    x509_groups: Slot<Vec<EnrollmentGroup>>,
    linked: Slot<Vec<LinkedHub>>,
    cas: Slot<Vec<CaCertificate>>,
}

impl ConfigCache {
    /// `store` implements every trait (the service's store); `version` is its change counter.
    pub fn new<S>(store: Arc<S>) -> Arc<Self>
    where
        S: EnrollmentStore + CertificateStore + HubStore + ConfigVersion + 'static,
    {
        Arc::new(Self {
            enrollments: store.clone(),
            certificates: store.clone(),
            hubs: store.clone(),
            version: store,
            individual: quick_cache::sync::Cache::new(ENROLLMENT_ENTRIES),
            groups: quick_cache::sync::Cache::new(ENROLLMENT_ENTRIES / 10),
            group_keys: Slot::default(),
            x509_groups: Slot::default(),
            linked: Slot::default(),
            cas: Slot::default(),
        })
    }

    fn version(&self) -> u64 {
        self.version.config_version()
    }
}

/// One entity by id through a bounded cache.
async fn by_id<T, F>(cache: &quick_cache::sync::Cache<String, Tagged<Option<Arc<T>>>>, v: u64, id: &str, load: F) -> StoreResult<Option<T>>
where
    T: Clone,
    F: std::future::Future<Output = StoreResult<Option<T>>>,
{
    let key = id.to_ascii_lowercase();
    if let Some((tag, hit)) = cache.get(&key) {
        if tag == v {
            return Ok(hit.map(|t| T::clone(&t)));
        }
    }
    let value = load.await?;
    cache.insert(key, (v, value.clone().map(Arc::new)));
    Ok(value)
}

#[async_trait]
impl EnrollmentStore for ConfigCache {
    async fn get_enrollment(&self, registration_id: &str) -> StoreResult<Option<IndividualEnrollment>> {
        by_id(&self.individual, self.version(), registration_id, self.enrollments.get_enrollment(registration_id)).await
    }
    async fn put_enrollment(&self, e: IndividualEnrollment, pre: Precondition) -> StoreResult<IndividualEnrollment> {
        self.enrollments.put_enrollment(e, pre).await
    }
    async fn delete_enrollment(&self, registration_id: &str, pre: Precondition) -> StoreResult<()> {
        self.enrollments.delete_enrollment(registration_id, pre).await
    }
    async fn query_enrollments(&self, page: PageRequest) -> StoreResult<Page<IndividualEnrollment>> {
        self.enrollments.query_enrollments(page).await
    }
    async fn put_enrollments(
        &self,
        items: Vec<(IndividualEnrollment, Precondition)>,
    ) -> StoreResult<Vec<StoreResult<IndividualEnrollment>>> {
        self.enrollments.put_enrollments(items).await
    }

    async fn get_group(&self, group_id: &str) -> StoreResult<Option<EnrollmentGroup>> {
        by_id(&self.groups, self.version(), group_id, self.enrollments.get_group(group_id)).await
    }
    async fn put_group(&self, g: EnrollmentGroup, pre: Precondition) -> StoreResult<EnrollmentGroup> {
        self.enrollments.put_group(g, pre).await
    }
    async fn delete_group(&self, group_id: &str, pre: Precondition) -> StoreResult<()> {
        self.enrollments.delete_group(group_id, pre).await
    }
    async fn query_groups(&self, page: PageRequest) -> StoreResult<Page<EnrollmentGroup>> {
        self.enrollments.query_groups(page).await
    }
    async fn put_groups(&self, items: Vec<(EnrollmentGroup, Precondition)>) -> StoreResult<Vec<StoreResult<EnrollmentGroup>>> {
        self.enrollments.put_groups(items).await
    }
    async fn symmetric_key_groups(&self) -> StoreResult<Vec<EnrollmentGroup>> {
        Ok(self.symmetric_key_group_keys().await?.iter().map(|g| g.group.clone()).collect())
    }
    async fn symmetric_key_group_keys(&self) -> StoreResult<Arc<[GroupKeys]>> {
        self.group_keys.read_through(self.version.as_ref(), self.enrollments.symmetric_key_group_keys()).await
    }
    async fn x509_groups(&self) -> StoreResult<Vec<EnrollmentGroup>> {
        Ok(self
            .x509_groups
            .read_through(self.version.as_ref(), async { self.enrollments.x509_groups().await.map(Arc::new) })
            .await?
            .as_ref()
            .clone())
    }
}

#[async_trait]
impl CertificateStore for ConfigCache {
    async fn list_cas(&self) -> StoreResult<Vec<CaCertificate>> {
        Ok(self.cas.read_through(self.version.as_ref(), async { self.certificates.list_cas().await.map(Arc::new) }).await?.as_ref().clone())
    }
    async fn get_ca(&self, name: &str) -> StoreResult<Option<CaCertificate>> {
        let all = self.cas.read_through(self.version.as_ref(), async { self.certificates.list_cas().await.map(Arc::new) }).await?;
        Ok(all.iter().find(|c| c.name.eq_ignore_ascii_case(name)).cloned())
    }
    async fn put_ca(&self, ca: CaCertificate, pre: Precondition) -> StoreResult<CaCertificate> {
        self.certificates.put_ca(ca, pre).await
    }
    async fn delete_ca(&self, name: &str, pre: Precondition) -> StoreResult<()> {
        self.certificates.delete_ca(name, pre).await
    }
}

#[async_trait]
impl HubStore for ConfigCache {
    async fn list_hubs(&self) -> StoreResult<Vec<LinkedHub>> {
        Ok(self.linked.read_through(self.version.as_ref(), async { self.hubs.list_hubs().await.map(Arc::new) }).await?.as_ref().clone())
    }
    async fn put_hub(&self, hub: LinkedHub) -> StoreResult<()> {
        self.hubs.put_hub(hub).await
    }
    async fn delete_hub(&self, host_name: &str) -> StoreResult<()> {
        self.hubs.delete_hub(host_name).await
    }
}

impl ConfigVersion for ConfigCache {
    fn config_version(&self) -> u64 {
        self.version()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::testing::{shared, symmetric_group, FakeStore};

    #[tokio::test]
    async fn group_keys_are_decoded_once_per_configuration_version() {
        let key = dps_crypto::generate_key();
        let store = shared(FakeStore { symmetric: vec![symmetric_group("g1", &key, &key)], ..FakeStore::default() });
        let cache = ConfigCache::new(Arc::clone(&store));
        let first = cache.symmetric_key_group_keys().await.expect("read");
        for _ in 0..100 {
            let again = cache.symmetric_key_group_keys().await.expect("read");
            assert!(Arc::ptr_eq(&first, &again), "the same decoded keys are shared, not decoded again");
        }
        assert_eq!(store.group_reads.load(Ordering::SeqCst), 1, "one store read (and decode) for 101 look-ups");
        assert_eq!(first.len(), 1);

        store.version.fetch_add(1, Ordering::SeqCst);
        let after_write = cache.symmetric_key_group_keys().await.expect("read");
        assert!(!Arc::ptr_eq(&first, &after_write), "a write's new version is read again");
        assert_eq!(store.group_reads.load(Ordering::SeqCst), 2);
    }
}
