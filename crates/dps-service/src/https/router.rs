//! Which route a request is: the rows of [`ROUTES`](super::routes::ROUTES) matched against the method and the
//! path. Device paths start with the ID scope, service paths with a collection name; literal segments match
//! case-insensitively (§0.11), ids arrive percent-decoded.
//!
//! A row answers when its path and method both match; the first such row wins (the table never has two).
//! A path some row knows under another method is refused with 405, any other with 404. The device API's first
//! segment is an ID scope, which could be any word: a path that a service-side row knows (under any method) is
//! never read as a device path.

use std::future::Future;
use std::pin::Pin;

use dps_core::model::Right;
use dps_core::{DpsError, ErrorKind};
use http::Method;

use super::{HttpResponse, Request};
use crate::app::App;

/// Who may call a route; with it, which listener serves it and what is checked before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The device API (§1): the HTTPS port only, 96 KB bodies; the handler attests the device itself.
    Device,
    /// The service API (§5.1): a shared access policy (SAS) or a console session with this right, checked
    /// first, then the limits profile's message size and service-operation rate.
    Right(Right),
    /// No authorization: the console's sign-in and sign-out (they check what they need), the Prometheus
    /// exporter, the service's public CA certificate.
    Open,
}

/// Where a route is documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doc {
    /// Azure's own APIs: the device API (§1) and the service API (§5.2).
    Azure,
    /// DPS Console's extensions, in `openapi/dps-console-extensions.json` (its drift test reads this table).
    Extension,
}

/// A handler's future: it borrows the service, the request and the path's parameters.
pub type Answer<'a> = Pin<Box<dyn Future<Output = Result<HttpResponse, DpsError>> + Send + 'a>>;
/// A route's handler (each calls into the route's own file under `device/` or `service/`).
pub type Handler = for<'a> fn(&'a App, &'a Request, &'a Params) -> Answer<'a>;

/// One route: method, path pattern (`{name}` is a parameter, anything else a literal), access, documentation
/// and handler.
pub struct Row {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub doc: Doc,
    pub handler: Handler,
}

impl Row {
    pub const fn new(method: Method, path: &'static str, access: Access, doc: Doc, handler: Handler) -> Row {
        Row { method, path, access, doc, handler }
    }

    /// The pattern's segments.
    fn pattern(&self) -> impl Iterator<Item = &'static str> {
        self.path.split('/').filter(|s| !s.is_empty())
    }

    /// The parameters when `segs` has this row's shape.
    fn capture(&self, segs: &[String]) -> Option<Params> {
        if self.pattern().count() != segs.len() {
            return None;
        }
        let mut params = Vec::new();
        for (p, s) in self.pattern().zip(segs) {
            match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => params.push((name, s.clone())),
                None if p.eq_ignore_ascii_case(s) => {}
                None => return None,
            }
        }
        Some(Params(params))
    }
}

/// The path's parameters, by the names the row's pattern gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    /// The parameter `name`. A handler asking for a name its row's pattern does not have is a mistake in the
    /// table: debug builds (the tests) stop there; release builds answer with an empty value.
    pub fn get(&self, name: &str) -> &str {
        let value = self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        debug_assert!(value.is_some(), "the route has no parameter {{{name}}}");
        value.unwrap_or_default()
    }
}

/// The row of `routes` that answers `method` on the path `segs`, with the path's parameters.
pub fn route_in<'r>(routes: &'r [Row], method: &Method, segs: &[String]) -> Result<(&'r Row, Params), DpsError> {
    let mut known = false;
    let service_side = routes.iter().filter(|r| r.access != Access::Device);
    let device_side = routes.iter().filter(|r| r.access == Access::Device);
    for row in service_side.chain(device_side) {
        if known && row.access == Access::Device {
            break;
        }
        if let Some(params) = row.capture(segs) {
            if row.method == method {
                return Ok((row, params));
            }
            known = true;
        }
    }
    Err(if known {
        DpsError::new(ErrorKind::MethodNotAllowed, format!("{method} is not allowed on this resource"))
    } else {
        DpsError::new(ErrorKind::NotFound, "no such resource")
    })
}

