//! The end of an assignment: its outcome, the device's record with the decision trace, and the terminal operation,
//! written together — and only by the owner of the operation's lease (`OperationStore::finish_registration`).

use dps_proto::trace::{DecisionTrace, TraceError};
use dps_proto::{DeviceRegistrationResult, DeviceRegistrationState, RegistrationStatus, Substatus};
use serde_json::Value;
use tracing::{info, warn};

use super::record::{next_state, record_of, result_of, result_of_state, NewState, Placed};
use super::RegistrationEngine;
use crate::attestation::Matched;
use crate::error::DpsError;
use crate::model::{Operation, RegistrationRecord};
use crate::ports::{IdentityWrite, StoreError};

/// How an assignment ended.
pub(super) enum Outcome {
    Assigned {
        matched: Matched,
        assignment: Box<Assignment>,
    },
    /// The enrollment is disabled: the device is told so and goes nowhere.
    Disabled {
        matched: Matched,
    },
    /// `matched`: the enrollment, when it was read.
    Failed {
        error: DpsError,
        matched: Option<Matched>,
    },
}

/// Where an assigned device went, and what the outcome writes with it.
pub(super) struct Assignment {
    pub hub: String,
    pub device_id: String,
    pub substatus: Substatus,
    /// The custom-allocation webhook's payload for the device (§6.2).
    pub payload: Option<Value>,
    /// The hub of the device's first assignment.
    pub first_hub: String,
    /// TPM devices: K2 wrapped for their TPM (base64), for `registrationState.tpm.authenticationKey`.
    pub tpm_blob: Option<String>,
    /// The certificate issued from the device's CSR.
    pub issued: Option<crate::credentials::Issued>,
    /// The built-in registry's identity, written with the outcome.
    pub identity: Option<IdentityWrite>,
}

impl Outcome {
    pub(super) fn status(&self) -> RegistrationStatus {
        match self {
            Self::Assigned { .. } => RegistrationStatus::Assigned,
            Self::Disabled { .. } => RegistrationStatus::Disabled,
            Self::Failed { .. } => RegistrationStatus::Failed,
        }
    }

    fn matched(&self) -> Option<&Matched> {
        match self {
            Self::Assigned { matched, .. } | Self::Disabled { matched } => Some(matched),
            Self::Failed { matched, .. } => matched.as_ref(),
        }
    }

    fn assignment(&self) -> Option<&Assignment> {
        match self {
            Self::Assigned { assignment, .. } => Some(assignment),
            _ => None,
        }
    }

    fn error(&self) -> Option<&DpsError> {
        match self {
            Self::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// What the record says of it.
    fn new_state(&self) -> NewState<'_> {
        let a = self.assignment();
        NewState {
            status: self.status(),
            placed: a.map(|a| Placed { hub: &a.hub, device_id: &a.device_id, substatus: a.substatus }),
            error: self.error(),
            payload: a.and_then(|a| a.payload.clone()),
            issued: a.and_then(|a| a.issued.as_ref()).map(|i| i.certificate.clone()),
        }
    }
}

impl RegistrationEngine {
    /// Writes the outcome: the record (with `trace`) and the terminal operation in one write, if this instance
    /// still holds the operation's lease (`Ok(false)` when it does not: the outcome is dropped).
    pub(super) async fn finish(
        &self,
        mut op: Operation,
        previous: Option<RegistrationRecord>,
        o: Outcome,
        mut trace: DecisionTrace,
    ) -> Result<bool, StoreError> {
        let now = self.ports.clock.now();
        if let Some(e) = o.error() {
            // Error texts can carry what a webhook, a hub or a device sent: the trace keeps a bounded copy.
            trace.error = Some(TraceError { code: e.code(), message: dps_proto::truncate_for_display(&e.message).into_owned() });
        }
        let state = next_state(&op.registration_id, previous.as_ref().map(|p| &p.state), now, o.new_state());
        let first_hub = o.assignment().map(|a| a.first_hub.clone()).or_else(|| previous.and_then(|p| p.first_hub));
        op.result = Some(device_result(&op, &state, &o));
        let record = record_of(&op, state, &trace, first_hub);
        op.status = o.status();
        op.updated = now;
        let identity = o.assignment().and_then(|a| a.identity.as_ref());
        if !self.ports.operations.finish_registration(&op, &record, identity, &self.instance).await? {
            return Ok(false);
        }
        self.known.insert(op.operation_id.clone(), std::sync::Arc::new(op.clone()));
        crate::failpoint::hit("engine.finished").await;
        let hub = o.assignment().map(|a| a.hub.as_str());
        self.ports.metrics.record(crate::metrics::Event::Registration { hub, status: o.status().as_str() });
        match o.error() {
            Some(e) => {
                warn!(registration_id = %op.registration_id, operation_id = %op.operation_id, code = e.code(), error = %e.message, "registration failed")
            }
            None => {
                info!(registration_id = %op.registration_id, operation_id = %op.operation_id, status = o.status().as_str(), hub = hub.unwrap_or("-"), "registration finished")
            }
        }
        Ok(true)
    }
}

/// What the device's poll answers: the record as the device may see it, its certificate (unless disabled), and a
/// TPM device's hub key.
fn device_result(op: &Operation, state: &DeviceRegistrationState, o: &Outcome) -> DeviceRegistrationResult {
    let mut result = match o.matched() {
        Some(m) => result_of(state, m),
        None => result_of_state(state),
    };
    if o.status() == RegistrationStatus::Disabled {
        result.etag = None;
    } else {
        result.x509 = op.x509.clone();
    }
    result.tpm = o.assignment().and_then(|a| a.tpm_blob.clone()).map(|k| dps_proto::TpmRegistrationResult { authentication_key: Some(k) });
    result.issued_certificate_chain = o.assignment().and_then(|a| a.issued.as_ref()).map(|i| i.chain.clone());
    result
}
