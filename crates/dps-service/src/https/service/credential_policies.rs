//! `/credentialPolicies…` and `/issuedCertificates` (extension): the credential policies an enrollment's
//! `credentialPolicyName` names (the issuing CA — local or uploaded with its key —, validity, key types) and the
//! log of certificates issued from devices' CSRs. A policy's private key is write only: never answered.

use dps_core::DpsError;
use dps_proto::CredentialPolicy;
use http::StatusCode;

use super::precondition;
use crate::app::App;
use crate::https::{empty_response, json_response, HttpResponse, Request};

/// Issued certificates listed unless `top` says.
const DEFAULT_TOP: usize = 100;

pub async fn list(app: &App) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.credentials.list_policies().await?))
}

pub async fn get(app: &App, name: &str) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.credentials.get_policy(name).await?))
}

/// Body: a `CredentialPolicy` (`issuer` `local` or `uploaded` with `certificate` and `privateKey` PEM).
pub async fn put(app: &App, req: &Request, name: &str) -> Result<HttpResponse, DpsError> {
    let policy: CredentialPolicy = req.json_or(|| None)?;
    Ok(json_response(StatusCode::OK, &app.credentials.put_policy(name, policy, precondition(req)).await?))
}

pub async fn delete(app: &App, req: &Request, name: &str) -> Result<HttpResponse, DpsError> {
    app.credentials.delete_policy(name, precondition(req)).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// `GET /issuedCertificates?registrationId=…&top=…`: the newest first (`top` 1 to 1,000, 100 unless given).
pub async fn issued(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let top = match req.query("top") {
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=dps_core::credentials::MAX_LISTED).contains(n))
            .ok_or_else(|| DpsError::invalid(format!("top must be 1 to {}", dps_core::credentials::MAX_LISTED)))?,
        None => DEFAULT_TOP,
    };
    Ok(json_response(StatusCode::OK, &app.credentials.list_issued(req.query("registrationId"), top).await?))
}
