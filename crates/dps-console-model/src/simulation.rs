//! The Simulate page's logic: the choices it offers (transports, faults), a device state's label and badge,
//! a flow step's arrow, and the Markdown transcript of a device's flow, a whole run or a scenario run (#16 item 6) — a Mermaid
//! sequence diagram, then every step with its message as sent (secrets were masked by the service).

use std::fmt::Write;

use dps_proto::simulation::{
    Direction, Fault, FlowKind, FlowStep, ScenarioState, ScenarioStepView, ScenarioView, SimCa, SimDevice, SimState, SimTransport,
    Simulation, SimulationCleanUp,
};

use crate::error_help;

/// The transports offered, as (value, label).
pub const TRANSPORTS: [(SimTransport, &str, &str); 5] = [
    (SimTransport::Https, "https", SimTransport::Https.label()),
    (SimTransport::Mqtt, "mqtt", SimTransport::Mqtt.label()),
    (SimTransport::Amqp, "amqp", SimTransport::Amqp.label()),
    (SimTransport::MqttWs, "mqttWs", SimTransport::MqttWs.label()),
    (SimTransport::AmqpWs, "amqpWs", SimTransport::AmqpWs.label()),
];

/// The transports devices of `attestation` can use (TPM: none over MQTT).
pub fn transports_for(attestation: &str) -> Vec<(SimTransport, &'static str, &'static str)> {
    TRANSPORTS.into_iter().filter(|(t, _, _)| attestation != "tpm" || t.carries_tpm()).collect()
}

/// The attestations offered, as (wire name, label).
pub const ATTESTATIONS: [(&str, &str); 3] =
    [("symmetricKey", "Symmetric key"), ("x509", "X.509 (a CA made for the run)"), ("tpm", "TPM (a software TPM per device)")];

/// Where X.509 devices' certificates come from, as (kind, label).
pub const X509_CAS: [(&str, &str); 3] = [
    ("run", "A root CA made for the run"),
    ("intermediate", "An intermediate under a root made for the run"),
    ("uploaded", "Your own CA (paste its chain and key)"),
];

/// The CA choice of the form: kind, and for `uploaded` the pasted chain and key.
pub fn x509_ca_of(kind: &str, certificate: &str, key: &str) -> SimCa {
    match kind {
        "intermediate" => SimCa::Intermediate,
        "uploaded" => SimCa::Uploaded { certificate: certificate.trim().to_owned(), key: key.trim().to_owned() },
        _ => SimCa::Run,
    }
}

/// The most devices a run of `attestation` may have (TPM devices run a software TPM each).
pub fn max_devices(attestation: &str) -> u32 {
    if attestation == "tpm" {
        dps_proto::simulation::MAX_TPM_DEVICES
    } else {
        1000
    }
}

/// The faults offered, as (value, wire name, label).
pub const FAULTS: [(Fault, &str, &str); 14] = [
    (Fault::None, "none", "None — provision normally"),
    (Fault::WrongKey, "wrongKey", "Wrong key"),
    (Fault::OtherGroupKey, "otherGroupKey", "Key of another group"),
    (Fault::UnknownId, "unknownId", "Unknown registration id"),
    (Fault::ExpiredToken, "expiredToken", "Expired SAS token"),
    (Fault::DisabledGroup, "disabledGroup", "Disabled group"),
    (Fault::HubDown, "hubDown", "Hub connector down"),
    (Fault::UntrustedCa, "untrustedCa", "Certificate of an untrusted CA"),
    (Fault::ExpiredCertificate, "expiredCertificate", "Expired certificate"),
    (Fault::CnMismatch, "cnMismatch", "Certificate CN ≠ registration id"),
    (Fault::DisabledEnrollment, "disabledEnrollment", "Disabled enrollment"),
    (Fault::WebhookError, "webhookError", "Allocation webhook error"),
    (Fault::WebhookTimeout, "webhookTimeout", "Allocation webhook time-out"),
    (Fault::Throttled, "throttled", "Throttled (polls too fast)"),
];

