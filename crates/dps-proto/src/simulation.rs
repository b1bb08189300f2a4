//! Simulated devices (#16, `/simulations…` extension routes, the console's Simulate page): what a trainer asks
//! for, and each device's flow as the device saw it on the wire — the steps of a sequence diagram.

use serde::{Deserialize, Serialize};

/// One kind of step in a device's flow, in the order a flow meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FlowKind {
    /// Before the device connects: its software TPM started, its endorsement key enrolled by the operator.
    Setup,
    /// TCP to the service's port.
    Connect,
    /// The TLS handshake: the service's certificate checked against the trusted CA; a client certificate or not.
    Tls,
    /// The transport's sign-in: MQTT CONNECT, AMQP SASL + open/attach (HTTPS has none: every request carries
    /// the token).
    Login,
    /// The register request.
    Register,
    /// TPM: the service's challenge — a key encrypted to the device's endorsement key — and its activation.
    Challenge,
    /// The service took the request: operation id and retry-after.
    Accepted,
    /// The device waits what the service asked (retry-after).
    Wait,
    /// An operation-status poll.
    Poll,
    /// The final answer (assigned, failed, disabled).
    Answer,
    /// The service refused a request (a DPS error code).
    Refused,
    /// The device gave up on its own (network, TLS, a protocol error).
    Error,
}

impl FlowKind {
    /// What happens at this step, in a sentence (the step-through's explanation).
    pub fn explanation(self) -> &'static str {
        match self {
            Self::Setup => "Before the device connects: its TPM is started and the operator enrolls the TPM's endorsement key (EK) in an individual enrollment — on a factory floor, read from the chip or its certificate.",
            Self::Challenge => "TPM: the service encrypts a key to the endorsement key; only this TPM can activate it (ActivateCredential). The TPM imports it and signs the SAS token with it, so the key never leaves the chip.",
            Self::Connect => "The device opens a TCP connection to the service's device port (HTTPS 443, MQTT 8883, AMQP 5671 on Azure).",
            Self::Tls => "TLS: the device checks the service's certificate against the CA it trusts; an X.509 device also presents its own certificate here.",
            Self::Login => "The device signs in on the transport: MQTT CONNECT with the SAS token as password, or AMQP SASL PLAIN, then the links.",
            Self::Register => "The device asks to be registered: registration id, and its SAS token (symmetric key) or its certificate (X.509).",
            Self::Accepted => "The service attested the device and started an operation: it answers 202 with an operation id and how long to wait.",
            Self::Wait => "The device waits the retry-after the service asked for before it polls.",
            Self::Poll => "The device asks for the operation's status with the operation id.",
            Self::Answer => "The operation ended: the device learns its hub and device id (assigned), or why not (failed, disabled).",
            Self::Refused => "The service refused the request with a DPS error code; the device stops here.",
            Self::Error => "The device could not go on (network, TLS or protocol error).",
        }
    }
}

/// Who sent a step's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Device → service.
    Out,
    /// Service → device.
    In,
    /// At the device (waiting, a local error).
    Local,
}

/// One step of a device's flow: when (ms since the device started), what, and the message as sent (secrets
/// masked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowStep {
    pub kind: FlowKind,
    pub direction: Direction,
    pub at_ms: u64,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// TPM devices in one run: each runs a software TPM (a process) while it registers.
pub const MAX_TPM_DEVICES: u32 = 100;
/// The most devices `GET /simulations/{id}?flows=N` answers with their whole flow.
pub const MAX_FLOWS: usize = 100;

/// The transports a simulated device can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SimTransport {
    #[default]
    Https,
    Mqtt,
    Amqp,
    /// MQTT over a WebSocket on the HTTPS port.
    MqttWs,
    /// AMQP over a WebSocket on the HTTPS port.
    AmqpWs,
}

impl SimTransport {
    /// Its name for people (`MQTT over WebSockets`).
    pub const fn label(self) -> &'static str {
        match self {
            Self::Https => "HTTPS",
            Self::Mqtt => "MQTT",
            Self::Amqp => "AMQP",
            Self::MqttWs => "MQTT over WebSockets",
            Self::AmqpWs => "AMQP over WebSockets",
        }
    }

    /// Whether TPM devices can use it (DPS has no TPM attestation over MQTT).
    pub fn carries_tpm(self) -> bool {
        matches!(self, Self::Https | Self::Amqp | Self::AmqpWs)
    }
}

