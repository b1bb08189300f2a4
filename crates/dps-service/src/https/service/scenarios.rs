//! `/scenarios…` (extension, #16 item 5): the built-in scenarios as one-click demos. A run goes
//! through the service API in-process (`LocalApi`: the same routes and rights as `dps simulate` over HTTPS) and
//! its devices through the listeners; it runs in the background and `GET` shows where it stands. `reset`
//! removes everything the scenario made.

use dps_core::{DpsError, ErrorKind};
use dps_sim::{Runner, Scenario};
use http::StatusCode;

use super::simulations::device_target;
use crate::app::App;
use crate::https::{json_response, HttpResponse};

pub async fn list(app: &App) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.scenarios.list()))
}

pub async fn get(app: &App, name: &str) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.scenarios.get(name).ok_or_else(|| not_found(name))?))
}

/// Starts a run (202 with the scenario's view, `running`); a run of it still going is a 409201.
pub async fn run(app: &App, name: &str) -> Result<HttpResponse, DpsError> {
    let scenario = built_in(name)?;
    let target = device_target(app)?;
    let this = app.me.upgrade().ok_or_else(|| DpsError::new(ErrorKind::Unavailable, "the service is stopping"))?;
    let view = app.scenarios.begin(&scenario).map_err(|m| DpsError::new(ErrorKind::Conflict, m))?;
    let (runs, mut shutdown) = (app.scenarios.clone(), app.shutdown.clone());
    tokio::spawn(async move {
        let api = Box::new(crate::local::LocalApi::new(this));
        tokio::select! {
            () = dps_sim::scenario_runs::run(runs, api, target, scenario) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    });
    Ok(json_response(StatusCode::ACCEPTED, &view))
}

/// Removes what the scenario makes (records, hub identities, groups, enrollments, hubs) and forgets its run.
pub async fn reset(app: &App, name: &str) -> Result<HttpResponse, DpsError> {
    let scenario = built_in(name)?;
    if app.scenarios.get(name).is_some_and(|v| v.state == Some(dps_proto::simulation::ScenarioState::Running)) {
        return Err(DpsError::new(ErrorKind::Conflict, "this scenario is running: reset it when it ends"));
    }
    let this = app.me.upgrade().ok_or_else(|| DpsError::new(ErrorKind::Unavailable, "the service is stopping"))?;
    let api = crate::local::LocalApi::new(this);
    let runner = Runner { api: &api, target: device_target(app)?, on_event: &|_| {} };
    runner.reset(&scenario).await.map_err(|e| DpsError::internal(format!("reset: {e:#}")))?;
    app.scenarios.forget(&scenario.name);
    Ok(json_response(StatusCode::OK, &app.scenarios.get(name).ok_or_else(|| not_found(name))?))
}

fn built_in(name: &str) -> Result<Scenario, DpsError> {
    Scenario::built_in(name).ok_or_else(|| not_found(name))?.map_err(|e| DpsError::internal(format!("scenario {name}: {e:#}")))
}

fn not_found(name: &str) -> DpsError {
    DpsError::new(ErrorKind::NotFound, format!("there is no built-in scenario '{}'", name.escape_debug()))
}
