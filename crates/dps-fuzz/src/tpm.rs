//! TPM structures (§4.4): the input is an EK or SRK as a device sends it (TPM2B_PUBLIC), or an
//! authentication-key blob. A public area that parses keeps its exact bytes (it writes back identically and
//! re-parses from its TPMT_PUBLIC to the same key), matches itself as an enrollment's base64 EK, and yields
//! an authentication-key blob or a refusal; the registration id of any bytes is 52 base32 characters; a blob
//! that splits has six items filling it exactly; a blob built for a parsed key splits again.

use base64::Engine;
use dps_crypto::tpm::{build_authentication_key, ek_matches, registration_id, BlobParts, RsaPublic};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn check_public(data: &[u8]) {
    let Ok(key) = RsaPublic::from_tpm2b(data) else { return };
    assert_eq!(key.to_tpm2b(), data, "a parsed public area does not write back as read");
    let again = RsaPublic::from_tpmt(key.tpmt_bytes()).unwrap_or_else(|e| panic!("its TPMT_PUBLIC does not parse again: {e}"));
    assert_eq!(again.name(), key.name());
    let _ = (key.symmetric(), key.scheme(), key.key_bits(), key.exponent(), key.modulus(), key.auth_policy(), key.attributes());
    assert!(matches!(ek_matches(data, &B64.encode(data)), Ok(true)), "an EK does not match itself");
    // The key is the EK and the SRK at once: refused when it cannot be a storage key (its symmetric definition).
    if let Ok(blob) = build_authentication_key(&key, &key, &[7u8; 32], b"hub.example") {
        assert!(BlobParts::parse(&blob).is_ok(), "a built blob does not split");
    }
}

fn check_blob(data: &[u8]) {
    if let Ok(parts) = BlobParts::parse(data) {
        let items =
            [parts.credential_blob, parts.encrypted_secret, parts.duplicate, parts.encrypted_seed, parts.public, parts.encrypted_uri];
        assert_eq!(items.iter().map(|i| i.len() + 2).sum::<usize>(), data.len(), "the blob's items do not fill it");
    }
}

/// TPM public areas, blobs and registration ids.
pub fn tpm_structures(data: &[u8]) {
    let id = registration_id(data);
    assert!(id.len() == 52 && id.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)), "registration id {id}");
    check_public(data);
    check_blob(data);
    let _ = dps_crypto::tpm::decode_ek(&String::from_utf8_lossy(data));
}
