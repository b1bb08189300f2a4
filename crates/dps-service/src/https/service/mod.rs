//! Service (management) API over HTTPS (§5), plus DPS Console's documented extensions (linked hubs,
//! decision traces, the built-in registry, service info). Every route's row in `https/routes.rs` names the
//! right it needs; [`admit`] checks it first.

pub mod certificates;
pub mod console;
pub mod credential_policies;
pub mod demo_webhook;
pub mod diagnostics;
pub mod enrollments;
pub mod keys;
pub mod limits;
pub mod linked_hubs;
pub mod logs;
pub mod policies;
pub mod registrations;
pub mod scenarios;
pub mod simulation_cleanup;
pub mod simulations;

use dps_core::model::{Page, PageRequest, Precondition, Right};
use dps_core::DpsError;
use http::{HeaderValue, StatusCode};
use serde::Serialize;

use super::{json_response, HttpResponse, Request};
use crate::app::App;

/// Default page size of queries without `x-ms-max-item-count`.
pub const DEFAULT_PAGE: usize = 100;

/// What every service-API route checks before its handler runs: the caller's `right` (a SAS policy or the
/// console's session), then the Azure limits profile (`dps_core::limits`): the 96 KB message size, and the
/// service-operation rate for SAS-signed clients (service SDKs, the CLI); the console's own session is not an
/// Azure operation.
pub async fn admit(app: &App, req: &Request, right: Right) -> Result<(), DpsError> {
    admit_head(app, req, right).await?;
    app.limits.check_message(req.body.len())
}

/// What [`admit`] checks from the head alone (the right, the operation rate): over HTTPS it runs before the
/// body is read, so an unauthorised caller costs no body (`https/mod.rs`).
pub async fn admit_head(app: &App, req: &Request, right: Right) -> Result<(), DpsError> {
    app.authorize(req.header("authorization"), right).await?;
    if !req.header("authorization").is_some_and(|a| a.starts_with("Bearer ")) {
        app.limits.admit_service_operation()?;
    }
    Ok(())
}

/// `GET /service/info`.
pub fn info(app: &App) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.info))
}

pub fn precondition(req: &Request) -> Precondition {
    Precondition::from_if_match(req.header("if-match"))
}

/// The enrollment schema of the request's `api-version` (≤ 2018-04-01: no default re-provisioning policy).
pub fn schema(req: &Request) -> dps_core::api_version::Schema {
    dps_core::api_version::Schema::of(req.query("api-version"))
}

/// `x-ms-max-item-count` and `x-ms-continuation` (§5.2).
pub fn page_request(req: &Request) -> Result<PageRequest, DpsError> {
    let max_items = match req.header("x-ms-max-item-count") {
        None => DEFAULT_PAGE,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n.min(10_000),
            _ => return Err(DpsError::invalid(format!("x-ms-max-item-count '{}' is not a positive number", v.escape_debug()))),
        },
    };
    let continuation = req.header("x-ms-continuation").map(str::to_owned).filter(|c| !c.is_empty());
    let search = req.query("search").map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    Ok(PageRequest { continuation, max_items, search, filter: Vec::new() })
}

/// A query answer: the items plus `x-ms-item-type`, `x-ms-max-item-count`, `x-dps-total-count` (how many
/// match, an extension) and, when more remain, `x-ms-continuation`.
pub fn page_response<T: Serialize>(page: Page<T>, item_type: &'static str, max_items: usize) -> HttpResponse {
    let mut r = json_response(StatusCode::OK, &page.items);
    let h = r.headers_mut();
    h.insert("x-ms-item-type", HeaderValue::from_static(item_type));
    h.insert("x-ms-max-item-count", HeaderValue::from(max_items));
    h.insert("x-dps-total-count", HeaderValue::from(page.total));
    if let Some(c) = page.continuation.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert("x-ms-continuation", c);
    }
    r
}

/// `GET /service/ca.pem`: the root CA devices and browsers trust (public, like any CA certificate).
pub fn ca_pem(app: &App) -> Result<HttpResponse, DpsError> {
    let pem = std::fs::read(&app.info.ca_certificate).map_err(|e| {
        tracing::error!(error = %e, path = %app.info.ca_certificate, "cannot read the CA certificate");
        DpsError::new(dps_core::ErrorKind::Unavailable, "the CA certificate cannot be read; try again")
    })?;
    let mut r = http::Response::new(http_body_util::BodyExt::boxed(http_body_util::Full::new(bytes::Bytes::from(pem))));
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/x-pem-file"));
    h.insert(http::header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"dps-console-ca.pem\""));
    Ok(r)
}
