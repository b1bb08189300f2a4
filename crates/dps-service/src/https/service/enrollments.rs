//! `/enrollments…`: individual enrollments (§5.2).

use dps_core::query::{self, Collection};
use dps_core::DpsError;
use dps_proto::{BulkEnrollmentOperation, IndividualEnrollment, QuerySpecification};
use http::StatusCode;

use super::{page_request, page_response, precondition, schema};
use crate::app::App;
use crate::https::{empty_response, json_response, HttpResponse, Request};

pub async fn get(app: &App, id: &str) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.management.get_enrollment(id).await?))
}

pub async fn put(app: &App, req: &Request, id: &str) -> Result<HttpResponse, DpsError> {
    let e: IndividualEnrollment = req.json_or(|| None)?;
    Ok(json_response(StatusCode::OK, &app.management.put_enrollment(id, e, precondition(req), schema(req)).await?))
}

pub async fn delete(app: &App, req: &Request, id: &str) -> Result<HttpResponse, DpsError> {
    app.management.delete_enrollment(id, precondition(req)).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

pub async fn attestation(app: &App, id: &str) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.management.enrollment_attestation(id).await?))
}

/// `SELECT * FROM enrollments` with an optional `WHERE` (dps-core `query`); an absent body, an empty query or `*`
/// lists everything; anything the parser does not understand is a 400, never everything.
pub async fn query(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let spec: Option<QuerySpecification> = req.json_or(|| Some(None))?;
    let mut page = page_request(req)?;
    if let Some(spec) = spec {
        page.filter = query::parse(&spec.query, Collection::Enrollments)?;
    }
    let max = page.max_items;
    Ok(page_response(app.management.query_enrollments(page).await?, "Enrollment", max))
}

pub async fn bulk(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let op: BulkEnrollmentOperation = req.json_or(|| None)?;
    app.limits.check_bulk(op.enrollments.len())?;
    Ok(json_response(StatusCode::OK, &app.management.bulk_enrollments(op, schema(req)).await))
}

/// `POST /enrollments/{id}/renewKey` and `/enrollmentGroups/{id}/renewKey` (extension): body
/// `{ "keyType": "primary" | "secondary" | "both" | "swap" }`; answers the new attestation mechanism.
pub async fn renew_key(app: &App, req: &Request, id: &str, group: bool) -> Result<HttpResponse, DpsError> {
    let body: serde_json::Value = req.json_or(|| Some(serde_json::json!({})))?;
    let key_type = body.get("keyType").and_then(|v| v.as_str()).unwrap_or("both");
    Ok(json_response(StatusCode::OK, &app.management.renew_keys(group, id, key_type).await?))
}
