//! Every route of the HTTPS listeners, once: method, path, who may call it, where it is documented, and its
//! handler. The router matches these rows ([`super::router`]), the listeners serve a row by its [`Access`]
//! (device rows on the HTTPS port only; a right is checked before the handler runs), and the OpenAPI drift test
//! below reads the [`Doc::Extension`] rows.

use dps_core::model::Right::{EnrollmentRead, EnrollmentWrite, RegistrationStatusRead, RegistrationStatusWrite, ServiceConfig};
use http::Method;

use super::router::Access::{Device, Open, Right};
use super::router::Doc::{Azure, Extension};
use super::router::{Answer, Row};
use super::service::{
    certificates, console, credential_policies, demo_webhook, diagnostics, enrollments, keys, limits, linked_hubs, logs, policies,
    registrations, scenarios, simulation_cleanup, simulations,
};
use super::{device, service, HttpResponse};
use dps_core::DpsError;
use dps_proto::{EnrollmentGroup as Group, IndividualEnrollment as Individual};

const GET: Method = Method::GET;
const PUT: Method = Method::PUT;
const POST: Method = Method::POST;
const DELETE: Method = Method::DELETE;

/// A handler that answers without waiting.
fn now(answer: Result<HttpResponse, DpsError>) -> Answer<'static> {
    Box::pin(std::future::ready(answer))
}

