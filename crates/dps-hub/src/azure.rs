//! Azure IoT Hub (connector `azureIotHub`), through IoT Hub's public service REST API (§7.4).
//!
//! Credentials: a connection string of one of the hub's shared access policies (a policy with
//! `RegistryWrite`, e.g. `iothubowner`):
//! `HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=<base64>`, optionally
//! `;GatewayHostName=host:port` to connect there instead of `HostName` (a local stand-in); the SAS
//! audience stays `HostName`. TLS trusts the system's roots plus the hub's `caCertificate`.
//!
//! Calls (api-version [`API_VERSION`], each with a fresh one-hour SAS of the policy):
//! - provision: `GET /devices/{id}` (404: new); when it exists, `GET /twins/{id}` for its owner (the twin tag
//!   [`OWNER_TAG`]): an identity without it, or of another owner, is not replaced (`ConnectorError::NotOwned`)
//!   unless the engine allows the take-over; then `PUT /devices/{id}` (`If-Match: "<etag>"` when it exists),
//!   then `PATCH /twins/{id}` (`If-Match: *`) with the owner tag and, when the device comes with one, its twin.
//!   When that twin update fails for an identity this call created, the identity is deleted again: no
//!   half-provisioned device (and none without its owner).
//! - deprovision: `DELETE /devices/{id}` (`If-Match: *`); 404 means already gone.
//! - read_twin (to migrate a device to another hub): `GET /twins/{id}`, tags and desired properties.
//!
//! Connection errors, 429 and 5xx are retried with back-off (`retry.rs`), then reported as
//! `Unavailable`; any other 4xx is `Refused` with IoT Hub's own message.
//!
//! Why hand-written over reqwest: Azure ships no supported Rust SDK for IoT Hub's service API (the
//! pre-release `azure_iot_hub` crate of azure-sdk-for-rust was dropped, with an HTTP stack older than the
//! workspace's). The connector needs five REST calls and a SAS token, which `dps-crypto` already signs; a
//! generated client would bring more surface than it removes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dps_core::ports::{ConnectorError, HubAuthentication, HubConnector, HubDevice, Provisioned};
use dps_core::Clock;
use dps_crypto::Secret;
use dps_proto::{InitialTwin, InitialTwinProperties, LinkedHub};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tracing::{info, instrument, warn};

use crate::error_chain;
use crate::retry::{with_backoff, Failure};
use crate::tls;

/// The IoT Hub service API version the connector speaks.
pub const API_VERSION: &str = "2021-04-12";
const TOKEN_LIFETIME_SECS: i64 = 3600;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// The twin tag naming an identity's owner (`IdentityOwner::marker`). IoT Hub's device identity has no member of
/// its own for such a mark; tags are the solution's metadata, not seen by the device.
pub const OWNER_TAG: &str = "dpsConsoleOwner";

/// RFC 3986 unreserved characters stay, everything else is percent-encoded (path segments, `sr`).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The parts of a hub connection string. `Debug` never shows the key.
#[derive(Debug)]
struct HubConnectionString {
    host_name: String,
    key_name: String,
    key: Secret,
    gateway: Option<String>,
}

