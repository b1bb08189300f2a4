//! The assignment of one operation: load its enrollment, then decide where the device goes — the hub (the
//! allocator, the custom webhook in `webhook.rs`, or the hub it keeps), the re-provisioning policy, the
//! substatus and the twin (§7.2–§7.4) — create it there (`provision.rs`), and write the outcome (`finish.rs`).
//! Every step writes what it decided into the [`DecisionTrace`].

use dps_proto::trace::{AllocationStep, CertificateStep, DecisionTrace, GeoScored, Scored, TwinStep};
use dps_proto::{AllocationPolicy, DeviceRegistrationState, LinkedHub, ReprovisionPolicy, Substatus};
use tracing::{info, warn};

use super::finish::{Assignment, Outcome};
use super::webhook::{webhook_hubs, HubChoice};
use super::{store_err, DeviceKeys, RegistrationEngine};
use crate::allocation::{AllocationDecision, AllocationRequest};
use crate::attestation::Matched;
use crate::error::DpsError;
use crate::model::{EnrollmentRef, Operation, RegistrationRecord};
use crate::ports::{HubDevice, Provisioned};

impl RegistrationEngine {
    /// Runs the assignment of one operation to its end: decides, provisions, and writes the outcome (record and
    /// operation together) if this instance still holds the lease. Never panics; failures end in a `failed`
    /// operation, and a store failure leaves it `assigning` for the sweeper.
    pub(super) async fn assign(&self, op: Operation, device_keys: DeviceKeys, record: Option<RegistrationRecord>) {
        let operation_id = op.operation_id.clone();
        // The device's record, read once (or as the register just wrote it): the decision and the outcome's
        // record both start from it.
        let read = match record {
            Some(r) => Ok(Some(r)),
            None => self.ports.registrations.get_registration(&op.registration_id).await,
        };
        let previous = match read {
            Ok(p) => p,
            Err(e) => {
                warn!(operation_id, error = %e, "cannot read the registration record; the operation stays assigning and is resumed");
                self.known.remove(&operation_id);
                return;
            }
        };
        let mut trace = DecisionTrace {
            operation_id: Some(op.operation_id.clone()),
            attestation: Some(op.attestation),
            protocol: op.protocol.clone(),
            enrollment: Some(op.enrollment.clone()),
            ..DecisionTrace::default()
        };
        let outcome = self.decide(&op, previous.as_ref(), device_keys, &mut trace).await;
        let finished = self.finish(op, previous, outcome, trace).await;
        if !matches!(finished, Ok(true)) {
            self.known.remove(&operation_id);
        }
        match finished {
            Ok(true) => {}
            Ok(false) => info!(operation_id, "the operation was finished by another owner of its lease; this outcome is dropped"),
            Err(e) => warn!(operation_id, error = %e, "cannot store the outcome; the operation stays assigning and is resumed"),
        }
    }

    async fn load_enrollment(&self, r: &EnrollmentRef) -> Result<Option<Matched>, DpsError> {
        let err = store_err("could not read the enrollment");
        Ok(match r {
            EnrollmentRef::Individual(id) => {
                self.ports.enrollments.get_enrollment(id).await.map_err(&err)?.map(|e| Matched::Individual(Box::new(e)))
            }
            EnrollmentRef::Group(id) => self.ports.enrollments.get_group(id).await.map_err(&err)?.map(|g| Matched::Group(Box::new(g))),
        })
    }

