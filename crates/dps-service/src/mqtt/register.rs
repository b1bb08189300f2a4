//! `$dps/registrations/PUT/iotdps-register/?$rid={rid}` (§2.4): the same engine call as HTTPS; the body may
//! be empty (.NET, the Embedded C sample) or carry `"payload": null` (Python).

use dps_core::registration::{RegisterRequest, Reply};
use dps_core::DpsError;

use super::connect::Identity;
use crate::app::App;

pub async fn handle(app: &App, who: &Identity, body: &[u8]) -> Result<Reply, DpsError> {
    let registration = crate::device_body::registration(body)?;
    app.engine
        .register(RegisterRequest {
            id_scope: who.id_scope.clone(),
            registration_id: who.registration_id.clone(),
            credentials: who.credentials.clone(),
            body: registration,
            force_registration: false,
            source: who.source,
            protocol: who.protocol,
            api_version: who.api_version.clone(),
        })
        .await
}
