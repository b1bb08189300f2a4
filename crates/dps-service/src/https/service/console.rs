//! The console's sign-in (`POST /console/login`, `POST /console/logout`) and the admin password
//! (`PUT /admin/password`). See `crate::admin`.

use dps_core::DpsError;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::admin::{check_new_password, hash_password, verify_password, ADMIN_USER};
use crate::app::App;
use crate::https::{empty_response, json_response, HttpResponse, Request};

#[derive(Deserialize)]
struct Login {
    #[serde(default)]
    username: Option<String>,
    password: String,
}

fn store_err(e: impl std::fmt::Display) -> DpsError {
    tracing::error!(error = %e, "cannot read the admin password");
    DpsError::new(dps_core::ErrorKind::Unavailable, "the store is unavailable; try again")
}

pub async fn login(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let now = app.clock.now();
    let ip = req.peer.addr.ip();
    app.login_throttle.check(ip, now)?;
    let l: Login = req.json_or(|| None)?;
    let hash = app.settings.get_setting("admin_password_hash").await.map_err(store_err)?.unwrap_or_default();
    let user_ok = l.username.as_deref().is_none_or(|u| u == ADMIN_USER);
    if !(user_ok && verify_password(&l.password, &hash)) {
        app.login_throttle.failed(ip, now);
        tracing::warn!(peer = %ip, "console sign-in refused");
        return Err(DpsError::unauthorized("wrong user name or password"));
    }
    app.login_throttle.succeeded(ip);
    let (token, expires) = app.sessions.open(now);
    tracing::info!(peer = %ip, "console sign-in");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "token": token, "tokenType": "Bearer", "expiresUtc": dps_proto::format_time(&expires), "username": ADMIN_USER }),
    ))
}

pub fn logout(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let token = req.header("authorization").and_then(|a| a.strip_prefix("Bearer ")).map(str::trim).unwrap_or_default();
    app.sessions.check(token, app.clock.now())?;
    app.sessions.close(token);
    Ok(empty_response(StatusCode::NO_CONTENT))
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

/// Sets the admin password (every console session ends).
pub async fn set_password(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let p: NewPassword = req.json_or(|| None)?;
    check_new_password(&p.password)?;
    let hash = hash_password(&p.password)?;
    app.settings.put_setting("admin_password_hash", &hash).await.map_err(store_err)?;
    app.sessions.close_all();
    tracing::info!("the admin password was changed");
    Ok(empty_response(StatusCode::NO_CONTENT))
}