/// The faults that apply to devices of `attestation`.
pub fn faults_for(attestation: &str) -> Vec<(Fault, &'static str, &'static str)> {
    FAULTS.into_iter().filter(|(f, _, _)| f.fits(attestation)).collect()
}

/// A transport by its wire name (HTTPS for anything else).
pub fn transport_of(name: &str) -> SimTransport {
    TRANSPORTS.iter().find(|(_, n, _)| *n == name).map_or(SimTransport::Https, |(t, _, _)| *t)
}

/// A fault by its wire name (none for anything else).
pub fn fault_of(name: &str) -> Fault {
    FAULTS.iter().find(|(_, n, _)| *n == name).map_or(Fault::None, |(f, _, _)| *f)
}

/// The "Faulty devices" field: empty is every device (`None`); anything else is a count, or 0 — which the
/// service refuses with the range — when it is not a number.
pub fn faulty_of(text: &str) -> Option<u32> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.parse().unwrap_or(0))
}

/// What a fault shows a class, in a sentence.
pub fn fault_hint(f: Fault) -> &'static str {
    match f {
        Fault::None => "Devices derive their keys from the group and provision normally.",
        Fault::WrongKey => "Each device signs its SAS token with a key no enrollment has: the service answers 401002.",
        Fault::OtherGroupKey => {
            "Each device signs with the key derived from another group (simulated-devices-other): the service finds the group \
             whose key verifies, so the device lands in that group, not the one you meant."
        }
        Fault::UnknownId => {
            "Registration ids no enrollment names — with a key nobody has, or a TPM whose endorsement key nobody enrolled: \
             401002, the same answer as a wrong key."
        }
        Fault::ExpiredToken => "The SAS token's expiry (se) passed a minute ago: the service refuses it with 401002.",
        Fault::DisabledGroup => "Devices of the disabled group simulated-devices-disabled: they get no hub.",
        Fault::UntrustedCa => "Each device presents a certificate issued by a CA no enrollment group trusts: 401002.",
        Fault::ExpiredCertificate => {
            "Each device presents a certificate that expired in 2020: the TLS handshake or the attestation refuses it."
        }
        Fault::CnMismatch => "The certificate's subject CN is not the registration id the device asks for: 401002.",
        Fault::WebhookError => {
            "Devices of simulated-devices-webhook-error, whose custom allocation calls the built-in demo webhook, which refuses \
             them (HTTP 400): they fail at once with 400207."
        }
        Fault::WebhookTimeout => {
            "Devices of simulated-devices-webhook-timeout, whose webhook answers after the service stopped waiting: they poll \
             while the service retries the webhook on its schedule (webhook_timeout_secs, webhook_retries), then fail with 400207."
        }
        Fault::Throttled => {
            "Each device ignores retry-after and polls its operation back to back: with the Azure limits profile (5 polls per \
             device per 10 s) the service answers 429001 with a retry-after. Switch the profile in Settings first."
        }
        Fault::DisabledEnrollment => "Each TPM's individual enrollment is disabled: the device attests, then gets no hub (disabled).",
        Fault::HubDown => {
            "Devices of simulated-devices-hub-down, whose only hub cannot be reached: they poll while the service retries the hub, then fail with 503001."
        }
    }
}

/// A state's label and badge class.
pub fn state_badge(s: SimState) -> (&'static str, &'static str) {
    match s {
        SimState::Waiting => ("waiting", "muted"),
        SimState::Running => ("running", "warn"),
        SimState::Paused => ("paused", "warn"),
        SimState::Assigned => ("assigned", "ok"),
        SimState::Failed => ("failed", "bad"),
        SimState::Disabled => ("disabled", "bad"),
        SimState::Refused => ("refused", "bad"),
        SimState::Error => ("error", "bad"),
    }
}

/// A scenario's last run as a badge: label and class.
pub fn scenario_badge(s: Option<ScenarioState>) -> (&'static str, &'static str) {
    match s {
        None => ("not run", "muted"),
        Some(ScenarioState::Running) => ("running", "warn"),
        Some(ScenarioState::Passed) => ("passed", "ok"),
        Some(ScenarioState::Failed) => ("not as expected", "bad"),
        Some(ScenarioState::Error) => ("stopped", "bad"),
    }
}

