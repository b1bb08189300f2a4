//! Individual enrollments and enrollment groups (§5.2–5.3), written once over [`Managed`]: prepare (validate and
//! complete), get, put, delete, query, attestation, bulk operations with their quota, key rolling.

use dps_crypto::generate_key;
use dps_proto::{
    AttestationMechanism, AttestationType, BulkEnrollmentOperationResult, BulkMode, DeviceCapabilities, EnrollmentKind, ProvisioningStatus,
    ReprovisionPolicy,
};

use super::managed::{Managed, QuotaClass};
use super::{
    bulk_precondition, bulk_result, ca_names, check_allocation, check_ca_references, map_store, Allocation, Management, References,
};
use crate::api_version::Schema;
use crate::error::DpsError;
use crate::model::{new_etag, Page, PageRequest, Precondition};
use crate::ports::StoreError;

/// `enrollment 'x'` / `enrollment group 'x'`, for messages.
fn what<E: Managed>(id: &str) -> String {
    format!("{} '{}'", E::KIND.noun(), id.escape_debug())
}

impl Management {
    /// Validates and completes a document before it is written.
    pub async fn prepare<E: Managed>(&self, path_id: Option<&str>, e: E, schema: Schema) -> Result<E, DpsError> {
        let refs = self.references(ca_names(e.attestation()).next().is_some()).await;
        self.prepare_with(&refs, path_id, e, schema)
    }

    /// [`Self::prepare`] against references already read.
    fn prepare_with<E: Managed>(&self, refs: &References, path_id: Option<&str>, mut e: E, schema: Schema) -> Result<E, DpsError> {
        e.check_own()?;
        if let Some(p) = path_id.filter(|p| !p.eq_ignore_ascii_case(e.id())) {
            let (member, id) = (E::KIND.id_member(), e.id());
            return Err(DpsError::invalid(format!("{member} '{id}' in the body does not match '{}' in the path", p.escape_debug())));
        }
        if let Some(state) = e.registration_state() {
            *state = None;
        }
        let now = self.clock.now();
        let s = e.shared();
        super::prepare_attestation(s.attestation, E::KIND == EnrollmentKind::Group)?;
        check_ca_references(refs, s.attestation)?;
        let custom = s.custom_allocation_definition.as_ref();
        check_allocation(refs, Allocation { policy: *s.allocation_policy, iot_hubs: s.iot_hubs, legacy: s.iot_hub_host_name, custom })?;
        s.provisioning_status.get_or_insert(ProvisioningStatus::Enabled);
        if schema == Schema::Current {
            s.reprovision_policy.get_or_insert(ReprovisionPolicy::default());
        }
        s.capabilities.get_or_insert(DeviceCapabilities::default());
        (*s.created_date_time_utc, *s.last_updated_date_time_utc, *s.etag) = (Some(now), Some(now), Some(new_etag()));
        Ok(e)
    }

    /// `GET /enrollments/{id}` (with the device's registration state) and `GET /enrollmentGroups/{id}`.
    pub async fn get<E: Managed>(&self, id: &str) -> Result<E, DpsError> {
        let mut e = E::load(&*self.enrollments, id)
            .await
            .map_err(map_store(what::<E>(id)))?
            .ok_or_else(|| map_store(what::<E>(id))(StoreError::NotFound))?;
        if let Some(state) = e.registration_state() {
            *state = self.registrations.get_registration(id).await.ok().flatten().map(|r| r.state);
        }
        Ok(e)
    }

    pub async fn put<E: Managed>(&self, path_id: &str, e: E, pre: Precondition, schema: Schema) -> Result<E, DpsError> {
        let e = self.prepare(Some(path_id), e, schema).await?;
        self.quota(&e).await?;
        let what = what::<E>(e.id());
        E::save(&*self.enrollments, e, pre).await.map_err(map_store(what))
    }

    pub async fn delete<E: Managed>(&self, id: &str, pre: Precondition) -> Result<(), DpsError> {
        E::remove(&*self.enrollments, id, pre).await.map_err(map_store(what::<E>(id)))
    }

    pub async fn query<E: Managed>(&self, page: PageRequest) -> Result<Page<E>, DpsError> {
        E::query(&*self.enrollments, page).await.map_err(map_store(E::KIND.plural().into()))
    }

    pub async fn attestation<E: Managed>(&self, id: &str) -> Result<AttestationMechanism, DpsError> {
        Ok(self.get::<E>(id).await?.attestation().clone())
    }

    /// The count quota for one document about to be written (a new one must fit; a replacement always does).
    async fn quota<E: Managed>(&self, e: &E) -> Result<(), DpsError> {
        if self.quotas_apply() && E::load(&*self.enrollments, e.id()).await.map_err(map_store(E::KIND.plural().into()))?.is_none() {
            let class = e.quota_class();
            self.limits.check_quota(class.quota(), self.count(class).await?)?;
        }
        Ok(())
    }

    /// How many documents count in `class` now.
    async fn count(&self, class: QuotaClass) -> Result<u64, DpsError> {
        let store = &self.enrollments;
        match class {
            QuotaClass::Individual => {
                let page = PageRequest { max_items: 1, ..Default::default() };
                Ok(store.query_enrollments(page).await.map_err(map_store("enrollments".into()))?.total)
            }
            QuotaClass::Group { x509 } => {
                let same_kind = if x509 { store.x509_groups().await } else { store.symmetric_key_groups().await };
                Ok(same_kind.map_err(map_store("enrollment groups".into()))?.len() as u64)
            }
        }
    }

