//! `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}` (§2.4). The body (empty,
//! a space, or the registration again) is ignored.

use dps_core::registration::Reply;
use dps_core::DpsError;

use super::connect::Identity;
use crate::app::App;

pub async fn handle(app: &App, who: &Identity, operation_id: &str) -> Result<Reply, DpsError> {
    app.engine.operation_status(&who.id_scope, &who.registration_id, operation_id, &who.credentials).await
}
