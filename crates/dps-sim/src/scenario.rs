//! The scenario format (#16 item 5): a TOML file a trainer can write without code. A scenario declares what it
//! needs — linked hubs, enrollment groups, individual enrollments, in the service API's own JSON shape (camelCase
//! members, as `az iot dps` and the OpenAPI files name them) — and steps, each an action with what to expect.
//!
//! ```toml
//! name = "static"
//! title = "Static allocation"
//! summary = "A group with the static policy sends every device to its one hub."
//!
//! [[hubs]]
//! hostName = "static-a.demo.local"
//!
//! [[groups]]
//! enrollmentGroupId = "demo-static"
//! attestation = { type = "symmetricKey" }
//! allocationPolicy = "static"
//! iotHubs = ["static-a.demo.local"]
//!
//! [[steps]]
//! say = "Five devices of the group register over MQTT."
//! register = { group = "demo-static", count = 5, transport = "mqtt" }
//! expect = { status = "assigned", hub = "static-a.demo.local" }
//! ```
//!
//! Actions: `register` (devices of a group, derived keys, or of an individual enrollment; `count`, `transport`
//! https | mqtt | amqp | mqttWs | amqpWs, `prefix` of the generated ids, `key = "previous"` to use a key replaced
//! by `renewKeys`; `issuer = "<certificate>"` for X.509 devices, whose certificates that scenario CA issues),
//! `updateGroup` / `updateEnrollment` (`{ id, set = { …members… } }`, merged into the stored document),
//! `renewKeys` (`{ group | enrollment, keyType }`). Expectations: `status`, `errorCode`, `hub` (every device
//! there), `hubs` (every device on one of them), `everyHubAtLeast` (each of `hubs` got at least that many),
//! `substatus`. Every hub a group or an enrollment names must be one of the scenario's hubs, so that a run and
//! its reset touch nothing else.
//!
//! Custom allocation: a `customAllocationDefinition.webhookUrl` of `demo` is the service's built-in demo webhook
//! (it sends a device to the hub whose first name label begins its registration id, else the first hub);
//! `demo:error` and `demo:slow` are its refusing and too-late modes.
//!
//! X.509: `[[certificates]]` (`name`, and `issuer` for an intermediate under an earlier one) are CAs made for the
//! run, uploaded to `/certificates/{name}` and verified by proof of possession; a group names one in
//! `attestation.x509.caReferences.primary`. TPM: an individual enrollment with `attestation = { type = "tpm" }`
//! and no endorsement key is made when its device registers, with the endorsement key of a software TPM started
//! for it.

use dps_proto::{AttestationType, EnrollmentGroup, IndividualEnrollment, LinkedHub, RegistrationStatus, Substatus};
use serde::Deserialize;
use serde_json::Value;

/// The most devices one step registers.
pub const MAX_DEVICES: u32 = 1000;
/// The most steps, hubs, groups, enrollments and certificates a scenario has (each).
pub const MAX_ITEMS: usize = 100;
/// The largest scenario file read.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// Short id (`dps simulate scenario NAME`).
    pub name: String,
    pub title: String,
    /// What it shows, in a sentence or two.
    pub summary: String,
    #[serde(default)]
    pub hubs: Vec<LinkedHub>,
    #[serde(default)]
    pub groups: Vec<EnrollmentGroup>,
    #[serde(default)]
    pub enrollments: Vec<IndividualEnrollment>,
    /// CA certificates made for the run (their keys in memory only), uploaded to the service and verified by proof
    /// of possession, in this order; groups name them in `caReferences`.
    #[serde(default)]
    pub certificates: Vec<CaSpec>,
    pub steps: Vec<Step>,
}

