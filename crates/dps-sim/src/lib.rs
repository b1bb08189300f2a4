//! Simulated devices and scenarios for trainers (#16): a scenario file ([`scenario`]) sets up hubs, groups and
//! enrollments through the service API ([`api`]), then real device clients register through the service's
//! listeners ([`devices`]) and the [`runner`] checks where each ended ([`expect`]). `dps simulate` runs them
//! from a terminal.

pub mod api;
pub mod devices;
pub mod expect;
pub mod live;
pub mod runner;
pub mod scenario;
pub mod scenario_runs;
pub mod tpm;
pub mod x509;

pub use api::ServiceApi;
pub use devices::{DeviceTarget, Outcome};
pub use runner::{Event, Report, Runner, StepReport};
pub use scenario::Scenario;
