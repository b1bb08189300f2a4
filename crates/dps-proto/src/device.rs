//! Device runtime API bodies: what a device sends to register and what it reads back (§1.4, §1.5).
//! The same bodies travel over HTTPS, MQTT and AMQP.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::service::{TpmAttestation, X509CertificateInfo};

/// `DeviceRegistration`: the register request body. Every member is optional: .NET over MQTT/AMQP sends no
/// body at all, Python sends `"payload": null` (§0.12).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmAttestation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
}

/// The outer `status` of an operation and the `status` of a registration record (§1.5, §1.6).
/// Devices only ever see `assigning`, `assigned`, `failed` and `disabled` (§0.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RegistrationStatus {
    Unassigned,
    Assigning,
    Assigned,
    Failed,
    Disabled,
}

deserialize_case_insensitive!(RegistrationStatus {
    Unassigned => "unassigned",
    Assigning => "assigning",
    Assigned => "assigned",
    Failed => "failed",
    Disabled => "disabled",
});

impl RegistrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unassigned => "unassigned",
            Self::Assigning => "assigning",
            Self::Assigned => "assigned",
            Self::Failed => "failed",
            Self::Disabled => "disabled",
        }
    }
    /// Whether an operation in this status is finished (a poll answers 200).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Assigned | Self::Failed | Self::Disabled)
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Unassigned, Self::Assigning, Self::Assigned, Self::Failed, Self::Disabled]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

/// `substatus` of an assigned registration (§7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Substatus {
    InitialAssignment,
    DeviceDataMigrated,
    DeviceDataReset,
    ReprovisionedToInitialAssignment,
}

deserialize_case_insensitive!(Substatus {
    InitialAssignment => "initialAssignment",
    DeviceDataMigrated => "deviceDataMigrated",
    DeviceDataReset => "deviceDataReset",
    ReprovisionedToInitialAssignment => "reprovisionedToInitialAssignment",
});

impl Substatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InitialAssignment => "initialAssignment",
            Self::DeviceDataMigrated => "deviceDataMigrated",
            Self::DeviceDataReset => "deviceDataReset",
            Self::ReprovisionedToInitialAssignment => "reprovisionedToInitialAssignment",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::InitialAssignment, Self::DeviceDataMigrated, Self::DeviceDataReset, Self::ReprovisionedToInitialAssignment]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

/// `RegistrationOperationStatus`: the answer to register and to every poll (§1.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationOperationStatus {
    pub operation_id: String,
    pub status: RegistrationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<DeviceRegistrationResult>,
}

/// `DeviceRegistrationResult` (`registrationState` inside an operation status).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistrationResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::service::opt_time")]
    pub created_date_time_utc: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_hub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RegistrationStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substatus: Option<Substatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::service::opt_time")]
    pub last_updated_date_time_utc: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmRegistrationResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<X509RegistrationResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKeyRegistrationResult>,
    /// The certificate issued from the register's `csr` (2025-07-01-preview and later), base64 DER: the device's
    /// first, then the issuing CA's chain up to its root. Never in a status look-up's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_certificate_chain: Option<Vec<String>>,
}

/// The 401 answer to a TPM device's first register (§1.10): no `status` member (the C SDK recognises a
/// challenge by its absence), the authentication key to activate, and the `skn` to sign with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmChallengeResponse {
    pub message: String,
    pub authentication_key: String,
    pub key_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmRegistrationResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509RegistrationResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_info: Option<X509CertificateInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_certificate_info: Option<X509CertificateInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyRegistrationResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_bodies_of_every_sdk_parse() {
        for body in [
            r#"{"registrationId":"dev1"}"#,
            r#"{"payload": null, "registrationId": "dev1"}"#,
            r#"{"registrationId":"dev1","payload":{"a":1},"unknown":true}"#,
            r#"{}"#,
        ] {
            let r: DeviceRegistration = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert!(r.registration_id.is_none() || r.registration_id.as_deref() == Some("dev1"));
        }
    }

    #[test]
    fn operation_status_omits_absent_members() {
        let s = RegistrationOperationStatus { operation_id: "op1".into(), status: RegistrationStatus::Assigning, registration_state: None };
        assert_eq!(serde_json::to_string(&s).unwrap_or_default(), r#"{"operationId":"op1","status":"assigning"}"#);
    }
}
