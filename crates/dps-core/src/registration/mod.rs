//! The registration engine: register, operation status and status look-up (§1.1), the same for every
//! transport. Register attests the device and starts its operation in one durable write (the `assigning`
//! operation, leased to this instance, and the device's record); the answer leaves after that write. The
//! assignment (allocation, hub connector, registration record) runs in its own task under the lease
//! (`coordination.rs`): renewed while it runs, taken over by the sweeper when it ends without finishing —
//! a crash, a restart, a dropped request — so a device that polls later always gets its answer.

mod coordination;

use std::sync::Arc;

use dps_proto::{
    AllocationPolicy, AttestationType, DeviceRegistration, DeviceRegistrationResult, DeviceRegistrationState, IdScope, LinkedHub,
    RegistrationId, RegistrationOperationStatus, RegistrationStatus, ReprovisionPolicy, Substatus, SymmetricKeyRegistrationResult,
};
use serde_json::json;
use tracing::{info, warn};

use crate::allocation::{AllocationRequest, Allocator};
use crate::attestation::{attest, Attested, DeviceCredentials, Matched};
use crate::error::{DpsError, ErrorKind};
use crate::model::{new_etag, EnrollmentRef, Operation, RegistrationRecord};
use crate::ports::{
    AllocationWebhook, CertificateStore, ConfigVersion, ConnectorError, EnrollmentStore, HubAuthentication, HubConnector, HubDevice,
    HubStore, IdentityWrite, OperationStore, Provisioned, RegistrationStore, TpmChallengeStore,
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
}

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
    known: quick_cache::sync::Cache<String, Operation>,
    /// Assignments running in this instance, by operation id; polls wait on them (`coordination.rs`).
    running: std::sync::Mutex<std::collections::HashMap<String, tokio::sync::watch::Sender<()>>>,
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
            config,
            instance: format!("dps-{}", uuid::Uuid::new_v4()),
            memo: crate::attestation::AttestMemo::default(),
            known: quick_cache::sync::Cache::new(KNOWN_OPERATIONS),
            running: std::sync::Mutex::default(),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    fn parse_target(&self, scope: &str, registration_id: &str) -> Result<RegistrationId, DpsError> {
        if !self.config.id_scope.matches(scope) {
            return Err(DpsError::new(
                ErrorKind::NotFound,
                format!("ID scope '{}' is not served here; this service's ID scope is {}", scope.escape_debug(), self.config.id_scope),
            ));
        }
        RegistrationId::try_from(registration_id).map_err(|e| DpsError::invalid(e.to_string()))
    }

    async fn attest(&self, reg: &RegistrationId, creds: &DeviceCredentials, tpm: bool) -> Result<Attested, DpsError> {
        let stores = crate::attestation::Stores {
            enrollments: self.ports.enrollments.as_ref(),
            certificates: self.ports.certificates.as_ref(),
            challenges: self.ports.tpm.as_ref(),
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

    /// `PUT /{idScope}/registrations/{id}/register`.
    #[tracing::instrument(skip_all, fields(registration_id = %req.registration_id, protocol = req.protocol))]
    pub async fn register(self: &Arc<Self>, req: RegisterRequest) -> Result<Reply, DpsError> {
        let reg = self.parse_target(&req.id_scope, &req.registration_id)?;
        if let Some(body_id) = req.body.registration_id.as_deref() {
            if !body_id.eq_ignore_ascii_case(reg.as_str()) {
                return Err(DpsError::invalid(format!(
                    "the body's registrationId '{}' does not match '{}' in the request path",
                    body_id.escape_debug(),
                    reg
                )));
            }
        }
        if req.body.csr.is_some() {
            return Err(DpsError::invalid("certificate issuance (csr) is not supported by this service"));
        }
        let mechanism = match (&req.credentials, req.body.tpm.is_some()) {
            (DeviceCredentials::Sas(_), false) => "symmetricKey",
            (DeviceCredentials::X509(_), _) => "x509",
            (_, true) => "tpm",
            (DeviceCredentials::None, false) => "none",
        };
        let attested = self.attest(&reg, &req.credentials, req.body.tpm.is_some()).await;
        self.ports.metrics.record(crate::metrics::Event::Attestation { mechanism, protocol: req.protocol, success: attested.is_ok() });
        let attested = attested?;
        self.ports.limits.admit_registration(reg.as_str(), &req.body)?;
        let operation_id = new_operation_id();
        self.claim_challenge(&attested, &operation_id).await?;
        let now = self.ports.clock.now();
        let op = Operation {
            operation_id,
            registration_id: reg.as_str().to_owned(),
            status: RegistrationStatus::Assigning,
            enrollment: attested.matched.reference(),
            attestation: attested.attestation,
            payload: req.body.payload.clone().filter(|p| !p.is_null()),
            force_registration: req.force_registration,
            tpm: attested.tpm.as_ref().map(|c| dps_proto::TpmAttestation {
                endorsement_key: Some(dps_crypto::tpm::blob::to_base64(&c.endorsement_key)),
                storage_root_key: Some(dps_crypto::tpm::blob::to_base64(&c.storage_root_key)),
            }),
            protocol: Some(req.protocol.to_owned()),
            source: req.source,
            api_version: req.api_version.clone(),
            x509: attested.x509.clone(),
            result: None,
            created: now,
            updated: now,
        };
        let reply = assigning(&op);
        self.start(op, attested.device_keys.clone()).await?;
        Ok(Reply { status: reply, retry_after: Some(self.config.retry_after_secs) })
    }

    /// `GET /{idScope}/registrations/{id}/operations/{operationId}`.
    #[tracing::instrument(skip_all, fields(registration_id = %registration_id, operation_id = %operation_id))]
    pub async fn operation_status(
        &self,
        id_scope: &str,
        registration_id: &str,
        operation_id: &str,
        creds: &DeviceCredentials,
    ) -> Result<Reply, DpsError> {
        let reg = self.parse_target(id_scope, registration_id)?;
        let attested = self.attest(&reg, creds, false).await?;
        self.ports.limits.admit_poll(reg.as_str())?;
        if let Some(c) = attested.tpm.as_ref().filter(|c| c.operation_id.as_deref() != Some(operation_id)) {
            return Err(DpsError::unauthorized(format!(
                "the token of '{reg}' answered the TPM challenge of {}, not operation '{}'",
                c.operation_id.as_deref().map_or_else(|| "no registration yet".to_owned(), |o| format!("operation '{o}'")),
                operation_id.escape_debug()
            )));
        }
        let mine = |op: Option<Operation>| {
            op.filter(|op| op.registration_id.eq_ignore_ascii_case(reg.as_str())).ok_or_else(|| {
                DpsError::new(ErrorKind::OperationNotFound, format!("operation '{}' of '{reg}' not found", operation_id.escape_debug()))
            })
        };
        let mut op = mine(self.operation(operation_id).await?)?;
        if !op.status.is_terminal() {
            self.wait_for_outcome(operation_id).await;
            op = mine(self.operation(operation_id).await?)?;
        }
        if op.status.is_terminal() {
            Ok(Reply {
                status: RegistrationOperationStatus {
                    operation_id: op.operation_id.clone(),
                    status: op.status,
                    registration_state: op.result.clone(),
                },
                retry_after: None,
            })
        } else {
            Ok(Reply { status: assigning(&op), retry_after: Some(self.config.retry_after_secs) })
        }
    }

    /// An operation: from memory when it finished or this instance runs it, else from the store.
    async fn operation(&self, operation_id: &str) -> Result<Option<Operation>, DpsError> {
        if let Some(op) = self.known.get(operation_id) {
            return Ok(Some(op));
        }
        let op = self.ports.operations.get_operation(operation_id).await.map_err(store_err("could not read the operation"))?;
        if let Some(done) = op.as_ref().filter(|o| o.status.is_terminal()) {
            self.known.insert(done.operation_id.clone(), done.clone());
        }
        Ok(op)
    }

    /// The TPM attestation port (§4.4.3 step 2): a device presents its EK and SRK; the answer is the
    /// authentication-key blob it must activate. Transports call it — HTTPS for the unauthenticated register,
    /// AMQP's `TPM` SASL mechanism — without knowing how it is built.
    #[tracing::instrument(skip_all, fields(registration_id = %registration_id))]
    pub async fn tpm_challenge(
        &self,
        id_scope: &str,
        registration_id: &str,
        endorsement_key: &[u8],
        storage_root_key: &[u8],
    ) -> Result<Vec<u8>, DpsError> {
        let reg = self.parse_target(id_scope, registration_id)?;
        let p = &self.ports;
        let blob =
            crate::tpm::challenge(p.enrollments.as_ref(), p.tpm.as_ref(), p.clock.as_ref(), &reg, endorsement_key, storage_root_key).await;
        if let Err(e) = &blob {
            self.ports.metrics.record(crate::metrics::Event::Attestation { mechanism: "tpm", protocol: "challenge", success: false });
            info!(code = e.code(), error = %e.message, "TPM challenge refused");
        }
        blob
    }

    /// A TPM answer is single use: the register that answers claims the challenge for its operation.
    async fn claim_challenge(&self, attested: &Attested, operation_id: &str) -> Result<(), DpsError> {
        let Some(c) = &attested.tpm else { return Ok(()) };
        let fresh = c.operation_id.is_none()
            && self
                .ports
                .tpm
                .claim_tpm_challenge(&c.registration_id, operation_id)
                .await
                .map_err(store_err("could not claim the TPM challenge"))?;
        if fresh {
            Ok(())
        } else {
            Err(DpsError::unauthorized(format!(
                "the TPM challenge of '{}' was answered already; register again without a token to get a new one",
                c.registration_id
            )))
        }
    }

    /// `POST /{idScope}/registrations/{id}`: the device's current registration.
    #[tracing::instrument(skip_all, fields(registration_id = %registration_id))]
    pub async fn status_lookup(
        &self,
        id_scope: &str,
        registration_id: &str,
        creds: &DeviceCredentials,
        body: &DeviceRegistration,
    ) -> Result<DeviceRegistrationResult, DpsError> {
        let reg = self.parse_target(id_scope, registration_id)?;
        if body.csr.is_some() {
            return Err(DpsError::invalid("csr is not allowed on a registration status look-up"));
        }
        let attested = self.attest(&reg, creds, body.tpm.is_some()).await?;
        let rec = self
            .ports
            .registrations
            .get_registration(reg.as_str())
            .await
            .map_err(store_err("could not read the registration"))?
            .ok_or_else(|| DpsError::new(ErrorKind::RegistrationNotFound, format!("'{reg}' has no registration record yet")))?;
        let mut result = result_of(&rec.state, &attested.matched);
        result.x509 = attested.x509;
        Ok(result)
    }

    /// The console's "re-provision": the device's registration runs again now, as if the device had
    /// registered again — current enrollment, hubs and weights, its enrollment's re-provisioning policy (move
    /// or keep the hub, migrate or reset the twin) — without attestation (it was attested when it
    /// registered). The device learns its new hub at its next registration. Returns the new record.
    #[tracing::instrument(skip_all, fields(registration_id = %registration_id))]
    pub async fn reprovision(self: &Arc<Self>, registration_id: &str) -> Result<RegistrationRecord, DpsError> {
        let read = store_err("could not read the registration");
        let rec = self.ports.registrations.get_registration(registration_id).await.map_err(&read)?.ok_or_else(|| {
            DpsError::new(ErrorKind::RegistrationNotFound, format!("'{}' has no registration record", registration_id.escape_debug()))
        })?;
        let id = rec.state.registration_id.clone().unwrap_or_else(|| registration_id.to_owned());
        let now = self.ports.clock.now();
        let op = Operation {
            payload: rec.state.payload.clone().filter(|p| !p.is_null()),
            ..Operation::assigning(new_operation_id(), id.clone(), rec.enrollment.clone(), rec.attestation, now)
        };
        info!(operation_id = %op.operation_id, "re-provisioning requested from the console");
        self.start_inline(op).await?;
        self.ports.registrations.get_registration(&id).await.map_err(&read)?.ok_or_else(|| {
            DpsError::new(ErrorKind::RegistrationNotFound, format!("'{id}' has no registration record after re-provisioning"))
        })
    }

    /// The device's record while `op` is assigning (§7.3: the record follows every registration). It keeps the
    /// hub and device id the device has now, so the assignment still knows where the device is
    /// (re-provisioning policy, removal from the old hub).
    async fn assigning_record(&self, op: &Operation) -> Result<RegistrationRecord, DpsError> {
        let previous =
            self.ports.registrations.get_registration(&op.registration_id).await.map_err(store_err("could not read the registration"))?;
        let now = self.ports.clock.now();
        let kept = previous.as_ref().map(|p| &p.state);
        let state = DeviceRegistrationState {
            registration_id: Some(op.registration_id.clone()),
            created_date_time_utc: Some(kept.and_then(|s| s.created_date_time_utc).unwrap_or(now)),
            assigned_hub: kept.and_then(|s| s.assigned_hub.clone()),
            device_id: kept.and_then(|s| s.device_id.clone()),
            status: Some(RegistrationStatus::Assigning),
            substatus: kept.and_then(|s| s.substatus),
            error_code: None,
            error_message: None,
            last_updated_date_time_utc: Some(now),
            etag: Some(new_etag()),
            payload: kept.and_then(|s| s.payload.clone()),
        };
        Ok(RegistrationRecord {
            state,
            enrollment: op.enrollment.clone(),
            attestation: op.attestation,
            trace: Some(json!({ "operationId": op.operation_id, "protocol": op.protocol, "why": "the assignment is in progress" })),
            first_hub: previous.and_then(|p| p.first_hub),
        })
    }

    /// Runs the assignment of one operation to its end: decides, provisions, and writes the outcome (record and
    /// operation together) if this instance still holds the lease. Never panics; failures end in a `failed`
    /// operation, and a store failure leaves it `assigning` for the sweeper.
    async fn assign(
        &self,
        op: Operation,
        device_keys: Option<(dps_crypto::Secret, dps_crypto::Secret)>,
        record: Option<RegistrationRecord>,
    ) {
        let operation_id = op.operation_id.clone();
        // The device's record, read once (or as the register just wrote it): the decision and the outcome's
        // record both start from it.
        let read = match record {
            Some(r) => Ok(Some(r)),
            None => self.ports.registrations.get_registration(&op.registration_id).await,
        };
        let previous = match read {
            Ok(p) => p,
            Err(e) => {
                warn!(operation_id, error = %e, "cannot read the registration record; the operation stays assigning and is resumed");
                self.known.remove(&operation_id);
                return;
            }
        };
        let outcome = self.decide(&op, previous.as_ref(), device_keys).await;
        let finished = self.finish(op, previous, outcome).await;
        if !matches!(finished, Ok(true)) {
            self.known.remove(&operation_id);
        }
        match finished {
            Ok(true) => {}
            Ok(false) => info!(operation_id, "the operation was finished by another owner of its lease; this outcome is dropped"),
            Err(e) => warn!(operation_id, error = %e, "cannot store the outcome; the operation stays assigning and is resumed"),
        }
    }

    async fn load_enrollment(&self, r: &EnrollmentRef) -> Result<Option<Matched>, DpsError> {
        let err = store_err("could not read the enrollment");
        Ok(match r {
            EnrollmentRef::Individual(id) => {
                self.ports.enrollments.get_enrollment(id).await.map_err(&err)?.map(|e| Matched::Individual(Box::new(e)))
            }
            EnrollmentRef::Group(id) => self.ports.enrollments.get_group(id).await.map_err(&err)?.map(|g| Matched::Group(Box::new(g))),
        })
    }

    /// Decides where the device goes and creates it there.
    async fn decide(
        &self,
        op: &Operation,
        record: Option<&RegistrationRecord>,
        device_keys: Option<(dps_crypto::Secret, dps_crypto::Secret)>,
    ) -> Outcome {
        let mut trace = json!({
            "operationId": op.operation_id,
            "attestation": op.attestation.as_str(),
            "protocol": op.protocol,
            "enrollment": op.enrollment,
        });
        let matched = match self.load_enrollment(&op.enrollment).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                let e = DpsError::unauthorized("the enrollment was deleted while the registration was in progress");
                return Outcome::failed(e, trace, None);
            }
            Err(e) => return Outcome::failed(e, trace, None),
        };
        let view = EnrollmentView::of(&matched);
        if view.disabled {
            trace["why"] = json!("the enrollment is disabled");
            return Outcome {
                status: RegistrationStatus::Disabled,
                matched: Some(matched),
                hub: None,
                device_id: None,
                substatus: None,
                error: None,
                trace,
                payload: None,
                first_hub: None,
                tpm_blob: None,
                identity: None,
            };
        }
        // Where the device is now: a record that names a hub (a failed or disabled registration keeps it).
        let previous = record.filter(|p| p.state.assigned_hub.is_some());
        let linked = match self.ports.hubs.list_hubs().await {
            Ok(h) => h,
            Err(e) => return Outcome::failed(store_err("could not read the linked hubs")(e), trace, Some(matched)),
        };
        let policy = view.policy.unwrap_or(self.config.default_policy);
        let reprovision = match view.reprovision {
            Some(r) => r,
            None if crate::api_version::is_legacy(op.api_version.as_deref()) => {
                trace["reprovision"] = json!(format!(
                    "the enrollment sets no reprovisionPolicy and the device speaks api-version {}: the legacy behaviour keeps its hub (§7.3)",
                    op.api_version.as_deref().unwrap_or_default()
                ));
                ReprovisionPolicy { update_hub_assignment: false, migrate_device_data: true }
            }
            None => ReprovisionPolicy::default(),
        };
        let previous_hub = previous.as_ref().and_then(|p| p.state.assigned_hub.clone());
        let keep = previous_hub.is_some() && !reprovision.update_hub_assignment;
        let mut webhook_twin = None;
        let mut payload = None;
        let decision: Result<String, DpsError> = if policy == AllocationPolicy::Custom {
            let names = webhook_hubs(&view, &linked, previous_hub.as_deref().filter(|_| keep));
            match self.call_webhook(op, &matched, &view, previous, &names, &mut trace).await {
                Ok(answer) => {
                    webhook_twin = answer.initial_twin;
                    payload = answer.payload;
                    Ok(answer.hub)
                }
                Err(e) => Err(e),
            }
        } else if let (Some(hub), true) = (&previous_hub, keep) {
            trace["why"] = json!("the reprovision policy never re-assigns: the device keeps its hub");
            trace["allocation"] = json!({ "policy": "keep", "hub": hub });
            Ok(hub.clone())
        } else {
            let (device_region, region_reason) = self.config.regions.device_region(op.source);
            match candidates(&view, &linked) {
                Ok((hubs, named)) => self
                    .ports
                    .allocator
                    .allocate(&AllocationRequest {
                        registration_id: &op.registration_id,
                        policy,
                        candidates: hubs,
                        named_by_enrollment: named,
                        device_region: device_region.clone(),
                        regions: &self.config.regions,
                    })
                    .map(|d| {
                        trace["allocation"] = serde_json::to_value(&d).unwrap_or_default();
                        if policy == AllocationPolicy::GeoLatency {
                            trace["allocation"]["deviceRegion"] = json!(device_region);
                            trace["allocation"]["regionReason"] = json!(region_reason);
                        }
                        d.hub
                    }),
                Err(e) => Err(e),
            }
        };
        let hub_name = match decision {
            Ok(d) => d,
            Err(e) => return Outcome::failed(e, trace, Some(matched)),
        };
        let hub = linked.iter().find(|h| h.host_name.eq_ignore_ascii_case(&hub_name)).cloned().unwrap_or_else(|| LinkedHub {
            host_name: hub_name.clone(),
            apply_allocation_policy: false,
            ..Default::default()
        });

        let device_id = view.device_id.clone().unwrap_or_else(|| op.registration_id.clone());
        let moved = previous_hub.as_ref().is_some_and(|p| !p.eq_ignore_ascii_case(&hub.host_name));
        let first_hub = previous
            .as_ref()
            .and_then(|p| p.first_hub.clone().or_else(|| p.state.assigned_hub.clone()))
            .unwrap_or_else(|| hub.host_name.clone());
        let back_to_first = moved && first_hub.eq_ignore_ascii_case(&hub.host_name);
        let substatus = match (&previous, moved) {
            (None, _) => Substatus::InitialAssignment,
            (Some(_), true) if reprovision.migrate_device_data && back_to_first => Substatus::ReprovisionedToInitialAssignment,
            (Some(_), true) if reprovision.migrate_device_data => Substatus::DeviceDataMigrated,
            (Some(_), true) => Substatus::DeviceDataReset,
            (Some(_), false) if reprovision.update_hub_assignment && !reprovision.migrate_device_data => Substatus::DeviceDataReset,
            (Some(p), false) => p.state.substatus.unwrap_or(Substatus::InitialAssignment),
        };
        // §7.3/§7.4: initial and reset assignments get the initial twin (the webhook's, else the enrollment's);
        // a migration carries the twin the device had; otherwise the hub keeps its twin.
        let twin = match substatus {
            Substatus::InitialAssignment | Substatus::DeviceDataReset
                if previous.is_none() || moved || !reprovision.migrate_device_data =>
            {
                webhook_twin.or_else(|| view.initial_twin.clone())
            }
            Substatus::DeviceDataMigrated | Substatus::ReprovisionedToInitialAssignment if moved => {
                let old = previous_hub.as_ref().and_then(|p| linked.iter().find(|h| h.host_name.eq_ignore_ascii_case(p)));
                let old_id = previous.as_ref().and_then(|p| p.state.device_id.clone()).unwrap_or_else(|| device_id.clone());
                match old {
                    Some(old) => match self.ports.connector.read_twin(old, &old_id).await {
                        Ok(t) => t,
                        Err(e) => {
                            warn!(hub = %old.host_name, error = %e, "cannot read the twin to migrate; the new hub starts without it");
                            None
                        }
                    },
                    None => None,
                }
            }
            _ => None,
        };
        trace["twin"] = json!(match (&twin, substatus) {
            (Some(_), Substatus::DeviceDataMigrated | Substatus::ReprovisionedToInitialAssignment) => "migrated from the previous hub",
            (Some(_), _) => "initial twin applied",
            (None, Substatus::DeviceDataMigrated | Substatus::ReprovisionedToInitialAssignment) => "the previous hub had no twin to carry",
            (None, _) if previous.is_none() || moved => "no initial twin configured",
            (None, _) => "the hub's twin is kept",
        });

        // §7.4: symmetric-key devices get their keys; X.509 devices a self-signed identity with the leaf thumbprint;
        // TPM devices a new key K2, wrapped for their TPM (§4.4.3 step 4).
        let mut tpm_blob = None;
        let authentication = if op.attestation == AttestationType::Tpm {
            let keys = op.tpm.as_ref().and_then(|t| {
                let ek = dps_crypto::tpm::blob::from_base64(t.endorsement_key.as_deref()?).ok()?;
                let srk = dps_crypto::tpm::blob::from_base64(t.storage_root_key.as_deref()?).ok()?;
                Some((ek, srk))
            });
            match keys.map(|(ek, srk)| crate::tpm::hub_key(&ek, &srk, &hub.host_name)) {
                Some(Ok(((primary, secondary), blob))) => {
                    tpm_blob = Some(blob);
                    trace["tpm"] = json!({ "challenge": "answered with the key of its challenge (K1)", "hubKey": "a new key (K2), wrapped for the device's TPM in registrationState.tpm.authenticationKey" });
                    HubAuthentication::TpmSas { primary_key: primary, secondary_key: secondary }
                }
                Some(Err(e)) => return Outcome::failed(e, trace, Some(matched)),
                // Re-provisioned from the service API: no challenge, so no TPM to wrap a key for. The identity gets
                // new keys; the device's next registration brings it a K2 for its new place.
                None => {
                    trace["tpm"] = json!({ "hubKey": "new keys in the hub; the device receives its key (K2) at its next registration" });
                    HubAuthentication::TpmSas {
                        primary_key: dps_crypto::Secret::new(dps_crypto::generate_key()),
                        secondary_key: dps_crypto::Secret::new(dps_crypto::generate_key()),
                    }
                }
            }
        } else if op.attestation == AttestationType::X509 {
            let Some(t) = op.x509.as_ref().and_then(|x| x.certificate_info.as_ref()).map(|i| i.sha256_thumbprint.clone()) else {
                return Outcome::failed(DpsError::internal("the device certificate's thumbprint is not available"), trace, Some(matched));
            };
            HubAuthentication::SelfSigned { primary_thumbprint: t.clone(), secondary_thumbprint: t }
        } else {
            let Some((primary, secondary)) = device_keys.or_else(|| view.device_keys(&op.registration_id)) else {
                return Outcome::failed(DpsError::internal("the device's keys are not available"), trace, Some(matched));
            };
            HubAuthentication::Sas { primary_key: primary, secondary_key: secondary }
        };
        let device = HubDevice {
            device_id: device_id.clone(),
            registration_id: op.registration_id.clone(),
            authentication,
            iot_edge: view.iot_edge,
            initial_twin: twin,
        };
        let provisioned = match self.provision_with_retry(&hub, &device, &mut trace).await {
            Ok(p) => p,
            Err(e) => {
                // The connector's detail (addresses, hub answers) stays in the trace, which only the service API shows.
                let why = match e {
                    ConnectorError::Unavailable(_) => format!("stayed unavailable through {} retries", self.config.hub_retry.retries),
                    ConnectorError::Refused(_) => "refused to create the device identity".to_owned(),
                };
                let message = format!("hub '{}' {why}; try again later (details: dps registration explain)", hub.host_name);
                return Outcome::failed(DpsError::new(ErrorKind::Unavailable, message), trace, Some(matched));
            }
        };
        crate::failpoint::hit("engine.identity-created").await;
        if moved {
            if let Some(old) = previous_hub.as_ref().and_then(|p| linked.iter().find(|h| h.host_name.eq_ignore_ascii_case(p))) {
                let old_id = previous.as_ref().and_then(|p| p.state.device_id.clone()).unwrap_or_else(|| device_id.clone());
                if let Err(e) = self.ports.connector.deprovision(old, &old_id).await {
                    warn!(hub = %old.host_name, error = %e, "could not remove the device from its previous hub");
                }
            }
        }
        trace["substatus"] = json!(substatus.as_str());
        trace["why"] = json!(match substatus {
            Substatus::InitialAssignment if previous.is_none() => "first assignment of this device".to_owned(),
            Substatus::DeviceDataMigrated =>
                format!("re-provisioned to a new hub with its data (was {})", previous_hub.clone().unwrap_or_default()),
            Substatus::ReprovisionedToInitialAssignment =>
                "re-provisioned back to the hub of its first assignment, with its data".to_owned(),
            Substatus::DeviceDataReset => "re-provisioned with the initial configuration (reprovision policy: reset)".to_owned(),
            _ => "registered again: same hub, data kept".to_owned(),
        });
        Outcome {
            status: RegistrationStatus::Assigned,
            matched: Some(matched),
            hub: Some(hub.host_name),
            device_id: Some(device_id),
            substatus: Some(substatus),
            error: None,
            trace,
            payload,
            first_hub: Some(first_hub),
            tpm_blob,
            identity: match provisioned {
                Provisioned::InHub => None,
                Provisioned::WithOutcome(w) => Some(*w),
            },
        }
    }

    /// Creates the identity in the hub. A hub reported unavailable (after the connector's own short retries) is
    /// tried again on [`HubRetry`]'s schedule while the operation stays `assigning`; a refusal is final.
    async fn provision_with_retry(
        &self,
        hub: &LinkedHub,
        device: &HubDevice,
        trace: &mut serde_json::Value,
    ) -> Result<Provisioned, ConnectorError> {
        let retry = self.config.hub_retry;
        let mut failures = Vec::new();
        let mut n = 0;
        loop {
            let result = self.ports.connector.provision(hub, device).await;
            let done = match &result {
                Ok(_) => true,
                Err(ConnectorError::Refused(_)) => true,
                Err(ConnectorError::Unavailable(_)) => n >= retry.retries,
            };
            if let Err(e) = &result {
                failures.push(json!(e.to_string()));
            }
            if done {
                // The built-in registry's identity is written with the outcome, in the same write as this trace.
                let outcome = result.as_ref().map_or_else(ToString::to_string, |_| "identity created or updated".to_owned());
                trace["connector"] = json!({ "hub": hub.host_name, "result": outcome });
                if !failures.is_empty() {
                    trace["connector"]["failedAttempts"] = json!(failures);
                }
                return result;
            }
            n += 1;
            let wait = retry.delay(n);
            warn!(hub = %hub.host_name, retry = n, of = retry.retries, ?wait, "the hub is unavailable; the registration stays assigning and is retried");
            tokio::time::sleep(wait).await;
        }
    }

    async fn finish(&self, mut op: Operation, previous: Option<RegistrationRecord>, o: Outcome) -> Result<bool, crate::ports::StoreError> {
        let now = self.ports.clock.now();
        let created = previous.as_ref().and_then(|p| p.state.created_date_time_utc).unwrap_or(now);
        // A failed or disabled registration changes nothing in the hubs: the record keeps where the device is.
        let kept = previous.as_ref().map(|p| &p.state).filter(|_| o.status != RegistrationStatus::Assigned);
        let state = DeviceRegistrationState {
            registration_id: Some(op.registration_id.clone()),
            created_date_time_utc: Some(created),
            assigned_hub: o.hub.clone().or_else(|| kept.and_then(|s| s.assigned_hub.clone())),
            device_id: o.device_id.clone().or_else(|| kept.and_then(|s| s.device_id.clone())),
            status: Some(o.status),
            substatus: o.substatus.or_else(|| kept.and_then(|s| s.substatus)),
            error_code: o.error.as_ref().map(DpsError::code),
            error_message: o.error.as_ref().map(|e| e.message.clone()),
            last_updated_date_time_utc: Some(now),
            etag: Some(new_etag()),
            payload: o.payload.clone(),
        };
        let record = RegistrationRecord {
            state: state.clone(),
            enrollment: op.enrollment.clone(),
            attestation: op.attestation,
            trace: Some(o.trace),
            first_hub: o.first_hub.clone().or_else(|| previous.as_ref().and_then(|p| p.first_hub.clone())),
        };
        let mut result = match &o.matched {
            Some(m) => result_of(&state, m),
            None => result_of_state(&state),
        };
        if o.status == RegistrationStatus::Disabled {
            result.etag = None;
        }
        op.status = o.status;
        if o.status != RegistrationStatus::Disabled {
            result.x509 = op.x509.clone();
        }
        result.tpm = o.tpm_blob.clone().map(|k| dps_proto::TpmRegistrationResult { authentication_key: Some(k) });
        op.result = Some(result);
        op.updated = now;
        if !self.ports.operations.finish_registration(&op, &record, o.identity.as_ref(), &self.instance).await? {
            return Ok(false);
        }
        self.known.insert(op.operation_id.clone(), op.clone());
        crate::failpoint::hit("engine.finished").await;
        self.ports.metrics.record(crate::metrics::Event::Registration { hub: o.hub.as_deref(), status: o.status.as_str() });
        match &o.error {
            Some(e) => {
                warn!(registration_id = %op.registration_id, operation_id = %op.operation_id, code = e.code(), error = %e.message, "registration failed")
            }
            None => {
                info!(registration_id = %op.registration_id, operation_id = %op.operation_id, status = o.status.as_str(), hub = o.hub.as_deref().unwrap_or("-"), "registration finished")
            }
        }
        Ok(true)
    }
}

