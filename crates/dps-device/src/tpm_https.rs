//! TPM attestation over HTTPS, the device side of §1.10's TPM sequence (as the C SDK runs it):
//! 1. `PUT …/register` with `{"registrationId", "tpm": {endorsementKey, storageRootKey}}` and no
//!    `Authorization` → `401` whose body carries `authenticationKey` (blob K1) and `keyName`;
//! 2. K1 is activated in the TPM, which signs a SAS token (`skn` = that `keyName`, §4.1);
//! 3. the same `PUT` with `Authorization` → `202 assigning`; polls with the same token until terminal;
//! 4. on `assigned`, `registrationState.tpm.authenticationKey` (blob K2, the IoT hub key) is activated too.

use anyhow::{anyhow, bail, Context, Result};
use dps_proto::RegistrationOperationStatus;
use serde_json::Value;

use dps_proto::simulation::FlowKind;

use crate::flow::Flow;
use crate::tpm_worker::TpmWorker;
use crate::{HttpsDevice, API_VERSION};

/// What the service's `401` to the unauthenticated register carries (§1.10 step 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmChallenge {
    /// The `authenticationKey` blob, base64-decoded (§4.4.4).
    pub authentication_key: Vec<u8>,
    /// The `skn` the device's SAS token must carry.
    pub key_name: String,
}

impl HttpsDevice {
    /// Registers the device whose TPM `tpm` holds (§1.10 TPM), as `registration_id` or else the id derived from
    /// its EK (§4.4.2), polls to the end and, on `assigned`, activates the IoT hub key. Returns the final
    /// operation status (`failed` and `disabled` included; a refusal is an error). Tells the device's flow each
    /// step.
    pub async fn provision_tpm(&self, tpm: &TpmWorker, registration_id: Option<&str>) -> Result<RegistrationOperationStatus> {
        let answer = self.provision_tpm_flow(tpm, registration_id).await;
        if let Err(e) = &answer {
            self.flow.failed(e);
        }
        answer
    }

    async fn provision_tpm_flow(&self, tpm: &TpmWorker, registration_id: Option<&str>) -> Result<RegistrationOperationStatus> {
        let id = registration_id.unwrap_or(tpm.registration_id()).to_owned();
        let base = self.registration_url(&id);
        let register = format!("{base}/register?api-version={API_VERSION}");
        let body = tpm.registration(&id);
        let shown = serde_json::to_string(&body).unwrap_or_default();

        self.connect_steps().await;
        let title = format!("PUT {} (no Authorization: the TPM's EK and SRK)", crate::path_of(&register));
        self.flow.send(FlowKind::Register, title, Some(crate::request_shown(None, &shown))).await;
        let r = self.http.put(&register).json(&body).send().await.context("the unauthenticated TPM register")?;
        let status = r.status().as_u16();
        let challenge = read_challenge(r).await.inspect_err(|e| {
            if let Some(refused) = e.downcast_ref::<crate::Refused>() {
                self.flow.received(FlowKind::Refused, format!("{status} — {refused}"), None);
            }
        })?;
        let got = format!(
            "401 — the TPM challenge: authenticationKey ({} bytes, encrypted to the EK), keyName {}",
            challenge.authentication_key.len(),
            challenge.key_name
        );
        self.flow.received(FlowKind::Challenge, got, None);
        self.flow.local(FlowKind::Challenge, "TPM: ActivateCredential and import the key; the SAS token signed inside the TPM").await;
        tpm.activate(challenge.authentication_key).await.context("activating the authenticationKey of the 401 challenge")?;
        let sas = tpm.sas_token(&self.endpoint.id_scope, &id, &challenge.key_name).await?;

        let title = format!("PUT {} with the TPM-signed SAS token", crate::path_of(&register));
        self.flow.send(FlowKind::Register, title, Some(crate::request_shown(Some(&sas), &shown))).await;
        let r = self
            .http
            .put(&register)
            .header("authorization", &sas)
            .json(&body)
            .send()
            .await
            .context("the TPM register with its SAS token")?;
        let status = self.poll(&id, &base, Some(&sas), self.read(r).await?).await?;
        activate_assigned(tpm, &status, &self.flow).await?;
        Ok(status)
    }
}

/// On `assigned`, the IoT hub key (`registrationState.tpm.authenticationKey`) activated in the TPM.
pub(crate) async fn activate_assigned(tpm: &TpmWorker, status: &RegistrationOperationStatus, flow: &Flow) -> Result<()> {
    let carries = status.registration_state.as_ref().and_then(|r| r.tpm.as_ref()).is_some();
    if carries {
        flow.local(FlowKind::Challenge, "TPM: the IoT hub key (registrationState.tpm.authenticationKey) activated").await;
    }
    tpm.activate_assigned(status).await
}

/// Reads the answer to the unauthenticated register: a `401` with `authenticationKey` and `keyName` is the
/// challenge; a `401` without them (an EK that matches no enrollment) and every other status are errors.
pub async fn read_challenge(r: reqwest::Response) -> Result<TpmChallenge> {
    let code = r.status();
    let bytes = r.bytes().await?;
    if code.as_u16() != 401 {
        if code.is_success() {
            bail!("the service answered HTTP {code} to a register without Authorization; a TPM device expects the 401 challenge (§1.10)");
        }
        return Err(error_body(code, &bytes));
    }
    let json: Value = serde_json::from_slice(&bytes).map_err(|_| error_body(code, &bytes))?;
    let Some(key) = json.get("authenticationKey").and_then(Value::as_str) else {
        return Err(error_body(code, &bytes));
    };
    let key_name = json
        .get("keyName")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the 401 challenge has an authenticationKey but no keyName (§1.10: the C SDK requires it)"))?;
    let authentication_key = dps_crypto::tpm::blob::from_base64(key).context("the 401 challenge's authenticationKey")?;
    Ok(TpmChallenge { authentication_key, key_name: key_name.to_owned() })
}

/// An error answer as an error: the [`crate::Refused`] its §1.8 body states, else the status and the start of the
/// body.
fn error_body(code: reqwest::StatusCode, bytes: &[u8]) -> anyhow::Error {
    match crate::Refused::from_body(bytes) {
        Some(refused) => refused.into(),
        None => anyhow!("HTTP {}: {}", code.as_u16(), String::from_utf8_lossy(bytes).chars().take(300).collect::<String>()),
    }
}
