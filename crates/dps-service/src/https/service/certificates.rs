//! `/certificates…` (extension): the CA certificate store and Azure's proof-of-possession flow — upload a
//! CA, generate a verification code, verify with a certificate whose CN is the code, signed by the CA —
//! and the chain inspector.

use dps_core::DpsError;
use dps_proto::{CaCertificate, CertificateVerification};
use http::StatusCode;
use serde_json::json;

use super::precondition;
use crate::app::App;
use crate::https::{empty_response, json_response, HttpResponse, Request};

pub async fn list(app: &App) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.management.list_cas().await?))
}

pub async fn get(app: &App, name: &str) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.management.get_ca(name).await?))
}

/// Body: `{ "certificate": "<PEM, base64 DER or base64 PEM>", "isVerified": false }` (`isVerified: true` trusts on upload).
pub async fn put(app: &App, req: &Request, name: &str) -> Result<HttpResponse, DpsError> {
    let ca: CaCertificate = req.json_or(|| None)?;
    Ok(json_response(StatusCode::OK, &app.management.put_ca(name, ca, precondition(req)).await?))
}

pub async fn delete(app: &App, req: &Request, name: &str) -> Result<HttpResponse, DpsError> {
    app.management.delete_ca(name, precondition(req)).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

pub async fn generate_verification_code(app: &App, name: &str) -> Result<HttpResponse, DpsError> {
    let ca = app.management.generate_verification_code(name).await?;
    Ok(json_response(StatusCode::OK, &json!({ "verificationCode": ca.verification_code, "certificate": ca })))
}

pub async fn verify(app: &App, req: &Request, name: &str) -> Result<HttpResponse, DpsError> {
    let proof: CertificateVerification = req.json_or(|| None)?;
    Ok(json_response(StatusCode::OK, &app.management.verify_ca(name, &proof.certificate).await?))
}

/// `POST /certificates/inspect`: the structured view of a chain (the console's chain inspector). The body
/// is the file itself — PEM (any number of certificates), that PEM in base64, base64 DER or DER — or
/// `{ "certificate": "…" }`.
pub fn inspect(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let body: Vec<u8> = if req.body.first() == Some(&b'{') {
        let v: CertificateVerification = req.json_or(|| None)?;
        v.certificate.into_bytes()
    } else {
        req.body.to_vec()
    };
    let report = dps_core::x509::inspect::inspect_bytes(&body, app.clock.now())?;
    Ok(json_response(StatusCode::OK, &report))
}
