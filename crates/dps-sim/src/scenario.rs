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
//! https | mqtt | amqp, `prefix` of the generated ids, `key = "previous"` to use a key replaced by `renewKeys`),
//! `updateGroup` / `updateEnrollment` (`{ id, set = { …members… } }`, merged into the stored document),
//! `renewKeys` (`{ group | enrollment, keyType }`). Expectations: `status`, `errorCode`, `hub` (every device
//! there), `hubs` (every device on one of them), `everyHubAtLeast` (each of `hubs` got at least that many),
//! `substatus`. Every hub a group or an enrollment names must be one of the scenario's hubs, so that a run and
//! its reset touch nothing else.

use dps_proto::{EnrollmentGroup, IndividualEnrollment, LinkedHub, RegistrationStatus, Substatus};
use serde::Deserialize;
use serde_json::Value;

/// The most devices one step registers.
pub const MAX_DEVICES: u32 = 1000;

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
    pub steps: Vec<Step>,
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
];

impl Scenario {
    /// Reads and checks a scenario file's text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
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
        let own = |h: &String| self.hubs.iter().any(|o| o.host_name.eq_ignore_ascii_case(h));
        let named = self
            .groups
            .iter()
            .flat_map(|g| g.iot_hubs.iter().flatten())
            .chain(self.enrollments.iter().flat_map(|e| e.iot_hubs.iter().flatten()));
        for h in named {
            anyhow::ensure!(own(h), "{}: hub '{h}' is named but not among the scenario's hubs", self.name);
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
    fn a_group_step_names_its_devices_with_the_prefix() {
        let d = Devices {
            group: Some("g".into()),
            enrollment: None,
            count: 3,
            transport: Transport::Mqtt,
            prefix: None,
            key: KeyChoice::Current,
        };
        assert_eq!(d.ids(), ["g-dev-1", "g-dev-2", "g-dev-3"]);
    }
}