struct Outcome {
    status: RegistrationStatus,
    matched: Option<Matched>,
    hub: Option<String>,
    device_id: Option<String>,
    substatus: Option<Substatus>,
    error: Option<DpsError>,
    trace: serde_json::Value,
    /// The custom-allocation webhook's payload for the device (§6.2).
    payload: Option<serde_json::Value>,
    first_hub: Option<String>,
    /// TPM devices: K2 wrapped for their TPM (base64), for `registrationState.tpm.authenticationKey`.
    tpm_blob: Option<String>,
    /// The built-in registry's identity, written with the outcome.
    identity: Option<IdentityWrite>,
}

impl Outcome {
    fn failed(e: DpsError, mut trace: serde_json::Value, matched: Option<Matched>) -> Self {
        trace["error"] = json!({ "code": e.code(), "message": e.message });
        Self {
            status: RegistrationStatus::Failed,
            matched,
            hub: None,
            device_id: None,
            substatus: None,
            error: Some(e),
            trace,
            payload: None,
            first_hub: None,
            tpm_blob: None,
            identity: None,
        }
    }
}

/// The parts of an individual enrollment or a group the assignment needs.
struct EnrollmentView {
    disabled: bool,
    policy: Option<AllocationPolicy>,
    reprovision: Option<ReprovisionPolicy>,
    iot_hubs: Option<Vec<String>>,
    legacy_hub: Option<String>,
    device_id: Option<String>,
    iot_edge: bool,
    initial_twin: Option<dps_proto::InitialTwin>,
    keys: Option<(String, String)>,
    group: bool,
    custom: Option<dps_proto::CustomAllocationDefinition>,
}

