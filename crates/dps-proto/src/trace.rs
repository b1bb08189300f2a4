//! A registration's decision trace: how the engine decided, step by step (extension, `GET /registrations/{id}/trace`).
//!
//! The engine writes a [`DecisionTrace`] with each registration record; the CLI (`dps registration explain`) and
//! the console read it back from a [`RegistrationTrace`] answer. The JSON is the one stored since the first
//! release — records already in a database read as they are — so every member is optional on input, members a
//! step did not reach are left out on output, and members this type does not model are kept in `extra` (the
//! service adds `throttled` there when the limits profile refused the device).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{AttestationType, DeviceRegistrationState, Substatus};

/// Which enrollment a device matched: `{ "kind": "individual" | "group", "id": … }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "id")]
pub enum EnrollmentRef {
    Individual(String),
    Group(String),
}

impl EnrollmentRef {
    pub fn id(&self) -> &str {
        match self {
            Self::Individual(id) | Self::Group(id) => id,
        }
    }
}

/// The answer of `GET /registrations/{id}/trace` and `POST /registrations/{id}/reprovision`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationTrace {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<DeviceRegistrationState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<EnrollmentRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<AttestationType>,
    #[serde(default)]
    pub trace: Option<DecisionTrace>,
}

impl RegistrationTrace {
    /// Reads an answer member by member: a member that does not read (written by another version of the
    /// service) is left out and the rest still shows.
    pub fn from_value(v: &Value) -> Self {
        fn member<T: serde::de::DeserializeOwned>(v: &Value, name: &str) -> Option<T> {
            v.get(name).filter(|m| !m.is_null()).and_then(|m| T::deserialize(m).ok())
        }
        Self {
            registration_state: member(v, "registrationState"),
            enrollment: member(v, "enrollment"),
            attestation: member(v, "attestation"),
            trace: member(v, "trace"),
        }
    }
}

/// How one registration was decided, in the order the engine decides: the operation and what it matched, the
/// re-provisioning policy, the allocation, the twin, the TPM's hub key, the hub connector, then the outcome
/// (`substatus` and `why`, or `error`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionTrace {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<AttestationType>,
    /// The transport (`https`, `mqtt`, `amqp`…); `null` for a registration the console started.
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<EnrollmentRef>,
    /// Why the re-provisioning policy is not the enrollment's (legacy api-versions, §7.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprovision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<AllocationStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin: Option<TwinStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<ConnectorStep>,
    /// The certificate issued from the device's CSR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substatus: Option<Substatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TraceError>,
    /// Members not modelled here, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A certificate issued from the device's CSR: under which policy, and which one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStep {
    pub policy: String,
    pub serial_number: String,
    pub issuer_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::service::opt_time")]
    pub not_after_utc: Option<chrono::DateTime<chrono::Utc>>,
}

/// How the hub was chosen, by policy (`policy` names the variant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "camelCase")]
pub enum AllocationStep {
    /// The re-provisioning policy never re-assigns: the device keeps the hub it has.
    Keep {
        hub: String,
    },
    Hashed(Scored),
    Static(Scored),
    GeoLatency(GeoScored),
    Custom(WebhookStep),
}

impl AllocationStep {
    /// The policy's wire name (`keep` for a kept hub).
    pub fn policy(&self) -> &'static str {
        match self {
            Self::Keep { .. } => "keep",
            Self::Hashed(_) => "hashed",
            Self::Static(_) => "static",
            Self::GeoLatency(_) => "geoLatency",
            Self::Custom(_) => "custom",
        }
    }

    /// The hub chosen; `None` when the webhook named none that could be used.
    pub fn hub(&self) -> Option<&str> {
        match self {
            Self::Keep { hub } => Some(hub.as_str()),
            Self::Hashed(s) | Self::Static(s) => Some(s.hub.as_str()),
            Self::GeoLatency(g) => Some(g.hub.as_str()),
            Self::Custom(w) => w.hub.as_deref(),
        }
        .filter(|h| !h.is_empty())
    }

    pub fn candidates(&self) -> &[CandidateScore] {
        match self {
            Self::Hashed(s) | Self::Static(s) => &s.candidates,
            Self::GeoLatency(g) => &g.candidates,
            Self::Keep { .. } | Self::Custom(_) => &[],
        }
    }

    /// The allocator's reason, in words.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Hashed(s) | Self::Static(s) => Some(&s.reason),
            Self::GeoLatency(g) => Some(&g.reason),
            Self::Keep { .. } | Self::Custom(_) => None,
        }
    }
}

