//! `/enrollments…` and `/enrollmentGroups…` (§5.2): individual enrollments and enrollment groups, one handler
//! each for both kinds ([`Managed`]); the route table names the kind.

use dps_core::management::Managed;
use dps_core::query;
use dps_core::DpsError;
use dps_proto::QuerySpecification;
use http::StatusCode;

use super::{page_request, page_response, precondition, schema};
use crate::app::App;
use crate::https::{empty_response, json_response, HttpResponse, Request};

pub async fn get<E: Managed>(app: &App, id: &str) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.management.get::<E>(id).await?))
}

pub async fn put<E: Managed>(app: &App, req: &Request, id: &str) -> Result<HttpResponse, DpsError> {
    let e: E = req.json_or(|| None)?;
    Ok(json_response(StatusCode::OK, &app.management.put(id, e, precondition(req), schema(req)).await?))
}

pub async fn delete<E: Managed>(app: &App, req: &Request, id: &str) -> Result<HttpResponse, DpsError> {
    app.management.delete::<E>(id, precondition(req)).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

pub async fn attestation<E: Managed>(app: &App, id: &str) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.management.attestation::<E>(id).await?))
}

/// `SELECT * FROM enrollments` (or `enrollmentGroups`) with an optional `WHERE` (dps-core `query`); an absent
/// body, an empty query or `*` lists everything; anything the parser does not understand is a 400, never
/// everything.
pub async fn query<E: Managed>(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let spec: Option<QuerySpecification> = req.json_or(|| Some(None))?;
    let mut page = page_request(req)?;
    if let Some(spec) = spec {
        page.filter = query::parse(&spec.query, E::KIND.into())?;
    }
    let max = page.max_items;
    Ok(page_response(app.management.query::<E>(page).await?, E::KIND.item_type(), max))
}

pub async fn bulk<E: Managed>(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let op: E::Bulk = req.json_or(|| None)?;
    app.limits.check_bulk(E::bulk_len(&op))?;
    Ok(json_response(StatusCode::OK, &app.management.bulk::<E>(op, schema(req)).await))
}

/// `POST /enrollments/{id}/renewKey` and `/enrollmentGroups/{id}/renewKey` (extension): body
/// `{ "keyType": "primary" | "secondary" | "both" | "swap" }`; answers the new attestation mechanism.
pub async fn renew_key<E: Managed>(app: &App, req: &Request, id: &str) -> Result<HttpResponse, DpsError> {
    let body: serde_json::Value = req.json_or(|| Some(serde_json::json!({})))?;
    let key_type = body.get("keyType").and_then(|v| v.as_str()).unwrap_or("both");
    Ok(json_response(StatusCode::OK, &app.management.renew_keys::<E>(id, key_type).await?))
}