impl EnrollmentView {
    fn of(m: &Matched) -> Self {
        use dps_proto::ProvisioningStatus::Disabled;
        let keys = |a: &dps_proto::AttestationMechanism| {
            a.symmetric_key.as_ref().and_then(|k| Some((k.primary_key.clone()?, k.secondary_key.clone()?)))
        };
        match m {
            Matched::Individual(e) => Self {
                disabled: e.provisioning_status == Some(Disabled),
                policy: e.allocation_policy,
                reprovision: e.reprovision_policy,
                iot_hubs: e.iot_hubs.clone(),
                legacy_hub: e.iot_hub_host_name.clone(),
                device_id: e.device_id.clone().filter(|d| !d.is_empty()),
                iot_edge: e.capabilities.is_some_and(|c| c.iot_edge),
                initial_twin: e.initial_twin.clone(),
                keys: keys(&e.attestation),
                group: false,
                custom: e.custom_allocation_definition.clone(),
            },
            Matched::Group(g) => Self {
                disabled: g.provisioning_status == Some(Disabled),
                policy: g.allocation_policy,
                reprovision: g.reprovision_policy,
                iot_hubs: g.iot_hubs.clone(),
                legacy_hub: g.iot_hub_host_name.clone(),
                device_id: None,
                iot_edge: g.capabilities.is_some_and(|c| c.iot_edge),
                initial_twin: g.initial_twin.clone(),
                keys: keys(&g.attestation),
                group: true,
                custom: g.custom_allocation_definition.clone(),
            },
        }
    }

