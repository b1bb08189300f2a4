//! The built-in demo allocation webhook (extension, #16 items 3 and 5): a custom allocation policy needs a web
//! function to call, and a class has none — so the service is its own. Scenarios and the simulator's webhook
//! faults point a group's `customAllocationDefinition.webhookUrl` at it.
//!
//! - `GET /demo/allocationWebhook` (ServiceConfig) answers its URL: `https://{host}:{https}/demo/allocationWebhook
//!   ?code=…`, on the device port and host, which the service's webhook client reaches and trusts (the local CA
//!   is among its roots).
//! - `POST /demo/allocationWebhook?code=…&mode=…` (open, authenticated as an Azure Function is, by the `code` in
//!   its URL: a random key made at first use, kept in the service's settings so that every instance and restart
//!   shares it). A missing or wrong code is 401 before the body is read.
//!
//! Modes: `choose` (default) answers §6.2 — the linked hub whose first DNS label begins the registration id
//! (`north-7` → `north.demo.local`), else the first linked hub — with an initial twin tag
//! `allocatedBy = demo-webhook` and a payload saying why; `error` answers 400 (the service fails the device at
//! once with 400207); `slow` answers only after the service's webhook time-out, so each call times out and the
//! service retries on its schedule before it fails the device.

use base64::Engine;
use dps_core::{DpsError, ErrorKind};
use http::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::https::{json_response, HttpResponse, Request};

/// The route's path.
pub const PATH: &str = "/demo/allocationWebhook";
/// Where the code is kept.
const SETTING: &str = "demo-webhook-code";

/// `GET`: the webhook's URL, code included (mode `choose`; add `&mode=error` or `&mode=slow`).
pub async fn url(app: &App) -> Result<HttpResponse, DpsError> {
    Ok(json_response(StatusCode::OK, &json!({ "url": webhook_url(app, "choose").await? })))
}

/// The URL a group names to use the demo webhook in `mode` (`choose`, `error`, `slow`).
pub async fn webhook_url(app: &App, mode: &str) -> Result<String, DpsError> {
    let host = crate::host_with_port(&app.info.host, app.info.ports.https.unwrap_or(443));
    let mode = if mode == "choose" { String::new() } else { format!("&mode={mode}") };
    Ok(format!("https://{host}{PATH}?code={}{mode}", code(app).await?))
}

/// The code, made at first use (a concurrent first use by another instance wins: what is stored is read back).
async fn code(app: &App) -> Result<String, DpsError> {
    let unavailable = |e: dps_core::ports::StoreError| DpsError::new(ErrorKind::Unavailable, format!("the settings store: {e}"));
    if let Some(c) = app.settings.get_setting(SETTING).await.map_err(unavailable)? {
        return Ok(c);
    }
    let made = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    app.settings.put_setting(SETTING, &made).await.map_err(unavailable)?;
    Ok(app.settings.get_setting(SETTING).await.map_err(unavailable)?.unwrap_or(made))
}

/// `POST`: the webhook itself.
pub async fn call(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let expected = app.settings.get_setting(SETTING).await.ok().flatten();
    let given = req.query("code").unwrap_or_default();
    // Digests compared: the time taken says nothing about the code.
    let known = expected.is_some_and(|e| Sha256::digest(e.as_bytes()) == Sha256::digest(given.as_bytes()));
    if !known {
        return Err(DpsError::unauthorized("the demo webhook's code is missing or wrong"));
    }
    let request: Value = req.json_or(|| None)?;
    match req.query("mode").unwrap_or("choose") {
        "error" => Ok(json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "message": "the demo webhook refuses this device (mode=error): a webhook's 4xx fails the registration" }),
        )),
        "slow" => {
            let mut shutdown = app.shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(app.webhook_timeout + std::time::Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
            Ok(json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({ "message": "too late: the service stopped waiting" })))
        }
        "choose" => Ok(json_response(StatusCode::OK, &choose(&request))),
        other => Err(DpsError::invalid(format!("mode '{}' is not choose, error or slow", other.escape_debug()))),
    }
}

/// §6.2's answer for a §6.1 request.
fn choose(request: &Value) -> Value {
    let id = request.pointer("/deviceRuntimeContext/registrationId").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
    let hubs: Vec<&str> = request.get("linkedHubs").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let by_name =
        hubs.iter().find(|h| h.split('.').next().is_some_and(|label| !label.is_empty() && id.starts_with(&label.to_ascii_lowercase())));
    let (hub, why) = match (by_name, hubs.first()) {
        (Some(h), _) => (*h, format!("the registration id begins with '{}'", h.split('.').next().unwrap_or_default())),
        (None, Some(h)) => (*h, "no hub's name begins the registration id: the first linked hub".to_owned()),
        (None, None) => ("", "no linked hub to choose from".to_owned()),
    };
    json!({
        "iotHubHostName": hub,
        "initialTwin": { "tags": { "allocatedBy": "demo-webhook" }, "properties": { "desired": {} } },
        "payload": { "allocatedBy": "demo-webhook", "why": why },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_named_by_the_ids_beginning_is_chosen_else_the_first() {
        let request =
            |id: &str| json!({ "deviceRuntimeContext": { "registrationId": id }, "linkedHubs": ["south.demo.local", "north.demo.local"] });
        assert_eq!(choose(&request("North-7"))["iotHubHostName"], "north.demo.local");
        assert_eq!(choose(&request("south-1"))["iotHubHostName"], "south.demo.local");
        let other = choose(&request("east-1"));
        assert_eq!(other["iotHubHostName"], "south.demo.local");
        assert!(other["payload"]["why"].as_str().is_some_and(|w| w.contains("first linked hub")));
        assert_eq!(choose(&json!({}))["iotHubHostName"], "");
    }
}