/// A CA made for the run: a root, or an intermediate under an earlier one (`issuer`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaSpec {
    /// Its name in the service's certificate store (`/certificates/{name}`).
    pub name: String,
    #[serde(default)]
    pub issuer: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// What the step shows (printed before it runs).
    #[serde(default)]
    pub say: Option<String>,
    #[serde(flatten)]
    pub action: Action,
    #[serde(default)]
    pub expect: Option<Expect>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Register(Devices),
    UpdateGroup(Update),
    UpdateEnrollment(Update),
    RenewKeys(Renew),
}

/// Devices that register: of a group (ids `prefix` + 1…count, keys derived) or of one individual enrollment.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Devices {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub enrollment: Option<String>,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub transport: Transport,
    /// Generated ids of a group's devices (default `<group>-dev-`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// `current` (default) or `previous`: the key a `renewKeys` step replaced.
    #[serde(default)]
    pub key: KeyChoice,
    /// X.509 devices: the scenario certificate that issues theirs (CN = the registration id); they send it and the
    /// CAs between it and its root with their certificate.
    #[serde(default)]
    pub issuer: Option<String>,
}

fn one() -> u32 {
    1
}

/// The console's Simulate page offers the same transports.
pub use dps_proto::simulation::SimTransport as Transport;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyChoice {
    #[default]
    Current,
    Previous,
}

/// Members merged into a stored document.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Update {
    pub id: String,
    pub set: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Renew {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub enrollment: Option<String>,
    #[serde(default = "both")]
    pub key_type: String,
}

fn both() -> String {
    "both".into()
}

/// What every device of a step must end with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub status: Option<RegistrationStatus>,
    #[serde(default)]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub hub: Option<String>,
    #[serde(default)]
    pub hubs: Option<Vec<String>>,
    #[serde(default)]
    pub every_hub_at_least: Option<u32>,
    #[serde(default)]
    pub substatus: Option<Substatus>,
}

/// The scenarios that ship with DPS Console (`scenarios/*.toml`).
pub const BUILT_IN: &[(&str, &str)] = &[
    ("evenly-weighted", include_str!("../scenarios/evenly-weighted.toml")),
    ("static", include_str!("../scenarios/static.toml")),
    ("reprovisioning", include_str!("../scenarios/reprovisioning.toml")),
    ("key-rolling", include_str!("../scenarios/key-rolling.toml")),
    ("disabled", include_str!("../scenarios/disabled.toml")),
    ("lowest-latency", include_str!("../scenarios/lowest-latency.toml")),
    ("x509-intermediate", include_str!("../scenarios/x509-intermediate.toml")),
    ("tpm-challenge", include_str!("../scenarios/tpm-challenge.toml")),
    ("custom-webhook", include_str!("../scenarios/custom-webhook.toml")),
];

