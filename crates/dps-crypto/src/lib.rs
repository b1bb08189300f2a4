//! Cryptography of DPS Console, with no I/O:
//! - [`sealed`]: the AES-256-GCM envelope every secret is stored in (master key → sealed text);
//! - [`secret`]: a string type whose `Debug`/`Display` never show the secret;
//! - [`sas`]: SharedAccessSignature tokens — parse, sign and verify (§4.1, §5.1);
//! - [`keys`]: symmetric keys — generation, validation and the group-derived device key (§4.2);
//! - [`tpm`]: TPM 2.0 attestation without a TPM — EK/SRK public areas, registration id, the `authenticationKey`
//!   blob (§4.4).

// These crates parse what peers send (ids, topics, tokens, TPM structures): no indexing or slicing that
// could panic; use `get`, `split_at_checked`, iterators. Tests may index.
#![deny(clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::indexing_slicing))]

pub mod keys;
pub mod sas;
pub mod sealed;
pub mod secret;
pub mod tpm;

pub use keys::decode_key;
pub use keys::{derive_device_key, generate_key, validate_key, KeyError};
pub use sas::{build_token, build_token_signed_by, sign, SasError, SasToken};
pub use sealed::{sealed_key_id, MasterKey, SealError};
pub use secret::Secret;
