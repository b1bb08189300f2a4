//! `POST /simulations/{id}/cleanUp` (extension, #16): removes what a finished run left in the service — its
//! devices' registration records, their identities in the hubs they were assigned to, and the individual
//! enrollments made for its TPM devices (those tagged by a simulation only) — then forgets the run. The groups
//! and enrollments the run used (the simulator's own groups, one named or made in place on the page) stay: the
//! next run uses them again. Refused while a device of the run has not ended.

use dps_core::model::Precondition;
use dps_core::{DpsError, ErrorKind};
use dps_proto::simulation::SimulationCleanUp;
use dps_proto::IndividualEnrollment as Individual;
use http::StatusCode;

use super::simulations::{made_by_simulation, not_found};
use crate::app::App;
use crate::https::{json_response, HttpResponse};

pub async fn clean_up(app: &App, id: &str) -> Result<HttpResponse, DpsError> {
    let run = app.simulations.get(id).ok_or_else(|| not_found(id))?;
    if !run.finished() {
        return Err(DpsError::new(
            ErrorKind::Conflict,
            "this run's devices have not all ended: clean it up when they have (continue its paused devices to their end)",
        ));
    }
    let tpm = run.request.attestation == "tpm";
    let mut done = SimulationCleanUp::default();
    for d in run.devices.iter().map(|d| d.snapshot(false)) {
        if let (Some(hub), Some(device)) = (&d.assigned_hub, &d.device_id) {
            tally(&mut done.identities, &mut done.problems, app.management.delete_hub_device(hub, device).await.map(|()| true));
        }
        tally(
            &mut done.registrations,
            &mut done.problems,
            app.management.delete_registration(&d.registration_id, Precondition::None).await.map(|()| true),
        );
        if tpm {
            tally(&mut done.enrollments, &mut done.problems, delete_simulated_enrollment(app, &d.registration_id).await);
        }
    }
    app.simulations.remove(id);
    Ok(json_response(StatusCode::OK, &done))
}

/// Deletes the individual enrollment `id` when a simulation made it (`Ok(false)`: not a simulation's), on
/// condition that it is still the one read.
async fn delete_simulated_enrollment(app: &App, id: &str) -> Result<bool, DpsError> {
    let e = app.management.get::<Individual>(id).await?;
    if !made_by_simulation(&e) {
        return Ok(false);
    }
    app.management.delete::<Individual>(id, Precondition::Etag(e.etag.unwrap_or_default())).await.map(|()| true)
}

/// Counts one removal: done (`Ok(true)`), nothing there (`Ok(false)`, a 404), or a problem kept in words.
fn tally(count: &mut u32, problems: &mut Vec<String>, result: Result<bool, DpsError>) {
    match result {
        Ok(true) => *count += 1,
        Ok(false) => {}
        Err(e) if e.status() == 404 => {}
        Err(e) => problems.push(e.to_string()),
    }
}
