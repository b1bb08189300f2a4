//! `GET/PUT /service/limits` (extension): the limits profile in force — `default` or `azure` (Azure's quotas
//! and rates, `dps_core::limits`) — and the `azure` profile's numbers. The console's Settings toggle PUTs
//! `{ "profile": "azure" }`; the choice takes effect at once and is kept in the store for the next start
//! (unless the configuration names a profile: then the configured one wins at start).

use dps_core::limits::{LimitsSettings, Profile};
use dps_core::{DpsError, ErrorKind};
use http::StatusCode;

use crate::app::App;
use crate::https::{json_response, HttpResponse, Request};

fn settings(app: &App) -> LimitsSettings {
    LimitsSettings { profile: app.limits.profile().as_str().to_owned(), azure: *app.limits.azure(), configured: app.limits_configured }
}

pub fn get(app: &App) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &settings(app)))
}

#[derive(serde::Deserialize)]
struct Choice {
    profile: String,
}

pub async fn put(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let choice: Choice = req.json_or(|| None)?;
    let profile: Profile = choice.profile.parse().map_err(DpsError::invalid)?;
    app.settings.put_setting(crate::LIMITS_SETTING, profile.as_str()).await.map_err(|e| {
        tracing::error!(error = %e, "cannot store the limits profile");
        DpsError::new(ErrorKind::Unavailable, "the store is unavailable; try again")
    })?;
    app.limits.set_profile(profile);
    tracing::info!(profile = profile.as_str(), "limits profile changed");
    Ok(json_response(StatusCode::OK, &settings(app)))
}