/// An allocator's choice among scored candidates (`hashed`, `static`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scored {
    #[serde(default)]
    pub hub: String,
    #[serde(default)]
    pub candidates: Vec<CandidateScore>,
    #[serde(default)]
    pub reason: String,
}

/// `geoLatency`'s choice, with the region the device was placed in and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeoScored {
    #[serde(default)]
    pub hub: String,
    #[serde(default)]
    pub candidates: Vec<CandidateScore>,
    #[serde(default)]
    pub reason: String,
    /// `null` when neither the device's network nor the service has a region.
    #[serde(default)]
    pub device_region: Option<String>,
    #[serde(default)]
    pub region_reason: String,
}

/// One candidate hub and its score (§7.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CandidateScore {
    pub hub: String,
    pub weight: u32,
    pub score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_source: Option<LatencySource>,
}

/// Where a latency figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LatencySource {
    SameRegion,
    Table,
    Default,
    Measured,
}

impl LatencySource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SameRegion => "sameRegion",
            Self::Table => "table",
            Self::Default => "default",
            Self::Measured => "measured",
        }
    }
}

/// The custom allocation webhook (§6): where it was called (without its query), the hubs offered, every
/// attempt, and — when it answered usefully — the hub it chose and whether it returned a twin and a payload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookStep {
    #[serde(default)]
    pub webhook: String,
    #[serde(default)]
    pub linked_hubs: Vec<String>,
    #[serde(default)]
    pub attempts: Vec<WebhookAttempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned_initial_twin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned_payload: Option<bool>,
}

/// One call of the webhook: an HTTP answer, or a call that got none (time-out, connection error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WebhookAttempt {
    Answered {
        status: u16,
        ms: u64,
        /// Retried (≥ 429).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        retry: bool,
    },
    Unanswered {
        error: String,
        ms: u64,
        #[serde(default)]
        retry: bool,
    },
}

impl WebhookAttempt {
    pub fn ms(&self) -> u64 {
        match self {
            Self::Answered { ms, .. } | Self::Unanswered { ms, .. } => *ms,
        }
    }
    pub fn retried(&self) -> bool {
        match self {
            Self::Answered { retry, .. } | Self::Unanswered { retry, .. } => *retry,
        }
    }
}

/// What happened to the device's twin (§7.3, §7.4). Stored as its sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum TwinStep {
    /// The initial twin (the webhook's, else the enrollment's) was applied.
    InitialApplied,
    /// The twin of the previous hub was carried to the new one.
    Migrated,
    /// A migration found no twin in the previous hub.
    NothingToMigrate,
    /// A first or reset assignment without an initial twin.
    NoInitialTwin,
    /// Same hub: the hub keeps the twin it has.
    Kept,
    /// A sentence this version does not know.
    Other(String),
}

impl TwinStep {
    const SENTENCES: [(TwinStep, &'static str); 5] = [
        (Self::InitialApplied, "initial twin applied"),
        (Self::Migrated, "migrated from the previous hub"),
        (Self::NothingToMigrate, "the previous hub had no twin to carry"),
        (Self::NoInitialTwin, "no initial twin configured"),
        (Self::Kept, "the hub's twin is kept"),
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(s) => s,
            known => Self::SENTENCES.iter().find(|(k, _)| k == known).map_or("", |(_, s)| s),
        }
    }
}

impl From<String> for TwinStep {
    fn from(s: String) -> Self {
        Self::SENTENCES.into_iter().find(|(_, text)| *text == s).map_or(Self::Other(s), |(k, _)| k)
    }
}

impl From<TwinStep> for String {
    fn from(t: TwinStep) -> Self {
        t.as_str().to_owned()
    }
}

/// A TPM device's keys (§4.4.3): the challenge it answered, and the hub key (K2) it was given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    #[serde(default)]
    pub hub_key: String,
}

/// The hub connector's last attempt, and the failures of the attempts before it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorStep {
    #[serde(default)]
    pub hub: String,
    /// [`ConnectorStep::CREATED`], or the connector's error.
    #[serde(default)]
    pub result: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_attempts: Vec<String>,
}

impl ConnectorStep {
    /// The result of a connector that created (or updated) the identity.
    pub const CREATED: &'static str = "identity created or updated";

    pub fn created(&self) -> bool {
        self.result == Self::CREATED
    }
}