    /// The keys the device holds, recomputed from the enrollment (used when resuming after a restart).
    fn device_keys(&self, registration_id: &str) -> Option<(dps_crypto::Secret, dps_crypto::Secret)> {
        let (p, s) = self.keys.clone()?;
        if self.group {
            let p = dps_crypto::derive_device_key(&p, registration_id).ok()?;
            let s = dps_crypto::derive_device_key(&s, registration_id).ok()?;
            Some((dps_crypto::Secret::new(p), dps_crypto::Secret::new(s)))
        } else {
            Some((dps_crypto::Secret::new(p), dps_crypto::Secret::new(s)))
        }
    }
}

/// `linkedHubs` of a webhook request (§6.1): the enrollment's hubs, else every linked hub; only the current
/// hub when the device is assigned and never re-provisioned.
fn webhook_hubs(view: &EnrollmentView, linked: &[LinkedHub], keep: Option<&str>) -> Vec<String> {
    if let Some(current) = keep {
        return vec![current.to_owned()];
    }
    match &view.iot_hubs {
        Some(h) if !h.is_empty() => h.clone(),
        _ => match &view.legacy_hub {
            Some(h) if !h.is_empty() => vec![h.clone()],
            _ => linked.iter().map(|h| h.host_name.clone()).collect(),
        },
    }
}

