//! Who may register under a registration id. A device's record names the enrollment it registered through (its
//! owner, `RegistrationRecord::enrollment`), and its identity in the hub carries the same owner
//! ([`IdentityOwner`]). Without this, any device holding a valid credential of another enrollment — a key
//! derived from group H, a certificate of H's CA with the right CN — could register under an id assigned
//! through X or G and take over its hub identity (keys replaced, the real device locked out).
//!
//! The policy: a registration through another enrollment than the owner's is refused (409201 Conflict: the
//! reference's "409 conflict (entity exists)" — the registration exists, owned elsewhere; every SDK treats 409
//! as final, §1.7) unless
//! - the owning enrollment no longer exists (deleting an enrollment is how an operator gives its devices up), or
//! - the new enrollment is the individual enrollment of this very registration id (an operator named the device
//!   explicitly; individual beats group, §7.1).
//!
//! The device is not told who owns the id (no enumeration of enrollments); the refusal is logged and kept for
//! the record's trace (`claimRefused`, [`RegistrationEngine::claim_refusal`]), and the owner's record is left
//! untouched. A hub identity found under another owner (the record was deleted, or the identity was made by
//! hand or by another service) is refused by the connector ([`ConnectorError::NotOwned`]); the engine lets the
//! connector replace it only when the same policy allows it for the owner marked on it.

use dps_proto::trace::DecisionTrace;
use dps_proto::LinkedHub;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::{store_err, RegistrationEngine};
use crate::error::{DpsError, ErrorKind};
use crate::model::{EnrollmentRef, Operation, RegistrationRecord};
use crate::ports::{ConnectorError, HubDevice, IdentityOwner, Provisioned};

/// Claim refusals kept in memory for the traces (the most recent devices).
pub const CLAIM_NOTES: usize = 10_000;

/// The same enrollment (ids compare case-insensitively).
pub fn same_enrollment(a: &EnrollmentRef, b: &EnrollmentRef) -> bool {
    match (a, b) {
        (EnrollmentRef::Individual(x), EnrollmentRef::Individual(y)) | (EnrollmentRef::Group(x), EnrollmentRef::Group(y)) => {
            x.eq_ignore_ascii_case(y)
        }
        _ => false,
    }
}

fn describe(e: &EnrollmentRef) -> String {
    match e {
        EnrollmentRef::Individual(id) => format!("individual enrollment '{}'", id.escape_debug()),
        EnrollmentRef::Group(id) => format!("enrollment group '{}'", id.escape_debug()),
    }
}

/// The device's error when its registration id belongs to another enrollment (no owner named).
pub fn claim_error(registration_id: &str) -> DpsError {
    DpsError::new(
        ErrorKind::Conflict,
        format!(
            "registration id '{}' is already assigned through another enrollment; it cannot be claimed through this one",
            registration_id.escape_debug()
        ),
    )
}

impl RegistrationEngine {
    /// This service's owner marker for an enrollment.
    pub(super) fn owner_of(&self, enrollment: &EnrollmentRef) -> IdentityOwner {
        IdentityOwner { id_scope: self.config.id_scope.as_str().to_owned(), enrollment: enrollment.clone() }
    }

    /// Why a registration through `new` may take the id over from `owner`; `None`: it may not.
    async fn takeover_reason(&self, owner: &EnrollmentRef, new: &EnrollmentRef) -> Result<Option<String>, DpsError> {
        if same_enrollment(owner, new) {
            return Ok(Some("same enrollment".to_owned()));
        }
        if matches!(new, EnrollmentRef::Individual(_)) {
            return Ok(Some(format!("an individual enrollment names the device now (it was {})", describe(owner))));
        }
        let read = store_err("could not read the enrollment");
        let exists = match owner {
            EnrollmentRef::Individual(id) => self.ports.enrollments.get_enrollment(id).await.map_err(&read)?.is_some(),
            EnrollmentRef::Group(id) => self.ports.enrollments.get_group(id).await.map_err(&read)?.is_some(),
        };
        Ok((!exists).then(|| format!("its previous owner, {}, was deleted", describe(owner))))
    }

    /// At register, before anything is written: refuses a registration id owned by another enrollment. The owner
    /// is the enrollment of a record that names a hub (the id was assigned through it; a failed or disabled
    /// registration keeps the hub): a record that never got one — a refused claim among them — owns nothing.
    pub(super) async fn check_claim(&self, op: &Operation, previous: Option<&RegistrationRecord>) -> Result<(), DpsError> {
        let Some(owner) = previous.filter(|p| p.state.assigned_hub.is_some()).map(|p| &p.enrollment) else { return Ok(()) };
        match self.takeover_reason(owner, &op.enrollment).await? {
            Some(why) if !same_enrollment(owner, &op.enrollment) => {
                info!(from = ?owner, to = ?op.enrollment, why, "registration id taken over by another enrollment");
                Ok(())
            }
            Some(_) => Ok(()),
            None => {
                let why = format!(
                    "refused: the registration id is assigned through {}, which still exists; the device presented a credential of {}",
                    describe(owner),
                    describe(&op.enrollment)
                );
                warn!(owner = ?owner, claimed_by = ?op.enrollment, "{why}");
                self.note_claim_refusal(op, owner, &why);
                Err(claim_error(&op.registration_id))
            }
        }
    }

    fn note_claim_refusal(&self, op: &Operation, owner: &EnrollmentRef, why: &str) {
        let note = json!({
            "at": dps_proto::service::format_time(&self.ports.clock.now()),
            "owner": owner,
            "claimedBy": op.enrollment,
            "protocol": op.protocol,
            "why": why,
            "error": { "code": ErrorKind::Conflict.code() },
        });
        self.claims.insert(op.registration_id.to_ascii_lowercase(), note);
    }

    /// The last refused claim of a registration id by another enrollment (in memory, since the service started),
    /// shown as `claimRefused` in the record's trace.
    pub fn claim_refusal(&self, registration_id: &str) -> Option<Value> {
        self.claims.get(&registration_id.to_ascii_lowercase())
    }

    /// Creates the identity; when the hub has one of another owner of this service that the policy lets this
    /// registration take over, once more replacing it. Anything else the connector refused stays refused.
    pub(super) async fn provision_owned(
        &self,
        hub: &LinkedHub,
        mut device: HubDevice,
        trace: &mut DecisionTrace,
    ) -> Result<Provisioned, ConnectorError> {
        let first = self.provision_with_retry(hub, &device, trace).await;
        let Err(ConnectorError::NotOwned { owner: Some(found), message }) = &first else { return first };
        if !found.id_scope.eq_ignore_ascii_case(self.config.id_scope.as_str()) {
            return first;
        }
        let why = match self.takeover_reason(&found.enrollment, &device.owner.enrollment).await {
            Ok(Some(why)) => why,
            Ok(None) => return first,
            Err(e) => return Err(ConnectorError::Unavailable(e.message)),
        };
        info!(hub = %hub.host_name, from = ?found.enrollment, why, "replacing the identity of the device's previous owner");
        let refused = format!("{message}; taken over: {why}");
        device.replaces = Some(found.clone());
        let second = self.provision_with_retry(hub, &device, trace).await;
        if let Some(step) = trace.connector.as_mut() {
            step.failed_attempts.insert(0, refused);
        }
        second
    }
}
