//! The device's registration record — the state a registration leaves behind: `assigning` while it runs (the
//! register writes it), then its outcome (`finish.rs`) — and what the device is told of it.

use chrono::{DateTime, Utc};
use dps_proto::trace::DecisionTrace;
use dps_proto::{
    AttestationType, DeviceRegistrationResult, DeviceRegistrationState, RegistrationOperationStatus, RegistrationStatus, Substatus,
    SymmetricKeyRegistrationResult,
};
use serde_json::Value;

use crate::attestation::Matched;
use crate::error::DpsError;
use crate::model::{new_etag, Operation, RegistrationRecord};

/// Where an assigned device is: its hub, its device id there, and the substatus of the assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Placed<'a> {
    pub hub: &'a str,
    pub device_id: &'a str,
    pub substatus: Substatus,
}

/// What a registration changes in the record.
#[derive(Debug)]
pub(super) struct NewState<'a> {
    pub status: RegistrationStatus,
    /// Where the device was assigned; `None` unless `status` is `assigned`.
    pub placed: Option<Placed<'a>>,
    pub error: Option<&'a DpsError>,
    pub payload: Option<Value>,
    /// A certificate issued from the device's CSR (the record keeps the last one otherwise).
    pub issued: Option<dps_proto::IssuedCertificate>,
}

/// The record's state after a registration. One that does not assign (assigning, failed, disabled) changes
/// nothing in the hubs: the record keeps the hub, device id and substatus the device has.
pub(super) fn next_state(
    registration_id: &str,
    previous: Option<&DeviceRegistrationState>,
    now: DateTime<Utc>,
    new: NewState<'_>,
) -> DeviceRegistrationState {
    let kept = previous.filter(|_| new.status != RegistrationStatus::Assigned);
    DeviceRegistrationState {
        registration_id: Some(registration_id.to_owned()),
        created_date_time_utc: Some(previous.and_then(|s| s.created_date_time_utc).unwrap_or(now)),
        assigned_hub: new.placed.map(|p| p.hub.to_owned()).or_else(|| kept.and_then(|s| s.assigned_hub.clone())),
        device_id: new.placed.map(|p| p.device_id.to_owned()).or_else(|| kept.and_then(|s| s.device_id.clone())),
        status: Some(new.status),
        substatus: new.placed.map(|p| p.substatus).or_else(|| kept.and_then(|s| s.substatus)),
        error_code: new.error.map(DpsError::code),
        error_message: new.error.map(|e| e.message.clone()),
        last_updated_date_time_utc: Some(now),
        etag: Some(new_etag()),
        payload: new.payload,
        issued_certificate: new.issued.or_else(|| previous.and_then(|s| s.issued_certificate.clone())),
    }
}

/// The record of `op`'s device with its state and decision trace.
pub(super) fn record_of(
    op: &Operation,
    state: DeviceRegistrationState,
    trace: &DecisionTrace,
    first_hub: Option<String>,
) -> RegistrationRecord {
    RegistrationRecord {
        state,
        enrollment: op.enrollment.clone(),
        attestation: op.attestation,
        trace: serde_json::to_value(trace).ok(),
        first_hub,
    }
}

/// The answer while an operation is assigning.
pub(super) fn assigning(op: &Operation) -> RegistrationOperationStatus {
    RegistrationOperationStatus {
        operation_id: op.operation_id.clone(),
        status: RegistrationStatus::Assigning,
        registration_state: Some(DeviceRegistrationResult {
            registration_id: Some(op.registration_id.clone()),
            status: Some(RegistrationStatus::Assigning),
            ..Default::default()
        }),
    }
}