/// What a webhook decided.
struct WebhookAnswer {
    hub: String,
    initial_twin: Option<dps_proto::InitialTwin>,
    payload: Option<serde_json::Value>,
}

/// A member of a JSON object, name matched case-insensitively (§6.2: docs and examples disagree on case).
fn member<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    v.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// An enrollment as the webhook sees it: the members of its api-version's schema, no secrets, attestation
/// reduced to its type (Azure's example).
fn enrollment_for_webhook<T: serde::Serialize>(e: &T, api_version: &str) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    let members = crate::api_version::webhook_members(api_version);
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| members.contains(&k.as_str()));
    }
    if let Some(kind) = v.pointer("/attestation/type").cloned() {
        v["attestation"] = json!({ "type": kind });
    }
    v
}

/// The URL without its query (function keys live there) for traces and logs.
fn redact_url(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

impl RegistrationEngine {
    /// The custom allocation policy (§6): POST the request, retry on ≥ 429 / time-outs / connection errors
    /// with the configured schedule (the device keeps seeing `assigning`), map the outcome to §6.3's codes.
    async fn call_webhook(
        &self,
        op: &Operation,
        matched: &Matched,
        view: &EnrollmentView,
        previous: Option<&RegistrationRecord>,
        linked_hubs: &[String],
        trace: &mut serde_json::Value,
    ) -> Result<WebhookAnswer, DpsError> {
        let Some(def) = view.custom.clone() else {
            return Err(DpsError::new(
                ErrorKind::CustomAllocationFailed,
                "the custom allocation policy needs customAllocationDefinition (webhookUrl, apiVersion)",
            ));
        };
        let mut context = json!({ "registrationId": op.registration_id });
        if let Some(p) = previous {
            context["currentIotHubHostName"] = json!(p.state.assigned_hub);
            context["currentDeviceId"] = json!(p.state.device_id);
        }
        match op.attestation {
            AttestationType::X509 => context["x509"] = serde_json::to_value(&op.x509).unwrap_or_default(),
            _ => context["symmetricKey"] = json!({}),
        }
        if let Some(p) = &op.payload {
            context["payload"] = p.clone();
        }
        let mut body = json!({ "deviceRuntimeContext": context, "linkedHubs": linked_hubs });
        if let Err(why) = crate::api_version::check_webhook_version(&def.api_version) {
            return Err(DpsError::new(ErrorKind::CustomAllocationFailed, why));
        }
        match matched {
            Matched::Individual(e) => body["individualEnrollment"] = enrollment_for_webhook(e.as_ref(), &def.api_version),
            Matched::Group(g) => body["enrollmentGroup"] = enrollment_for_webhook(g.as_ref(), &def.api_version),
        }
        let retry = self.config.webhook_retry;
        let mut attempts = Vec::new();
        let mut result = None;
        for attempt in 0..=retry.retries {
            if attempt > 0 {
                tokio::time::sleep(retry.initial + retry.increment * (attempt - 1)).await;
            }
            let started = std::time::Instant::now();
            let outcome = self.ports.webhook.call(&def.webhook_url, &body).await;
            let ms = started.elapsed().as_millis() as u64;
            match outcome {
                Ok((status, bytes)) if (200..300).contains(&status) => {
                    attempts.push(json!({ "status": status, "ms": ms }));
                    result = Some(Ok(bytes));
                    break;
                }
                Ok((401, _)) => {
                    attempts.push(json!({ "status": 401, "ms": ms }));
                    result = Some(Err(DpsError::new(
                        ErrorKind::CustomAllocationUnauthorizedAccess,
                        "the custom allocation webhook answered 401 Unauthorized",
                    )));
                    break;
                }
                Ok((status, _)) if status >= 429 => attempts.push(json!({ "status": status, "ms": ms, "retry": true })),
                Ok((status, _)) => {
                    attempts.push(json!({ "status": status, "ms": ms }));
                    result = Some(Err(DpsError::new(
                        ErrorKind::CustomAllocationFailed,
                        format!("the custom allocation webhook answered HTTP {status}"),
                    )));
                    break;
                }
                Err(e) => attempts.push(json!({ "error": e.to_string(), "ms": ms, "retry": true })),
            }
        }
        trace["allocation"] =
            json!({ "policy": "custom", "webhook": redact_url(&def.webhook_url), "linkedHubs": linked_hubs, "attempts": attempts });
        let bytes = match result {
            Some(r) => r?,
            None => {
                return Err(DpsError::new(
                    ErrorKind::CustomAllocationFailed,
                    format!("the custom allocation webhook gave no usable answer in {} attempts", retry.retries + 1),
                ))
            }
        };
        let answer: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            DpsError::new(ErrorKind::CustomAllocationFailed, format!("the custom allocation webhook's answer is not JSON: {e}"))
        })?;
        let hub = member(&answer, "iotHubHostName").and_then(|h| h.as_str()).map(str::trim).unwrap_or_default().to_owned();
        if hub.is_empty() {
            return Err(DpsError::new(
                ErrorKind::CustomAllocationIotHubNotSpecified,
                "the custom allocation webhook named no IoT hub (iotHubHostName)",
            ));
        }
        let Some(hub) = linked_hubs.iter().find(|h| h.eq_ignore_ascii_case(&hub)).cloned() else {
            return Err(DpsError::new(
                ErrorKind::CustomAllocationFailed,
                format!("the custom allocation webhook chose '{hub}', which is not among linkedHubs"),
            ));
        };
        let initial_twin = member(&answer, "initialTwin").filter(|t| !t.is_null()).and_then(|t| serde_json::from_value(t.clone()).ok());
        let payload = member(&answer, "payload").filter(|p| !p.is_null()).cloned();
        trace["allocation"]["hub"] = json!(hub);
        trace["allocation"]["returnedInitialTwin"] = json!(initial_twin.is_some());
        trace["allocation"]["returnedPayload"] = json!(payload.is_some());
        Ok(WebhookAnswer { hub, initial_twin, payload })
    }
}

