//! The envelope secrets are stored in: AES-256-GCM under the service's master key.
//!
//! Sealed text is `v1.<base64(nonce ‖ ciphertext ‖ tag)>`. A random 96-bit nonce is drawn for every seal;
//! the associated data binds a sealed value to where it belongs (e.g. `enrollment/dev1/primaryKey`), so a
//! value copied into another row does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use zeroize::Zeroize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the master key must be 32 bytes (base64 in the key file)")]
    BadMasterKey,
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value does not open with this master key (wrong key, or the value was moved or altered)")]
    Unauthentic,
}

/// The 256-bit key every secret at rest is sealed with.
pub struct MasterKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

const PREFIX: &str = "v1.";

impl MasterKey {
    /// A new random key and its base64 text (to be written to the key file).
    pub fn generate() -> (Self, String) {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let text = B64.encode(bytes);
        let key = Self::from_bytes(&bytes);
        bytes.zeroize();
        (key, text)
    }

    /// Reads the key file's text (base64 of 32 bytes, surrounding white space ignored).
    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let mut bytes = B64.decode(text.trim()).map_err(|_| SealError::BadMasterKey)?;
        if bytes.len() != 32 {
            bytes.zeroize();
            return Err(SealError::BadMasterKey);
        }
        let key = Self::from_bytes(&bytes);
        bytes.zeroize();
        Ok(key)
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        let key = aes_gcm::Key::<Aes256Gcm>::from_slice(bytes);
        Self { cipher: Aes256Gcm::new(key) }
    }

    /// Seals `plaintext`, bound to `aad` (where the value lives).
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        // Encryption with a 32-byte key and a 12-byte nonce cannot fail for inputs below 64 GiB.
        let ct = self.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: aad.as_bytes() }).unwrap_or_default();
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        let mut sealed = String::with_capacity(PREFIX.len() + out.len().div_ceil(3) * 4);
        sealed.push_str(PREFIX);
        B64.encode_string(&out, &mut sealed);
        sealed
    }

    /// Opens a value sealed with [`MasterKey::seal`] under the same `aad`.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<Vec<u8>, SealError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(SealError::Malformed)?;
        let raw = B64.decode(body).map_err(|_| SealError::Malformed)?;
        if raw.len() < 12 + 16 {
            return Err(SealError::Malformed);
        }
        let (nonce, ct) = raw.split_at(12);
        self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: aad.as_bytes() }).map_err(|_| SealError::Unauthentic)
    }

    /// Convenience for text secrets.
    pub fn open_string(&self, sealed: &str, aad: &str) -> Result<String, SealError> {
        String::from_utf8(self.open(sealed, aad)?).map_err(|_| SealError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_and_bind_to_their_place() {
        let (k, text) = MasterKey::generate();
        let s = k.seal(b"secret key", "enrollment/dev1/primaryKey");
        assert!(s.starts_with("v1."));
        assert!(!s.contains("secret"));
        assert_eq!(k.open(&s, "enrollment/dev1/primaryKey").as_deref(), Ok(&b"secret key"[..]));
        assert_eq!(k.open(&s, "enrollment/dev2/primaryKey"), Err(SealError::Unauthentic));
        let k2 = MasterKey::from_base64(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(k2.open_string(&s, "enrollment/dev1/primaryKey").as_deref(), Ok("secret key"));
        let (other, _) = MasterKey::generate();
        assert_eq!(other.open(&s, "enrollment/dev1/primaryKey"), Err(SealError::Unauthentic));
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let (k, _) = MasterKey::generate();
        assert_ne!(k.seal(b"x", "a"), k.seal(b"x", "a"));
    }

    #[test]
    fn tampered_or_malformed_values_are_refused() {
        let (k, _) = MasterKey::generate();
        let s = k.seal(b"hello", "a");
        let mut raw = B64.decode(&s[3..]).unwrap_or_default();
        raw[13] ^= 1;
        let tampered = format!("v1.{}", B64.encode(raw));
        assert_eq!(k.open(&tampered, "a"), Err(SealError::Unauthentic));
        assert_eq!(k.open("v0.abc", "a"), Err(SealError::Malformed));
        assert_eq!(k.open("v1.!!", "a"), Err(SealError::Malformed));
        assert_eq!(k.open("v1.AAAA", "a"), Err(SealError::Malformed));
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
    }
}
