//! `PUT /{idScope}/registrations/{registrationId}/register` → always `202 Accepted` with `retry-after`
//! (§0.3, §0.9, §1.1).

use dps_core::registration::RegisterRequest;
use dps_core::DpsError;
use dps_proto::DeviceRegistration;
use http::{HeaderValue, StatusCode};

use crate::app::App;
use crate::https::{json_response, HttpResponse, Request};

pub async fn handle(app: &App, req: &Request, scope: &str, registration_id: &str) -> Result<HttpResponse, DpsError> {
    let body: DeviceRegistration = req.json_or(|| Some(DeviceRegistration::default()))?;
    let force = req.query("forceRegistration").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let reply = app
        .engine
        .register(RegisterRequest {
            id_scope: scope.to_owned(),
            registration_id: registration_id.to_owned(),
            credentials: super::credentials(req),
            body,
            force_registration: force,
            source: Some(req.peer.addr.ip()),
            protocol: "https",
        })
        .await?;
    let mut r = json_response(StatusCode::ACCEPTED, &reply.status);
    if let Some(s) = reply.retry_after {
        r.headers_mut().insert("retry-after", HeaderValue::from(s));
    }
    Ok(r)
}
