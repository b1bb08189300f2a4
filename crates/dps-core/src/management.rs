//! The service API's domain (§5): enrollments, enrollment groups, registration records, bulk operations
//! and linked hubs. Transports parse requests into these calls; the store does the conditional writes.

use std::sync::Arc;

use dps_crypto::{generate_key, validate_key};
use dps_proto::{
    AllocationPolicy, AttestationMechanism, AttestationType, BulkEnrollmentGroupOperation, BulkEnrollmentOperation,
    BulkEnrollmentOperationError, BulkEnrollmentOperationResult, BulkMode, CaCertificate, DeviceCapabilities, DeviceRegistrationState,
    EnrollmentGroup, EnrollmentGroupId, IndividualEnrollment, LinkedHub, ProvisioningStatus, RegistrationId, ReprovisionPolicy,
    SymmetricKeyAttestation,
};

use crate::api_version::Schema;
use crate::error::{DpsError, ErrorKind};
use crate::limits::Quota;
use crate::model::{new_etag, Page, PageRequest, Precondition, RegistrationRecord};
use crate::ports::{CertificateStore, EnrollmentStore, HubConnector, HubStore, RegistrationStore, StoreError};
use crate::Clock;

#[derive(Clone)]
pub struct Management {
    pub enrollments: Arc<dyn EnrollmentStore>,
    pub registrations: Arc<dyn RegistrationStore>,
    pub hubs: Arc<dyn HubStore>,
    pub certificates: Arc<dyn CertificateStore>,
    pub connector: Arc<dyn HubConnector>,
    /// The limits profile: count quotas and bulk size under `azure` (`limits.rs`).
    pub limits: crate::limits::Limits,
    pub clock: Arc<dyn Clock>,
}