    /// Decides where the device goes and creates it there.
    async fn decide(
        &self,
        op: &Operation,
        record: Option<&RegistrationRecord>,
        device_keys: DeviceKeys,
        trace: &mut DecisionTrace,
    ) -> Outcome {
        let matched = match self.load_enrollment(&op.enrollment).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                let error = DpsError::unauthorized("the enrollment was deleted while the registration was in progress");
                return Outcome::Failed { error, matched: None };
            }
            Err(error) => return Outcome::Failed { error, matched: None },
        };
        let view = EnrollmentView::of(&matched);
        if view.disabled {
            trace.why = Some("the enrollment is disabled".to_owned());
            return Outcome::Disabled { matched };
        }
        match self.place(op, record, &matched, &view, device_keys, trace).await {
            Ok(assignment) => Outcome::Assigned { matched, assignment: Box::new(assignment) },
            Err(error) => Outcome::Failed { error, matched: Some(matched) },
        }
    }

    /// Chooses the hub, derives substatus, twin and authentication, and creates the device in the hub.
    async fn place(
        &self,
        op: &Operation,
        record: Option<&RegistrationRecord>,
        matched: &Matched,
        view: &EnrollmentView,
        device_keys: DeviceKeys,
        trace: &mut DecisionTrace,
    ) -> Result<Assignment, DpsError> {
        // Where the device is now: a record that names a hub (a failed or disabled registration keeps it).
        let previous = record.filter(|p| p.state.assigned_hub.is_some());
        let linked = self.ports.hubs.list_hubs().await.map_err(store_err("could not read the linked hubs"))?;
        let reprovision = reprovision_policy(view.reprovision, op.api_version.as_deref(), trace);
        let previous_hub = previous.and_then(|p| p.state.assigned_hub.as_deref());
        let kept = previous_hub.filter(|_| !reprovision.update_hub_assignment);
        let placing = Placing { op, matched, view, previous };
        let choice = self.choose_hub(&placing, &linked, kept, trace).await?;
        let hub = hub_named(&linked, &choice.hub);
        let device_id = view.device_id.clone().unwrap_or_else(|| op.registration_id.clone());
        // The device's identity in its previous hub: its twin may move with it, and it is removed when it moves.
        let old = previous_hub
            .and_then(|p| linked.iter().find(|h| h.host_name.eq_ignore_ascii_case(p)))
            .map(|h| (h, previous.and_then(|p| p.state.device_id.clone()).unwrap_or_else(|| device_id.clone())));
        let placement = Placement::of(previous, &hub.host_name, reprovision);
        let source = twin_source(placement.substatus, previous.is_none(), placement.moved, reprovision);
        let initial_twin = choice.initial_twin.or_else(|| view.initial_twin.clone());
        let twin = self.twin_for(source, initial_twin, old.as_ref().map(|(h, id)| (*h, id.as_str()))).await;
        trace.twin = Some(twin_note(twin.is_some(), placement.substatus, previous.is_none() || placement.moved));
        let auth = super::provision::authentication_for(op, &hub.host_name, view, device_keys)?;
        trace.tpm = auth.step;
        let issued = self.issue_certificate(op, matched, trace).await?;
        let device = HubDevice {
            device_id: device_id.clone(),
            registration_id: op.registration_id.clone(),
            authentication: auth.hub,
            iot_edge: view.iot_edge,
            initial_twin: twin,
            owner: self.owner_of(&op.enrollment),
            replaces: None,
        };
        let provisioned = self.provision_owned(&hub, device, trace).await.map_err(|e| self.hub_error(&hub.host_name, &e))?;
        crate::failpoint::hit("engine.identity-created").await;
        if let Some((old, old_id)) = old.filter(|_| placement.moved) {
            self.deprovision_previous(old, &old_id).await;
        }
        trace.substatus = Some(placement.substatus);
        trace.why = Some(why_for(placement.substatus, previous.is_none(), previous_hub));
        Ok(Assignment {
            hub: hub.host_name,
            device_id,
            substatus: placement.substatus,
            payload: choice.payload,
            first_hub: placement.first_hub,
            tpm_blob: auth.tpm_blob,
            issued,
            identity: match provisioned {
                Provisioned::InHub => None,
                Provisioned::WithOutcome(w) => Some(*w),
            },
        })
    }

    /// The certificate of a device that sent a CSR (`credentials/`), signed and logged before the device is
    /// created in its hub: a refusal leaves nothing there.
    async fn issue_certificate(
        &self,
        op: &Operation,
        matched: &Matched,
        trace: &mut DecisionTrace,
    ) -> Result<Option<crate::credentials::Issued>, DpsError> {
        let Some(csr) = op.csr.as_deref() else { return Ok(None) };
        let subject = crate::credentials::Subject { registration_id: &op.registration_id, operation_id: &op.operation_id };
        let issued = self.ports.credentials.issue(csr, subject, matched.credential_policy_name()).await?;
        let info = &issued.certificate.info;
        trace.certificate = Some(CertificateStep {
            policy: issued.certificate.credential_policy_name.clone(),
            serial_number: info.serial_number.clone(),
            issuer_name: info.issuer_name.clone(),
            not_after_utc: info.not_after_utc,
        });
        Ok(Some(issued))
    }

    /// Which hub (§7.2): the custom webhook's choice, the hub the device keeps (`kept`: the re-provisioning
    /// policy never re-assigns), or the allocator's among the candidates.
    async fn choose_hub(
        &self,
        placing: &Placing<'_>,
        linked: &[LinkedHub],
        kept: Option<&str>,
        trace: &mut DecisionTrace,
    ) -> Result<HubChoice, DpsError> {
        let (op, view) = (placing.op, placing.view);
        let policy = view.policy.unwrap_or(self.config.default_policy);
        if policy == AllocationPolicy::Custom {
            let names = webhook_hubs(view, linked, kept);
            return self.call_webhook(placing, &names, trace).await;
        }
        if let Some(hub) = kept {
            trace.why = Some("the reprovision policy never re-assigns: the device keeps its hub".to_owned());
            trace.allocation = Some(AllocationStep::Keep { hub: hub.to_owned() });
            return Ok(HubChoice::hub(hub));
        }
        let (device_region, region_reason) = self.config.regions.device_region(op.source);
        let (hubs, named) = candidates(view, linked)?;
        let decision = self.ports.allocator.allocate(&AllocationRequest {
            registration_id: &op.registration_id,
            policy,
            candidates: hubs,
            named_by_enrollment: named,
            device_region: device_region.clone(),
            regions: &self.config.regions,
        })?;
        let hub = decision.hub.clone();
        trace.allocation = Some(allocation_step(decision, device_region, region_reason));
        Ok(HubChoice::hub(&hub))
    }
}

