//! The envelope secrets are stored in: AES-256-GCM under the service's master key.
//!
//! Sealed text is `v2.<key id>.<base64(nonce ‖ ciphertext ‖ tag)>`; values written before key ids existed are
//! `v1.<base64(…)>` and still open. A random 96-bit nonce is drawn for every seal; the associated data binds a
//! sealed value to where it belongs (e.g. `enrollment/dev1/primaryKey`), so a value copied into another row
//! does not open. The key id (8 hex digits of a SHA-256 of the key, domain-separated) names the key a value
//! was sealed with, so a rotation knows which rows still need re-sealing without trying to open them.
//!
//! A [`MasterKey`] is a small key ring: one current key (every seal) and, while a rotation runs, the keys
//! being retired (opens only). [`MasterKey::rotate_to`] makes a new key current; [`MasterKey::retire_others`]
//! forgets the old ones once nothing is sealed with them.

use std::sync::{RwLock, RwLockReadGuard};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
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

/// One key of the ring: its id and its cipher.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: Aes256Gcm,
}

impl Key {
    fn from_bytes(bytes: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"dps-console master key id\0");
        h.update(bytes);
        let id = h.finalize().iter().take(4).map(|b| format!("{b:02x}")).collect();
        Self { id, cipher: Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(bytes)) }
    }

    fn open(&self, raw: &[u8], aad: &str) -> Result<Vec<u8>, SealError> {
        if raw.len() < 12 + 16 {
            return Err(SealError::Malformed);
        }
        let (nonce, ct) = raw.split_at(12);
        self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: aad.as_bytes() }).map_err(|_| SealError::Unauthentic)
    }
}

struct Ring {
    current: Key,
    /// Keys being retired: they open what they sealed, they seal nothing.
    retiring: Vec<Key>,
}

