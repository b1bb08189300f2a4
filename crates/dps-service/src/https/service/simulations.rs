//! `/simulations…` (extension, #16): simulated devices for trainers. `POST /simulations` plans the devices —
//! registration ids, the keys their group or enrollment gives them, and the fault asked for — and starts
//! them against this service's own listeners ([`dps_sim::live`]); the other routes read a run, one device's
//! flow, continue a stepped device, and forget a run.
//!
//! Faults (#16 item 3): `wrongKey` (a key nobody has), `otherGroupKey` (the key derived from the group
//! `simulated-devices-other`: the service finds the group whose key verifies, so the device lands there), `unknownId` (ids no enrollment names), `expiredToken` (a SAS token that expired a
//! minute ago), `disabledGroup` (the disabled group `simulated-devices-disabled`), `hubDown` (the group
//! `simulated-devices-hub-down`, whose only hub is a linked hub nobody answers for: the devices poll while the
//! engine retries it on its hub schedule, then fail with 503001). The groups named here are made when missing,
//! as symmetric-key groups with the service's defaults. `faulty: k` gives the fault to the first k devices only:
//! the others are healthy (their own group, their own CA, an enabled enrollment), so one run shows both.

use base64::Engine;
use dps_core::model::Precondition;
use dps_core::DpsError;
use dps_proto::simulation::{ContinueRequest, Fault, SimCa as SimCaChoice, SimulationRequest, MAX_FLOWS, MAX_TPM_DEVICES};
use dps_proto::Enrollment;
use dps_proto::{
    AttestationMechanism, AttestationType, EnrollmentGroup as Group, X509Attestation, X509CertificateWithInfo, X509Certificates,
};
use dps_proto::{IndividualEnrollment as Individual, ProvisioningStatus, RegistrationId};
use dps_sim::devices::Credential;
use dps_sim::live::{Planned, MAX_DEVICES};
use dps_sim::x509::SimCa;
use dps_sim::DeviceTarget;
use http::StatusCode;

use crate::app::App;
use crate::https::{empty_response, json_response, HttpResponse, Request};

/// The group devices use when the request names none.
pub const DEFAULT_GROUP: &str = "simulated-devices";
const DISABLED_GROUP: &str = "simulated-devices-disabled";
const OTHER_GROUP: &str = "simulated-devices-other";
/// The `hubDown` fault's group, whose only hub is [`DOWN_HUB`].
const HUB_DOWN_GROUP: &str = "simulated-devices-hub-down";
/// A hub that cannot be reached: a Mosquitto connector on a loopback port nothing listens on (1), never chosen by
/// an allocation policy (only the group that names it goes there).
pub const DOWN_HUB: &str = "simulated-hub-down.dps.local";
const DOWN_BROKER: &str = "mqtt://dps:down@127.0.0.1:1";
/// The `webhookError` and `webhookTimeout` faults' groups: custom allocation by the demo webhook in its `error` and
/// `slow` modes.
const WEBHOOK_ERROR_GROUP: &str = "simulated-devices-webhook-error";
const WEBHOOK_TIMEOUT_GROUP: &str = "simulated-devices-webhook-timeout";
/// The webhook request schema those groups ask for (§6.1).
const WEBHOOK_API_VERSION: &str = "2021-10-01";
/// The X.509 devices' group: each X.509 run makes a CA and makes it this group's signing certificate.
pub const X509_GROUP: &str = "simulated-x509-devices";
/// The initial-twin tag of the enrollments a simulation makes (its TPM devices'), naming the run: what a run's
/// clean-up may delete, and what a later run may replace.
pub const SIMULATION_TAG: &str = "dpsConsoleSimulation";
/// The credential policy of devices that request a certificate (`requestCertificate`): the local CA.
pub const CREDENTIAL_POLICY: &str = "simulated-devices";

pub async fn list(app: &App) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.simulations.list()))
}