/// Maps a store failure for an entity called `what`.
fn map_store(what: String) -> impl Fn(StoreError) -> DpsError {
    move |e| match e {
        StoreError::NotFound => DpsError::new(ErrorKind::EnrollmentNotFound, format!("{what} not found")),
        StoreError::PreconditionFailed => DpsError::new(
            ErrorKind::PreconditionFailed,
            format!("{what}: the If-Match etag does not match the current etag (precondition failed)"),
        ),
        StoreError::Conflict => DpsError::new(ErrorKind::Conflict, format!("{what} already exists")),
        StoreError::Backend(detail) => {
            // As an error value: the log shows the backend's message and the chain of causes below it.
            tracing::error!(error = &detail as &(dyn std::error::Error + 'static), "store failure");
            DpsError::new(ErrorKind::Unavailable, "the store is unavailable; try again")
        }
    }
}

fn check_device_id(d: &str) -> Result<(), DpsError> {
    let ok = !d.is_empty() && d.len() <= 128 && d.chars().all(|c| c.is_ascii_alphanumeric() || "-.+%_#*?!(),:=@$'".contains(c));
    if ok {
        Ok(())
    } else {
        Err(DpsError::invalid(format!(
            "deviceId '{}' is invalid: 1–128 characters, letters, digits and - . + % _ # * ? ! ( ) , : = @ $ '",
            d.escape_debug()
        )))
    }
}

/// Fills generated keys in and checks supplied ones (§4.2: 16–64 bytes of base64).
fn prepare_symmetric_key(a: &mut AttestationMechanism) -> Result<(), DpsError> {
    let sk = a.symmetric_key.get_or_insert_with(SymmetricKeyAttestation::default);
    for (name, slot) in [("primaryKey", &mut sk.primary_key), ("secondaryKey", &mut sk.secondary_key)] {
        match slot.as_deref().map(str::trim) {
            None | Some("") => *slot = Some(generate_key()),
            Some(k) => {
                validate_key(k).map_err(|e| DpsError::invalid(format!("attestation.symmetricKey.{name}: {e}")))?;
            }
        }
    }
    a.tpm = None;
    a.x509 = None;
    Ok(())
}

fn prepare_attestation(a: &mut AttestationMechanism, group: bool) -> Result<(), DpsError> {
    match a.kind {
        AttestationType::SymmetricKey => prepare_symmetric_key(a),
        AttestationType::Tpm => {
            if group {
                return Err(DpsError::invalid("enrollment groups do not support TPM attestation"));
            }
            let ek = a.tpm.as_ref().and_then(|t| t.endorsement_key.as_deref()).unwrap_or_default();
            use base64::Engine;
            if ek.is_empty() || base64::engine::general_purpose::STANDARD.decode(ek).is_err() {
                return Err(DpsError::invalid("attestation.tpm.endorsementKey is required (base64 of the EK's TPM2B_PUBLIC)"));
            }
            a.x509 = None;
            a.symmetric_key = None;
            Ok(())
        }
        AttestationType::X509 => {
            let x = a.x509.as_mut().ok_or_else(|| DpsError::invalid("attestation.x509 is required for type x509"))?;
            crate::x509::fill_infos(x)?;
            let has_cert = |c: &Option<dps_proto::X509Certificates>| {
                c.as_ref().and_then(|c| c.primary.as_ref()).and_then(|p| p.certificate.as_deref()).is_some_and(|s| !s.trim().is_empty())
            };
            let has_ca = x.ca_references.as_ref().and_then(|c| c.primary.as_deref()).is_some_and(|s| !s.is_empty());
            let ok = if group { has_cert(&x.signing_certificates) || has_ca } else { has_cert(&x.client_certificates) || has_ca };
            if !ok {
                return Err(DpsError::invalid(if group {
                    "attestation.x509 needs signingCertificates.primary.certificate or caReferences.primary"
                } else {
                    "attestation.x509 needs clientCertificates.primary.certificate or caReferences.primary"
                }));
            }
            a.tpm = None;
            a.symmetric_key = None;
            Ok(())
        }
        AttestationType::None => Err(DpsError::invalid("attestation type 'none' cannot be enrolled; use symmetricKey, x509 or tpm")),
    }
}

impl Management {
    /// Whether count quotas are checked (the `azure` limits profile); the default profile reads nothing more.
    fn quotas_apply(&self) -> bool {
        self.limits.profile() == crate::limits::Profile::Azure
    }

    /// What the checks of enrollments and groups read from the store: the linked hubs, and the CA names when
    /// an item names a CA. Read once per request — once for a whole bulk operation, not once per item.
    async fn references(&self, needs_cas: bool) -> References {
        let hubs = self.hubs.list_hubs().await.map_err(map_store("linked hubs".into()));
        let cas = if needs_cas {
            self.certificates
                .list_cas()
                .await
                .map(|cas| cas.into_iter().map(|c| c.name.to_ascii_lowercase()).collect())
                .map_err(map_store("CA certificates".into()))
        } else {
            Ok(Vec::new())
        };
        References { hubs, cas }
    }
}

/// The linked hubs and CA names the checks compare with (a read failure is the answer of each check that
/// needs it, in the order the checks run).
struct References {
    hubs: Result<Vec<LinkedHub>, DpsError>,
    /// Lower-case names (CA names compare case-insensitively).
    cas: Result<Vec<String>, DpsError>,
}

fn ca_names(a: &AttestationMechanism) -> impl Iterator<Item = &String> {
    a.x509
        .iter()
        .flat_map(|x| x.ca_references.iter())
        .flat_map(|r| [r.primary.as_ref(), r.secondary.as_ref()])
        .flatten()
        .filter(|n| !n.is_empty())
}

/// CA references must name certificates in the store (verification is checked when devices register, so a
/// group can be prepared before its CA is verified).
fn check_ca_references(refs: &References, a: &AttestationMechanism) -> Result<(), DpsError> {
    for n in ca_names(a) {
        let cas = refs.cas.as_ref().map_err(Clone::clone)?;
        let wanted = n.to_ascii_lowercase();
        if !cas.contains(&wanted) {
            return Err(DpsError::invalid(format!(
                "caReferences: no CA certificate named '{n}' (upload it first: dps ca upload {n} --certificate-path FILE)"
            )));
        }
    }
    Ok(())
}

struct Allocation<'a> {
    policy: Option<AllocationPolicy>,
    iot_hubs: &'a Option<Vec<String>>,
    legacy: &'a Option<String>,
    custom: Option<&'a dps_proto::CustomAllocationDefinition>,
}

fn check_allocation(refs: &References, a: Allocation<'_>) -> Result<(), DpsError> {
    let linked = refs.hubs.as_ref().map_err(Clone::clone)?;
    let named: Vec<&String> = a.iot_hubs.iter().flatten().chain(a.legacy.iter()).collect();
    for n in &named {
        if !linked.iter().any(|h| h.host_name.eq_ignore_ascii_case(n)) {
            return Err(DpsError::invalid(format!("iotHubs: '{n}' is not a linked hub (link it first: dps hub add {n})")));
        }
    }
    match a.policy {
        Some(AllocationPolicy::Static) if a.iot_hubs.as_ref().map_or(usize::from(a.legacy.is_some()), Vec::len) != 1 => {
            Err(DpsError::invalid("allocationPolicy static needs exactly one hub in iotHubs"))
        }
        Some(AllocationPolicy::Custom) if a.custom.is_none() => {
            Err(DpsError::invalid("allocationPolicy custom needs customAllocationDefinition (webhookUrl and apiVersion)"))
        }
        _ => match a.custom {
            Some(c) => crate::api_version::check_webhook_version(&c.api_version).map_err(DpsError::invalid),
            None => Ok(()),
        },
    }
}

impl Management {
    /// Stamps a write: new etag, both times now (the store keeps the created time of what it replaces).
    fn stamp(
        &self,
        created: &mut Option<chrono::DateTime<chrono::Utc>>,
        updated: &mut Option<chrono::DateTime<chrono::Utc>>,
        etag: &mut Option<String>,
    ) {
        let now = self.clock.now();
        *created = Some(now);
        *updated = Some(now);
        *etag = Some(new_etag());
    }

    /// Validates and completes an individual enrollment before it is written.
    pub async fn prepare_enrollment(
        &self,
        path_id: Option<&str>,
        e: IndividualEnrollment,
        schema: Schema,
    ) -> Result<IndividualEnrollment, DpsError> {
        let refs = self.references(ca_names(&e.attestation).next().is_some()).await;
        self.prepare_enrollment_with(&refs, path_id, e, schema)
    }

    /// [`Self::prepare_enrollment`] against references already read.
    fn prepare_enrollment_with(
        &self,
        refs: &References,
        path_id: Option<&str>,
        mut e: IndividualEnrollment,
        schema: Schema,
    ) -> Result<IndividualEnrollment, DpsError> {
        let id = RegistrationId::try_from(e.registration_id.as_str()).map_err(|x| DpsError::invalid(x.to_string()))?;
        if let Some(p) = path_id {
            if !p.eq_ignore_ascii_case(id.as_str()) {
                return Err(DpsError::invalid(format!(
                    "registrationId '{}' in the body does not match '{}' in the path",
                    id,
                    p.escape_debug()
                )));
            }
        }
        if let Some(d) = e.device_id.as_deref() {
            check_device_id(d)?;
        }
        prepare_attestation(&mut e.attestation, false)?;
        check_ca_references(refs, &e.attestation)?;
        check_allocation(
            refs,
            Allocation {
                policy: e.allocation_policy,
                iot_hubs: &e.iot_hubs,
                legacy: &e.iot_hub_host_name,
                custom: e.custom_allocation_definition.as_ref(),
            },
        )?;
        e.registration_state = None;
        e.provisioning_status.get_or_insert(ProvisioningStatus::Enabled);
        if schema == Schema::Current {
            e.reprovision_policy.get_or_insert(ReprovisionPolicy::default());
        }
        e.capabilities.get_or_insert(DeviceCapabilities::default());
        self.stamp(&mut e.created_date_time_utc, &mut e.last_updated_date_time_utc, &mut e.etag);
        Ok(e)
    }

    /// Validates and completes an enrollment group before it is written.
    pub async fn prepare_group(&self, path_id: Option<&str>, g: EnrollmentGroup, schema: Schema) -> Result<EnrollmentGroup, DpsError> {
        let refs = self.references(ca_names(&g.attestation).next().is_some()).await;
        self.prepare_group_with(&refs, path_id, g, schema)
    }

    /// [`Self::prepare_group`] against references already read.
    fn prepare_group_with(
        &self,
        refs: &References,
        path_id: Option<&str>,
        mut g: EnrollmentGroup,
        schema: Schema,
    ) -> Result<EnrollmentGroup, DpsError> {
        let id = EnrollmentGroupId::try_from(g.enrollment_group_id.as_str()).map_err(|x| DpsError::invalid(x.to_string()))?;
        if let Some(p) = path_id {
            if !p.eq_ignore_ascii_case(id.as_str()) {
                return Err(DpsError::invalid(format!(
                    "enrollmentGroupId '{}' in the body does not match '{}' in the path",
                    id,
                    p.escape_debug()
                )));
            }
        }
        prepare_attestation(&mut g.attestation, true)?;
        check_ca_references(refs, &g.attestation)?;
        check_allocation(
            refs,
            Allocation {
                policy: g.allocation_policy,
                iot_hubs: &g.iot_hubs,
                legacy: &g.iot_hub_host_name,
                custom: g.custom_allocation_definition.as_ref(),
            },
        )?;
        g.provisioning_status.get_or_insert(ProvisioningStatus::Enabled);
        if schema == Schema::Current {
            g.reprovision_policy.get_or_insert(ReprovisionPolicy::default());
        }
        g.capabilities.get_or_insert(DeviceCapabilities::default());
        self.stamp(&mut g.created_date_time_utc, &mut g.last_updated_date_time_utc, &mut g.etag);
        Ok(g)
    }

    // ---- individual enrollments ----

    pub async fn get_enrollment(&self, id: &str) -> Result<IndividualEnrollment, DpsError> {
        let what = format!("enrollment '{}'", id.escape_debug());
        let mut e = self
            .enrollments
            .get_enrollment(id)
            .await
            .map_err(map_store(what.clone()))?
            .ok_or_else(|| map_store(what)(StoreError::NotFound))?;
        e.registration_state = self.registrations.get_registration(id).await.ok().flatten().map(|r| r.state);
        Ok(e)
    }

    pub async fn put_enrollment(
        &self,
        path_id: &str,
        e: IndividualEnrollment,
        pre: Precondition,
        schema: Schema,
    ) -> Result<IndividualEnrollment, DpsError> {
        let e = self.prepare_enrollment(Some(path_id), e, schema).await?;
        self.enrollment_quota(&e).await?;
        let what = format!("enrollment '{}'", e.registration_id);
        self.enrollments.put_enrollment(e, pre).await.map_err(map_store(what))
    }

    /// The count quota for one enrollment about to be written (a new one must fit; a replacement always does).
    async fn enrollment_quota(&self, e: &IndividualEnrollment) -> Result<(), DpsError> {
        if self.quotas_apply()
            && self.enrollments.get_enrollment(&e.registration_id).await.map_err(map_store("enrollments".into()))?.is_none()
        {
            self.limits.check_quota(Quota::IndividualEnrollments, self.enrollment_count().await?)?;
        }
        Ok(())
    }

    async fn enrollment_count(&self) -> Result<u64, DpsError> {
        let page = PageRequest { max_items: 1, ..Default::default() };
        Ok(self.enrollments.query_enrollments(page).await.map_err(map_store("enrollments".into()))?.total)
    }

    pub async fn delete_enrollment(&self, id: &str, pre: Precondition) -> Result<(), DpsError> {
        self.enrollments.delete_enrollment(id, pre).await.map_err(map_store(format!("enrollment '{}'", id.escape_debug())))
    }

    pub async fn query_enrollments(&self, page: PageRequest) -> Result<Page<IndividualEnrollment>, DpsError> {
        self.enrollments.query_enrollments(page).await.map_err(map_store("enrollments".into()))
    }

    pub async fn enrollment_attestation(&self, id: &str) -> Result<AttestationMechanism, DpsError> {
        Ok(self.get_enrollment(id).await?.attestation)
    }

    /// A bulk operation (§5.3): every item validated first (against linked hubs and CAs read once), the count
    /// quota checked once for the batch, and the valid items written in one durable write, each under its own
    /// precondition. Per-item failures are reported as single writes report them. `delete` goes item by item.
    pub async fn bulk_enrollments(&self, op: BulkEnrollmentOperation, schema: Schema) -> BulkEnrollmentOperationResult {
        let ids: Vec<String> = op.enrollments.iter().map(|e| e.registration_id.clone()).collect();
        let mut failures: Vec<Option<DpsError>> = vec![None; ids.len()];
        if op.mode == BulkMode::Delete {
            for (i, e) in op.enrollments.into_iter().enumerate() {
                let pre = e.etag.map_or(Precondition::None, Precondition::Etag);
                failures[i] = self.delete_enrollment(&e.registration_id, pre).await.err();
            }
        } else {
            let refs = self.references(op.enrollments.iter().any(|e| ca_names(&e.attestation).next().is_some())).await;
            let mut ready = Vec::with_capacity(ids.len());
            for (i, e) in op.enrollments.into_iter().enumerate() {
                let pre = bulk_precondition(op.mode, &e.etag);
                match self.prepare_enrollment_with(&refs, Some(&ids[i]), e, schema) {
                    Ok(e) => ready.push((i, (e, pre))),
                    Err(err) => failures[i] = Some(err),
                }
            }
            let fits = match self.quotas_apply() {
                false => Ok(true),
                true => self.enrollment_count().await.map(|n| {
                    let new_at_most = ready.len() as u64;
                    new_at_most == 0 || self.limits.check_quota(Quota::IndividualEnrollments, n + new_at_most - 1).is_ok()
                }),
            };
            match fits {
                Ok(true) => {
                    let (at, items): (Vec<usize>, Vec<_>) = ready.into_iter().unzip();
                    let mut written = self.enrollments.put_enrollments(items).await.map(Vec::into_iter);
                    for i in at {
                        // One answer per item, in order; a failure of the whole write is every item's.
                        let r = match &mut written {
                            Ok(results) => results.next().unwrap_or_else(|| Err(StoreError::backend("no answer for a bulk item"))),
                            Err(e) => Err(e.clone()),
                        };
                        failures[i] = r.err().map(map_store(format!("enrollment '{}'", ids[i])));
                    }
                }
                // Near the quota: each item checked and written in turn, as single writes are.
                Ok(false) => {
                    for (i, (e, pre)) in ready {
                        failures[i] = match self.enrollment_quota(&e).await {
                            Ok(()) => {
                                self.enrollments.put_enrollment(e, pre).await.err().map(map_store(format!("enrollment '{}'", ids[i])))
                            }
                            Err(err) => Some(err),
                        };
                    }
                }
                Err(err) => ready.iter().for_each(|(i, _)| failures[*i] = Some(err.clone())),
            }
        }
        bulk_result(ids, failures, |id| (Some(id), None))
    }

    // ---- enrollment groups ----

    pub async fn get_group(&self, id: &str) -> Result<EnrollmentGroup, DpsError> {
        let what = format!("enrollment group '{}'", id.escape_debug());
        self.enrollments.get_group(id).await.map_err(map_store(what.clone()))?.ok_or_else(|| map_store(what)(StoreError::NotFound))
    }

    pub async fn put_group(
        &self,
        path_id: &str,
        g: EnrollmentGroup,
        pre: Precondition,
        schema: Schema,
    ) -> Result<EnrollmentGroup, DpsError> {
        let g = self.prepare_group(Some(path_id), g, schema).await?;
        self.group_quota(&g).await?;
        let what = format!("enrollment group '{}'", g.enrollment_group_id);
        self.enrollments.put_group(g, pre).await.map_err(map_store(what))
    }

    /// The count quota for one group about to be written (a new one must fit; a replacement always does).
    async fn group_quota(&self, g: &EnrollmentGroup) -> Result<(), DpsError> {
        if self.quotas_apply()
            && self.enrollments.get_group(&g.enrollment_group_id).await.map_err(map_store("enrollment groups".into()))?.is_none()
        {
            self.limits.check_quota(Quota::EnrollmentGroups, self.group_count(g.attestation.kind == AttestationType::X509).await?)?;
        }
        Ok(())
    }

    /// Azure counts symmetric-key and X.509 groups separately (§9).
    async fn group_count(&self, x509: bool) -> Result<u64, DpsError> {
        let same_kind = if x509 { self.enrollments.x509_groups().await } else { self.enrollments.symmetric_key_groups().await };
        Ok(same_kind.map_err(map_store("enrollment groups".into()))?.len() as u64)
    }

    pub async fn delete_group(&self, id: &str, pre: Precondition) -> Result<(), DpsError> {
        self.enrollments.delete_group(id, pre).await.map_err(map_store(format!("enrollment group '{}'", id.escape_debug())))
    }

    pub async fn query_groups(&self, page: PageRequest) -> Result<Page<EnrollmentGroup>, DpsError> {
        self.enrollments.query_groups(page).await.map_err(map_store("enrollment groups".into()))
    }

    pub async fn group_attestation(&self, id: &str) -> Result<AttestationMechanism, DpsError> {
        Ok(self.get_group(id).await?.attestation)
    }

    /// [`Self::bulk_enrollments`] for groups (the quota counts each attestation type apart).
    pub async fn bulk_groups(&self, op: BulkEnrollmentGroupOperation, schema: Schema) -> BulkEnrollmentOperationResult {
        let ids: Vec<String> = op.enrollment_groups.iter().map(|g| g.enrollment_group_id.clone()).collect();
        let mut failures: Vec<Option<DpsError>> = vec![None; ids.len()];
        if op.mode == BulkMode::Delete {
            for (i, g) in op.enrollment_groups.into_iter().enumerate() {
                let pre = g.etag.map_or(Precondition::None, Precondition::Etag);
                failures[i] = self.delete_group(&g.enrollment_group_id, pre).await.err();
            }
        } else {
            let refs = self.references(op.enrollment_groups.iter().any(|g| ca_names(&g.attestation).next().is_some())).await;
            let mut ready = Vec::with_capacity(ids.len());
            for (i, g) in op.enrollment_groups.into_iter().enumerate() {
                let pre = bulk_precondition(op.mode, &g.etag);
                match self.prepare_group_with(&refs, Some(&ids[i]), g, schema) {
                    Ok(g) => ready.push((i, (g, pre))),
                    Err(err) => failures[i] = Some(err),
                }
            }
            let fits = match self.quotas_apply() {
                false => Ok(true),
                true => self.groups_fit(ready.iter().map(|(_, (g, _))| g)).await,
            };
            match fits {
                Ok(true) => {
                    let (at, items): (Vec<usize>, Vec<_>) = ready.into_iter().unzip();
                    let mut written = self.enrollments.put_groups(items).await.map(Vec::into_iter);
                    for i in at {
                        // One answer per item, in order; a failure of the whole write is every item's.
                        let r = match &mut written {
                            Ok(results) => results.next().unwrap_or_else(|| Err(StoreError::backend("no answer for a bulk item"))),
                            Err(e) => Err(e.clone()),
                        };
                        failures[i] = r.err().map(map_store(format!("enrollment group '{}'", ids[i])));
                    }
                }
                Ok(false) => {
                    for (i, (g, pre)) in ready {
                        failures[i] = match self.group_quota(&g).await {
                            Ok(()) => {
                                self.enrollments.put_group(g, pre).await.err().map(map_store(format!("enrollment group '{}'", ids[i])))
                            }
                            Err(err) => Some(err),
                        };
                    }
                }
                Err(err) => ready.iter().for_each(|(i, _)| failures[*i] = Some(err.clone())),
            }
        }
        bulk_result(ids, failures, |id| (None, Some(id)))
    }

    /// Whether every one of `groups` would fit its type's quota even if all were new (each type counted once).
    async fn groups_fit(&self, groups: impl Iterator<Item = &EnrollmentGroup>) -> Result<bool, DpsError> {
        let (mut x509, mut symmetric) = (0u64, 0u64);
        for g in groups {
            *(if g.attestation.kind == AttestationType::X509 { &mut x509 } else { &mut symmetric }) += 1;
        }
        for (is_x509, new_at_most) in [(true, x509), (false, symmetric)] {
            if new_at_most > 0 {
                let n = self.group_count(is_x509).await?;
                if self.limits.check_quota(Quota::EnrollmentGroups, n + new_at_most - 1).is_err() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    // ---- registration records ----

    pub async fn get_registration(&self, id: &str) -> Result<RegistrationRecord, DpsError> {
        self.registrations
            .get_registration(id)
            .await
            .map_err(map_store(format!("registration '{}'", id.escape_debug())))?
            .ok_or_else(|| DpsError::new(ErrorKind::RegistrationNotFound, format!("registration '{}' not found", id.escape_debug())))
    }

    pub async fn delete_registration(&self, id: &str, pre: Precondition) -> Result<(), DpsError> {
        self.registrations.delete_registration(id, pre).await.map_err(|e| match e {
            StoreError::NotFound => {
                DpsError::new(ErrorKind::RegistrationNotFound, format!("registration '{}' not found", id.escape_debug()))
            }
            other => map_store(format!("registration '{}'", id.escape_debug()))(other),
        })
    }

    /// Registration records of a group (`None`: all records, an extension for the console and CLI).
    pub async fn query_registrations(&self, group_id: Option<&str>, page: PageRequest) -> Result<Page<DeviceRegistrationState>, DpsError> {
        let p = self.registrations.query_registrations(group_id, page).await.map_err(map_store("registrations".into()))?;
        Ok(Page { items: p.items.into_iter().map(|r| r.state).collect(), continuation: p.continuation, total: p.total })
    }

    // ---- linked hubs ----

    /// Linked hubs as the API shows them: connection strings are write-only.
    pub async fn list_hubs(&self) -> Result<Vec<LinkedHub>, DpsError> {
        let mut hubs = self.hubs.list_hubs().await.map_err(map_store("linked hubs".into()))?;
        hubs.iter_mut().for_each(|h| h.connection_string = None);
        Ok(hubs)
    }

    pub async fn put_hub(&self, hub: LinkedHub) -> Result<LinkedHub, DpsError> {
        let name = hub.host_name.trim();
        let valid =
            !name.is_empty() && name.len() <= 253 && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'));
        if !valid {
            return Err(DpsError::invalid(format!("'{}' is not a valid hub host name", hub.host_name.escape_debug())));
        }
        if !(1..=1000).contains(&hub.allocation_weight) {
            return Err(DpsError::invalid(format!("allocationWeight {} is outside 1–1000", hub.allocation_weight)));
        }
        let mut hub = LinkedHub { host_name: name.to_owned(), ..hub };
        // A change of weight or region need not re-send the credentials: keep the stored ones.
        if hub.connection_string.is_none() {
            let linked = self.hubs.list_hubs().await.map_err(map_store("linked hubs".into()))?;
            hub.connection_string = linked
                .into_iter()
                .find(|h| h.host_name.eq_ignore_ascii_case(name) && h.connector == hub.connector)
                .and_then(|h| h.connection_string);
        }
        self.connector.check(&hub).map_err(|e| DpsError::invalid(format!("hub '{name}': {e}")))?;
        if self.quotas_apply() {
            let linked = self.hubs.list_hubs().await.map_err(map_store("linked hubs".into()))?;
            if !linked.iter().any(|h| h.host_name.eq_ignore_ascii_case(name)) {
                self.limits.check_quota(Quota::LinkedHubs, linked.len() as u64)?;
            }
        }
        self.hubs.put_hub(hub.clone()).await.map_err(map_store("linked hub".into()))?;
        hub.connection_string = None;
        Ok(hub)
    }

    /// Probes a linked hub through its connector (one attempt): the console's connector status.
    pub async fn hub_status(&self, host_name: &str, now: chrono::DateTime<chrono::Utc>) -> Result<dps_proto::HubStatus, DpsError> {
        let hubs = self.hubs.list_hubs().await.map_err(map_store("linked hubs".into()))?;
        let hub = hubs
            .into_iter()
            .find(|h| h.host_name.eq_ignore_ascii_case(host_name))
            .ok_or_else(|| DpsError::new(ErrorKind::NotFound, format!("hub '{}' is not linked", host_name.escape_debug())))?;
        let (reachable, message) = match self.connector.probe(&hub).await {
            Ok(m) => (true, m),
            Err(e) => (false, e.to_string()),
        };
        Ok(dps_proto::HubStatus {
            host_name: hub.host_name,
            connector: hub.connector,
            reachable,
            message,
            checked_at: dps_proto::format_time(&now),
        })
    }

    /// Linked hubs with the number of devices assigned to each now (the console's allocation chart). Hubs
    /// that were unlinked but still hold devices are listed with weight 0.
    pub async fn allocation(&self) -> Result<Vec<dps_proto::HubAllocation>, DpsError> {
        let hubs = self.hubs.list_hubs().await.map_err(map_store("linked hubs".into()))?;
        let mut counts = self.registrations.assigned_per_hub().await.map_err(map_store("registrations".into()))?;
        let mut out: Vec<dps_proto::HubAllocation> = hubs
            .into_iter()
            .map(|h| {
                let devices =
                    counts.iter_mut().filter(|(hub, _)| hub.eq_ignore_ascii_case(&h.host_name)).map(|(_, n)| std::mem::take(n)).sum();
                dps_proto::HubAllocation {
                    host_name: h.host_name,
                    allocation_weight: h.allocation_weight,
                    apply_allocation_policy: h.apply_allocation_policy,
                    region: h.region,
                    connector: h.connector,
                    devices,
                }
            })
            .collect();
        for (hub, n) in counts.into_iter().filter(|(_, n)| *n > 0) {
            out.push(dps_proto::HubAllocation { host_name: hub, devices: n, connector: "unlinked".into(), ..Default::default() });
        }
        Ok(out)
    }

    pub async fn delete_hub(&self, host_name: &str) -> Result<(), DpsError> {
        self.hubs.delete_hub(host_name).await.map_err(|e| match e {
            StoreError::NotFound => DpsError::new(ErrorKind::NotFound, format!("hub '{}' is not linked", host_name.escape_debug())),
            other => map_store("linked hub".into())(other),
        })
    }

    // ---- CA certificates (extension) ----

    fn ca_not_found(name: &str) -> DpsError {
        DpsError::new(ErrorKind::NotFound, format!("CA certificate '{}' not found", name.escape_debug()))
    }

    pub async fn list_cas(&self) -> Result<Vec<CaCertificate>, DpsError> {
        self.certificates.list_cas().await.map_err(map_store("CA certificates".into()))
    }

    pub async fn get_ca(&self, name: &str) -> Result<CaCertificate, DpsError> {
        self.certificates.get_ca(name).await.map_err(map_store("CA certificate".into()))?.ok_or_else(|| Self::ca_not_found(name))
    }

    /// Uploads (or replaces) a CA certificate. It is verified only when the upload says so (Azure's
    /// "verified on upload"); replacing the certificate otherwise resets verification.
    pub async fn put_ca(&self, path_name: &str, mut ca: CaCertificate, pre: Precondition) -> Result<CaCertificate, DpsError> {
        if ca.name.is_empty() {
            ca.name = path_name.to_owned();
        }
        let name = EnrollmentGroupId::try_from(ca.name.as_str()).map_err(|e| DpsError::invalid(format!("CA name: {e}")))?;
        if !name.as_str().eq_ignore_ascii_case(path_name) {
            return Err(DpsError::invalid(format!(
                "name '{}' in the body does not match '{}' in the path",
                name,
                path_name.escape_debug()
            )));
        }
        let der = crate::x509::decode_certificate(&ca.certificate)?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| DpsError::invalid(format!("the certificate does not parse: {e}")))?;
        if !matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca) {
            return Err(DpsError::invalid(format!("'{}' is not a CA certificate (basic constraints CA:TRUE missing)", cert.subject())));
        }
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            b64.as_bytes().chunks(64).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("\n")
        );
        let current = self.certificates.get_ca(name.as_str()).await.map_err(map_store("CA certificate".into()))?;
        if current.is_none() && self.quotas_apply() {
            let n = self.certificates.list_cas().await.map_err(map_store("CA certificates".into()))?.len() as u64;
            self.limits.check_quota(Quota::CaCertificates, n)?;
        }
        let same_cert =
            current.as_ref().is_some_and(|c| crate::x509::decode_certificate(&c.certificate).ok().as_deref() == Some(der.as_slice()));
        let keep_verified = same_cert && current.as_ref().is_some_and(|c| c.is_verified);
        ca.is_verified = ca.is_verified || keep_verified;
        ca.verification_code = if ca.is_verified { None } else { current.filter(|_| same_cert).and_then(|c| c.verification_code) };
        ca.info = Some(crate::x509::certificate_info(&b64)?);
        ca.certificate = pem;
        ca.name = name.to_string();
        let now = self.clock.now();
        ca.created_date_time_utc = Some(now);
        ca.last_updated_date_time_utc = Some(now);
        ca.etag = Some(new_etag());
        self.certificates.put_ca(ca, pre).await.map_err(map_store(format!("CA certificate '{name}'")))
    }

    pub async fn delete_ca(&self, name: &str, pre: Precondition) -> Result<(), DpsError> {
        self.certificates.delete_ca(name, pre).await.map_err(|e| match e {
            StoreError::NotFound => Self::ca_not_found(name),
            other => map_store("CA certificate".into())(other),
        })
    }

    /// Azure's "generate verification code": the CN the proof-of-possession certificate must carry.
    pub async fn generate_verification_code(&self, name: &str) -> Result<CaCertificate, DpsError> {
        let mut ca = self.get_ca(name).await?;
        use rand::Rng;
        let code: String = (0..24).map(|_| format!("{:02X}", rand::thread_rng().gen::<u8>())).collect();
        ca.verification_code = Some(code);
        ca.last_updated_date_time_utc = Some(self.clock.now());
        let etag = ca.etag.clone().map_or(Precondition::Exists, Precondition::Etag);
        ca.etag = Some(new_etag());
        self.certificates.put_ca(ca, etag).await.map_err(map_store("CA certificate".into()))
    }

    /// Proof of possession: a certificate with CN = the verification code, signed by the CA's key.
    pub async fn verify_ca(&self, name: &str, proof: &str) -> Result<CaCertificate, DpsError> {
        let mut ca = self.get_ca(name).await?;
        let Some(code) = ca.verification_code.clone() else {
            return Err(DpsError::invalid(format!("generate a verification code for '{name}' first")));
        };
        let ca_der = crate::x509::decode_certificate(&ca.certificate)?;
        let proof_der = crate::x509::decode_bundle(proof.as_bytes())?.into_iter().next().unwrap_or_default();
        let (_, ca_cert) =
            x509_parser::parse_x509_certificate(&ca_der).map_err(|e| DpsError::internal(format!("stored CA does not parse: {e}")))?;
        let (_, p) = x509_parser::parse_x509_certificate(&proof_der)
            .map_err(|e| DpsError::invalid(format!("the verification certificate does not parse: {e}")))?;
        let cn = crate::x509::common_name(&proof_der).unwrap_or_default();
        if cn != code {
            return Err(DpsError::invalid(format!("the verification certificate's CN is '{cn}', not the verification code '{code}'")));
        }
        if p.verify_signature(Some(ca_cert.public_key())).is_err() {
            return Err(DpsError::invalid(format!(
                "the verification certificate is not signed by the key of '{name}' (proof of possession failed)"
            )));
        }
        let now = self.clock.now().timestamp();
        if now < p.validity().not_before.timestamp() || now > p.validity().not_after.timestamp() {
            return Err(DpsError::invalid("the verification certificate is outside its validity period"));
        }
        ca.is_verified = true;
        ca.verification_code = None;
        ca.last_updated_date_time_utc = Some(self.clock.now());
        let etag = ca.etag.clone().map_or(Precondition::Exists, Precondition::Etag);
        ca.etag = Some(new_etag());
        self.certificates.put_ca(ca, etag).await.map_err(map_store("CA certificate".into()))
    }

    // ---- key rolling (extension) ----

    /// Regenerates an enrollment's or a group's symmetric keys: `primary`, `secondary`, `both`, or `swap`
    /// (primary ↔ secondary). The old key stops working at once; a device re-provisions with the new one and
    /// its hub identity gets the new keys.
    pub async fn renew_keys(&self, group: bool, id: &str, key_type: &str) -> Result<AttestationMechanism, DpsError> {
        let what = if group { format!("enrollment group '{}'", id.escape_debug()) } else { format!("enrollment '{}'", id.escape_debug()) };
        fn roll(a: &mut AttestationMechanism, key_type: &str, what: &str) -> Result<(), DpsError> {
            let sk = a
                .symmetric_key
                .as_mut()
                .filter(|_| a.kind == AttestationType::SymmetricKey)
                .ok_or_else(|| DpsError::invalid(format!("{what} does not use symmetric keys")))?;
            match key_type.to_ascii_lowercase().as_str() {
                "primary" => sk.primary_key = Some(generate_key()),
                "secondary" => sk.secondary_key = Some(generate_key()),
                "both" => {
                    sk.primary_key = Some(generate_key());
                    sk.secondary_key = Some(generate_key());
                }
                "swap" => std::mem::swap(&mut sk.primary_key, &mut sk.secondary_key),
                other => {
                    return Err(DpsError::invalid(format!("keyType '{}' is not primary, secondary, both or swap", other.escape_debug())))
                }
            }
            Ok(())
        }
        let now = self.clock.now();
        if group {
            let mut g = self.get_group(id).await?;
            roll(&mut g.attestation, key_type, &what)?;
            let pre = g.etag.clone().map_or(Precondition::Exists, Precondition::Etag);
            g.last_updated_date_time_utc = Some(now);
            g.etag = Some(new_etag());
            Ok(self.enrollments.put_group(g, pre).await.map_err(map_store(what))?.attestation)
        } else {
            let mut e = self.get_enrollment(id).await?;
            roll(&mut e.attestation, key_type, &what)?;
            let pre = e.etag.clone().map_or(Precondition::Exists, Precondition::Etag);
            e.registration_state = None;
            e.last_updated_date_time_utc = Some(now);
            e.etag = Some(new_etag());
            Ok(self.enrollments.put_enrollment(e, pre).await.map_err(map_store(what))?.attestation)
        }
    }
}

/// The precondition each item of a bulk operation is written under.
fn bulk_precondition(mode: BulkMode, etag: &Option<String>) -> Precondition {
    match mode {
        BulkMode::Create => Precondition::NotExists,
        BulkMode::UpdateIfMatchEtag => Precondition::Etag(etag.clone().unwrap_or_default()),
        _ => Precondition::None,
    }
}

/// A bulk operation's answer: the failed items in their order; `ids` names each item as
/// (registrationId, enrollmentGroupId).
fn bulk_result(
    ids: Vec<String>,
    failures: Vec<Option<DpsError>>,
    ids_of: impl Fn(String) -> (Option<String>, Option<String>),
) -> BulkEnrollmentOperationResult {
    let errors: Vec<BulkEnrollmentOperationError> = ids
        .into_iter()
        .zip(failures)
        .filter_map(|(id, f)| f.map(|err| (id, err)))
        .map(|(id, err)| {
            let (registration_id, enrollment_group_id) = ids_of(id);
            BulkEnrollmentOperationError { registration_id, enrollment_group_id, error_code: err.code(), error_status: err.message }
        })
        .collect();
    BulkEnrollmentOperationResult { is_successful: errors.is_empty(), errors }
}
