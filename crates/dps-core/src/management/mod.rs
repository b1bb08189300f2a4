//! The service API's domain (§5): enrollments, enrollment groups, registration records, bulk operations
//! and linked hubs. Transports parse requests into these calls; the store does the conditional writes.

use std::sync::Arc;

mod enrollments;
mod managed;

pub use managed::{Managed, QuotaClass};

use dps_crypto::{generate_key, validate_key};
use dps_proto::{
    AllocationPolicy, AttestationMechanism, AttestationType, BulkEnrollmentOperationError, BulkEnrollmentOperationResult, BulkMode,
    CaCertificate, DeviceRegistrationState, EnrollmentGroupId, LinkedHub, SymmetricKeyAttestation,
};

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

    /// A linked hub by its host name (case-insensitively).
    async fn linked_hub(&self, host_name: &str) -> Result<LinkedHub, DpsError> {
        let hubs = self.hubs.list_hubs().await.map_err(map_store("linked hubs".into()))?;
        hubs.into_iter()
            .find(|h| h.host_name.eq_ignore_ascii_case(host_name))
            .ok_or_else(|| DpsError::new(ErrorKind::NotFound, format!("hub '{}' is not linked", host_name.escape_debug())))
    }

    /// Removes a device's identity from a linked hub through its connector (a scenario's reset; the console).
    pub async fn delete_hub_device(&self, host_name: &str, device_id: &str) -> Result<(), DpsError> {
        let hub = self.linked_hub(host_name).await?;
        self.connector
            .deprovision(&hub, device_id)
            .await
            .map_err(|e| DpsError::new(ErrorKind::Unavailable, format!("hub '{}': the identity was not removed: {e}", hub.host_name)))
    }

    /// Probes a linked hub through its connector (one attempt): the console's connector status.
    pub async fn hub_status(&self, host_name: &str, now: chrono::DateTime<chrono::Utc>) -> Result<dps_proto::HubStatus, DpsError> {
        let hub = self.linked_hub(host_name).await?;
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