pub async fn start(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let request: SimulationRequest = req.json_or(|| None)?;
    check(app, &request)?;
    let id = app.simulations.next_id();
    let target = device_target(app)?;
    let (target_name, mut planned) = plan(app, &request, &id, &target).await?;
    if request.request_certificate {
        for p in &mut planned {
            p.certificate_request = Some(certificate_request(&p.registration_id)?);
        }
    }
    let shown = SimulationRequest { x509_ca: request.x509_ca.without_key(), ..request };
    let run = app
        .simulations
        .start(id, (shown, target_name), planned, target, app.clock.now(), app.shutdown.clone())
        .map_err(|m| DpsError::new(dps_core::ErrorKind::Throttled, m))?;
    Ok(json_response(StatusCode::CREATED, &run.snapshot(true, 0)))
}

/// `GET /simulations/{id}`; `?flows=N`: the first N devices (at most [`MAX_FLOWS`]) with every step of their flow,
/// in one answer (a run's transcript).
pub async fn get(app: &App, req: &Request, id: &str) -> Result<HttpResponse, DpsError> {
    let flows = match req.query("flows") {
        None => 0,
        Some(n) => n
            .parse()
            .ok()
            .filter(|n| *n <= MAX_FLOWS)
            .ok_or_else(|| DpsError::invalid(format!("flows must be 0 to {MAX_FLOWS}, not '{}'", n.escape_debug())))?,
    };
    let run = app.simulations.get(id).ok_or_else(|| not_found(id))?;
    Ok(json_response(StatusCode::OK, &run.snapshot(true, flows)))
}

pub async fn delete(app: &App, id: &str) -> Result<HttpResponse, DpsError> {
    if !app.simulations.remove(id) {
        return Err(not_found(id));
    }
    Ok(empty_response(StatusCode::NO_CONTENT))
}

pub async fn device(app: &App, id: &str, registration_id: &str) -> Result<HttpResponse, DpsError> {
    let run = app.simulations.get(id).ok_or_else(|| not_found(id))?;
    let d = run.device(registration_id).ok_or_else(|| device_not_found(id, registration_id))?;
    Ok(json_response(StatusCode::OK, &d.snapshot(true)))
}

/// Continues one stepped device (`{"toEnd": true}`: to its end), or every device of the run (`registration_id`
/// absent).
pub async fn resume(app: &App, req: &Request, id: &str, registration_id: Option<&str>) -> Result<HttpResponse, DpsError> {
    let body: ContinueRequest = req.json_or(|| Some(ContinueRequest::default()))?;
    let run = app.simulations.get(id).ok_or_else(|| not_found(id))?;
    match registration_id {
        Some(r) => run.device(r).ok_or_else(|| device_not_found(id, r))?.resume(body.to_end),
        None => run.devices.iter().for_each(|d| d.resume(body.to_end)),
    }
    Ok(json_response(StatusCode::OK, &run.snapshot(true, 0)))
}

pub(super) fn not_found(id: &str) -> DpsError {
    DpsError::new(dps_core::ErrorKind::NotFound, format!("there is no simulation '{}'", id.escape_debug()))
}

fn device_not_found(id: &str, registration_id: &str) -> DpsError {
    DpsError::new(
        dps_core::ErrorKind::NotFound,
        format!("simulation '{}' has no device '{}'", id.escape_debug(), registration_id.escape_debug()),
    )
}

