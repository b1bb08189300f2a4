//! The registration id a TPM device derives from its endorsement key (§4.4.2), for the enrollment form:
//! `lowercase(base32(SHA-256(TPM2B_PUBLIC)))` without padding. The EK is checked to be an RSA TPM2B_PUBLIC
//! (its size prefix matches, type RSA, name algorithm SHA-256). The service's own derivation is
//! `dps_crypto::tpm::registration_id` (which does not build for the browser); a host test checks both agree.

use base64::Engine;
use sha2::{Digest, Sha256};

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// RFC 4648 base32, lower case, no padding.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u16, 0u32);
    for b in bytes {
        acc = (acc << 8) | u16::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[usize::from((acc >> bits) & 0x1f)]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[usize::from((acc << (5 - bits)) & 0x1f)]));
    }
    out
}

/// The registration id of a base64 EK (whitespace ignored), or why the EK is not usable.
pub fn registration_id_of_ek(ek_b64: &str) -> Result<String, String> {
    let text: String = ek_b64.split_whitespace().collect();
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(&text).map_err(|_| "the endorsement key is not valid base64".to_owned())?;
    let field = |i: usize| bytes.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let size = field(0).ok_or("the endorsement key is too short for a TPM2B_PUBLIC")?;
    if usize::from(size) + 2 != bytes.len() {
        return Err(format!("the endorsement key's size field says {size} bytes, but {} follow", bytes.len().saturating_sub(2)));
    }
    if field(2) != Some(0x0001) {
        return Err("the endorsement key is not an RSA key (TPM2B_PUBLIC of type RSA, as DPS uses)".to_owned());
    }
    if field(4) != Some(0x000B) {
        return Err("the endorsement key's name algorithm is not SHA-256".to_owned());
    }
    Ok(base32(&Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_follows_rfc_4648() {
        for (input, want) in
            [("", ""), ("f", "my"), ("fo", "mzxq"), ("foo", "mzxw6"), ("foob", "mzxw6yq"), ("fooba", "mzxw6ytb"), ("foobar", "mzxw6ytboi")]
        {
            assert_eq!(base32(input.as_bytes()), want, "{input}");
        }
    }

    fn ek() -> Vec<u8> {
        let mut t = vec![0x00, 0x01, 0x00, 0x0b, 0x00, 0x03, 0x00, 0xb2];
        t.extend((0..300).map(|i| (i % 251) as u8));
        let mut b = (t.len() as u16).to_be_bytes().to_vec();
        b.extend(t);
        b
    }

    #[test]
    fn the_id_matches_the_service_derivation() {
        let b = ek();
        let id = registration_id_of_ek(&base64::engine::general_purpose::STANDARD.encode(&b)).expect("valid");
        assert_eq!(id.len(), 52);
        assert_eq!(id, dps_crypto::tpm::registration_id(&b));
    }

    #[test]
    fn bad_eks_say_why() {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        assert!(registration_id_of_ek("not base64!").is_err());
        assert!(registration_id_of_ek(&b64(&[0])).is_err());
        let mut short = ek();
        short.pop();
        assert!(registration_id_of_ek(&b64(&short)).expect_err("short").contains("size"));
        let mut ecc = ek();
        ecc[3] = 0x23;
        assert!(registration_id_of_ek(&b64(&ecc)).expect_err("ecc").contains("RSA"));
    }
}
