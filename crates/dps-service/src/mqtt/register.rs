//! `$dps/registrations/PUT/iotdps-register/?$rid={rid}` (§2.4): the same engine call as HTTPS; the body may
//! be empty (.NET, the Embedded C sample) or carry `"payload": null` (Python).

use dps_core::registration::{RegisterRequest, Reply};
use dps_core::DpsError;
use dps_proto::DeviceRegistration;

use super::connect::Identity;
use crate::app::App;

pub async fn handle(app: &App, who: &Identity, body: &[u8]) -> Result<Reply, DpsError> {
    let registration = if body.iter().all(u8::is_ascii_whitespace) {
        DeviceRegistration::default()
    } else {
        serde_json::from_slice(body).map_err(|e| DpsError::bad_request(format!("the register body is not valid: {e}")))?
    };
    app.engine
        .register(RegisterRequest {
            id_scope: who.id_scope.clone(),
            registration_id: who.registration_id.clone(),
            credentials: who.credentials.clone(),
            body: registration,
            force_registration: false,
            source: who.source,
            protocol: who.protocol,
        })
        .await
}
