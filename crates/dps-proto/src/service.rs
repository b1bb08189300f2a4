//! Service (management) API bodies: enrollments, groups, registration states, queries and bulk
//! operations (§5.3, swagger 2021-10-01). Members the service computes (`etag`, timestamps, `info`) are
//! optional so that a client may send them back unchanged.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::device::{RegistrationStatus, Substatus};

/// A twin property bag (`TwinCollection`): arbitrary members, kept as sent.
pub type TwinCollection = Map<String, Value>;

/// Formats a time the way Azure does: RFC 3339, UTC, 7 fractional digits (`2020-04-10T05:24:22.4718526Z`).
pub fn format_time(t: &DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let nanos = t.timestamp_subsec_nanos();
    // The common case written directly (every document carries two times; the bulk import writes many).
    if (0..=9999).contains(&t.year()) && nanos < 1_000_000_000 {
        let (d, h) = (t.date_naive(), t.time());
        let mut out = String::with_capacity(28);
        for (n, width, then) in [
            (d.year().unsigned_abs(), 4, '-'),
            (d.month(), 2, '-'),
            (d.day(), 2, 'T'),
            (h.hour(), 2, ':'),
            (h.minute(), 2, ':'),
            (h.second(), 2, '.'),
            (nanos / 100, 7, 'Z'),
        ] {
            push_digits(&mut out, n, width);
            out.push(then);
        }
        return out;
    }
    format_time_rfc3339(t)
}

/// `n` in decimal, zero-padded to `width` digits (`n` has at most `width` digits).
fn push_digits(out: &mut String, n: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        out.push(char::from(b'0' + (n / div % 10) as u8));
        div /= 10;
    }
}

/// [`format_time`] through chrono's RFC 3339 (years outside 0–9999, leap seconds).
fn format_time_rfc3339(t: &DateTime<Utc>) -> String {
    let micros = t.to_rfc3339_opts(SecondsFormat::Micros, true);
    // Micros gives 6 digits; Azure's .NET formatting gives 7 (100 ns ticks).
    let ticks = t.timestamp_subsec_nanos() / 100;
    match micros.split_once('.') {
        Some((head, _)) => format!("{head}.{ticks:07}Z"),
        None => micros,
    }
}

/// Serde adapter for optional timestamps in Azure's format; parses any RFC 3339 time.
pub mod opt_time {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(t) => s.serialize_str(&format_time(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let v: Option<String> = Option::deserialize(d)?;
        match v {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(&s).map(|t| Some(t.with_timezone(&Utc))).map_err(serde::de::Error::custom),
        }
    }
}

/// Serde adapters for read-only members a client may send back (`registrationState`, certificate `info`, the
/// timestamps): whatever they hold, a write ignores them, so a value this service cannot parse is dropped
/// rather than refusing the document (a GET → edit → PUT round trip must never fail on them).
pub mod read_only {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    pub fn deserialize<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
        Ok(Option::<Value>::deserialize(d)?.and_then(|v| serde_json::from_value(v).ok()))
    }

    /// The same for a timestamp (`opt_time`'s format).
    pub mod time {
        use super::*;
        use chrono::{DateTime, Utc};
        use serde::Serializer;

