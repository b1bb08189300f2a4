//! A device's key in a symmetric-key enrollment group: base64(HMAC-SHA256(group key, registration id)).
//!
//! The registration id is used byte for byte (case matters), as the service and `dps compute-device-key` do.
//! The same few lines as `dps_crypto::derive_device_key`, which this crate cannot use: dps-crypto pulls in
//! `rand`/`getrandom` (key generation), which do not build for the browser's wasm target. The tests check both
//! give the same keys.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Derives the device key from the group's base64 key. Refuses a blank or invalid registration id and a
/// key that is not base64.
pub fn derive_device_key(group_key_b64: &str, registration_id: &str) -> Result<String, String> {
    crate::validation::registration_id(registration_id)?;
    let key = B64.decode(group_key_b64.trim()).map_err(|_| "the group key is not valid base64".to_owned())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(registration_id.as_bytes());
    Ok(B64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of `dps-crypto`'s `derived_keys_match_the_documented_vectors` (Azure's documentation).
    #[test]
    fn matches_the_documented_vectors() {
        assert_eq!(
            derive_device_key(
                "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==",
                "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"
            )
            .as_deref(),
            Ok("Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=")
        );
        assert_eq!(
            derive_device_key(
                "oiK77Oy7rBw8YB6IS6ukRChAw+Yq6GC61RMrPLSTiOOtdI+XDu0LmLuNm11p+qv2I+adqGUdZHm46zXAQdZoOA==",
                "breakroom499-contoso-tstrsd-007"
            )
            .as_deref(),
            Ok("JC8F96eayuQwwz+PkE7IzjH2lIAjCUnAa61tDigBnSs=")
        );
    }

    #[test]
    fn agrees_with_the_service() {
        for (key, id) in [(B64.encode([7u8; 64]), "dev-1"), (B64.encode([200u8; 32]), "Sensor.Line-7:0042"), (B64.encode([1u8; 16]), "x")] {
            assert_eq!(derive_device_key(&key, id).ok(), dps_crypto::derive_device_key(&key, id).ok(), "{id}");
        }
    }

    #[test]
    fn case_matters_and_bad_input_is_refused() {
        let k = B64.encode([9u8; 32]);
        assert_ne!(derive_device_key(&k, "Dev1"), derive_device_key(&k, "dev1"));
        assert!(derive_device_key(&k, "").is_err());
        assert!(derive_device_key(&k, "a b").is_err());
        assert!(derive_device_key("not base64!", "dev1").is_err());
    }
}
