//! Generic device refusals (configuration `generic_device_errors`, off by default). A device's answer normally
//! says why it was refused — no enrollment for the id, a wrong key, a certificate whose CN is not the id, an
//! id owned by another enrollment, an unknown ID scope — which lets anyone probing the device API learn which
//! registration ids are enrolled. With the switch on, every such refusal of a register, a poll or a TPM
//! challenge is the same 401002 with [`GENERIC_MESSAGE`] on every transport; the detail goes to the log and
//! to the device's trace (`refused`, [`RegistrationEngine::refusal_note`]). A disabled enrollment is not a
//! refusal: only a device that proved its credentials learns it (its operation ends `disabled`, §7.1).

use serde_json::{json, Value};
use tracing::warn;

use super::RegistrationEngine;
use crate::error::{DpsError, ErrorKind};

/// What every refused device is told when `generic_device_errors` is on.
pub const GENERIC_MESSAGE: &str = "The device could not be authenticated or may not register.";

/// The refusals that tell a prober something about enrollments (bad requests and throttling say nothing).
fn hidden(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Unauthorized
            | ErrorKind::Forbidden
            | ErrorKind::RegistrationNotFound
            | ErrorKind::EnrollmentNotFound
            | ErrorKind::OperationNotFound
            | ErrorKind::NotFound
            | ErrorKind::Conflict
    )
}

fn note_key(registration_id: &str) -> String {
    format!("refused\n{}", registration_id.to_ascii_lowercase())
}

impl RegistrationEngine {
    /// The error a device gets for `e`: `e` itself, or the generic 401 when the switch is on (the detail logged
    /// and noted for the trace).
    pub(super) fn device_refusal(&self, registration_id: &str, protocol: &str, e: DpsError) -> DpsError {
        if !self.config.generic_device_errors || !hidden(e.kind) {
            return e;
        }
        let id: String = registration_id.chars().take(128).collect();
        warn!(registration_id = %id.escape_debug(), protocol, code = e.code(), detail = %e.message, "device refused; it was given the generic answer");
        let note = json!({
            "at": dps_proto::service::format_time(&self.ports.clock.now()),
            "protocol": protocol,
            "error": { "code": e.code(), "message": e.message },
        });
        self.claims.insert(note_key(&id), note);
        DpsError::unauthorized(GENERIC_MESSAGE)
    }

    /// The last refusal of a device that was given the generic answer (in memory, since the service started).
    pub fn refusal_note(&self, registration_id: &str) -> Option<Value> {
        self.claims.get(&note_key(registration_id))
    }
}
