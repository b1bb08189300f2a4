//! What the console (`ui/`) and the desktop shell (`src-tauri/`) exchange with the service, beyond the
//! enrollment and registration types: the live log, metric series, allocation and connector status, access
//! policies, sign-in, and the in-process request the desktop shell forwards to the embedded service.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One entry of the live log (`GET /diagnostics/logs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRecord {
    /// Increases by one per entry since the service started; `?after=seq` asks for newer entries only.
    #[serde(default)]
    pub seq: u64,
    /// RFC 3339.
    pub time: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    pub target: String,
    pub message: String,
    /// Event and span fields (`registration_id`, `operation_id`, `protocol`, `code`, `hub`, …), as text.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// A per-minute metric count (`GET /diagnostics/metrics?minutes=N`): Azure's `RegistrationAttempts`
/// {hub, status}, `DeviceAssignments` {hub} and `AttestationAttempts` {mechanism, protocol, status}.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesPoint {
    /// Start of the minute (RFC 3339).
    pub minute: String,
    pub metric: String,
    pub dimensions: BTreeMap<String, String>,
    pub count: u64,
}

/// A linked hub with the number of devices assigned to it now (`GET /diagnostics/allocation`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubAllocation {
    pub host_name: String,
    pub allocation_weight: u32,
    pub apply_allocation_policy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub connector: String,
    /// Registration records in state `assigned` naming this hub.
    pub devices: u64,
}

/// Whether a linked hub's connector can reach its hub (`GET /linkedHubs/{hostName}/status`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubStatus {
    pub host_name: String,
    pub connector: String,
    pub reachable: bool,
    /// What the check found ("reachable", or why not).
    pub message: String,
    /// RFC 3339.
    pub checked_at: String,
}

/// A shared access policy of the service API (`GET /service/policies`), with its keys (the caller has
/// `ServiceConfig`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicyInfo {
    pub key_name: String,
    /// `ServiceConfig`, `EnrollmentRead`, `EnrollmentWrite`, `RegistrationStatusRead`, `RegistrationStatusWrite`.
    pub rights: Vec<String>,
    pub primary_key: String,
    pub secondary_key: String,
    /// `HostName=…;SharedAccessKeyName=…;SharedAccessKey=<primary>`.
    pub connection_string: String,
}

/// `POST /console/login` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleLogin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub password: String,
}

/// `POST /console/login` answer: send `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleSession {
    pub token: String,
    pub token_type: String,
    /// RFC 3339.
    pub expires_utc: String,
    pub username: String,
}

/// A service-API request the desktop shell forwards to its embedded service in-process (Tauri command
/// `api_request`), so the window needs neither TLS trust nor a token: the shell signs it in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalRequest {
    /// `GET`, `PUT`, `POST`, `DELETE`.
    pub method: String,
    /// Path without query, e.g. `/enrollments/dev-1`.
    pub path: String,
    /// Query parameters, not encoded (`api-version` is added when missing).
    #[serde(default)]
    pub query: Vec<(String, String)>,
    /// Extra headers (`If-Match`, `x-ms-continuation`, `x-ms-max-item-count`, `Content-Type`).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// The embedded service's answer to a [`LocalRequest`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalResponse {
    pub status: u16,
    /// Header names lower-case.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl LocalResponse {
    /// A header's value, name matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The numbers of the `azure` profile; defaults are Azure's (§9). Tests and labs lower them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AzureLimits {
    pub registrations_per_window: u32,
    pub registration_window_secs: u32,
    pub service_operations_per_window: u32,
    pub service_operation_window_secs: u32,
    pub polls_per_window: u32,
    pub poll_window_secs: u32,
    pub max_bulk_items: u32,
    /// Per attestation kind (symmetric key, X.509), as Azure counts them.
    pub max_enrollment_groups: u64,
    pub max_individual_enrollments: u64,
    pub max_ca_certificates: u64,
    pub max_linked_hubs: u64,
    pub max_message_bytes: u64,
    /// Devices whose poll window is kept at most (memory bound).
    pub tracked_devices: u32,
}

impl Default for AzureLimits {
    fn default() -> Self {
        Self {
            registrations_per_window: 1000,
            registration_window_secs: 60,
            service_operations_per_window: 1000,
            service_operation_window_secs: 60,
            polls_per_window: 5,
            poll_window_secs: 10,
            max_bulk_items: 10,
            max_enrollment_groups: 100,
            max_individual_enrollments: 1_000_000,
            max_ca_certificates: 25,
            max_linked_hubs: 50,
            max_message_bytes: 96 * 1024,
            tracked_devices: 100_000,
        }
    }
}

impl AzureLimits {
    /// Refuses numbers that make no sense (zero windows or limits).
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("registrations_per_window", u64::from(self.registrations_per_window)),
            ("registration_window_secs", u64::from(self.registration_window_secs)),
            ("service_operations_per_window", u64::from(self.service_operations_per_window)),
            ("service_operation_window_secs", u64::from(self.service_operation_window_secs)),
            ("polls_per_window", u64::from(self.polls_per_window)),
            ("poll_window_secs", u64::from(self.poll_window_secs)),
            ("max_bulk_items", u64::from(self.max_bulk_items)),
            ("max_message_bytes", self.max_message_bytes),
            ("tracked_devices", u64::from(self.tracked_devices)),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("limits_azure.{name} must be at least 1"));
            }
        }
        for (name, secs) in [
            ("registration_window_secs", self.registration_window_secs),
            ("service_operation_window_secs", self.service_operation_window_secs),
            ("poll_window_secs", self.poll_window_secs),
        ] {
            if secs > 3600 {
                return Err(format!("limits_azure.{name} {secs} is above 3600"));
            }
        }
        for (name, v) in [
            ("registrations_per_window", self.registrations_per_window),
            ("service_operations_per_window", self.service_operations_per_window),
            ("polls_per_window", self.polls_per_window),
        ] {
            if v > 1_000_000 {
                return Err(format!("limits_azure.{name} {v} is above 1000000"));
            }
        }
        Ok(())
    }
}

/// `GET/PUT /service/limits`: the limits profile in force (`default` or `azure`) and the `azure` profile's
/// numbers. A PUT reads only `profile`; the numbers come from the configuration (`[limits_azure]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSettings {
    pub profile: String,
    #[serde(default)]
    pub azure: AzureLimits,
    /// The configuration names a profile (`limits`), which wins again at the next start.
    #[serde(default)]
    pub configured: bool,
}