/// The registration a hub is chosen for: its operation, the enrollment it matched and that enrollment's view,
/// and the device's record when it already has a hub.
pub(super) struct Placing<'a> {
    pub op: &'a Operation,
    pub matched: &'a Matched,
    pub view: &'a EnrollmentView,
    pub previous: Option<&'a RegistrationRecord>,
}

/// The parts of an individual enrollment or a group the assignment needs.
pub(super) struct EnrollmentView {
    pub disabled: bool,
    pub policy: Option<AllocationPolicy>,
    pub reprovision: Option<ReprovisionPolicy>,
    pub iot_hubs: Option<Vec<String>>,
    pub legacy_hub: Option<String>,
    pub device_id: Option<String>,
    pub iot_edge: bool,
    pub initial_twin: Option<dps_proto::InitialTwin>,
    pub keys: Option<(String, String)>,
    pub group: bool,
    pub custom: Option<dps_proto::CustomAllocationDefinition>,
}

impl EnrollmentView {
    pub(super) fn of(m: &Matched) -> Self {
        use dps_proto::ProvisioningStatus::Disabled;
        let keys = |a: &dps_proto::AttestationMechanism| {
            a.symmetric_key.as_ref().and_then(|k| Some((k.primary_key.clone()?, k.secondary_key.clone()?)))
        };
        match m {
            Matched::Individual(e) => Self {
                disabled: e.provisioning_status == Some(Disabled),
                policy: e.allocation_policy,
                reprovision: e.reprovision_policy,
                iot_hubs: e.iot_hubs.clone(),
                legacy_hub: e.iot_hub_host_name.clone(),
                device_id: e.device_id.clone().filter(|d| !d.is_empty()),
                iot_edge: e.capabilities.is_some_and(|c| c.iot_edge),
                initial_twin: e.initial_twin.clone(),
                keys: keys(&e.attestation),
                group: false,
                custom: e.custom_allocation_definition.clone(),
            },
            Matched::Group(g) => Self {
                disabled: g.provisioning_status == Some(Disabled),
                policy: g.allocation_policy,
                reprovision: g.reprovision_policy,
                iot_hubs: g.iot_hubs.clone(),
                legacy_hub: g.iot_hub_host_name.clone(),
                device_id: None,
                iot_edge: g.capabilities.is_some_and(|c| c.iot_edge),
                initial_twin: g.initial_twin.clone(),
                keys: keys(&g.attestation),
                group: true,
                custom: g.custom_allocation_definition.clone(),
            },
        }
    }