/// The error a failed registration ended with (its DPS code and public message).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceError {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Traces as the engine has written them since its first release read and write back unchanged.
    #[test]
    fn stored_traces_round_trip() {
        let stored = [
            json!({ "operationId": "4.a", "protocol": null, "why": "the assignment is in progress" }),
            json!({ "operationId": "4.b", "attestation": "symmetricKey", "protocol": "mqtt", "enrollment": { "kind": "group", "id": "g" },
                    "allocation": { "policy": "hashed", "hub": "b", "candidates": [
                        { "hub": "a", "weight": 1, "score": 0.25 }, { "hub": "b", "weight": 2, "score": 1.5 } ], "reason": "highest weighted score" },
                    "twin": "initial twin applied", "connector": { "hub": "b", "result": "identity created or updated" },
                    "substatus": "initialAssignment", "why": "first assignment of this device" }),
            json!({ "operationId": "4.c", "attestation": "x509", "protocol": "https", "enrollment": { "kind": "individual", "id": "d" },
                    "reprovision": "legacy", "allocation": { "policy": "geoLatency", "hub": "a", "candidates": [
                        { "hub": "a", "weight": 1, "score": 1.0, "region": "eu", "latencyMs": 12, "latencySource": "table" } ],
                        "reason": "lowest latency", "deviceRegion": null, "regionReason": "source address unknown → the service's region" },
                    "twin": "the previous hub had no twin to carry",
                    "tpm": { "hubKey": "new keys in the hub" },
                    "connector": { "hub": "a", "result": "hub unreachable", "failedAttempts": ["hub unreachable", "hub unreachable"] },
                    "error": { "code": 503001, "message": "hub 'a' stayed unavailable" } }),
            json!({ "operationId": "4.d", "attestation": "tpm", "protocol": "amqp", "enrollment": { "kind": "individual", "id": "t" },
                    "allocation": { "policy": "custom", "webhook": "http://fn/api", "linkedHubs": ["a", "b"],
                        "attempts": [ { "status": 500, "ms": 3, "retry": true }, { "error": "refused", "ms": 1, "retry": true }, { "status": 200, "ms": 2 } ],
                        "hub": "a", "returnedInitialTwin": true, "returnedPayload": false },
                    "twin": "something a later version says", "substatus": "deviceDataReset", "why": "re-provisioned",
                    "throttled": { "polls": 1 } }),
            json!({ "operationId": "4.e", "protocol": "https", "allocation": { "policy": "keep", "hub": "a" }, "why": "kept" }),
            json!({ "why": "test" }),
        ];
        for v in stored {
            let t: DecisionTrace = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
            let mut back = serde_json::to_value(&t).unwrap_or_default();
            if v.get("protocol").is_none() {
                back.as_object_mut().map(|o| o.remove("protocol"));
            }
            assert_eq!(back, v);
        }
    }

    #[test]
    fn steps_read_as_types() {
        let v = json!({ "allocation": { "policy": "custom", "webhook": "w", "linkedHubs": [], "attempts": [ { "error": "e", "ms": 4, "retry": true } ] },
                        "twin": "migrated from the previous hub", "throttled": { "polls": 2 }, "error": { "code": 400209, "message": "m" } });
        let t: DecisionTrace = serde_json::from_value(v).unwrap_or_default();
        let a = t.allocation.unwrap_or(AllocationStep::Keep { hub: String::new() });
        assert_eq!((a.policy(), a.hub()), ("custom", None));
        let AllocationStep::Custom(w) = a else { panic!("custom") };
        assert_eq!(w.attempts, [WebhookAttempt::Unanswered { error: "e".into(), ms: 4, retry: true }]);
        assert_eq!(t.twin, Some(TwinStep::Migrated));
        assert_eq!(t.extra.get("throttled"), Some(&json!({ "polls": 2 })));
        assert_eq!(t.error.map(|e| e.code), Some(400209));
    }

    #[test]
    fn an_answer_reads_member_by_member() {
        let a = RegistrationTrace::from_value(&json!({
            "registrationState": { "registrationId": "d", "status": "assigned" },
            "enrollment": { "kind": "group", "id": "g" }, "attestation": "SymmetricKey",
            "trace": { "allocation": { "policy": "no such policy" } }
        }));
        assert_eq!(a.enrollment, Some(EnrollmentRef::Group("g".into())));
        assert_eq!(a.attestation, Some(AttestationType::SymmetricKey));
        assert_eq!(a.trace, None, "a trace that does not read is left out");
        assert_eq!(a.registration_state.and_then(|s| s.registration_id).as_deref(), Some("d"));
        assert_eq!(RegistrationTrace::from_value(&json!({})), RegistrationTrace::default());
    }
}
