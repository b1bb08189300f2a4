//! The registration engine: register, operation status and status look-up (§1.1), the same for every
//! transport. Register attests the device and starts its operation in one durable write (the `assigning`
//! operation, leased to this instance, and the device's record); the answer leaves after that write. The
//! assignment (allocation, hub connector, registration record) runs in its own task under the lease
//! (`coordination.rs`): renewed while it runs, taken over by the sweeper when it ends without finishing —
//! a crash, a restart, a dropped request — so a device that polls later always gets its answer.
//!
//! One file per step: `register.rs` (register, the TPM challenge, the console's re-provisioning),
//! `operation_status.rs` and `status_lookup.rs` (what a device reads), `decide.rs` (the assignment: enrollment,
//! hub, substatus, twin), `webhook.rs` (the custom allocation policy), `provision.rs` (the hub connector:
//! authentication, retries, the old hub), `finish.rs` (the outcome written with its trace), `record.rs` (the
//! device's record and what the device is told of it), `coordination.rs` (leases, the sweeper, polls waiting),
//! `ownership.rs` (which enrollment owns a registration id and its hub identity), `refusal.rs` (generic answers
//! to refused devices).

mod coordination;
mod decide;
mod finish;
mod operation_status;
mod ownership;
mod provision;
mod record;
mod refusal;
mod register;
mod status_lookup;
mod webhook;

pub use refusal::GENERIC_MESSAGE;

use std::sync::Arc;

use dps_proto::{AllocationPolicy, DeviceRegistration, IdScope, RegistrationId, RegistrationOperationStatus};
use tracing::warn;

use crate::allocation::Allocator;
use crate::attestation::{attest, Attested, DeviceCredentials};
use crate::error::{DpsError, ErrorKind};
use crate::model::Operation;
use crate::ports::{
    AllocationWebhook, CertificateStore, ConfigVersion, EnrollmentStore, HubConnector, HubStore, OperationStore, RegistrationStore,
    TpmChallengeStore,
};
use crate::Clock;

/// The engine's collaborators.
#[derive(Clone)]
pub struct Ports {
    pub enrollments: Arc<dyn EnrollmentStore>,
    pub certificates: Arc<dyn CertificateStore>,
    pub registrations: Arc<dyn RegistrationStore>,
    pub operations: Arc<dyn OperationStore>,
    pub tpm: Arc<dyn TpmChallengeStore>,
    pub hubs: Arc<dyn HubStore>,
    /// Changes with every write of enrollments, groups, hubs or CAs (remembered attestations depend on it).
    pub config_version: Arc<dyn ConfigVersion>,
    pub connector: Arc<dyn HubConnector>,
    pub allocator: Arc<dyn Allocator>,
    pub webhook: Arc<dyn AllocationWebhook>,
    /// Credential policies and certificate issuance from a CSR.
    pub credentials: crate::credentials::Credentials,
    pub metrics: crate::metrics::Metrics,
    /// The limits profile: throttles authenticated registers and polls (`limits.rs`).
    pub limits: crate::limits::Limits,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub id_scope: IdScope,
    /// Seconds a device is told to wait before polling (2–5 are honoured by every SDK, §0.10).
    pub retry_after_secs: u32,
    /// The policy for enrollments that set none (§7.2).
    pub default_policy: AllocationPolicy,
    /// Regions and latencies for `geoLatency`.
    pub regions: crate::regions::RegionModel,
    /// How a custom allocation webhook is retried on ≥ 429, time-outs and connection errors (§6.3).
    pub webhook_retry: WebhookRetry,
    /// How long a hub that is unreachable is retried while the device keeps seeing `assigning`.
    pub hub_retry: HubRetry,
    /// Registrations admitted and not finished at most (attestation, the durable write and the assignment).
    /// Beyond it a register is answered 429 (429001) at once with `retry-after`: under overload the service
    /// sheds new work instead of queueing it until every device times out.
    pub max_in_flight: usize,
    /// Refused devices all get the same 401 (`refusal.rs`).
    pub generic_device_errors: bool,
    /// Concurrency and wait of CPU-heavy attestation steps (chain verification, the TPM challenge).
    pub cpu: crate::cpu::CpuBudget,
}

