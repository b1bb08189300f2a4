//! An MQTT broker as a hub (connector `mosquitto`): Mosquitto ≥ 2 with its dynamic-security plugin.
//!
//! Credentials: `mqtt://admin-user:admin-pass@host:port` (or `mqtts://…`, trusting the system's roots plus
//! the hub's `caCertificate`) of a broker user allowed to publish to and subscribe on
//! `$CONTROL/dynamic-security/#` (the `admin` user `mosquitto_ctrl dynsec init` creates).
//!
//! For device `<id>` the connector keeps, through `$CONTROL/dynamic-security/v1`:
//! - a role `dps-device-<id>` whose ACLs allow `publishClientSend`, `publishClientReceive` and
//!   `subscribePattern` on `devices/<id>/#`, nothing else (the plugin's defaults deny other publishes and
//!   subscriptions);
//! - a client with username `<id>` and that role. Symmetric-key and TPM devices: password = the device's
//!   primary key, the one it proved to the service (base64 text, as the device holds it). X.509 devices: no
//!   password — the broker's listener for them must set `require_certificate true` and
//!   `use_identity_as_username true`, so the certificate's CN (the registration id, which is also the device
//!   id unless an individual enrollment sets another `deviceId`) becomes the username. Mosquitto then
//!   authenticates the certificate itself: any certificate of its `cafile` completes CONNECT, and without
//!   its client and role (not provisioned, or deprovisioned) the device may publish and subscribe nothing.
//!
//! TPM devices cannot use this connector: the broker checks the key itself as the password, and a TPM device
//! holds its key only inside its TPM (it signs SAS tokens with it, §4.4.3). Their registration fails with
//! [`TPM_REFUSAL`]; link a builtin or Azure IoT Hub for them.
//!
//! Both carry a `textname` marking them as DPS Console's; a client or role of the same name without it
//! (the admin user, an application's account) is never modified or deleted: the call is refused. The client's
//! `textdescription` names its owner (`IdentityOwner::marker`: this service's ID scope and the enrollment the
//! device registered through); a client of another owner is not modified either (`ConnectorError::NotOwned`)
//! unless the engine allows the take-over. A client marked before owners were recorded has no description and
//! is this service's.
//!
//! A call opens one admin connection (fresh client id, clean session), subscribes to
//! `$CONTROL/dynamic-security/v1/response`, reads the current client and role (`getClient`, `getRole`),
//! then creates or modifies them, and waits for every answer, matched by `correlationData` (the plugin
//! broadcasts answers to every subscribed admin). Errors in answers are `Refused`; a broker that cannot be
//! reached is retried with back-off, then `Unavailable`. `modifyClient` makes the broker drop the device's
//! current connections (the plugin kicks a client whose settings change).
//!
//! Why hand-written: the dynamic-security API is a handful of JSON commands over MQTT with no Rust client
//! crate; the MQTT part is `rumqttc` (already the workspace's MQTT codec), so only the command shapes and
//! the answer matching live here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dps_core::ports::{ConnectorError, HubAuthentication, HubConnector, HubDevice, Provisioned};
use dps_crypto::Secret;
use dps_proto::LinkedHub;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, SubscribeReasonCode, TlsConfiguration, Transport,
};
use serde_json::{json, Value};
use tracing::{debug, info, instrument};

use crate::error_chain;
use crate::retry::{with_backoff, Failure};

/// Why a TPM device cannot be provisioned on the broker (see the module doc).
pub const TPM_REFUSAL: &str = "the mosquitto connector authenticates a device by its key as the MQTT password, and a TPM device \
    never holds its key outside its TPM: link a builtin or Azure IoT Hub hub for TPM devices";
use crate::tls;

const CONTROL_TOPIC: &str = "$CONTROL/dynamic-security/v1";
const RESPONSE_TOPIC: &str = "$CONTROL/dynamic-security/v1/response";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Marks the clients and roles this connector owns.
const CLIENT_TEXT: &str = "DPS Console device identity";
const ROLE_TEXT: &str = "DPS Console device role";

/// The role a device's client gets.
fn role_name(device_id: &str) -> String {
    format!("dps-device-{device_id}")
}

/// The topic filter a device may use.
fn device_topics(device_id: &str) -> String {
    format!("devices/{device_id}/#")
}

/// `mqtt[s]://user:password@host[:port]`. `Debug` never shows the password.
#[derive(Debug)]
struct BrokerUrl {
    tls: bool,
    host: String,
    port: u16,
    username: String,
    password: Secret,
}

