//! `/scenarios…` (extension, #16 item 5): the built-in scenarios as one-click demos, and the trainer's own
//! scenario files. A run goes through the service API in-process (`LocalApi`: the same routes and rights as
//! `dps simulate` over HTTPS) and its devices through the listeners; it runs in the background and `GET` shows
//! where it stands. `reset` removes everything the scenario made.
//!
//! A trainer's own scenario (`POST /scenarios`, the TOML file as the body, or `{"file": …}` as JSON) is checked as the built-ins are and
//! kept in the service's settings (every instance and restart sees it) — at most [`MAX_OWN`], replaced by name;
//! a built-in scenario's name is refused. `DELETE /scenarios/{name}` resets what it made, then forgets it.

use std::collections::BTreeMap;

use dps_core::{DpsError, ErrorKind};
use dps_sim::{Runner, Scenario};
use http::StatusCode;

use super::simulations::device_target;
use crate::app::App;
use crate::https::{empty_response, json_response, HttpResponse, Request};

/// The trainer's own scenarios kept at most.
pub const MAX_OWN: usize = 20;
/// The setting that holds them: a JSON object, lower-case name → the file's text.
const SETTING: &str = "scenarios";

pub async fn list(app: &App) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.scenarios.list(&own(app).await?)))
}

pub async fn get(app: &App, name: &str) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.scenarios.get(&own(app).await?, name).ok_or_else(|| not_found(name))?))
}

/// A scenario upload in JSON (the console's port takes JSON bodies only): the file's text.
#[derive(serde::Deserialize)]
struct Upload {
    file: String,
}

/// Keeps a trainer's scenario file (201 with its view; a scenario of the same name is replaced). The body is the
/// TOML itself, or `{"file": "<the TOML>"}` with `Content-Type: application/json`.
pub async fn upload(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let json = req.header("content-type").is_some_and(|t| t.trim_start().starts_with("application/json"));
    let text = if json {
        req.json_or::<Upload>(|| None)?.file
    } else {
        std::str::from_utf8(&req.body).map_err(|_| DpsError::invalid("a scenario file is UTF-8 TOML"))?.to_owned()
    };
    let text = text.as_str();
    let scenario = Scenario::parse(text).map_err(|e| DpsError::invalid(format!("the scenario file: {e:#}")))?;
    let key = scenario.name.to_ascii_lowercase();
    if Scenario::built_in(&key).is_some() {
        return Err(DpsError::invalid(format!("'{}' is a built-in scenario's name: name yours otherwise", scenario.name)));
    }
    let mut files = files(app).await?;
    if running(app, &parsed(&files), &scenario.name) {
        return Err(DpsError::new(ErrorKind::Conflict, "this scenario is running: replace it when it ends"));
    }
    if !files.contains_key(&key) && files.len() >= MAX_OWN {
        return Err(DpsError::invalid(format!("at most {MAX_OWN} scenarios of your own: delete one first")));
    }
    files.insert(key, text.to_owned());
    save(app, &files).await?;
    let view = app.scenarios.get(&parsed(&files), &scenario.name).ok_or_else(|| not_found(&scenario.name))?;
    Ok(json_response(StatusCode::CREATED, &view))
}