impl Scenario {
    /// Reads and checks a scenario file's text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(text.len() <= MAX_FILE_BYTES, "a scenario file is at most {} KiB", MAX_FILE_BYTES / 1024);
        let s: Scenario = toml::from_str(text)?;
        s.check()?;
        Ok(s)
    }

    /// A built-in scenario by name.
    pub fn built_in(name: &str) -> Option<anyhow::Result<Self>> {
        BUILT_IN.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, text)| Self::parse(text))
    }

    /// Every hub a document names is the scenario's; every step names what exists; counts are bounded.
    fn check(&self) -> anyhow::Result<()> {
        dps_proto::RegistrationId::try_from(self.name.clone()).map_err(|e| anyhow::anyhow!("name: {e}"))?;
        let sizes = [self.steps.len(), self.hubs.len(), self.groups.len(), self.enrollments.len(), self.certificates.len()];
        anyhow::ensure!(
            sizes.iter().all(|n| *n <= MAX_ITEMS),
            "{}: at most {MAX_ITEMS} steps, hubs, groups, enrollments and certificates each",
            self.name
        );
        anyhow::ensure!(!self.steps.is_empty(), "{}: no steps", self.name);
        let own = |h: &String| self.hubs.iter().any(|o| o.host_name.eq_ignore_ascii_case(h));
        let named = self
            .groups
            .iter()
            .flat_map(|g| g.iot_hubs.iter().flatten())
            .chain(self.enrollments.iter().flat_map(|e| e.iot_hubs.iter().flatten()));
        for h in named {
            anyhow::ensure!(own(h), "{}: hub '{h}' is named but not among the scenario's hubs", self.name);
        }
        for (i, ca) in self.certificates.iter().enumerate() {
            let earlier = self.certificates.get(..i).unwrap_or_default();
            anyhow::ensure!(
                !earlier.iter().any(|c| c.name.eq_ignore_ascii_case(&ca.name)),
                "{}: certificate '{}' twice",
                self.name,
                ca.name
            );
            if let Some(issuer) = &ca.issuer {
                let known = earlier.iter().any(|c| c.name.eq_ignore_ascii_case(issuer));
                anyhow::ensure!(known, "{}: certificate '{}': its issuer '{issuer}' is not an earlier certificate", self.name, ca.name);
            }
        }
        for (i, step) in self.steps.iter().enumerate() {
            self.check_step(step).map_err(|e| anyhow::anyhow!("{}: step {}: {e}", self.name, i + 1))?;
        }
        Ok(())
    }

    fn check_step(&self, step: &Step) -> anyhow::Result<()> {
        let (group, enrollment) = match &step.action {
            Action::Register(d) => {
                anyhow::ensure!((1..=MAX_DEVICES).contains(&d.count), "count {} is outside 1–{MAX_DEVICES}", d.count);
                anyhow::ensure!(d.enrollment.is_none() || d.count == 1, "an individual enrollment is one device");
                if let Some(issuer) = &d.issuer {
                    anyhow::ensure!(self.certificate(issuer).is_some(), "no certificate '{issuer}' in the scenario");
                }
                if d.enrollment.as_deref().is_some_and(|e| self.is_tpm(e)) {
                    anyhow::ensure!(d.transport.carries_tpm(), "a TPM device registers over HTTPS or AMQP: DPS has no TPM over MQTT");
                    anyhow::ensure!(d.issuer.is_none(), "a TPM device has no certificate issuer");
                }
                (d.group.as_deref(), d.enrollment.as_deref())
            }
            Action::UpdateGroup(u) => (Some(u.id.as_str()), None),
            Action::UpdateEnrollment(u) => (None, Some(u.id.as_str())),
            Action::RenewKeys(r) => (r.group.as_deref(), r.enrollment.as_deref()),
        };
        match (group, enrollment) {
            (Some(g), None) => anyhow::ensure!(self.group(g).is_some(), "no group '{g}' in the scenario"),
            (None, Some(e)) => anyhow::ensure!(self.enrollment(e).is_some(), "no enrollment '{e}' in the scenario"),
            _ => anyhow::bail!("name one group or one enrollment"),
        }
        Ok(())
    }

    pub fn group(&self, id: &str) -> Option<&EnrollmentGroup> {
        self.groups.iter().find(|g| g.enrollment_group_id.eq_ignore_ascii_case(id))
    }

    pub fn enrollment(&self, id: &str) -> Option<&IndividualEnrollment> {
        self.enrollments.iter().find(|e| e.registration_id.eq_ignore_ascii_case(id))
    }

    pub fn certificate(&self, name: &str) -> Option<&CaSpec> {
        self.certificates.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Whether `enrollment` is a TPM enrollment without its endorsement key: its device's TPM is started when
    /// the device registers, and the enrollment is made then, with that TPM's key.
    pub fn is_tpm(&self, enrollment: &str) -> bool {
        self.enrollment(enrollment).is_some_and(|e| {
            e.attestation.kind == AttestationType::Tpm && e.attestation.tpm.as_ref().and_then(|t| t.endorsement_key.as_ref()).is_none()
        })
    }
}