impl BrokerUrl {
    fn parse(text: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(text.trim())
            .map_err(|_| "the connection string is not a URL (mqtt://user:password@host:port)".to_owned())?;
        let tls = match url.scheme() {
            "mqtt" => false,
            "mqtts" => true,
            other => return Err(format!("the connection string's scheme '{}' is neither mqtt nor mqtts", other.escape_debug())),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("the connection string has no host")?;
        // IPv6 literals come bracketed; the socket address wants them bare.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err("the connection string has a path, query or fragment: only mqtt[s]://user:password@host:port".into());
        }
        let decode = |s: &str, what: &str| {
            percent_encoding::percent_decode_str(s).decode_utf8().map(|c| c.into_owned()).map_err(|_| format!("the {what} is not UTF-8"))
        };
        let username = decode(url.username(), "user name")?;
        if username.is_empty() {
            return Err("the connection string has no user (mqtt://user:password@host:port)".into());
        }
        let password = Secret::new(decode(url.password().unwrap_or_default(), "password")?);
        if password.expose().is_empty() {
            return Err("the connection string has no password (mqtt://user:password@host:port)".into());
        }
        Ok(Self { tls, host, port: url.port().unwrap_or(if tls { 8883 } else { 1883 }), username, password })
    }
}

/// The `mosquitto` connector.
pub struct Mosquitto {
    response_timeout: Duration,
}

impl Default for Mosquitto {
    fn default() -> Self {
        Self::new()
    }
}

impl Mosquitto {
    pub fn new() -> Self {
        Self { response_timeout: RESPONSE_TIMEOUT }
    }

    fn settings(hub: &LinkedHub) -> Result<BrokerUrl, ConnectorError> {
        let text = hub.connection_string.as_deref().ok_or_else(|| {
            ConnectorError::Refused("the mosquitto connector needs a connectionString (mqtt://user:password@host:port)".into())
        })?;
        let url = BrokerUrl::parse(text).map_err(ConnectorError::Refused)?;
        if let Some(pem) = &hub.ca_certificate {
            if !url.tls {
                return Err(ConnectorError::Refused("caCertificate is only used with mqtts://".into()));
            }
            tls::parse_ca(pem).map_err(ConnectorError::Refused)?;
        }
        Ok(url)
    }

    /// Runs `op` on a fresh admin session, the whole of it retried on connection failures (every
    /// operation reads the broker's state first, so a repeat is harmless).
    async fn with_session(&self, hub: &LinkedHub, what: &str, op: Op<'_>) -> Result<(), ConnectorError> {
        let url = Self::settings(hub)?;
        let tls = if url.tls {
            Some(Arc::new(tls::client_config(hub.ca_certificate.as_deref()).map_err(ConnectorError::Refused)?))
        } else {
            None
        };
        with_backoff(what, || async {
            let mut session = AdminSession::open(&url, tls.clone(), self.response_timeout).await?;
            let result = op.apply(&mut session).await;
            session.close().await;
            result
        })
        .await
    }
}

/// One admin connection to the broker.
struct AdminSession {
    client: AsyncClient,
    events: EventLoop,
    response_timeout: Duration,
}

impl AdminSession {
    async fn open(url: &BrokerUrl, tls: Option<Arc<rustls::ClientConfig>>, response_timeout: Duration) -> Result<Self, Failure> {
        let client_id = format!("dps-console-{}", uuid::Uuid::new_v4().simple());
        let mut opts = MqttOptions::new(client_id, url.host.clone(), url.port);
        opts.set_credentials(url.username.clone(), url.password.expose().to_owned());
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(true);
        opts.set_max_packet_size(256 * 1024, 256 * 1024);
        if let Some(config) = tls {
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        }
        let (client, mut events) = AsyncClient::new(opts, 16);
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        let broker = format!("{}:{}", url.host, url.port);
        match connected {
            Err(_) => return Err(Failure::Transient(format!("no CONNACK from {broker} within {CONNECT_TIMEOUT:?}"))),
            Ok(Err(ConnectionError::ConnectionRefused(code))) => {
                return Err(Failure::Final(ConnectorError::Refused(format!(
                    "the broker at {broker} refused the admin user '{}': {code:?}",
                    url.username.escape_debug()
                ))))
            }
            Ok(Err(e)) => return Err(Failure::Transient(format!("cannot connect to {broker}: {}", error_chain(&e)))),
            Ok(Ok(())) => {}
        }
        let mut session = Self { client, events, response_timeout };
        session.subscribe_responses().await?;
        Ok(session)
    }