fn check(app: &App, r: &SimulationRequest) -> Result<(), DpsError> {
    if !["symmetricKey", "x509", "tpm"].contains(&r.attestation.as_str()) {
        let a = r.attestation.escape_debug();
        return Err(DpsError::invalid(format!("attestation '{a}' cannot be simulated; use symmetricKey, x509 or tpm")));
    }
    if r.attestation == "tpm" {
        check_tpm(r)?;
    }
    if !r.fault.fits(&r.attestation) {
        return Err(DpsError::invalid(format!("the fault {:?} does not apply to {} devices", r.fault, r.attestation)));
    }
    if r.attestation != "x509" && !r.x509_ca.is_run() {
        return Err(DpsError::invalid("x509Ca is for X.509 devices"));
    }
    if r.attestation == "x509" && (r.group.is_some() || r.enrollment.is_some()) {
        return Err(DpsError::invalid(format!("X.509 devices use the group {X509_GROUP}, made for each run with a CA of its own")));
    }
    if r.fault == Fault::Throttled && app.limits.profile() != dps_core::limits::Profile::Azure {
        return Err(DpsError::invalid(
            "the throttled fault shows the Azure limits profile's throttling: switch the limits profile to azure (Settings, or limits = \"azure\") first",
        ));
    }
    if r.count == 0 || r.count > MAX_DEVICES {
        return Err(DpsError::invalid(format!("count must be 1 to {MAX_DEVICES}, not {}", r.count)));
    }
    match r.faulty {
        Some(_) if r.fault == Fault::None => return Err(DpsError::invalid("faulty counts the devices given the fault: name a fault")),
        Some(k) if k == 0 || k > r.count => {
            return Err(DpsError::invalid(format!("faulty must be 1 to count ({}), not {k}", r.count)));
        }
        _ => {}
    }
    if r.enrollment.is_some() && (r.count != 1 || r.group.is_some()) {
        return Err(DpsError::invalid("an individual enrollment is one device: count 1 and no group"));
    }
    if let Some(p) = &r.prefix {
        RegistrationId::try_from(format!("{p}1")).map_err(|e| DpsError::invalid(format!("prefix: {e}")))?;
    }
    Ok(())
}

/// TPM devices: an individual enrollment each, over a transport that carries TPM, where a software TPM runs.
fn check_tpm(r: &SimulationRequest) -> Result<(), DpsError> {
    dps_sim::tpm::available().map_err(DpsError::invalid)?;
    if !r.transport.carries_tpm() {
        return Err(DpsError::invalid("DPS has no TPM attestation over MQTT: TPM devices use HTTPS, AMQP or AMQP over WebSockets"));
    }
    if r.count > MAX_TPM_DEVICES {
        return Err(DpsError::invalid(format!(
            "TPM devices run a software TPM each: count must be 1 to {MAX_TPM_DEVICES}, not {}",
            r.count
        )));
    }
    if r.group.is_some() || r.enrollment.is_some() || r.request_certificate {
        return Err(DpsError::invalid(
            "TPM devices get an individual enrollment each, made for their TPM; name no group or enrollment, and ask for no certificate",
        ));
    }
    Ok(())
}

fn certificate_request(registration_id: &str) -> Result<dps_sim::x509::CertificateRequest, DpsError> {
    dps_sim::x509::certificate_request(registration_id).map_err(|e| DpsError::internal(format!("{e:#}")))
}

