//! The hub side of an assignment (§7.4): the identity's authentication, its twin when it moves with the device,
//! its creation through the `HubConnector` (an unavailable hub retried on [`HubRetry`](super::HubRetry)'s
//! schedule while the device sees `assigning`), and its removal from the hub the device left.

use dps_proto::trace::{ConnectorStep, DecisionTrace, TpmStep};
use dps_proto::{AttestationType, InitialTwin, LinkedHub};
use tracing::warn;

use super::decide::{EnrollmentView, TwinSource};
use super::{DeviceKeys, RegistrationEngine};
use crate::error::{DpsError, ErrorKind};
use crate::model::Operation;
use crate::ports::{ConnectorError, HubAuthentication, HubDevice, Provisioned};

/// How the identity authenticates, and what a TPM device is given for it.
pub(super) struct Authentication {
    pub hub: HubAuthentication,
    /// K2 wrapped for the device's TPM (base64).
    pub tpm_blob: Option<String>,
    pub step: Option<TpmStep>,
}

/// §7.4: symmetric-key devices get their keys (`device_keys`, else derived from the enrollment); X.509 devices a
/// self-signed identity with the leaf's thumbprint; TPM devices a new key K2, wrapped for their TPM (§4.4.3 step 4).
pub(super) fn authentication_for(
    op: &Operation,
    hub: &str,
    view: &EnrollmentView,
    device_keys: DeviceKeys,
) -> Result<Authentication, DpsError> {
    let plain = |hub| Authentication { hub, tpm_blob: None, step: None };
    match op.attestation {
        AttestationType::Tpm => tpm_authentication(op, hub),
        AttestationType::X509 => {
            let Some(t) = op.x509.as_ref().and_then(|x| x.certificate_info.as_ref()).map(|i| i.sha256_thumbprint.clone()) else {
                return Err(DpsError::internal("the device certificate's thumbprint is not available"));
            };
            Ok(plain(HubAuthentication::SelfSigned { primary_thumbprint: t.clone(), secondary_thumbprint: t }))
        }
        _ => {
            let Some((primary, secondary)) = device_keys.or_else(|| view.device_keys(&op.registration_id)) else {
                return Err(DpsError::internal("the device's keys are not available"));
            };
            Ok(plain(HubAuthentication::Sas { primary_key: primary, secondary_key: secondary }))
        }
    }
}

fn tpm_authentication(op: &Operation, hub: &str) -> Result<Authentication, DpsError> {
    let keys = op.tpm.as_ref().and_then(|t| {
        let ek = dps_crypto::tpm::blob::from_base64(t.endorsement_key.as_deref()?).ok()?;
        let srk = dps_crypto::tpm::blob::from_base64(t.storage_root_key.as_deref()?).ok()?;
        Some((ek, srk))
    });
    match keys.map(|(ek, srk)| crate::tpm::hub_key(&ek, &srk, hub)) {
        Some(Ok(((primary, secondary), blob))) => Ok(Authentication {
            hub: HubAuthentication::TpmSas { primary_key: primary, secondary_key: secondary },
            tpm_blob: Some(blob),
            step: Some(TpmStep {
                challenge: Some("answered with the key of its challenge (K1)".to_owned()),
                hub_key: "a new key (K2), wrapped for the device's TPM in registrationState.tpm.authenticationKey".to_owned(),
            }),
        }),
        Some(Err(e)) => Err(e),
        // Re-provisioned from the service API: no challenge, so no TPM to wrap a key for. The identity gets new
        // keys; the device's next registration brings it a K2 for its new place.
        None => Ok(Authentication {
            hub: HubAuthentication::TpmSas {
                primary_key: dps_crypto::Secret::new(dps_crypto::generate_key()),
                secondary_key: dps_crypto::Secret::new(dps_crypto::generate_key()),
            },
            tpm_blob: None,
            step: Some(TpmStep {
                challenge: None,
                hub_key: "new keys in the hub; the device receives its key (K2) at its next registration".to_owned(),
            }),
        }),
    }
}

impl RegistrationEngine {
    /// The twin the identity starts with: `initial`, the one the device had in `old` (its previous hub and
    /// device id there), or none.
    pub(super) async fn twin_for(
        &self,
        source: TwinSource,
        initial: Option<InitialTwin>,
        old: Option<(&LinkedHub, &str)>,
    ) -> Option<InitialTwin> {
        match source {
            TwinSource::Initial => initial,
            TwinSource::Hub => None,
            TwinSource::Previous => {
                let (old, old_id) = old?;
                match self.ports.connector.read_twin(old, old_id).await {
                    Ok(t) => t,
                    Err(e) => {
                        warn!(hub = %old.host_name, error = %e, "cannot read the twin to migrate; the new hub starts without it");
                        None
                    }
                }
            }
        }
    }

    /// Creates the identity in the hub. A hub reported unavailable (after the connector's own short retries) is
    /// tried again on [`HubRetry`](super::HubRetry)'s schedule while the operation stays `assigning`; a refusal is
    /// final.
    pub(super) async fn provision_with_retry(
        &self,
        hub: &LinkedHub,
        device: &HubDevice,
        trace: &mut DecisionTrace,
    ) -> Result<Provisioned, ConnectorError> {
        let retry = self.config.hub_retry;
        let mut failures = Vec::new();
        let mut n = 0;
        loop {
            let result = self.ports.connector.provision(hub, device).await;
            let done = match &result {
                Ok(_) => true,
                Err(ConnectorError::Refused(_) | ConnectorError::NotOwned { .. }) => true,
                Err(ConnectorError::Unavailable(_)) => n >= retry.retries,
            };
            if let Err(e) = &result {
                failures.push(dps_proto::truncate_for_display(&e.to_string()).into_owned());
            }
            if done {
                // The built-in registry's identity is written with the outcome, in the same write as this trace.
                let outcome = result.as_ref().map_or_else(ToString::to_string, |_| ConnectorStep::CREATED.to_owned());
                trace.connector = Some(ConnectorStep { hub: hub.host_name.clone(), result: outcome, failed_attempts: failures });
                return result;
            }
            n += 1;
            let wait = retry.delay(n);
            warn!(hub = %hub.host_name, retry = n, of = retry.retries, ?wait, "the hub is unavailable; the registration stays assigning and is retried");
            tokio::time::sleep(wait).await;
        }
    }

    /// The device's error when its hub did not take it. The connector's detail (addresses, hub answers) stays in
    /// the trace, which only the service API shows.
    pub(super) fn hub_error(&self, hub: &str, e: &ConnectorError) -> DpsError {
        let why = match e {
            ConnectorError::NotOwned { .. } => {
                return DpsError::new(
                    ErrorKind::Conflict,
                    format!("hub '{hub}' has an identity under this device's id that this registration does not own; it was left alone (details: dps registration explain)"),
                )
            }
            ConnectorError::Unavailable(_) => format!("stayed unavailable through {} retries", self.config.hub_retry.retries),
            ConnectorError::Refused(_) => "refused to create the device identity".to_owned(),
        };
        DpsError::new(ErrorKind::Unavailable, format!("hub '{hub}' {why}; try again later (details: dps registration explain)"))
    }

    /// Removes the identity from the hub the device left; a failure is logged, the assignment stands.
    pub(super) async fn deprovision_previous(&self, old: &LinkedHub, old_id: &str) {
        if let Err(e) = self.ports.connector.deprovision(old, old_id).await {
            warn!(hub = %old.host_name, error = %e, "could not remove the device from its previous hub");
        }
    }
}