    async fn subscribe_responses(&mut self) -> Result<(), Failure> {
        self.client.subscribe(RESPONSE_TOPIC, QoS::AtLeastOnce).await.map_err(|e| Failure::Transient(e.to_string()))?;
        let acked = tokio::time::timeout(self.response_timeout, async {
            loop {
                match self.events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(ack))) => return Ok(ack.return_codes),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match acked {
            Err(_) => Err(Failure::Transient("no SUBACK for the dynamic-security responses".into())),
            Ok(Err(e)) => Err(Failure::Transient(format!("connection lost: {}", error_chain(&e)))),
            Ok(Ok(codes)) if codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)) => {
                Err(Failure::Final(ConnectorError::Refused(format!(
                    "the admin user may not subscribe to {RESPONSE_TOPIC} (is it the dynamic-security admin?)"
                ))))
            }
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Sends `commands` in one message; returns their answers in the same order.
    async fn run(&mut self, mut commands: Vec<Value>) -> Result<Vec<Value>, Failure> {
        let ids: Vec<String> = commands.iter().map(|_| uuid::Uuid::new_v4().simple().to_string()).collect();
        for (c, id) in commands.iter_mut().zip(&ids) {
            c["correlationData"] = Value::String(id.clone());
        }
        let names: Vec<String> = commands.iter().map(|c| c["command"].as_str().unwrap_or_default().to_owned()).collect();
        debug!(commands = ?names, "dynamic-security commands");
        let payload = json!({ "commands": commands }).to_string();
        self.client.publish(CONTROL_TOPIC, QoS::AtLeastOnce, false, payload).await.map_err(|e| Failure::Transient(e.to_string()))?;
        let mut answers: HashMap<String, Value> = HashMap::new();
        let waited = tokio::time::timeout(self.response_timeout, async {
            while answers.len() < ids.len() {
                match self.events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == RESPONSE_TOPIC => {
                        let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&p.payload) else { continue };
                        let Some(Value::Array(responses)) = body.remove("responses") else { continue };
                        for r in responses {
                            if let Some(id) = r.get("correlationData").and_then(Value::as_str) {
                                if ids.iter().any(|i| i == id) {
                                    answers.insert(id.to_owned(), r);
                                }
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
        .await;
        match waited {
            Err(_) => Err(Failure::Final(ConnectorError::Unavailable(format!(
                "no answer from the dynamic-security plugin within {:?} (is it loaded, and may the admin user publish to {CONTROL_TOPIC}?)",
                self.response_timeout
            )))),
            Ok(Err(e)) => Err(Failure::Transient(format!("connection lost: {}", error_chain(&e)))),
            Ok(Ok(())) => Ok(ids.iter().filter_map(|id| answers.remove(id)).collect()),
        }
    }

    /// Sends DISCONNECT and waits briefly for it to leave.
    async fn close(mut self) {
        if self.client.disconnect().await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match self.events.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

/// The plugin's error text of an answer, if any.
fn answer_error(answer: &Value) -> Option<&str> {
    answer.get("error").and_then(Value::as_str)
}

/// Fails with the plugin's error (as `Refused`) if any answer has one.
fn all_ok(answers: &[Value]) -> Result<(), Failure> {
    for a in answers {
        if let Some(e) = answer_error(a) {
            let command = a.get("command").and_then(Value::as_str).unwrap_or("command");
            return Err(Failure::Final(ConnectorError::Refused(format!("dynamic-security {command}: {e}"))));
        }
    }
    Ok(())
}

/// What the broker has under a name: nothing, ours, or someone else's.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Existing {
    None,
    Ours,
    Foreign,
}

fn existing(answer: Option<&Value>, kind: &str, ours: &str) -> Result<Existing, Failure> {
    let Some(answer) = answer else { return Err(Failure::Transient("the dynamic-security plugin answered only partly".into())) };
    match answer_error(answer) {
        Some(e) if e.contains("not found") => Ok(Existing::None),
        Some(e) => Err(Failure::Final(ConnectorError::Refused(format!("dynamic-security get{kind}: {e}")))),
        None => {
            let text = answer.pointer(&format!("/data/{}/textname", kind.to_ascii_lowercase())).and_then(Value::as_str);
            Ok(if text == Some(ours) { Existing::Ours } else { Existing::Foreign })
        }
    }
}

/// Refuses names that would escape `devices/<id>/#` (MQTT wildcards, levels) or that MQTT cannot carry.
fn check_device_id(device_id: &str) -> Result<(), ConnectorError> {
    if device_id.is_empty() || device_id.len() > 1024 || device_id.chars().any(|c| matches!(c, '+' | '#' | '/') || c.is_control()) {
        return Err(ConnectorError::Refused(format!(
            "device id '{}' cannot be an MQTT user of the broker (no '+', '#', '/' or control characters)",
            device_id.escape_debug()
        )));
    }
    Ok(())
}

/// What a session does.
#[derive(Clone, Copy)]
enum Op<'a> {
    Provision(&'a HubDevice),
    Deprovision(&'a str),
}

impl Op<'_> {
    async fn apply(self, session: &mut AdminSession) -> Result<(), Failure> {
        match self {
            Op::Provision(device) => provision(session, device).await,
            Op::Deprovision(device_id) => deprovision(session, device_id).await,
        }
    }
}

/// The owner marker of the client in a `getClient` answer.
fn client_owner(answer: Option<&Value>) -> Option<String> {
    answer?.pointer("/data/client/textdescription").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_owned)
}

/// The device's current client and role; refuses names held by something not ours. With the client's owner marker.
async fn lookup(session: &mut AdminSession, device_id: &str) -> Result<(Existing, Existing, Option<String>), Failure> {
    let answers = session
        .run(vec![
            json!({ "command": "getClient", "username": device_id }),
            json!({ "command": "getRole", "rolename": role_name(device_id) }),
        ])
        .await?;
    let client = existing(answers.first(), "Client", CLIENT_TEXT)?;
    let role = existing(answers.get(1), "Role", ROLE_TEXT)?;
    let refuse = |what: &str, name: &str| {
        Failure::Final(ConnectorError::Refused(format!(
            "the broker has a {what} '{}' that DPS Console did not create; it is left alone",
            name.escape_debug()
        )))
    };
    if client == Existing::Foreign {
        return Err(refuse("client", device_id));
    }
    if role == Existing::Foreign {
        return Err(refuse("role", &role_name(device_id)));
    }
    Ok((client, role, client_owner(answers.first())))
}

/// Creates or modifies the device's role, then its client.
async fn provision(session: &mut AdminSession, device: &HubDevice) -> Result<(), Failure> {
    let id = device.device_id.as_str();
    let password = match &device.authentication {
        HubAuthentication::Sas { primary_key, .. } => Some(primary_key.expose()),
        HubAuthentication::SelfSigned { .. } => None,
        HubAuthentication::TpmSas { .. } => return Err(Failure::Final(ConnectorError::Refused(TPM_REFUSAL.into()))),
    };
    let (client, role, owner) = lookup(session, id).await?;
    if let Some(marker) = owner.filter(|_| client == Existing::Ours) {
        device.check_owner(Some(&marker), "the broker's client").map_err(Failure::Final)?;
    }
    let marker = device.owner.marker();
    let topics = device_topics(id);
    let rolename = role_name(id);
    let mut commands = vec![json!({
        "command": if role == Existing::Ours { "modifyRole" } else { "createRole" },
        "rolename": rolename,
        "textname": ROLE_TEXT,
        "acls": [
            { "acltype": "publishClientSend", "topic": topics, "allow": true },
            { "acltype": "publishClientReceive", "topic": topics, "allow": true },
            { "acltype": "subscribePattern", "topic": topics, "allow": true },
        ],
    })];
    let mut create = json!({
        "command": "createClient",
        "username": id,
        "textname": CLIENT_TEXT,
        "textdescription": marker,
        "roles": [{ "rolename": rolename }],
    });
    match (client, password) {
        (Existing::Ours, Some(p)) => commands.push(json!({
            "command": "modifyClient",
            "username": id,
            "password": p,
            "textname": CLIENT_TEXT,
            "textdescription": marker,
            "roles": [{ "rolename": rolename }],
        })),
        (Existing::Ours, None) => {
            // modifyClient cannot remove a password: re-create the client without one.
            commands.push(json!({ "command": "deleteClient", "username": id }));
            commands.push(create);
        }
        (_, Some(p)) => {
            create["password"] = Value::String(p.to_owned());
            commands.push(create);
        }
        (_, None) => commands.push(create),
    }
    all_ok(&session.run(commands).await?)
}

/// Deletes the device's client and role (what is already gone is fine).
async fn deprovision(session: &mut AdminSession, device_id: &str) -> Result<(), Failure> {
    let (client, role, _) = lookup(session, device_id).await?;
    let mut commands = Vec::new();
    if client == Existing::Ours {
        commands.push(json!({ "command": "deleteClient", "username": device_id }));
    }
    if role == Existing::Ours {
        commands.push(json!({ "command": "deleteRole", "rolename": role_name(device_id) }));
    }
    if commands.is_empty() {
        return Ok(());
    }
    all_ok(&session.run(commands).await?)
}

#[async_trait]
impl HubConnector for Mosquitto {
    fn check(&self, hub: &LinkedHub) -> Result<(), ConnectorError> {
        Self::settings(hub).map(|_| ())
    }

    /// One admin session (no retries) running `getDefaultACLAccess`: the broker answered, took the admin
    /// credentials and has the dynamic-security plugin.
    async fn probe(&self, hub: &LinkedHub) -> Result<String, ConnectorError> {
        let url = Self::settings(hub)?;
        let tls = if url.tls {
            Some(Arc::new(tls::client_config(hub.ca_certificate.as_deref()).map_err(ConnectorError::Refused)?))
        } else {
            None
        };
        let fail = |f: Failure| match f {
            Failure::Final(e) => e,
            Failure::Transient(m) => ConnectorError::Unavailable(format!("{}:{}: {m}", url.host, url.port)),
        };
        let mut session = AdminSession::open(&url, tls, self.response_timeout).await.map_err(fail)?;
        let answers = session.run(vec![json!({ "command": "getDefaultACLAccess" })]).await;
        session.close().await;
        all_ok(&answers.map_err(fail)?).map_err(fail)?;
        Ok(format!("broker {}:{} answered the dynamic-security plugin", url.host, url.port))
    }

    #[instrument(skip_all, fields(hub = %hub.host_name, device_id = %device.device_id))]
    async fn provision(&self, hub: &LinkedHub, device: &HubDevice) -> Result<Provisioned, ConnectorError> {
        check_device_id(&device.device_id)?;
        if matches!(device.authentication, HubAuthentication::TpmSas { .. }) {
            return Err(ConnectorError::Refused(TPM_REFUSAL.into()));
        }
        self.with_session(hub, "provision on the MQTT broker", Op::Provision(device)).await?;
        info!("device client and role written to the MQTT broker");
        Ok(Provisioned::InHub)
    }

    #[instrument(skip_all, fields(hub = %hub.host_name, device_id = %device_id))]
    async fn deprovision(&self, hub: &LinkedHub, device_id: &str) -> Result<(), ConnectorError> {
        check_device_id(device_id)?;
        self.with_session(hub, "deprovision on the MQTT broker", Op::Deprovision(device_id)).await?;
        info!("device client and role removed from the MQTT broker");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls() {
        let u = BrokerUrl::parse("mqtt://admin:p%40ss@127.0.0.1:18830").expect("parses");
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.username.as_str(), u.password.expose()),
            (false, "127.0.0.1", 18830, "admin", "p@ss")
        );
        let u = BrokerUrl::parse("mqtts://admin:x@broker.example").expect("parses");
        assert_eq!((u.tls, u.port), (true, 8883));
        assert!(!format!("{u:?}").contains("\"x\""));
    }

    #[test]
    fn refuses_malformed_urls() {
        for (text, expect) in [
            ("localhost:1883", "neither mqtt nor mqtts"),
            ("http://a:b@h:1", "neither mqtt nor mqtts"),
            ("mqtt://h:1883", "no user"),
            ("mqtt://admin@h:1883", "no password"),
            ("mqtt://admin:pw@h:1883/topic", "path"),
            ("not a url", "not a URL"),
        ] {
            let e = BrokerUrl::parse(text).err().unwrap_or_else(|| panic!("accepted {text:?}"));
            assert!(e.contains(expect), "{text:?}: {e}");
            assert!(!e.contains("pw"), "{e}");
        }
    }

    #[test]
    fn device_ids_cannot_escape_their_topics() {
        for bad in ["", "a/b", "a+", "#", "a\u{0}b"] {
            assert!(check_device_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_device_id("sensor-01.a_b:c%d").is_ok());
    }
}
