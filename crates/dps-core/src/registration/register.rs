//! Register (§1.1): the device is attested, then its operation starts (`coordination.rs`: one durable write of
//! the `assigning` operation and record, then the assignment in a task). Also the TPM challenge that comes before
//! a TPM device's register (§4.4.3), and the console's re-provisioning, which starts the same assignment without a
//! device.

use std::sync::Arc;

use dps_proto::trace::DecisionTrace;
use dps_proto::RegistrationStatus;
use tracing::info;

use super::record::{assigning, next_state, record_of, NewState};
use super::{new_operation_id, store_err, RegisterRequest, RegistrationEngine, Reply};
use crate::attestation::{Attested, DeviceCredentials};
use crate::error::{DpsError, ErrorKind};
use crate::model::{Operation, RegistrationRecord};

impl RegistrationEngine {
    /// `PUT /{idScope}/registrations/{id}/register`.
    #[tracing::instrument(skip_all, fields(registration_id = %dps_proto::truncate_for_display(&req.registration_id), protocol = req.protocol))]
    pub async fn register(self: &Arc<Self>, req: RegisterRequest) -> Result<Reply, DpsError> {
        let (id, protocol) = (req.registration_id.clone(), req.protocol);
        self.register_device(req).await.map_err(|e| self.device_refusal(&id, protocol, e))
    }

    async fn register_device(self: &Arc<Self>, req: RegisterRequest) -> Result<Reply, DpsError> {
        let reg = self.parse_target(&req.id_scope, &req.registration_id)?;
        let admitted = self.admit()?;
        if let Some(body_id) = req.body.registration_id.as_deref() {
            if !body_id.eq_ignore_ascii_case(reg.as_str()) {
                return Err(DpsError::invalid(format!(
                    "the body's registrationId '{}' does not match '{}' in the request path",
                    body_id.escape_debug(),
                    reg
                )));
            }
        }
        let mechanism = mechanism(&req.credentials, req.body.tpm.is_some());
        let attested = self.attest(&reg, &req.credentials, req.body.tpm.is_some()).await;
        self.ports.metrics.record(crate::metrics::Event::Attestation { mechanism, protocol: req.protocol, success: attested.is_ok() });
        let attested = attested?;
        self.ports.limits.admit_registration(reg.as_str(), &req.body)?;
        if let Some(csr) = &req.body.csr {
            let policy = attested.matched.credential_policy_name();
            self.ports.credentials.admit(csr, reg.as_str(), policy, req.api_version.as_deref()).await?;
        }
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
            csr: req.body.csr.clone(),
            result: None,
            created: now,
            updated: now,
        };
        let reply = assigning(&op);
        self.start(op, attested.device_keys.clone(), admitted).await?;
        Ok(Reply { status: reply, retry_after: Some(self.config.retry_after_secs) })
    }

    /// The TPM attestation port (§4.4.3 step 2): a device presents its EK and SRK; the answer is the
    /// authentication-key blob it must activate. Transports call it — HTTPS for the unauthenticated register,
    /// AMQP's `TPM` SASL mechanism — without knowing how it is built.
    #[tracing::instrument(skip_all, fields(registration_id = %dps_proto::truncate_for_display(registration_id)))]
    pub async fn tpm_challenge(
        &self,
        id_scope: &str,
        registration_id: &str,
        endorsement_key: &[u8],
        storage_root_key: &[u8],
    ) -> Result<Vec<u8>, DpsError> {
        let reg = self.parse_target(id_scope, registration_id)?;
        let p = &self.ports;
        let keys = crate::tpm::PresentedKeys { endorsement_key, storage_root_key };
        let blob = crate::tpm::challenge(p.enrollments.as_ref(), p.tpm.as_ref(), p.clock.as_ref(), &self.config.cpu, &reg, keys).await;
        if let Err(e) = &blob {
            self.ports.metrics.record(crate::metrics::Event::Attestation { mechanism: "tpm", protocol: "challenge", success: false });
            info!(code = e.code(), error = %e.message, "TPM challenge refused");
        }
        blob.map_err(|e| self.device_refusal(registration_id, "tpm-challenge", e))
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

    /// The console's "re-provision": the device's registration runs again now, as if the device had
    /// registered again — current enrollment, hubs and weights, its enrollment's re-provisioning policy (move
    /// or keep the hub, migrate or reset the twin) — without attestation (it was attested when it
    /// registered). The device learns its new hub at its next registration. Returns the new record.
    #[tracing::instrument(skip_all, fields(registration_id = %dps_proto::truncate_for_display(registration_id)))]
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
    pub(super) async fn assigning_record(&self, op: &Operation) -> Result<RegistrationRecord, DpsError> {
        let previous =
            self.ports.registrations.get_registration(&op.registration_id).await.map_err(store_err("could not read the registration"))?;
        self.check_claim(op, previous.as_ref()).await?;
        let kept = previous.as_ref().map(|p| &p.state);
        let change = NewState {
            status: RegistrationStatus::Assigning,
            placed: None,
            error: None,
            payload: kept.and_then(|s| s.payload.clone()),
            issued: None,
        };
        let state = next_state(&op.registration_id, kept, self.ports.clock.now(), change);
        let trace = DecisionTrace {
            operation_id: Some(op.operation_id.clone()),
            protocol: op.protocol.clone(),
            why: Some("the assignment is in progress".to_owned()),
            ..DecisionTrace::default()
        };
        Ok(record_of(op, state, &trace, previous.and_then(|p| p.first_hub)))
    }
}

/// The attestation mechanism a register presents (metrics).
fn mechanism(credentials: &DeviceCredentials, tpm: bool) -> &'static str {
    match (credentials, tpm) {
        (DeviceCredentials::Sas(_), false) => "symmetricKey",
        (DeviceCredentials::X509(_), _) => "x509",
        (_, true) => "tpm",
        (DeviceCredentials::None, false) => "none",
    }
}