/// A scenario step's class: running, as expected, or not.
pub fn step_class(s: &ScenarioStepView) -> &'static str {
    match &s.problems {
        None => "step-running",
        Some(p) if p.is_empty() => "step-ok",
        Some(_) => "step-failed",
    }
}

/// What a scenario step did, in a line: the action, then where its devices went.
pub fn step_line(s: &ScenarioStepView) -> String {
    let hubs: Vec<String> = s.per_hub.iter().map(|(h, n)| format!("{n} on {h}")).collect();
    match (s.problems.is_some(), hubs.is_empty()) {
        (false, _) => format!("{} device(s) registering…", s.devices),
        (true, true) => s.action.clone(),
        (true, false) => format!("{}: {}", s.action, hubs.join(", ")),
    }
}

/// A step's arrow between the device and the service.
pub fn arrow(d: Direction) -> &'static str {
    match d {
        Direction::Out => "→",
        Direction::In => "←",
        Direction::Local => "•",
    }
}

/// A step kind's short name.
pub fn kind_label(k: FlowKind) -> &'static str {
    match k {
        FlowKind::Setup => "set-up",
        FlowKind::Challenge => "TPM challenge",
        FlowKind::Connect => "connect",
        FlowKind::Tls => "TLS",
        FlowKind::Login => "sign-in",
        FlowKind::Register => "register",
        FlowKind::Accepted => "accepted",
        FlowKind::Wait => "wait",
        FlowKind::Poll => "poll",
        FlowKind::Answer => "answer",
        FlowKind::Refused => "refused",
        FlowKind::Error => "error",
    }
}

/// Why a device ended as it did, in plain words, when it did not get a hub: the device's side of the codes a
/// device meets, else the console's error help.
pub fn cause(d: &SimDevice) -> Option<String> {
    let code = d.error_code?;
    let device_side = match code {
        401002 => Some((
            "Not attested",
            "The service found no enrollment that accepts this registration id with this SAS token: a wrong key, an id no \
             enrollment names, an expired token, or an id another enrollment already owns. Devices all get the same answer, \
             so a prober learns nothing.",
            "Check the key (a group's devices use the key derived from the group key and their id) and the token's expiry; \
             the service's log and the decision trace say which it was.",
        )),
        429001 => Some(("Throttled", "The device sent more than the limits profile allows.", "Wait the retry-after and try again.")),
        409203 => Some((
            "Already registering",
            "A registration of the same id is in progress.",
            "Poll that operation, or wait and register again.",
        )),
        _ => None,
    };
    let (title, why, fix) = device_side.unwrap_or_else(|| {
        let h = error_help::for_error(code, d.message.as_deref().unwrap_or_default());
        (h.title, h.cause, h.fix)
    });
    Some(format!("{title} ({code}): {why} {fix}"))
}

/// Mermaid text: no line breaks, no characters Mermaid reads as syntax.
fn mermaid_text(s: &str) -> String {
    s.chars().map(|c| if matches!(c, ';' | '#' | '\n' | '\r' | ':') { ' ' } else { c }).collect()
}

fn mermaid_line(out: &mut String, s: &FlowStep) {
    let text = mermaid_text(&s.title);
    let _ = match s.direction {
        Direction::Out => writeln!(out, "    Device->>DPS: {text}"),
        Direction::In => writeln!(out, "    DPS-->>Device: {text}"),
        Direction::Local => writeln!(out, "    Note over Device: {text}"),
    };
}

/// The Markdown transcript of one device's flow: heading, outcome, sequence diagram, steps with messages.
pub fn transcript(run: &Simulation, d: &SimDevice) -> String {
    let context = format!("Run: {} (over {}, {})", run.id, run.request.transport.label(), run.target);
    device_section(d, &context, "##")
}