/// Resets what a trainer's scenario made and forgets it (a built-in scenario cannot be deleted).
pub async fn delete(app: &App, name: &str) -> Result<HttpResponse, DpsError> {
    let mut files = files(app).await?;
    let key = name.to_ascii_lowercase();
    if !files.contains_key(&key) {
        return Err(DpsError::new(ErrorKind::NotFound, format!("there is no scenario of yours named '{}'", name.escape_debug())));
    }
    let own = parsed(&files);
    if let Some(scenario) = own.iter().find(|s| s.name.eq_ignore_ascii_case(name)) {
        reset_scenario(app, &own, scenario).await?;
    }
    files.remove(&key);
    save(app, &files).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// Starts a run (202 with the scenario's view, `running`); a run of it still going is a 409201.
pub async fn run(app: &App, name: &str) -> Result<HttpResponse, DpsError> {
    let (scenario, _) = find(app, name).await?;
    let target = device_target(app)?;
    let this = app.me.upgrade().ok_or_else(|| DpsError::new(ErrorKind::Unavailable, "the service is stopping"))?;
    let view = app.scenarios.begin(&scenario).map_err(|m| DpsError::new(ErrorKind::Conflict, m))?;
    let view = dps_proto::simulation::ScenarioView { own: Scenario::built_in(name).is_none(), ..view };
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

/// Removes what the scenario makes (records, hub identities, groups, enrollments, certificates, hubs) and
/// forgets its run.
pub async fn reset(app: &App, name: &str) -> Result<HttpResponse, DpsError> {
    let (scenario, own) = find(app, name).await?;
    reset_scenario(app, &own, &scenario).await?;
    Ok(json_response(StatusCode::OK, &app.scenarios.get(&own, name).ok_or_else(|| not_found(name))?))
}

/// Removes what `scenario` made (refused while it runs) and forgets its run; `own`: the trainer's scenarios.
async fn reset_scenario(app: &App, own: &[Scenario], scenario: &Scenario) -> Result<(), DpsError> {
    if running(app, own, &scenario.name) {
        return Err(DpsError::new(ErrorKind::Conflict, "this scenario is running: reset it when it ends"));
    }
    let this = app.me.upgrade().ok_or_else(|| DpsError::new(ErrorKind::Unavailable, "the service is stopping"))?;
    let api = crate::local::LocalApi::new(this);
    let runner = Runner { api: &api, target: device_target(app)?, on_event: &|_| {} };
    runner.reset(scenario).await.map_err(|e| DpsError::internal(format!("reset: {e:#}")))?;
    app.scenarios.forget(&scenario.name);
    Ok(())
}

fn running(app: &App, own: &[Scenario], name: &str) -> bool {
    app.scenarios.get(own, name).is_some_and(|v| v.state == Some(dps_proto::simulation::ScenarioState::Running))
}

/// A built-in scenario, or one of the trainer's; and the trainer's scenarios (read once per request).
async fn find(app: &App, name: &str) -> Result<(Scenario, Vec<Scenario>), DpsError> {
    let own = own(app).await?;
    let scenario = match Scenario::built_in(name) {
        Some(s) => s.map_err(|e| DpsError::internal(format!("scenario {name}: {e:#}")))?,
        None => own.iter().find(|s| s.name.eq_ignore_ascii_case(name)).cloned().ok_or_else(|| not_found(name))?,
    };
    Ok((scenario, own))
}

/// The trainer's scenarios that still read (a file kept by an older version that no longer does is left out).
async fn own(app: &App) -> Result<Vec<Scenario>, DpsError> {
    Ok(parsed(&files(app).await?))
}

fn parsed(files: &BTreeMap<String, String>) -> Vec<Scenario> {
    files.values().filter_map(|text| Scenario::parse(text).ok()).collect()
}

async fn files(app: &App) -> Result<BTreeMap<String, String>, DpsError> {
    let stored = app.settings.get_setting(SETTING).await.map_err(unavailable)?;
    Ok(stored.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_default())
}

async fn save(app: &App, files: &BTreeMap<String, String>) -> Result<(), DpsError> {
    let text = serde_json::to_string(files).map_err(|e| DpsError::internal(e.to_string()))?;
    app.settings.put_setting(SETTING, &text).await.map_err(unavailable)
}

fn unavailable(e: dps_core::ports::StoreError) -> DpsError {
    DpsError::new(ErrorKind::Unavailable, format!("the settings store: {e}"))
}

fn not_found(name: &str) -> DpsError {
    DpsError::new(ErrorKind::NotFound, format!("there is no scenario '{}'", name.escape_debug()))
}