impl HubConnectionString {
    /// Parses `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…[;GatewayHostName=host:port]` (field names
    /// case-insensitive, any order). Messages name fields, never values of the secret.
    fn parse(text: &str) -> Result<Self, String> {
        let (mut host, mut key_name, mut key, mut gateway) = (None, None, None, None);
        for part in text.trim().split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err("the connection string is not a list of Name=value fields separated by ';'".into());
            };
            let slot = match name.trim().to_ascii_lowercase().as_str() {
                "hostname" => &mut host,
                "sharedaccesskeyname" => &mut key_name,
                "sharedaccesskey" => &mut key,
                "gatewayhostname" => &mut gateway,
                "deviceid" | "moduleid" => {
                    return Err("this is a device connection string: use one of the hub's shared access policies (e.g. iothubowner)".into())
                }
                other => return Err(format!("the connection string has an unknown field '{}'", other.escape_debug())),
            };
            if slot.replace(value.trim().to_owned()).is_some() {
                return Err(format!("the connection string has '{}' twice", name.trim().escape_debug()));
            }
        }
        let host_name = host.filter(|h| !h.is_empty()).ok_or("the connection string has no HostName")?;
        if !host_name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')) {
            return Err(format!("HostName '{}' is not a host name", host_name.escape_debug()));
        }
        let key_name = key_name.filter(|k| !k.is_empty()).ok_or("the connection string has no SharedAccessKeyName")?;
        let key = Secret::new(key.filter(|k| !k.is_empty()).ok_or("the connection string has no SharedAccessKey")?);
        if dps_crypto::decode_key(key.expose()).map(|k| k.is_empty()).unwrap_or(true) {
            return Err("SharedAccessKey is not a base64 key".into());
        }
        if let Some(g) = &gateway {
            let url = reqwest::Url::parse(&format!("https://{g}/"))
                .map_err(|_| format!("GatewayHostName '{}' is not host[:port]", g.escape_debug()))?;
            if url.path() != "/" || !url.username().is_empty() || url.query().is_some() || url.host_str().is_none() {
                return Err(format!("GatewayHostName '{}' is not host[:port]", g.escape_debug()));
            }
        }
        Ok(Self { host_name, key_name, key, gateway })
    }

    fn base_url(&self) -> String {
        format!("https://{}", self.gateway.as_deref().unwrap_or(&self.host_name))
    }
}

/// The `azureIotHub` connector. Keeps one HTTP client (connection pool) per distinct `caCertificate`.
pub struct AzureIotHub {
    clock: Arc<dyn Clock>,
    clients: Mutex<HashMap<Option<String>, reqwest::Client>>,
}

/// A request to IoT Hub.
struct Call<'a> {
    method: Method,
    /// `devices` or `twins`.
    collection: &'static str,
    device_id: &'a str,
    if_match: Option<String>,
    body: Option<Value>,
}

/// A final (not retried) answer.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    error_code: Option<String>,
}

impl Reply {
    /// IoT Hub's error text: `Message` (itself sometimes JSON with `message`), else the body, else the status.
    fn error_message(&self) -> String {
        let from_json = serde_json::from_slice::<Value>(&self.body).ok().and_then(|v| {
            let m = v.get("Message").or_else(|| v.get("message")).and_then(Value::as_str).map(str::to_owned)?;
            match serde_json::from_str::<Value>(&m).ok().and_then(|inner| inner.get("message").and_then(Value::as_str).map(str::to_owned)) {
                Some(inner) => Some(inner),
                None => Some(m),
            }
        });
        let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(&self.body).chars().take(300).collect());
        let code = self.error_code.as_deref().map(|c| format!(" [{c}]")).unwrap_or_default();
        if text.trim().is_empty() {
            format!("IoT Hub answered {}{code}", self.status)
        } else {
            format!("IoT Hub answered {}{code}: {}", self.status, text.trim())
        }
    }
}

