//! `GET /{idScope}/registrations/{registrationId}/operations/{operationId}` → `202` with `retry-after`
//! while assigning, `200` when terminal (§1.1).

use dps_core::DpsError;
use http::{HeaderValue, StatusCode};

use crate::app::App;
use crate::https::{json_response, HttpResponse, Request};

pub async fn handle(app: &App, req: &Request, scope: &str, registration_id: &str, operation_id: &str) -> Result<HttpResponse, DpsError> {
    let reply = app.engine.operation_status(scope, registration_id, operation_id, &super::credentials(req)).await?;
    let status = if reply.in_progress() { StatusCode::ACCEPTED } else { StatusCode::OK };
    let mut r = json_response(status, &reply.status);
    if let Some(s) = reply.retry_after {
        r.headers_mut().insert("retry-after", HeaderValue::from(s));
    }
    Ok(r)
}
