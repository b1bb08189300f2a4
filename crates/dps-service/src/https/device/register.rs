//! `PUT /{idScope}/registrations/{registrationId}/register` → always `202 Accepted` with `retry-after`
//! (§0.3, §0.9, §1.1). A TPM device's first register — the `tpm` object and no Authorization — is its
//! challenge instead: `401` with the authentication key to activate (§1.10, §4.4.3).

use base64::Engine;
use dps_core::attestation::DeviceCredentials;
use dps_core::registration::RegisterRequest;
use dps_core::DpsError;
use dps_proto::{DeviceRegistration, TpmAttestation, TpmChallengeResponse};
use http::{HeaderValue, StatusCode};

use crate::app::App;
use crate::https::{json_response, HttpResponse, Request};

pub async fn handle(app: &App, req: &Request, scope: &str, registration_id: &str) -> Result<HttpResponse, DpsError> {
    let body: DeviceRegistration = req.json_or(|| Some(DeviceRegistration::default()))?;
    let credentials = super::credentials(req);
    if let (Some(tpm), DeviceCredentials::None) = (&body.tpm, &credentials) {
        return challenge(app, scope, registration_id, tpm).await;
    }
    let force = req.query("forceRegistration").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let reply = app
        .engine
        .register(RegisterRequest {
            id_scope: scope.to_owned(),
            registration_id: registration_id.to_owned(),
            credentials,
            body,
            force_registration: force,
            source: Some(req.peer.addr.ip()),
            protocol: "https",
            api_version: req.query("api-version").map(str::to_owned),
        })
        .await?;
    let mut r = json_response(StatusCode::ACCEPTED, &reply.status);
    if let Some(s) = reply.retry_after {
        r.headers_mut().insert("retry-after", HeaderValue::from(s));
    }
    Ok(r)
}

fn key_bytes(text: Option<&str>, what: &str) -> Result<Vec<u8>, DpsError> {
    let text = text.filter(|t| !t.trim().is_empty()).ok_or_else(|| DpsError::invalid(format!("the tpm object has no {what}")))?;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| DpsError::invalid(format!("the tpm object's {what} is not base64: {e}")))
}

async fn challenge(app: &App, scope: &str, registration_id: &str, tpm: &TpmAttestation) -> Result<HttpResponse, DpsError> {
    let ek = key_bytes(tpm.endorsement_key.as_deref(), "endorsementKey")?;
    let srk = key_bytes(tpm.storage_root_key.as_deref(), "storageRootKey")?;
    let blob = app.engine.tpm_challenge(scope, registration_id, &ek, &srk).await?;
    let body = TpmChallengeResponse {
        message: "Authenticate with the key in authenticationKey: activate it in the TPM and sign the SAS token with it".into(),
        authentication_key: dps_crypto::tpm::blob::to_base64(&blob),
        key_name: dps_core::tpm::KEY_NAME.into(),
    };
    Ok(json_response(StatusCode::UNAUTHORIZED, &body))
}
