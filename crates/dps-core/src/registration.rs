//! The registration engine: register, operation status and status look-up (§1.1), the same for every
//! transport. Register attests the device, persists an `assigning` operation and answers at once; the
//! assignment (allocation, hub connector, registration record) runs in its own task and is resumed after
//! a restart, so a device that polls later always gets its answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    CertificateStore, EnrollmentStore, HubAuthentication, HubConnector, HubDevice, HubStore, OperationStore, RegistrationStore,
};
use crate::Clock;

/// The engine's collaborators.
#[derive(Clone)]
pub struct Ports {
    pub enrollments: Arc<dyn EnrollmentStore>,
    pub certificates: Arc<dyn CertificateStore>,
    pub registrations: Arc<dyn RegistrationStore>,
    pub operations: Arc<dyn OperationStore>,
    pub hubs: Arc<dyn HubStore>,
    pub connector: Arc<dyn HubConnector>,
    pub allocator: Arc<dyn Allocator>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub id_scope: IdScope,
    /// Seconds a device is told to wait before polling (2–5 are honoured by every SDK, §0.10).
    pub retry_after_secs: u32,
    /// The policy for enrollments that set none (§7.2).
    pub default_policy: AllocationPolicy,
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
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn store_err(what: &str) -> impl Fn(crate::ports::StoreError) -> DpsError + '_ {
    move |e| {
        warn!(error = %e, "{what}");
        DpsError::new(ErrorKind::Unavailable, format!("{what}; try again"))
    }
}

impl RegistrationEngine {
    pub fn new(ports: Ports, config: EngineConfig) -> Arc<Self> {
        Arc::new(Self { ports, config, locks: Mutex::new(HashMap::new()) })
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
        attest(
            self.ports.enrollments.as_ref(),
            self.ports.certificates.as_ref(),
            self.ports.clock.as_ref(),
            &self.config.id_scope,
            reg,
            creds,
            tpm,
        )
        .await
    }

    /// `PUT /{idScope}/registrations/{id}/register`.
    #[tracing::instrument(skip_all, fields(registration_id = %req.registration_id))]
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
        let attested = self.attest(&reg, &req.credentials, req.body.tpm.is_some()).await?;
        let now = self.ports.clock.now();
        let op = Operation {
            operation_id: new_operation_id(),
            registration_id: reg.as_str().to_owned(),
            status: RegistrationStatus::Assigning,
            enrollment: attested.matched.reference(),
            attestation: attested.attestation,
            payload: req.body.payload.clone().filter(|p| !p.is_null()),
            force_registration: req.force_registration,
            x509: attested.x509.clone(),
            result: None,
            created: now,
            updated: now,
        };
        self.ports.operations.put_operation(&op).await.map_err(store_err("could not record the operation"))?;
        info!(operation_id = %op.operation_id, enrollment = ?op.enrollment, "registration accepted");

        let engine = Arc::clone(self);
        let (op_id, device_keys) = (op.operation_id.clone(), attested.device_keys.clone());
        tokio::spawn(async move { engine.assign(&op_id, device_keys).await });

        Ok(Reply { status: assigning(&op), retry_after: Some(self.config.retry_after_secs) })
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
        self.attest(&reg, creds, false).await?;
        let op = self
            .ports
            .operations
            .get_operation(operation_id)
            .await
            .map_err(store_err("could not read the operation"))?
            .filter(|op| op.registration_id.eq_ignore_ascii_case(reg.as_str()))
            .ok_or_else(|| {
                DpsError::new(ErrorKind::OperationNotFound, format!("operation '{}' of '{reg}' not found", operation_id.escape_debug()))
            })?;
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

    /// Resumes operations a previous run left `assigning`; returns how many.
    pub async fn resume_pending(self: &Arc<Self>) -> Result<usize, DpsError> {
        let ops = self.ports.operations.pending_operations().await.map_err(store_err("could not list pending operations"))?;
        let n = ops.len();
        for op in ops {
            let engine = Arc::clone(self);
            tokio::spawn(async move { engine.assign(&op.operation_id, None).await });
        }
        if n > 0 {
            info!(count = n, "resumed pending registrations");
        }
        Ok(n)
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        Arc::clone(locks.entry(key.to_owned()).or_default())
    }