/// `EngineConfig::max_in_flight` unless configured. Little's law sizes it: registrations in flight = throughput ×
/// time from register to written assignment. The budget for that time is one `retry-after` (2 s): a device
/// admitted should find its answer at its first poll. At the ~2,000 registrations/s a 2-core machine sustains
/// that is ~4,000; each registration in flight holds a few KB (~16 MB at the limit). 1,024 (the first value)
/// was half a second of queue, shorter than the stalls of a busy machine: `make soak` at 80 % of the maximum
/// saw it reached and 0.3 % of registers refused.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;

/// Azure's documented schedule: 10 retries, 1 s first, 9 s more each time (§6.3, §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookRetry {
    pub retries: u32,
    pub initial: std::time::Duration,
    pub increment: std::time::Duration,
}

impl Default for WebhookRetry {
    fn default() -> Self {
        Self { retries: 10, initial: std::time::Duration::from_secs(1), increment: std::time::Duration::from_secs(9) }
    }
}

impl WebhookRetry {
    /// The wait before retry `n` (1-based): `initial`, then `increment` more each time.
    pub fn delay(&self, n: u32) -> std::time::Duration {
        self.initial.saturating_add(self.increment.saturating_mul(n.saturating_sub(1)))
    }

    /// Every retry's wait together.
    pub fn total_delay(&self) -> std::time::Duration {
        (1..=self.retries).map(|n| self.delay(n)).fold(std::time::Duration::ZERO, std::time::Duration::saturating_add)
    }
}

/// The engine's schedule for a hub connector that reports the hub unavailable (after the connector's own
/// short retries): waits of `first`, doubling up to `max`, `retries` times; then the registration fails. A
/// device SDK treats `failed` as final, so a hub that is down for a minute must not fail its devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubRetry {
    pub retries: u32,
    pub first: std::time::Duration,
    pub max: std::time::Duration,
}

impl Default for HubRetry {
    /// 1, 2, 4, 8, 16, 30, 30 s: about 90 s of waiting, well inside what the SDKs wait for a registration.
    fn default() -> Self {
        Self { retries: 7, first: std::time::Duration::from_secs(1), max: std::time::Duration::from_secs(30) }
    }
}

impl HubRetry {
    /// The wait before retry `n` (1-based).
    pub fn delay(&self, n: u32) -> std::time::Duration {
        let doubled = self.first.saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX));
        doubled.min(self.max)
    }
}

/// A register or poll request.
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    pub id_scope: String,
    /// As found in the path / MQTT username / AMQP address (already percent-decoded).
    pub registration_id: String,
    pub credentials: DeviceCredentials,
    pub body: DeviceRegistration,
    pub force_registration: bool,
    /// The device's source address (for `geoLatency`).
    pub source: Option<std::net::IpAddr>,
    /// `https`, `mqtt`, `mqtt-ws`, `amqp` or `amqp-ws` (metrics and traces).
    pub protocol: &'static str,
    /// The device API version it sent (HTTPS query, MQTT user name, AMQP link property); `None` if it sent none.
    pub api_version: Option<String>,
}

/// An answer for the device; the transport turns `retry_after` into its header or topic parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: RegistrationOperationStatus,
    pub retry_after: Option<u32>,
}

impl Reply {
    /// Still in progress (HTTP 202 / MQTT `res/202`).
    pub fn in_progress(&self) -> bool {
        !self.status.status.is_terminal()
    }
}

pub struct RegistrationEngine {
    ports: Ports,
    config: EngineConfig,
    /// This instance's name on the leases it holds.
    instance: String,
    /// Attestations remembered for the same device's polls.
    memo: crate::attestation::AttestMemo,
    /// Operations polls are answered from without a store read: finished ones (they never change again) and
    /// the `assigning` ones this instance runs under its lease (dropped when it loses or gives up the lease).
    known: quick_cache::sync::Cache<String, Arc<Operation>>,
    /// Assignments running in this instance, by operation id; polls wait on them (`coordination.rs`).
    running: std::sync::Mutex<std::collections::HashMap<String, tokio::sync::watch::Sender<()>>>,
    /// One permit per registration in flight (`EngineConfig::max_in_flight`), held from the register to the end
    /// of its assignment.
    admission: Arc<tokio::sync::Semaphore>,
    /// Refused claims of registration ids by other enrollments, for the traces (`ownership.rs`).
    claims: quick_cache::sync::Cache<String, serde_json::Value>,
}

