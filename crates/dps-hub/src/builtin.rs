//! The built-in device registry (connector `builtin`): identities (keys sealed, twin, edge flag) in the
//! service's own database. It makes every registration observable without an IoT hub.

use std::sync::Arc;

use async_trait::async_trait;
use dps_core::ports::{ConnectorError, DeviceRegistryStore, HubAuthentication, HubConnector, HubDevice, IdentityWrite, Provisioned};
use dps_proto::{DeviceIdentity, InitialTwin, LinkedHub};

/// The built-in device registry.
#[derive(Clone)]
pub struct BuiltinRegistry {
    store: Arc<dyn DeviceRegistryStore>,
}

impl BuiltinRegistry {
    pub fn new(store: Arc<dyn DeviceRegistryStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl HubConnector for BuiltinRegistry {
    fn check(&self, hub: &LinkedHub) -> Result<(), ConnectorError> {
        if hub.connector == "builtin" {
            Ok(())
        } else {
            Err(ConnectorError::Refused(format!("unknown hub connector '{}' (available: builtin)", hub.connector)))
        }
    }

    async fn probe(&self, _hub: &LinkedHub) -> Result<String, ConnectorError> {
        Ok("built-in registry (in this service's store)".into())
    }

    /// Nothing is written here: the identity goes into the store with the registration's outcome. An identity of
    /// another owner is not replaced (`HubDevice::check_owner`); one written before owners were recorded is
    /// this service's (the registry holds nothing else) and is taken over by its device's next registration.
    async fn provision(&self, hub: &LinkedHub, device: &HubDevice) -> Result<Provisioned, ConnectorError> {
        let current =
            self.store.get_identity(&hub.host_name, &device.device_id).await.map_err(|e| ConnectorError::Unavailable(e.to_string()))?;
        if let Some(created_by) = current.and_then(|c| c.created_by) {
            device.check_owner(Some(&created_by), "the built-in registry's identity")?;
        }
        let (kind, keys) = match &device.authentication {
            HubAuthentication::Sas { primary_key, secondary_key } | HubAuthentication::TpmSas { primary_key, secondary_key } => {
                ("sas", Some((primary_key.clone(), secondary_key.clone())))
            }
            HubAuthentication::SelfSigned { .. } => ("selfSigned", None),
        };
        let x509_thumbprint = match &device.authentication {
            HubAuthentication::SelfSigned { primary_thumbprint, secondary_thumbprint } => Some(dps_proto::X509Thumbprint {
                primary_thumbprint: primary_thumbprint.clone(),
                secondary_thumbprint: secondary_thumbprint.clone(),
            }),
            HubAuthentication::Sas { .. } | HubAuthentication::TpmSas { .. } => None,
        };
        let identity = DeviceIdentity {
            x509_thumbprint,
            hub_host_name: hub.host_name.clone(),
            device_id: device.device_id.clone(),
            registration_id: device.registration_id.clone(),
            authentication_type: kind.to_owned(),
            iot_edge: device.iot_edge,
            // `None` keeps the twin the registry has (migration); a twin replaces it (initial / reset).
            initial_twin: device.initial_twin.clone(),
            created_by: Some(device.owner.marker()),
        };
        Ok(Provisioned::WithOutcome(Box::new(IdentityWrite { identity, keys })))
    }

    async fn deprovision(&self, hub: &LinkedHub, device_id: &str) -> Result<(), ConnectorError> {
        self.store.delete_identity(&hub.host_name, device_id).await.map_err(|e| ConnectorError::Unavailable(e.to_string()))
    }

    async fn read_twin(&self, hub: &LinkedHub, device_id: &str) -> Result<Option<InitialTwin>, ConnectorError> {
        let identity = self.store.get_identity(&hub.host_name, device_id).await.map_err(|e| ConnectorError::Unavailable(e.to_string()))?;
        Ok(identity.and_then(|i| i.initial_twin))
    }
}