impl AzureIotHub {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock, clients: Mutex::new(HashMap::new()) }
    }

    fn credentials(hub: &LinkedHub) -> Result<HubConnectionString, ConnectorError> {
        let text = hub.connection_string.as_deref().ok_or_else(|| {
            ConnectorError::Refused("the azureIotHub connector needs a connectionString (a shared access policy of the hub)".into())
        })?;
        HubConnectionString::parse(text).map_err(ConnectorError::Refused)
    }

    fn client(&self, hub: &LinkedHub) -> Result<reqwest::Client, ConnectorError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&hub.ca_certificate) {
            return Ok(c.clone());
        }
        let config = tls::client_config(hub.ca_certificate.as_deref()).map_err(ConnectorError::Refused)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ConnectorError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        clients.insert(hub.ca_certificate.clone(), client.clone());
        Ok(client)
    }

    /// `SharedAccessSignature sr=<HostName>&sig=…&se=…&skn=<policy>`, valid for an hour from the clock's now.
    fn token(&self, cs: &HubConnectionString) -> Result<String, ConnectorError> {
        let key =
            dps_crypto::decode_key(cs.key.expose()).map_err(|_| ConnectorError::Refused("SharedAccessKey is not a base64 key".into()))?;
        let se = u64::try_from(self.clock.now().timestamp() + TOKEN_LIFETIME_SECS).unwrap_or(0);
        let sr = utf8_percent_encode(&cs.host_name, COMPONENT).to_string();
        let sig = dps_crypto::sign(&key, &sr, se);
        Ok(format!(
            "SharedAccessSignature sr={sr}&sig={}&se={se}&skn={}",
            utf8_percent_encode(&sig, COMPONENT),
            utf8_percent_encode(&cs.key_name, COMPONENT)
        ))
    }

    /// Sends `call`, retrying connection errors, 429 and 5xx; any other status is returned.
    async fn send(&self, http: &reqwest::Client, cs: &HubConnectionString, call: &Call<'_>) -> Result<Reply, ConnectorError> {
        let url =
            format!("{}/{}/{}?api-version={API_VERSION}", cs.base_url(), call.collection, utf8_percent_encode(call.device_id, COMPONENT));
        let what = format!("{} /{}/{}", call.method, call.collection, call.device_id);
        with_backoff(&what, || async {
            let mut req = http.request(call.method.clone(), &url).header("authorization", self.token(cs)?);
            if let Some(m) = &call.if_match {
                req = req.header("if-match", m);
            }
            if let Some(body) = &call.body {
                req = req.header("content-type", "application/json; charset=utf-8").body(body.to_string());
            }
            let resp = req.send().await.map_err(|e| Failure::Transient(error_chain(&e)))?;
            let status = resp.status();
            let error_code = resp.headers().get("iothub-errorcode").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = resp.bytes().await.map_err(|e| Failure::Transient(error_chain(&e)))?.to_vec();
            let reply = Reply { status, body, error_code };
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                return Err(Failure::Transient(reply.error_message()));
            }
            Ok(reply)
        })
        .await
    }

    /// The device's etag (`None`: no such device).
    async fn existing_etag(
        &self,
        http: &reqwest::Client,
        cs: &HubConnectionString,
        device_id: &str,
    ) -> Result<Option<String>, ConnectorError> {
        let reply =
            self.send(http, cs, &Call { method: Method::GET, collection: "devices", device_id, if_match: None, body: None }).await?;
        match reply.status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let etag = serde_json::from_slice::<Value>(&reply.body)
                    .ok()
                    .and_then(|v| v.get("etag").and_then(Value::as_str).map(str::to_owned));
                Ok(Some(etag.filter(|e| !e.is_empty()).map(|e| format!("\"{}\"", e.trim_matches('"'))).unwrap_or_else(|| "*".into())))
            }
            _ => Err(ConnectorError::Refused(reply.error_message())),
        }
    }

    /// `PUT /devices/{id}` after checking the owner of an identity that exists; `true` when it was created.
    async fn put_device(&self, http: &reqwest::Client, cs: &HubConnectionString, device: &HubDevice) -> Result<bool, ConnectorError> {
        let body = device_body(device);
        // A 412 means the device changed between GET and PUT: read the new etag once more.
        for round in 0..2 {
            let etag = self.existing_etag(http, cs, &device.device_id).await?;
            if etag.is_some() && round == 0 {
                let owner = self.owner_tag(http, cs, &device.device_id).await?;
                device.check_owner(owner.as_deref(), "IoT Hub's device")?;
            }
            let created = etag.is_none();
            let call =
                Call { method: Method::PUT, collection: "devices", device_id: &device.device_id, if_match: etag, body: Some(body.clone()) };
            let reply = self.send(http, cs, &call).await?;
            if reply.status.is_success() {
                return Ok(created);
            }
            if reply.status != StatusCode::PRECONDITION_FAILED || round > 0 {
                return Err(ConnectorError::Refused(reply.error_message()));
            }
        }
        Err(ConnectorError::Refused("the device kept changing while it was written".into()))
    }

    /// The owner marked on the device's twin ([`OWNER_TAG`]), if any.
    async fn owner_tag(&self, http: &reqwest::Client, cs: &HubConnectionString, device_id: &str) -> Result<Option<String>, ConnectorError> {
        let reply = self.send(http, cs, &Call { method: Method::GET, collection: "twins", device_id, if_match: None, body: None }).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(ConnectorError::Refused(reply.error_message()));
        }
        let twin: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        Ok(twin.pointer(&format!("/tags/{OWNER_TAG}")).and_then(Value::as_str).map(str::to_owned))
    }

    async fn delete(&self, http: &reqwest::Client, cs: &HubConnectionString, device_id: &str) -> Result<(), ConnectorError> {
        let call = Call { method: Method::DELETE, collection: "devices", device_id, if_match: Some("*".into()), body: None };
        let reply = self.send(http, cs, &call).await?;
        if reply.status.is_success() || reply.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(ConnectorError::Refused(reply.error_message()))
        }
    }
}