#[rustfmt::skip]
pub static ROUTES: &[Row] = &[
    // device API (§1.1)
    Row::new(PUT, "/{idScope}/registrations/{registrationId}/register", Device, Azure,
        |a, r, p| Box::pin(device::register::handle(a, r, p.get("idScope"), p.get("registrationId")))),
    Row::new(GET, "/{idScope}/registrations/{registrationId}/operations/{operationId}", Device, Azure,
        |a, r, p| Box::pin(device::operation_status::handle(a, r, p.get("idScope"), p.get("registrationId"), p.get("operationId")))),
    Row::new(POST, "/{idScope}/registrations/{registrationId}", Device, Azure,
        |a, r, p| Box::pin(device::status_lookup::handle(a, r, p.get("idScope"), p.get("registrationId")))),

    // service API (§5.2): individual enrollments
    Row::new(POST, "/enrollments/query", Right(EnrollmentRead), Azure, |a, r, _| Box::pin(enrollments::query::<Individual>(a, r))),
    Row::new(GET, "/enrollments/{id}", Right(EnrollmentRead), Azure, |a, _, p| Box::pin(enrollments::get::<Individual>(a, p.get("id")))),
    Row::new(PUT, "/enrollments/{id}", Right(EnrollmentWrite), Azure, |a, r, p| Box::pin(enrollments::put::<Individual>(a, r, p.get("id")))),
    Row::new(DELETE, "/enrollments/{id}", Right(EnrollmentWrite), Azure, |a, r, p| Box::pin(enrollments::delete::<Individual>(a, r, p.get("id")))),
    Row::new(POST, "/enrollments", Right(EnrollmentWrite), Azure, |a, r, _| Box::pin(enrollments::bulk::<Individual>(a, r))),
    Row::new(POST, "/enrollments/{id}/attestationmechanism", Right(EnrollmentRead), Azure,
        |a, _, p| Box::pin(enrollments::attestation::<Individual>(a, p.get("id")))),
    Row::new(POST, "/enrollments/{id}/renewKey", Right(EnrollmentWrite), Extension,
        |a, r, p| Box::pin(enrollments::renew_key::<Individual>(a, r, p.get("id")))),

    // enrollment groups
    Row::new(POST, "/enrollmentGroups/query", Right(EnrollmentRead), Azure, |a, r, _| Box::pin(enrollments::query::<Group>(a, r))),
    Row::new(GET, "/enrollmentGroups/{id}", Right(EnrollmentRead), Azure, |a, _, p| Box::pin(enrollments::get::<Group>(a, p.get("id")))),
    Row::new(PUT, "/enrollmentGroups/{id}", Right(EnrollmentWrite), Azure,
        |a, r, p| Box::pin(enrollments::put::<Group>(a, r, p.get("id")))),
    Row::new(DELETE, "/enrollmentGroups/{id}", Right(EnrollmentWrite), Azure,
        |a, r, p| Box::pin(enrollments::delete::<Group>(a, r, p.get("id")))),
    Row::new(POST, "/enrollmentGroups", Right(EnrollmentWrite), Azure, |a, r, _| Box::pin(enrollments::bulk::<Group>(a, r))),
    Row::new(POST, "/enrollmentGroups/{id}/attestationmechanism", Right(EnrollmentRead), Azure,
        |a, _, p| Box::pin(enrollments::attestation::<Group>(a, p.get("id")))),
    Row::new(POST, "/enrollmentGroups/{id}/renewKey", Right(EnrollmentWrite), Extension,
        |a, r, p| Box::pin(enrollments::renew_key::<Group>(a, r, p.get("id")))),

    // registration records
    Row::new(POST, "/registrations/query", Right(RegistrationStatusRead), Extension,
        |a, r, _| Box::pin(registrations::query(a, r, None))),
    Row::new(GET, "/registrations/{id}", Right(RegistrationStatusRead), Azure, |a, _, p| Box::pin(registrations::get(a, p.get("id")))),
    Row::new(DELETE, "/registrations/{id}", Right(RegistrationStatusWrite), Azure,
        |a, r, p| Box::pin(registrations::delete(a, r, p.get("id")))),
    Row::new(POST, "/registrations/{id}/query", Right(RegistrationStatusRead), Azure,
        |a, r, p| Box::pin(registrations::query(a, r, Some(p.get("id"))))),
    Row::new(POST, "/registrations/{id}/reprovision", Right(RegistrationStatusWrite), Extension,
        |a, _, p| Box::pin(registrations::reprovision(a, p.get("id")))),
    Row::new(GET, "/registrations/{id}/trace", Right(RegistrationStatusRead), Extension,
        |a, _, p| Box::pin(registrations::trace(a, p.get("id")))),

    // linked hubs
    Row::new(GET, "/linkedHubs", Right(ServiceConfig), Extension, |a, _, _| Box::pin(linked_hubs::list(a))),
    Row::new(GET, "/linkedHubs/{hostName}", Right(ServiceConfig), Extension, |a, _, p| Box::pin(linked_hubs::get(a, p.get("hostName")))),
    Row::new(PUT, "/linkedHubs/{hostName}", Right(ServiceConfig), Extension,
        |a, r, p| Box::pin(linked_hubs::put(a, r, p.get("hostName")))),
    Row::new(DELETE, "/linkedHubs/{hostName}", Right(ServiceConfig), Extension,
        |a, _, p| Box::pin(linked_hubs::delete(a, p.get("hostName")))),
    Row::new(GET, "/linkedHubs/{hostName}/status", Right(ServiceConfig), Extension,
        |a, _, p| Box::pin(linked_hubs::status(a, p.get("hostName")))),
    Row::new(GET, "/linkedHubs/{hostName}/devices", Right(ServiceConfig), Extension,
        |a, _, p| Box::pin(linked_hubs::devices(a, p.get("hostName")))),
    Row::new(DELETE, "/linkedHubs/{hostName}/devices/{deviceId}", Right(ServiceConfig), Extension,
        |a, _, p| Box::pin(linked_hubs::delete_device(a, p.get("hostName"), p.get("deviceId")))),

    // CA certificates and the chain inspector
    Row::new(GET, "/certificates", Right(ServiceConfig), Extension, |a, _, _| Box::pin(certificates::list(a))),
    Row::new(POST, "/certificates/inspect", Right(EnrollmentRead), Extension, |a, r, _| now(certificates::inspect(a, r))),
    Row::new(GET, "/certificates/{name}", Right(ServiceConfig), Extension, |a, _, p| Box::pin(certificates::get(a, p.get("name")))),
    Row::new(PUT, "/certificates/{name}", Right(ServiceConfig), Extension, |a, r, p| Box::pin(certificates::put(a, r, p.get("name")))),
    Row::new(DELETE, "/certificates/{name}", Right(ServiceConfig), Extension,
        |a, r, p| Box::pin(certificates::delete(a, r, p.get("name")))),
    Row::new(POST, "/certificates/{name}/generateVerificationCode", Right(ServiceConfig), Extension,
        |a, _, p| Box::pin(certificates::generate_verification_code(a, p.get("name")))),
    Row::new(POST, "/certificates/{name}/verify", Right(ServiceConfig), Extension,
        |a, r, p| Box::pin(certificates::verify(a, r, p.get("name")))),

    // certificates issued from devices' CSRs
    Row::new(GET, "/credentialPolicies", Right(ServiceConfig), Extension, |a, _, _| Box::pin(credential_policies::list(a))),
    Row::new(GET, "/credentialPolicies/{name}", Right(ServiceConfig), Extension,
        |a, _, p| Box::pin(credential_policies::get(a, p.get("name")))),
    Row::new(PUT, "/credentialPolicies/{name}", Right(ServiceConfig), Extension,
        |a, r, p| Box::pin(credential_policies::put(a, r, p.get("name")))),
    Row::new(DELETE, "/credentialPolicies/{name}", Right(ServiceConfig), Extension,
        |a, r, p| Box::pin(credential_policies::delete(a, r, p.get("name")))),
    Row::new(GET, "/issuedCertificates", Right(RegistrationStatusRead), Extension, |a, r, _| Box::pin(credential_policies::issued(a, r))),

    // simulated devices (the console's Simulate page)
    Row::new(GET, "/demo/allocationWebhook", Right(ServiceConfig), Extension, |a, _, _| Box::pin(demo_webhook::url(a))),
    Row::new(POST, "/demo/allocationWebhook", Open, Extension, |a, r, _| Box::pin(demo_webhook::call(a, r))),
    Row::new(GET, "/simulations", Right(EnrollmentRead), Extension, |a, _, _| Box::pin(simulations::list(a))),
    Row::new(POST, "/simulations", Right(EnrollmentWrite), Extension, |a, r, _| Box::pin(simulations::start(a, r))),
    Row::new(GET, "/scenarios", Right(EnrollmentRead), Extension, |a, _, _| Box::pin(scenarios::list(a))),
    Row::new(POST, "/scenarios", Right(ServiceConfig), Extension, |a, r, _| Box::pin(scenarios::upload(a, r))),
    Row::new(DELETE, "/scenarios/{name}", Right(ServiceConfig), Extension, |a, _, p| Box::pin(scenarios::delete(a, p.get("name")))),
    Row::new(GET, "/scenarios/{name}", Right(EnrollmentRead), Extension, |a, _, p| Box::pin(scenarios::get(a, p.get("name")))),
    Row::new(POST, "/scenarios/{name}/run", Right(ServiceConfig), Extension, |a, _, p| Box::pin(scenarios::run(a, p.get("name")))),
    Row::new(POST, "/scenarios/{name}/reset", Right(ServiceConfig), Extension,
        |a, _, p| Box::pin(scenarios::reset(a, p.get("name")))),
    Row::new(GET, "/simulations/{id}", Right(EnrollmentRead), Extension, |a, r, p| Box::pin(simulations::get(a, r, p.get("id")))),
    Row::new(DELETE, "/simulations/{id}", Right(EnrollmentWrite), Extension, |a, _, p| Box::pin(simulations::delete(a, p.get("id")))),
    Row::new(POST, "/simulations/{id}/cleanUp", Right(EnrollmentWrite), Extension,
        |a, _, p| Box::pin(simulation_cleanup::clean_up(a, p.get("id")))),
    Row::new(POST, "/simulations/{id}/continue", Right(EnrollmentWrite), Extension,
        |a, r, p| Box::pin(simulations::resume(a, r, p.get("id"), None))),
    Row::new(GET, "/simulations/{id}/devices/{registrationId}", Right(EnrollmentRead), Extension,
        |a, _, p| Box::pin(simulations::device(a, p.get("id"), p.get("registrationId")))),
    Row::new(POST, "/simulations/{id}/devices/{registrationId}/continue", Right(EnrollmentWrite), Extension,
        |a, r, p| Box::pin(simulations::resume(a, r, p.get("id"), Some(p.get("registrationId"))))),

    // the service itself
    Row::new(GET, "/service/info", Right(ServiceConfig), Extension, |a, _, _| now(service::info(a))),
    Row::new(GET, "/service/ca.pem", Open, Extension, |a, _, _| now(service::ca_pem(a))),
    Row::new(GET, "/service/policies", Right(ServiceConfig), Extension, |a, _, _| Box::pin(policies::list(a))),
    Row::new(GET, "/service/limits", Right(ServiceConfig), Extension, |a, _, _| now(limits::get(a))),
    Row::new(PUT, "/service/limits", Right(ServiceConfig), Extension, |a, r, _| Box::pin(limits::put(a, r))),
    Row::new(POST, "/service/keys/rotate", Right(ServiceConfig), Extension, |a, _, _| Box::pin(keys::rotate(a))),

    // diagnostics
    Row::new(GET, "/metrics", Open, Extension, |a, r, _| now(diagnostics::prometheus(a, r))),
    Row::new(GET, "/health", Open, Extension, |a, _, _| Box::pin(diagnostics::health(a))),
    Row::new(GET, "/diagnostics/metrics", Right(ServiceConfig), Extension, |a, r, _| now(diagnostics::metric_series(a, r))),
    Row::new(GET, "/diagnostics/logs", Right(ServiceConfig), Extension, |a, r, _| now(logs::handle(a, r))),
    Row::new(GET, "/diagnostics/allocation", Right(ServiceConfig), Extension, |a, _, _| Box::pin(linked_hubs::allocation(a))),
    Row::new(GET, "/diagnostics/quarantine", Right(ServiceConfig), Extension, |a, _, _| Box::pin(diagnostics::quarantine(a))),

    // the console's account
    Row::new(POST, "/console/login", Open, Extension, |a, r, _| Box::pin(console::login(a, r))),
    Row::new(POST, "/console/logout", Open, Extension, |a, r, _| Box::pin(console::logout(a, r))),
    Row::new(PUT, "/admin/password", Right(ServiceConfig), Extension, |a, r, _| Box::pin(console::set_password(a, r))),
];