/// The candidate hubs (§7.2 rule 1) and whether the enrollment named them.
fn candidates(view: &EnrollmentView, linked: &[LinkedHub]) -> Result<(Vec<LinkedHub>, bool), DpsError> {
    let named: Vec<String> = match (&view.iot_hubs, &view.legacy_hub) {
        (Some(h), _) if !h.is_empty() => h.clone(),
        (_, Some(h)) if !h.is_empty() => vec![h.clone()],
        _ => Vec::new(),
    };
    if named.is_empty() {
        return Ok((linked.iter().filter(|h| h.apply_allocation_policy).cloned().collect(), false));
    }
    let mut out = Vec::new();
    for n in &named {
        match linked.iter().find(|h| h.host_name.eq_ignore_ascii_case(n)) {
            Some(h) => out.push(h.clone()),
            None => return Err(DpsError::invalid(format!("the enrollment names hub '{n}', which is not linked to this service"))),
        }
    }
    Ok((out, true))
}

fn assigning(op: &Operation) -> RegistrationOperationStatus {
    RegistrationOperationStatus {
        operation_id: op.operation_id.clone(),
        status: RegistrationStatus::Assigning,
        registration_state: Some(DeviceRegistrationResult {
            registration_id: Some(op.registration_id.clone()),
            status: Some(RegistrationStatus::Assigning),
            ..Default::default()
        }),
    }
}

