//! An operation-status request (§3.4: `iotdps-operation-type = iotdps-get-operationstatus`,
//! `iotdps-operation-id`). The body (the registration again, `""`, a string, or none) is ignored.

use dps_core::registration::Reply;
use dps_core::DpsError;

use super::connection::Device;
use crate::app::App;

pub async fn handle(app: &App, who: &Device, operation_id: &str) -> Result<Reply, DpsError> {
    app.engine.operation_status(&who.address.id_scope, &who.address.registration_id, operation_id, &who.credentials).await
}
