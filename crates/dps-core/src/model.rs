//! Domain records the engine keeps: operations, registration records, access policies, paging.

use chrono::{DateTime, Utc};
use dps_crypto::Secret;
use dps_proto::{AttestationType, DeviceRegistrationResult, DeviceRegistrationState, RegistrationStatus, X509RegistrationResult};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which enrollment a device matched (a wire type: traces and the service API show it).
pub use dps_proto::trace::EnrollmentRef;

/// A device registration in flight or finished (§8 operation store). Persisted, so a poll is answered
/// after a restart and an interrupted assignment is resumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub operation_id: String,
    /// As the device presented it.
    pub registration_id: String,
    pub status: RegistrationStatus,
    pub enrollment: EnrollmentRef,
    pub attestation: AttestationType,
    /// The device's custom payload, for the custom-allocation webhook.
    #[serde(default)]
    pub payload: Option<Value>,
    #[serde(default)]
    pub force_registration: bool,
    /// TPM devices: the EK and SRK (base64 TPM2B_PUBLIC) of the challenge the device answered, to wrap the
    /// hub key K2 for its TPM when the registration is assigned (§4.4.3 step 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<dps_proto::TpmAttestation>,
    /// The transport the device registered over (`https`, `mqtt`, `mqtt-ws`, `amqp`, `amqp-ws`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The device's source address (the `geoLatency` policy maps it to a region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<std::net::IpAddr>,
    /// The device API version the device sent (≤ 2018-04-01 selects the legacy re-provisioning of §7.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// X.509 devices: their certificate's info and the group's signing certificate (public data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<X509RegistrationResult>,
    /// The device's certificate signing request (base64 DER), checked at register, signed at the assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
    /// The `registrationState` answered once the operation is terminal.
    #[serde(default)]
    pub result: Option<DeviceRegistrationResult>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

impl Operation {
    /// A new operation, `assigning`, with nothing but its identity: the caller sets what it knows (payload,
    /// transport, certificates…).
    pub fn assigning(
        operation_id: impl Into<String>,
        registration_id: impl Into<String>,
        enrollment: EnrollmentRef,
        attestation: AttestationType,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            operation_id: operation_id.into(),
            registration_id: registration_id.into(),
            status: RegistrationStatus::Assigning,
            enrollment,
            attestation,
            payload: None,
            force_registration: false,
            tpm: None,
            protocol: None,
            source: None,
            api_version: None,
            x509: None,
            csr: None,
            result: None,
            created: now,
            updated: now,
        }
    }
}

/// A registration record (`DeviceRegistrationState` plus what the service needs to list and explain it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationRecord {
    pub state: DeviceRegistrationState,
    pub enrollment: EnrollmentRef,
    pub attestation: AttestationType,
    /// How the decision was made (candidates, scores, connector result), for `dps registration explain`.
    #[serde(default)]
    pub trace: Option<Value>,
    /// The hub of the device's first assignment (`reprovisionedToInitialAssignment` when it returns there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_hub: Option<String>,
}

impl RegistrationRecord {
    pub fn registration_id(&self) -> &str {
        self.state.registration_id.as_deref().unwrap_or_default()
    }
    pub fn group_id(&self) -> Option<&str> {
        match &self.enrollment {
            EnrollmentRef::Group(g) => Some(g),
            EnrollmentRef::Individual(_) => None,
        }
    }
}

/// Rights of a shared access policy (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Right {
    ServiceConfig,
    EnrollmentRead,
    EnrollmentWrite,
    RegistrationStatusRead,
    RegistrationStatusWrite,
}

impl Right {
    pub const ALL: [Right; 5] =
        [Self::ServiceConfig, Self::EnrollmentRead, Self::EnrollmentWrite, Self::RegistrationStatusRead, Self::RegistrationStatusWrite];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServiceConfig => "ServiceConfig",
            Self::EnrollmentRead => "EnrollmentRead",
            Self::EnrollmentWrite => "EnrollmentWrite",
            Self::RegistrationStatusRead => "RegistrationStatusRead",
            Self::RegistrationStatusWrite => "RegistrationStatusWrite",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// A shared access policy of the service API.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    pub name: String,
    pub primary_key: Secret,
    pub secondary_key: Secret,
    pub rights: Vec<Right>,
}

/// What a conditional write requires of the current entity (`If-Match`, bulk modes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Unconditional: create or replace.
    None,
    /// `If-Match: *`: the entity must exist.
    Exists,
    /// The entity must exist with this etag.
    Etag(String),
    /// The entity must not exist (bulk `create`).
    NotExists,
}

impl Precondition {
    /// From an `If-Match` header value.
    pub fn from_if_match(v: Option<&str>) -> Self {
        match v.map(str::trim) {
            None | Some("") => Self::None,
            Some("*") => Self::Exists,
            Some(v) => Self::Etag(v.to_owned()),
        }
    }
}

/// Etags are compared ignoring surrounding quotes and a weak `W/` prefix (SDKs pass them back in
/// different shapes).
pub fn etag_matches(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> &str {
        let s = s.trim();
        let s = s.strip_prefix("W/").unwrap_or(s);
        s.trim_matches('"')
    }
    norm(a) == norm(b)
}

/// A new etag in Azure's shape: a quoted GUID-like value.
pub fn new_etag() -> String {
    // A version-4 UUID from the thread's CSPRNG (uuid's own `new_v4` asks the OS for every one: a system call
    // per etag, 2 % of a bulk import's CPU).
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut out = String::with_capacity(38);
    out.push('"');
    out.push_str(id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()));
    out.push('"');
    out
}

/// A page of a query: `continuation` is opaque to clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub continuation: Option<String>,
    pub max_items: usize,
    /// Only ids containing this text, case-insensitively (the console's search box).
    pub search: Option<String>,
    /// Only entities meeting every condition (a query's `WHERE`, [`crate::query`]); empty: all of them.
    pub filter: Vec<crate::query::Condition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub continuation: Option<String>,
    /// How many items match the query (all pages together).
    pub total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_etags_are_quoted_version_4_uuids() {
        let (a, b) = (new_etag(), new_etag());
        assert_ne!(a, b);
        let inner = a.trim_matches('"');
        assert_eq!((a.len(), inner.len()), (38, 36), "{a}");
        assert_eq!(uuid::Uuid::parse_str(inner).map(|u| u.get_version_num()), Ok(4), "{a}");
    }

    #[test]
    fn etags_match_in_every_shape_sdks_send() {
        assert!(etag_matches("\"abc\"", "abc"));
        assert!(etag_matches("W/\"abc\"", "\"abc\""));
        assert!(!etag_matches("\"abc\"", "\"abd\""));
        assert_eq!(Precondition::from_if_match(Some("*")), Precondition::Exists);
        assert_eq!(Precondition::from_if_match(None), Precondition::None);
        assert_eq!(Precondition::from_if_match(Some("\"x\"")), Precondition::Etag("\"x\"".into()));
    }
}
