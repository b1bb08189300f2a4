//! A register request (§3.4: `iotdps-operation-type = iotdps-register`): the same engine call as HTTPS and
//! MQTT. The body is the registration JSON in `data` sections (C, Node, Java), empty bytes (.NET), or none.

use dps_core::registration::{RegisterRequest, Reply};
use dps_core::DpsError;

use super::connection::Device;
use crate::app::App;

pub async fn handle(app: &App, who: &Device, body: &[u8], force_registration: bool) -> Result<Reply, DpsError> {
    let registration = crate::device_body::registration(body)?;
    app.engine
        .register(RegisterRequest {
            id_scope: who.address.id_scope.clone(),
            registration_id: who.address.registration_id.clone(),
            credentials: who.credentials.clone(),
            body: registration,
            force_registration,
            source: Some(who.transport.peer.ip()),
            protocol: who.transport.protocol,
            api_version: who.api_version.clone(),
        })
        .await
}
