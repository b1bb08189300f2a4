//! The ports: everything the domain needs from the outside, as narrow traits. `dps-store` implements the
//! stores (SQLite; PostgreSQL behind the same suite), `dps-hub` the hub connectors, tests fake them.

use std::sync::Arc;

use async_trait::async_trait;
use dps_crypto::Secret;
use dps_proto::{CaCertificate, DeviceIdentity, EnrollmentGroup, IndividualEnrollment, InitialTwin, LinkedHub};

use crate::model::{AccessPolicy, Operation, Page, PageRequest, Precondition, RegistrationRecord};

/// Store failures. `Backend` is internal detail: it is logged, never shown to clients.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("already exists")]
    Conflict,
    #[error("store failure: {0}")]
    Backend(#[source] BackendError),
}

impl StoreError {
    /// A backend failure described by `message` alone (no underlying error).
    pub fn backend(message: impl Into<String>) -> Self {
        Self::Backend(BackendError { message: message.into(), cause: None })
    }

    /// A backend failure caused by `e`, which stays reachable through `source()` for logs.
    pub fn caused_by(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend(BackendError { message: e.to_string(), cause: Some(std::sync::Arc::new(e)) })
    }
}

/// What went wrong in a store backend, with the error that caused it when there is one (`source()`: the
/// database driver's error, its own chain below it). Compared by message.
#[derive(Debug, Clone)]
pub struct BackendError {
    message: String,
    cause: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for BackendError {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for BackendError {}

pub type StoreResult<T> = Result<T, StoreError>;

/// A TPM challenge (§4.4.3): the HMAC key K1 sent to a device inside its authentication key. It expires, and
/// it is answered once: the operation that answered it is recorded, and only that operation's polls may use it.
#[derive(Debug, Clone)]
pub struct TpmChallenge {
    pub registration_id: String,
    /// K1, base64.
    pub key: Secret,
    pub expires: chrono::DateTime<chrono::Utc>,
    pub operation_id: Option<String>,
    /// The device's EK and SRK (raw TPM2B_PUBLIC), public data kept for the hub key's blob.
    pub endorsement_key: Vec<u8>,
    pub storage_root_key: Vec<u8>,
}

/// TPM challenges, by registration id (case-insensitive); one per device, a new one replaces the old.
#[async_trait]
pub trait TpmChallengeStore: Send + Sync {
    async fn put_tpm_challenge(&self, c: &TpmChallenge) -> StoreResult<()>;
    async fn get_tpm_challenge(&self, registration_id: &str) -> StoreResult<Option<TpmChallenge>>;
    /// Records `operation_id` as the answer; false when the challenge was answered already (or is gone).
    async fn claim_tpm_challenge(&self, registration_id: &str, operation_id: &str) -> StoreResult<bool>;
    /// Removes challenges that expired before `before`; returns how many.
    async fn purge_tpm_challenges(&self, before: chrono::DateTime<chrono::Utc>) -> StoreResult<u64>;
}

/// Individual enrollments and enrollment groups. Ids are looked up case-insensitively. Writes check the
/// precondition and keep `createdDateTimeUtc` of the entity they replace, atomically.
#[async_trait]
pub trait EnrollmentStore: Send + Sync {
    async fn get_enrollment(&self, registration_id: &str) -> StoreResult<Option<IndividualEnrollment>>;
    async fn put_enrollment(&self, e: IndividualEnrollment, pre: Precondition) -> StoreResult<IndividualEnrollment>;
    async fn delete_enrollment(&self, registration_id: &str, pre: Precondition) -> StoreResult<()>;
    async fn query_enrollments(&self, page: PageRequest) -> StoreResult<Page<IndividualEnrollment>>;
    /// Writes many enrollments in one durable write, each under its own precondition (one refused does not
    /// stop the others); one result per item, in order. The outer error is a failure of the whole write.
    async fn put_enrollments(
        &self,
        items: Vec<(IndividualEnrollment, Precondition)>,
    ) -> StoreResult<Vec<StoreResult<IndividualEnrollment>>> {
        let mut out = Vec::with_capacity(items.len());
        for (e, pre) in items {
            out.push(self.put_enrollment(e, pre).await);
        }
        Ok(out)
    }

    async fn get_group(&self, group_id: &str) -> StoreResult<Option<EnrollmentGroup>>;
    async fn put_group(&self, g: EnrollmentGroup, pre: Precondition) -> StoreResult<EnrollmentGroup>;
    async fn delete_group(&self, group_id: &str, pre: Precondition) -> StoreResult<()>;
    async fn query_groups(&self, page: PageRequest) -> StoreResult<Page<EnrollmentGroup>>;
    /// [`Self::put_enrollments`] for groups.
    async fn put_groups(&self, items: Vec<(EnrollmentGroup, Precondition)>) -> StoreResult<Vec<StoreResult<EnrollmentGroup>>> {
        let mut out = Vec::with_capacity(items.len());
        for (g, pre) in items {
            out.push(self.put_group(g, pre).await);
        }
        Ok(out)
    }
    /// Every group with symmetric-key attestation (a device does not name its group, §4.2).
    async fn symmetric_key_groups(&self) -> StoreResult<Vec<EnrollmentGroup>>;
    /// The same groups with their keys decoded, shared: what a device's token is checked against. A cache
    /// keeps one copy; the default decodes them on every call.
    async fn symmetric_key_group_keys(&self) -> StoreResult<Arc<[GroupKeys]>> {
        Ok(self.symmetric_key_groups().await?.into_iter().filter_map(GroupKeys::of).collect())
    }
    /// Every group with X.509 attestation (matched through the device's chain, §4.3).
    async fn x509_groups(&self) -> StoreResult<Vec<EnrollmentGroup>>;
}

/// A symmetric-key group and its two keys, decoded (§4.2). Formatting it never shows the keys.
#[derive(Clone)]
pub struct GroupKeys {
    pub group: EnrollmentGroup,
    pub primary: Vec<u8>,
    pub secondary: Vec<u8>,
}

impl GroupKeys {
    /// `None` for a group without both keys or with one that is not base64.
    pub fn of(group: EnrollmentGroup) -> Option<Self> {
        let sk = group.attestation.symmetric_key.as_ref()?;
        let primary = dps_crypto::decode_key(sk.primary_key.as_deref()?).ok()?;
        let secondary = dps_crypto::decode_key(sk.secondary_key.as_deref()?).ok()?;
        Some(Self { group, primary, secondary })
    }
}

impl std::fmt::Debug for GroupKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupKeys").field("group", &self.group.enrollment_group_id).finish_non_exhaustive()
    }
}

