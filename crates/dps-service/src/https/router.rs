//! Which operation a request is. Device paths start with the ID scope, service paths with a collection
//! name; collection names match case-insensitively (§0.11), ids arrive percent-decoded.

use dps_core::{DpsError, ErrorKind};
use http::Method;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    // device API (§1.1)
    Register {
        scope: String,
        registration_id: String,
    },
    OperationStatus {
        scope: String,
        registration_id: String,
        operation_id: String,
    },
    StatusLookup {
        scope: String,
        registration_id: String,
    },
    // service API (§5.2)
    GetEnrollment(String),
    PutEnrollment(String),
    DeleteEnrollment(String),
    EnrollmentAttestation(String),
    QueryEnrollments,
    BulkEnrollments,
    GetGroup(String),
    PutGroup(String),
    DeleteGroup(String),
    GroupAttestation(String),
    QueryGroups,
    BulkGroups,
    GetRegistration(String),
    DeleteRegistration(String),
    QueryRegistrations(String),
    // extensions (README "Service API extensions")
    QueryAllRegistrations,
    RegistrationTrace(String),
    /// `POST /registrations/{id}/reprovision`: the device's registration runs again now (the console).
    ReprovisionRegistration(String),
    ListHubs,
    GetHub(String),
    PutHub(String),
    DeleteHub(String),
    HubDevices(String),
    /// `GET /linkedHubs/{host}/status`: one probe of the hub through its connector.
    HubStatus(String),
    /// `GET /diagnostics/allocation`: linked hubs with how many devices each has now.
    Allocation,
    /// `GET /diagnostics/quarantine`: stored rows that could not be read, moved aside.
    Quarantine,
    ServiceInfo,
    /// `GET /service/ca.pem`: the service's root CA (public; no authorization), for devices and browsers.
    CaCertificatePem,
    /// `GET /service/policies`: the shared access policies with their keys.
    Policies,
    /// `GET /service/limits`: the limits profile in force and the `azure` profile's numbers.
    GetLimits,
    /// `PUT /service/limits`: `{ "profile": "default" | "azure" }` (the console's Settings toggle).
    PutLimits,
    ListCas,
    GetCa(String),
    PutCa(String),
    DeleteCa(String),
    CaVerificationCode(String),
    VerifyCa(String),
    InspectCertificates,
    RenewEnrollmentKey(String),
    RenewGroupKey(String),
    /// `GET /metrics`: Prometheus text, unauthenticated like any exporter.
    PrometheusMetrics,
    MetricSeries,
    Logs,
    /// `POST /console/login`: `{ "username": "admin", "password" }` → a session token (no authorization).
    ConsoleLogin,
    ConsoleLogout,
    AdminPassword,
}

fn is(seg: &str, name: &str) -> bool {
    seg.eq_ignore_ascii_case(name)
}