impl Devices {
    /// The registration ids of the step's devices.
    pub fn ids(&self) -> Vec<String> {
        match (&self.enrollment, &self.group) {
            (Some(e), _) => vec![e.clone()],
            (None, Some(g)) => {
                let prefix = self.prefix.clone().unwrap_or_else(|| format!("{g}-dev-"));
                (1..=self.count).map(|i| format!("{prefix}{i}")).collect()
            }
            (None, None) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_scenario_parses_and_checks() {
        for (name, text) in BUILT_IN {
            let s = Scenario::parse(text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(&s.name, name);
            assert!(!s.steps.is_empty() && !s.hubs.is_empty(), "{name}");
        }
    }

    #[test]
    fn a_hub_outside_the_scenario_or_an_unknown_group_is_refused() {
        let base = r#"
            name = "x"
            title = "x"
            summary = "x"
            [[hubs]]
            hostName = "a.demo.local"
            [[groups]]
            enrollmentGroupId = "g"
            attestation = { type = "symmetricKey" }
            iotHubs = ["HUB"]
            [[steps]]
            register = { group = "GROUP", count = 2 }
        "#;
        let ok = base.replace("HUB", "a.demo.local").replace("GROUP", "g");
        assert_eq!(Scenario::parse(&ok).map(|s| s.steps.len()).ok(), Some(1));
        let e = Scenario::parse(&base.replace("HUB", "other.example").replace("GROUP", "g")).err().map(|e| e.to_string());
        assert!(e.as_deref().is_some_and(|e| e.contains("other.example")), "{e:?}");
        let e = Scenario::parse(&base.replace("HUB", "a.demo.local").replace("GROUP", "nope")).err().map(|e| e.to_string());
        assert!(e.as_deref().is_some_and(|e| e.contains("no group 'nope'")), "{e:?}");
        let too_many = ok.replace("count = 2", "count = 1001");
        assert!(Scenario::parse(&too_many).is_err());
    }

    #[test]
    fn certificates_issuers_and_tpm_devices_are_checked() {
        let base = r#"
            name = "x"
            title = "x"
            summary = "x"
            [[certificates]]
            name = "root"
            [[certificates]]
            name = "mid"
            issuer = "ISSUER"
            [[hubs]]
            hostName = "a.demo.local"
            [[groups]]
            enrollmentGroupId = "g"
            attestation = { type = "x509", x509 = { caReferences = { primary = "root" } } }
            [[enrollments]]
            registrationId = "t"
            attestation = { type = "tpm" }
            [[steps]]
            register = { group = "g", issuer = "DEVICE_ISSUER" }
            [[steps]]
            register = { enrollment = "t", transport = "TRANSPORT" }
        "#;
        let text = |issuer: &str, device: &str, transport: &str| {
            base.replace("DEVICE_ISSUER", device).replace("ISSUER", issuer).replace("TRANSPORT", transport)
        };
        let ok = Scenario::parse(&text("root", "mid", "amqp")).expect("a valid scenario");
        assert!(ok.is_tpm("t") && !ok.is_tpm("nobody"));
        let refused = |t: String, what: &str| {
            let e = Scenario::parse(&t).err().map(|e| format!("{e:#}"));
            assert!(e.as_deref().is_some_and(|e| e.contains(what)), "{what}: {e:?}");
        };
        refused(text("later", "mid", "amqp"), "not an earlier certificate");
        refused(text("root", "nope", "amqp"), "no certificate 'nope'");
        refused(text("root", "mid", "mqtt"), "no TPM over MQTT");
        refused(text("root", "mid", "mqttWs"), "no TPM over MQTT");
        refused(text("root", "mid", "amqp").replace("name = \"mid\"", "name = \"root\""), "certificate 'root' twice");
    }

    #[test]
    fn a_group_step_names_its_devices_with_the_prefix() {
        let d = Devices {
            group: Some("g".into()),
            enrollment: None,
            count: 3,
            transport: Transport::Mqtt,
            prefix: None,
            key: KeyChoice::Current,
            issuer: None,
        };
        assert_eq!(d.ids(), ["g-dev-1", "g-dev-2", "g-dev-3"]);
    }
}