    /// The keys the device holds, recomputed from the enrollment (used when resuming after a restart).
    pub(super) fn device_keys(&self, registration_id: &str) -> Option<(dps_crypto::Secret, dps_crypto::Secret)> {
        let (p, s) = self.keys.clone()?;
        if self.group {
            let p = dps_crypto::derive_device_key(&p, registration_id).ok()?;
            let s = dps_crypto::derive_device_key(&s, registration_id).ok()?;
            Some((dps_crypto::Secret::new(p), dps_crypto::Secret::new(s)))
        } else {
            Some((dps_crypto::Secret::new(p), dps_crypto::Secret::new(s)))
        }
    }
}

/// The candidate hubs (§7.2 rule 1) and whether the enrollment named them.
fn candidates(view: &EnrollmentView, linked: &[LinkedHub]) -> Result<(Vec<LinkedHub>, bool), DpsError> {
    let named: Vec<String> = match (&view.iot_hubs, &view.legacy_hub) {
        (Some(h), _) if !h.is_empty() => h.clone(),
        (_, Some(h)) if !h.is_empty() => vec![h.clone()],
        _ => Vec::new(),
    };
    if named.is_empty() {
        return Ok((linked.iter().filter(|h| h.apply_allocation_policy).cloned().collect(), false));
    }
    let mut out = Vec::new();
    for n in &named {
        match linked.iter().find(|h| h.host_name.eq_ignore_ascii_case(n)) {
            Some(h) => out.push(h.clone()),
            None => return Err(DpsError::invalid(format!("the enrollment names hub '{n}', which is not linked to this service"))),
        }
    }
    Ok((out, true))
}

/// The re-provisioning policy (§7.3): the enrollment's; without one, legacy api-versions (≤ 2018-04-01) keep
/// their hub (the trace says why), others get the default.
fn reprovision_policy(set: Option<ReprovisionPolicy>, api_version: Option<&str>, trace: &mut DecisionTrace) -> ReprovisionPolicy {
    match set {
        Some(r) => r,
        None if crate::api_version::is_legacy(api_version) => {
            trace.reprovision = Some(format!(
                "the enrollment sets no reprovisionPolicy and the device speaks api-version {}: the legacy behaviour keeps its hub (§7.3)",
                api_version.unwrap_or_default()
            ));
            ReprovisionPolicy { update_hub_assignment: false, migrate_device_data: true }
        }
        None => ReprovisionPolicy::default(),
    }
}

/// The linked hub of that name; a hub no longer linked (a kept hub, a webhook's choice) by its name alone.
fn hub_named(linked: &[LinkedHub], name: &str) -> LinkedHub {
    linked.iter().find(|h| h.host_name.eq_ignore_ascii_case(name)).cloned().unwrap_or_else(|| LinkedHub {
        host_name: name.to_owned(),
        apply_allocation_policy: false,
        ..Default::default()
    })
}