    /// Whether every one of `items` would fit its class's quota even if all were new (each class counted once).
    async fn all_fit<'a, E: Managed>(&self, items: impl Iterator<Item = &'a E>) -> Result<bool, DpsError> {
        let mut new_at_most: Vec<(QuotaClass, u64)> = Vec::new();
        for class in items.map(Managed::quota_class) {
            match new_at_most.iter_mut().find(|(c, _)| *c == class) {
                Some((_, n)) => *n += 1,
                None => new_at_most.push((class, 1)),
            }
        }
        for (class, n) in new_at_most {
            if self.limits.check_quota(class.quota(), self.count(class).await? + n - 1).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A bulk operation (§5.3): every item validated first (against linked hubs and CAs read once), the count
    /// quota checked once for the batch, and the valid items written in one durable write, each under its own
    /// precondition. Per-item failures are reported as single writes report them. `delete` goes item by item.
    pub async fn bulk<E: Managed>(&self, op: E::Bulk, schema: Schema) -> BulkEnrollmentOperationResult {
        let (mode, items) = E::bulk_items(op);
        let ids: Vec<String> = items.iter().map(|e| e.id().to_owned()).collect();
        let failures = match mode {
            BulkMode::Delete => self.bulk_delete(items).await,
            _ => self.bulk_write(mode, items, &ids, schema).await,
        };
        bulk_result(ids, failures, |id| match E::KIND {
            EnrollmentKind::Individual => (Some(id), None),
            EnrollmentKind::Group => (None, Some(id)),
        })
    }

    async fn bulk_delete<E: Managed>(&self, items: Vec<E>) -> Vec<Option<DpsError>> {
        let mut failures = Vec::with_capacity(items.len());
        for e in items {
            let pre = e.etag().map_or(Precondition::None, |t| Precondition::Etag(t.to_owned()));
            failures.push(self.delete::<E>(e.id(), pre).await.err());
        }
        failures
    }

    async fn bulk_write<E: Managed>(&self, mode: BulkMode, items: Vec<E>, ids: &[String], schema: Schema) -> Vec<Option<DpsError>> {
        let mut failures: Vec<Option<DpsError>> = vec![None; ids.len()];
        let refs = self.references(items.iter().any(|e| ca_names(e.attestation()).next().is_some())).await;
        let mut ready = Vec::with_capacity(ids.len());
        for ((i, e), id) in items.into_iter().enumerate().zip(ids) {
            let pre = bulk_precondition(mode, &e.etag().map(str::to_owned));
            match self.prepare_with(&refs, Some(id), e, schema) {
                Ok(e) => ready.push((i, (e, pre))),
                Err(err) => failures[i] = Some(err),
            }
        }
        let fits = if self.quotas_apply() { self.all_fit(ready.iter().map(|(_, (e, _))| e)).await } else { Ok(true) };
        match fits {
            Ok(true) => self.write_all(ready, ids, &mut failures).await,
            // Near the quota: each item checked and written in turn, as single writes are.
            Ok(false) => {
                for (i, (e, pre)) in ready {
                    failures[i] = match self.quota(&e).await {
                        Ok(()) => E::save(&*self.enrollments, e, pre).await.err().map(map_store(what::<E>(&ids[i]))),
                        Err(err) => Some(err),
                    };
                }
            }
            Err(err) => ready.iter().for_each(|(i, _)| failures[*i] = Some(err.clone())),
        }
        failures
    }

    /// The prepared items in one durable write; one answer per item, in order (a failure of the whole write is
    /// every item's).
    async fn write_all<E: Managed>(&self, ready: Vec<(usize, (E, Precondition))>, ids: &[String], failures: &mut [Option<DpsError>]) {
        let (at, items): (Vec<usize>, Vec<_>) = ready.into_iter().unzip();
        let mut written = E::save_all(&*self.enrollments, items).await.map(Vec::into_iter);
        for i in at {
            let r = match &mut written {
                Ok(results) => results.next().unwrap_or_else(|| Err(StoreError::backend("no answer for a bulk item"))),
                Err(e) => Err(e.clone()),
            };
            failures[i] = r.err().map(map_store(what::<E>(&ids[i])));
        }
    }

    /// Regenerates a document's symmetric keys: `primary`, `secondary`, `both`, or `swap` (primary ↔ secondary).
    /// The old key stops working at once; a device re-provisions with the new one and its hub identity gets the
    /// new keys.
    pub async fn renew_keys<E: Managed>(&self, id: &str, key_type: &str) -> Result<AttestationMechanism, DpsError> {
        let mut e = self.get::<E>(id).await?;
        if let Some(state) = e.registration_state() {
            *state = None;
        }
        let pre = e.etag().map_or(Precondition::Exists, |t| Precondition::Etag(t.to_owned()));
        let now = self.clock.now();
        let s = e.shared();
        roll(s.attestation, key_type, &what::<E>(id))?;
        (*s.last_updated_date_time_utc, *s.etag) = (Some(now), Some(new_etag()));
        Ok(E::save(&*self.enrollments, e, pre).await.map_err(map_store(what::<E>(id)))?.attestation().clone())
    }
}

fn roll(a: &mut AttestationMechanism, key_type: &str, what: &str) -> Result<(), DpsError> {
    let sk = a
        .symmetric_key
        .as_mut()
        .filter(|_| a.kind == AttestationType::SymmetricKey)
        .ok_or_else(|| DpsError::invalid(format!("{what} does not use symmetric keys")))?;
    match key_type.to_ascii_lowercase().as_str() {
        "primary" => sk.primary_key = Some(generate_key()),
        "secondary" => sk.secondary_key = Some(generate_key()),
        "both" => (sk.primary_key, sk.secondary_key) = (Some(generate_key()), Some(generate_key())),
        "swap" => std::mem::swap(&mut sk.primary_key, &mut sk.secondary_key),
        other => return Err(DpsError::invalid(format!("keyType '{}' is not primary, secondary, both or swap", other.escape_debug()))),
    }
    Ok(())
}
