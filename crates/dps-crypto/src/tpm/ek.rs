//! Matching a presented EK against an individual enrollment's `attestation.tpm.endorsementKey` (§4.4.2).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use subtle::ConstantTimeEq;

use super::public::RsaPublic;
use super::TpmError;

/// Whether `presented` (the raw TPM2B_PUBLIC from the request or the SASL init) is the same key as the
/// enrollment's base64 EK. Both are parsed (so both must be RSA-2048 / SHA-256) and their TPMT_PUBLIC bytes
/// compared. The stored base64 may contain whitespace or line breaks (as printed by `tpm_device_provision`).
/// Errors say which side is malformed.
pub fn ek_matches(presented: &[u8], enrollment_ek_b64: &str) -> Result<bool, TpmError> {
    let presented = RsaPublic::from_tpm2b(presented)?;
    let enrolled = decode_ek(enrollment_ek_b64)?;
    Ok(bool::from(presented.tpmt_bytes().ct_eq(enrolled.tpmt_bytes())))
}

/// Decodes and parses a base64 TPM2B_PUBLIC, ignoring ASCII whitespace anywhere in it.
pub fn decode_ek(b64: &str) -> Result<RsaPublic, TpmError> {
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = B64.decode(compact.as_bytes()).map_err(|_| TpmError::NotBase64)?;
    RsaPublic::from_tpm2b(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::marshal::tpm2b;
    use crate::tpm::public::tests::ek_like_tpmt;

    #[test]
    fn the_same_key_matches_even_with_wrapped_base64() {
        let ek = tpm2b(&ek_like_tpmt(0x10));
        let b64 = B64.encode(&ek);
        let wrapped: String = b64.as_bytes().chunks(64).map(|l| format!("  {}\r\n", String::from_utf8_lossy(l))).collect();
        assert_eq!(ek_matches(&ek, &b64), Ok(true));
        assert_eq!(ek_matches(&ek, &wrapped), Ok(true));
    }

    #[test]
    fn another_key_does_not_match_and_garbage_is_an_error() {
        let ek = tpm2b(&ek_like_tpmt(0x10));
        let other = B64.encode(tpm2b(&ek_like_tpmt(0x11)));
        assert_eq!(ek_matches(&ek, &other), Ok(false));
        assert_eq!(ek_matches(&ek, "%%%"), Err(TpmError::NotBase64));
        assert_eq!(ek_matches(&ek, &B64.encode(&ek[..100])).map_err(|e| matches!(e, TpmError::SizeMismatch { .. })), Err(true));
        assert!(ek_matches(&ek[..ek.len() - 1], &other).is_err());
    }
}
