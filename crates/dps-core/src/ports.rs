//! The ports: everything the domain needs from the outside, as narrow traits. `dps-store` implements the
//! stores (SQLite; PostgreSQL behind the same suite), `dps-hub` the hub connectors, tests fake them.

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
    Backend(String),
}

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
    /// Every group with X.509 attestation (matched through the device's chain, §4.3).
    async fn x509_groups(&self) -> StoreResult<Vec<EnrollmentGroup>>;
}

/// CA certificates (Azure's certificate store, §4.3). Names are looked up case-insensitively.
#[async_trait]
pub trait CertificateStore: Send + Sync {
    async fn list_cas(&self) -> StoreResult<Vec<CaCertificate>>;
    async fn get_ca(&self, name: &str) -> StoreResult<Option<CaCertificate>>;
    async fn put_ca(&self, ca: CaCertificate, pre: Precondition) -> StoreResult<CaCertificate>;
    async fn delete_ca(&self, name: &str, pre: Precondition) -> StoreResult<()>;
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
    async fn finish_registration(&self, op: &Operation, record: &RegistrationRecord, owner: &str) -> StoreResult<bool>;
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

/// The built-in hub's device registry: identities a connector created.
#[async_trait]
pub trait DeviceRegistryStore: Send + Sync {
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
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("the hub is unreachable: {0}")]
    Unavailable(String),
    #[error("the hub refused the request: {0}")]
    Refused(String),
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
    /// Creates or updates the identity and applies the twin. Idempotent.
    async fn provision(&self, hub: &LinkedHub, device: &HubDevice) -> Result<(), ConnectorError>;
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
    #[error("the webhook cannot be reached: {0}")]
    Transport(String),
}

/// Calls a custom allocation webhook (§6): POSTs the JSON and returns the status and body.
#[async_trait]
pub trait AllocationWebhook: Send + Sync {
    async fn call(&self, url: &str, body: &serde_json::Value) -> Result<(u16, Vec<u8>), WebhookError>;
}
