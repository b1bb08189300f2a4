//! `/registrations…`: registration records (§5.2) and their decision traces (extension).

use dps_core::DpsError;
use dps_proto::QuerySpecification;
use http::StatusCode;
use serde_json::json;

use super::{page_request, page_response, precondition};
use crate::app::App;
use crate::https::{empty_response, json_response, HttpResponse, Request};

pub async fn get(app: &App, id: &str) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.management.get_registration(id).await?.state))
}

pub async fn delete(app: &App, req: &Request, id: &str) -> Result<HttpResponse, DpsError> {
    app.management.delete_registration(id, precondition(req)).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// `POST /registrations/{groupId}/query` (swagger: no body; Node/.NET send a QuerySpecification — accepted
/// and ignored, §10.11). `POST /registrations/query` lists every record (extension).
pub async fn query(app: &App, req: &Request, group: Option<&str>) -> Result<HttpResponse, DpsError> {
    let _spec: Option<QuerySpecification> = req.json_or(|| Some(None)).unwrap_or(None);
    let page = page_request(req)?;
    let max = page.max_items;
    Ok(page_response(app.management.query_registrations(group, page).await?, "DeviceRegistration", max))
}

/// `GET /registrations/{id}/trace`: how the last registration of this device was decided.
pub async fn trace(app: &App, id: &str) -> Result<HttpResponse, DpsError> {
    let rec = app.management.get_registration(id).await?;
    Ok(trace_response(app, &rec))
}

/// `POST /registrations/{id}/reprovision` (extension): the registration runs again now; the answer is the new
/// record with its decision trace, as `GET …/trace` shows it.
pub async fn reprovision(app: &App, id: &str) -> Result<HttpResponse, DpsError> {
    let rec = app.engine.reprovision(id).await?;
    Ok(trace_response(app, &rec))
}

/// The record's decision trace, with a `throttled` entry (counts, first and last time, last retry-after) when the
/// Azure limits profile throttled this device since the service started (kept in memory by `dps_core::limits`),
/// and a `claimRefused` entry when a device of another enrollment was refused this registration id (kept in
/// memory by the engine, `registration/ownership.rs`).
fn trace_response(app: &App, rec: &dps_core::model::RegistrationRecord) -> HttpResponse {
    let mut trace = rec.trace.clone();
    let id = rec.state.registration_id.as_deref().unwrap_or_default();
    let notes = [
        ("throttled", app.limits.throttle_note(id).map(|n| serde_json::to_value(n).unwrap_or_default())),
        ("claimRefused", app.engine.claim_refusal(id)),
        ("refused", app.engine.refusal_note(id)),
    ];
    for (name, note) in notes {
        let Some(note) = note else { continue };
        match trace.as_mut().and_then(|t| t.as_object_mut()) {
            Some(t) => {
                t.insert(name.into(), note);
            }
            None => trace = Some(json!({ name: note })),
        }
    }
    json_response(
        StatusCode::OK,
        &json!({ "registrationState": rec.state, "enrollment": rec.enrollment, "attestation": rec.attestation.as_str(), "trace": trace }),
    )
}
