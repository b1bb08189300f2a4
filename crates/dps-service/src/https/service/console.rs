//! The console's sign-in (`POST /console/login`, `POST /console/logout`) and the admin password
//! (`PUT /admin/password`, which needs the current password too: a stolen session or an owner connection
//! string alone cannot take the account over). See `crate::admin`.
//!
//! Every attempt that verifies a password is counted by `LoginThrottle` first and refused (429001) when over
//! its limits, so no caller can make the service run argon2 without bound; argon2 itself runs on the blocking
//! pool behind `PasswordWork`'s permits.

use dps_core::{DpsError, ErrorKind};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::admin::{check_new_password, ADMIN_USER, INITIAL_PASSWORD_FILE};
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
    DpsError::new(ErrorKind::Unavailable, "the store is unavailable; try again")
}

async fn stored_hash(app: &App) -> Result<String, DpsError> {
    Ok(app.settings.get_setting("admin_password_hash").await.map_err(store_err)?.unwrap_or_default())
}

pub async fn login(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let now = app.clock.now();
    let ip = req.peer.addr.ip();
    // Counted before anything is verified (concurrent guesses cannot all pass a check made after).
    app.login_throttle.admit(ip, now).await?;
    let l: Login = req.json_or(|| None)?;
    let user_ok = l.username.as_deref().is_none_or(|u| u == ADMIN_USER);
    let password_ok = user_ok && app.passwords.verify(&l.password, &stored_hash(app).await?).await?;
    if !password_ok {
        tracing::warn!(peer = %ip, "console sign-in refused");
        return Err(DpsError::unauthorized("wrong user name or password"));
    }
    app.login_throttle.succeeded(ip).await?;
    let (token, expires) = app.sessions.open(now).await?;
    tracing::info!(peer = %ip, "console sign-in");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "token": token, "tokenType": "Bearer", "expiresUtc": dps_proto::format_time(&expires), "username": ADMIN_USER }),
    ))
}

pub async fn logout(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let token = req.header("authorization").and_then(|a| a.strip_prefix("Bearer ")).map(str::trim).unwrap_or_default();
    app.sessions.check(token, app.clock.now()).await?;
    app.sessions.close(token).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewPassword {
    #[serde(default)]
    current_password: Option<String>,
    password: String,
}

/// Sets the admin password when `currentPassword` is the current one (every console session ends; the
/// initial password file, now stale, is removed).
pub async fn set_password(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let p: NewPassword = req.json_or(|| None)?;
    check_new_password(&p.password)?;
    let Some(current) = p.current_password.filter(|c| !c.is_empty()) else {
        return Err(DpsError::invalid("currentPassword is required: the admin password changes only with the current one"));
    };
    let ip = req.peer.addr.ip();
    app.login_throttle.admit(ip, app.clock.now()).await?;
    if !app.passwords.verify(&current, &stored_hash(app).await?).await? {
        tracing::warn!(peer = %ip, "admin password change refused: wrong current password");
        // Not 401: the caller's session is valid (the console would sign out on a 401).
        return Err(DpsError::invalid("the current password is not right; the password was not changed"));
    }
    app.login_throttle.succeeded(ip).await?;
    let hash = app.passwords.hash(&p.password).await?;
    app.settings.put_setting("admin_password_hash", &hash).await.map_err(store_err)?;
    app.sessions.close_all().await?;
    remove_initial_password_file(app);
    tracing::info!("the admin password was changed");
    Ok(empty_response(StatusCode::NO_CONTENT))
}

fn remove_initial_password_file(app: &App) {
    let path = app.data_dir.join(INITIAL_PASSWORD_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed the initial admin password file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove the initial admin password file"),
    }
}
