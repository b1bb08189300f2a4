//! Wire and management types of DPS Console.
//!
//! Everything a device, a service SDK, the CLI or the console puts on the wire is defined here, once, as
//! plain serde types: no I/O, no async, so the crate compiles to wasm for the UI. Field names follow Azure's
//! swagger (`../shared/reference/openapi/2021-10-01`) and `dps-protocol.md` §1.4, §1.5, §1.8 and §5.3.
//! Unknown JSON members are ignored on input (§0.12) and absent optional members are omitted on output.

// These crates parse what peers send (ids, topics, tokens, TPM structures): no indexing or slicing that
// could panic; use `get`, `split_at_checked`, iterators. Tests may index.
#![deny(clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::indexing_slicing))]

/// `Deserialize` for a unit enum from its wire names compared case-insensitively (§5.3 enum strings:
/// Azure's .NET service reads `Hashed`, `ENABLED` or `symmetrickey` as well, and so must we). `Serialize`
/// stays derived, so output keeps the camelCase names.
macro_rules! deserialize_case_insensitive {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                const NAMES: &[&str] = &[$($name),+];
                let s = <String as serde::Deserialize>::deserialize(d)?;
                $(
                    if s.eq_ignore_ascii_case($name) {
                        return Ok(Self::$variant);
                    }
                )+
                Err(serde::de::Error::unknown_variant(&s, NAMES))
            }
        }
    };
}

pub mod amqp;
pub mod certificates;
pub mod console;
pub mod credentials;
pub mod device;
pub mod display;
pub mod enrollment;
pub mod error;
pub mod ids;
pub mod management;
pub mod mqtt;
pub mod service;
pub mod simulation;
pub mod trace;

pub use certificates::*;
pub use console::*;
pub use credentials::{CredentialPolicy, IssuedCertificate, IssuerKind, KeyType};
pub use device::*;
pub use display::{truncate_chars, truncate_for_display, DISPLAY_MAX_CHARS, MAX_OPERATION_ID_CHARS, MAX_REQUEST_ID_CHARS};
pub use enrollment::{Enrollment, EnrollmentKind, Shared};
pub use error::*;
pub use ids::*;
pub use management::*;
pub use service::*;
