//! DPS Console's own management types: what Azure keeps in its control plane (linked hubs, shared access
//! policies, service endpoints) and this service exposes as documented extensions of the service API.

use serde::{Deserialize, Serialize};

/// A linked IoT hub (Azure's `properties.iotHubs[]`, §7.2).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkedHub {
    /// The hub's host name: what devices are told in `assignedHub`.
    pub host_name: String,
    /// 1–1000; a hub with weight 2 receives twice the devices of one with weight 1.
    #[serde(default = "one")]
    pub allocation_weight: u32,
    /// `false`: never chosen by `hashed`/`geoLatency` unless an enrollment names it.
    #[serde(default = "yes")]
    pub apply_allocation_policy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// How identities are created in this hub: `builtin` (the service's own device registry), `azureIotHub`
    /// (IoT Hub's REST API) or `mosquitto` (the dynamic-security plugin).
    #[serde(default = "builtin")]
    pub connector: String,
    /// The connector's credentials (IoT Hub: a hub connection string; Mosquitto: `mqtt[s]://user:pass@host:port`).
    /// Write-only: sealed at rest, never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<String>,
    /// PEM of a CA to trust for the connector's endpoint (besides the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
}

impl Default for LinkedHub {
    fn default() -> Self {
        Self {
            host_name: String::new(),
            allocation_weight: 1,
            apply_allocation_policy: true,
            region: None,
            connector: builtin(),
            connection_string: None,
            ca_certificate: None,
        }
    }
}

impl std::fmt::Debug for HubSecretsRedacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(<redacted>)" } else { "None" })
    }
}

/// Debug view of a connection string.
pub struct HubSecretsRedacted<'a>(pub &'a Option<String>);

impl std::fmt::Debug for LinkedHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkedHub")
            .field("host_name", &self.host_name)
            .field("allocation_weight", &self.allocation_weight)
            .field("apply_allocation_policy", &self.apply_allocation_policy)
            .field("region", &self.region)
            .field("connector", &self.connector)
            .field("connection_string", &HubSecretsRedacted(&self.connection_string))
            .finish_non_exhaustive()
    }
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn builtin() -> String {
    "builtin".to_owned()
}

/// A device identity as a hub connector created it (the built-in registry's record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceIdentity {
    pub hub_host_name: String,
    pub device_id: String,
    pub registration_id: String,
    /// `sas`, `selfSigned` or `none`.
    pub authentication_type: String,
    /// For `selfSigned`: the device certificate's thumbprints (§7.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_thumbprint: Option<X509Thumbprint>,
    #[serde(default)]
    pub iot_edge: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<crate::InitialTwin>,
    /// Who created it: `dps-console:<idScope>:<individual|group>:<enrollment id>` (the owner of the device's
    /// registration id). Absent on identities written before owners were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Thumbprint {
    pub primary_thumbprint: String,
    pub secondary_thumbprint: String,
}

/// Where the service listens and how to reach it: `<data-dir>/endpoint.json` and `GET /service/info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointInfo {
    pub id_scope: String,
    pub host: String,
    pub ports: Ports,
    /// Path of the CA certificate (PEM) devices must trust.
    pub ca_certificate: String,
    pub service_connection_string: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ports {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<u16>,
}

/// A CA certificate in the service's certificate store (Azure's `certificates/{name}` control-plane
/// resource, §4.3): referenced by X.509 enrollments (`caReferences`) once verified by proof of possession
/// (or trusted on upload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaCertificate {
    /// Taken from the path when absent.
    #[serde(default)]
    pub name: String,
    /// PEM (base64 DER accepted on upload).
    pub certificate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<crate::X509CertificateInfo>,
    #[serde(default)]
    pub is_verified: bool,
    /// The code the proof-of-possession certificate's CN must carry, once generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::service::opt_time")]
    pub created_date_time_utc: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::service::opt_time")]
    pub last_updated_date_time_utc: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// Body of `POST /certificates/{name}/verify`: the proof-of-possession certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateVerification {
    pub certificate: String,
}
