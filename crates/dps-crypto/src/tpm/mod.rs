//! TPM 2.0 attestation, service side (§4.4), in pure Rust — no TPM and no TSS library needed:
//! - [`public`]: parse an RSA key's TPM2B_PUBLIC (the `endorsementKey` / `storageRootKey` of §4.4.1), its Name;
//! - [`registration_id`](mod@registration_id): the registration id the SDKs derive from the EK (§4.4.2);
//! - [`ek`]: compare a presented EK with an enrollment's base64 EK (§4.4.2);
//! - [`kdf`]: KDFa with SHA-256 (TPM 2.0 Part 1 §11.4.10.2), used by the blob (§4.4.5);
//! - [`blob`]: the six-part `authenticationKey` that carries an HMAC key into the device's TPM (§4.4.4–§4.4.5),
//!   its base64 form, its parts, and its split into the two AMQP SASL challenges (§3.3).
//!
//! Only RSA-2048 keys with nameAlg SHA-256 (the templates every SDK uses, §4.4.1) are accepted; anything else is
//! refused with a [`TpmError`] that says why. No parser here panics or slices unchecked on peer bytes.

pub mod blob;
pub mod ek;
pub mod kdf;
mod marshal;
pub mod public;
pub mod registration_id;

pub use blob::{build_authentication_key, BlobParts, MAX_SASL_SEGMENT};
pub use ek::{decode_ek, ek_matches};
pub use kdf::kdfa;
pub use public::RsaPublic;
pub use registration_id::registration_id;

/// Persistent handle of the endorsement key (§4.4.1).
pub const EK_HANDLE: u32 = 0x8101_0001;
/// Persistent handle of the storage root key (§4.4.1).
pub const SRK_HANDLE: u32 = 0x8100_0001;
/// Persistent handle of the DPS identity (HMAC) key, replaced at every activation (§4.4.1).
pub const IDENTITY_KEY_HANDLE: u32 = 0x8100_0100;

/// Why TPM bytes were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TpmError {
    #[error("the TPM structure is truncated: {0} is missing or shorter than its size says")]
    Truncated(&'static str),
    #[error("{what} declares {declared} bytes but {actual} follow its size field")]
    SizeMismatch { what: &'static str, declared: usize, actual: usize },
    #[error("{what} has {extra} unexpected bytes after its end")]
    Trailing { what: &'static str, extra: usize },
    #[error("unsupported key: {0}; only RSA-2048 keys with nameAlg SHA-256 are accepted (§4.4.1)")]
    Unsupported(String),
    #[error("not valid base64")]
    NotBase64,
    #[error("the HMAC key is {0} bytes long; it must be 16 to 64 bytes")]
    HmacKeyLength(usize),
    #[error("the URI data is {0} bytes long; it must be 1 to 64 bytes (TPM2B_DATA)")]
    UriDataLength(usize),
    #[error("RSA encryption failed: {0}")]
    Rsa(String),
}

/// TPM_ALG_ID values used here (TPM 2.0 Part 2 §6.3).
pub mod alg {
    pub const RSA: u16 = 0x0001;
    pub const KEYEDHASH: u16 = 0x0008;
    pub const SHA256: u16 = 0x000B;
    pub const HMAC: u16 = 0x0005;
    pub const NULL: u16 = 0x0010;
    pub const RSASSA: u16 = 0x0014;
    pub const RSAES: u16 = 0x0015;
    pub const RSAPSS: u16 = 0x0016;
    pub const OAEP: u16 = 0x0017;
    pub const AES: u16 = 0x0006;
    pub const CFB: u16 = 0x0043;
}
