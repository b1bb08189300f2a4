//! The one mapping from domain errors to HTTP answers (§1.8): status, `ProvisioningServiceErrorDetails`
//! body, `x-ms-error-code`, and `retry-after` for transient errors. Internals were logged where they
//! happened; only the public message leaves.

use dps_core::{DpsError, ErrorKind};
use dps_proto::ProvisioningServiceErrorDetails;
use http::{HeaderValue, StatusCode};

use super::json_response;

/// The HTTP status of each error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest
        | ErrorKind::InvalidArgument
        | ErrorKind::CertificateRequestInvalid
        | ErrorKind::CredentialPolicyMissing
        | ErrorKind::CustomAllocationFailed
        | ErrorKind::CustomAllocationIotHubNotSpecified
        | ErrorKind::CustomAllocationUnauthorizedAccess => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized | ErrorKind::Forbidden => StatusCode::UNAUTHORIZED,
        ErrorKind::RegistrationNotFound | ErrorKind::EnrollmentNotFound | ErrorKind::OperationNotFound | ErrorKind::NotFound => {
            StatusCode::NOT_FOUND
        }
        ErrorKind::CrossSite | ErrorKind::QuotaExceeded => StatusCode::FORBIDDEN,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Conflict | ErrorKind::ConcurrentRegistration => StatusCode::CONFLICT,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::Throttled => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The error body every transport sends.
pub fn details(e: &DpsError, tracking_id: &str, now: chrono::DateTime<chrono::Utc>) -> ProvisioningServiceErrorDetails {
    ProvisioningServiceErrorDetails {
        error_code: e.code(),
        tracking_id: tracking_id.to_owned(),
        message: e.message.clone(),
        timestamp_utc: dps_proto::format_time(&now),
        info: None,
    }
}

pub fn error_response(e: &DpsError, tracking_id: &str, now: chrono::DateTime<chrono::Utc>) -> super::HttpResponse {
    let mut r = json_response(status_of(e.kind), &details(e, tracking_id, now));
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&e.code().to_string()) {
        h.insert("x-ms-error-code", v);
    }
    if let Some(s) = e.retry_after {
        h.insert("retry-after", HeaderValue::from(s));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_the_status_its_code_names() {
        for k in ErrorKind::ALL {
            assert_eq!(i64::from(status_of(k).as_u16()), k.code() / 1000, "{k:?}");
        }
    }

    #[test]
    fn error_bodies_have_every_documented_member() {
        let e = DpsError::new(ErrorKind::Throttled, "slow down");
        let r = error_response(&e, "t-1", chrono::DateTime::UNIX_EPOCH);
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("3"));
        assert_eq!(r.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()), Some("429001"));
    }
}
