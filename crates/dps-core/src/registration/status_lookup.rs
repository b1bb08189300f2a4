//! Registration status look-up (§1.1): the device's current registration record, as the device may see it.

use dps_proto::{DeviceRegistration, DeviceRegistrationResult};

use super::record::result_of;
use super::{store_err, RegistrationEngine};
use crate::attestation::DeviceCredentials;
use crate::error::{DpsError, ErrorKind};

impl RegistrationEngine {
    /// `POST /{idScope}/registrations/{id}`: the device's current registration.
    #[tracing::instrument(skip_all, fields(registration_id = %dps_proto::truncate_for_display(registration_id)))]
    pub async fn status_lookup(
        &self,
        id_scope: &str,
        registration_id: &str,
        creds: &DeviceCredentials,
        body: &DeviceRegistration,
    ) -> Result<DeviceRegistrationResult, DpsError> {
        let reg = self.parse_target(id_scope, registration_id)?;
        if body.csr.is_some() {
            return Err(DpsError::invalid("csr is not allowed on a registration status look-up"));
        }
        let attested = self.attest(&reg, creds, body.tpm.is_some()).await?;
        let rec = self
            .ports
            .registrations
            .get_registration(reg.as_str())
            .await
            .map_err(store_err("could not read the registration"))?
            .ok_or_else(|| DpsError::new(ErrorKind::RegistrationNotFound, format!("'{reg}' has no registration record yet")))?;
        let mut result = result_of(&rec.state, &attested.matched);
        result.x509 = attested.x509;
        Ok(result)
    }
}