        pub fn serialize<S: Serializer>(v: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
            crate::service::opt_time::serialize(v, s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
            let v = Option::<Value>::deserialize(d)?;
            Ok(v.and_then(|v| crate::service::opt_time::deserialize(v).ok()).flatten())
        }
    }
}

/// Serde adapter for a certificate's validity times in `X509CertificateInfo`: whole seconds, no fraction
/// (`2017-11-14T12:34:18Z`), as Azure shows them; parses any RFC 3339 time.
pub mod opt_time_seconds {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        super::opt_time::deserialize(d)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ProvisioningStatus {
    #[default]
    Enabled,
    Disabled,
}

deserialize_case_insensitive!(ProvisioningStatus { Enabled => "enabled", Disabled => "disabled" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AllocationPolicy {
    Hashed,
    GeoLatency,
    Static,
    Custom,
}

deserialize_case_insensitive!(AllocationPolicy {
    Hashed => "hashed",
    GeoLatency => "geoLatency",
    Static => "static",
    Custom => "custom",
});

impl AllocationPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hashed => "hashed",
            Self::GeoLatency => "geoLatency",
            Self::Static => "static",
            Self::Custom => "custom",
        }
    }
    /// Accepts the REST names and the CLI's spellings (`geolatency`), case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Hashed, Self::GeoLatency, Self::Static, Self::Custom].into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AttestationType {
    None,
    Tpm,
    X509,
    SymmetricKey,
}

deserialize_case_insensitive!(AttestationType { None => "none", Tpm => "tpm", X509 => "x509", SymmetricKey => "symmetricKey" });

impl AttestationType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Tpm => "tpm",
            Self::X509 => "x509",
            Self::SymmetricKey => "symmetricKey",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationMechanism {
    #[serde(rename = "type")]
    pub kind: AttestationType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmAttestation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<X509Attestation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKeyAttestation>,
}

impl AttestationMechanism {
    pub fn symmetric_key(primary: Option<String>, secondary: Option<String>) -> Self {
        Self {
            kind: AttestationType::SymmetricKey,
            tpm: None,
            x509: None,
            symmetric_key: Some(SymmetricKeyAttestation { primary_key: primary, secondary_key: secondary }),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmAttestation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endorsement_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_root_key: Option<String>,
}

#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyAttestation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_key: Option<String>,
}

/// Keys are secrets: Debug never shows them.
impl std::fmt::Debug for SymmetricKeyAttestation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymmetricKeyAttestation")
            .field("primary_key", &self.primary_key.as_ref().map(|_| "<redacted>"))
            .field("secondary_key", &self.secondary_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Attestation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificates: Option<X509Certificates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_certificates: Option<X509Certificates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_references: Option<X509CaReferences>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Certificates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<X509CertificateWithInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<X509CertificateWithInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CertificateWithInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Computed by the service; a client's copy is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "read_only::deserialize")]
    pub info: Option<X509CertificateInfo>,
}

/// `X509CertificateInfo` (§1.5): names most specific first (`CN=…, O=…, C=…`), validity times in whole
/// seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CertificateInfo {
    pub subject_name: String,
    pub sha1_thumbprint: String,
    pub sha256_thumbprint: String,
    pub issuer_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_time_seconds")]
    pub not_before_utc: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_time_seconds")]
    pub not_after_utc: Option<DateTime<Utc>>,
    pub serial_number: String,
    pub version: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CaReferences {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCapabilities {
    #[serde(default)]
    pub iot_edge: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitialTwin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<TwinCollection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<InitialTwinProperties>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitialTwinProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<TwinCollection>,
}

/// `reprovisionPolicy`: both members default to `true`; their names are matched case-insensitively
/// (`UpdateHubAssignment` from a .NET client serialising without camelCase), like the enum strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReprovisionPolicy {
    pub update_hub_assignment: bool,
    pub migrate_device_data: bool,
}

impl<'de> Deserialize<'de> for ReprovisionPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let members = Map::<String, Value>::deserialize(d)?;
        let mut policy = Self::default();
        for (name, value) in members {
            let slot = if name.eq_ignore_ascii_case("updateHubAssignment") {
                &mut policy.update_hub_assignment
            } else if name.eq_ignore_ascii_case("migrateDeviceData") {
                &mut policy.migrate_device_data
            } else {
                continue; // unknown members are ignored (§0.12)
            };
            *slot = match value {
                Value::Bool(b) => b,
                Value::Null => true,
                other => return Err(serde::de::Error::custom(format!("reprovisionPolicy.{name} must be a boolean, not {other}"))),
            };
        }
        Ok(policy)
    }
}

impl Default for ReprovisionPolicy {
    fn default() -> Self {
        Self { update_hub_assignment: true, migrate_device_data: true }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomAllocationDefinition {
    pub webhook_url: String,
    pub api_version: String,
}

/// `IndividualEnrollment` (§5.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndividualEnrollment {
    pub registration_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "read_only::deserialize")]
    pub registration_state: Option<DeviceRegistrationState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional_device_information: Option<TwinCollection>,
    pub attestation: AttestationMechanism,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<DeviceCapabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hub_host_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<InitialTwin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_status: Option<ProvisioningStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprovision_policy: Option<ReprovisionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "read_only::time")]
    pub created_date_time_utc: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "read_only::time")]
    pub last_updated_date_time_utc: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_policy: Option<AllocationPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hubs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_allocation_definition: Option<CustomAllocationDefinition>,
    /// 2025-07-01-preview: the credential policy that issues certificates to devices sending a `csr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_policy_name: Option<String>,
    /// Members this service does not interpret — older preview members (`clientCertificateIssuancePolicy`,
    /// `trustBundleId`) and any other — kept as sent and returned on reads.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `EnrollmentGroup` (§5.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentGroup {
    pub enrollment_group_id: String,
    pub attestation: AttestationMechanism,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<DeviceCapabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hub_host_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<InitialTwin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_status: Option<ProvisioningStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprovision_policy: Option<ReprovisionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "read_only::time")]
    pub created_date_time_utc: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "read_only::time")]
    pub last_updated_date_time_utc: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_policy: Option<AllocationPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hubs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_allocation_definition: Option<CustomAllocationDefinition>,
    /// 2025-07-01-preview: the credential policy that issues certificates to devices sending a `csr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_policy_name: Option<String>,
    /// Members this service does not interpret — older preview members (`clientCertificateIssuancePolicy`,
    /// `trustBundleId`) and any other — kept as sent and returned on reads.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `DeviceRegistrationState`: a registration record as the service API shows it (§5.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistrationState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_time")]
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
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_time")]
    pub last_updated_date_time_utc: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// The certificate last issued to the device from a CSR (an extension of this service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_certificate: Option<crate::IssuedCertificate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuerySpecification {
    pub query: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BulkMode {
    #[serde(rename = "create")]
    Create,
    #[serde(rename = "update")]
    Update,
    #[serde(rename = "updateIfMatchETag")]
    UpdateIfMatchEtag,
    #[serde(rename = "delete")]
    Delete,
}