pub fn route(method: &Method, segs: &[String]) -> Result<Route, DpsError> {
    use Route::*;
    let not_allowed = || DpsError::new(ErrorKind::MethodNotAllowed, format!("{method} is not allowed on this resource"));
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.clone();
    let r = match s.as_slice() {
        [c, q] if is(c, "enrollments") && is(q, "query") && m == Method::POST => QueryEnrollments,
        [c, id] if is(c, "enrollments") => match m {
            Method::GET => GetEnrollment(id.to_string()),
            Method::PUT => PutEnrollment(id.to_string()),
            Method::DELETE => DeleteEnrollment(id.to_string()),
            _ => return Err(not_allowed()),
        },
        [c] if is(c, "enrollments") => {
            if m == Method::POST {
                BulkEnrollments
            } else {
                return Err(not_allowed());
            }
        }
        [c, id, a] if is(c, "enrollments") && is(a, "renewKey") => {
            if m == Method::POST {
                RenewEnrollmentKey(id.to_string())
            } else {
                return Err(not_allowed());
            }
        }
        [c, id, a] if is(c, "enrollmentgroups") && is(a, "renewKey") => {
            if m == Method::POST {
                RenewGroupKey(id.to_string())
            } else {
                return Err(not_allowed());
            }
        }
        [c, id, a] if is(c, "enrollments") && is(a, "attestationmechanism") => {
            if m == Method::POST {
                EnrollmentAttestation(id.to_string())
            } else {
                return Err(not_allowed());
            }
        }
        [c, q] if is(c, "enrollmentgroups") && is(q, "query") && m == Method::POST => QueryGroups,
        [c, id] if is(c, "enrollmentgroups") => match m {
            Method::GET => GetGroup(id.to_string()),
            Method::PUT => PutGroup(id.to_string()),
            Method::DELETE => DeleteGroup(id.to_string()),
            _ => return Err(not_allowed()),
        },
        [c] if is(c, "enrollmentgroups") => {
            if m == Method::POST {
                BulkGroups
            } else {
                return Err(not_allowed());
            }
        }
        [c, id, a] if is(c, "enrollmentgroups") && is(a, "attestationmechanism") => {
            if m == Method::POST {
                GroupAttestation(id.to_string())
            } else {
                return Err(not_allowed());
            }
        }
        [c, q] if is(c, "registrations") && is(q, "query") && m == Method::POST => QueryAllRegistrations,
        [c, id] if is(c, "registrations") => match m {
            Method::GET => GetRegistration(id.to_string()),
            Method::DELETE => DeleteRegistration(id.to_string()),
            _ => return Err(not_allowed()),
        },
        [c, g, q] if is(c, "registrations") && is(q, "query") => {
            if m == Method::POST {
                QueryRegistrations(g.to_string())
            } else {
                return Err(not_allowed());
            }
        }
        [c, id, t] if is(c, "registrations") && is(t, "reprovision") => {
            if m == Method::POST {
                ReprovisionRegistration(id.to_string())
            } else {
                return Err(not_allowed());
            }
        }
        [c, id, t] if is(c, "registrations") && is(t, "trace") => {
            if m == Method::GET {
                RegistrationTrace(id.to_string())
            } else {
                return Err(not_allowed());
            }
        }
        [c] if is(c, "linkedhubs") => {
            if m == Method::GET {
                ListHubs
            } else {
                return Err(not_allowed());
            }
        }
        [c, h] if is(c, "linkedhubs") => match m {
            Method::GET => GetHub(h.to_string()),
            Method::PUT => PutHub(h.to_string()),
            Method::DELETE => DeleteHub(h.to_string()),
            _ => return Err(not_allowed()),
        },
        [c, h, d] if is(c, "linkedhubs") && is(d, "status") => {
            if m == Method::GET {
                HubStatus(h.to_string())
            } else {
                return Err(not_allowed());
            }
        }
        [c, h, d] if is(c, "linkedhubs") && is(d, "devices") => {
            if m == Method::GET {
                HubDevices(h.to_string())
            } else {
                return Err(not_allowed());
            }
        }
        [c] if is(c, "certificates") => {
            if m == Method::GET {
                ListCas
            } else {
                return Err(not_allowed());
            }
        }
        [c, i] if is(c, "certificates") && is(i, "inspect") && m == Method::POST => InspectCertificates,
        [c, n] if is(c, "certificates") => match m {
            Method::GET => GetCa(n.to_string()),
            Method::PUT => PutCa(n.to_string()),
            Method::DELETE => DeleteCa(n.to_string()),
            _ => return Err(not_allowed()),
        },
        [c, n, a] if is(c, "certificates") && (is(a, "generateVerificationCode") || is(a, "verify")) => {
            if m != Method::POST {
                return Err(not_allowed());
            }
            if is(a, "verify") {
                VerifyCa(n.to_string())
            } else {
                CaVerificationCode(n.to_string())
            }
        }
        [c] if is(c, "metrics") => {
            if m == Method::GET {
                PrometheusMetrics
            } else {
                return Err(not_allowed());
            }
        }
        [c, a] if is(c, "console") && (is(a, "login") || is(a, "logout")) => {
            if m != Method::POST {
                return Err(not_allowed());
            }
            if is(a, "login") {
                ConsoleLogin
            } else {
                ConsoleLogout
            }
        }
        [c, p] if is(c, "admin") && is(p, "password") => {
            if m == Method::PUT {
                AdminPassword
            } else {
                return Err(not_allowed());
            }
        }
        [c, i] if is(c, "diagnostics") && is(i, "logs") => {
            if m == Method::GET {
                Logs
            } else {
                return Err(not_allowed());
            }
        }
        [c, i] if is(c, "diagnostics") && is(i, "quarantine") => {
            if m == Method::GET {
                Quarantine
            } else {
                return Err(not_allowed());
            }
        }
        [c, i] if is(c, "diagnostics") && is(i, "allocation") => {
            if m == Method::GET {
                Allocation
            } else {
                return Err(not_allowed());
            }
        }
        [c, i] if is(c, "service") && is(i, "ca.pem") => {
            if m == Method::GET {
                CaCertificatePem
            } else {
                return Err(not_allowed());
            }
        }
        [c, i] if is(c, "service") && is(i, "limits") => match m {
            Method::GET => GetLimits,
            Method::PUT => PutLimits,
            _ => return Err(not_allowed()),
        },
        [c, i] if is(c, "service") && is(i, "policies") => {
            if m == Method::GET {
                Policies
            } else {
                return Err(not_allowed());
            }
        }
        [c, i] if is(c, "diagnostics") && is(i, "metrics") => {
            if m == Method::GET {
                MetricSeries
            } else {
                return Err(not_allowed());
            }
        }
        [c, i] if is(c, "service") && is(i, "info") => {
            if m == Method::GET {
                ServiceInfo
            } else {
                return Err(not_allowed());
            }
        }
        [scope, r, id, reg] if is(r, "registrations") && is(reg, "register") => {
            if m == Method::PUT {
                Register { scope: scope.to_string(), registration_id: id.to_string() }
            } else {
                return Err(not_allowed());
            }
        }
        [scope, r, id, o, op] if is(r, "registrations") && is(o, "operations") => {
            if m == Method::GET {
                OperationStatus { scope: scope.to_string(), registration_id: id.to_string(), operation_id: op.to_string() }
            } else {
                return Err(not_allowed());
            }
        }
        [scope, r, id] if is(r, "registrations") => {
            if m == Method::POST {
                StatusLookup { scope: scope.to_string(), registration_id: id.to_string() }
            } else {
                return Err(not_allowed());
            }
        }
        _ => return Err(DpsError::new(ErrorKind::NotFound, "no such resource")),
    };
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(m: Method, p: &str) -> Result<Route, i64> {
        let segs: Vec<String> = p.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        route(&m, &segs).map_err(|e| e.code())
    }

    #[test]
    fn every_documented_path_routes() {
        use Route::*;
        assert_eq!(
            r(Method::PUT, "/0ne00000001/registrations/dev1/register"),
            Ok(Register { scope: "0ne00000001".into(), registration_id: "dev1".into() })
        );
        assert_eq!(
            r(Method::GET, "/0ne00000001/registrations/dev1/operations/4.a.b"),
            Ok(OperationStatus { scope: "0ne00000001".into(), registration_id: "dev1".into(), operation_id: "4.a.b".into() })
        );
        assert_eq!(
            r(Method::POST, "/0ne00000001/registrations/dev1"),
            Ok(StatusLookup { scope: "0ne00000001".into(), registration_id: "dev1".into() })
        );
        assert_eq!(r(Method::GET, "/enrollments/dev1"), Ok(GetEnrollment("dev1".into())));
        assert_eq!(r(Method::GET, "/enrollments/query"), Ok(GetEnrollment("query".into())));
        assert_eq!(r(Method::POST, "/enrollments/query"), Ok(QueryEnrollments));
        assert_eq!(r(Method::POST, "/Enrollments"), Ok(BulkEnrollments));
        assert_eq!(r(Method::POST, "/enrollmentgroups/g1/attestationmechanism"), Ok(GroupAttestation("g1".into())));
        assert_eq!(r(Method::POST, "/enrollmentGroups/g1/attestationMechanism"), Ok(GroupAttestation("g1".into())));
        assert_eq!(r(Method::POST, "/enrollmentGroups/query"), Ok(QueryGroups));
        assert_eq!(r(Method::DELETE, "/enrollmentGroups/g1"), Ok(DeleteGroup("g1".into())));
        assert_eq!(r(Method::POST, "/registrations/g1/query"), Ok(QueryRegistrations("g1".into())));
        assert_eq!(r(Method::DELETE, "/registrations/dev1"), Ok(DeleteRegistration("dev1".into())));
        assert_eq!(r(Method::PUT, "/linkedHubs/hub.example"), Ok(PutHub("hub.example".into())));
        assert_eq!(r(Method::GET, "/certificates"), Ok(ListCas));
        assert_eq!(r(Method::POST, "/certificates/inspect"), Ok(InspectCertificates));
        assert_eq!(r(Method::GET, "/certificates/inspect"), Ok(GetCa("inspect".into())));
        assert_eq!(r(Method::PUT, "/certificates/plant-root"), Ok(PutCa("plant-root".into())));
        assert_eq!(r(Method::POST, "/certificates/plant-root/generateVerificationCode"), Ok(CaVerificationCode("plant-root".into())));
        assert_eq!(r(Method::POST, "/certificates/plant-root/verify"), Ok(VerifyCa("plant-root".into())));
    }

    #[test]
    fn wrong_methods_and_unknown_paths_are_refused() {
        assert_eq!(r(Method::PATCH, "/enrollments/dev1"), Err(405001));
        assert_eq!(r(Method::GET, "/0ne00000001/registrations/dev1/register"), Err(405001));
        assert_eq!(r(Method::GET, "/nothing/here"), Err(404204));
        assert_eq!(r(Method::GET, "/"), Err(404204));
    }
}