/// What a trainer breaks on purpose (#16 item 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Fault {
    #[default]
    None,
    /// A key no enrollment has.
    WrongKey,
    /// The key derived from another group's key.
    OtherGroupKey,
    /// An id no enrollment names (with a key of nobody's).
    UnknownId,
    /// A SAS token whose expiry has passed.
    ExpiredToken,
    /// Devices of a disabled group.
    DisabledGroup,
    /// Devices of a group whose only hub cannot be reached: they see `assigning` while the service retries the
    /// hub, then `failed` with 503001.
    HubDown,
    /// X.509: certificates issued by a CA the group does not trust.
    UntrustedCa,
    /// X.509: certificates that expired (valid in 2020 only).
    ExpiredCertificate,
    /// X.509: certificates whose CN is not the registration id.
    CnMismatch,
    /// TPM: each device's individual enrollment is disabled.
    DisabledEnrollment,
    /// Devices of a group whose custom allocation webhook (the built-in demo webhook) refuses them: 400207.
    WebhookError,
    /// Devices of a group whose custom allocation webhook answers too late: the service retries it on its
    /// schedule, then fails them with 400207.
    WebhookTimeout,
    /// Devices that ignore retry-after and poll back to back: the Azure limits profile throttles them (429001).
    Throttled,
}

impl Fault {
    /// No fault (a healthy device): what a device's `fault` leaves out on the wire.
    pub fn is_none(&self) -> bool {
        *self == Self::None
    }

    /// Whether the fault applies to devices of `attestation` (`symmetricKey`, `x509` or `tpm`). For TPM devices,
    /// `unknownId` is a TPM whose endorsement key nobody enrolled.
    pub fn fits(self, attestation: &str) -> bool {
        match self {
            Self::None => true,
            Self::UnknownId => attestation == "symmetricKey" || attestation == "tpm",
            Self::WrongKey
            | Self::OtherGroupKey
            | Self::ExpiredToken
            | Self::DisabledGroup
            | Self::HubDown
            | Self::WebhookError
            | Self::WebhookTimeout
            | Self::Throttled => attestation == "symmetricKey",
            Self::UntrustedCa | Self::ExpiredCertificate | Self::CnMismatch => attestation == "x509",
            Self::DisabledEnrollment => attestation == "tpm",
        }
    }
}

/// `POST /simulations`: start `count` simulated devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimulationRequest {
    /// `symmetricKey` (keys of a group or an enrollment), `x509` (certificates of the CA `x509Ca` says) or `tpm` (a
    /// software TPM per device, enrolled in an individual enrollment of its own).
    #[serde(default = "symmetric_key")]
    pub attestation: String,
    #[serde(default)]
    pub transport: SimTransport,
    /// 1 to 1,000.
    pub count: u32,
    /// The symmetric-key group the devices derive their keys from; absent: the individual `enrollment`, or
    /// the group `simulated-devices`, made when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// An individual symmetric-key enrollment (then `count` is 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<String>,
    /// The named group or enrollment is made when missing (symmetric key, the service's defaults).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create: bool,
    /// The devices' registration ids are `{prefix}{n}` (default `sim-{run}-`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default)]
    pub fault: Fault,
    /// How many devices get the fault — the first ones; the others are healthy, so one run shows both. Absent:
    /// every device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faulty: Option<u32>,
    /// Pause every device before each step until the trainer continues it.
    #[serde(default)]
    pub step_through: bool,
    /// Each device sends a CSR (2025-07-01-preview) and receives a certificate from the credential policy
    /// `simulated-devices` (the local CA); X.509 devices then register again with that certificate.
    #[serde(default)]
    pub request_certificate: bool,
    /// X.509 devices: the CA that issues their certificates (default: a root made for the run).
    #[serde(default, skip_serializing_if = "SimCa::is_run")]
    pub x509_ca: SimCa,
}

impl SimulationRequest {
    /// The fault of the `n`th device (from 1): the run's fault for the first [`Self::faulty`] devices (all when
    /// absent), none for the others.
    pub fn fault_of(&self, n: u32) -> Fault {
        if self.faulty.is_none_or(|k| n <= k) {
            self.fault
        } else {
            Fault::None
        }
    }
}

/// The CA that issues simulated X.509 devices' certificates; the group `simulated-x509-devices` trusts its root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum SimCa {
    /// A root CA made for the run.
    #[default]
    Run,
    /// A root made for the run and an intermediate CA under it that issues the devices: they send the
    /// intermediate with their certificate.
    Intermediate,
    /// The trainer's CA: its certificate chain (PEM, the issuing CA first, up to the root the group trusts) and its
    /// private key (PEM), used in memory for the run, never stored and never shown again (a run's view has no key).
    Uploaded {
        certificate: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        key: String,
    },
}