// `updateIfMatchEtag` (the .NET SDK's spelling) is the same name, case aside.
deserialize_case_insensitive!(BulkMode {
    Create => "create",
    Update => "update",
    UpdateIfMatchEtag => "updateIfMatchETag",
    Delete => "delete",
});

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperation {
    pub enrollments: Vec<IndividualEnrollment>,
    pub mode: BulkMode,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentGroupOperation {
    pub enrollment_groups: Vec<EnrollmentGroup>,
    pub mode: BulkMode,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperationResult {
    pub is_successful: bool,
    #[serde(default)]
    pub errors: Vec<BulkEnrollmentOperationError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperationError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<String>,
    pub error_code: i64,
    pub error_status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_like_azure() {
        let t = DateTime::parse_from_rfc3339("2020-04-10T05:24:22.4718526Z").map(|t| t.with_timezone(&Utc)).expect("map");
        assert_eq!(format_time(&t), "2020-04-10T05:24:22.4718526Z");
        for secs in [0i64, 1, 59, 86_399, 951_782_400, 1_700_000_000, 4_102_444_799, 253_402_300_799] {
            for nanos in [0u32, 100, 999_999_999, 471_852_600] {
                let t = DateTime::from_timestamp(secs, nanos).unwrap_or_default();
                assert_eq!(format_time(&t), format_time_rfc3339(&t), "{secs}.{nanos}");
            }
        }
    }

    /// §5.3 enum strings in any case on input (issue 13, fix 4); output keeps Azure's camelCase.
    #[test]
    fn enum_strings_are_read_case_insensitively_and_written_in_camel_case() {
        let doc = serde_json::json!({
            "registrationId": "ci-1",
            "attestation": { "type": "SymmetricKey", "symmetricKey": {} },
            "provisioningStatus": "DISABLED",
            "allocationPolicy": "GeoLatency",
            "reprovisionPolicy": { "UpdateHubAssignment": false, "MIGRATEDEVICEDATA": false },
            "registrationState": { "status": "Assigned", "substatus": "DEVICEDATAMIGRATED" }
        });
        let e: IndividualEnrollment = serde_json::from_value(doc).expect("deserialises");
        assert_eq!(e.attestation.kind, AttestationType::SymmetricKey);
        assert_eq!(e.provisioning_status, Some(ProvisioningStatus::Disabled));
        assert_eq!(e.allocation_policy, Some(AllocationPolicy::GeoLatency));
        assert_eq!(e.reprovision_policy, Some(ReprovisionPolicy { update_hub_assignment: false, migrate_device_data: false }));
        let state = e.registration_state.clone().unwrap_or_default();
        assert_eq!((state.status, state.substatus), (Some(RegistrationStatus::Assigned), Some(Substatus::DeviceDataMigrated)));

        let out = serde_json::to_value(&e).unwrap_or_default();
        assert_eq!(out["attestation"]["type"], "symmetricKey");
        assert_eq!(out["provisioningStatus"], "disabled");
        assert_eq!(out["allocationPolicy"], "geoLatency");
        assert_eq!(out["reprovisionPolicy"], serde_json::json!({ "updateHubAssignment": false, "migrateDeviceData": false }));
        assert_eq!(out["registrationState"]["status"], "assigned");
        assert_eq!(out["registrationState"]["substatus"], "deviceDataMigrated");

        for (text, mode) in [
            ("\"CREATE\"", BulkMode::Create),
            ("\"updateIfMatchEtag\"", BulkMode::UpdateIfMatchEtag),
            ("\"UpdateIfMatchETag\"", BulkMode::UpdateIfMatchEtag),
            ("\"Delete\"", BulkMode::Delete),
        ] {
            assert_eq!(serde_json::from_str::<BulkMode>(text).ok(), Some(mode), "{text}");
        }
        assert_eq!(serde_json::to_value(BulkMode::UpdateIfMatchEtag).unwrap_or_default(), "updateIfMatchETag");
        for t in [AttestationType::None, AttestationType::Tpm, AttestationType::X509, AttestationType::SymmetricKey] {
            let upper = serde_json::Value::String(t.as_str().to_uppercase());
            assert_eq!(serde_json::from_value::<AttestationType>(upper).ok(), Some(t));
        }
    }

    #[test]
    fn unknown_enum_strings_and_wrong_types_are_still_refused() {
        let err = serde_json::from_str::<AllocationPolicy>("\"roundRobin\"").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("unknown variant `roundRobin`") && err.contains("geoLatency"), "{err}");
        assert!(serde_json::from_str::<ProvisioningStatus>("\"enabledd\"").is_err());
        assert!(serde_json::from_str::<ProvisioningStatus>("1").is_err());
        assert!(serde_json::from_str::<AttestationType>("\"x 509\"").is_err());
        assert!(serde_json::from_str::<ReprovisionPolicy>(r#"{"updateHubAssignment":"yes"}"#).is_err());
        // Missing members keep their default; unknown ones are ignored.
        let p: ReprovisionPolicy = serde_json::from_str(r#"{"migrateDeviceData":false,"other":1}"#).expect("parses");
        assert_eq!(p, ReprovisionPolicy { update_hub_assignment: true, migrate_device_data: false });
    }

    /// `X509CertificateInfo` times are whole seconds (issue 13, fix 7), other times keep 7 digits.
    #[test]
    fn certificate_times_have_no_fraction() {
        let t = DateTime::parse_from_rfc3339("2026-11-26T08:45:01Z").map(|t| t.with_timezone(&Utc)).ok();
        let info = X509CertificateInfo { not_before_utc: t, not_after_utc: t, ..Default::default() };
        let v = serde_json::to_value(&info).unwrap_or_default();
        assert_eq!((v["notBeforeUtc"].as_str(), v["notAfterUtc"].as_str()), (Some("2026-11-26T08:45:01Z"), Some("2026-11-26T08:45:01Z")));
        // Anything RFC 3339 is read back, including the old 7-digit form a client may send back.
        let back: X509CertificateInfo = serde_json::from_value(serde_json::json!({
            "subjectName": "CN=a", "sha1Thumbprint": "", "sha256Thumbprint": "", "issuerName": "CN=a",
            "notBeforeUtc": "2026-11-26T08:45:01.0000000Z", "serialNumber": "01", "version": 3
        }))
        .expect("deserialises");
        assert_eq!(back.not_before_utc, t);
    }

    #[test]
    fn the_documented_tpm_enrollment_round_trips() {
        let doc = r#"{
  "registrationId": "mbjrvd2rxyfbckl6qmg6rkvszr4y7xynmi35zfwqdhw4hxpxdhva",
  "deviceId": "sensor-17",
  "attestation": { "type": "tpm", "tpm": { "endorsementKey": "AToAAQALAAMAsgAg", "storageRootKey": "ARoAAQALAAMEcgAA" } },
  "capabilities": { "iotEdge": false },
  "initialTwin": { "tags": { "site": "b12" }, "properties": { "desired": { "interval": 30 } } },
  "provisioningStatus": "enabled",
  "reprovisionPolicy": { "updateHubAssignment": true, "migrateDeviceData": true },
  "allocationPolicy": "hashed",
  "iotHubs": [ "hub-a.example.net" ],
  "etag": "\"0a1b2c3d-0000-0100-0000-5f0e0d0c0000\"",
  "createdDateTimeUtc": "2024-01-01T00:00:00.0000000Z",
  "lastUpdatedDateTimeUtc": "2024-01-01T00:00:00.0000000Z"
}"#;
        let e: IndividualEnrollment = serde_json::from_str(doc).expect("parses");
        let back: serde_json::Value = serde_json::to_value(&e).unwrap_or_default();
        let orig: serde_json::Value = serde_json::from_str(doc).unwrap_or_default();
        assert_eq!(back, orig);
    }
}