/// A number the store changes after every committed write of what a registration reads — enrollments,
/// groups, linked hubs, CA certificates — whichever process wrote it. Caches (`cache.rs`) trust an entry only
/// while the number is the one they read it under. Reading it costs no I/O.
pub trait ConfigVersion: Send + Sync {
    fn config_version(&self) -> u64;
}

/// CA certificates (Azure's certificate store, §4.3). Names are looked up case-insensitively.
#[async_trait]
pub trait CertificateStore: Send + Sync {
    async fn list_cas(&self) -> StoreResult<Vec<CaCertificate>>;
    async fn get_ca(&self, name: &str) -> StoreResult<Option<CaCertificate>>;
    async fn put_ca(&self, ca: CaCertificate, pre: Precondition) -> StoreResult<CaCertificate>;
    async fn delete_ca(&self, name: &str, pre: Precondition) -> StoreResult<()>;
}

/// A credential policy as stored: the policy (never with its private key) and, for an uploaded CA, the key.
#[derive(Debug, Clone)]
pub struct StoredCredentialPolicy {
    pub policy: dps_proto::CredentialPolicy,
    /// The uploaded issuing CA's private key (PEM), sealed at rest; `None` for the local CA.
    pub key: Option<Secret>,
}

/// Credential policies (certificate issuance from a CSR, `credentials/`) and the issuance log. Names are looked
/// up case-insensitively; an uploaded CA's key is sealed at rest.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    async fn list_credential_policies(&self) -> StoreResult<Vec<dps_proto::CredentialPolicy>>;
    async fn get_credential_policy(&self, name: &str) -> StoreResult<Option<StoredCredentialPolicy>>;
    /// Writes `p` (its `private_key` is ignored: `key` is the one kept, sealed).
    async fn put_credential_policy(&self, p: StoredCredentialPolicy, pre: Precondition) -> StoreResult<()>;
    async fn delete_credential_policy(&self, name: &str, pre: Precondition) -> StoreResult<()>;
    /// Logs an issued certificate (before the device is told of it).
    async fn record_issued(&self, c: &dps_proto::IssuedCertificate) -> StoreResult<()>;
    /// The newest issued certificates first, `limit` at most; of one registration id when given.
    async fn list_issued(&self, registration_id: Option<&str>, limit: usize) -> StoreResult<Vec<dps_proto::IssuedCertificate>>;
}