/// The allocator's decision as the trace shows it; `geoLatency` adds the device's region and why.
fn allocation_step(d: AllocationDecision, device_region: Option<String>, region_reason: String) -> AllocationStep {
    let AllocationDecision { policy, hub, candidates, reason } = d;
    match policy {
        AllocationPolicy::GeoLatency => AllocationStep::GeoLatency(GeoScored { hub, candidates, reason, device_region, region_reason }),
        AllocationPolicy::Static => AllocationStep::Static(Scored { hub, candidates, reason }),
        AllocationPolicy::Hashed | AllocationPolicy::Custom => AllocationStep::Hashed(Scored { hub, candidates, reason }),
    }
}

/// Where the chosen hub puts the device relative to where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placement {
    /// The device changes hub.
    moved: bool,
    /// The hub of its first assignment (this one, for a first assignment).
    first_hub: String,
    substatus: Substatus,
}

impl Placement {
    /// `previous`: the device's record when it names a hub.
    fn of(previous: Option<&RegistrationRecord>, hub: &str, reprovision: ReprovisionPolicy) -> Self {
        let moved = previous.and_then(|p| p.state.assigned_hub.as_deref()).is_some_and(|p| !p.eq_ignore_ascii_case(hub));
        let first_hub =
            previous.and_then(|p| p.first_hub.clone().or_else(|| p.state.assigned_hub.clone())).unwrap_or_else(|| hub.to_owned());
        let back_to_first = moved && first_hub.eq_ignore_ascii_case(hub);
        let substatus = substatus_for(previous.map(|p| &p.state), moved, back_to_first, reprovision);
        Self { moved, first_hub, substatus }
    }
}

/// The substatus of an assignment (§7.3): `previous` is where the device was, `moved` whether it changes hub,
/// `back_to_first` whether it returns to the hub of its first assignment.
fn substatus_for(previous: Option<&DeviceRegistrationState>, moved: bool, back_to_first: bool, r: ReprovisionPolicy) -> Substatus {
    match (previous, moved) {
        (None, _) => Substatus::InitialAssignment,
        (Some(_), true) if r.migrate_device_data && back_to_first => Substatus::ReprovisionedToInitialAssignment,
        (Some(_), true) if r.migrate_device_data => Substatus::DeviceDataMigrated,
        (Some(_), true) => Substatus::DeviceDataReset,
        (Some(_), false) if r.update_hub_assignment && !r.migrate_device_data => Substatus::DeviceDataReset,
        (Some(p), false) => p.substatus.unwrap_or(Substatus::InitialAssignment),
    }
}

/// Where the device's twin comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TwinSource {
    /// The initial twin: the webhook's, else the enrollment's.
    Initial,
    /// The twin the device had in its previous hub.
    Previous,
    /// None: the hub keeps the twin it has.
    Hub,
}

/// §7.3/§7.4: initial and reset assignments get the initial twin; a migration carries the twin the device had;
/// otherwise the hub keeps its twin. `first`: the device had no hub.
fn twin_source(substatus: Substatus, first: bool, moved: bool, r: ReprovisionPolicy) -> TwinSource {
    match substatus {
        Substatus::InitialAssignment | Substatus::DeviceDataReset if first || moved || !r.migrate_device_data => TwinSource::Initial,
        Substatus::DeviceDataMigrated | Substatus::ReprovisionedToInitialAssignment if moved => TwinSource::Previous,
        _ => TwinSource::Hub,
    }
}

/// What the trace says of the twin. `applied`: the device got a twin; `first_or_moved`: a new identity.
fn twin_note(applied: bool, substatus: Substatus, first_or_moved: bool) -> TwinStep {
    let migration = matches!(substatus, Substatus::DeviceDataMigrated | Substatus::ReprovisionedToInitialAssignment);
    match (applied, migration) {
        (true, true) => TwinStep::Migrated,
        (true, false) => TwinStep::InitialApplied,
        (false, true) => TwinStep::NothingToMigrate,
        (false, false) if first_or_moved => TwinStep::NoInitialTwin,
        (false, false) => TwinStep::Kept,
    }
}

