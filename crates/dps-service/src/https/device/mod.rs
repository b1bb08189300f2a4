//! Device runtime API over HTTPS (§1): one file per operation.

pub mod operation_status;
pub mod register;
pub mod status_lookup;

use dps_core::attestation::DeviceCredentials;

use super::Request;

/// The device's credentials: the `Authorization` header when present (symmetric key, TPM after the
/// challenge); X.509 devices present none here.
pub fn credentials(req: &Request) -> DeviceCredentials {
    match req.header("authorization") {
        Some(v) if !v.trim().is_empty() => DeviceCredentials::Sas(v.to_owned()),
        _ => DeviceCredentials::None,
    }
}