/// Registration records.
#[async_trait]
pub trait RegistrationStore: Send + Sync {
    async fn get_registration(&self, registration_id: &str) -> StoreResult<Option<RegistrationRecord>>;
    async fn put_registration(&self, r: RegistrationRecord) -> StoreResult<()>;
    async fn delete_registration(&self, registration_id: &str, pre: Precondition) -> StoreResult<()>;
    async fn query_registrations(&self, group_id: Option<&str>, page: PageRequest) -> StoreResult<Page<RegistrationRecord>>;
    /// How many registration records are `assigned` to each hub (host name as recorded).
    async fn assigned_per_hub(&self) -> StoreResult<Vec<(String, u64)>>;
}

/// Who runs the assignment of an operation, and until when (renewed while it runs; an expired lease is taken
/// over by a sweeper, so no operation is stranded by a crash, a dropped request or a stalled task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub until: chrono::DateTime<chrono::Utc>,
}

/// Device registration operations (§8) and the coordination of registrations: one operation `assigning` per
/// device at most (a store constraint), leased to the instance that runs it.
#[async_trait]
pub trait OperationStore: Send + Sync {
    /// Writes an operation as it is (no lease); an `assigning` one still counts for the one-per-device rule.
    async fn put_operation(&self, op: &Operation) -> StoreResult<()>;
    async fn get_operation(&self, operation_id: &str) -> StoreResult<Option<Operation>>;
    /// Starts a registration in one write: the new `assigning` operation, leased, and the device's record.
    /// `Conflict` when the device has an operation assigning already (§7.3, 409203).
    async fn begin_registration(&self, op: &Operation, record: &RegistrationRecord, lease: &Lease) -> StoreResult<()>;
    /// Ends it in one write — the terminal operation and the record — if `owner` still holds its lease;
    /// `false` (nothing written) when it does not (another instance took over, or it finished already).
    /// `identity`: the built-in registry's identity of the device, written in the same write.
    async fn finish_registration(
        &self,
        op: &Operation,
        record: &RegistrationRecord,
        identity: Option<&IdentityWrite>,
        owner: &str,
    ) -> StoreResult<bool>;
    /// Extends the lease if `lease.owner` still holds it.
    async fn renew_lease(&self, operation_id: &str, lease: &Lease) -> StoreResult<bool>;
    /// Takes over up to `limit` operations still `assigning` whose lease ended before `expired_before` (or that
    /// have none), oldest first, and returns them.
    async fn claim_operations(
        &self,
        lease: &Lease,
        expired_before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> StoreResult<Vec<Operation>>;
    /// Forgets finished operations last updated before `before`, in small batches; returns how many.
    async fn purge_operations(&self, before: chrono::DateTime<chrono::Utc>) -> StoreResult<u64>;
}

/// Linked hubs (service-level configuration, §7.2).
#[async_trait]
pub trait HubStore: Send + Sync {
    async fn list_hubs(&self) -> StoreResult<Vec<LinkedHub>>;
    async fn put_hub(&self, hub: LinkedHub) -> StoreResult<()>;
    async fn delete_hub(&self, host_name: &str) -> StoreResult<()>;
}

/// Shared access policies of the service API; keys are sealed at rest.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    async fn list_policies(&self) -> StoreResult<Vec<AccessPolicy>>;
    async fn put_policy(&self, p: AccessPolicy) -> StoreResult<()>;
}

