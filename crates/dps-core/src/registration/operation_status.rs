//! Operation status (§1.1): a device polls its operation; answered from memory when this instance runs or
//! finished it, and a poll of an assignment running here waits a moment for its outcome (`coordination.rs`).

use dps_proto::RegistrationOperationStatus;

use super::record::assigning;
use super::{store_err, RegistrationEngine, Reply};
use crate::attestation::DeviceCredentials;
use crate::error::{DpsError, ErrorKind};
use crate::model::Operation;

impl RegistrationEngine {
    /// `GET /{idScope}/registrations/{id}/operations/{operationId}`.
    #[tracing::instrument(skip_all, fields(registration_id = %dps_proto::truncate_for_display(registration_id), operation_id = %dps_proto::truncate_for_display(operation_id)))]
    pub async fn operation_status(
        &self,
        id_scope: &str,
        registration_id: &str,
        operation_id: &str,
        creds: &DeviceCredentials,
    ) -> Result<Reply, DpsError> {
        let polled = self.poll(id_scope, registration_id, operation_id, creds).await;
        polled.map_err(|e| self.device_refusal(registration_id, "poll", e))
    }

    async fn poll(&self, id_scope: &str, registration_id: &str, operation_id: &str, creds: &DeviceCredentials) -> Result<Reply, DpsError> {
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
            return Ok(Some(Operation::clone(&op)));
        }
        let op = self.ports.operations.get_operation(operation_id).await.map_err(store_err("could not read the operation"))?;
        if let Some(done) = op.as_ref().filter(|o| o.status.is_terminal()) {
            self.known.insert(done.operation_id.clone(), std::sync::Arc::new(done.clone()));
        }
        Ok(op)
    }
}
