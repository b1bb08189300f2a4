//! `/linkedHubs…` (extension): the hubs devices can be assigned to (Azure keeps them in its control
//! plane), `/linkedHubs/{host}/devices`, the identities the built-in registry holds, `/linkedHubs/{host}/status`,
//! one probe through the hub's connector, and `/diagnostics/allocation`, devices per hub.

use dps_core::{DpsError, ErrorKind};
use dps_proto::LinkedHub;
use http::StatusCode;

use crate::app::App;
use crate::https::{empty_response, json_response, HttpResponse, Request};

pub async fn list(app: &App) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.management.list_hubs().await?))
}

pub async fn get(app: &App, host: &str) -> Result<HttpResponse, DpsError> {
    let hubs = app.management.list_hubs().await?;
    let hub = hubs
        .into_iter()
        .find(|h| h.host_name.eq_ignore_ascii_case(host))
        .ok_or_else(|| DpsError::new(ErrorKind::NotFound, format!("hub '{}' is not linked", host.escape_debug())))?;
    Ok(json_response(StatusCode::OK, &hub))
}

pub async fn put(app: &App, req: &Request, host: &str) -> Result<HttpResponse, DpsError> {
    let mut hub: LinkedHub = req.json_or(|| None)?;
    if hub.host_name.is_empty() {
        hub.host_name = host.to_owned();
    } else if !hub.host_name.eq_ignore_ascii_case(host) {
        return Err(DpsError::invalid(format!(
            "hostName '{}' in the body does not match '{}' in the path",
            hub.host_name,
            host.escape_debug()
        )));
    }
    Ok(json_response(StatusCode::OK, &app.management.put_hub(hub).await?))
}

pub async fn delete(app: &App, host: &str) -> Result<HttpResponse, DpsError> {
    app.management.delete_hub(host).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

pub async fn devices(app: &App, host: &str) -> Result<HttpResponse, DpsError> {
    let ids = app.registry.list_identities(Some(host)).await.map_err(|e| {
        tracing::error!(error = %e, "cannot list identities");
        DpsError::new(ErrorKind::Unavailable, "the store is unavailable; try again")
    })?;
    Ok(json_response(StatusCode::OK, &ids))
}

/// `DELETE /linkedHubs/{hostName}/devices/{deviceId}` (extension): the identity removed from the hub through
/// its connector (the built-in registry's row, an IoT Hub device, a Mosquitto client).
pub async fn delete_device(app: &App, host: &str, device_id: &str) -> Result<HttpResponse, DpsError> {
    app.management.delete_hub_device(host, device_id).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

pub async fn status(app: &App, host: &str) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.management.hub_status(host, app.clock.now()).await?))
}

pub async fn allocation(app: &App) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &app.management.allocation().await?))
}