/// Drift check: the extension rows and `openapi/dps-console-extensions.json` name the same paths and methods.
#[cfg(test)]
mod openapi_drift {
    use std::collections::BTreeSet;

    use super::{Extension, ROUTES};

    fn documented() -> BTreeSet<(String, String)> {
        let text = include_str!("../../../../openapi/dps-console-extensions.json");
        let spec: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("the OpenAPI document is not JSON: {e}"));
        let paths = spec["paths"].as_object().unwrap_or_else(|| panic!("the OpenAPI document has no paths"));
        let methods = ["get", "put", "post", "delete", "patch", "head", "options"];
        paths
            .iter()
            .flat_map(|(path, item)| {
                let item = item.as_object().cloned().unwrap_or_default();
                methods.into_iter().filter(move |m| item.contains_key(*m)).map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect()
    }

    #[test]
    fn every_extension_route_is_in_the_openapi_document_and_nothing_else() {
        let routed: BTreeSet<(String, String)> =
            ROUTES.iter().filter(|r| r.doc == Extension).map(|r| (r.method.to_string(), r.path.to_owned())).collect();
        let documented = documented();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        assert!(undocumented.is_empty(), "routed but not documented: {undocumented:?}");
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(unrouted.is_empty(), "documented but not routed as an extension: {unrouted:?}");
    }
}
