//! Service (management) API over HTTPS (§5), plus DPS Console's documented extensions (linked hubs,
//! decision traces, the built-in registry, service info). Every route checks the SAS policy right it
//! needs first.

pub mod certificates;
pub mod console;
pub mod enrollment_groups;
pub mod enrollments;
pub mod limits;
pub mod linked_hubs;
pub mod logs;
pub mod policies;
pub mod registrations;

use dps_core::model::{Page, PageRequest, Precondition, Right};
use dps_core::DpsError;
use http::{HeaderValue, StatusCode};
use serde::Serialize;

use super::router::Route;
use super::{json_response, HttpResponse, Request};
use crate::app::App;

/// Default page size of queries without `x-ms-max-item-count`.
pub const DEFAULT_PAGE: usize = 100;

pub async fn handle(app: &App, req: &Request, route: Route) -> Result<HttpResponse, DpsError> {
    use Route::*;
    let right = match &route {
        GetEnrollment(_) | EnrollmentAttestation(_) | QueryEnrollments | GetGroup(_) | GroupAttestation(_) | QueryGroups => {
            Right::EnrollmentRead
        }
        PutEnrollment(_) | DeleteEnrollment(_) | BulkEnrollments | PutGroup(_) | DeleteGroup(_) | BulkGroups => Right::EnrollmentWrite,
        RenewEnrollmentKey(_) | RenewGroupKey(_) => Right::EnrollmentWrite,
        GetRegistration(_) | QueryRegistrations(_) | QueryAllRegistrations | RegistrationTrace(_) => Right::RegistrationStatusRead,
        DeleteRegistration(_) | ReprovisionRegistration(_) => Right::RegistrationStatusWrite,
        ListHubs | GetHub(_) | PutHub(_) | DeleteHub(_) | HubDevices(_) | HubStatus(_) | ServiceInfo | Policies => Right::ServiceConfig,
        ListCas | GetCa(_) | PutCa(_) | DeleteCa(_) | CaVerificationCode(_) | VerifyCa(_) => Right::ServiceConfig,
        InspectCertificates => Right::EnrollmentRead,
        MetricSeries | Logs | AdminPassword | Allocation | Quarantine | GetLimits | PutLimits => Right::ServiceConfig,
        ConsoleLogin | ConsoleLogout => return Err(DpsError::internal("a console route reached the service API")),
        PrometheusMetrics | CaCertificatePem => return Err(DpsError::internal("a public route reached the service API")),
        Register { .. } | OperationStatus { .. } | StatusLookup { .. } => {
            return Err(DpsError::internal("a device route reached the service API"))
        }
    };
    app.authorize(req.header("authorization"), right).await?;
    // The Azure limits profile (`dps_core::limits`): the 96 KB message size, and the service-operation rate for
    // SAS-signed clients (service SDKs, the CLI); the console's own session is not an Azure operation.
    app.limits.check_message(req.body.len())?;
    if !req.header("authorization").is_some_and(|a| a.starts_with("Bearer ")) {
        app.limits.admit_service_operation()?;
    }
    match route {
        GetEnrollment(id) => enrollments::get(app, &id).await,
        PutEnrollment(id) => enrollments::put(app, req, &id).await,
        DeleteEnrollment(id) => enrollments::delete(app, req, &id).await,
        EnrollmentAttestation(id) => enrollments::attestation(app, &id).await,
        QueryEnrollments => enrollments::query(app, req).await,
        BulkEnrollments => enrollments::bulk(app, req).await,
        GetGroup(id) => enrollment_groups::get(app, &id).await,
        PutGroup(id) => enrollment_groups::put(app, req, &id).await,
        DeleteGroup(id) => enrollment_groups::delete(app, req, &id).await,
        GroupAttestation(id) => enrollment_groups::attestation(app, &id).await,
        QueryGroups => enrollment_groups::query(app, req).await,
        BulkGroups => enrollment_groups::bulk(app, req).await,
        GetRegistration(id) => registrations::get(app, &id).await,
        DeleteRegistration(id) => registrations::delete(app, req, &id).await,
        QueryRegistrations(group) => registrations::query(app, req, Some(&group)).await,
        QueryAllRegistrations => registrations::query(app, req, None).await,
        RegistrationTrace(id) => registrations::trace(app, &id).await,
        ReprovisionRegistration(id) => registrations::reprovision(app, &id).await,
        ListHubs => linked_hubs::list(app).await,
        GetHub(h) => linked_hubs::get(app, &h).await,
        PutHub(h) => linked_hubs::put(app, req, &h).await,
        DeleteHub(h) => linked_hubs::delete(app, &h).await,
        HubDevices(h) => linked_hubs::devices(app, &h).await,
        HubStatus(h) => linked_hubs::status(app, &h).await,
        Allocation => linked_hubs::allocation(app).await,
        Quarantine => {
            let rows = app.quarantine.quarantined().await.map_err(|e| {
                tracing::warn!(error = %e, "cannot list the quarantine");
                DpsError::new(dps_core::ErrorKind::Unavailable, "could not read the quarantine; try again")
            })?;
            Ok(json_response(StatusCode::OK, &rows))
        }
        Policies => policies::list(app).await,
        GetLimits => limits::get(app),
        PutLimits => limits::put(app, req).await,
        ServiceInfo => Ok(json_response(StatusCode::OK, &app.info)),
        ListCas => certificates::list(app).await,
        GetCa(n) => certificates::get(app, &n).await,
        PutCa(n) => certificates::put(app, req, &n).await,
        DeleteCa(n) => certificates::delete(app, req, &n).await,
        CaVerificationCode(n) => certificates::generate_verification_code(app, &n).await,
        VerifyCa(n) => certificates::verify(app, req, &n).await,
        InspectCertificates => certificates::inspect(app, req),
        RenewEnrollmentKey(id) => enrollments::renew_key(app, req, &id, false).await,
        RenewGroupKey(id) => enrollments::renew_key(app, req, &id, true).await,
        MetricSeries => {
            let minutes = req.query("minutes").and_then(|m| m.parse::<u32>().ok()).unwrap_or(60);
            Ok(json_response(StatusCode::OK, &app.metrics.series(minutes)))
        }
        Logs => logs::handle(app, req),
        AdminPassword => console::set_password(app, req).await,
        ConsoleLogin | ConsoleLogout => Err(DpsError::internal("unreachable")),
        PrometheusMetrics | CaCertificatePem => Err(DpsError::internal("unreachable")),
        Register { .. } | OperationStatus { .. } | StatusLookup { .. } => Err(DpsError::internal("unreachable")),
    }
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