/// A device's section under a heading of `level`: `context`, its outcome and why, its sequence, its messages.
fn device_section(d: &SimDevice, context: &str, level: &str) -> String {
    let mut out = format!("{level} Device `{}`\n\n", d.registration_id);
    let (state, _) = state_badge(d.state);
    let _ = writeln!(out, "- {context}");
    if !d.fault.is_none() {
        let _ = writeln!(out, "- Fault given: {}", fault_label(d.fault));
    }
    let _ = writeln!(out, "- Outcome: **{state}** in {} ms", d.millis);
    if let (Some(hub), Some(id)) = (&d.assigned_hub, &d.device_id) {
        let _ = writeln!(out, "- Assigned to `{hub}` as device `{id}`");
    }
    if let Some(c) = cause(d) {
        let _ = writeln!(out, "- Why: {c}");
    }
    out.push_str("\n```mermaid\nsequenceDiagram\n    participant Device\n    participant DPS as DPS Console\n");
    d.steps.iter().for_each(|s| mermaid_line(&mut out, s));
    out.push_str("```\n\n| # | ms | | step | what |\n|---|---|---|---|---|\n");
    for (i, s) in d.steps.iter().enumerate() {
        let title = s.title.replace('|', "\\|");
        let _ = writeln!(out, "| {} | {} | {} | {} | {title} |", i + 1, s.at_ms, arrow(s.direction), kind_label(s.kind));
    }
    for (i, s) in d.steps.iter().enumerate().filter(|(_, s)| s.message.is_some()) {
        let _ = write!(out, "\n**Step {} — {}**\n\n```\n{}\n```\n", i + 1, kind_label(s.kind), s.message.as_deref().unwrap_or_default());
    }
    out
}

/// The Markdown transcript of a scenario run: what it shows, how it ended, and each step — what it said and did,
/// where its devices went, what was not as expected, and its first device's flow.
pub fn scenario_transcript(s: &ScenarioView) -> String {
    let mut out = format!("# Scenario: {}\n\n{}\n\n", s.title, s.summary);
    let (state, _) = scenario_badge(s.state);
    let _ = writeln!(out, "- Scenario `{}`: **{state}**", s.name);
    if let Some(e) = &s.error {
        let _ = writeln!(out, "- Stopped: {e}");
    }
    for st in &s.steps {
        let _ = write!(out, "\n## Step {}\n\n", st.index);
        if let Some(say) = &st.say {
            let _ = writeln!(out, "{say}\n");
        }
        let _ = writeln!(out, "- {}", step_line(st));
        for p in st.problems.iter().flatten() {
            let _ = writeln!(out, "- Not as expected: {p}");
        }
        if let Some(d) = &st.sample {
            out.push('\n');
            out.push_str(&device_section(d, &format!("The first of the step's {} device(s)", st.devices), "###"));
        }
    }
    out
}

/// Devices whose whole flow a run's transcript carries (`GET /simulations/{id}?flows=50`); the others are rows of
/// its table.
pub const TRANSCRIPT_FLOWS: usize = 50;

/// The Markdown transcript of a run: what was asked, the counts, a row per device, then the flows of the first
/// `flows` devices (the run as read with `?flows=`, so these carry their steps).
pub fn run_transcript(run: &Simulation, flows: usize) -> String {
    let mut out = format!("# Simulation {}\n\n", run.id);
    let _ = writeln!(out, "- Started: {}", run.started.to_rfc3339());
    let _ = writeln!(out, "- {} device(s) over {}, {}", run.request.count, run.request.transport.label(), run.target);
    let faulty = match run.request.faulty {
        None => String::new(),
        Some(1) => " (the first device)".to_owned(),
        Some(k) => format!(" (the first {k} devices)"),
    };
    let _ = writeln!(out, "- Fault: {}{faulty}", fault_label(run.request.fault));
    let counts: Vec<String> = run.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = writeln!(out, "- Outcome: {}\n", counts.join(", "));
    out.push_str("| device | fault | outcome | hub | code | ms |\n|---|---|---|---|---|---|\n");
    for d in &run.devices {
        let fault = if d.fault.is_none() { "—" } else { fault_label(d.fault) };
        let code = d.error_code.map(|c| c.to_string()).unwrap_or_default();
        let hub = d.assigned_hub.as_deref().unwrap_or("—");
        let _ = writeln!(out, "| `{}` | {fault} | {} | {hub} | {code} | {} |", d.registration_id, state_badge(d.state).0, d.millis);
    }
    let flows = flows.min(run.devices.len());
    if flows < run.devices.len() {
        let _ = writeln!(out, "\nThe flows of the first {flows} of {} devices follow.", run.devices.len());
    }
    out.push('\n');
    for d in run.devices.iter().take(flows) {
        out.push_str(&transcript(run, d));
        out.push('\n');
    }
    out
}

