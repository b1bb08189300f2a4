//! The provisioning domain. Nothing here knows HTTP, MQTT, AMQP, SQL or Tauri: transports call
//! [`registration::RegistrationEngine`] and [`management::Management`]; persistence, hubs and time come in
//! through the narrow traits of [`ports`] and [`clock`].

pub mod access;
pub mod allocation;
pub mod api_version;
pub mod attestation;
pub mod cache;
pub mod clock;
pub mod cpu;
pub mod credentials;
pub mod error;
pub mod failpoint;
pub mod limits;
pub mod management;
pub mod metrics;
pub mod model;
pub mod ports;
pub mod query;
pub mod regions;
pub mod registration;
#[cfg(test)]
mod testing;
pub mod tpm;
pub mod x509;

pub use clock::{Clock, SystemClock};
pub use error::{DpsError, ErrorKind};