/// The 256-bit key every secret at rest is sealed with, and during a rotation the keys it replaces.
pub struct MasterKey {
    ring: RwLock<Ring>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

const V1: &str = "v1.";
const V2: &str = "v2.";

/// The key id a sealed value names (`None` for `v1.` values and malformed text).
pub fn sealed_key_id(sealed: &str) -> Option<&str> {
    sealed.strip_prefix(V2).and_then(|rest| rest.split_once('.')).map(|(id, _)| id)
}

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
        Self { ring: RwLock::new(Ring { current: Key::from_bytes(bytes), retiring: Vec::new() }) }
    }

    fn ring(&self) -> RwLockReadGuard<'_, Ring> {
        self.ring.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current key's id (what [`MasterKey::seal`] writes into the sealed text).
    pub fn id(&self) -> String {
        self.ring().current.id.clone()
    }

    /// Makes `next`'s current key the one every seal uses; the key it replaces still opens what it sealed
    /// until [`MasterKey::retire_others`]. Rotating to the current key changes nothing.
    pub fn rotate_to(&self, next: &MasterKey) {
        let new = next.ring().current.clone();
        let mut ring = self.ring.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if ring.current.id == new.id {
            return;
        }
        ring.retiring.retain(|k| k.id != new.id);
        let old = std::mem::replace(&mut ring.current, new);
        ring.retiring.push(old);
    }

    /// Forgets every key but the current one.
    pub fn retire_others(&self) {
        self.ring.write().unwrap_or_else(std::sync::PoisonError::into_inner).retiring.clear();
    }

    /// Whether keys being retired are still held.
    pub fn is_rotating(&self) -> bool {
        !self.ring().retiring.is_empty()
    }

    /// Whether `sealed` was sealed with the current key (else a rotation must re-seal it).
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed_key_id(sealed).is_some_and(|id| id == self.ring().current.id)
    }

    /// Seals `plaintext`, bound to `aad` (where the value lives), with the current key.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ring = self.ring();
        // Encryption with a 32-byte key and a 12-byte nonce cannot fail for inputs below 64 GiB.
        let ct =
            ring.current.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: aad.as_bytes() }).unwrap_or_default();
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        let mut sealed = String::with_capacity(V2.len() + ring.current.id.len() + 1 + out.len().div_ceil(3) * 4);
        sealed.push_str(V2);
        sealed.push_str(&ring.current.id);
        sealed.push('.');
        B64.encode_string(&out, &mut sealed);
        sealed
    }

    /// Opens a value sealed with [`MasterKey::seal`] under the same `aad`, by any key of the ring (a `v2.`
    /// value by the key it names; a `v1.` value by whichever opens it).
    pub fn open(&self, sealed: &str, aad: &str) -> Result<Vec<u8>, SealError> {
        let ring = self.ring();
        let mut keys = std::iter::once(&ring.current).chain(&ring.retiring);
        if let Some(rest) = sealed.strip_prefix(V2) {
            let (id, body) = rest.split_once('.').ok_or(SealError::Malformed)?;
            let raw = B64.decode(body).map_err(|_| SealError::Malformed)?;
            return keys.find(|k| k.id == id).ok_or(SealError::Unauthentic)?.open(&raw, aad);
        }
        let body = sealed.strip_prefix(V1).ok_or(SealError::Malformed)?;
        let raw = B64.decode(body).map_err(|_| SealError::Malformed)?;
        let mut last = Err(SealError::Unauthentic);
        for k in keys {
            last = k.open(&raw, aad);
            if last.is_ok() || last == Err(SealError::Malformed) {
                break;
            }
        }
        last
    }

    /// Convenience for text secrets.
    pub fn open_string(&self, sealed: &str, aad: &str) -> Result<String, SealError> {
        String::from_utf8(self.open(sealed, aad)?).map_err(|_| SealError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(sealed: &str) -> Vec<u8> {
        let b64 = sealed.rsplit('.').next().unwrap_or_default();
        B64.decode(b64).expect("decodes")
    }

    /// A value in the format before key ids (`v1.`), as older versions wrote it.
    fn seal_v1(k: &MasterKey, plaintext: &[u8], aad: &str) -> String {
        format!("v1.{}", B64.encode(body(&k.seal(plaintext, aad))))
    }

    #[test]
    fn seal_and_open_round_trip_and_bind_to_their_place() {
        let (k, text) = MasterKey::generate();
        let s = k.seal(b"secret key", "enrollment/dev1/primaryKey");
        assert!(s.starts_with(&format!("v2.{}.", k.id())), "{s}");
        assert!(!s.contains("secret"));
        assert_eq!(k.open(&s, "enrollment/dev1/primaryKey").as_deref(), Ok(&b"secret key"[..]));
        assert_eq!(k.open(&s, "enrollment/dev2/primaryKey"), Err(SealError::Unauthentic));
        let k2 = MasterKey::from_base64(&text).expect("from base64");
        assert_eq!(k2.id(), k.id(), "the id depends on the key only");
        assert_eq!(k2.open_string(&s, "enrollment/dev1/primaryKey").as_deref(), Ok("secret key"));
        let (other, _) = MasterKey::generate();
        assert_ne!(other.id(), k.id());
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
        let mut raw = body(&s);
        raw[13] ^= 1;
        let tampered = format!("v2.{}.{}", k.id(), B64.encode(raw));
        assert_eq!(k.open(&tampered, "a"), Err(SealError::Unauthentic));
        assert_eq!(k.open("v0.abc", "a"), Err(SealError::Malformed));
        assert_eq!(k.open("v1.!!", "a"), Err(SealError::Malformed));
        assert_eq!(k.open("v1.AAAA", "a"), Err(SealError::Malformed));
        assert_eq!(k.open("v2.AAAA", "a"), Err(SealError::Malformed));
        assert_eq!(k.open(&format!("v2.{}.AAAA", k.id()), "a"), Err(SealError::Malformed));
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
    }

    /// #15 item 4: during a rotation both keys open, only the new one seals; afterwards the old is gone.
    #[test]
    fn a_rotation_seals_with_the_new_key_and_opens_with_both_until_retired() {
        let (k, _) = MasterKey::generate();
        let (next, _) = MasterKey::generate();
        let old_v2 = k.seal(b"old", "a");
        let old_v1 = seal_v1(&k, b"older", "b");
        assert_eq!(k.open(&old_v1, "b").as_deref(), Ok(&b"older"[..]), "v1 values still open");
        assert!(k.is_current(&old_v2) && !k.is_current(&old_v1), "a v1 value is never current");

        k.rotate_to(&next);
        assert!(k.is_rotating());
        assert_eq!(k.id(), next.id());
        let new = k.seal(b"new", "c");
        assert!(k.is_current(&new) && !k.is_current(&old_v2));
        assert_eq!(k.open(&old_v2, "a").as_deref(), Ok(&b"old"[..]));
        assert_eq!(k.open(&old_v1, "b").as_deref(), Ok(&b"older"[..]));
        assert_eq!(next.open(&new, "c").as_deref(), Ok(&b"new"[..]));
        k.rotate_to(&next);
        assert_eq!(k.ring().retiring.len(), 1, "rotating to the current key again changes nothing");

        k.retire_others();
        assert!(!k.is_rotating());
        assert_eq!(k.open(&old_v2, "a"), Err(SealError::Unauthentic));
        assert_eq!(k.open(&old_v1, "b"), Err(SealError::Unauthentic));
        assert_eq!(k.open(&new, "c").as_deref(), Ok(&b"new"[..]));
        assert_eq!(sealed_key_id(&new), Some(next.id().as_str()));
        assert_eq!(sealed_key_id(&old_v1), None);
    }
}
