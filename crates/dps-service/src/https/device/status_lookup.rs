//! `POST /{idScope}/registrations/{registrationId}` → `200` with the device's `DeviceRegistrationResult`
//! (§1.1; present in the .NET generated client).

use dps_core::DpsError;
use dps_proto::DeviceRegistration;
use http::StatusCode;

use crate::app::App;
use crate::https::{json_response, HttpResponse, Request};

pub async fn handle(app: &App, req: &Request, scope: &str, registration_id: &str) -> Result<HttpResponse, DpsError> {
    let body: DeviceRegistration = req.json_or(|| Some(DeviceRegistration::default()))?;
    let result = app.engine.status_lookup(scope, registration_id, &super::credentials(req), &body).await?;
    Ok(json_response(StatusCode::OK, &result))
}