/// An identity of the built-in registry with its keys, as it is written. An identity without a twin keeps
/// the twin stored for it (a migration keeps the device's data).
#[derive(Debug, Clone)]
pub struct IdentityWrite {
    pub identity: DeviceIdentity,
    pub keys: Option<(Secret, Secret)>,
}

/// What provisioning a device in a hub did.
#[derive(Debug, Clone)]
pub enum Provisioned {
    /// The identity exists in the hub now.
    InHub,
    /// The identity is in the service's own store: written together with the registration's outcome (one
    /// durable write), so the outcome and the identity exist together or not at all.
    WithOutcome(Box<IdentityWrite>),
}

/// The built-in hub's device registry: identities a connector created.
#[async_trait]
pub trait DeviceRegistryStore: Send + Sync {
    /// Writes an identity ([`IdentityWrite`]: no twin keeps the stored one).
    async fn put_identity(&self, identity: &DeviceIdentity, keys: Option<(&Secret, &Secret)>) -> StoreResult<()>;
    async fn get_identity(&self, hub: &str, device_id: &str) -> StoreResult<Option<DeviceIdentity>>;
    async fn delete_identity(&self, hub: &str, device_id: &str) -> StoreResult<()>;
    async fn list_identities(&self, hub: Option<&str>) -> StoreResult<Vec<DeviceIdentity>>;
}

/// How a device authenticates to its hub (§7.4).
#[derive(Debug, Clone)]
pub enum HubAuthentication {
    Sas {
        primary_key: Secret,
        secondary_key: Secret,
    },
    /// A TPM device's SAS keys (K2, §4.4.3): the hub verifies tokens with them, but the device holds them only
    /// inside its TPM and never presents them — a hub that takes the key itself as a password cannot serve it.
    TpmSas {
        primary_key: Secret,
        secondary_key: Secret,
    },
    SelfSigned {
        primary_thumbprint: String,
        secondary_thumbprint: String,
    },
}

/// What a connector must create or update in a hub.
#[derive(Debug, Clone)]
pub struct HubDevice {
    pub device_id: String,
    pub registration_id: String,
    pub authentication: HubAuthentication,
    pub iot_edge: bool,
    /// The twin to apply (`None`: keep the hub's twin).
    pub initial_twin: Option<InitialTwin>,
    /// Who the identity belongs to: this service and the enrollment the device registered through. Connectors
    /// mark what they create with it and never replace an identity marked otherwise.
    pub owner: IdentityOwner,
    /// An owner whose identity this registration may take over (the engine decided so: its enrollment is gone,
    /// or an individual enrollment now names the device — see `registration/ownership.rs`).
    pub replaces: Option<IdentityOwner>,
}

/// The owner of a device identity in a hub: the DPS instance that created it (its ID scope) and the enrollment
/// the device registered through. Written on the identity as [`IdentityOwner::marker`] (the built-in registry's
/// `createdBy`, Mosquitto's client `textdescription`, an IoT Hub twin tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityOwner {
    pub id_scope: String,
    pub enrollment: crate::model::EnrollmentRef,
}

impl IdentityOwner {
    const PREFIX: &'static str = "dps-console";

    /// `dps-console:<idScope>:<individual|group>:<enrollment id>`.
    pub fn marker(&self) -> String {
        let (kind, id) = match &self.enrollment {
            crate::model::EnrollmentRef::Individual(id) => ("individual", id),
            crate::model::EnrollmentRef::Group(id) => ("group", id),
        };
        format!("{}:{}:{kind}:{}", Self::PREFIX, self.id_scope, id.to_ascii_lowercase())
    }

