//! Device runtime API over HTTPS (§1): one file per operation.

pub mod operation_status;
pub mod register;
pub mod status_lookup;

use dps_core::attestation::DeviceCredentials;

use super::Request;

/// The device's credentials: the `Authorization` header when present (symmetric key, TPM after the
/// challenge), else the TLS client certificate chain (X.509, §1.10).
pub fn credentials(req: &Request) -> DeviceCredentials {
    match (req.header("authorization"), &req.peer.client_chain) {
        (Some(v), _) if !v.trim().is_empty() => DeviceCredentials::Sas(v.to_owned()),
        (_, Some(chain)) => DeviceCredentials::X509(chain.clone()),
        _ => DeviceCredentials::None,
    }
}
