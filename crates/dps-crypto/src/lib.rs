//! Cryptography of DPS Console, with no I/O:
//! - [`sealed`]: the AES-256-GCM envelope every secret is stored in (master key → sealed text);
//! - [`secret`]: a string type whose `Debug`/`Display` never show the secret;
//! - [`sas`]: SharedAccessSignature tokens — parse, sign and verify (§4.1, §5.1);
//! - [`keys`]: symmetric keys — generation, validation and the group-derived device key (§4.2);
//! - [`tpm`]: TPM 2.0 attestation without a TPM — EK/SRK public areas, registration id, the `authenticationKey`
//!   blob (§4.4).

pub mod keys;
pub mod sas;
pub mod sealed;
pub mod secret;
pub mod tpm;

pub use keys::decode_key;
pub use keys::{derive_device_key, generate_key, validate_key, KeyError};
pub use sas::{build_token, build_token_signed_by, sign, SasError, SasToken};
pub use sealed::{MasterKey, SealError};
pub use secret::Secret;