    /// A marker read back from a hub; `None` for anything this service did not write.
    pub fn parse(marker: &str) -> Option<Self> {
        let mut parts = marker.trim().splitn(4, ':');
        if parts.next()? != Self::PREFIX {
            return None;
        }
        let id_scope = parts.next().filter(|s| !s.is_empty())?.to_owned();
        let kind = parts.next()?;
        let id = parts.next().filter(|s| !s.is_empty())?.to_owned();
        let enrollment = match kind {
            "individual" => crate::model::EnrollmentRef::Individual(id),
            "group" => crate::model::EnrollmentRef::Group(id),
            _ => return None,
        };
        Some(Self { id_scope, enrollment })
    }

    /// The same instance and enrollment (ids compare case-insensitively).
    pub fn same(&self, other: &Self) -> bool {
        self.marker().eq_ignore_ascii_case(&other.marker())
    }
}

impl HubDevice {
    /// What a connector does with an identity it found under the device's id, marked `found` (`None`: no
    /// marker of this service): go on when it is this device's owner or the owner it may replace, else
    /// [`ConnectorError::NotOwned`]. `what` names the identity in the message.
    pub fn check_owner(&self, found: Option<&str>, what: &str) -> Result<(), ConnectorError> {
        let owner = found.and_then(IdentityOwner::parse);
        let ours = owner.as_ref().is_some_and(|o| o.same(&self.owner) || self.replaces.as_ref().is_some_and(|r| o.same(r)));
        if ours {
            return Ok(());
        }
        let whose = match &owner {
            Some(o) if o.id_scope.eq_ignore_ascii_case(&self.owner.id_scope) => "belongs to another enrollment of this service".to_owned(),
            Some(o) => format!("was created by another provisioning service (ID scope {})", o.id_scope),
            None => "was not created by this service".to_owned(),
        };
        Err(ConnectorError::NotOwned {
            owner,
            message: format!("{what} '{}' exists and {whose}; it is left alone", self.device_id.escape_debug()),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("the hub is unreachable: {0}")]
    Unavailable(String),
    #[error("the hub refused the request: {0}")]
    Refused(String),
    /// The hub has an identity under the device's id that this registration does not own (another enrollment's,
    /// another service's, or one made by hand): it is not replaced. `owner`: its marker, when this service wrote one.
    #[error("{message}")]
    NotOwned { owner: Option<IdentityOwner>, message: String },
}

/// Creates device identities in a hub (built-in registry, Azure IoT Hub, MQTT broker…).
#[async_trait]
pub trait HubConnector: Send + Sync {
    /// Checks a hub's connector settings when it is linked (kind known, credentials well-formed).
    fn check(&self, _hub: &LinkedHub) -> Result<(), ConnectorError> {
        Ok(())
    }
    /// Checks that the hub answers with these credentials now (one attempt, no retries): what the console
    /// shows as the connector's status. Returns what was checked.
    async fn probe(&self, _hub: &LinkedHub) -> Result<String, ConnectorError> {
        Ok("no remote hub to reach".into())
    }
    /// Creates or updates the identity and applies the twin, or (a registry in the service's own store) hands
    /// it back to be written with the registration's outcome. Idempotent.
    async fn provision(&self, hub: &LinkedHub, device: &HubDevice) -> Result<Provisioned, ConnectorError>;
    /// Removes the identity (device moved to another hub).
    async fn deprovision(&self, hub: &LinkedHub, device_id: &str) -> Result<(), ConnectorError>;
    /// The identity's twin (tags and desired properties), to carry it to a new hub (§7.3 migrate).
    async fn read_twin(&self, _hub: &LinkedHub, _device_id: &str) -> Result<Option<InitialTwin>, ConnectorError> {
        Ok(None)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the webhook did not answer in time")]
    Timeout,
    /// Never with the URL: its query holds the function key (`reqwest::Error::without_url`).
    #[error("the webhook cannot be reached: {0}")]
    Transport(String),
    /// The answer was longer than the client reads (final: a webhook that answers so is not retried).
    #[error("the webhook's answer is larger than {0} bytes; it was not read")]
    TooLarge(usize),
}

/// Calls a custom allocation webhook (§6): POSTs the JSON and returns the status and body.
#[async_trait]
pub trait AllocationWebhook: Send + Sync {
    async fn call(&self, url: &str, body: &serde_json::Value) -> Result<(u16, Vec<u8>), WebhookError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EnrollmentRef;

    fn owner(scope: &str, e: EnrollmentRef) -> IdentityOwner {
        IdentityOwner { id_scope: scope.into(), enrollment: e }
    }

    fn device(o: IdentityOwner, replaces: Option<IdentityOwner>) -> HubDevice {
        HubDevice {
            device_id: "dev".into(),
            registration_id: "dev".into(),
            authentication: HubAuthentication::SelfSigned { primary_thumbprint: "t".into(), secondary_thumbprint: "t".into() },
            iot_edge: false,
            initial_twin: None,
            owner: o,
            replaces,
        }
    }

    #[test]
    fn owner_markers_round_trip_and_refuse_what_this_service_did_not_write() {
        let g = owner("0ne00000001", EnrollmentRef::Group("Fleet:A".into()));
        assert_eq!(g.marker(), "dps-console:0ne00000001:group:fleet:a");
        assert!(IdentityOwner::parse(&g.marker()).is_some_and(|p| p.same(&g)));
        let i = owner("0ne00000001", EnrollmentRef::Individual("dev".into()));
        assert_eq!(IdentityOwner::parse(&i.marker()), Some(i.clone()));
        for junk in ["", "dps-console", "dps-console::group:x", "dps-console:s:other:x", "someone-else:s:group:x", "dps-console:s:group:"] {
            assert_eq!(IdentityOwner::parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn an_identity_of_another_owner_is_refused_unless_it_may_be_replaced() {
        let g = owner("0ne00000001", EnrollmentRef::Group("g".into()));
        let h = owner("0ne00000001", EnrollmentRef::Group("h".into()));
        let elsewhere = owner("0ne00000002", EnrollmentRef::Group("g".into()));
        let same_in_other_case = owner("0ne00000001", EnrollmentRef::Group("G".into()));
        assert!(device(g.clone(), None).check_owner(Some(&same_in_other_case.marker()), "x").is_ok());
        let refused = |d: HubDevice, found: Option<&str>| match d.check_owner(found, "the identity") {
            Err(ConnectorError::NotOwned { owner, message }) => (owner, message),
            other => panic!("{other:?}"),
        };
        let (found, message) = refused(device(h.clone(), None), Some(&g.marker()));
        assert_eq!(found, Some(g.clone()));
        assert!(message.contains("another enrollment of this service"), "{message}");
        assert!(refused(device(g.clone(), None), Some(&elsewhere.marker())).1.contains("another provisioning service"));
        assert!(refused(device(g.clone(), None), None).1.contains("not created by this service"));
        assert!(device(h, Some(g.clone())).check_owner(Some(&g.marker()), "x").is_ok());
    }
}

#[cfg(test)]
mod store_error_tests {
    use super::StoreError;
    use std::error::Error;

    #[test]
    fn a_backend_failure_keeps_its_cause() {
        let e = StoreError::caused_by(std::io::Error::other("disk full"));
        assert_eq!(e.to_string(), "store failure: disk full");
        let cause = e.source().and_then(Error::source).expect("the io error below the backend error");
        assert_eq!(cause.to_string(), "disk full");
        assert!(StoreError::backend("no answer").source().and_then(Error::source).is_none());
        assert_eq!(StoreError::backend("disk full"), e, "compared by message");
    }
}