/// Why the device is where it is, in words. `first`: it had no hub; `previous_hub`: the hub it had.
fn why_for(substatus: Substatus, first: bool, previous_hub: Option<&str>) -> String {
    match substatus {
        Substatus::InitialAssignment if first => "first assignment of this device".to_owned(),
        Substatus::DeviceDataMigrated => format!("re-provisioned to a new hub with its data (was {})", previous_hub.unwrap_or_default()),
        Substatus::ReprovisionedToInitialAssignment => "re-provisioned back to the hub of its first assignment, with its data".to_owned(),
        Substatus::DeviceDataReset => "re-provisioned with the initial configuration (reprovision policy: reset)".to_owned(),
        _ => "registered again: same hub, data kept".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_proto::AttestationType;

    const MOVE_MIGRATE: ReprovisionPolicy = ReprovisionPolicy { update_hub_assignment: true, migrate_device_data: true };
    const MOVE_RESET: ReprovisionPolicy = ReprovisionPolicy { update_hub_assignment: true, migrate_device_data: false };
    const NEVER: ReprovisionPolicy = ReprovisionPolicy { update_hub_assignment: false, migrate_device_data: true };

    fn record(hub: &str, first_hub: Option<&str>, substatus: Substatus) -> RegistrationRecord {
        RegistrationRecord {
            state: DeviceRegistrationState {
                assigned_hub: Some(hub.to_owned()),
                device_id: Some("dev".to_owned()),
                substatus: Some(substatus),
                ..Default::default()
            },
            enrollment: EnrollmentRef::Individual("dev".to_owned()),
            attestation: AttestationType::SymmetricKey,
            trace: None,
            first_hub: first_hub.map(str::to_owned),
        }
    }

    #[test]
    fn substatus_follows_the_move_and_the_policy() {
        let prev = DeviceRegistrationState { substatus: Some(Substatus::DeviceDataMigrated), ..Default::default() };
        assert_eq!(substatus_for(None, false, false, MOVE_RESET), Substatus::InitialAssignment);
        assert_eq!(substatus_for(Some(&prev), true, true, MOVE_MIGRATE), Substatus::ReprovisionedToInitialAssignment);
        assert_eq!(substatus_for(Some(&prev), true, false, MOVE_MIGRATE), Substatus::DeviceDataMigrated);
        assert_eq!(substatus_for(Some(&prev), true, true, MOVE_RESET), Substatus::DeviceDataReset);
        assert_eq!(substatus_for(Some(&prev), false, false, MOVE_RESET), Substatus::DeviceDataReset, "reset in place");
        assert_eq!(substatus_for(Some(&prev), false, false, MOVE_MIGRATE), Substatus::DeviceDataMigrated, "same hub: unchanged");
        assert_eq!(substatus_for(Some(&DeviceRegistrationState::default()), false, false, NEVER), Substatus::InitialAssignment);
    }

    #[test]
    fn placement_knows_the_first_hub() {
        let p = Placement::of(None, "a", MOVE_MIGRATE);
        assert_eq!(p, Placement { moved: false, first_hub: "a".into(), substatus: Substatus::InitialAssignment });
        let back = record("b", Some("A"), Substatus::DeviceDataMigrated);
        let p = Placement::of(Some(&back), "a", MOVE_MIGRATE);
        assert_eq!((p.moved, p.first_hub.as_str(), p.substatus), (true, "A", Substatus::ReprovisionedToInitialAssignment));
        let older = record("b", None, Substatus::InitialAssignment);
        let p = Placement::of(Some(&older), "B", MOVE_MIGRATE);
        assert_eq!(
            (p.moved, p.first_hub.as_str(), p.substatus),
            (false, "b", Substatus::InitialAssignment),
            "hub names compare in any case"
        );
    }

    #[test]
    fn the_twin_comes_from_the_right_place() {
        use Substatus::*;
        assert_eq!(twin_source(InitialAssignment, true, false, MOVE_MIGRATE), TwinSource::Initial);
        assert_eq!(twin_source(DeviceDataReset, false, true, MOVE_RESET), TwinSource::Initial);
        assert_eq!(twin_source(DeviceDataReset, false, false, MOVE_RESET), TwinSource::Initial, "reset in place");
        assert_eq!(twin_source(DeviceDataMigrated, false, true, MOVE_MIGRATE), TwinSource::Previous);
        assert_eq!(twin_source(ReprovisionedToInitialAssignment, false, true, MOVE_MIGRATE), TwinSource::Previous);
        assert_eq!(twin_source(InitialAssignment, false, false, MOVE_MIGRATE), TwinSource::Hub, "registered again");
        assert_eq!(twin_source(DeviceDataMigrated, false, false, NEVER), TwinSource::Hub);
        assert_eq!(twin_note(true, DeviceDataMigrated, true), TwinStep::Migrated);
        assert_eq!(twin_note(true, InitialAssignment, true), TwinStep::InitialApplied);
        assert_eq!(twin_note(false, ReprovisionedToInitialAssignment, true), TwinStep::NothingToMigrate);
        assert_eq!(twin_note(false, InitialAssignment, true), TwinStep::NoInitialTwin);
        assert_eq!(twin_note(false, InitialAssignment, false), TwinStep::Kept);
    }

    #[test]
    fn why_names_the_previous_hub() {
        assert_eq!(why_for(Substatus::InitialAssignment, true, None), "first assignment of this device");
        assert_eq!(why_for(Substatus::InitialAssignment, false, Some("a")), "registered again: same hub, data kept");
        assert!(why_for(Substatus::DeviceDataMigrated, false, Some("hub-a")).contains("(was hub-a)"));
    }

    #[test]
    fn legacy_devices_keep_their_hub_and_the_trace_says_why() {
        let mut trace = DecisionTrace::default();
        assert_eq!(reprovision_policy(Some(MOVE_RESET), Some("2018-04-01"), &mut trace), MOVE_RESET);
        assert_eq!(reprovision_policy(None, Some("2021-10-01"), &mut trace), ReprovisionPolicy::default());
        assert_eq!(trace.reprovision, None);
        assert_eq!(reprovision_policy(None, Some("2018-04-01"), &mut trace), NEVER);
        assert!(trace.reprovision.is_some_and(|r| r.contains("2018-04-01")));
    }

    #[test]
    fn a_hub_no_longer_linked_is_used_by_name() {
        let linked = [LinkedHub { host_name: "A.example.net".into(), allocation_weight: 3, ..Default::default() }];
        assert_eq!(hub_named(&linked, "a.example.net").allocation_weight, 3);
        let gone = hub_named(&linked, "gone.example.net");
        assert_eq!((gone.host_name.as_str(), gone.apply_allocation_policy), ("gone.example.net", false));
    }

    #[test]
    fn geo_latency_decisions_carry_the_region() {
        let d = |policy| AllocationDecision { policy, hub: "a".into(), candidates: vec![], reason: "r".into() };
        let step = allocation_step(d(AllocationPolicy::GeoLatency), None, "unknown".into());
        let v = serde_json::to_value(&step).unwrap_or_default();
        assert_eq!(
            v,
            serde_json::json!({ "policy": "geoLatency", "hub": "a", "candidates": [], "reason": "r", "deviceRegion": null, "regionReason": "unknown" })
        );
        let v = serde_json::to_value(allocation_step(d(AllocationPolicy::Static), None, String::new())).unwrap_or_default();
        assert_eq!(v, serde_json::json!({ "policy": "static", "hub": "a", "candidates": [], "reason": "r" }));
    }
}
