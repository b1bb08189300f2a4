//! Cross-site requests to the console port are refused (403001) before they are routed.
//!
//! The console signs in with a Bearer token that the page keeps in `sessionStorage` and sends in
//! `Authorization` — there is no cookie, so a browser never attaches the console's credentials to a request
//! another site makes. What another site can still make a visitor's browser send are requests without
//! credentials: sign-in guesses (each one costs argon2 work), a sign-in with the attacker's password (login
//! CSRF), WebSocket upgrades (which browsers send to any origin). So, on the console port:
//! - a request whose `Origin` is not the console's own is refused. Own: the origin the browser addressed
//!   (`https://` + its `Host`), or one of the service's names (`host`, `extra_host_names`, …) on the console
//!   port. `Origin: null` (sandboxed frames, local files) is foreign;
//! - without `Origin`, a `Sec-Fetch-Site` other than `same-origin` or `none` (a browser's cross-site fetch) is
//!   refused;
//! - a state-changing request (POST, PUT, PATCH, DELETE) with a body must say `Content-Type: application/json`
//!   (or `…+json`): `text/plain`, forms and no type at all are what a page can send without a CORS preflight.
//!
//! Requests with neither `Origin` nor `Sec-Fetch-Site` (the CLI, the SDKs, curl) pass: they authenticate with
//! a SAS token or a Bearer header that no page of another site has. The console's files (GET of a file) are
//! public and served before this check, so a link from another site still opens the console.

use dps_core::{DpsError, ErrorKind};
use http::{HeaderMap, Method};

/// What a request shows of where it comes from.
pub struct Request<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// The authority the client addressed (HTTP/2 `:authority`, else `Host`).
    pub authority: Option<&'a str>,
    /// Whether a body follows the headers.
    pub has_body: bool,
}

/// The console's own origins: the service's names on the console port.
pub struct Own<'a> {
    pub host_names: &'a [String],
    pub port: u16,
}

fn refused(why: &str) -> DpsError {
    DpsError::new(ErrorKind::CrossSite, format!("cross-site request refused: {why}"))
}

/// Refuses a cross-site request (see the module documentation).
pub fn check(req: &Request<'_>, own: &Own<'_>) -> Result<(), DpsError> {
    let header = |name: http::header::HeaderName| req.headers.get(name).map(|v| v.to_str().unwrap_or_default());
    match header(http::header::ORIGIN) {
        Some(origin) if !is_own(origin, req.authority, own) => {
            return Err(refused("the Origin is not the console's own; open the console at its own address"))
        }
        Some(_) => {}
        None => {
            let site = req.headers.get("sec-fetch-site").map(|v| v.to_str().unwrap_or_default().to_ascii_lowercase());
            if site.is_some_and(|s| s != "same-origin" && s != "none") {
                return Err(refused("the browser says another site sent it (Sec-Fetch-Site)"));
            }
        }
    }
    let changes = matches!(*req.method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    if changes && req.has_body && !header(http::header::CONTENT_TYPE).is_some_and(is_json) {
        return Err(refused("a request body on the console port must be JSON (Content-Type: application/json)"));
    }
    Ok(())
}

/// `application/json`, `application/…+json`, with any parameters.
fn is_json(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Whether `origin` (`https://host[:port]`) is the console's: the authority addressed, or a service name on
/// the console port.
fn is_own(origin: &str, authority: Option<&str>, own: &Own<'_>) -> bool {
    let Some(origin_authority) = origin.strip_prefix("https://").filter(|a| !a.is_empty() && !a.contains('/')) else {
        return false;
    };
    if authority.is_some_and(|a| a.eq_ignore_ascii_case(origin_authority)) {
        return true;
    }
    let (host, port) = split_authority(origin_authority);
    port == Some(own.port) && own.host_names.iter().any(|n| n.trim_start_matches('[').trim_end_matches(']').eq_ignore_ascii_case(host))
}

/// `host[:port]` or `[v6][:port]` → (host without brackets, port; 443 when absent).
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (rest, None),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    (host, port.map_or(Some(443), |p| p.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    fn verdict(method: Method, pairs: &[(&'static str, &'static str)], has_body: bool) -> Option<i64> {
        let names = vec!["dps.example".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        let h = headers(pairs);
        let req = Request { method: &method, headers: &h, authority: Some("127.0.0.1:8443"), has_body };
        check(&req, &Own { host_names: &names, port: 8443 }).err().map(|e| e.code())
    }

    #[test]
    fn origins() {
        let json = ("content-type", "application/json");
        for own in ["https://127.0.0.1:8443", "https://DPS.example:8443", "https://[::1]:8443"] {
            let h = [("origin", own), json];
            assert_eq!(verdict(Method::POST, &h, true), None, "{own}");
        }
        for foreign in ["https://evil.example", "https://dps.example", "http://127.0.0.1:8443", "null", "https://127.0.0.1:9443", ""] {
            let h = [("origin", foreign), json];
            assert_eq!(verdict(Method::POST, &h, true), Some(403001), "{foreign}");
            assert_eq!(verdict(Method::GET, &[("origin", foreign)], false), Some(403001), "{foreign}");
        }
    }

    #[test]
    fn fetch_metadata_without_origin() {
        assert_eq!(verdict(Method::GET, &[("sec-fetch-site", "cross-site")], false), Some(403001));
        assert_eq!(verdict(Method::GET, &[("sec-fetch-site", "same-site")], false), Some(403001));
        assert_eq!(verdict(Method::GET, &[("sec-fetch-site", "same-origin")], false), None);
        assert_eq!(verdict(Method::GET, &[("sec-fetch-site", "none")], false), None);
        assert_eq!(verdict(Method::GET, &[], false), None, "the CLI and SDKs send neither");
    }

    #[test]
    fn bodies_must_be_json() {
        for ct in ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"] {
            assert_eq!(verdict(Method::PUT, &[("content-type", ct)], true), None, "{ct}");
        }
        for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/json+x"] {
            assert_eq!(verdict(Method::POST, &[("content-type", ct)], true), Some(403001), "{ct}");
        }
        assert_eq!(verdict(Method::POST, &[], true), Some(403001), "no type at all");
        assert_eq!(verdict(Method::POST, &[("content-type", "text/plain")], false), None, "no body");
        assert_eq!(verdict(Method::GET, &[("content-type", "text/plain")], true), None, "not state-changing");
    }
}
