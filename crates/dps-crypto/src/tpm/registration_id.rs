//! The registration id the C, Node and Java SDKs derive from the EK (§4.4.2).

use data_encoding::BASE32_NOPAD;
use sha2::{Digest, Sha256};

/// `lowercase(base32_RFC4648(SHA-256(TPM2B_PUBLIC(EK))))` without `=` padding: 52 characters from `a–z2–7`.
/// `ek_tpm2b` is the EK exactly as sent (with its 2-byte size); it is hashed as given, not parsed.
pub fn registration_id(ek_tpm2b: &[u8]) -> String {
    BASE32_NOPAD.encode(&Sha256::digest(ek_tpm2b)).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_52_lowercase_base32_characters_of_the_hash_including_the_size() {
        let tpmt = crate::tpm::public::tests::ek_like_tpmt(0x5A);
        let ek = crate::tpm::marshal::tpm2b(&tpmt);
        let id = registration_id(&ek);
        assert_eq!(id.len(), 52);
        assert!(id.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)), "{id}");
        assert_ne!(id, registration_id(&tpmt), "the size prefix is part of the hash");
        // The same 316-byte EK built and hashed independently (Python: struct, hashlib, base64.b32encode).
        assert_eq!(id, "dbpfbdzrqwnhdnafth4zjyfpsr52nqpak4z7mke3galdimi5mu2a");
    }

    #[test]
    fn matches_a_fixed_vector() {
        // base32 of SHA-256("abc"), computed independently with Python's base64.b32encode.
        assert_eq!(registration_id(b"abc"), "xj4bnp4pahh6uqkbidpf3lrceoyagyndsylxvhfucd7wd4qacwwq");
    }
}