/// The body of `PATCH /twins/{id}`: the owner tag, plus the device's twin when it comes with one (tags and
/// desired properties are merged into the twin by IoT Hub: without a twin, the hub's is kept).
fn twin_patch(device: &HubDevice) -> Value {
    let twin = device.initial_twin.as_ref();
    let mut tags = twin.and_then(|t| t.tags.clone()).unwrap_or_default();
    tags.insert(OWNER_TAG.to_owned(), Value::String(device.owner.marker()));
    let desired = twin.and_then(|t| t.properties.as_ref()).and_then(|p| p.desired.clone()).unwrap_or_default();
    json!({ "tags": Value::Object(tags), "properties": { "desired": Value::Object(desired) } })
}

/// The device body of `PUT /devices/{id}`.
fn device_body(device: &HubDevice) -> Value {
    let authentication = match &device.authentication {
        HubAuthentication::Sas { primary_key, secondary_key } | HubAuthentication::TpmSas { primary_key, secondary_key } => json!({
            "type": "sas",
            "symmetricKey": { "primaryKey": primary_key.expose(), "secondaryKey": secondary_key.expose() },
        }),
        HubAuthentication::SelfSigned { primary_thumbprint, secondary_thumbprint } => json!({
            "type": "selfSigned",
            "x509Thumbprint": { "primaryThumbprint": primary_thumbprint, "secondaryThumbprint": secondary_thumbprint },
        }),
    };
    json!({
        "deviceId": device.device_id,
        "status": "enabled",
        "authentication": authentication,
        "capabilities": { "iotEdge": device.iot_edge },
    })
}

#[async_trait]
impl HubConnector for AzureIotHub {
    fn check(&self, hub: &LinkedHub) -> Result<(), ConnectorError> {
        Self::credentials(hub)?;
        if let Some(pem) = &hub.ca_certificate {
            tls::parse_ca(pem).map_err(ConnectorError::Refused)?;
        }
        Ok(())
    }