/// What a run's clean-up removed, in a sentence, and what it could not.
pub fn clean_up_summary(run: &str, done: &SimulationCleanUp) -> String {
    let plural = |n: u32, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut out = format!(
        "{run} cleaned up: {}, {} and {} removed.",
        plural(done.registrations, "registration record", "registration records"),
        plural(done.identities, "hub identity", "hub identities"),
        plural(done.enrollments, "enrollment", "enrollments"),
    );
    if !done.problems.is_empty() {
        let _ = write!(out, " Not removed: {}", done.problems.join("; "));
    }
    out
}

pub fn fault_label(f: Fault) -> &'static str {
    FAULTS.iter().find(|(x, _, _)| *x == f).map_or("None", |(_, _, l)| l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_proto::simulation::SimulationRequest;

    fn step(kind: FlowKind, direction: Direction, title: &str, message: Option<&str>) -> FlowStep {
        FlowStep { kind, direction, at_ms: 5, title: title.into(), message: message.map(str::to_owned) }
    }

    #[test]
    fn the_faulty_field_is_all_devices_when_empty() {
        assert_eq!((faulty_of(""), faulty_of(" 3 "), faulty_of("three")), (None, Some(3), Some(0)));
    }

    #[test]
    fn a_clean_up_is_summed_up_in_a_sentence_with_what_was_not_removed() {
        let done = SimulationCleanUp { registrations: 3, identities: 1, enrollments: 0, problems: vec![] };
        assert_eq!(clean_up_summary("sim-2", &done), "sim-2 cleaned up: 3 registration records, 1 hub identity and 0 enrollments removed.");
        let partly = SimulationCleanUp { problems: vec!["hub 'h': unreachable".into()], ..done };
        assert!(clean_up_summary("sim-2", &partly).ends_with("Not removed: hub 'h': unreachable"));
    }

    fn run() -> Simulation {
        let request: SimulationRequest = serde_json::from_str(r#"{"count":1,"transport":"mqtt"}"#).expect("request");
        Simulation {
            id: "sim-1".into(),
            started: chrono::DateTime::UNIX_EPOCH,
            request,
            target: "group g".into(),
            counts: Default::default(),
            devices: vec![],
        }
    }

    fn device(state: SimState, steps: Vec<FlowStep>) -> SimDevice {
        SimDevice {
            registration_id: "dev-1".into(),
            state,
            fault: Fault::None,
            paused_before: None,
            assigned_hub: Some("hub-a".into()),
            device_id: Some("dev-1".into()),
            substatus: None,
            error_code: None,
            message: None,
            millis: 42,
            issued_certificate: None,
            steps,
        }
    }

    #[test]
    fn a_transcript_has_the_sequence_diagram_and_every_message() {
        let steps = vec![
            step(FlowKind::Login, Direction::Out, "CONNECT", Some("password: SharedAccessSignature sig=•••")),
            step(FlowKind::Accepted, Direction::In, "202 — assigning: retry after 3 s", None),
            step(FlowKind::Wait, Direction::Local, "wait 3 s", None),
            step(FlowKind::Answer, Direction::In, "200 — assigned | to hub-a", Some("{\"status\":\"assigned\"}")),
        ];
        let md = transcript(&run(), &device(SimState::Assigned, steps));
        assert!(md.contains("```mermaid\nsequenceDiagram"), "{md}");
        assert!(md.contains("    Device->>DPS: CONNECT\n"), "{md}");
        assert!(md.contains("    DPS-->>Device: 202 — assigning  retry after 3 s\n"), "a colon would end the Mermaid message: {md}");
        assert!(md.contains("    Note over Device: wait 3 s\n"), "{md}");
        assert!(md.contains("| 4 | 5 | ← | answer | 200 — assigned \\| to hub-a |"), "pipes are escaped in the table: {md}");
        assert!(md.contains("**Step 1 — sign-in**\n\n```\npassword: SharedAccessSignature sig=•••\n```"), "{md}");
        assert!(md.contains("Assigned to `hub-a` as device `dev-1`") && md.contains("MQTT"), "{md}");
    }

    #[test]
    fn a_refused_device_says_why_in_plain_words() {
        let mut d = device(SimState::Refused, vec![]);
        (d.assigned_hub, d.device_id, d.error_code, d.message) = (None, None, Some(401002), Some("no enrollment accepts it".into()));
        d.fault = Fault::WrongKey;
        let why = cause(&d).expect("a cause");
        assert!(why.contains("401002"), "{why}");
        let mut r = run();
        r.devices = vec![d.clone(), device(SimState::Assigned, vec![])];
        let md = run_transcript(&r, 1);
        assert!(md.contains("| `dev-1` | Wrong key | refused | — | 401002 | 42 |"), "a row per device: {md}");
        assert!(md.contains("The flows of the first 1 of 2 devices follow."), "{md}");
        assert!(
            md.contains("- Why: ") && md.contains("- Fault given: Wrong key"),
            "the run's transcript carries the cause and the fault: {md}"
        );
    }

    #[test]
    fn a_scenario_step_reads_as_a_line() {
        let mut st = ScenarioStepView {
            index: 1,
            say: None,
            action: "register 3 device(s) over MQTT".into(),
            devices: 3,
            per_hub: Default::default(),
            problems: None,
            sample: None,
        };
        assert_eq!((step_line(&st), step_class(&st)), ("3 device(s) registering…".to_owned(), "step-running"));
        st.per_hub.insert("hub-a".into(), 2);
        st.per_hub.insert("hub-b".into(), 1);
        st.problems = Some(vec![]);
        assert_eq!((step_line(&st), step_class(&st)), ("register 3 device(s) over MQTT: 2 on hub-a, 1 on hub-b".to_owned(), "step-ok"));
        st.problems = Some(vec!["d1 went to hub-b".into()]);
        assert_eq!(step_class(&st), "step-failed");
        assert_eq!(scenario_badge(None).0, "not run");
        st.sample = Some(device(SimState::Assigned, vec![step(FlowKind::Login, Direction::Out, "CONNECT", Some("password: sig=•••"))]));
        let view = ScenarioView {
            name: "static".into(),
            title: "Static allocation".into(),
            summary: "One hub.".into(),
            own: false,
            state: Some(ScenarioState::Failed),
            steps: vec![st],
            error: None,
        };
        let md = scenario_transcript(&view);
        assert!(md.starts_with("# Scenario: Static allocation\n\nOne hub."), "{md}");
        assert!(md.contains("**not as expected**") && md.contains("- Not as expected: d1 went to hub-b"), "{md}");
        assert!(md.contains("### Device `dev-1`") && md.contains("```mermaid") && md.contains("Device->>DPS: CONNECT"), "{md}");
    }

    #[test]
    fn each_attestation_offers_only_its_faults() {
        let x509: Vec<&str> = faults_for("x509").iter().map(|(_, n, _)| *n).collect();
        assert_eq!(x509, ["none", "untrustedCa", "expiredCertificate", "cnMismatch"]);
        assert!(faults_for("symmetricKey").iter().all(|(f, _, _)| !matches!(f, Fault::CnMismatch | Fault::UntrustedCa)));
        assert!(FAULTS.iter().all(|(f, _, _)| !fault_hint(*f).is_empty()));
    }

    #[test]
    fn choices_round_trip_by_wire_name() {
        for (f, name, _) in FAULTS {
            assert_eq!(fault_of(name), f);
            assert_eq!(serde_json::to_value(f).expect("fault"), serde_json::json!(name), "the wire name is serde's");
        }
        for (t, name, _) in TRANSPORTS {
            assert_eq!(transport_of(name), t);
            assert_eq!(serde_json::to_value(t).expect("transport"), serde_json::json!(name));
        }
    }
}
