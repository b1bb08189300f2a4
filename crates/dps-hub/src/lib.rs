//! Hub connectors: they create the device identity in the hub a device was assigned to (§7.4).
//!
//! A linked hub names its connector (`LinkedHub::connector`); [`Connectors`] — the service's one
//! [`HubConnector`] — dispatches on it:
//! - `builtin` → [`BuiltinRegistry`]: the service's own registry of device identities (the default);
//! - `azureIotHub` → [`AzureIotHub`]: Azure IoT Hub through its public service REST API;
//! - `mosquitto` → [`Mosquitto`]: an MQTT broker (Mosquitto ≥ 2, dynamic-security plugin) as a hub (it has
//!   no twins: `read_twin` finds none).

mod azure;
mod builtin;
mod mosquitto;
mod retry;
mod tls;

use std::sync::Arc;

use async_trait::async_trait;
use dps_core::ports::{ConnectorError, DeviceRegistryStore, HubConnector, HubDevice, Provisioned};
use dps_core::Clock;
use dps_proto::{InitialTwin, LinkedHub};

pub use azure::{AzureIotHub, API_VERSION as AZURE_API_VERSION};
pub use builtin::BuiltinRegistry;
pub use mosquitto::Mosquitto;

/// Connector names, as `LinkedHub::connector` spells them.
pub const BUILTIN: &str = "builtin";
pub const AZURE_IOT_HUB: &str = "azureIotHub";
pub const MOSQUITTO: &str = "mosquitto";

/// An error with its causes (reqwest and rumqttc keep the TLS or socket reason in the sources).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Every connector, chosen per hub by `LinkedHub::connector`.
pub struct Connectors {
    builtin: BuiltinRegistry,
    azure: AzureIotHub,
    mosquitto: Mosquitto,
}

impl Connectors {
    /// `registry`: the built-in registry's store; `clock`: expiry of the SAS tokens sent to IoT Hub.
    pub fn new(registry: Arc<dyn DeviceRegistryStore>, clock: Arc<dyn Clock>) -> Self {
        Self { builtin: BuiltinRegistry::new(registry), azure: AzureIotHub::new(clock), mosquitto: Mosquitto::new() }
    }

    fn pick(&self, hub: &LinkedHub) -> Result<&dyn HubConnector, ConnectorError> {
        match hub.connector.as_str() {
            BUILTIN => Ok(&self.builtin),
            AZURE_IOT_HUB => Ok(&self.azure),
            MOSQUITTO => Ok(&self.mosquitto),
            other => Err(ConnectorError::Refused(format!(
                "unknown hub connector '{}' (available: {BUILTIN}, {AZURE_IOT_HUB}, {MOSQUITTO})",
                other.escape_debug()
            ))),
        }
    }
}

#[async_trait]
impl HubConnector for Connectors {
    fn check(&self, hub: &LinkedHub) -> Result<(), ConnectorError> {
        self.pick(hub)?.check(hub)
    }

    async fn probe(&self, hub: &LinkedHub) -> Result<String, ConnectorError> {
        let connector = self.pick(hub)?;
        connector.check(hub)?;
        connector.probe(hub).await
    }

    async fn provision(&self, hub: &LinkedHub, device: &HubDevice) -> Result<Provisioned, ConnectorError> {
        self.pick(hub)?.provision(hub, device).await
    }

    async fn deprovision(&self, hub: &LinkedHub, device_id: &str) -> Result<(), ConnectorError> {
        self.pick(hub)?.deprovision(hub, device_id).await
    }

    async fn read_twin(&self, hub: &LinkedHub, device_id: &str) -> Result<Option<InitialTwin>, ConnectorError> {
        self.pick(hub)?.read_twin(hub, device_id).await
    }
}
