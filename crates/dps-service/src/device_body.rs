//! The register body as MQTT and AMQP carry it (§0.12): empty (.NET, the Embedded C sample) or whitespace means
//! no body; otherwise the `DeviceRegistration` JSON (`"payload": null` from Python is accepted).

use dps_core::DpsError;
use dps_proto::DeviceRegistration;

pub fn registration(body: &[u8]) -> Result<DeviceRegistration, DpsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DeviceRegistration::default());
    }
    serde_json::from_slice(body).map_err(|e| DpsError::bad_request(format!("the register body is not valid: {e}")))
}