/// Drift check: every extension route is documented in `openapi/dps-console-extensions.json`.
#[cfg(test)]
mod openapi_drift {
    #[test]
    fn every_extension_path_is_in_the_openapi_document() {
        let text = include_str!("../../../../openapi/dps-console-extensions.json");
        let spec: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let paths = spec["paths"].as_object().cloned().unwrap_or_default();
        for p in [
            "/linkedHubs",
            "/linkedHubs/{hostName}",
            "/linkedHubs/{hostName}/devices",
            "/linkedHubs/{hostName}/status",
            "/diagnostics/allocation",
            "/diagnostics/quarantine",
            "/service/policies",
            "/service/ca.pem",
            "/certificates",
            "/certificates/{name}",
            "/certificates/{name}/generateVerificationCode",
            "/certificates/{name}/verify",
            "/certificates/inspect",
            "/registrations/query",
            "/registrations/{id}/trace",
            "/registrations/{id}/reprovision",
            "/service/info",
            "/enrollments/{id}/renewKey",
            "/enrollmentGroups/{id}/renewKey",
            "/metrics",
            "/diagnostics/metrics",
            "/diagnostics/logs",
            "/console/login",
            "/console/logout",
            "/admin/password",
            "/service/limits",
        ] {
            assert!(paths.contains_key(p), "{p} is routed but not documented");
        }
        assert_eq!(paths.len(), 26, "the document lists a path the router does not serve");
    }
}