/// What a device is told: the hub, device id and substatus only when it is assigned (a failed or disabled
/// record keeps them for the service API, but the device has nowhere to go).
fn result_of_state(s: &DeviceRegistrationState) -> DeviceRegistrationResult {
    let assigned = s.status == Some(RegistrationStatus::Assigned);
    DeviceRegistrationResult {
        registration_id: s.registration_id.clone(),
        created_date_time_utc: s.created_date_time_utc,
        assigned_hub: s.assigned_hub.clone().filter(|_| assigned),
        device_id: s.device_id.clone().filter(|_| assigned),
        status: s.status,
        substatus: s.substatus.filter(|_| assigned),
        error_code: s.error_code,
        error_message: s.error_message.clone(),
        last_updated_date_time_utc: s.last_updated_date_time_utc,
        etag: s.etag.clone(),
        payload: s.payload.clone(),
        ..Default::default()
    }
}

fn result_of(s: &DeviceRegistrationState, m: &Matched) -> DeviceRegistrationResult {
    let mut r = result_of_state(s);
    if let Matched::Group(g) = m {
        if g.attestation.kind == AttestationType::SymmetricKey {
            r.symmetric_key = Some(SymmetricKeyRegistrationResult { enrollment_group_id: Some(g.enrollment_group_id.clone()) });
        }
    }
    r
}

/// An operation id in Azure's shape, `<digit>.<16 hex>.<uuid>` — only `[A-Za-z0-9.-]` (§1.5).
pub fn new_operation_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    format!("4.{:016x}.{}", rng.gen::<u64>(), uuid::Uuid::new_v4())
}