/// The route of a request: [`route_in`] over the service's table.
pub fn route(method: &Method, segs: &[String]) -> Result<(&'static Row, Params), DpsError> {
    route_in(super::routes::ROUTES, method, segs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::https::routes::ROUTES;

    fn segs(p: &str) -> Vec<String> {
        p.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    /// The row's method and pattern with its parameters, or the refusal's code.
    type Routed = Result<(String, Vec<(&'static str, String)>), i64>;

    fn r(m: Method, p: &str) -> Routed {
        route(&m, &segs(p)).map(|(row, params)| (format!("{} {}", row.method, row.path), params.0)).map_err(|e| e.code())
    }

    fn ok(row: &str, params: &[(&'static str, &str)]) -> Routed {
        Ok((row.to_owned(), params.iter().map(|(n, v)| (*n, (*v).to_owned())).collect()))
    }

    #[test]
    fn every_documented_path_routes() {
        let scope = "0ne00000001";
        assert_eq!(
            r(Method::PUT, "/0ne00000001/registrations/dev1/register"),
            ok("PUT /{idScope}/registrations/{registrationId}/register", &[("idScope", scope), ("registrationId", "dev1")])
        );
        assert_eq!(
            r(Method::GET, "/0ne00000001/registrations/dev1/operations/4.a.b"),
            ok(
                "GET /{idScope}/registrations/{registrationId}/operations/{operationId}",
                &[("idScope", scope), ("registrationId", "dev1"), ("operationId", "4.a.b")]
            )
        );
        assert_eq!(
            r(Method::POST, "/0ne00000001/registrations/dev1"),
            ok("POST /{idScope}/registrations/{registrationId}", &[("idScope", scope), ("registrationId", "dev1")])
        );
        assert_eq!(r(Method::GET, "/enrollments/dev1"), ok("GET /enrollments/{id}", &[("id", "dev1")]));
        assert_eq!(r(Method::GET, "/enrollments/query"), ok("GET /enrollments/{id}", &[("id", "query")]));
        assert_eq!(r(Method::POST, "/enrollments/query"), ok("POST /enrollments/query", &[]));
        assert_eq!(r(Method::POST, "/Enrollments"), ok("POST /enrollments", &[]));
        assert_eq!(
            r(Method::POST, "/enrollmentgroups/g1/attestationmechanism"),
            ok("POST /enrollmentGroups/{id}/attestationmechanism", &[("id", "g1")])
        );
        assert_eq!(
            r(Method::POST, "/enrollmentGroups/g1/attestationMechanism"),
            ok("POST /enrollmentGroups/{id}/attestationmechanism", &[("id", "g1")])
        );
        assert_eq!(r(Method::POST, "/enrollmentGroups/query"), ok("POST /enrollmentGroups/query", &[]));
        assert_eq!(r(Method::DELETE, "/enrollmentGroups/g1"), ok("DELETE /enrollmentGroups/{id}", &[("id", "g1")]));
        assert_eq!(r(Method::POST, "/registrations/g1/query"), ok("POST /registrations/{id}/query", &[("id", "g1")]));
        assert_eq!(r(Method::DELETE, "/registrations/dev1"), ok("DELETE /registrations/{id}", &[("id", "dev1")]));
        assert_eq!(r(Method::PUT, "/linkedHubs/hub.example"), ok("PUT /linkedHubs/{hostName}", &[("hostName", "hub.example")]));
        assert_eq!(r(Method::GET, "/certificates"), ok("GET /certificates", &[]));
        assert_eq!(r(Method::POST, "/certificates/inspect"), ok("POST /certificates/inspect", &[]));
        assert_eq!(r(Method::GET, "/certificates/inspect"), ok("GET /certificates/{name}", &[("name", "inspect")]));
        assert_eq!(r(Method::PUT, "/certificates/plant-root"), ok("PUT /certificates/{name}", &[("name", "plant-root")]));
        assert_eq!(
            r(Method::POST, "/certificates/plant-root/generateVerificationCode"),
            ok("POST /certificates/{name}/generateVerificationCode", &[("name", "plant-root")])
        );
        assert_eq!(r(Method::POST, "/certificates/plant-root/verify"), ok("POST /certificates/{name}/verify", &[("name", "plant-root")]));
    }

    #[test]
    fn wrong_methods_and_unknown_paths_are_refused() {
        assert_eq!(r(Method::PATCH, "/enrollments/dev1"), Err(405001));
        assert_eq!(r(Method::PATCH, "/enrollments/query"), Err(405001));
        assert_eq!(r(Method::GET, "/0ne00000001/registrations/dev1/register"), Err(405001));
        assert_eq!(r(Method::GET, "/nothing/here"), Err(404204));
        assert_eq!(r(Method::GET, "/"), Err(404204));
    }

    #[test]
    fn a_service_path_is_never_a_device_path() {
        // `linkedHubs/registrations/status` has the device status look-up's shape; the service API knows it.
        assert_eq!(r(Method::POST, "/linkedHubs/registrations/status"), Err(405001));
        assert_eq!(r(Method::POST, "/registrations/registrations/trace"), Err(405001));
        assert_eq!(r(Method::POST, "/registrations/registrations/query"), ok("POST /registrations/{id}/query", &[("id", "registrations")]));
    }

    /// A path built from each row's own pattern reaches that row: no row is hidden by another.
    #[test]
    fn every_row_is_reachable_by_its_own_pattern() {
        for row in ROUTES {
            let sample: Vec<String> = row.pattern().map(|p| p.trim_start_matches('{').trim_end_matches('}').to_owned()).collect();
            let (found, params) = route(&row.method, &sample).unwrap_or_else(|e| panic!("{} {}: {e}", row.method, row.path));
            assert!(std::ptr::eq(found, row), "{} {} is answered by {} {}", row.method, row.path, found.method, found.path);
            for (name, value) in &params.0 {
                assert_eq!(name, value, "{} {}", row.method, row.path);
            }
        }
    }

    #[test]
    fn no_two_rows_share_a_method_and_pattern() {
        let mut seen = std::collections::HashSet::new();
        for row in ROUTES {
            assert!(seen.insert((row.method.clone(), row.path.to_ascii_lowercase())), "{} {} twice", row.method, row.path);
        }
    }
}