    /// Runs the assignment of one operation to its end. Never panics; failures end in a `failed` operation.
    pub async fn assign(&self, operation_id: &str, device_keys: Option<(dps_crypto::Secret, dps_crypto::Secret)>) {
        let op = match self.ports.operations.get_operation(operation_id).await {
            Ok(Some(op)) if !op.status.is_terminal() => op,
            Ok(_) => return,
            Err(e) => {
                warn!(operation_id, error = %e, "cannot load operation; it stays pending");
                return;
            }
        };
        let lock = self.lock_for(&op.registration_id.to_ascii_lowercase());
        let _guard = lock.lock().await;
        let outcome = self.decide(&op, device_keys).await;
        if let Err(e) = self.finish(op, outcome).await {
            warn!(operation_id, error = %e, "cannot store the outcome; the operation stays pending and resumes at next start");
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
    async fn decide(&self, op: &Operation, device_keys: Option<(dps_crypto::Secret, dps_crypto::Secret)>) -> Outcome {
        let mut trace = json!({
            "operationId": op.operation_id,
            "attestation": op.attestation.as_str(),
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
            };
        }
        let previous = match self.ports.registrations.get_registration(&op.registration_id).await {
            Ok(p) => p.filter(|p| p.state.status == Some(RegistrationStatus::Assigned)),
            Err(e) => return Outcome::failed(store_err("could not read the registration record")(e), trace, Some(matched)),
        };
        let linked = match self.ports.hubs.list_hubs().await {
            Ok(h) => h,
            Err(e) => return Outcome::failed(store_err("could not read the linked hubs")(e), trace, Some(matched)),
        };
        let policy = view.policy.unwrap_or(self.config.default_policy);
        let reprovision = view.reprovision.unwrap_or_default();
        let previous_hub = previous.as_ref().and_then(|p| p.state.assigned_hub.clone());

        let decision = if let (Some(hub), false) = (&previous_hub, reprovision.update_hub_assignment) {
            trace["why"] = json!("the reprovision policy never re-assigns: the device keeps its hub");
            Ok((hub.clone(), json!({ "policy": "keep", "hub": hub })))
        } else {
            match candidates(&view, &linked) {
                Ok((hubs, named)) => self
                    .ports
                    .allocator
                    .allocate(&AllocationRequest {
                        registration_id: &op.registration_id,
                        policy,
                        candidates: hubs,
                        named_by_enrollment: named,
                    })
                    .map(|d| (d.hub.clone(), serde_json::to_value(&d).unwrap_or_default())),
                Err(e) => Err(e),
            }
        };
        let (hub_name, decision_json) = match decision {
            Ok(d) => d,
            Err(e) => return Outcome::failed(e, trace, Some(matched)),
        };
        trace["allocation"] = decision_json;
        let hub = linked.iter().find(|h| h.host_name.eq_ignore_ascii_case(&hub_name)).cloned().unwrap_or_else(|| LinkedHub {
            host_name: hub_name.clone(),
            allocation_weight: 1,
            apply_allocation_policy: false,
            region: None,
            connector: "builtin".into(),
            ..Default::default()
        });

        let device_id = view.device_id.clone().unwrap_or_else(|| op.registration_id.clone());
        let moved = previous_hub.as_ref().is_some_and(|p| !p.eq_ignore_ascii_case(&hub.host_name));
        let substatus = match (&previous, moved) {
            (None, _) => Substatus::InitialAssignment,
            (Some(_), true) if reprovision.migrate_device_data => Substatus::DeviceDataMigrated,
            (Some(_), true) => Substatus::DeviceDataReset,
            (Some(_), false) if !reprovision.migrate_device_data => Substatus::DeviceDataReset,
            (Some(p), false) => p.state.substatus.unwrap_or(Substatus::InitialAssignment),
        };
        let apply_twin = matches!(substatus, Substatus::InitialAssignment | Substatus::DeviceDataReset);

        // §7.4: symmetric-key devices get their keys; X.509 devices a self-signed identity with the leaf thumbprint.
        let authentication = if op.attestation == AttestationType::X509 {
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
            initial_twin: if apply_twin { view.initial_twin.clone() } else { None },
        };
        if let Err(e) = self.ports.connector.provision(&hub, &device).await {
            trace["connector"] = json!({ "hub": hub.host_name, "result": e.to_string() });
            return Outcome::failed(
                DpsError::new(ErrorKind::Unavailable, format!("hub '{}' did not accept the device: {e}", hub.host_name)),
                trace,
                Some(matched),
            );
        }
        trace["connector"] = json!({ "hub": hub.host_name, "result": "identity created or updated" });
        if moved {
            if let Some(old) = previous_hub.as_ref().and_then(|p| linked.iter().find(|h| h.host_name.eq_ignore_ascii_case(p))) {
                let old_id = previous.as_ref().and_then(|p| p.state.device_id.clone()).unwrap_or_else(|| device_id.clone());
                if let Err(e) = self.ports.connector.deprovision(old, &old_id).await {
                    warn!(hub = %old.host_name, error = %e, "could not remove the device from its previous hub");
                }
            }
        }
        trace["substatus"] = json!(substatus.as_str());
        Outcome {
            status: RegistrationStatus::Assigned,
            matched: Some(matched),
            hub: Some(hub.host_name),
            device_id: Some(device_id),
            substatus: Some(substatus),
            error: None,
            trace,
        }
    }

    async fn finish(&self, mut op: Operation, o: Outcome) -> Result<(), crate::ports::StoreError> {
        let now = self.ports.clock.now();
        let previous = self.ports.registrations.get_registration(&op.registration_id).await?;
        let created = previous.as_ref().and_then(|p| p.state.created_date_time_utc).unwrap_or(now);
        let state = DeviceRegistrationState {
            registration_id: Some(op.registration_id.clone()),
            created_date_time_utc: Some(created),
            assigned_hub: o.hub.clone(),
            device_id: o.device_id.clone(),
            status: Some(o.status),
            substatus: o.substatus,
            error_code: o.error.as_ref().map(DpsError::code),
            error_message: o.error.as_ref().map(|e| e.message.clone()),
            last_updated_date_time_utc: Some(now),
            etag: Some(new_etag()),
            payload: None,
        };
        let record = RegistrationRecord {
            state: state.clone(),
            enrollment: op.enrollment.clone(),
            attestation: op.attestation,
            trace: Some(o.trace),
        };
        // A failure leaves an assigned device assigned: only record it when there is nothing better.
        let keep_previous = o.status == RegistrationStatus::Failed
            && previous.as_ref().is_some_and(|p| p.state.status == Some(RegistrationStatus::Assigned));
        if !keep_previous {
            self.ports.registrations.put_registration(record).await?;
        }
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
        op.result = Some(result);
        op.updated = now;
        self.ports.operations.put_operation(&op).await?;
        match &o.error {
            Some(e) => {
                warn!(registration_id = %op.registration_id, operation_id = %op.operation_id, code = e.code(), error = %e.message, "registration failed")
            }
            None => {
                info!(registration_id = %op.registration_id, operation_id = %op.operation_id, status = o.status.as_str(), hub = o.hub.as_deref().unwrap_or("-"), "registration finished")
            }
        }
        Ok(())
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
}

impl Outcome {
    fn failed(e: DpsError, mut trace: serde_json::Value, matched: Option<Matched>) -> Self {
        trace["error"] = json!({ "code": e.code(), "message": e.message });
        Self { status: RegistrationStatus::Failed, matched, hub: None, device_id: None, substatus: None, error: Some(e), trace }
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

fn result_of_state(s: &DeviceRegistrationState) -> DeviceRegistrationResult {
    DeviceRegistrationResult {
        registration_id: s.registration_id.clone(),
        created_date_time_utc: s.created_date_time_utc,
        assigned_hub: s.assigned_hub.clone(),
        device_id: s.device_id.clone(),
        status: s.status,
        substatus: s.substatus,
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