impl SimCa {
    pub fn is_run(&self) -> bool {
        *self == Self::Run
    }

    /// The same choice without the private key (what a run's view shows).
    pub fn without_key(&self) -> Self {
        match self {
            Self::Uploaded { certificate, .. } => Self::Uploaded { certificate: certificate.clone(), key: String::new() },
            other => other.clone(),
        }
    }
}

fn symmetric_key() -> String {
    "symmetricKey".to_owned()
}

/// Where a simulated device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SimState {
    Waiting,
    Running,
    Paused,
    Assigned,
    Failed,
    Disabled,
    Refused,
    Error,
}

impl SimState {
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Waiting | Self::Running | Self::Paused)
    }
}

/// One simulated device: its state, how it ended, and (on its own page) every step of its flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimDevice {
    pub registration_id: String,
    pub state: SimState,
    /// The fault this device was given (absent: none).
    #[serde(default, skip_serializing_if = "Fault::is_none")]
    pub fault: Fault,
    /// The step it waits before (step-through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_before: Option<FlowKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_hub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substatus: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Milliseconds from start to the end (or so far).
    pub millis: u64,
    /// The certificate issued from the device's CSR: its subject and serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_certificate: Option<String>,
    /// The flow's steps (only in `GET /simulations/{id}/devices/{registrationId}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<FlowStep>,
}

/// A run of simulated devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Simulation {
    pub id: String,
    pub started: chrono::DateTime<chrono::Utc>,
    pub request: SimulationRequest,
    /// The group or enrollment the devices used.
    pub target: String,
    /// Devices per state.
    pub counts: std::collections::BTreeMap<String, u32>,
    /// The devices (summaries: no steps); absent in the list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<SimDevice>,
}

/// `POST /simulations/{id}/devices/{registrationId}/continue`: one step, or to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContinueRequest {
    #[serde(default)]
    pub to_end: bool,
}

/// `POST /simulations/{id}/cleanUp`'s answer: what a finished run left in the service and was removed, and what
/// could not be (each in a sentence).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimulationCleanUp {
    /// Registration records deleted.
    pub registrations: u32,
    /// Device identities removed from the hubs the devices were assigned to.
    pub identities: u32,
    /// Individual enrollments the run made (its TPM devices') deleted.
    pub enrollments: u32,
    #[serde(default)]
    pub problems: Vec<String>,
}

/// Where a scenario run from the console stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ScenarioState {
    Running,
    /// Every step ended as expected.
    Passed,
    /// A step's devices did not end as expected (its `problems` say how).
    Failed,
    /// The run stopped: set-up or a step could not be done (`error`).
    Error,
}

/// One step of a scenario run: what it did and where its devices went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioStepView {
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub say: Option<String>,
    pub action: String,
    /// Devices that registered in the step.
    pub devices: u32,
    /// Devices per assigned hub.
    #[serde(default)]
    pub per_hub: std::collections::BTreeMap<String, u32>,
    /// Where devices did not end as expected (empty: as expected); absent while the step runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<String>>,
    /// A register step's first device with every step of its flow (the run's transcript shows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<SimDevice>,
}

/// A scenario (`GET /scenarios`) and its last run from the console, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioView {
    pub name: String,
    pub title: String,
    pub summary: String,
    /// A trainer's own scenario file (`POST /scenarios`), not a built-in one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ScenarioState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<ScenarioStepView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A SAS token or password with its signature masked (`sig=•••`), for showing messages as sent.
pub fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("sig=") {
        let (head, tail) = rest.split_at(at + 4);
        out.push_str(head);
        out.push_str("•••");
        rest = tail.find(['&', ' ', '"', '\n']).map_or("", |end| tail.split_at(end).1);
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_masked_and_the_rest_is_kept() {
        let sas = "SharedAccessSignature sr=0ne%2Fregistrations%2Fd1&sig=abc%2Bdef&se=1700000000&skn=registration";
        assert_eq!(mask_secrets(sas), "SharedAccessSignature sr=0ne%2Fregistrations%2Fd1&sig=•••&se=1700000000&skn=registration");
        assert_eq!(mask_secrets("password: sig=xyz"), "password: sig=•••");
        assert_eq!(mask_secrets("no secret"), "no secret");
    }

    #[test]
    fn a_request_needs_only_a_count() {
        let r: SimulationRequest = serde_json::from_str(r#"{"count":3}"#).expect("parses");
        assert_eq!(
            (r.transport, r.fault, r.attestation.as_str(), r.step_through),
            (SimTransport::Https, Fault::None, "symmetricKey", false)
        );
    }
}
