//! `/enrollmentGroups…`: enrollment groups (§5.2).

use dps_core::query::{self, Collection};
use dps_core::DpsError;
use dps_proto::{BulkEnrollmentGroupOperation, EnrollmentGroup, QuerySpecification};
use http::StatusCode;

use super::{page_request, page_response, precondition, schema};
use crate::app::App;
use crate::https::{empty_response, json_response, HttpResponse, Request};

pub async fn get(app: &App, id: &str) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.management.get_group(id).await?))
}

pub async fn put(app: &App, req: &Request, id: &str) -> Result<HttpResponse, DpsError> {
    let e: EnrollmentGroup = req.json_or(|| None)?;
    Ok(json_response(StatusCode::OK, &app.management.put_group(id, e, precondition(req), schema(req)).await?))
}

pub async fn delete(app: &App, req: &Request, id: &str) -> Result<HttpResponse, DpsError> {
    app.management.delete_group(id, precondition(req)).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

pub async fn attestation(app: &App, id: &str) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.management.group_attestation(id).await?))
}

/// `SELECT * FROM enrollmentGroups` with an optional `WHERE` (dps-core `query`); an absent body, an empty query or `*`
/// lists everything; anything the parser does not understand is a 400, never everything.
pub async fn query(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let spec: Option<QuerySpecification> = req.json_or(|| Some(None))?;
    let mut page = page_request(req)?;
    if let Some(spec) = spec {
        page.filter = query::parse(&spec.query, Collection::EnrollmentGroups)?;
    }
    let max = page.max_items;
    Ok(page_response(app.management.query_groups(page).await?, "EnrollmentGroup", max))
}

pub async fn bulk(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let op: BulkEnrollmentGroupOperation = req.json_or(|| None)?;
    app.limits.check_bulk(op.enrollment_groups.len())?;
    Ok(json_response(StatusCode::OK, &app.management.bulk_groups(op, schema(req)).await))
}
