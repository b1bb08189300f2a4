//! Runs a scenario (#16 item 5): reset what an earlier run left, set up the CAs (verified by proof of
//! possession), hubs, groups and enrollments through the service API, then each step — devices register through
//! the listeners ([`crate::devices`]) with symmetric keys, certificates or TPMs of their own, documents change —
//! and check what every device ended with. [`Runner::reset`] removes everything the scenario makes:
//! registration records, the identities created in its hubs, its groups, enrollments, certificates and hubs;
//! [`Runner::leftovers`] lists what of it still exists.

use std::collections::HashMap;

use anyhow::{anyhow, Context, Result};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::Value;

use crate::api::{delete_if_there, ok, seg, ServiceApi};
use dps_device::flow::Flow;

use crate::devices::{register_with, Credential, DeviceTarget, Outcome};
use crate::expect;
use crate::live::Watched;
use crate::scenario::{Action, Devices, KeyChoice, Scenario, Step};
use crate::x509::SimCa;
use std::sync::Arc;

/// Devices registering at once within a step.
const AT_ONCE: usize = 16;

/// What a step did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    pub index: usize,
    pub say: Option<String>,
    pub action: String,
    pub outcomes: Vec<Outcome>,
    /// Devices per assigned hub.
    pub per_hub: std::collections::BTreeMap<String, u32>,
    /// Where the devices did not end as expected (empty: as expected).
    pub problems: Vec<String>,
    /// A register step's first device with its flow, step by step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<dps_proto::simulation::SimDevice>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub scenario: String,
    pub title: String,
    pub steps: Vec<StepReport>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.problems.is_empty())
    }
}

/// What the runner tells as it goes (the CLI's progress bar; the console's live view).
#[derive(Debug, Clone)]
pub enum Event<'a> {
    Step { index: usize, step: &'a Step, devices: usize },
    Device(&'a Outcome),
    StepDone(&'a StepReport),
}

pub struct Runner<'a> {
    pub api: &'a dyn ServiceApi,
    pub target: DeviceTarget,
    pub on_event: &'a (dyn Fn(Event<'_>) + Send + Sync),
}

/// Keys a `renewKeys` step replaced, by document id (lower-case).
type Previous = HashMap<String, String>;
/// The scenario's CAs, made for the run, by name (lower-case).
type Cas = HashMap<String, SimCa>;