/// What a device is told: the hub, device id and substatus only when it is assigned (a failed or disabled
/// record keeps them for the service API, but the device has nowhere to go).
pub(super) fn result_of_state(s: &DeviceRegistrationState) -> DeviceRegistrationResult {
    let assigned = s.status == Some(RegistrationStatus::Assigned);
    DeviceRegistrationResult {
        registration_id: s.registration_id.clone(),
        created_date_time_utc: s.created_date_time_utc,
        assigned_hub: s.assigned_hub.clone().filter(|_| assigned),
        device_id: s.device_id.clone().filter(|_| assigned),
        status: s.status,
        substatus: s.substatus.filter(|_| assigned),
        error_code: s.error_code,
        error_message: s.error_message.clone(),
        last_updated_date_time_utc: s.last_updated_date_time_utc,
        etag: s.etag.clone(),
        payload: s.payload.clone(),
        ..Default::default()
    }
}

/// The same, with the group a symmetric-key device's keys derive from.
pub(super) fn result_of(s: &DeviceRegistrationState, m: &Matched) -> DeviceRegistrationResult {
    let mut r = result_of_state(s);
    if let Matched::Group(g) = m {
        if g.attestation.kind == AttestationType::SymmetricKey {
            r.symmetric_key = Some(SymmetricKeyRegistrationResult { enrollment_group_id: Some(g.enrollment_group_id.clone()) });
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn where_it_was() -> DeviceRegistrationState {
        DeviceRegistrationState {
            registration_id: Some("dev".into()),
            created_date_time_utc: DateTime::from_timestamp(1_700_000_000, 0),
            assigned_hub: Some("old.example.net".into()),
            device_id: Some("dev-old".into()),
            status: Some(RegistrationStatus::Assigned),
            substatus: Some(Substatus::InitialAssignment),
            payload: Some(serde_json::json!({ "a": 1 })),
            ..Default::default()
        }
    }

    #[test]
    fn an_assignment_replaces_where_the_device_is() {
        let placed = Placed { hub: "new.example.net", device_id: "dev", substatus: Substatus::DeviceDataMigrated };
        let new = NewState { status: RegistrationStatus::Assigned, placed: Some(placed), error: None, payload: None, issued: None };
        let s = next_state("dev", Some(&where_it_was()), now(), new);
        assert_eq!((s.assigned_hub.as_deref(), s.device_id.as_deref()), (Some("new.example.net"), Some("dev")));
        assert_eq!(s.substatus, Some(Substatus::DeviceDataMigrated));
        assert_eq!(s.created_date_time_utc, where_it_was().created_date_time_utc, "created is the first registration's");
        assert_eq!((s.last_updated_date_time_utc, s.payload), (Some(now()), None));
        assert!(s.etag.is_some_and(|e| Some(e) != where_it_was().etag));
    }

    #[test]
    fn anything_else_keeps_where_the_device_is() {
        let e = DpsError::new(ErrorKind::Unavailable, "down");
        for (status, error) in
            [(RegistrationStatus::Assigning, None), (RegistrationStatus::Failed, Some(&e)), (RegistrationStatus::Disabled, None)]
        {
            let s = next_state("dev", Some(&where_it_was()), now(), NewState { status, placed: None, error, payload: None, issued: None });
            assert_eq!((s.assigned_hub.as_deref(), s.device_id.as_deref()), (Some("old.example.net"), Some("dev-old")), "{status:?}");
            assert_eq!((s.status, s.substatus), (Some(status), Some(Substatus::InitialAssignment)));
            assert_eq!(s.error_code, error.map(DpsError::code));
        }
        let first = next_state(
            "dev",
            None,
            now(),
            NewState { status: RegistrationStatus::Assigning, placed: None, error: None, payload: None, issued: None },
        );
        assert_eq!((first.created_date_time_utc, first.assigned_hub), (Some(now()), None));
    }

    #[test]
    fn a_device_is_told_its_hub_only_when_assigned() {
        let mut s = where_it_was();
        assert_eq!(result_of_state(&s).assigned_hub.as_deref(), Some("old.example.net"));
        s.status = Some(RegistrationStatus::Failed);
        let r = result_of_state(&s);
        assert_eq!((r.assigned_hub, r.device_id, r.substatus), (None, None, None));
    }
}