/// How many operations are kept in memory for polls.
pub const KNOWN_OPERATIONS: usize = 20_000;

fn store_err(what: &str) -> impl Fn(crate::ports::StoreError) -> DpsError + '_ {
    move |e| {
        warn!(error = %e, "{what}");
        DpsError::new(ErrorKind::Unavailable, format!("{what}; try again"))
    }
}

impl RegistrationEngine {
    pub fn new(ports: Ports, config: EngineConfig) -> Arc<Self> {
        Arc::new(Self {
            ports,
            instance: format!("dps-{}", uuid::Uuid::new_v4()),
            memo: crate::attestation::AttestMemo::default(),
            known: quick_cache::sync::Cache::new(KNOWN_OPERATIONS),
            running: std::sync::Mutex::default(),
            claims: quick_cache::sync::Cache::new(ownership::CLAIM_NOTES),
            admission: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight.max(1))),
            config,
        })
    }

    /// A place for one more registration, or 429 when `max_in_flight` are under way.
    fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, DpsError> {
        Arc::clone(&self.admission).try_acquire_owned().map_err(|_| {
            self.ports.metrics.record(crate::metrics::Event::Throttled { operation: "overload" });
            let mut e = DpsError::new(
                ErrorKind::Throttled,
                format!("the service has {} registrations in flight, its limit; retry after the time given", self.config.max_in_flight),
            );
            e.retry_after = Some(self.config.retry_after_secs.max(1));
            e
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Registrations admitted and not finished now (out of `EngineConfig::max_in_flight`): `/metrics`.
    pub fn in_flight(&self) -> usize {
        self.config.max_in_flight.max(1).saturating_sub(self.admission.available_permits())
    }

    fn parse_target(&self, scope: &str, registration_id: &str) -> Result<RegistrationId, DpsError> {
        if !self.config.id_scope.matches(scope) {
            return Err(DpsError::new(
                ErrorKind::NotFound,
                format!(
                    "ID scope '{}' is not served here; this service's ID scope is {}",
                    dps_proto::truncate_for_display(scope).escape_debug(),
                    self.config.id_scope
                ),
            ));
        }
        RegistrationId::try_from(registration_id).map_err(|e| DpsError::invalid(e.to_string()))
    }

    async fn attest(&self, reg: &RegistrationId, creds: &DeviceCredentials, tpm: bool) -> Result<Attested, DpsError> {
        let stores = crate::attestation::Stores {
            enrollments: self.ports.enrollments.as_ref(),
            certificates: self.ports.certificates.as_ref(),
            challenges: self.ports.tpm.as_ref(),
            cpu: &self.config.cpu,
        };
        let (version, now) = (self.ports.config_version.config_version(), self.ports.clock.now().timestamp());
        if tpm {
            return attest(stores, self.ports.clock.as_ref(), &self.config.id_scope, reg, creds, tpm).await;
        }
        if let Some(hit) = self.memo.recall(version, now, reg, creds) {
            return Ok(hit);
        }
        let attested = attest(stores, self.ports.clock.as_ref(), &self.config.id_scope, reg, creds, tpm).await?;
        self.memo.remember(version, now, reg, creds, &attested);
        Ok(attested)
    }
}

/// The keys a symmetric-key device holds, when the register knows them (else recomputed from the enrollment).
type DeviceKeys = Option<(dps_crypto::Secret, dps_crypto::Secret)>;

/// An operation id in Azure's shape, `<digit>.<16 hex>.<uuid>` — only `[A-Za-z0-9.-]` (§1.5).
pub fn new_operation_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    format!("4.{:016x}.{}", rng.gen::<u64>(), uuid::Uuid::new_v4())
}