impl Runner<'_> {
    /// Resets, sets up and runs every step.
    pub async fn run(&self, s: &Scenario) -> Result<Report> {
        self.reset(s).await.context("reset before the run")?;
        let cas = self.setup(s).await.context("set-up")?;
        let mut previous = Previous::new();
        let mut steps = Vec::with_capacity(s.steps.len());
        for (i, step) in s.steps.iter().enumerate() {
            let report = self.step(i + 1, (s, step), &mut previous, &cas).await.with_context(|| format!("step {}", i + 1))?;
            (self.on_event)(Event::StepDone(&report));
            steps.push(report);
        }
        Ok(Report { scenario: s.name.clone(), title: s.title.clone(), steps })
    }

    /// Makes the CAs, hubs, groups and enrollments (a TPM enrollment waits for its device's TPM).
    async fn setup(&self, s: &Scenario) -> Result<Cas> {
        let cas = self.certificates(s).await?;
        for hub in &s.hubs {
            ok(self.api, "PUT", &format!("/linkedHubs/{}", seg(&hub.host_name)), Some(serde_json::to_value(hub)?)).await?;
        }
        for g in &s.groups {
            let doc = self.with_demo_webhook(serde_json::to_value(g)?).await?;
            ok(self.api, "PUT", &format!("/enrollmentGroups/{}", seg(&g.enrollment_group_id)), Some(doc)).await?;
        }
        for e in s.enrollments.iter().filter(|e| !s.is_tpm(&e.registration_id)) {
            let doc = self.with_demo_webhook(serde_json::to_value(e)?).await?;
            ok(self.api, "PUT", &format!("/enrollments/{}", seg(&e.registration_id)), Some(doc)).await?;
        }
        Ok(cas)
    }

    /// A document whose webhook URL is `demo` or `demo:<mode>` with the service's built-in demo webhook's URL in
    /// its place (`GET /demo/allocationWebhook`, code included).
    async fn with_demo_webhook(&self, mut doc: Value) -> Result<Value> {
        let Some(url) = doc.pointer_mut("/customAllocationDefinition/webhookUrl") else { return Ok(doc) };
        let mode = match url.as_str() {
            Some("demo") => "",
            Some(u) if u.starts_with("demo:") => u.trim_start_matches("demo:"),
            _ => return Ok(doc),
        }
        .to_owned();
        let demo = ok(self.api, "GET", "/demo/allocationWebhook", None).await?;
        let base = demo.get("url").and_then(Value::as_str).ok_or_else(|| anyhow!("GET /demo/allocationWebhook: no url"))?;
        *url = Value::String(if mode.is_empty() { base.to_owned() } else { format!("{base}&mode={mode}") });
        Ok(doc)
    }

    /// Each CA made, uploaded and verified by proof of possession: a certificate whose CN is the service's
    /// verification code, signed by the CA.
    async fn certificates(&self, s: &Scenario) -> Result<Cas> {
        let mut cas = Cas::new();
        for spec in &s.certificates {
            let cn = format!("{} ({})", spec.name, s.title);
            let ca = match &spec.issuer {
                None => SimCa::new(&cn)?,
                Some(issuer) => cas.get(&issuer.to_ascii_lowercase()).ok_or_else(|| anyhow!("no certificate '{issuer}'"))?.under(&cn)?,
            };
            let path = format!("/certificates/{}", seg(&spec.name));
            ok(self.api, "PUT", &path, Some(serde_json::json!({ "certificate": ca.certificate_pem() }))).await?;
            let code = ok(self.api, "POST", &format!("{path}/generateVerificationCode"), None).await?;
            let code = code.get("verificationCode").and_then(Value::as_str).ok_or_else(|| anyhow!("{path}: no verification code"))?;
            ok(self.api, "POST", &format!("{path}/verify"), Some(serde_json::json!({ "certificate": ca.sign_cn(code)? }))).await?;
            cas.insert(spec.name.to_ascii_lowercase(), ca);
        }
        Ok(cas)
    }

    async fn step(&self, index: usize, (s, step): (&Scenario, &Step), previous: &mut Previous, cas: &Cas) -> Result<StepReport> {
        let devices = match &step.action {
            Action::Register(d) => d.ids().len(),
            _ => 0,
        };
        (self.on_event)(Event::Step { index, step, devices });
        let sample = Arc::new(Watched::new(String::new(), false, dps_proto::simulation::Fault::None));
        let (action, outcomes) = match &step.action {
            Action::Register(d) => (
                format!("register {devices} device(s) over {}", d.transport.label()),
                self.register((s, d), previous, cas, Flow::new(sample.clone())).await?,
            ),
            Action::UpdateGroup(u) => {
                (format!("update group {}", u.id), self.update("enrollmentGroups", &u.id, &u.set).await.map(|_| Vec::new())?)
            }
            Action::UpdateEnrollment(u) => {
                (format!("update enrollment {}", u.id), self.update("enrollments", &u.id, &u.set).await.map(|_| Vec::new())?)
            }
            Action::RenewKeys(r) => {
                let (collection, id) = document(r.group.as_deref(), r.enrollment.as_deref())?;
                previous.insert(id.to_ascii_lowercase(), self.primary_key(collection, id).await?);
                ok(self.api, "POST", &format!("/{collection}/{}/renewKey", seg(id)), Some(serde_json::json!({ "keyType": r.key_type })))
                    .await?;
                (format!("renew the keys of {id} ({})", r.key_type), Vec::new())
            }
        };
        let problems = step.expect.as_ref().map(|e| expect::problems(e, &outcomes)).unwrap_or_default();
        let sample = outcomes.first().map(|o| {
            sample.finish(o);
            dps_proto::simulation::SimDevice { registration_id: o.registration_id.clone(), ..sample.snapshot(true) }
        });
        Ok(StepReport { index, say: step.say.clone(), action, per_hub: expect::per_hub(&outcomes), outcomes, problems, sample })
    }

    /// Registers the step's devices, [`AT_ONCE`] at a time, each with what attests it — a symmetric key, a
    /// certificate of the step's issuer, or a TPM of its own; outcomes in the order of the ids.
    /// The first device tells `first` its flow.
    async fn register(&self, (s, d): (&Scenario, &Devices), previous: &Previous, cas: &Cas, first: Flow) -> Result<Vec<Outcome>> {
        if let Some(e) = d.enrollment.as_deref().filter(|e| s.is_tpm(e)) {
            let outcome = self.register_tpm(s, d, e, first).await?;
            (self.on_event)(Event::Device(&outcome));
            return Ok(vec![outcome]);
        }
        let credentials = match &d.issuer {
            Some(issuer) => {
                let ca = cas.get(&issuer.to_ascii_lowercase()).ok_or_else(|| anyhow!("no certificate '{issuer}'"))?;
                let leaf = |id: &String| ca.leaf(id, false).map(|l| Credential::X509 { chain: l.chain, key: l.key });
                d.ids().iter().map(|id| Ok((id.clone(), leaf(id)?))).collect::<Result<Vec<_>>>()?
            }
            None => self.keyed(d, previous).await?,
        };
        let target = &self.target;
        let mut outcomes: Vec<(usize, Outcome)> = stream::iter(credentials.into_iter().enumerate())
            .map(|(i, (device, credential))| {
                let flow = if i == 0 { first.clone() } else { Flow::default() };
                async move { (i, register_with(target, d.transport, &device, &credential, flow).await) }
            })
            .buffer_unordered(AT_ONCE)
            .inspect(|(_, o)| (self.on_event)(Event::Device(o)))
            .collect()
            .await;
        outcomes.sort_by_key(|(i, _)| *i);
        Ok(outcomes.into_iter().map(|(_, o)| o).collect())
    }

    /// The step's devices with the SAS tokens of their keys (derived from a group's, or an enrollment's own).
    async fn keyed(&self, d: &Devices, previous: &Previous) -> Result<Vec<(String, Credential)>> {
        let (collection, id) = document(d.group.as_deref(), d.enrollment.as_deref())?;
        let key = match d.key {
            KeyChoice::Current => self.primary_key(collection, id).await?,
            KeyChoice::Previous => {
                previous.get(&id.to_ascii_lowercase()).cloned().ok_or_else(|| anyhow!("{id} has no previous key: renew its keys first"))?
            }
        };
        let scope = &self.target.endpoint.id_scope;
        let mut keyed = Vec::new();
        for device in d.ids() {
            let device_key =
                if d.group.is_some() { dps_crypto::derive_device_key(&key, &device).map_err(|e| anyhow!("{e}"))? } else { key.clone() };
            let sas = dps_device::device_sas(scope, &device, &device_key, std::time::Duration::from_secs(3600))?;
            keyed.push((device, Credential::Sas(sas)));
        }
        Ok(keyed)
    }

    /// A TPM enrollment's device: its TPM started, the enrollment made with the TPM's keys, then the register.
    async fn register_tpm(&self, s: &Scenario, d: &Devices, enrollment: &str, flow: Flow) -> Result<Outcome> {
        let doc = s.enrollment(enrollment).ok_or_else(|| anyhow!("no enrollment '{enrollment}'"))?;
        let enroll = |id: String, tpm: dps_proto::TpmAttestation| async move {
            let mut doc = doc.clone();
            doc.attestation.tpm = Some(tpm);
            ok(self.api, "PUT", &format!("/enrollments/{}", seg(&id)), Some(serde_json::to_value(&doc)?)).await.map(drop)
        };
        let started = std::time::Instant::now();
        let answer = crate::tpm::provision(&self.target, d.transport, enrollment, Some(enroll), flow).await;
        Ok(crate::devices::outcome(enrollment, d.transport, answer, started.elapsed()))
    }

    /// The primary symmetric key of a group or an enrollment, as the service holds it now.
    async fn primary_key(&self, collection: &str, id: &str) -> Result<String> {
        let doc = ok(self.api, "GET", &format!("/{collection}/{}", seg(id)), None).await?;
        doc.pointer("/attestation/symmetricKey/primaryKey")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{id} has no symmetric key"))
    }

    /// Merges `set` into the stored document (member by member) and writes it back.
    async fn update(&self, collection: &str, id: &str, set: &serde_json::Map<String, Value>) -> Result<()> {
        let path = format!("/{collection}/{}", seg(id));
        let mut doc = ok(self.api, "GET", &path, None).await?;
        let members = doc.as_object_mut().ok_or_else(|| anyhow!("{id}: the document is not an object"))?;
        members.remove("registrationState");
        members.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        let doc = self.with_demo_webhook(doc).await?;
        ok(self.api, "PUT", &path, Some(doc)).await.map(drop)
    }

    /// Removes everything the scenario makes (what is not there is skipped).
    pub async fn reset(&self, s: &Scenario) -> Result<()> {
        for id in device_ids(s) {
            delete_if_there(self.api, &format!("/registrations/{}", seg(&id))).await?;
        }
        for hub in &s.hubs {
            for device in self.identities(&hub.host_name).await? {
                delete_if_there(self.api, &format!("/linkedHubs/{}/devices/{}", seg(&hub.host_name), seg(&device))).await?;
            }
        }
        for g in &s.groups {
            delete_if_there(self.api, &format!("/enrollmentGroups/{}", seg(&g.enrollment_group_id))).await?;
        }
        for e in &s.enrollments {
            delete_if_there(self.api, &format!("/enrollments/{}", seg(&e.registration_id))).await?;
        }
        for ca in s.certificates.iter().rev() {
            delete_if_there(self.api, &format!("/certificates/{}", seg(&ca.name))).await?;
        }
        for hub in &s.hubs {
            delete_if_there(self.api, &format!("/linkedHubs/{}", seg(&hub.host_name))).await?;
        }
        Ok(())
    }

    /// What of the scenario exists in the service (empty after [`Self::reset`]).
    pub async fn leftovers(&self, s: &Scenario) -> Result<Vec<String>> {
        let mut paths: Vec<String> = device_ids(s).iter().map(|id| format!("/registrations/{}", seg(id))).collect();
        paths.extend(s.groups.iter().map(|g| format!("/enrollmentGroups/{}", seg(&g.enrollment_group_id))));
        paths.extend(s.enrollments.iter().map(|e| format!("/enrollments/{}", seg(&e.registration_id))));
        paths.extend(s.certificates.iter().map(|c| format!("/certificates/{}", seg(&c.name))));
        paths.extend(s.hubs.iter().map(|h| format!("/linkedHubs/{}", seg(&h.host_name))));
        let mut left = Vec::new();
        for path in paths {
            if self.api.call("GET", &path, None).await?.0 != 404 {
                left.push(path);
            }
        }
        for hub in &s.hubs {
            left.extend(self.identities(&hub.host_name).await?.into_iter().map(|d| format!("identity {d} in {}", hub.host_name)));
        }
        Ok(left)
    }

    /// The device ids the hub's registry holds.
    async fn identities(&self, host: &str) -> Result<Vec<String>> {
        let (status, list) = self.api.call("GET", &format!("/linkedHubs/{}/devices", seg(host)), None).await?;
        if status == 404 {
            return Ok(Vec::new());
        }
        let items = list.as_array().ok_or_else(|| anyhow!("GET /linkedHubs/{host}/devices: {status} {list}"))?;
        Ok(items.iter().filter_map(|d| d.get("deviceId").and_then(Value::as_str).map(str::to_owned)).collect())
    }
}

/// `("enrollmentGroups", id)` or `("enrollments", id)`.
fn document<'a>(group: Option<&'a str>, enrollment: Option<&'a str>) -> Result<(&'static str, &'a str)> {
    match (group, enrollment) {
        (Some(g), None) => Ok(("enrollmentGroups", g)),
        (None, Some(e)) => Ok(("enrollments", e)),
        _ => Err(anyhow!("name one group or one enrollment")),
    }
}

/// Every registration id the scenario's steps register (each once).
fn device_ids(s: &Scenario) -> Vec<String> {
    let mut ids: Vec<String> = s
        .steps
        .iter()
        .filter_map(|st| match &st.action {
            Action::Register(d) => Some(d.ids()),
            _ => None,
        })
        .flatten()
        .collect();
    ids.sort_by_key(|a| a.to_ascii_lowercase());
    ids.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    ids
}