/// The credential policy of devices that request a certificate, made when missing: the local CA, 30 days.
async fn ensure_credential_policy(app: &App) -> Result<(), DpsError> {
    match app.credentials.get_policy(CREDENTIAL_POLICY).await {
        Ok(_) => Ok(()),
        Err(e) if e.status() == 404 => {
            let policy = dps_proto::CredentialPolicy::local(CREDENTIAL_POLICY);
            app.credentials.put_policy(CREDENTIAL_POLICY, policy, Precondition::None).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// Names the credential policy on the default group (a group the trainer named keeps its own setting: without a
/// policy, its devices' CSRs are refused with 400012, which is worth seeing too).
async fn with_credential_policy(app: &App, group: &str) -> Result<(), DpsError> {
    ensure_credential_policy(app).await?;
    let mut g = app.management.get::<Group>(group).await?;
    if g.credential_policy_name.is_none() {
        *g.shared().credential_policy_name = Some(CREDENTIAL_POLICY.to_owned());
        app.management.put(group, g, Precondition::None, dps_core::api_version::Schema::Current).await?;
    }
    Ok(())
}

/// The devices of a run: ids and credentials, as the request and its fault say; and what they attest against.
async fn plan(app: &App, r: &SimulationRequest, run: &str, target: &DeviceTarget) -> Result<(String, Vec<Planned>), DpsError> {
    match r.attestation.as_str() {
        "x509" => return plan_x509(app, r, run, target).await,
        "tpm" => return Ok(plan_tpm(app, r, run)),
        _ => {}
    }
    // The devices sign by the service's clock: they run on its machine.
    let scope = (app.info.id_scope.as_str(), u64::try_from(app.clock.now().timestamp()).unwrap_or_default());
    if let Some(e) = &r.enrollment {
        let key = match r.create {
            true => primary_key(&made::<Individual>(app, e, false).await?)?,
            false => primary_key(&app.management.get::<Individual>(e).await?)?,
        };
        let fault = r.fault_of(1);
        let id = if fault == Fault::UnknownId { format!("{e}-unknown") } else { e.clone() };
        return Ok((format!("enrollment {e}"), vec![planned(scope, id, &key, fault)?]));
    }
    // The group the devices with the fault attest in; and when only some have it and it takes them to a group of
    // its own, the healthy devices' group (otherwise the healthy devices attest in the faulty devices' group).
    let faulty = group_for(app, r, r.fault).await?;
    let healthy = match r.faulty {
        Some(k) if k < r.count && takes_its_own_group(r.fault) => Some(group_for(app, r, Fault::None).await?),
        _ => None,
    };
    let prefix = r.prefix.clone().unwrap_or_else(|| format!("{run}-"));
    let mut devices = Vec::new();
    for n in 1..=r.count {
        let fault = r.fault_of(n);
        let (_, signing) = healthy.as_ref().filter(|_| fault == Fault::None).unwrap_or(&faulty);
        let id = if fault == Fault::UnknownId { format!("{prefix}unknown-{n}") } else { format!("{prefix}{n}") };
        let key = dps_crypto::derive_device_key(signing, &id).map_err(|e| DpsError::internal(e.to_string()))?;
        devices.push(planned(scope, id, &key, fault)?);
    }
    let healthy = healthy.map(|(name, _)| name);
    if r.request_certificate && (faulty.0 == DEFAULT_GROUP || healthy == Some(DEFAULT_GROUP)) {
        with_credential_policy(app, DEFAULT_GROUP).await?;
    }
    Ok((format!("{}{}", target_groups(faulty.0, healthy), waits(app, r.fault)), devices))
}

/// Whether devices with `fault` attest in a group of the fault's own, or with another group's key, rather than in
/// the run's group: the faults [`group_for`] gives a group.
fn takes_its_own_group(fault: Fault) -> bool {
    matches!(fault, Fault::DisabledGroup | Fault::HubDown | Fault::WebhookError | Fault::WebhookTimeout | Fault::OtherGroupKey)
}

/// The group devices with `fault` attest in, and the key they derive theirs from (for `otherGroupKey`, another
/// group's, so they land there).
async fn group_for<'a>(app: &App, r: &'a SimulationRequest, fault: Fault) -> Result<(&'a str, String), DpsError> {
    let (name, key) = match (fault, &r.group) {
        (Fault::DisabledGroup, _) => (DISABLED_GROUP, group_key(app, DISABLED_GROUP).await?),
        (Fault::HubDown, _) => (HUB_DOWN_GROUP, hub_down_key(app).await?),
        (Fault::WebhookError, _) => (WEBHOOK_ERROR_GROUP, webhook_group_key(app, WEBHOOK_ERROR_GROUP, "error").await?),
        (Fault::WebhookTimeout, _) => (WEBHOOK_TIMEOUT_GROUP, webhook_group_key(app, WEBHOOK_TIMEOUT_GROUP, "slow").await?),
        (_, Some(g)) if r.create => (g.as_str(), group_key(app, g).await?),
        (_, Some(g)) => (g.as_str(), primary_key(&app.management.get::<Group>(g).await?)?),
        (_, None) => (DEFAULT_GROUP, group_key(app, DEFAULT_GROUP).await?),
    };
    match fault {
        Fault::OtherGroupKey => Ok((name, group_key(app, OTHER_GROUP).await?)),
        _ => Ok((name, key)),
    }
}

/// The groups a run's devices attest in: `group NAME`, or when the healthy devices attest in another group than the
/// faulty ones, both, each saying which devices it has.
fn target_groups(faulty: &str, healthy: Option<&str>) -> String {
    match healthy {
        Some(healthy) if healthy != faulty => format!("group {faulty} (the faulty devices) and group {healthy} (the healthy devices)"),
        _ => format!("group {faulty}"),
    }
}

/// What a fault's devices wait for, when the service's schedule makes it long (the webhook time-out's retries).
fn waits(app: &App, fault: Fault) -> String {
    if fault != Fault::WebhookTimeout {
        return String::new();
    }
    let retry = app.engine.config().webhook_retry;
    let calls = retry.retries + 1;
    let waiting = app.webhook_timeout * calls + retry.total_delay();
    format!(
        " (each device waits {calls} webhook calls of {} s and the retries between: about {} s)",
        app.webhook_timeout.as_secs(),
        waiting.as_secs()
    )
}

/// A group whose custom allocation calls the built-in demo webhook in `mode` (made when missing, its webhook URL
/// brought up to date): its key.
async fn webhook_group_key(app: &App, name: &str, mode: &str) -> Result<String, DpsError> {
    let definition = dps_proto::CustomAllocationDefinition {
        webhook_url: super::demo_webhook::webhook_url(app, mode).await?,
        api_version: WEBHOOK_API_VERSION.to_owned(),
    };
    group_key_with(app, name, |g| {
        let shared = g.shared();
        *shared.allocation_policy = Some(dps_proto::AllocationPolicy::Custom);
        *shared.custom_allocation_definition = Some(definition);
    })
    .await
}

/// One device: its id and the SAS token the fault gives it.
fn planned((scope, now): (&str, u64), registration_id: String, key: &str, fault: Fault) -> Result<Planned, DpsError> {
    // A key nobody has, made only for the faults that use one.
    let stranger = matches!(fault, Fault::WrongKey | Fault::UnknownId)
        .then(|| base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()));
    let key = stranger.as_deref().unwrap_or(key);
    let se = if fault == Fault::ExpiredToken { now.saturating_sub(60) } else { now + 3600 };
    let sas = dps_device::device_sas_expiring(scope, &registration_id, key, se).map_err(|e| DpsError::internal(format!("{e:#}")))?;
    let mut device = Planned::new(registration_id, Credential::Sas(sas));
    if fault == Fault::Throttled {
        device.polling = dps_device::Polling::Storm;
    }
    Ok(device)
}

/// X.509 devices: the run's CA (made for the run, with an intermediate, or the trainer's — see [`SimCaChoice`]) has
/// its root made the signing certificate of [`X509_GROUP`]; each device gets a leaf of it (CN = its id) — or, as the fault says, one of another CA, an expired one, or one naming another id.
/// Devices that request a certificate: the group names [`CREDENTIAL_POLICY`] and trusts the local CA as its
/// secondary signing certificate, so the issued certificate attests in the same group.
async fn plan_x509(app: &App, r: &SimulationRequest, run: &str, target: &DeviceTarget) -> Result<(String, Vec<Planned>), DpsError> {
    let internal = |e: anyhow::Error| DpsError::internal(format!("{e:#}"));
    let cn = format!("DPS Console simulated devices CA ({run})");
    let ca = match &r.x509_ca {
        SimCaChoice::Run => SimCa::new(&cn).map_err(internal)?,
        SimCaChoice::Intermediate => SimCa::with_intermediate(&cn).map_err(internal)?,
        SimCaChoice::Uploaded { certificate, key } => {
            SimCa::uploaded(certificate, key).map_err(|e| DpsError::invalid(format!("x509Ca: {e:#}")))?
        }
    };
    let x509 = X509Attestation {
        signing_certificates: Some(X509Certificates {
            primary: Some(X509CertificateWithInfo { certificate: Some(ca.pem.clone()), info: None }),
            secondary: r.request_certificate.then(|| X509CertificateWithInfo {
                certificate: Some(String::from_utf8_lossy(&target.endpoint.ca_pem).into_owned()),
                info: None,
            }),
        }),
        ..Default::default()
    };
    let attestation = AttestationMechanism { kind: AttestationType::X509, tpm: None, x509: Some(x509), symmetric_key: None };
    let mut group = Group::new(X509_GROUP.to_owned(), attestation);
    if r.request_certificate {
        ensure_credential_policy(app).await?;
        group.credential_policy_name = Some(CREDENTIAL_POLICY.to_owned());
    }
    app.management.put(X509_GROUP, group, Precondition::None, dps_core::api_version::Schema::Current).await?;
    let untrusted = match r.fault {
        Fault::UntrustedCa => Some(SimCa::new("an untrusted CA").map_err(internal)?),
        _ => None,
    };
    let prefix = r.prefix.clone().unwrap_or_else(|| format!("{run}-"));
    let mut devices = Vec::new();
    for n in 1..=r.count {
        let (id, fault) = (format!("{prefix}{n}"), r.fault_of(n));
        let issuer = untrusted.as_ref().filter(|_| fault == Fault::UntrustedCa).unwrap_or(&ca);
        let cn = if fault == Fault::CnMismatch { format!("{id}-other") } else { id.clone() };
        let leaf = issuer.leaf(&cn, fault == Fault::ExpiredCertificate).map_err(internal)?;
        let credential = Credential::X509 { chain: leaf.chain, key: leaf.key };
        devices.push(Planned::new(id, credential));
    }
    Ok((format!("group {X509_GROUP}"), devices))
}

/// TPM devices: each starts a software TPM of its own, then the service enrolls that TPM's endorsement key in
/// an individual enrollment named by the device's id (disabled for `disabledEnrollment`; never for `unknownId`,
/// so the device meets the challenge refused), then the device registers.
fn plan_tpm(app: &App, r: &SimulationRequest, run: &str) -> (String, Vec<Planned>) {
    let enroll = |disabled: bool| -> dps_sim::tpm::Enroll {
        let (management, run_id) = (app.management.clone(), run.to_owned());
        std::sync::Arc::new(move |id: String, tpm: dps_proto::TpmAttestation| {
            let (management, run_id) = (management.clone(), run_id.clone());
            Box::pin(async move { enroll_tpm(&management, (&run_id, &id), tpm, disabled).await.map_err(|e| anyhow::anyhow!("{e}")) })
        })
    };
    let (enabled, disabled) = (enroll(false), enroll(true));
    let prefix = r.prefix.clone().unwrap_or_else(|| format!("{run}-"));
    let devices = (1..=r.count)
        .map(|n| {
            let enroll = match r.fault_of(n) {
                Fault::UnknownId => None,
                Fault::DisabledEnrollment => Some(disabled.clone()),
                _ => Some(enabled.clone()),
            };
            Planned::new(format!("{prefix}{n}"), Credential::Tpm { enroll })
        })
        .collect();
    ("an individual enrollment each (TPM)".to_owned(), devices)
}

/// Enrolls a simulated TPM device's endorsement key as the individual enrollment `id`, tagged with the run
/// ([`SIMULATION_TAG`] in its initial twin). An enrollment of that id that no simulation made is left as it is
/// and the device refused: a simulation never replaces the trainer's own enrollments. The write is conditional
/// (the simulation's enrollment unchanged since read, or none at all), so one made meanwhile is not replaced either.
async fn enroll_tpm(
    management: &dps_core::management::Management,
    (run, id): (&str, &str),
    tpm: dps_proto::TpmAttestation,
    disabled: bool,
) -> Result<(), DpsError> {
    let pre = match management.get::<Individual>(id).await {
        Ok(existing) if made_by_simulation(&existing) => Precondition::Etag(existing.etag.unwrap_or_default()),
        Ok(_) => {
            return Err(DpsError::new(
                dps_core::ErrorKind::Conflict,
                format!("an enrollment '{id}' that no simulation made exists: it is left as it is; choose another prefix"),
            ))
        }
        Err(e) if e.status() == 404 => Precondition::NotExists,
        Err(e) => return Err(e),
    };
    let attestation = AttestationMechanism { kind: AttestationType::Tpm, tpm: Some(tpm), x509: None, symmetric_key: None };
    let mut e = Individual::new(id.to_owned(), attestation);
    let tags = dps_proto::TwinCollection::from_iter([(SIMULATION_TAG.to_owned(), serde_json::Value::from(run))]);
    *e.shared().initial_twin = Some(dps_proto::InitialTwin { tags: Some(tags), properties: None });
    if disabled {
        *e.shared().provisioning_status = Some(ProvisioningStatus::Disabled);
    }
    management.put(id, e, pre, dps_core::api_version::Schema::Current).await.map(drop)
}

/// Whether a simulation made the enrollment `e` (its initial twin carries [`SIMULATION_TAG`]).
pub(crate) fn made_by_simulation(e: &Individual) -> bool {
    e.initial_twin.as_ref().and_then(|t| t.tags.as_ref()).is_some_and(|tags| tags.contains_key(SIMULATION_TAG))
}

/// The `hubDown` group's key: the unreachable hub linked and the group naming it alone, made when missing.
async fn hub_down_key(app: &App) -> Result<String, DpsError> {
    let hub = dps_proto::LinkedHub {
        host_name: DOWN_HUB.to_owned(),
        apply_allocation_policy: false,
        connector: dps_hub::MOSQUITTO.to_owned(),
        connection_string: Some(DOWN_BROKER.to_owned()),
        ..Default::default()
    };
    app.management.put_hub(hub).await?;
    group_key_with(app, HUB_DOWN_GROUP, |g| *g.shared().iot_hubs = Some(vec![DOWN_HUB.to_owned()])).await
}

/// The primary key of the symmetric-key group `name`, made when missing (disabled: the fault's group).
async fn group_key(app: &App, name: &str) -> Result<String, DpsError> {
    primary_key(&made::<Group>(app, name, name == DISABLED_GROUP).await?)
}

/// The key of the group `name` (made when missing) once `set` is applied to it; written back only when `set`
/// changed it.
async fn group_key_with(app: &App, name: &str, set: impl FnOnce(&mut Group)) -> Result<String, DpsError> {
    let mut g = made::<Group>(app, name, false).await?;
    let before = g.clone();
    set(&mut g);
    if g != before {
        g = app.management.put(name, g, Precondition::None, dps_core::api_version::Schema::Current).await?;
    }
    primary_key(&g)
}

/// The symmetric-key group or enrollment `id`, made when missing with the service's defaults (`disabled`: made
/// disabled).
async fn made<E: dps_core::management::Managed>(app: &App, id: &str, disabled: bool) -> Result<E, DpsError> {
    match app.management.get::<E>(id).await {
        Ok(doc) => Ok(doc),
        Err(e) if e.status() == 404 => {
            let mut doc = E::new(id.to_owned(), AttestationMechanism::symmetric_key(None, None));
            if disabled {
                *doc.shared().provisioning_status = Some(ProvisioningStatus::Disabled);
            }
            app.management.put(id, doc, Precondition::None, dps_core::api_version::Schema::Current).await
        }
        Err(e) => Err(e),
    }
}

fn primary_key<E: Enrollment>(e: &E) -> Result<String, DpsError> {
    e.attestation().symmetric_key.as_ref().and_then(|k| k.primary_key.clone()).ok_or_else(|| {
        DpsError::invalid(format!("{} '{}' has no symmetric key: only symmetric-key devices can be simulated yet", E::KIND.noun(), e.id()))
    })
}

/// This service's device listeners, as a device reaches them: the host devices are told to use.
pub(crate) fn device_target(app: &App) -> Result<DeviceTarget, DpsError> {
    let info = &app.info;
    let ca_pem = std::fs::read(&info.ca_certificate).map_err(|e| DpsError::internal(format!("the service's CA certificate: {e}")))?;
    let host = crate::host_with_port(&info.host, info.ports.https.unwrap_or(443));
    Ok(DeviceTarget {
        endpoint: dps_device::Endpoint { host, id_scope: info.id_scope.clone(), ca_pem },
        mqtt_port: info.ports.mqtt.unwrap_or(8883),
        amqp_port: info.ports.amqp.unwrap_or(5671),
    })
}
