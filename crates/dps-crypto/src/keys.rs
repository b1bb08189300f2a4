//! Symmetric keys (§4.2): generation, validation and the group-derived device key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the key is not valid base64")]
    NotBase64,
    #[error("the key is {0} bytes long; symmetric keys must be 16 to 64 bytes")]
    BadLength(usize),
}

/// A new key as the service generates it: 64 random bytes, base64.
pub fn generate_key() -> String {
    let mut b = [0u8; 64];
    rand::thread_rng().fill_bytes(&mut b);
    B64.encode(b)
}

/// Decodes a user-supplied key: valid base64 of 16–64 bytes.
pub fn validate_key(b64: &str) -> Result<Vec<u8>, KeyError> {
    let bytes = B64.decode(b64.trim()).map_err(|_| KeyError::NotBase64)?;
    if !(16..=64).contains(&bytes.len()) {
        return Err(KeyError::BadLength(bytes.len()));
    }
    Ok(bytes)
}

/// Decodes a stored key without the length rule (keys already accepted once).
pub fn decode_key(b64: &str) -> Result<Vec<u8>, KeyError> {
    B64.decode(b64.trim()).map_err(|_| KeyError::NotBase64)
}

/// `base64(HMAC-SHA256(base64decode(groupKey), utf8(registrationId)))`, over the id exactly as the device
/// presents it (case preserved).
pub fn derive_device_key(group_key_b64: &str, registration_id: &str) -> Result<String, KeyError> {
    let k = decode_key(group_key_b64)?;
    Ok(crate::sas::hmac_base64(&k, registration_id.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Azure's documented vectors (§4.2).
    #[test]
    fn derived_keys_match_the_documented_vectors() {
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
    fn derivation_is_case_sensitive_in_the_registration_id() {
        let k = generate_key();
        assert_ne!(derive_device_key(&k, "Dev1"), derive_device_key(&k, "dev1"));
    }

    #[test]
    fn generated_keys_are_64_bytes_and_user_keys_are_checked() {
        assert_eq!(validate_key(&generate_key()).map(|b| b.len()), Ok(64));
        assert_eq!(validate_key("not base64!"), Err(KeyError::NotBase64));
        assert_eq!(validate_key(&B64.encode([1u8; 8])), Err(KeyError::BadLength(8)));
        assert_eq!(validate_key(&B64.encode([1u8; 65])), Err(KeyError::BadLength(65)));
        assert!(validate_key(&B64.encode([1u8; 16])).is_ok());
    }
}