    /// One `GET /devices/{probe}` with the policy's SAS: 200 or 404 means the hub answered and took the
    /// credentials.
    async fn probe(&self, hub: &LinkedHub) -> Result<String, ConnectorError> {
        let cs = Self::credentials(hub)?;
        let http = self.client(hub)?;
        let url = format!("{}/devices/dps-console-probe?api-version={API_VERSION}", cs.base_url());
        let resp = http
            .get(&url)
            .header("authorization", self.token(&cs)?)
            .send()
            .await
            .map_err(|e| ConnectorError::Unavailable(format!("{} cannot be reached: {}", cs.base_url(), error_chain(&e))))?;
        let status = resp.status();
        let error_code = resp.headers().get("iothub-errorcode").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(format!("{} answered with policy {}", cs.base_url(), cs.key_name))
        } else {
            Err(ConnectorError::Refused(Reply { status, body, error_code }.error_message()))
        }
    }

    #[instrument(skip_all, fields(hub = %hub.host_name, device_id = %device.device_id))]
    async fn provision(&self, hub: &LinkedHub, device: &HubDevice) -> Result<Provisioned, ConnectorError> {
        let cs = Self::credentials(hub)?;
        let http = self.client(hub)?;
        let created = self.put_device(&http, &cs, device).await?;
        let call = Call {
            method: Method::PATCH,
            collection: "twins",
            device_id: &device.device_id,
            if_match: Some("*".into()),
            body: Some(twin_patch(device)),
        };
        let failed = match self.send(&http, &cs, &call).await {
            Ok(reply) if reply.status.is_success() => None,
            Ok(reply) => Some(ConnectorError::Refused(format!("twin update: {}", reply.error_message()))),
            Err(e) => Some(e),
        };
        if let Some(e) = failed {
            if created {
                // No half-created identity: the device would connect without its twin (and it would have no owner).
                if let Err(d) = self.delete(&http, &cs, &device.device_id).await {
                    warn!(error = %d, "cannot delete the identity whose twin update failed");
                    return Err(ConnectorError::Unavailable(format!("{e}; deleting the new identity again failed too: {d}")));
                }
            }
            return Err(e);
        }
        info!(created, "device identity written to Azure IoT Hub");
        Ok(Provisioned::InHub)
    }

    /// `GET /twins/{id}`: tags and desired properties (without IoT Hub's `$metadata` / `$version`).
    #[instrument(skip_all, fields(hub = %hub.host_name, device_id = %device_id))]
    async fn read_twin(&self, hub: &LinkedHub, device_id: &str) -> Result<Option<InitialTwin>, ConnectorError> {
        let cs = Self::credentials(hub)?;
        let http = self.client(hub)?;
        let reply =
            self.send(&http, &cs, &Call { method: Method::GET, collection: "twins", device_id, if_match: None, body: None }).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(ConnectorError::Refused(reply.error_message()));
        }
        let twin: Value =
            serde_json::from_slice(&reply.body).map_err(|e| ConnectorError::Unavailable(format!("IoT Hub's twin is not JSON: {e}")))?;
        let collection = |v: Option<&Value>| {
            let mut m = v.and_then(Value::as_object).cloned().unwrap_or_default();
            m.retain(|k, _| !k.starts_with('$'));
            m
        };
        let mut tags = collection(twin.get("tags"));
        // The owner belongs to this hub's identity; the new hub's identity gets its own.
        tags.remove(OWNER_TAG);
        Ok(Some(InitialTwin {
            tags: Some(tags),
            properties: Some(InitialTwinProperties { desired: Some(collection(twin.pointer("/properties/desired"))) }),
        }))
    }

    #[instrument(skip_all, fields(hub = %hub.host_name, device_id = %device_id))]
    async fn deprovision(&self, hub: &LinkedHub, device_id: &str) -> Result<(), ConnectorError> {
        let cs = Self::credentials(hub)?;
        let http = self.client(hub)?;
        self.delete(&http, &cs, device_id).await?;
        info!("device identity deleted from Azure IoT Hub");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1vZi10aGUtcG9saWN5LTAxMjM0NTY=";

    #[test]
    fn parses_a_policy_connection_string() {
        let cs = HubConnectionString::parse(&format!(
            "HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY};GatewayHostName=127.0.0.1:8443"
        ))
        .expect("parses");
        assert_eq!(cs.host_name, "myhub.azure-devices.net");
        assert_eq!(cs.key_name, "iothubowner");
        assert_eq!(cs.base_url(), "https://127.0.0.1:8443");
        assert!(!format!("{cs:?}").contains(KEY));
    }

    #[test]
    fn refuses_malformed_strings_without_echoing_the_key() {
        for (text, expect) in [
            ("", "no HostName"),
            ("HostName=h;SharedAccessKeyName=p", "no SharedAccessKey"),
            ("HostName=h;SharedAccessKey=not*base64;SharedAccessKeyName=p", "not a base64 key"),
            ("HostName=h;DeviceId=d;SharedAccessKey=AAAA", "device connection string"),
            ("HostName=h;SharedAccessKeyName=p;SharedAccessKey=AAAA;Foo=1", "unknown field 'foo'"),
            ("HostName=h/x;SharedAccessKeyName=p;SharedAccessKey=AAAA", "not a host name"),
            ("HostName=h;SharedAccessKeyName=p;SharedAccessKey=AAAA;GatewayHostName=a/b", "not host[:port]"),
            ("just text", "Name=value"),
        ] {
            let e = HubConnectionString::parse(text).err().unwrap_or_else(|| panic!("accepted {text:?}"));
            assert!(e.contains(expect), "{text:?}: {e}");
            assert!(!e.contains("not*base64"));
        }
    }

    #[test]
    fn device_ids_are_percent_encoded_in_paths() {
        assert_eq!(utf8_percent_encode("a b/c%d:e-f.g_h~", COMPONENT).to_string(), "a%20b%2Fc%25d%3Ae-f.g_h~");
    }
}
